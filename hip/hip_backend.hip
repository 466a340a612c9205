/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP backend's host side: devices, streams, device memory, and the
 * argument marshalling of every operation. The same source builds for AMD
 * (hipcc) and NVIDIA (nvcc, through pkv_hip_runtime.h). */
#include "hip_internal.h"

extern "C" {
#include "alloc.h"
#include "backend.h"
#include "fastdiv.h"
#include "plan_launch.h"
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
  /* Device scratch (split-K partials, pointer tables, staged pages) and
   * its pinned host twin; grown on demand, never shrunk. */
  void *scratch;
  size_t scratch_bytes;
  unsigned char *host;
  size_t host_bytes;
  int sm_count;   /* multiprocessors / compute units */
  int gpu_decode; /* the GPU-shaped decode kernel (PKV_KERNELS=cpu: not) */
  int mma;        /* the matrix-unit prefill (PKV_KERNELS=simt: not) */
  /* Pinned staging of the plans' uploads (hip_mem_upload_async): filled
   * front to back, one event recorded after each copy; reused from the
   * front only once every copy out of it has landed (its events). */
  unsigned char *up_host;
  size_t up_bytes, up_off;
  hipEvent_t *up_ev;
  int up_used, up_made, up_cap;
  /* fp8 scales [K][V] per kv head, kept on the device between calls and
   * uploaded again only when they change (pkv_cache_set_kv_scales), so a
   * decode step costs no host->device copy nor stream synchronisation for
   * them; scales_h is the host copy of what the device holds. */
  float *scales_d, *scales_h;
  size_t scales_n, scales_cap; /* floats held / allocated */
};

static pkv_hip_impl *impl_of(pkv_context *ctx) {
  return (pkv_hip_impl *)ctx->impl;
}

/* Every runtime failure: PKV_ERR_DEVICE naming the call and the runtime's
 * error name. */
static pkv_status rt_fail(const pkv_context *ctx, const char *call,
                          hipError_t e) {
  return pkv__fail(ctx, PKV_ERR_DEVICE, "%s failed: %s (%s)", call,
                  hipGetErrorName(e), hipGetErrorString(e));
}

#define CALL_CHECK(ctx, call, expr)                                           \
  do {                                                                        \
    hipError_t rt_e_ = (expr);                                                \
    if (rt_e_ != hipSuccess) return rt_fail((ctx), (call), rt_e_);            \
  } while (0)
