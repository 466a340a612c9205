/* SPDX-License-Identifier: Apache-2.0 */
/* OpenCL platforms and devices: listing, and the choice of one device for a
 * context (description, then PKV_OPENCL_PLATFORM / PKV_OPENCL_DEVICE, then
 * the first GPU, else the first device). Devices are numbered in one flat
 * list over all platforms, the order of pkv_list_devices. */
#include "alloc.h"
#include "ocl.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* Vendor queries for the wave width, from cl_ext.h of each vendor. */
#define PKV_CL_DEVICE_WARP_SIZE_NV 0x4003
#define PKV_CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043
#define PKV_CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108
/* OpenCL 3.0 device-level query; a 1.2 device answers CL_INVALID_VALUE. */
#define PKV_CL_DEVICE_PREFERRED_WORK_GROUP_SIZE_MULTIPLE 0x1067

static pthread_mutex_t startup = PTHREAD_MUTEX_INITIALIZER;

void pkv__ocl_startup_lock(void) { pthread_mutex_lock(&startup); }
void pkv__ocl_startup_unlock(void) { pthread_mutex_unlock(&startup); }

typedef struct entry {
  cl_platform_id platform;
  cl_device_id device;
  int platform_index;
} entry;

/* Every device of every platform; no platform at all is not an error. */
static pkv_status enumerate(const pkv_context *ctx, entry *e, int *n) {
  cl_platform_id plats[MAX_PLATFORMS];
  cl_uint np = 0;
  *n = 0;
  cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
    return PKV_OK;
  if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clGetPlatformIDs", err);
  if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
  for (cl_uint p = 0; p < np; p++) {
    cl_device_id devs[MAX_DEVICES];
    cl_uint nd = 0;
    err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd);
    if (err == CL_DEVICE_NOT_FOUND) continue;
    if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clGetDeviceIDs", err);
    if (nd > MAX_DEVICES) nd = MAX_DEVICES;
    for (cl_uint d = 0; d < nd && *n < MAX_DEVICES; d++) {
      e[*n].platform = plats[p];
      e[*n].device = devs[d];
      e[*n].platform_index = (int)p;
      (*n)++;
    }
  }
  return PKV_OK;
}

static void str_info(cl_device_id d, cl_device_info what, char *dst,
                     size_t cap) {
  dst[0] = '\0';
  if (clGetDeviceInfo(d, what, cap, dst, NULL) != CL_SUCCESS) dst[0] = '\0';
  dst[cap - 1] = '\0';
}

static int has_ext(cl_device_id d, const char *ext) {
  size_t sz = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &sz) != CL_SUCCESS ||
      sz == 0)
    return 0;
  char *s = pkv__malloc(sz + 1);
  if (!s) return 0;
  int found = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, sz, s, NULL) == CL_SUCCESS) {
    s[sz] = '\0';
    size_t len = strlen(ext);
    for (char *p = strstr(s, ext); p; p = strstr(p + 1, ext))
      if ((p == s || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) {
        found = 1;
        break;
      }
  }
  pkv__free(s);
  return found;
}

/* Wave width without building a kernel: the vendors' own queries, else
 * the device's preferred work-group size multiple (OpenCL 3.0). */
static int wave_size(cl_device_id d) {
  cl_uint w = 0;
  if (has_ext(d, "cl_nv_device_attribute_query") &&
      clGetDeviceInfo(d, PKV_CL_DEVICE_WARP_SIZE_NV, sizeof w, &w, NULL) ==
          CL_SUCCESS && w > 0)
    return (int)w;
  if (has_ext(d, "cl_amd_device_attribute_query") &&
      clGetDeviceInfo(d, PKV_CL_DEVICE_WAVEFRONT_WIDTH_AMD, sizeof w, &w,
                      NULL) == CL_SUCCESS && w > 0)
    return (int)w;
  if (has_ext(d, "cl_intel_subgroups")) {
    size_t sizes[8] = {0}, got = 0, best = 0;
    if (clGetDeviceInfo(d, PKV_CL_DEVICE_SUB_GROUP_SIZES_INTEL, sizeof sizes,
                        sizes, &got) == CL_SUCCESS)
      for (size_t i = 0; i < got / sizeof sizes[0] && i < 8; i++)
        if (sizes[i] > best) best = sizes[i];
    if (best > 0) return (int)best;
  }
  size_t mult = 0;
  if (clGetDeviceInfo(d, PKV_CL_DEVICE_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
                      sizeof mult, &mult, NULL) == CL_SUCCESS &&
      mult > 0 && mult <= 1024)
    return (int)mult;
  return 1;
}

void pkv__ocl_fill_info(cl_platform_id platform, cl_device_id d, int index,
                       pkv_device_info *info) {
  memset(info, 0, sizeof *info);
  info->backend = PKV_BACKEND_OPENCL;
  info->index = index;
  cl_device_type t = 0;
  clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
  info->type = (t & CL_DEVICE_TYPE_GPU)   ? PKV_DEVICE_GPU
               : (t & CL_DEVICE_TYPE_CPU) ? PKV_DEVICE_CPU
                                          : PKV_DEVICE_OTHER;
  str_info(d, CL_DEVICE_NAME, info->name, sizeof info->name);
  str_info(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
  str_info(d, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
  if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof info->platform,
                        info->platform, NULL) != CL_SUCCESS)
    info->platform[0] = '\0';
  info->platform[sizeof info->platform - 1] = '\0';
  cl_ulong u = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u, &u, NULL) ==
      CL_SUCCESS)
    info->global_mem_bytes = u;
  u = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u, &u, NULL) ==
      CL_SUCCESS)
    info->max_alloc_bytes = u;
  cl_uint cu = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL) ==
      CL_SUCCESS)
    info->compute_units = (int)cu;
  info->wave_size = wave_size(d);
}

