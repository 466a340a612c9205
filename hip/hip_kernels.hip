/* Kernels of the HIP backend and their launchers (AMD via hipcc, NVIDIA via
 * nvcc through pkv_hip_runtime.h). */
#include "hip_internal.h"

#include "dialect.h"

#include <stddef.h>

/* ------------------------------------------------------------ loads */
template <int DT> struct pkv_elem;
template <> struct pkv_elem<0> { /* f32 */
  typedef float T;
  static __device__ __forceinline__ float ld(const float *p, long long i) {
    return p[i];
  }
  static __device__ __forceinline__ void st(float *p, long long i, float v) {
    p[i] = v;
  }
};
template <> struct pkv_elem<1> { /* f16 */
  typedef unsigned short T;
  static __device__ __forceinline__ float ld(const T *p, long long i) {
    return pkv_load_f16(p, i);
  }
  static __device__ __forceinline__ void st(T *p, long long i, float v) {
    pkv_store_f16(v, p, i);
  }
};
template <> struct pkv_elem<2> { /* bf16 */
  typedef unsigned short T;
  static __device__ __forceinline__ float ld(const T *p, long long i) {
    return pkv_load_bf16(p, i);
  }
  static __device__ __forceinline__ void st(T *p, long long i, float v) {
    pkv_store_bf16(v, p, i);
  }
};

/* ------------------------------------------------------------ write K/V */
template <typename W>
__global__ void pkv_hip_write_kv(int head_dim, int num_kv_heads, int page_size,
                                 long long page_stride, long long head_stride,
                                 long long token_stride, W *k_pool, W *v_pool,
                                 const W *k, const W *v, const int64_t *slots) {
  long long i = blockIdx.x;
  int h = blockIdx.y;
  long long slot = slots[i];
  if (slot < 0) return; /* padding token */
  long long page = slot / page_size, off = slot % page_size;
  long long dst = page * page_stride + h * head_stride + off * token_stride;
  long long src = (i * num_kv_heads + h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    k_pool[dst + d] = k[src + d];
    v_pool[dst + d] = v[src + d];
  }
}

hipError_t pkv_hip_launch_write_kv(hipStream_t stream, int elem_bytes,
                                   int head_dim, int num_kv_heads,
                                   int page_size, long long page_stride,
                                   long long head_stride,
                                   long long token_stride, void *k_pool,
                                   void *v_pool, const void *k, const void *v,
                                   const int64_t *slots, long long n) {
  if (n <= 0) return hipSuccess;
  dim3 grid((unsigned)n, (unsigned)num_kv_heads);
  dim3 block(head_dim < PKV_HIP_BLOCK ? 64 : PKV_HIP_BLOCK);
  if (elem_bytes == 4)
    pkv_hip_write_kv<unsigned int><<<grid, block, 0, stream>>>(
        head_dim, num_kv_heads, page_size, page_stride, head_stride,
        token_stride, (unsigned int *)k_pool, (unsigned int *)v_pool,
        (const unsigned int *)k, (const unsigned int *)v, slots);
  else
    pkv_hip_write_kv<unsigned short><<<grid, block, 0, stream>>>(
        head_dim, num_kv_heads, page_size, page_stride, head_stride,
        token_stride, (unsigned short *)k_pool, (unsigned short *)v_pool,
        (const unsigned short *)k, (const unsigned short *)v, slots);
  return hipGetLastError();
}

/* ------------------------------------------------------------ attention */
/* One block per (query token, q head, key split): online softmax over the
 * split's keys in tiles of PKV_HIP_BLOCK, one key per thread for the score,
 * then threads over head_dim for the weighted sum of V. */
#define PKV_HIP_ACC (PKV_HIP_MAX_HEAD_DIM / PKV_HIP_BLOCK)

__device__ __forceinline__ float pkv_hip_block_max(float v, float *red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  float r = red[0];
  __syncthreads();
  return r;
}

__device__ __forceinline__ float pkv_hip_block_sum(float v, float *red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  float r = red[0];
  __syncthreads();
  return r;
}

