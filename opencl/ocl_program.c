/* SPDX-License-Identifier: Apache-2.0 */
/* Programs: the embedded kernel sources built for one device with the
 * cache's constants (head dim, dtype) and the tile sizes as -D options.
 * Each (head dim, dtype) is built once per context and kept; built
 * binaries also go to an on-disk cache (ocl_bincache.c), so a second
 * process skips the compiler. */
#include "alloc.h"
#include "ocl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

static const char *const kernel_names[PKV_K_COUNT] = {
    "pkv_write_kv",   "pkv_decode",       "pkv_decode_merge", "pkv_prefill",
    "pkv_copy_pages", "pkv_gather_pages", "pkv_scatter_pages",
    "pkv_decode_plan", "pkv_decode_plan_merge",
    "pkv_decode_gpu", "pkv_decode_gpu_u", "pkv_decode_gpu_plan",
    "pkv_decode_gpu_plan_u"};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Keys per prefill tile: K and V tiles of bk x head_dim floats must fit
 * the device's local memory with room to spare. */
static int prefill_tile(cl_device_id dev, int head_dim) {
  cl_ulong local = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local,
                      NULL) != CL_SUCCESS || local == 0)
    local = 32768;
  if (local > 49152) local = 49152;
  cl_ulong budget = local - 4096;
  int bk = 4096 / head_dim;
  if (bk > 64) bk = 64;
  if (bk < 8) bk = 8;
  while (bk > 4 && (cl_ulong)bk * head_dim * 8 > budget) bk /= 2;
  return bk;
}

/* Keys per decode partition: a CPU device runs few work-groups at a time
 * and pays a fixed cost per group, so it gets longer partitions when its
 * local memory (scores + row offsets) holds them. */
static int decode_part(cl_device_id dev) {
  cl_device_type t = 0;
  cl_ulong local = 0;
  clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof t, &t, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
  if ((t & CL_DEVICE_TYPE_CPU) &&
      local >= (cl_ulong)PKV_OCL_PART_CPU * (PKV_OCL_MAXG * 4 + 8) + 32768)
    return PKV_OCL_PART_CPU;
  return PKV_OCL_PART;
}

static void build_options(cl_device_id dev, const pkv_ocl_kernels *k,
                          int head_dim, int dtype, int part, char *buf,
                          size_t cap) {
  int n = snprintf(buf, cap,
                   "-cl-std=CL1.2 -DPKV_HEAD_DIM=%d -DPKV_DTYPE=%d "
                   "-DPKV_DEC_WG=%d -DPKV_PART=%d -DPKV_MAXG=%d -DPKV_PF_BR=%d "
                   "-DPKV_PF_BK=%d",
                   head_dim, dtype, PKV_OCL_DEC_WG, part, PKV_OCL_MAXG,
                   PKV_OCL_PF_BR, prefill_tile(dev, head_dim));
  /* The GPU kernel only where it runs: a CPU device's programs stay as
   * they were (and as fast to build). */
  if ((k->gpu || k->mma) && n > 0 && (size_t)n < cap)
    n += snprintf(buf + n, cap - (size_t)n,
                  "%s -DPKV_WAVE=%d -DPKV_STAGES=%d%s%s%s",
                  k->gpu ? " -DPKV_WITH_GPU" : "", k->wave, k->stages,
                  k->native_sg ? " -DPKV_SG_NATIVE" : "",
                  k->poison ? " -DPKV_EMU_POISON" : "",
                  k->late_wait ? " -DPKV_EMU_LATE_WAIT" : "");
  /* The matrix-unit prefill (kernels/prefill_mma.cl) under the lane map
   * of k->frag; the f16/bf16 and the quantized (fp8, int8: f16 operands)
   * programs have it. */
  if (k->mma && dtype >= 1 && dtype <= 5 && n > 0 && (size_t)n < cap)
    snprintf(buf + n, cap - (size_t)n, " -DPKV_WITH_MMA -DPKV_FRAG=%d", k->frag);
}

/* The cache key: everything that can change the binary. */
static void cache_key(pkv_context *ctx, const char *options,
                      unsigned char key[16]) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  XXH3_state_t *st = XXH3_createState();
  XXH128_hash_t h = {0, 0};
  if (st) {
    XXH3_128bits_reset(st);
    const char *parts[] = {"pagedkv-opencl-1", ctx->info.name,
                           ctx->info.vendor, ctx->info.driver,
                           o->device_version, o->platform_name, options};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
      XXH3_128bits_update(st, parts[i], strlen(parts[i]) + 1);
    for (int i = 0; i < pkv__ocl_kernel_count; i++)
      XXH3_128bits_update(st, pkv__ocl_kernel_sources[i],
                          strlen(pkv__ocl_kernel_sources[i]) + 1);
    h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
  }
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  memcpy(key, c.digest, 16);
}

