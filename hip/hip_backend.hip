/* The HIP backend's host side: devices, streams, device memory, and the
 * argument marshalling of every operation. The same source builds for AMD
 * (hipcc) and NVIDIA (nvcc, through pkv_hip_runtime.h). */
#include "hip_internal.h"

extern "C" {
#include "backend.h"
}

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PKV_HIP_CUDA
#define PKV_RT(name) "cuda" name
#else
#define PKV_RT(name) "hip" name
#endif

struct pkv_hip_impl {
  int device;
  hipStream_t stream;
  bool own_stream;
  int compute_units;
  /* Device scratch (split-K partials, pointer tables, staged pages) and
   * its pinned host twin; grown on demand, never shrunk. */
  void *scratch;
  size_t scratch_bytes;
  unsigned char *host;
  size_t host_bytes;
};

static pkv_hip_impl *impl_of(pkv_context *ctx) {
  return (pkv_hip_impl *)ctx->impl;
}

/* Every runtime failure: PKV_ERR_DEVICE naming the call and the runtime's
 * error name. */
static pkv_status rt_fail(const pkv_context *ctx, const char *call,
                          hipError_t e) {
  return pkv_fail(ctx, PKV_ERR_DEVICE, "%s failed: %s (%s)", call,
                  hipGetErrorName(e), hipGetErrorString(e));
}

#define RT_CHECK(ctx, name, expr)                                             \
  do {                                                                        \
    hipError_t rt_e_ = (expr);                                                \
    if (rt_e_ != hipSuccess) return rt_fail((ctx), PKV_RT(name), rt_e_);      \
  } while (0)

/* ------------------------------------------------------------ devices */
static void fill_info(int index, const hipDeviceProp_t *p,
                      pkv_device_info *d) {
  memset(d, 0, sizeof *d);
  d->backend = PKV_BACKEND_HIP;
  d->index = index;
  d->type = PKV_DEVICE_GPU;
  snprintf(d->name, sizeof d->name, "%s", p->name);
  snprintf(d->vendor, sizeof d->vendor, "%s", PKV_HIP_VENDOR);
  int drv = 0, rt = 0;
  if (hipDriverGetVersion(&drv) != hipSuccess) drv = 0;
  if (hipRuntimeGetVersion(&rt) != hipSuccess) rt = 0;
#ifdef PKV_HIP_CUDA
  snprintf(d->driver, sizeof d->driver, "CUDA runtime %d, driver %d, sm_%d%d",
           rt, drv, p->major, p->minor);
#else
  snprintf(d->driver, sizeof d->driver, "HIP runtime %d, driver %d, %.64s",
           rt, drv, p->gcnArchName);
#endif
  d->global_mem_bytes = (uint64_t)p->totalGlobalMem;
  d->max_alloc_bytes = (uint64_t)p->totalGlobalMem;
  d->compute_units = p->multiProcessorCount;
  /* Read, never assumed: 64 on AMD CDNA, 32 on NVIDIA and RDNA. */
  d->wave_size = p->warpSize > 0 ? p->warpSize : 1;
}

/* No runtime, no driver or no device all mean "no HIP device": AUTO must
 * be able to fall through to the next backend. */
static int device_count(void) {
  int n = 0;
  if (hipGetDeviceCount(&n) != hipSuccess) {
    (void)hipGetLastError(); /* clear the runtime's last error */
    return 0;
  }
  return n > 0 ? n : 0;
}

static pkv_status hip_list_devices(pkv_device_info *out, int capacity,
                                   int *count) {
  int n = device_count();
  int filled = 0;
  for (int i = 0; i < n && filled < capacity; i++) {
    hipDeviceProp_t p;
    hipError_t e = hipGetDeviceProperties(&p, i);
    if (e != hipSuccess) return rt_fail(NULL, PKV_RT("GetDeviceProperties"), e);
    fill_info(i, &p, &out[filled++]);
  }
  *count = n;
  return PKV_OK;
}

static bool name_has(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n) return true;
  }
  return n == 0;
}

