/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenCL backend: context and queue (our own, or the engine's,
 * retained but never owned), device memory as cl_mem, and the table of
 * operations. Kernels and their launches live in ocl_ops.c. */
#include "alloc.h"
#include "ocl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void choose_cache_dir(pkv_context *ctx, pkv_ocl *o) {
  o->cache_dir[0] = '\0';
  const char *off = getenv("PKV_NO_BINARY_CACHE");
  if ((ctx->desc.flags & PKV_CTX_NO_BINARY_CACHE) ||
      (off && *off && strcmp(off, "0") != 0))
    return;
  const char *dir = ctx->desc.cache_dir, *sub = "";
  if (!dir || !*dir) dir = getenv("PKV_CACHE_DIR");
  if (!dir || !*dir) {
    dir = getenv("XDG_CACHE_HOME");
    sub = "/pagedkv";
  }
  if (!dir || !*dir) {
    dir = getenv("HOME");
    sub = "/.cache/pagedkv";
  }
  if (!dir || !*dir) return;
  int n = snprintf(o->cache_dir, sizeof o->cache_dir, "%s%s", dir, sub);
  if (n < 0 || (size_t)n >= sizeof o->cache_dir) o->cache_dir[0] = '\0';
}

static pkv_status adopt_native(pkv_context *ctx, pkv_ocl *o) {
  cl_context c = (cl_context)ctx->desc.native_context;
  cl_command_queue q = (cl_command_queue)ctx->desc.native_queue;
  if (!c || !q)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->native_context and desc->native_queue must be "
                    "given together for OpenCL (got %s context, %s queue)",
                    c ? "a" : "no", q ? "a" : "no");
  cl_context qc = NULL;
  cl_int err = clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof qc, &qc, NULL);
  if (err != CL_SUCCESS)
    return pkv__ocl_fail(ctx, "clGetCommandQueueInfo(CL_QUEUE_CONTEXT)", err);
  if (qc != c)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->native_queue does not belong to desc->native_context");
  err = clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof o->device, &o->device,
                              NULL);
  if (err != CL_SUCCESS)
    return pkv__ocl_fail(ctx, "clGetCommandQueueInfo(CL_QUEUE_DEVICE)", err);
  err = clGetDeviceInfo(o->device, CL_DEVICE_PLATFORM, sizeof o->platform,
                        &o->platform, NULL);
  if (err != CL_SUCCESS)
    return pkv__ocl_fail(ctx, "clGetDeviceInfo(CL_DEVICE_PLATFORM)", err);
  if ((err = clRetainContext(c)) != CL_SUCCESS)
    return pkv__ocl_fail(ctx, "clRetainContext", err);
  if ((err = clRetainCommandQueue(q)) != CL_SUCCESS) {
    clReleaseContext(c);
    return pkv__ocl_fail(ctx, "clRetainCommandQueue", err);
  }
  o->context = c;
  o->queue = q;
  return PKV_OK;
}

static pkv_status create_own(pkv_context *ctx, pkv_ocl *o) {
  pkv_status st = pkv__ocl_choose_device(ctx, &o->platform, &o->device);
  if (st != PKV_OK) return st;
  cl_int err;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                   (cl_context_properties)o->platform, 0};
  o->context = clCreateContext(props, 1, &o->device, NULL, NULL, &err);
  if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clCreateContext", err);
  o->queue = clCreateCommandQueue(o->context, o->device, 0, &err);
  if (err != CL_SUCCESS) {
    clReleaseContext(o->context);
    o->context = NULL;
    return pkv__ocl_fail(ctx, "clCreateCommandQueue", err);
  }
  return PKV_OK;
}

static void release_all(pkv_ocl *o) {
  pkv__ocl_programs_release(o);
  if (o->part_o) clReleaseMemObject(o->part_o);
  if (o->part_ml) clReleaseMemObject(o->part_ml);
  if (o->alibi_buf) clReleaseMemObject(o->alibi_buf);
  if (o->sinks_buf) clReleaseMemObject(o->sinks_buf);
  if (o->scales_buf) clReleaseMemObject(o->scales_buf);
  if (o->dummy) clReleaseMemObject(o->dummy);
  if (o->queue) clReleaseCommandQueue(o->queue);
  if (o->context) clReleaseContext(o->context);
  pkv__free(o);
}

