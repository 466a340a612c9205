/* SPDX-License-Identifier: Apache-2.0 */
/* OpenCL backend: private declarations shared by the files of opencl/. */
#ifndef PKV_OCL_H
#define PKV_OCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "backend.h"

/* Tile choices passed to the kernels as build options. */
#define PKV_OCL_DEC_WG 64
#define PKV_OCL_PART 512      /* keys per decode partition on GPUs */
#define PKV_OCL_PART_CPU 2048 /* on CPU devices: fewer, longer work-groups */
#define PKV_OCL_MAXG 8
#define PKV_OCL_PF_BR 32

enum pkv_ocl_kernel_id {
  PKV_K_WRITE_KV,
  PKV_K_DECODE,
  PKV_K_DECODE_MERGE,
  PKV_K_PREFILL,
  PKV_K_COPY_PAGES,
  PKV_K_GATHER_PAGES,
  PKV_K_SCATTER_PAGES,
  PKV_K_DECODE_PLAN,
  PKV_K_DECODE_PLAN_MERGE,
  PKV_K_CPU_COUNT, /* the kernels every program has; then the GPU ones */
  PKV_K_DECODE_GPU = PKV_K_CPU_COUNT,
  PKV_K_DECODE_GPU_U,
  PKV_K_DECODE_GPU_PLAN,
  PKV_K_DECODE_GPU_PLAN_U,
  PKV_K_COUNT
};

/* One built program: the kernels for one (head dim, dtype). */
typedef struct pkv_ocl_program {
  int head_dim, dtype;
  cl_program program;
  cl_kernel kernels[PKV_K_COUNT];
  int from_binary_cache; /* 1 when loaded from the on-disk cache */
  int part;              /* keys per decode partition (PKV_PART) */
  cl_kernel prefill_mma; /* pkv_prefill_mma: f16/bf16 programs with mma on */
  cl_kernel prefill_mma_plan; /* pkv_prefill_mma_plan: with prefill_mma */
} pkv_ocl_program;

#define PKV_OCL_MAX_PROGRAMS 32

/* Which decode kernel the context runs (ocl_kernel_choice.c): the
 * GPU-shaped one (kernels/decode_gpu.cl) on GPU devices, the CPU-shaped
 * one on CPU devices; PKV_KERNELS=gpu|cpu forces either. */
typedef struct pkv_ocl_kernels {
  int gpu;       /* 1: programs carry pkv_decode_gpu and decode uses it */
  int wave;      /* PKV_WAVE of the GPU kernel: 32 or 64 */
  int stages;    /* PKV_STAGES: 2..4 */
  int native_sg; /* native sub-group shuffles (cl_intel_subgroups) */
  int poison;    /* PKV_EMU_POISON: async copies land only at the wait */
  int unaligned; /* test hook: always the element-copy variant */
  int late_wait; /* test hook: poisoned copies land one wait late */
  int mma;       /* prefill (and GQA >= 4 decode) on pkv_prefill_mma */
  int frag;      /* its emulated lane map: 1 NVIDIA (wave 32), 2 AMD (64) */
} pkv_ocl_kernels;

typedef struct pkv_ocl {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  char cache_dir[1024]; /* empty: binary cache off */
  char platform_name[128], device_version[128];
  pkv_ocl_program programs[PKV_OCL_MAX_PROGRAMS];
  int num_programs;
  /* Scratch, grown on demand; the in-order queue orders its reuse. */
  cl_mem part_o; size_t part_o_bytes;   /* decode partial outputs */
  cl_mem part_ml; size_t part_ml_bytes; /* decode partial max and sum */
  cl_mem alibi_buf; size_t alibi_bytes;
  cl_mem sinks_buf; size_t sinks_bytes;  /* attention sinks of the last call */
  cl_mem scales_buf; size_t scales_bytes; /* fp8 K/V scales of the last call */
  cl_mem dummy;                         /* stands for an absent buffer */
  double last_build_seconds;            /* for tests and tools */
  pkv_ocl_kernels kern;                 /* decode kernel choice */
  /* Test hooks (tests/test_ocl_plan.c): device buffers this backend
   * created, and calls that made the host wait for the device. */
  int64_t stat_allocs, stat_waits;
  int64_t stat_mma_plan; /* launches of pkv_prefill_mma_plan (for tests) */
} pkv_ocl;

static inline pkv_ocl *pkv_ocl_of(pkv_context *ctx) {
  return (pkv_ocl *)ctx->impl;
}