pkv_status pkv__ocl_list_devices(pkv_device_info *out, int capacity,
                                int *count) {
  entry e[MAX_DEVICES];
  int n = 0;
  pkv__ocl_startup_lock();
  pkv_status st = enumerate(NULL, e, &n);
  if (st == PKV_OK) {
    for (int i = 0; i < n && i < capacity; i++)
      pkv__ocl_fill_info(e[i].platform, e[i].device, i, &out[i]);
    *count = n;
  }
  pkv__ocl_startup_unlock();
  return st;
}

/* Called by ocl_init with the start-up lock held. */
int pkv__ocl_device_index(cl_device_id device) {
  entry e[MAX_DEVICES];
  int n = 0;
  if (enumerate(NULL, e, &n) != PKV_OK) return -1;
  for (int i = 0; i < n; i++)
    if (e[i].device == device) return i;
  return -1;
}

static int contains_ci(const char *hay, const char *needle) {
  size_t nl = strlen(needle);
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < nl && hay[i] &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == nl) return 1;
  }
  return nl == 0;
}

/* A selector is an index ("1") or a name substring ("nvidia"). All digits
 * is always an index: one too large for int is INT_MAX, out of range
 * (never a name that then matches nothing). */
static int parse_index(const char *s, int *out) {
  if (!*s) return 0;
  long long v = 0;
  for (const char *p = s; *p; p++) {
    if (!isdigit((unsigned char)*p)) return 0;
    if (v <= INT_MAX) v = v * 10 + (*p - '0');
  }
  *out = v > INT_MAX ? INT_MAX : (int)v;
  return 1;
}

pkv_status pkv__ocl_choose_device(pkv_context *ctx, cl_platform_id *platform,
                                 cl_device_id *device) {
  entry all[MAX_DEVICES], e[MAX_DEVICES];
  int nall = 0, n = 0;
  pkv_status st = enumerate(ctx, all, &nall);
  if (st != PKV_OK) return st;
  if (nall == 0)
    return pkv__fail(ctx, PKV_ERR_NO_BACKEND,
                    "no OpenCL device: no platform or no device found "
                    "(is an ICD such as pocl-opencl-icd installed?)");

  /* Platform filter: description first, then the environment. */
  int pidx = ctx->desc.platform;
  const char *pname = NULL, *penv = getenv("PKV_OPENCL_PLATFORM");
  if (pidx < 0 && penv && *penv && !parse_index(penv, &pidx)) pname = penv;
  for (int i = 0; i < nall; i++) {
    if (pidx >= 0 && all[i].platform_index != pidx) continue;
    if (pname) {
      char nm[256] = "";
      clGetPlatformInfo(all[i].platform, CL_PLATFORM_NAME, sizeof nm, nm, NULL);
      nm[sizeof nm - 1] = '\0';
      if (!contains_ci(nm, pname)) continue;
    }
    e[n++] = all[i];
  }
  if (n == 0) {
    if (pname)
      return pkv__fail(ctx, PKV_ERR_NOT_FOUND,
                      "PKV_OPENCL_PLATFORM='%s' matches no OpenCL platform "
                      "name", pname);
    if (ctx->desc.platform >= 0)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "desc->platform %d out of range or without devices",
                      pidx);
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "PKV_OPENCL_PLATFORM='%s' out of range or without "
                    "devices",
                    penv);
  }

  /* Device: desc index, desc name, environment, then first GPU/first. */
  int didx = ctx->desc.device;
  const char *dname = ctx->desc.device_name, *src = "desc->device",
             *denv = NULL;
  if (didx < 0 && dname && *dname) src = "desc->device_name";
  else if (didx < 0) {
    dname = NULL;
    denv = getenv("PKV_OPENCL_DEVICE");
    if (denv && *denv) {
      src = "PKV_OPENCL_DEVICE";
      if (!parse_index(denv, &didx)) dname = denv;
    }
  }
  int pick = -1;
  if (didx >= 0) {
    if (didx >= n && denv && *denv && !dname)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "%s='%s' out of range: %d OpenCL device%s", src, denv,
                      n, n == 1 ? "" : "s");
    if (didx >= n)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "%s %d out of range: %d OpenCL device%s", src, didx, n,
                      n == 1 ? "" : "s");
    pick = didx;
  } else if (dname) {
    for (int i = 0; i < n && pick < 0; i++) {
      char nm[256] = "";
      clGetDeviceInfo(e[i].device, CL_DEVICE_NAME, sizeof nm, nm, NULL);
      nm[sizeof nm - 1] = '\0';
      if (contains_ci(nm, dname)) pick = i;
    }
    if (pick < 0)
      return pkv__fail(ctx, PKV_ERR_NOT_FOUND,
                      "%s '%s' matches no OpenCL device name", src, dname);
  } else {
    for (int i = 0; i < n && pick < 0; i++) {
      cl_device_type t = 0;
      clGetDeviceInfo(e[i].device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
      if (t & CL_DEVICE_TYPE_GPU) pick = i;
    }
    if (pick < 0) pick = 0;
  }
  *platform = e[pick].platform;
  *device = e[pick].device;
  return PKV_OK;
}
