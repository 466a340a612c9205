/* SPDX-License-Identifier: Apache-2.0 */
/* The CPU reference backend: host memory and plain loops. Attention lives
 * in cpu_attention.c; this file holds memory, the K/V write and page moves. */
#include "alloc.h"
#include "backend.h"
#include "cpu_attention.h"
#include "dtype_convert.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "device %d out of range: the CPU backend has 1 device",
                    ctx->desc.device);
  cpu_info(&ctx->info);
  return PKV_OK;
}

static void cpu_fini(pkv_context *ctx) { (void)ctx; }

/* Every allocation carries a 64-byte header in front of the pointer handed
 * out, recording how it was made, so that mem_free can undo it. Sizes from
 * 1 MiB up are mapped with MAP_NORESERVE: a pool with billions of token
 * slots can then exist while only the pages an engine touches take memory
 * (the kernel zero-fills them on first touch). */
#define CPU_HDR 64
#define CPU_MMAP_MIN ((size_t)1 << 20)
#define CPU_MAGIC_HEAP 0x706b7668u /* "pkvh" */
#define CPU_MAGIC_MMAP 0x706b766du /* "pkvm" */

typedef struct cpu_hdr {
  unsigned magic;
  size_t total; /* bytes mapped or allocated, header included */
} cpu_hdr;

static pkv_status cpu_mem_alloc(pkv_context *ctx, size_t bytes, void **native) {
  /* 64-byte alignment so that vector loads in the reference never split. */
  if (bytes > (size_t)-1 - 2 * CPU_HDR)
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "host allocation of %zu bytes overflows size_t", bytes);
  size_t total = ((bytes + 63) & ~(size_t)63) + CPU_HDR;
  unsigned char *base;
  unsigned magic;
  if (bytes >= CPU_MMAP_MIN) {
    /* Counted as a host allocation, so fault injection reaches it. */
    void *m = pkv__alloc_fault() ? MAP_FAILED : mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
      return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                      "host mapping of %zu bytes (mmap) failed", bytes);
    base = m;
    magic = CPU_MAGIC_MMAP;
  } else {
    base = pkv__aligned_alloc(64, total);
    if (!base)
      return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "host allocation of %zu bytes",
                      bytes);
    /* Zeroed like the mapped pools, so that a slot never written reads the
     * same in every run (and no earlier heap content shows through). */
    memset(base, 0, total);
    magic = CPU_MAGIC_HEAP;
  }
  cpu_hdr h = {magic, total};
  memcpy(base, &h, sizeof h);
  *native = base + CPU_HDR;
  return PKV_OK;
}

static void cpu_mem_free(pkv_context *ctx, void *native) {
  (void)ctx;
  if (!native) return;
  unsigned char *base = (unsigned char *)native - CPU_HDR;
  cpu_hdr h;
  memcpy(&h, base, sizeof h);
  if (h.magic == CPU_MAGIC_MMAP)
    munmap(base, h.total);
  else
    pkv__free(base);
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

static pkv_status cpu_write_kv(pkv_context *ctx, const pkv_write_args *a) {
  const pkv_cache_geometry *g = a->geom;
  const size_t esz = pkv_dtype_size(g->dtype);
  const int64_t *slots =
      a->h_slots ? a->h_slots : (const int64_t *)a->slots->native;
  const int64_t limit = g->num_pages * (int64_t)g->page_size;
  /* The slot list may come straight from the engine: check all of it
   * before the first write so that a bad entry changes nothing. */
  for (int64_t i = 0; i < a->n; i++)
    if (slots[i] >= limit)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "slots[%lld] = %lld is past the pool's %lld token slots "
                      "(num_pages %lld x page_size %d)",
                      (long long)i, (long long)slots[i], (long long)limit,
                      (long long)g->num_pages, g->page_size);
  const size_t row = (size_t)g->head_dim * esz;
  unsigned char *kp = a->k_pool->native, *vp = a->v_pool->native;
  const unsigned char *k = a->k->native, *v = a->v->native;
  int64_t kts, khs, vts, vhs;
  pkv__write_strides(a, &kts, &khs, &vts, &vhs);
  for (int64_t i = 0; i < a->n; i++) {
    if (slots[i] < 0) continue; /* padding */
    int64_t page = slots[i] / g->page_size, off = slots[i] % g->page_size;
    for (int32_t h = 0; h < g->num_kv_heads; h++) {
      size_t dst = (size_t)(page * g->page_stride + h * g->head_stride +
                            off * g->token_stride) *
                   esz;
      size_t ks = (size_t)(a->k_off + i * kts + h * khs) * esz;
      size_t vs = (size_t)(a->v_off + i * vts + h * vhs) * esz;
      if (a->convert) {
        /* element by element through the shared rounding helpers */
        const size_t ses = pkv_dtype_size(a->src_dtype);
        for (int32_t d = 0; d < g->head_dim; d++) {
          pkv_store_elem(g->dtype, kp + dst, d,
                         pkv_load_elem(a->src_dtype, k + ks / esz * ses, d));
          pkv_store_elem(g->dtype, vp + dst, d,
                         pkv_load_elem(a->src_dtype, v + vs / esz * ses, d));
        }
        continue;
      }
      memcpy(kp + dst, k + ks, row);
      memcpy(vp + dst, v + vs, row);
    }
  }
  return PKV_OK;
}

static pkv_status cpu_copy_pages(pkv_context *ctx, const pkv_copy_args *a) {
  (void)ctx;
  const size_t pb = a->geom->page_bytes;
  for (int32_t b = 0; b < a->num_pools; b++) {
    unsigned char *p = a->pools[b]->native;
    for (int64_t i = 0; i < a->n; i++) {
      int32_t src = a->h_pairs[2 * i], dst = a->h_pairs[2 * i + 1];
      if (src != dst) memcpy(p + (size_t)dst * pb, p + (size_t)src * pb, pb);
    }
  }
  return PKV_OK;
}

static unsigned char *host_page(const pkv_host_move_args *a, int64_t i,
                                int32_t b) {
  return a->host_base +
         ((size_t)a->h_host_pages[i] * (size_t)a->num_pools + (size_t)b) *
             a->geom->page_bytes;
}

static unsigned char *dev_page(const pkv_host_move_args *a, int64_t i,
                               int32_t b) {
  return (unsigned char *)a->pools[b]->native +
         (size_t)a->h_dev_pages[i] * a->geom->page_bytes;
}

static pkv_status cpu_pages_to_host(pkv_context *ctx,
                                    const pkv_host_move_args *a) {
  (void)ctx;
  for (int64_t i = 0; i < a->n; i++)
    for (int32_t b = 0; b < a->num_pools; b++)
      memcpy(host_page(a, i, b), dev_page(a, i, b), a->geom->page_bytes);
  return PKV_OK;
}

static pkv_status cpu_pages_from_host(pkv_context *ctx,
                                      const pkv_host_move_args *a) {
  (void)ctx;
  for (int64_t i = 0; i < a->n; i++)
    for (int32_t b = 0; b < a->num_pools; b++)
      memcpy(dev_page(a, i, b), host_page(a, i, b), a->geom->page_bytes);
  return PKV_OK;
}

const pkv_backend_ops pkv__cpu_backend = {
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
    .write_kv = cpu_write_kv,
    .attention = pkv__cpu_attention,
    .copy_pages = cpu_copy_pages,
    .pages_to_host = cpu_pages_to_host,
    .pages_from_host = cpu_pages_from_host,
    /* No mutable per-context state: concurrent attention calls of threads
     * sharing a CPU context each run at full width. */
    .thread_safe = 1,
};