/* "CL_OUT_OF_RESOURCES" for -5; "CL_UNKNOWN_ERROR" for unknown codes. */
const char *pkv__ocl_error_name(cl_int err);
/* pkv__fail(ctx, PKV_ERR_DEVICE, "<call>: <CL name> (<code>)"). */
pkv_status pkv__ocl_fail(const pkv_context *ctx, const char *call, cl_int err);

/* Start-up lock (ocl_device.c). ICD loaders and drivers initialise
 * themselves on the first platform/device query and context creation, and
 * some (PoCL among them) do not survive threads racing through that: four
 * threads creating their first contexts at once failed with
 * CL_INVALID_BUFFER_SIZE or no device. Every enumeration, context creation
 * and release holds this process-wide lock. */
void pkv__ocl_startup_lock(void);
void pkv__ocl_startup_unlock(void);

/* Devices (ocl_device.c). */
pkv_status pkv__ocl_list_devices(pkv_device_info *out, int capacity, int *count);
pkv_status pkv__ocl_choose_device(pkv_context *ctx, cl_platform_id *platform,
                                 cl_device_id *device);
void pkv__ocl_fill_info(cl_platform_id platform, cl_device_id device, int index,
                       pkv_device_info *info);
/* Index of a device in the flat listing, -1 when absent. */
int pkv__ocl_device_index(cl_device_id device);

/* Sets o->kern from the device class and the environment. */
void pkv__ocl_choose_kernels(pkv_ocl *o);
/* Work-group size of the GPU decode kernel (kernels/decode_gpu.cl). */
int pkv__ocl_mma_wants(const pkv_ocl_kernels *k, int dtype, int q_dtype,
                       int o_dtype, int max_q_len, int group);
int pkv__ocl_gpu_decode_wg(int head_dim, int wave);

/* Programs (ocl_program.c): the program for (head_dim, dtype), built on
 * first use and kept for the context's life. */
pkv_status pkv__ocl_program_get(pkv_context *ctx, int head_dim, int dtype,
                               pkv_ocl_program **out);
void pkv__ocl_programs_release(pkv_ocl *o);

/* On-disk binary cache (ocl_bincache.c). key is 16 bytes; binding is the
 * text naming what the binary is built for, which a loaded entry must
 * carry unchanged. A missing, corrupt, foreign, mismatched or
 * unauthenticated entry yields NULL; nothing is ever trusted unchecked. */
unsigned char *pkv__ocl_bincache_load(const char *dir, const unsigned char *key,
                                     const char *binding, size_t *size);
/* Writes atomically (temporary file + rename); failures are ignored: the
 * cache only saves time. */
void pkv__ocl_bincache_store(const char *dir, const unsigned char *key,
                            const char *binding, const unsigned char *data,
                            size_t size);
/* Path of a key's entry, for tests. */
void pkv__ocl_bincache_path(const char *dir, const unsigned char *key,
                           char *path, size_t cap);

/* Kernel sources embedded at build time (generated opencl_kernels.c). */
extern const char *const pkv__ocl_kernel_sources[];
extern const char *const pkv__ocl_kernel_files[];
extern const int pkv__ocl_kernel_count;

/* Operations (ocl_ops.c). */
pkv_status pkv__ocl_write_kv(pkv_context *ctx, const pkv_write_args *a);
pkv_status pkv__ocl_attention(pkv_context *ctx, const pkv_attn_args *a);
/* Plan-driven decode (ocl_plan_run.c): the plan's item grid, then the
 * merges of its split requests; no allocation, no host wait. alibi, sinks
 * and lse are the buffers (or the dummy) and flags the kernel flags that
 * pkv__ocl_attention resolved; scales/soff as for pkv_decode. */
pkv_status pkv__ocl_decode_plan(pkv_context *ctx, pkv_ocl_program *p,
                               const pkv_attn_args *a, cl_mem alibi,
                               cl_mem sinks, cl_mem lse, cl_mem scales,
                               cl_int flags, cl_long soff);
/* Enqueues a kernel whose arguments are set (ocl_ops.c). */
pkv_status pkv__ocl_launch(pkv_context *ctx, cl_kernel k, const char *name,
                          cl_uint dims, const size_t *global,
                          const size_t *local);
pkv_status pkv__ocl_copy_pages(pkv_context *ctx, const pkv_copy_args *a);
pkv_status pkv__ocl_pages_to_host(pkv_context *ctx, const pkv_host_move_args *a);
pkv_status pkv__ocl_pages_from_host(pkv_context *ctx,
                                   const pkv_host_move_args *a);

#endif