/* a runtime call, named as the vendor spells it (hipMalloc, cudaMalloc) */
#define RT_CHECK(ctx, name, expr) CALL_CHECK(ctx, PKV_RT(name), expr)
/* a kernel launch, named by its kernel */
#define LAUNCH_CHECK(ctx, kernel, expr) CALL_CHECK(ctx, (kernel), expr)

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
    return pkv__fail(ctx, PKV_ERR_NO_BACKEND,
                    "no %s device: the runtime reports none (no GPU or no "
                    "driver)", PKV_HIP_RUNTIME_NAME);
  int dev = ctx->desc.device;
  if (dev >= n)
    return pkv__fail(ctx, PKV_ERR_RANGE,
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
      return pkv__fail(ctx, PKV_ERR_NOT_FOUND,
                      "device_name '%s' matches none of the %d %s devices",
                      want, n, PKV_HIP_RUNTIME_NAME);
  }
  if (dev < 0) dev = 0;
  RT_CHECK(ctx, "GetDeviceProperties", hipGetDeviceProperties(&p, dev));
  if (want && *want && !name_has(p.name, want))
    return pkv__fail(ctx, PKV_ERR_NOT_FOUND,
                    "device %d is '%s', which does not match device_name '%s'",
                    dev, p.name, want);
  pkv_hip_impl *im = (pkv_hip_impl *)calloc(1, sizeof *im);
  if (!im) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "HIP context allocation");
  im->device = dev;
  im->sm_count = p.multiProcessorCount > 0 ? p.multiProcessorCount : 1;
  {
    /* Every HIP device is a GPU: the GPU kernel, unless forced off. */
    const char *k = getenv("PKV_KERNELS");
    im->gpu_decode = !(k && strcmp(k, "cpu") == 0);
    /* the matrix-unit prefill unless PKV_KERNELS names simt; its block
     * size is fixed for the wave of the host pass (PKV_WAVE), so a device
     * of another wave width (RDNA under an AMD build) keeps SIMT */
    im->mma = !(k && strstr(k, "simt")) && p.warpSize == PKV_HIP_HOST_WAVE;
  }
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
  if (im->scales_d) (void)hipFree(im->scales_d);
  pkv__free(im->scales_h);
  if (im->host) (void)hipHostFree(im->host);
  if (im->up_host) (void)hipHostFree(im->up_host);
  for (int i = 0; i < im->up_made; i++) (void)hipEventDestroy(im->up_ev[i]);
  pkv__free(im->up_ev);
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
    return pkv__fail(ctx, PKV_ERR_DEVICE, "%s of %zu bytes failed: %s (%s)",
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
    return pkv__fail(ctx, PKV_ERR_DEVICE, "%s of %zu bytes of scratch failed: %s",
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
    return pkv__fail(ctx, PKV_ERR_DEVICE,
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
static pkv_status no_kernels(pkv_context *ctx, const pkv_cache_geometry *g) {
  return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                  "no HIP kernels for dtype %d with head dim %d (built: f32, "
                  "f16, bf16, e4m3, e5m2, int8 x 64, 80, 96, 112, 128, 192, "
                  "256)",
                  (int)g->dtype, g->head_dim);
}

/* The fp8 scales of a call on the device: l->kv_scales = [K][V] per kv
 * head (absent = 1), has_scales 1; NULL / 0 when the call has none. The
 * device copy is reused while the scales stay the same; a change is one
 * copy on the stream (ordered after the kernels that read the old ones). */
static pkv_status device_scales(pkv_context *ctx, const float *ks,
                                const float *vs, int nkv, pkv_hip_launch *l) {
  pkv_hip_impl *im = impl_of(ctx);
  l->kv_scales = NULL;
  l->has_scales = 0;
  if (!ks && !vs) return PKV_OK;
  const size_t n = 2 * (size_t)nkv;
  if (n > im->scales_cap) {
    float *h = (float *)pkv__malloc(n * sizeof(float));
    if (!h) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "fp8 scales (%zu bytes)",
                            n * sizeof(float));
    void *d = NULL;
    hipError_t e = hipMalloc(&d, n * sizeof(float));
    if (e != hipSuccess) {
      (void)hipGetLastError();
      pkv__free(h);
      return rt_fail(ctx, PKV_RT("Malloc"), e);
    }
    /* the old device copy may still be read by queued kernels */
    if (im->scales_d) {
      RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
      (void)hipFree(im->scales_d);
    }
    pkv__free(im->scales_h);
    im->scales_d = (float *)d;
    im->scales_h = h;
    im->scales_cap = n;
    im->scales_n = 0;
  }
  int same = im->scales_n == n;
  for (int i = 0; i < nkv && same; i++)
    same = im->scales_h[i] == (ks ? ks[i] : 1.0f) &&
           im->scales_h[nkv + i] == (vs ? vs[i] : 1.0f);
  if (!same) {
    for (int i = 0; i < nkv; i++) {
      im->scales_h[i] = ks ? ks[i] : 1.0f;
      im->scales_h[nkv + i] = vs ? vs[i] : 1.0f;
    }
    /* pageable source: the runtime copies it before returning */
    hipError_t e = hipMemcpyAsync(im->scales_d, im->scales_h, n * sizeof(float),
                                  hipMemcpyHostToDevice, im->stream);
    if (e != hipSuccess) {
      im->scales_n = 0; /* unknown device contents: upload next time */
      (void)hipGetLastError();
      return rt_fail(ctx, PKV_RT("MemcpyAsync"), e);
    }
    im->scales_n = n;
  }
  l->kv_scales = im->scales_d;
  l->has_scales = 1;
  return PKV_OK;
}

static void geometry(pkv_hip_launch *l, const pkv_cache_geometry *g,
                     pkv_buffer *k_pool, pkv_buffer *v_pool) {
  l->num_kv_heads = g->num_kv_heads;
  l->page_size = g->page_size;
  l->page_stride = g->page_stride;
  l->head_stride = g->head_stride;
  l->token_stride = g->token_stride;
  l->k_pool = k_pool->native;
  l->v_pool = v_pool->native;
  l->scale_offset = (long long)g->scale_offset; /* int8 pages */
}

static pkv_status hip_write_kv(pkv_context *ctx, const pkv_write_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  if (a->n <= 0) return PKV_OK;
  const pkv_hip_kset *ks = pkv__hip_kset_for((int)g->dtype, g->head_dim);
  if (!ks) return no_kernels(ctx, g);
  /* One thread per 8 elements, 64 per block: the block count must fit the
   * grid's x extent. */
  size_t items;
  if (!pkv__mul3_size((size_t)a->n, (size_t)g->num_kv_heads,
                      (size_t)(g->head_dim / 8), &items) ||
      (items + 63) / 64 > (size_t)PKV_HIP_MAX_GRID_X)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "write_kv of n %lld tokens x %d kv heads needs more than "
                    "%d blocks of one HIP launch",
                    (long long)a->n, g->num_kv_heads, PKV_HIP_MAX_GRID_X);
  SET_DEVICE(ctx, im);
  pkv_hip_launch l;
  memset(&l, 0, sizeof l);
  l.stream = im->stream;
  geometry(&l, g, a->k_pool, a->v_pool);
  l.k = a->k->native;
  l.v = a->v->native;
  l.slots = (const int64_t *)a->slots->native;
  l.n = a->n;
  int64_t kts, khs, vts, vhs;
  pkv__write_strides(a, &kts, &khs, &vts, &vhs);
  l.k_off = a->k_off;
  l.k_ts = kts;
  l.k_hs = khs;
  l.v_off = a->v_off;
  l.v_ts = vts;
  l.v_hs = vhs;
  l.num_pages = g->num_pages;
  l.src_dtype = a->convert ? (int)a->src_dtype : (int)g->dtype;
  pkv_status sst = device_scales(ctx, a->h_k_scales, a->h_v_scales,
                                 g->num_kv_heads, &l);
  if (sst != PKV_OK) return sst;
  LAUNCH_CHECK(ctx, "launch of pkv_write_kv", ks->write_kv(&l));
  return PKV_OK;
}