static pkv_status hip_init(pkv_context *ctx) {
  int n = device_count();
  if (n == 0)
    return pkv_fail(ctx, PKV_ERR_NO_BACKEND,
                    "no %s device: the runtime reports none (no GPU or no "
                    "driver)", PKV_HIP_RUNTIME_NAME);
  int dev = ctx->desc.device;
  if (dev >= n)
    return pkv_fail(ctx, PKV_ERR_RANGE,
                    "device %d out of range: the %s backend sees %d device%s",
                    dev, PKV_HIP_RUNTIME_NAME, n, n == 1 ? "" : "s");
  hipDeviceProp_t p;
  const char *want = ctx->desc.device_name;
  if (dev < 0 && want && *want) {
    for (int i = 0; i < n && dev < 0; i++) {
      RT_CHECK(ctx, "GetDeviceProperties", hipGetDeviceProperties(&p, i));
      if (name_has(p.name, want)) dev = i;
    }
    if (dev < 0)
      return pkv_fail(ctx, PKV_ERR_NOT_FOUND,
                      "device_name '%s' matches none of the %d %s devices",
                      want, n, PKV_HIP_RUNTIME_NAME);
  }
  if (dev < 0) dev = 0;
  RT_CHECK(ctx, "GetDeviceProperties", hipGetDeviceProperties(&p, dev));
  if (want && *want && !name_has(p.name, want))
    return pkv_fail(ctx, PKV_ERR_NOT_FOUND,
                    "device %d is '%s', which does not match device_name '%s'",
                    dev, p.name, want);
  pkv_hip_impl *im = (pkv_hip_impl *)calloc(1, sizeof *im);
  if (!im) return pkv_fail(ctx, PKV_ERR_NO_MEMORY, "HIP context allocation");
  im->device = dev;
  im->compute_units = p.multiProcessorCount > 0 ? p.multiProcessorCount : 1;
  hipError_t e = hipSetDevice(dev);
  if (e == hipSuccess) {
    if (ctx->desc.native_queue) {
      /* the engine's stream: used, never destroyed */
      im->stream = (hipStream_t)ctx->desc.native_queue;
    } else {
      e = hipStreamCreateWithFlags(&im->stream, hipStreamNonBlocking);
      im->own_stream = e == hipSuccess;
    }
  }
  if (e != hipSuccess) {
    free(im);
    return rt_fail(ctx, ctx->desc.native_queue ? PKV_RT("SetDevice")
                                               : PKV_RT("SetDevice/StreamCreate"),
                   e);
  }
  fill_info(dev, &p, &ctx->info);
  ctx->impl = im;
  return PKV_OK;
}

static void hip_fini(pkv_context *ctx) {
  pkv_hip_impl *im = impl_of(ctx);
  if (!im) return;
  (void)hipSetDevice(im->device);
  (void)hipStreamSynchronize(im->stream);
  if (im->scratch) (void)hipFree(im->scratch);
  if (im->host) (void)hipHostFree(im->host);
  if (im->own_stream) (void)hipStreamDestroy(im->stream);
  free(im);
  ctx->impl = NULL;
}

/* ------------------------------------------------------------ memory */
#define SET_DEVICE(ctx, im) RT_CHECK(ctx, "SetDevice", hipSetDevice((im)->device))

static pkv_status hip_mem_alloc(pkv_context *ctx, size_t bytes, void **native) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  void *p = NULL;
  hipError_t e = hipMalloc(&p, bytes);
  if (e != hipSuccess) {
    (void)hipGetLastError();
    return pkv_fail(ctx, PKV_ERR_DEVICE, "%s of %zu bytes failed: %s (%s)",
                    PKV_RT("Malloc"), bytes, hipGetErrorName(e),
                    hipGetErrorString(e));
  }
  *native = p;
  return PKV_OK;
}

static void hip_mem_free(pkv_context *ctx, void *native) {
  pkv_hip_impl *im = impl_of(ctx);
  (void)hipSetDevice(im->device);
  /* queued work may still read it */
  (void)hipStreamSynchronize(im->stream);
  (void)hipFree(native);
}

