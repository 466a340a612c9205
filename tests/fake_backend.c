/* SPDX-License-Identifier: Apache-2.0 */
/* A backend module for tests/test_modules: claims the HIP slot (it is
 * built as backend-hip.so), "runs" on host memory, and limits its
 * capabilities (f32 and f16, head dims 64 and 128, pages of at most 64
 * tokens) so that cache creation's refusal can be seen. Its memory comes
 * from the host services, as a real module's host allocations do. */
#include "alloc.h"
#include "backend.h"

#include <stdio.h>
#include <string.h>

static pkv_status fake_list(pkv_device_info *out, int capacity, int *count) {
  *count = 1;
  if (capacity > 0) {
    memset(out, 0, sizeof *out);
    out->backend = PKV_BACKEND_HIP;
    out->type = PKV_DEVICE_CPU;
    snprintf(out->name, sizeof out->name, "fake module device");
    snprintf(out->vendor, sizeof out->vendor, "pagedkv tests");
    out->compute_units = 1;
    out->wave_size = 1;
  }
  return PKV_OK;
}

static pkv_status fake_init(pkv_context *ctx) {
  if (ctx->desc.device > 0)
    return pkv__fail(ctx, PKV_ERR_RANGE, "fake device %d out of range (0..0)",
                     ctx->desc.device);
  fake_list(&ctx->info, 1, &(int){0});
  return PKV_OK;
}

static void fake_fini(pkv_context *ctx) { (void)ctx; }

static pkv_status fake_alloc(pkv_context *ctx, size_t bytes, void **native) {
  *native = pkv__calloc(1, bytes ? bytes : 1);
  if (!*native)
    return pkv__fail(ctx, PKV_ERR_DEVICE, "fake allocation of %zu bytes",
                     bytes);
  return PKV_OK;
}

static void fake_free(pkv_context *ctx, void *native) {
  (void)ctx;
  pkv__free(native);
}

static pkv_status fake_upload(pkv_context *ctx, void *native, size_t offset,
                              const void *src, size_t bytes) {
  (void)ctx;
  memcpy((unsigned char *)native + offset, src, bytes);
  return PKV_OK;
}

static pkv_status fake_download(pkv_context *ctx, void *native, size_t offset,
                                void *dst, size_t bytes) {
  (void)ctx;
  memcpy(dst, (unsigned char *)native + offset, bytes);
  return PKV_OK;
}

static pkv_status fake_copy(pkv_context *ctx, void *dst, size_t dst_offset,
                            void *src, size_t src_offset, size_t bytes) {
  (void)ctx;
  memmove((unsigned char *)dst + dst_offset,
          (unsigned char *)src + src_offset, bytes);
  return PKV_OK;
}

static pkv_status fake_sync(pkv_context *ctx) {
  (void)ctx;
  return PKV_OK;
}

static void fake_caps(pkv_context *ctx, pkv_backend_caps *c) {
  (void)ctx;
  c->dtypes = (1u << PKV_DTYPE_F32) | (1u << PKV_DTYPE_F16);
  c->num_head_dims = 2;
  c->head_dims[0] = 64;
  c->head_dims[1] = 128;
  c->max_page_size = 64;
}

/* write_kv, attention and the page moves are optional: left NULL. */
const pkv_backend_ops pkv__fake_backend = {
    .kind = PKV_BACKEND_HIP,
    .name = "fake",
    .list_devices = fake_list,
    .init = fake_init,
    .fini = fake_fini,
    .mem_alloc = fake_alloc,
    .mem_free = fake_free,
    .mem_upload = fake_upload,
    .mem_download = fake_download,
    .mem_copy = fake_copy,
    .synchronize = fake_sync,
    .caps = fake_caps,
};