/* Copies host data into the scratch at `offset` through the pinned
 * staging (an H2D copy from pinned memory is truly asynchronous, so the
 * staging is reused only after the stream has drained). */
static pkv_status stage_up(pkv_context *ctx, size_t offset, const void *src,
                           size_t bytes) {
  pkv_hip_impl *im = impl_of(ctx);
  pkv_status st = need_host(ctx, bytes);
  if (st != PKV_OK) return st;
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  memcpy(im->host, src, bytes);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync((unsigned char *)im->scratch + offset, im->host,
                          bytes, hipMemcpyHostToDevice, im->stream));
  return PKV_OK;
}

/* ------------------------------------------------------------ plan/run */
const pkv_hip_plan_kset *pkv__hip_plan_kset_for(int dtype, int head_dim) {
  static const int dims[PKV_HIP_NUM_HEAD_DIMS] = PKV_HIP_HEAD_DIMS;
  for (int i = 0; i < PKV_HIP_NUM_HEAD_DIMS; i++) {
    if (dims[i] != head_dim) continue;
    switch (dtype) {
    case 0: return &pkv_hip_plan_ksets_t0[i];
    case 1: return &pkv_hip_plan_ksets_t1[i];
    case 2: return &pkv_hip_plan_ksets_t2[i];
    case 3: return &pkv_hip_plan_ksets_t3[i]; /* fp8 e4m3 */
    case 4: return &pkv_hip_plan_ksets_t4[i]; /* fp8 e5m2 */
    case 5: return &pkv_hip_plan_ksets_t5[i]; /* int8 */
    default: return NULL;
    }
  }
  return NULL;
}

/* Whether the matrix-unit kernel (kernels/prefill_mma.cl) runs this
 * attention, planned or not: 16-bit operands (f16/bf16 cache, or fp8/int8
 * codes the kernel stages as f16; q and out f16/bf16),
 * aligned K/V rows for its 16-byte async copies; prefill, extend, spec
 * decode, GQA >= 4 decode (the group in the 64 rows of one block). */
