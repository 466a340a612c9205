/* SPDX-License-Identifier: Apache-2.0 */
/* Decode kernel choice per device class: GPU and accelerator devices run
 * the GPU-shaped kernel (kernels/decode_gpu.cl), CPU devices the
 * CPU-shaped one (kernels/decode.cl), whose long contiguous key runs a
 * CPU's prefetcher follows. Prefill on f16/bf16/fp8/int8 caches: GPU devices run
 * the matrix-unit kernel (kernels/prefill_mma.cl, also for decode with a
 * GQA group of 4 or more), CPU devices the SIMT one (kernels/prefill.cl).
 * The environment overrides, for tests:
 *   PKV_KERNELS=LIST       comma-separated: gpu|cpu forces the decode
 *                          kernel, mma|simt the prefill kernel
 *   PKV_FRAG=1|2           lane map of the emulated fragments: 1 NVIDIA
 *                          m16n8k16 (wave 32), 2 AMD 16x16x16 (wave 64)
 *   PKV_EMU_WAVE=32|64     wave width of the GPU kernel when the device
 *                          has no native sub-groups (emulated)
 *   PKV_STAGES=2|3|4       async copy stages of the GPU kernel
 *   PKV_EMU_POISON=1       async copies land only at their wait
 *   PKV_EMU_UNALIGNED=1    always the element-copy (unaligned) variant
 *   PKV_EMU_LATE_WAIT=1    with poison: every wait retires one group too
 *                          few (proves that the poison catches it) */
#include "ocl.h"

#include <stdlib.h>
#include <string.h>

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end;
  long x = strtol(v, &end, 10);
  return *end ? dflt : (int)x;
}

/* Whether the comma-separated list v names word. */
static int has_word(const char *v, const char *word) {
  size_t n = strlen(word);
  for (const char *p = v; p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, word, n) == 0) return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

static int has_extension(cl_device_id dev, const char *ext) {
  char buf[8192];
  size_t n = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, sizeof buf - 1, buf, &n) !=
      CL_SUCCESS)
    return 0;
  buf[n < sizeof buf ? n : sizeof buf - 1] = '\0';
  size_t len = strlen(ext);
  for (const char *p = buf; (p = strstr(p, ext)) != NULL; p += len)
    if ((p == buf || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
      return 1;
  return 0;
}

void pkv__ocl_choose_kernels(pkv_ocl *o) {
  cl_device_type type = 0;
  char vendor[128] = "";
  clGetDeviceInfo(o->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  clGetDeviceInfo(o->device, CL_DEVICE_VENDOR, sizeof vendor - 1, vendor, NULL);
  pkv_ocl_kernels *k = &o->kern;
  memset(k, 0, sizeof *k);
  k->gpu = (type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != 0;
  const char *force = getenv("PKV_KERNELS");
  k->mma = (type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != 0;
  if (has_word(force, "gpu")) k->gpu = 1;
  if (has_word(force, "cpu")) k->gpu = 0;
  if (has_word(force, "mma")) k->mma = 1;
  if (has_word(force, "simt")) k->mma = 0;
  /* Native shuffles only on a GPU that has them; PoCL and every other
   * device run the local-memory emulation of the same kernel bodies. */
  k->native_sg = (type & CL_DEVICE_TYPE_GPU) &&
                 has_extension(o->device, "cl_intel_subgroups");
  /* AMD GPUs run 64-wide waves under OpenCL, the others 32. */
  k->wave = (type & CL_DEVICE_TYPE_GPU) && (strstr(vendor, "AMD") ||
                                            strstr(vendor, "Advanced Micro"))
                ? 64
                : 32;
  int w = env_int("PKV_EMU_WAVE", 0);
  if (w == 32 || w == 64) {
    k->wave = w;
    k->native_sg = 0; /* an emulated width is the emulation's */
  }
  /* A lane map fixes the wave: NVIDIA's is 32 lanes, AMD's 64. Forcing
   * one emulates it (native sub-groups off). */
  int f = env_int("PKV_FRAG", 0);
  if (f == 1 || f == 2) {
    k->wave = f == 1 ? 32 : 64;
    k->native_sg = 0;
  }
  k->frag = k->wave == 64 ? 2 : 1;
  k->stages = env_int("PKV_STAGES", 2);
  if (k->stages < 2 || k->stages > 4) k->stages = 2;
  k->poison = env_int("PKV_EMU_POISON", 0) != 0;
  k->unaligned = env_int("PKV_EMU_UNALIGNED", 0) != 0;
  k->late_wait = k->poison && env_int("PKV_EMU_LATE_WAIT", 0) != 0;
  if (k->native_sg) k->poison = k->late_wait = 0; /* emulation modes */
}

/* Mirrors PKV_G_NT in kernels/decode_gpu.cl: four waves, and at least
 * eight row teams (one per head of a full GQA chunk). */
int pkv__ocl_gpu_decode_wg(int head_dim, int wave) {
  int nch = head_dim / 8;
  int tpr = nch <= 8 ? 8 : nch <= 16 ? 16 : 32;
  return 4 * wave > tpr * 8 ? 4 * wave : tpr * 8;
}

/* Whether an attention call of this shape runs pkv_prefill_mma (or, under
 * a plan, pkv_prefill_mma_plan): matrix units take 16-bit operands, so
 * f16 and bf16 caches and the quantized ones whose codes the kernel
 * converts to f16 (f32 caches keep the SIMT kernels), with q and out of a 16-bit
 * type too (an f32 q or out asks for f32 precision, which q and P rounded
 * to 16 bits for the unit do not give); prefill, extend and speculative
 * decode (q_len > 1), and decode when a GQA group of 4 or more fills a
 * quarter of the fragment's 16 rows (and at most the 64 rows of a block,
 * so that decode can split the key axis). */
int pkv__ocl_mma_wants(const pkv_ocl_kernels *k, int dtype, int q_dtype,
                       int o_dtype, int max_q_len, int group) {
  /* f16/bf16 caches, and quantized ones (fp8 e4m3/e5m2, int8: their codes
   * become f16 operands in the staging, kernels/prefill_mma.cl) */
  if (!k->mma || dtype < 1 || dtype > 5) return 0;
  if ((q_dtype != 1 && q_dtype != 2) || (o_dtype != 1 && o_dtype != 2)) return 0;
  return max_q_len > 1 || (group >= 4 && group <= 64);
}