static pkv_status hip_mem_upload(pkv_context *ctx, void *native, size_t offset,
                                 const void *src, size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync((char *)native + offset, src, bytes,
                          hipMemcpyHostToDevice, im->stream));
  /* the caller may reuse src as soon as we return */
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  return PKV_OK;
}

static pkv_status hip_mem_download(pkv_context *ctx, void *native,
                                   size_t offset, void *dst, size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync(dst, (const char *)native + offset, bytes,
                          hipMemcpyDeviceToHost, im->stream));
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  return PKV_OK;
}

static pkv_status hip_mem_copy(pkv_context *ctx, void *dst, size_t dst_offset,
                               void *src, size_t src_offset, size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync((char *)dst + dst_offset,
                          (const char *)src + src_offset, bytes,
                          hipMemcpyDeviceToDevice, im->stream));
  return PKV_OK;
}

static pkv_status hip_synchronize(pkv_context *ctx) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  return PKV_OK;
}

/* Grows the device scratch to at least `bytes`. Work queued earlier may
 * still use the old scratch, so the stream is drained before it goes. */
static pkv_status need_scratch(pkv_context *ctx, size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  if (bytes <= im->scratch_bytes) return PKV_OK;
  size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
  if (want < im->scratch_bytes * 2 && im->scratch_bytes * 2 > im->scratch_bytes)
    want = im->scratch_bytes * 2;
  void *p = NULL;
  hipError_t e = hipMalloc(&p, want);
  if (e != hipSuccess && want > bytes) e = hipMalloc(&p, want = bytes);
  if (e != hipSuccess) {
    (void)hipGetLastError();
    return pkv_fail(ctx, PKV_ERR_DEVICE, "%s of %zu bytes of scratch failed: %s",
                    PKV_RT("Malloc"), bytes, hipGetErrorName(e));
  }
  if (im->scratch) {
    RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
    (void)hipFree(im->scratch);
  }
  im->scratch = p;
  im->scratch_bytes = want;
  return PKV_OK;
}

/* Pinned host staging; only used between two synchronisations. */
static pkv_status need_host(pkv_context *ctx, size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  if (bytes <= im->host_bytes) return PKV_OK;
  size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
  void *p = NULL;
  hipError_t e = hipHostMalloc(&p, want, 0);
  if (e != hipSuccess) {
    (void)hipGetLastError();
    return pkv_fail(ctx, PKV_ERR_DEVICE,
                    "%s of %zu bytes of pinned staging failed: %s",
                    PKV_RT("HostMalloc"), want, hipGetErrorName(e));
  }
  if (im->host) (void)hipHostFree(im->host);
  im->host = (unsigned char *)p;
  im->host_bytes = want;
  return PKV_OK;
}

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* ------------------------------------------------------------ operations */
static pkv_status hip_write_kv(pkv_context *ctx, const pkv_write_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  SET_DEVICE(ctx, im);
  RT_CHECK(ctx, "LaunchKernel(write_kv)",
           pkv_hip_launch_write_kv(
               im->stream, (int)pkv_dtype_size(g->dtype), g->head_dim,
               g->num_kv_heads, g->page_size, g->page_stride, g->head_stride,
               g->token_stride, a->k_pool->native, a->v_pool->native,
               a->k->native, a->v->native, (const int64_t *)a->slots->native,
               a->n));
  return PKV_OK;
}

/* Split the keys so that a small batch still fills the device: aim at
 * about four blocks per compute unit, never a split shorter than 256 keys
 * (the merge would cost more than it saves). */
static void choose_splits(const pkv_hip_impl *im, long long rows,
                          int max_kv_len, int *num_splits, int *split_len) {
  long long want = 4LL * im->compute_units;
  long long ns = rows >= want ? 1 : (want + rows - 1) / rows;
  long long most = (max_kv_len + 255) / 256;
  if (ns > most) ns = most;
  if (ns > 64) ns = 64; /* grid z limit */
  if (ns < 1) ns = 1;
  long long len = (max_kv_len + ns - 1) / ns;
  len = (len + 63) / 64 * 64;
  if (len < 64) len = 64;
  *num_splits = (int)((max_kv_len + len - 1) / len);
  if (*num_splits < 1) *num_splits = 1;
  *split_len = (int)len;
}