static int mma_choice(const pkv_hip_impl *im, const pkv_attn_args *a) {
  const pkv_cache_geometry *g = a->geom;
  const int group = a->num_q_heads / g->num_kv_heads;
  const size_t es = pkv__elem_bytes(g->dtype);
  return im->mma &&
         g->dtype != PKV_DTYPE_F32 && /* 16-bit, or codes staged as f16 */
         (a->q_dtype == PKV_DTYPE_F16 || a->q_dtype == PKV_DTYPE_BF16) &&
         (a->o_dtype == PKV_DTYPE_F16 || a->o_dtype == PKV_DTYPE_BF16) &&
         (a->max_q_len > 1 || (group >= 4 && group <= 64)) &&
         a->k_pool->aligned16 && a->v_pool->aligned16 &&
         ((size_t)(g->page_stride | g->head_stride | g->token_stride) * es) %
                 16 == 0;
}

/* Whether the GPU-shaped kernel runs this attention, and its variant. */
static void gpu_choice(const pkv_hip_impl *im, const pkv_attn_args *a,
                       pkv_hip_launch *l) {
  const pkv_cache_geometry *g = a->geom;
  if (!im->gpu_decode || !pkv__attn_plain(a)) return;
  /* Rows are 16-byte aligned when the pools are (recorded once, when the
   * buffers were made) and the strides keep them so. */
  const size_t es = pkv__elem_bytes(g->dtype);
  l->gpu_decode = 1;
  l->aligned = a->rows_aligned && a->k_pool->aligned16 &&
               a->v_pool->aligned16 && a->q->aligned16 &&
               ((size_t)(g->page_stride | g->head_stride | g->token_stride) *
                es) % 16 == 0;
  pkv__fastdiv fd = pkv__fastdiv_make((uint32_t)g->page_size);
  l->pdiv_mul = fd.mul;
  l->pdiv_shift = (int)fd.shift;
}

/* A run under a plan: the plan's item grid and merge slots on the run's
 * stream (else the plan's, else the context's). No allocation, no copy,
 * no synchronisation: the slopes, sinks, items and merges are the plan's
 * device arrays, the partials the caller's workspace. */
static pkv_status hip_decode_plan(pkv_context *ctx, const pkv_attn_args *a,
                                  pkv_hip_launch *l) {
  pkv_hip_impl *im = impl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  const pkv__plan_exec *pe = a->plan;
  const pkv_hip_plan_kset *pk =
      pkv__hip_plan_kset_for((int)g->dtype, g->head_dim);
  if (!pk) return no_kernels(ctx, g);
  pkv__plan_launch pl;
  const int group = a->num_q_heads / g->num_kv_heads;
  l->mma = mma_choice(im, a); /* one block holds the whole group */
  if (!pkv__plan_launch_of(pe, g->num_kv_heads, group, l->mma ? group : 8,
                           &pl))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "plan of %lld grid items x %d kv heads exceeds the "
                    "launch limits",
                    (long long)pe->grid_items, g->num_kv_heads);
  if ((a->h_alibi && !a->alibi) || (a->h_sinks && !pe->sinks))
    return pkv__fail(ctx, PKV_ERR_STATE,
                    "plan without the device copy of its ALiBi slopes or "
                    "sinks");
  l->stream = pe->stream ? (hipStream_t)pe->stream : im->stream;
  l->alibi = a->h_alibi ? (const float *)a->alibi->native : NULL;
  l->sinks = a->h_sinks ? (const float *)pe->sinks->native : NULL;
  if (!l->mma) gpu_choice(im, a, l);
  l->plan_items = (const int32_t *)pe->dev_items->native;
  l->plan_merges = (const int32_t *)pe->dev_merges->native;
  l->grid_items = (long long)pl.items;
  l->merge_slots = (long long)pl.merge_slots;
  l->lse_off = pl.lse_off;
  l->ws = pe->workspace ? (float *)pe->workspace->native : NULL;
  LAUNCH_CHECK(ctx,
               l->mma          ? "launch of pkv_prefill_mma_plan"
               : l->gpu_decode ? "launch of pkv_decode_gpu_plan"
                               : "launch of pkv_decode_plan",
               pk->decode(l));
  return PKV_OK;
}

/* A plan's array to the device on `stream` through the pinned staging:
 * the host copies into the staging and queues an asynchronous copy out of
 * it, then returns. The host waits only when the staging is full and its
 * front is reused: on the events of the earlier copies (a build's uploads
 * are a few KiB, so that is once per many steps, long after they landed). */