static pkv_status init_locked(pkv_context *ctx);

static pkv_status ocl_init(pkv_context *ctx) {
  pkv__ocl_startup_lock();
  pkv_status st = init_locked(ctx);
  pkv__ocl_startup_unlock();
  return st;
}

static pkv_status init_locked(pkv_context *ctx) {
  pkv_ocl *o = pkv__calloc(1, sizeof *o);
  if (!o) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "OpenCL backend state");
  ctx->impl = o;
  pkv_status st = (ctx->desc.native_context || ctx->desc.native_queue)
                      ? adopt_native(ctx, o)
                      : create_own(ctx, o);
  if (st == PKV_OK) {
    cl_int err;
    o->dummy = clCreateBuffer(o->context, CL_MEM_READ_WRITE, 64, NULL, &err);
    if (err != CL_SUCCESS) st = pkv__ocl_fail(ctx, "clCreateBuffer", err);
  }
  if (st != PKV_OK) {
    release_all(o);
    ctx->impl = NULL;
    return st;
  }
  pkv__ocl_fill_info(o->platform, o->device, pkv__ocl_device_index(o->device),
                    &ctx->info);
  pkv__ocl_choose_kernels(o);
  if (ctx->info.index < 0) ctx->info.index = 0;
  if (clGetPlatformInfo(o->platform, CL_PLATFORM_NAME, sizeof o->platform_name,
                        o->platform_name, NULL) != CL_SUCCESS)
    o->platform_name[0] = '\0';
  o->platform_name[sizeof o->platform_name - 1] = '\0';
  if (clGetDeviceInfo(o->device, CL_DEVICE_VERSION, sizeof o->device_version,
                      o->device_version, NULL) != CL_SUCCESS)
    o->device_version[0] = '\0';
  o->device_version[sizeof o->device_version - 1] = '\0';
  choose_cache_dir(ctx, o);
  return PKV_OK;
}

static void ocl_fini(pkv_context *ctx) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  if (!o) return;
  clFinish(o->queue);
  pkv__ocl_startup_lock();
  release_all(o);
  pkv__ocl_startup_unlock();
  ctx->impl = NULL;
}

static pkv_status ocl_mem_alloc(pkv_context *ctx, size_t bytes, void **native) {
  cl_int err;
  pkv_ocl_of(ctx)->stat_allocs++;
  cl_mem m = clCreateBuffer(pkv_ocl_of(ctx)->context, CL_MEM_READ_WRITE, bytes,
                            NULL, &err);
  if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clCreateBuffer", err);
  *native = m;
  return PKV_OK;
}

static void ocl_mem_free(pkv_context *ctx, void *native) {
  (void)ctx;
  if (native) clReleaseMemObject((cl_mem)native);
}

static pkv_status ocl_mem_upload(pkv_context *ctx, void *native, size_t offset,
                                 const void *src, size_t bytes) {
  /* Blocking: the caller may reuse src as soon as we return. */
  pkv_ocl_of(ctx)->stat_waits++;
  cl_int err = clEnqueueWriteBuffer(pkv_ocl_of(ctx)->queue, (cl_mem)native,
                                    CL_TRUE, offset, bytes, src, 0, NULL, NULL);
  return err == CL_SUCCESS ? PKV_OK
                           : pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
}

/* A plan's array (lib/plan.c), without a host wait: a private host copy
 * of src written by a non-blocking write, freed by the write's completion
 * callback. The queue is in order, so the runs queued after the build
 * read what the build wrote, and a blocking write would have made the host
 * wait for every kernel queued before it (the previous layers). */
static void CL_CALLBACK free_staged(cl_event ev, cl_int status, void *p) {
  (void)ev;
  (void)status;
  pkv__free(p);
}

