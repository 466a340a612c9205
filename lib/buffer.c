/* SPDX-License-Identifier: Apache-2.0 */
/* Buffers: device memory of the context's backend, owned or wrapped. */
#include "alloc.h"
#include "backend.h"

#include <stdint.h>
#include <stdlib.h>

static pkv_status check_range(const pkv_buffer *buf, size_t offset,
                              size_t bytes, const char *what) {
  if (offset > buf->bytes || bytes > buf->bytes - offset)
    return pkv__fail(buf->ctx, PKV_ERR_SIZE,
                    "%s of %zu bytes at offset %zu exceeds buffer size %zu",
                    what, bytes, offset, buf->bytes);
  return PKV_OK;
}

static pkv_status new_buffer(pkv_context *ctx, void *native, size_t bytes,
                             bool owned, bool view, pkv_buffer **out) {
  pkv_buffer *b = pkv__calloc(1, sizeof *b);
  if (!b) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "buffer handle allocation");
  b->ctx = ctx;
  b->native = native;
  b->bytes = bytes;
  b->owned = owned;
  b->view = view;
  /* An OpenCL cl_mem is a handle whose memory the runtime aligns (to
   * CL_DEVICE_MEM_BASE_ADDR_ALIGN); other backends' handles are addresses. */
  b->aligned16 = ctx->ops->kind == PKV_BACKEND_OPENCL ||
                 ((uintptr_t)native & 15u) == 0;
  *out = b;
  return PKV_OK;
}

pkv_status pkv_buffer_create(pkv_context *ctx, size_t bytes, pkv_buffer **out) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  if (bytes == 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "bytes is 0: a buffer needs a size");
  void *native = NULL;
  pkv_status st = ctx->ops->mem_alloc(ctx, bytes, &native);
  if (st != PKV_OK) return st;
  st = new_buffer(ctx, native, bytes, true, false, out);
  if (st != PKV_OK) ctx->ops->mem_free(ctx, native);
  return st;
}

pkv_status pkv_buffer_wrap(pkv_context *ctx, void *native, size_t bytes,
                           pkv_buffer **out) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  if (!native) return pkv__fail(ctx, PKV_ERR_NULL, "native is NULL");
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  if (bytes == 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "bytes is 0: a buffer needs a size");
  return new_buffer(ctx, native, bytes, false, false, out);
}

pkv_status pkv__buffer_make_view(pkv_context *ctx, void *native, size_t bytes,
                                pkv_buffer **out) {
  return new_buffer(ctx, native, bytes, false, true, out);
}

void pkv__buffer_free_view(pkv_buffer *buf) { pkv__free(buf); }

pkv_status pkv_buffer_upload(pkv_buffer *buf, size_t offset, const void *src,
                             size_t bytes) {
  if (!buf) return pkv__fail(NULL, PKV_ERR_NULL, "buf is NULL");
  if (!src && bytes) return pkv__fail(buf->ctx, PKV_ERR_NULL, "src is NULL");
  pkv_status st = check_range(buf, offset, bytes, "upload");
  if (st != PKV_OK || bytes == 0) return st;
  return buf->ctx->ops->mem_upload(buf->ctx, buf->native, offset, src, bytes);
}

pkv_status pkv_buffer_download(pkv_buffer *buf, size_t offset, void *dst,
                               size_t bytes) {
  if (!buf) return pkv__fail(NULL, PKV_ERR_NULL, "buf is NULL");
  if (!dst && bytes) return pkv__fail(buf->ctx, PKV_ERR_NULL, "dst is NULL");
  pkv_status st = check_range(buf, offset, bytes, "download");
  if (st != PKV_OK || bytes == 0) return st;
  return buf->ctx->ops->mem_download(buf->ctx, buf->native, offset, dst, bytes);
}

pkv_status pkv_buffer_copy(pkv_buffer *dst, size_t dst_offset, pkv_buffer *src,
                           size_t src_offset, size_t bytes) {
  if (!dst) return pkv__fail(NULL, PKV_ERR_NULL, "dst is NULL");
  if (!src) return pkv__fail(dst->ctx, PKV_ERR_NULL, "src is NULL");
  if (dst->ctx != src->ctx)
    return pkv__fail(dst->ctx, PKV_ERR_INVALID,
                    "src and dst belong to different contexts");
  pkv_status st = check_range(dst, dst_offset, bytes, "copy destination");
  if (st == PKV_OK) st = check_range(src, src_offset, bytes, "copy source");
  if (st != PKV_OK || bytes == 0) return st;
  return dst->ctx->ops->mem_copy(dst->ctx, dst->native, dst_offset, src->native,
                                 src_offset, bytes);
}

size_t pkv_buffer_size(const pkv_buffer *buf) { return buf ? buf->bytes : 0; }

void *pkv_buffer_native(const pkv_buffer *buf) {
  return buf ? buf->native : NULL;
}

void pkv_buffer_destroy(pkv_buffer *buf) {
  if (!buf || buf->view) return;
  if (buf->owned) buf->ctx->ops->mem_free(buf->ctx, buf->native);
  pkv__free(buf);
}