template <int DT>
__global__ void __launch_bounds__(PKV_HIP_BLOCK)
pkv_hip_attention(pkv_hip_attn a) {
  typedef pkv_elem<DT> E;
  typedef typename E::T T;
  __shared__ float qs[PKV_HIP_MAX_HEAD_DIM];
  __shared__ float ps[PKV_HIP_BLOCK];
  __shared__ float red[PKV_HIP_BLOCK];
  __shared__ int pages[PKV_HIP_BLOCK];

  const long long tok = blockIdx.x;
  const int qh = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, hd = a.head_dim;
  const int kvh = qh / (a.num_q_heads / a.num_kv_heads);

  /* the sequence of this token: q_indptr is sorted */
  int lo = 0, hi = a.num_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (a.q_indptr[mid] <= tok) lo = mid; else hi = mid - 1;
  }
  const int seq = lo;
  const int kv_len = a.seq_lens[seq];
  const int q_len = a.q_indptr[seq + 1] - a.q_indptr[seq];
  const int qpos = (int)(tok - a.q_indptr[seq]) + kv_len - q_len;
  int kend = a.causal ? min(kv_len, qpos + 1) : kv_len;
  int kbeg = (a.window_left >= 0) ? max(0, qpos - a.window_left) : 0;
  const int sbeg = max(kbeg, split * a.split_len);
  const int send = min(kend, (split + 1) * a.split_len);

  const T *q = (const T *)a.q + (tok * a.num_q_heads + qh) * hd;
  for (int d = tid; d < hd; d += blockDim.x) qs[d] = E::ld(q, d);
  __syncthreads();

  const T *kp = (const T *)a.k, *vp = (const T *)a.v;
  const int32_t *bt = a.block_table + (long long)seq * a.max_pages;
  const float slope = a.alibi ? a.alibi[qh] : 0.f;
  float m = -PKV_INFINITY, l = 0.f;
  float acc[PKV_HIP_ACC];
  for (int r = 0; r < PKV_HIP_ACC; r++) acc[r] = 0.f;

  for (int t0 = sbeg; t0 < send; t0 += blockDim.x) {
    const int j = t0 + tid;
    const int nt = min((int)blockDim.x, send - t0);
    float s = -PKV_INFINITY;
    if (j < send) {
      const int page = bt[j / a.page_size];
      pages[tid] = page;
      const T *kr = kp + page * a.page_stride + kvh * a.head_stride +
                    (long long)(j % a.page_size) * a.token_stride;
      float dot = 0.f;
      for (int d = 0; d < hd; d++) dot += qs[d] * E::ld(kr, d);
      s = dot * a.scale;
      if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
      s += slope * (float)(j - qpos);
    }
    const float tmax = pkv_hip_block_max(s, red);
    const float mnew = fmaxf(m, tmax);
    const float p = (j < send) ? __expf(s - mnew) : 0.f;
    ps[tid] = p;
    const float corr = __expf(m - mnew); /* m = -inf the first time: 0 */
    l = l * corr + pkv_hip_block_sum(p, red);
    m = mnew;
    for (int r = 0; r < PKV_HIP_ACC; r++) {
      const int d = tid + r * blockDim.x;
      if (d >= hd) break;
      float sum = acc[r] * corr;
      for (int u = 0; u < nt; u++) {
        const int jj = t0 + u;
        const T *vr = vp + pages[u] * a.page_stride + kvh * a.head_stride +
                      (long long)(jj % a.page_size) * a.token_stride;
        sum += ps[u] * E::ld(vr, d);
      }
      acc[r] = sum;
    }
    __syncthreads();
  }

  const long long row = tok * a.num_q_heads + qh;
  if (a.num_splits == 1) {
    T *o = (T *)a.out + row * hd;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int r = 0; r < PKV_HIP_ACC; r++) {
      const int d = tid + r * blockDim.x;
      if (d < hd) E::st(o, d, acc[r] * inv);
    }
    if (a.lse && tid == 0) a.lse[row] = l > 0.f ? m + __logf(l) : -PKV_INFINITY;
  } else {
    float *pp = a.partial + (row * a.num_splits + split) * (hd + 2);
    for (int r = 0; r < PKV_HIP_ACC; r++) {
      const int d = tid + r * blockDim.x;
      if (d < hd) pp[2 + d] = acc[r];
    }
    if (tid == 0) {
      pp[0] = m;
      pp[1] = l;
    }
  }
}

