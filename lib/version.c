/* SPDX-License-Identifier: Apache-2.0 */
/* Run-time version, so an engine can check the library it loaded. */
#include "pagedkv.h"

#define PKV_STR2(x) #x
#define PKV_STR(x) PKV_STR2(x)

void pkv_version(int *major, int *minor, int *patch) {
  if (major) *major = PKV_VERSION_MAJOR;
  if (minor) *minor = PKV_VERSION_MINOR;
  if (patch) *patch = PKV_VERSION_PATCH;
}

const char *pkv_version_string(void) {
  return PKV_STR(PKV_VERSION_MAJOR) "." PKV_STR(PKV_VERSION_MINOR) "." PKV_STR(
      PKV_VERSION_PATCH);
}

size_t pkv_dtype_size(pkv_dtype dtype) {
  switch (dtype) {
  case PKV_DTYPE_F32: return 4;
  case PKV_DTYPE_F16: return 2;
  case PKV_DTYPE_BF16: return 2;
  case PKV_DTYPE_FP8_E4M3: return 1;
  case PKV_DTYPE_FP8_E5M2: return 1;
  case PKV_DTYPE_INT8: return 1;
  }
  return 0;
}