static pkv_status hip_attention(pkv_context *ctx, const pkv_attn_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  SET_DEVICE(ctx, im);
  if (a->num_tokens <= 0) return PKV_OK;
  pkv_hip_attn k;
  memset(&k, 0, sizeof k);
  k.dtype = (int)g->dtype;
  k.head_dim = g->head_dim;
  k.page_size = g->page_size;
  k.num_kv_heads = g->num_kv_heads;
  k.num_q_heads = a->num_q_heads;
  k.page_stride = g->page_stride;
  k.head_stride = g->head_stride;
  k.token_stride = g->token_stride;
  k.k = a->k_pool->native;
  k.v = a->v_pool->native;
  k.q = a->q->native;
  k.out = a->out->native;
  k.lse = a->lse ? (float *)a->lse->native : NULL;
  k.block_table = (const int32_t *)a->block_table->native;
  k.seq_lens = (const int32_t *)a->seq_lens->native;
  k.q_indptr = (const int32_t *)a->q_indptr->native;
  k.num_seqs = a->num_seqs;
  k.max_pages = a->max_pages;
  k.num_tokens = a->num_tokens;
  k.scale = a->scale;
  k.softcap = a->softcap;
  k.causal = a->causal;
  k.window_left = a->window_left;
  k.alibi = a->alibi ? (const float *)a->alibi->native : NULL;
  long long rows = a->num_tokens * (long long)a->num_q_heads;
  choose_splits(im, rows, a->max_kv_len > 0 ? a->max_kv_len : 1,
                &k.num_splits, &k.split_len);
  if (k.num_splits > 1) {
    size_t bytes = (size_t)rows * (size_t)k.num_splits *
                   (size_t)(g->head_dim + 2) * sizeof(float);
    pkv_status st = need_scratch(ctx, bytes);
    if (st != PKV_OK) return st;
    k.partial = (float *)im->scratch;
  }
  RT_CHECK(ctx, "LaunchKernel(attention)",
           pkv_hip_launch_attention(im->stream, &k));
  return PKV_OK;
}

/* Uploads the pools' base pointers (and optionally an int32 list) into the
 * scratch through the pinned staging, in one transfer; returns the device
 * addresses. */
static pkv_status upload_tables(pkv_context *ctx, pkv_buffer **pools,
                                int num_pools, const int32_t *list,
                                long long n, size_t extra,
                                void ***d_pools, int32_t **d_list,
                                unsigned char **d_extra) {
  pkv_hip_impl *im = impl_of(ctx);
  size_t ptr_bytes = align_up((size_t)num_pools * sizeof(void *), 256);
  size_t list_bytes = list ? align_up((size_t)n * sizeof(int32_t), 256) : 0;
  size_t head = ptr_bytes + list_bytes;
  pkv_status st = need_scratch(ctx, head + extra);
  if (st == PKV_OK) st = need_host(ctx, head);
  if (st != PKV_OK) return st;
  /* the pinned staging may still feed an earlier copy */
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  void **hp = (void **)im->host;
  for (int b = 0; b < num_pools; b++) hp[b] = pools[b]->native;
  if (list) memcpy(im->host + ptr_bytes, list, (size_t)n * sizeof(int32_t));
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync(im->scratch, im->host, head, hipMemcpyHostToDevice,
                          im->stream));
  *d_pools = (void **)im->scratch;
  if (d_list) *d_list = (int32_t *)((unsigned char *)im->scratch + ptr_bytes);
  if (d_extra) *d_extra = (unsigned char *)im->scratch + head;
  return PKV_OK;
}

static pkv_status hip_copy_pages(pkv_context *ctx, const pkv_copy_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  void **d_pools = NULL;
  pkv_status st = upload_tables(ctx, a->pools, a->num_pools, NULL, 0, 0,
                                &d_pools, NULL, NULL);
  if (st != PKV_OK) return st;
  RT_CHECK(ctx, "LaunchKernel(copy_pages)",
           pkv_hip_launch_copy_pages(im->stream, d_pools, a->num_pools,
                                     (const int32_t *)a->pairs->native, a->n,
                                     a->geom->page_bytes));
  /* the pinned tables are reused by the next call: finish before */
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  return PKV_OK;
}