/* What an entry is bound to: everything the key hashes, in clear, plus the
 * program's parameters, so that a loaded entry is checked against them
 * directly and not only through a 128-bit name. */
static void binding_text(pkv_context *ctx, const char *options, int head_dim,
                         int dtype, char *buf, size_t cap) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  XXH3_state_t *st = XXH3_createState();
  XXH128_hash_t h = {0, 0};
  if (st) {
    XXH3_128bits_reset(st);
    for (int i = 0; i < pkv__ocl_kernel_count; i++)
      XXH3_128bits_update(st, pkv__ocl_kernel_sources[i],
                          strlen(pkv__ocl_kernel_sources[i]) + 1);
    h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
  }
  snprintf(buf, cap,
           "pagedkv-opencl-2\ndevice=%s\nvendor=%s\ndriver=%s\n"
           "platform=%s\ndevice_version=%s\noptions=%s\n"
           "sources=%016llx%016llx\nhead_dim=%d\ndtype=%d\n",
           ctx->info.name, ctx->info.vendor, ctx->info.driver, o->platform_name,
           o->device_version, options, (unsigned long long)h.high64,
           (unsigned long long)h.low64, head_dim, dtype);
}

/* The build log, shortened to leave room in the error message. */
static pkv_status build_failure(pkv_context *ctx, cl_program prog,
                                const char *options) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  char log[1400] = "";
  size_t n = 0;
  if (clGetProgramBuildInfo(prog, o->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                            &n) == CL_SUCCESS && n > 0) {
    char *full = pkv__malloc(n + 1);
    if (full) {
      if (clGetProgramBuildInfo(prog, o->device, CL_PROGRAM_BUILD_LOG, n, full,
                                NULL) == CL_SUCCESS) {
        full[n] = '\0';
        /* The first errors are the useful ones: keep the head. */
        snprintf(log, sizeof log, "%s%s", full,
                 strlen(full) >= sizeof log ? " [...]" : "");
      }
      pkv__free(full);
    }
  }
  return pkv__fail(ctx, PKV_ERR_BUILD,
                  "clBuildProgram: CL_BUILD_PROGRAM_FAILURE for the kernels "
                  "with options '%s'; build log: %s",
                  options, log[0] ? log : "(empty)");
}

static cl_program from_cache(pkv_context *ctx, const unsigned char *key,
                             const char *binding, const char *options) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  size_t size = 0;
  unsigned char *bin = pkv__ocl_bincache_load(o->cache_dir, key, binding, &size);
  if (!bin) return NULL;
  cl_int err, status = CL_SUCCESS;
  const unsigned char *bins[1] = {bin};
  cl_program prog = clCreateProgramWithBinary(o->context, 1, &o->device, &size,
                                              bins, &status, &err);
  pkv__free(bin);
  if (err != CL_SUCCESS || status != CL_SUCCESS) {
    if (prog) clReleaseProgram(prog);
    return NULL;
  }
  if (clBuildProgram(prog, 1, &o->device, options, NULL, NULL) != CL_SUCCESS) {
    clReleaseProgram(prog);
    return NULL;
  }
  return prog;
}

static void to_cache(pkv_context *ctx, cl_program prog,
                     const unsigned char *key, const char *binding) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  size_t size = 0;
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size,
                       NULL) != CL_SUCCESS || size == 0)
    return;
  unsigned char *bin = pkv__malloc(size);
  if (!bin) return;
  unsigned char *bins[1] = {bin};
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) ==
      CL_SUCCESS)
    pkv__ocl_bincache_store(o->cache_dir, key, binding, bin, size);
  pkv__free(bin);
}