/* Log-sum-exp merge of the splits of one (token, q head). */
template <int DT>
__global__ void __launch_bounds__(PKV_HIP_BLOCK)
pkv_hip_merge(pkv_hip_attn a) {
  typedef pkv_elem<DT> E;
  typedef typename E::T T;
  const long long row = (long long)blockIdx.x * a.num_q_heads + blockIdx.y;
  const int hd = a.head_dim, ns = a.num_splits;
  const float *pp = a.partial + row * ns * (hd + 2);
  float M = -PKV_INFINITY;
  for (int s = 0; s < ns; s++) M = fmaxf(M, pp[s * (hd + 2)]);
  float L = 0.f;
  for (int s = 0; s < ns; s++) {
    const float ms = pp[s * (hd + 2)];
    if (ms > -PKV_INFINITY) L += pp[s * (hd + 2) + 1] * __expf(ms - M);
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;
  T *o = (T *)a.out + row * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < ns; s++) {
      const float ms = pp[s * (hd + 2)];
      if (ms > -PKV_INFINITY) sum += pp[s * (hd + 2) + 2 + d] * __expf(ms - M);
    }
    E::st(o, d, sum * inv);
  }
  if (a.lse && threadIdx.x == 0)
    a.lse[row] = L > 0.f ? M + __logf(L) : -PKV_INFINITY;
}

template <int DT>
static hipError_t launch_attention_dt(hipStream_t stream, const pkv_hip_attn *a) {
  dim3 grid((unsigned)a->num_tokens, (unsigned)a->num_q_heads,
            (unsigned)a->num_splits);
  pkv_hip_attention<DT><<<grid, PKV_HIP_BLOCK, 0, stream>>>(*a);
  hipError_t e = hipGetLastError();
  if (e != hipSuccess || a->num_splits == 1) return e;
  dim3 mgrid((unsigned)a->num_tokens, (unsigned)a->num_q_heads);
  pkv_hip_merge<DT><<<mgrid, PKV_HIP_BLOCK, 0, stream>>>(*a);
  return hipGetLastError();
}

hipError_t pkv_hip_launch_attention(hipStream_t stream, const pkv_hip_attn *a) {
  if (a->num_tokens <= 0) return hipSuccess;
  switch (a->dtype) {
  case 0: return launch_attention_dt<0>(stream, a);
  case 1: return launch_attention_dt<1>(stream, a);
  default: return launch_attention_dt<2>(stream, a);
  }
}

/* ------------------------------------------------------------ pages */
/* Pages are multiples of 16 bytes (head dims are multiples of 16 elements
 * of at least 2 bytes) and pool bases come from the allocator: 16-byte
 * words throughout. */
__global__ void pkv_hip_copy_pages(void *const *pools, const int32_t *pairs,
                                   long long words) {
  const long long i = blockIdx.x;
  uint4 *base = (uint4 *)pools[blockIdx.y];
  const uint4 *src = base + (long long)pairs[2 * i] * words;
  uint4 *dst = base + (long long)pairs[2 * i + 1] * words;
  for (long long w = threadIdx.x; w < words; w += blockDim.x) dst[w] = src[w];
}

hipError_t pkv_hip_launch_copy_pages(hipStream_t stream, void *const *pools,
                                     int num_pools, const int32_t *pairs,
                                     long long n, size_t page_bytes) {
  if (n <= 0 || num_pools <= 0) return hipSuccess;
  dim3 grid((unsigned)n, (unsigned)num_pools);
  pkv_hip_copy_pages<<<grid, 256, 0, stream>>>(pools, pairs,
                                               (long long)(page_bytes / 16));
  return hipGetLastError();
}

__global__ void pkv_hip_stage_pages(void *const *pools, const int32_t *pages,
                                    long long words, uint4 *stage,
                                    int to_stage) {
  const long long i = blockIdx.x;
  const int b = blockIdx.y, nb = gridDim.y;
  uint4 *dev = (uint4 *)pools[b] + (long long)pages[i] * words;
  uint4 *st = stage + (i * nb + b) * words;
  if (to_stage)
    for (long long w = threadIdx.x; w < words; w += blockDim.x) st[w] = dev[w];
  else
    for (long long w = threadIdx.x; w < words; w += blockDim.x) dev[w] = st[w];
}

hipError_t pkv_hip_launch_stage_pages(hipStream_t stream, void *const *pools,
                                      int num_pools, const int32_t *pages,
                                      long long n, size_t page_bytes,
                                      void *stage, int to_stage) {
  if (n <= 0 || num_pools <= 0) return hipSuccess;
  dim3 grid((unsigned)n, (unsigned)num_pools);
  pkv_hip_stage_pages<<<grid, 256, 0, stream>>>(
      pools, pages, (long long)(page_bytes / 16), (uint4 *)stage, to_stage);
  return hipGetLastError();
}