static pkv_status ocl_mem_upload_async(pkv_context *ctx, void *native,
                                       size_t offset, const void *src,
                                       size_t bytes, void *stream) {
  (void)stream; /* one in-order queue per context */
  void *h = pkv__malloc(bytes);
  if (!h)
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "upload staging of %zu bytes",
                    bytes);
  memcpy(h, src, bytes);
  cl_event ev;
  cl_int err = clEnqueueWriteBuffer(pkv_ocl_of(ctx)->queue, (cl_mem)native,
                                    CL_FALSE, offset, bytes, h, 0, NULL, &ev);
  if (err != CL_SUCCESS) {
    pkv__free(h);
    return pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
  }
  if (clSetEventCallback(ev, CL_COMPLETE, free_staged, h) != CL_SUCCESS) {
    /* no callback: wait for the write, then free (correct, not async) */
    pkv_ocl_of(ctx)->stat_waits++;
    clWaitForEvents(1, &ev);
    pkv__free(h);
  }
  clReleaseEvent(ev);
  return PKV_OK;
}

static pkv_status ocl_mem_download(pkv_context *ctx, void *native,
                                   size_t offset, void *dst, size_t bytes) {
  pkv_ocl_of(ctx)->stat_waits++;
  cl_int err = clEnqueueReadBuffer(pkv_ocl_of(ctx)->queue, (cl_mem)native,
                                   CL_TRUE, offset, bytes, dst, 0, NULL, NULL);
  return err == CL_SUCCESS ? PKV_OK
                           : pkv__ocl_fail(ctx, "clEnqueueReadBuffer", err);
}

static pkv_status ocl_mem_copy(pkv_context *ctx, void *dst, size_t dst_offset,
                               void *src, size_t src_offset, size_t bytes) {
  cl_command_queue q = pkv_ocl_of(ctx)->queue;
  cl_int err;
  if (dst == src && (dst_offset < src_offset ? src_offset - dst_offset
                                             : dst_offset - src_offset) < bytes) {
    /* Overlapping ranges of one buffer: OpenCL forbids that copy, so go
     * through a temporary buffer (memmove semantics, as on the CPU). */
    cl_mem tmp = clCreateBuffer(pkv_ocl_of(ctx)->context, CL_MEM_READ_WRITE,
                                bytes, NULL, &err);
    if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clCreateBuffer", err);
    err = clEnqueueCopyBuffer(q, (cl_mem)src, tmp, src_offset, 0, bytes, 0,
                              NULL, NULL);
    if (err == CL_SUCCESS)
      err = clEnqueueCopyBuffer(q, tmp, (cl_mem)dst, 0, dst_offset, bytes, 0,
                                NULL, NULL);
    clReleaseMemObject(tmp);
  } else {
    err = clEnqueueCopyBuffer(q, (cl_mem)src, (cl_mem)dst, src_offset,
                              dst_offset, bytes, 0, NULL, NULL);
  }
  return err == CL_SUCCESS ? PKV_OK
                           : pkv__ocl_fail(ctx, "clEnqueueCopyBuffer", err);
}

static pkv_status ocl_synchronize(pkv_context *ctx) {
  pkv_ocl_of(ctx)->stat_waits++;
  cl_int err = clFinish(pkv_ocl_of(ctx)->queue);
  return err == CL_SUCCESS ? PKV_OK : pkv__ocl_fail(ctx, "clFinish", err);
}

/* The portable kernels read and write fp8 and int8 (kernels/common.cl). */
static void ocl_caps(pkv_context *ctx, pkv_backend_caps *out) {
  (void)ctx;
  out->dtypes |= (1u << PKV_DTYPE_FP8_E4M3) | (1u << PKV_DTYPE_FP8_E5M2) |
                 (1u << PKV_DTYPE_INT8);
}

const pkv_backend_ops pkv__opencl_backend = {
    .kind = PKV_BACKEND_OPENCL,
    .name = "opencl",
    .list_devices = pkv__ocl_list_devices,
    .init = ocl_init,
    .fini = ocl_fini,
    .mem_alloc = ocl_mem_alloc,
    .mem_free = ocl_mem_free,
    .mem_upload = ocl_mem_upload,
    .mem_download = ocl_mem_download,
    .mem_copy = ocl_mem_copy,
    .synchronize = ocl_synchronize,
    .write_kv = pkv__ocl_write_kv,
    .attention = pkv__ocl_attention,
    .copy_pages = pkv__ocl_copy_pages,
    .pages_to_host = pkv__ocl_pages_to_host,
    .pages_from_host = pkv__ocl_pages_from_host,
    .caps = ocl_caps,
    .mem_upload_async = ocl_mem_upload_async,
};