/* One gather kernel into device staging, one copy to pinned host memory,
 * then the host pages are filled from it. */
static pkv_status hip_pages_to_host(pkv_context *ctx,
                                    const pkv_host_move_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  size_t unit = (size_t)a->num_pools * a->geom->page_bytes;
  size_t total;
  if (!pkv_mul_size(unit, (size_t)a->n, &total))
    return pkv_fail(ctx, PKV_ERR_OVERFLOW, "%lld pages of %zu bytes overflow",
                    (long long)a->n, unit);
  void **d_pools = NULL;
  int32_t *d_pages = NULL;
  unsigned char *d_stage = NULL;
  /* grow the pinned staging before the tables travel through it */
  pkv_status st = need_host(ctx, total);
  if (st == PKV_OK)
    st = upload_tables(ctx, a->pools, a->num_pools, a->h_dev_pages, a->n,
                       total, &d_pools, &d_pages, &d_stage);
  if (st != PKV_OK) return st;
  RT_CHECK(ctx, "LaunchKernel(gather_pages)",
           pkv_hip_launch_stage_pages(im->stream, d_pools, a->num_pools,
                                      d_pages, a->n, a->geom->page_bytes,
                                      d_stage, 1));
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync(im->host, d_stage, total, hipMemcpyDeviceToHost,
                          im->stream));
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  for (int64_t i = 0; i < a->n; i++)
    memcpy(a->host_base + (size_t)a->h_host_pages[i] * unit,
           im->host + (size_t)i * unit, unit);
  return PKV_OK;
}

static pkv_status hip_pages_from_host(pkv_context *ctx,
                                      const pkv_host_move_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  SET_DEVICE(ctx, im);
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  size_t unit = (size_t)a->num_pools * a->geom->page_bytes;
  size_t total;
  if (!pkv_mul_size(unit, (size_t)a->n, &total))
    return pkv_fail(ctx, PKV_ERR_OVERFLOW, "%lld pages of %zu bytes overflow",
                    (long long)a->n, unit);
  void **d_pools = NULL;
  int32_t *d_pages = NULL;
  unsigned char *d_stage = NULL;
  /* tables first (they use the pinned staging), then the page data */
  pkv_status st = need_host(ctx, total);
  if (st == PKV_OK)
    st = upload_tables(ctx, a->pools, a->num_pools, a->h_dev_pages, a->n,
                       total, &d_pools, &d_pages, &d_stage);
  if (st != PKV_OK) return st;
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  for (int64_t i = 0; i < a->n; i++)
    memcpy(im->host + (size_t)i * unit,
           a->host_base + (size_t)a->h_host_pages[i] * unit, unit);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync(d_stage, im->host, total, hipMemcpyHostToDevice,
                          im->stream));
  RT_CHECK(ctx, "LaunchKernel(scatter_pages)",
           pkv_hip_launch_stage_pages(im->stream, d_pools, a->num_pools,
                                      d_pages, a->n, a->geom->page_bytes,
                                      d_stage, 0));
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  return PKV_OK;
}

extern "C" const pkv_backend_ops pkv_hip_backend = {
    PKV_BACKEND_HIP,     /* kind */
    "hip",               /* name */
    hip_list_devices,    /* list_devices */
    hip_init,            /* init */
    hip_fini,            /* fini */
    hip_mem_alloc,       /* mem_alloc */
    hip_mem_free,        /* mem_free */
    hip_mem_upload,      /* mem_upload */
    hip_mem_download,    /* mem_download */
    hip_mem_copy,        /* mem_copy */
    hip_synchronize,     /* synchronize */
    hip_write_kv,        /* write_kv */
    hip_attention,       /* attention */
    hip_copy_pages,      /* copy_pages */
    hip_pages_to_host,   /* pages_to_host */
    hip_pages_from_host, /* pages_from_host */
};