static pkv_status hip_mem_upload_async(pkv_context *ctx, void *native,
                                       size_t offset, const void *src,
                                       size_t bytes, void *stream) {
  pkv_hip_impl *im = impl_of(ctx);
  hipStream_t s = stream ? (hipStream_t)stream : im->stream;
  SET_DEVICE(ctx, im);
  if (im->up_off + bytes > im->up_bytes) {
    for (int i = 0; i < im->up_used; i++)
      RT_CHECK(ctx, "EventSynchronize", hipEventSynchronize(im->up_ev[i]));
    im->up_used = 0;
    im->up_off = 0;
    if (bytes > im->up_bytes) {
      size_t want = im->up_bytes * 2 > bytes ? im->up_bytes * 2 : bytes;
      if (want < ((size_t)1 << 20)) want = (size_t)1 << 20;
      void *p = NULL;
      hipError_t e = hipHostMalloc(&p, want, 0);
      if (e != hipSuccess) {
        (void)hipGetLastError();
        return pkv__fail(ctx, PKV_ERR_DEVICE,
                        "%s of %zu bytes of pinned plan staging failed: %s",
                        PKV_RT("HostMalloc"), want, hipGetErrorName(e));
      }
      if (im->up_host) (void)hipHostFree(im->up_host);
      im->up_host = (unsigned char *)p;
      im->up_bytes = want;
    }
  }
  if (im->up_used == im->up_made) {
    if (im->up_made == im->up_cap) {
      int cap = im->up_cap ? 2 * im->up_cap : 16;
      hipEvent_t *ev =
          (hipEvent_t *)pkv__realloc(im->up_ev, (size_t)cap * sizeof *ev);
      if (!ev)
        return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "%d upload events", cap);
      im->up_ev = ev;
      im->up_cap = cap;
    }
    RT_CHECK(ctx, "EventCreateWithFlags",
             hipEventCreateWithFlags(&im->up_ev[im->up_made],
                                     hipEventDisableTiming));
    im->up_made++;
  }
  unsigned char *h = im->up_host + im->up_off;
  memcpy(h, src, bytes);
  RT_CHECK(ctx, "MemcpyAsync",
           hipMemcpyAsync((unsigned char *)native + offset, h, bytes,
                          hipMemcpyHostToDevice, s));
  RT_CHECK(ctx, "EventRecord", hipEventRecord(im->up_ev[im->up_used], s));
  im->up_used++;
  im->up_off += align_up(bytes, 256);
  return PKV_OK;
}

/* The planner's blocks per SM/CU: the occupancy of the kernel a run
 * launches (the matrix-unit one for 16-bit and quantized caches with a GQA group of
 * 4..64 unless PKV_KERNELS=simt, taking q and out in 16 bits, their usual
 * dtype; else the GPU-shaped one unless PKV_KERNELS=cpu; its vector
 * variant, which every aligned cache gets). */
static int hip_decode_blocks_per_cu(pkv_context *ctx, int32_t head_dim,
                                    pkv_dtype dtype, int32_t group) {
  pkv_hip_impl *im = impl_of(ctx);
  const int mma = im->mma && dtype != PKV_DTYPE_F32 &&
                  group >= 4 && group <= 64;
  const pkv_hip_plan_kset *pk = pkv__hip_plan_kset_for((int)dtype, head_dim);
  int n = 0;
  if (!pk || hipSetDevice(im->device) != hipSuccess ||
      pk->occupancy(mma, im->gpu_decode, 1, &n) != hipSuccess) {
    (void)hipGetLastError();
    return 0;
  }
  return n;
}