static pkv_status make_kernels(pkv_context *ctx, pkv_ocl_program *p) {
  const int count = pkv_ocl_of(ctx)->kern.gpu ? PKV_K_COUNT : PKV_K_CPU_COUNT;
  for (int k = 0; k < count; k++) {
    cl_int err;
    p->kernels[k] = clCreateKernel(p->program, kernel_names[k], &err);
    if (err != CL_SUCCESS) {
      for (int j = 0; j < k; j++) clReleaseKernel(p->kernels[j]);
      memset(p->kernels, 0, sizeof p->kernels);
      return pkv__fail(ctx, PKV_ERR_DEVICE, "clCreateKernel(%s): %s (%d)",
                      kernel_names[k], pkv__ocl_error_name(err), (int)err);
    }
  }
  p->prefill_mma = NULL;
  p->prefill_mma_plan = NULL;
  if (pkv_ocl_of(ctx)->kern.mma && p->dtype >= 1 && p->dtype <= 5) {
    cl_int err;
    const char *name = "pkv_prefill_mma";
    p->prefill_mma = clCreateKernel(p->program, name, &err);
    if (err == CL_SUCCESS) {
      name = "pkv_prefill_mma_plan";
      p->prefill_mma_plan = clCreateKernel(p->program, name, &err);
    }
    if (err != CL_SUCCESS) {
      for (int j = 0; j < count; j++) clReleaseKernel(p->kernels[j]);
      memset(p->kernels, 0, sizeof p->kernels);
      if (p->prefill_mma) clReleaseKernel(p->prefill_mma);
      p->prefill_mma = NULL;
      return pkv__fail(ctx, PKV_ERR_DEVICE, "clCreateKernel(%s): %s (%d)", name,
                      pkv__ocl_error_name(err), (int)err);
    }
  }
  return PKV_OK;
}

static pkv_status build(pkv_context *ctx, int head_dim, int dtype,
                        pkv_ocl_program *p) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  char options[512];
  int part = decode_part(o->device);
  build_options(o->device, &o->kern, head_dim, dtype, part, options,
                sizeof options);
  unsigned char key[16];
  cache_key(ctx, options, key);
  char binding[2048];
  binding_text(ctx, options, head_dim, dtype, binding, sizeof binding);
  memset(p, 0, sizeof *p);
  p->head_dim = head_dim;
  p->dtype = dtype;
  p->part = part;
  if (o->cache_dir[0]) {
    p->program = from_cache(ctx, key, binding, options);
    if (p->program) {
      if (make_kernels(ctx, p) == PKV_OK) {
        p->from_binary_cache = 1;
        return PKV_OK;
      }
      /* A binary the driver accepted but that lacks our kernels is as
       * foreign as a corrupt one: rebuild from source. */
      clReleaseProgram(p->program);
      p->program = NULL;
    }
  }
  cl_int err;
  p->program = clCreateProgramWithSource(
      o->context, (cl_uint)pkv__ocl_kernel_count,
      (const char **)pkv__ocl_kernel_sources, NULL, &err);
  if (err != CL_SUCCESS)
    return pkv__ocl_fail(ctx, "clCreateProgramWithSource", err);
  err = clBuildProgram(p->program, 1, &o->device, options, NULL, NULL);
  pkv_status st = PKV_OK;
  if (err == CL_BUILD_PROGRAM_FAILURE)
    st = build_failure(ctx, p->program, options);
  else if (err != CL_SUCCESS)
    st = pkv__ocl_fail(ctx, "clBuildProgram", err);
  if (st == PKV_OK) st = make_kernels(ctx, p);
  if (st != PKV_OK) {
    clReleaseProgram(p->program);
    p->program = NULL;
    return st;
  }
  if (o->cache_dir[0]) to_cache(ctx, p->program, key, binding);
  return PKV_OK;
}

pkv_status pkv__ocl_program_get(pkv_context *ctx, int head_dim, int dtype,
                               pkv_ocl_program **out) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  for (int i = 0; i < o->num_programs; i++)
    if (o->programs[i].head_dim == head_dim && o->programs[i].dtype == dtype) {
      *out = &o->programs[i];
      return PKV_OK;
    }
  if (o->num_programs == PKV_OCL_MAX_PROGRAMS)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                    "more than %d (head_dim, dtype) programs in one context",
                    PKV_OCL_MAX_PROGRAMS);
  double t0 = now_s();
  pkv_status st = build(ctx, head_dim, dtype, &o->programs[o->num_programs]);
  if (st != PKV_OK) return st;
  o->last_build_seconds = now_s() - t0;
  *out = &o->programs[o->num_programs++];
  return PKV_OK;
}

void pkv__ocl_programs_release(pkv_ocl *o) {
  for (int i = 0; i < o->num_programs; i++) {
    for (int k = 0; k < PKV_K_COUNT; k++)
      if (o->programs[i].kernels[k]) clReleaseKernel(o->programs[i].kernels[k]);
    if (o->programs[i].prefill_mma) clReleaseKernel(o->programs[i].prefill_mma);
    if (o->programs[i].prefill_mma_plan)
      clReleaseKernel(o->programs[i].prefill_mma_plan);
    if (o->programs[i].program) clReleaseProgram(o->programs[i].program);
  }
  o->num_programs = 0;
}
