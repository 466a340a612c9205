/* The CPU reference backend: host memory and plain loops. The attention,
 * K/V write and page operations are filled in by the CPU backend work. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void cpu_info(pkv_device_info *d) {
  memset(d, 0, sizeof *d);
  d->backend = PKV_BACKEND_CPU;
  d->index = 0;
  d->type = PKV_DEVICE_CPU;
  strcpy(d->name, "CPU reference");
  strcpy(d->vendor, "pagedkv");
  strcpy(d->driver, pkv_version_string());
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  if (pages > 0 && psz > 0)
    d->global_mem_bytes = (uint64_t)pages * (uint64_t)psz;
  d->max_alloc_bytes = d->global_mem_bytes;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  d->compute_units = n > 0 ? (int)n : 1;
  d->wave_size = 1;
}

static pkv_status cpu_list_devices(pkv_device_info *out, int capacity,
                                   int *count) {
  *count = 1;
  if (capacity > 0) cpu_info(&out[0]);
  return PKV_OK;
}

static pkv_status cpu_init(pkv_context *ctx) {
  if (ctx->desc.device > 0)
    return pkv_fail(ctx, PKV_ERR_RANGE,
                    "device %d out of range: the CPU backend has 1 device",
                    ctx->desc.device);
  cpu_info(&ctx->info);
  return PKV_OK;
}

static void cpu_fini(pkv_context *ctx) { (void)ctx; }

static pkv_status cpu_mem_alloc(pkv_context *ctx, size_t bytes, void **native) {
  /* 64-byte alignment so that vector loads in the reference never split. */
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded);
  if (!p)
    return pkv_fail(ctx, PKV_ERR_NO_MEMORY, "host allocation of %zu bytes",
                    bytes);
  *native = p;
  return PKV_OK;
}

static void cpu_mem_free(pkv_context *ctx, void *native) {
  (void)ctx;
  free(native);
}

static pkv_status cpu_mem_upload(pkv_context *ctx, void *native, size_t offset,
                                 const void *src, size_t bytes) {
  (void)ctx;
  memcpy((char *)native + offset, src, bytes);
  return PKV_OK;
}

static pkv_status cpu_mem_download(pkv_context *ctx, void *native,
                                   size_t offset, void *dst, size_t bytes) {
  (void)ctx;
  memcpy(dst, (const char *)native + offset, bytes);
  return PKV_OK;
}

static pkv_status cpu_mem_copy(pkv_context *ctx, void *dst, size_t dst_offset,
                               void *src, size_t src_offset, size_t bytes) {
  (void)ctx;
  memmove((char *)dst + dst_offset, (const char *)src + src_offset, bytes);
  return PKV_OK;
}

static pkv_status cpu_synchronize(pkv_context *ctx) {
  (void)ctx;
  return PKV_OK;
}

const pkv_backend_ops pkv_cpu_backend = {
    .kind = PKV_BACKEND_CPU,
    .name = "cpu",
    .list_devices = cpu_list_devices,
    .init = cpu_init,
    .fini = cpu_fini,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_upload = cpu_mem_upload,
    .mem_download = cpu_mem_download,
    .mem_copy = cpu_mem_copy,
    .synchronize = cpu_synchronize,
};