static pkv_status hip_attention(pkv_context *ctx, const pkv_attn_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  if (a->num_tokens <= 0 || a->num_seqs <= 0) return PKV_OK;
  const pkv_hip_kset *ks = pkv__hip_kset_for((int)g->dtype, g->head_dim);
  if (!ks) return no_kernels(ctx, g);
  if (a->num_seqs > PKV_HIP_MAX_GRID_YZ)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                    "num_seqs %d exceeds the HIP backend's %d per launch",
                    a->num_seqs, PKV_HIP_MAX_GRID_YZ);
  const size_t group = (size_t)(a->num_q_heads / g->num_kv_heads);
  if (a->max_q_len > 1 &&
      ((size_t)a->max_q_len * group + 31) / 32 > (size_t)PKV_HIP_MAX_GRID_X)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "prefill of max_q_len %d x %zu q heads per kv head needs "
                    "more than %d blocks of one HIP launch",
                    a->max_q_len, group, PKV_HIP_MAX_GRID_X);
  SET_DEVICE(ctx, im);
  pkv_hip_launch l;
  memset(&l, 0, sizeof l);
  l.stream = im->stream;
  geometry(&l, g, a->k_pool, a->v_pool);
  l.q = a->q->native;
  l.out = a->out->native;
  l.lse = a->lse ? (float *)a->lse->native : NULL;
  if (a->csr) {
    l.csr = 1;
    l.pages = a->kv_indices ? (const int32_t *)a->kv_indices->native : NULL;
    l.kv_indptr = (const int32_t *)a->kv_indptr->native;
    l.kv_last = (const int32_t *)a->kv_last->native;
  } else {
    l.pages = (const int32_t *)a->block_table->native;
    l.seq_lens = (const int32_t *)a->seq_lens->native;
  }
  l.num_kv_indices = a->num_kv_indices;
  l.q_indptr = (const int32_t *)a->q_indptr->native;
  l.num_pages = g->num_pages;
  l.num_tokens = (int)a->num_tokens;
  l.q_dtype = (int)a->q_dtype;
  l.o_dtype = (int)a->o_dtype;
  {
    int64_t qts, qhs, ots, ohs;
    pkv__attn_strides(a, &qts, &qhs, &ots, &ohs);
    l.q_off = a->q_off;
    l.q_ts = qts;
    l.q_hs = qhs;
    l.o_off = a->o_off;
    l.o_ts = ots;
    l.o_hs = ohs;
  }
  l.num_seqs = a->num_seqs;
  l.max_pages = a->max_pages;
  l.num_q_heads = a->num_q_heads;
  l.max_q_len = a->max_q_len;
  l.max_kv_len = a->max_kv_len;
  l.scale = a->scale;
  l.softcap = a->softcap;
  l.causal = a->causal;
  l.window_left = a->window_left;
  l.num_parts = 1;
  {
    pkv_status sst = device_scales(ctx, a->h_k_scales, a->h_v_scales,
                                   g->num_kv_heads, &l);
    if (sst != PKV_OK) return sst;
  }
  if (a->plan && a->max_q_len <= 1) return hip_decode_plan(ctx, a, &l);
  /* A prefill under a plan: the run's stream too (its slopes and sinks
   * are the plan's device copies, so nothing below stages). */
  if (a->plan && a->plan->stream) l.stream = (hipStream_t)a->plan->stream;
  /* Scratch layout: [alibi slopes][sinks][partial outputs][partial m, l]. */
  size_t alibi_bytes = 0, sinks_bytes = 0, po_bytes = 0, pm_bytes = 0;
  if (a->h_alibi && !a->alibi)
    alibi_bytes = align_up((size_t)a->num_q_heads * sizeof(float), 256);
  const bool plan_sinks = a->h_sinks && a->plan && a->plan->sinks;
  if (a->h_sinks && !plan_sinks)
    sinks_bytes = align_up((size_t)a->num_q_heads * sizeof(float), 256);
  l.mma = mma_choice(im, a);
  if (a->max_q_len <= 1) {
    int kv = a->max_kv_len > 0 ? a->max_kv_len : 1;
    int part = ks->part;
    /* the mma kernel splits decode into partitions of ks->part keys */
    if (l.mma) l.part_len = part;
    if (!l.mma && im->gpu_decode && pkv__attn_plain(a)) {
      /* Rows are 16-byte aligned when the pools are (recorded once, when
       * the buffers were made) and the strides keep them so. */
      const size_t es = pkv__elem_bytes(g->dtype);
      l.gpu_decode = 1;
      /* quantized pools read q element by element (any q dtype) */
      l.aligned = a->rows_aligned && a->k_pool->aligned16 && a->v_pool->aligned16 &&
                  (es == 1 || a->q->aligned16) &&
                  ((size_t)(g->page_stride | g->head_stride | g->token_stride) *
                   es) % 16 == 0;
      pkv__fastdiv fd = pkv__fastdiv_make((uint32_t)g->page_size);
      l.pdiv_mul = fd.mul;
      l.pdiv_shift = (int)fd.shift;
      /* Shorter partitions while the grid would not give every SM two
       * blocks (a single long sequence, a small batch); never below four
       * tiles. Until plan/run, counted from the longest sequence. */
      const int group = a->num_q_heads / g->num_kv_heads;
      const long long base = (long long)a->num_seqs * g->num_kv_heads *
                             ((group + 7) / 8);
      const int floor_len = 4 * ks->gpu_tile > 64 ? 4 * ks->gpu_tile : 64;
      while (part / 2 >= floor_len &&
             base * ((kv + part - 1) / part) < 2LL * im->sm_count)
        part /= 2;
      l.part_len = part;
    }
    l.num_parts = (kv + part - 1) / part;
    if (l.num_parts > 1) {
      size_t rows, po;
      if (!pkv__mul3_size((size_t)a->num_seqs, (size_t)a->num_q_heads,
                          (size_t)l.num_parts, &rows) ||
          !pkv__mul3_size(rows, (size_t)g->head_dim, sizeof(float), &po) ||
          po > (size_t)-1 - 512)
        return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                        "decode partials of %d seqs x %d q heads x %d parts "
                        "overflow size_t",
                        a->num_seqs, a->num_q_heads, l.num_parts);
      po_bytes = align_up(po, 256);
      pm_bytes = rows * 2 * sizeof(float);
    }
  }
  alibi_bytes += sinks_bytes; /* the sinks follow the slopes */
  if (alibi_bytes + po_bytes + pm_bytes > 0) {
    pkv_status st = need_scratch(ctx, alibi_bytes + po_bytes + pm_bytes);
    if (st != PKV_OK) return st;
  }
  unsigned char *sc = (unsigned char *)im->scratch;
  if (a->alibi) {
    l.alibi = (const float *)a->alibi->native;
  } else if (a->h_alibi) {
    pkv_status st = stage_up(ctx, 0, a->h_alibi,
                             (size_t)a->num_q_heads * sizeof(float));
    if (st != PKV_OK) return st;
    l.alibi = (const float *)sc;
  }
  if (plan_sinks) {
    l.sinks = (const float *)a->plan->sinks->native; /* the plan's copy */
  } else if (a->h_sinks) {
    size_t at = alibi_bytes - sinks_bytes;
    pkv_status st = stage_up(ctx, at, a->h_sinks,
                             (size_t)a->num_q_heads * sizeof(float));
    if (st != PKV_OK) return st;
    l.sinks = (const float *)(sc + at);
  }
  if (l.num_parts > 1) {
    l.part_o = (float *)(sc + alibi_bytes);
    l.part_ml = (float *)(sc + alibi_bytes + po_bytes);
  }
  LAUNCH_CHECK(ctx,
               a->max_q_len <= 1 ? "launch of pkv_decode"
                                 : "launch of pkv_prefill",
               ks->attention(&l));
  return PKV_OK;
}

