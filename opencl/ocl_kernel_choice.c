/* SPDX-License-Identifier: Apache-2.0 */
/* Decode kernel choice per device class: GPU and accelerator devices run
 * the GPU-shaped kernel (kernels/decode_gpu.cl), CPU devices the
 * CPU-shaped one (kernels/decode.cl), whose long contiguous key runs a
 * CPU's prefetcher follows. The environment overrides, for tests:
 *   PKV_KERNELS=gpu|cpu    force one kernel
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
  if (force && strcmp(force, "gpu") == 0) k->gpu = 1;
  if (force && strcmp(force, "cpu") == 0) k->gpu = 0;
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