static long long words_per_page(const pkv_cache_geometry *g) {
  return (long long)(g->page_bytes / 16);
}

static pkv_status hip_copy_pages(pkv_context *ctx, const pkv_copy_args *a) {
  pkv_hip_impl *im = impl_of(ctx);
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  SET_DEVICE(ctx, im);
  const int32_t *pairs = a->pairs ? (const int32_t *)a->pairs->native : NULL;
  if (!pairs) {
    size_t bytes = (size_t)a->n * 2 * sizeof(int32_t);
    pkv_status st = need_scratch(ctx, bytes);
    if (st == PKV_OK) st = stage_up(ctx, 0, a->h_pairs, bytes);
    if (st != PKV_OK) return st;
    pairs = (const int32_t *)im->scratch;
  }
  for (long long i0 = 0; i0 < a->n; i0 += PKV_HIP_MAX_GRID_YZ) {
    long long n = a->n - i0 < PKV_HIP_MAX_GRID_YZ ? a->n - i0
                                                  : PKV_HIP_MAX_GRID_YZ;
    for (int b = 0; b < a->num_pools; b++)
      LAUNCH_CHECK(ctx, "launch of pkv_copy_pages",
                   pkv__hip_launch_copy_pages(im->stream, a->pools[b]->native,
                                             pairs + 2 * i0, n,
                                             words_per_page(a->geom)));
  }
  return PKV_OK;
}

/* Device <-> host tier: the page list travels once; per pool buffer one
 * gather (scatter) kernel over every page into (from) one device staging
 * area laid out like the host tier's rows; one copy per direction between
 * it and pinned memory; the host rows are then filled (read) from there.
 * Host page hp of pool b lives at host_base + (hp * num_pools + b) *
 * page_bytes, so a row of num_pools pages is contiguous on both sides. */
static pkv_status move_pages(pkv_context *ctx, const pkv_host_move_args *a,
                             int to_host) {
  pkv_hip_impl *im = impl_of(ctx);
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  SET_DEVICE(ctx, im);
  size_t unit = (size_t)a->num_pools * a->geom->page_bytes;
  size_t list = align_up((size_t)a->n * sizeof(int32_t), 256);
  size_t total, need;
  if (!pkv__mul_size(unit, (size_t)a->n, &total) ||
      (need = list + total) < total)
    return pkv__fail(ctx, PKV_ERR_OVERFLOW, "%lld pages of %zu bytes overflow",
                    (long long)a->n, unit);
  pkv_status st = need_scratch(ctx, need);
  if (st == PKV_OK) st = need_host(ctx, total > list ? total : list);
  if (st == PKV_OK)
    st = stage_up(ctx, 0, a->h_dev_pages, (size_t)a->n * sizeof(int32_t));
  if (st != PKV_OK) return st;
  const int32_t *pages = (const int32_t *)im->scratch;
  unsigned char *stage = (unsigned char *)im->scratch + list;
  const long long wpp = words_per_page(a->geom);
  if (!to_host) {
    RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
    for (int64_t i = 0; i < a->n; i++)
      memcpy(im->host + (size_t)i * unit,
             a->host_base + (size_t)a->h_host_pages[i] * unit, unit);
    RT_CHECK(ctx, "MemcpyAsync",
             hipMemcpyAsync(stage, im->host, total, hipMemcpyHostToDevice,
                            im->stream));
  }
  for (long long i0 = 0; i0 < a->n; i0 += PKV_HIP_MAX_GRID_YZ) {
    long long n = a->n - i0 < PKV_HIP_MAX_GRID_YZ ? a->n - i0
                                                  : PKV_HIP_MAX_GRID_YZ;
    for (int b = 0; b < a->num_pools; b++)
      LAUNCH_CHECK(ctx,
                   to_host ? "launch of pkv_gather_pages"
                           : "launch of pkv_scatter_pages",
                   pkv__hip_launch_move_pages(
                       im->stream, a->pools[b]->native,
                       stage + (size_t)i0 * unit, pages + i0, n, wpp,
                       a->num_pools, b, to_host));
  }
  if (to_host)
    RT_CHECK(ctx, "MemcpyAsync",
             hipMemcpyAsync(im->host, stage, total, hipMemcpyDeviceToHost,
                            im->stream));
  /* host rows are read (written) by the caller once we return */
  RT_CHECK(ctx, "StreamSynchronize", hipStreamSynchronize(im->stream));
  if (to_host)
    for (int64_t i = 0; i < a->n; i++)
      memcpy(a->host_base + (size_t)a->h_host_pages[i] * unit,
             im->host + (size_t)i * unit, unit);
  return PKV_OK;
}

static pkv_status hip_pages_to_host(pkv_context *ctx,
                                    const pkv_host_move_args *a) {
  return move_pages(ctx, a, 1);
}

static pkv_status hip_pages_from_host(pkv_context *ctx,
                                      const pkv_host_move_args *a) {
  return move_pages(ctx, a, 0);
}

/* Every dtype has its kernels (hip_kernels_*.hip), the quantized ones
 * included: fp8 e4m3/e5m2 with per-head scales, int8 with row scales. */
static void hip_caps(pkv_context *ctx, pkv_backend_caps *out) {
  (void)ctx;
  out->dtypes |= (1u << PKV_DTYPE_FP8_E4M3) | (1u << PKV_DTYPE_FP8_E5M2) |
                 (1u << PKV_DTYPE_INT8);
}

extern "C" const pkv_backend_ops pkv__hip_backend = {
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
    hip_caps,            /* caps: every geometry the API accepts, and the
                            quantized dtypes */
    0,                   /* thread_safe: scratch and pinned staging are per
                            context, so context.c serialises the operations */
    hip_mem_upload_async,     /* mem_upload_async: pinned, on the stream */
    hip_decode_blocks_per_cu, /* decode_blocks_per_cu: occupancy API */
};
