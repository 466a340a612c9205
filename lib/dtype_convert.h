/* Host conversions between f32 and the 16-bit storage types.
 * Round-to-nearest-even; NaN stays NaN (quiet), Inf stays Inf, f16
 * subnormals are produced and read exactly. Internal to the library, and
 * compiled into tests and tools that link it statically. */
#ifndef PKV_DTYPE_CONVERT_H
#define PKV_DTYPE_CONVERT_H

#include "pagedkv.h"

#include <stddef.h>
#include <stdint.h>

uint16_t pkv_f32_to_f16(float f);
float pkv_f16_to_f32(uint16_t h);
uint16_t pkv_f32_to_bf16(float f);
float pkv_bf16_to_f32(uint16_t h);

/* n elements of `dtype` at src (element index 0) to f32 / from f32. */
void pkv_to_f32(pkv_dtype dtype, const void *src, float *dst, size_t n);
void pkv_from_f32(pkv_dtype dtype, const float *src, void *dst, size_t n);

/* One element `idx` of an array of `dtype`, widened to double. */
static inline double pkv_load_elem(pkv_dtype dtype, const void *base,
                                   int64_t idx) {
  switch (dtype) {
  case PKV_DTYPE_F16: return pkv_f16_to_f32(((const uint16_t *)base)[idx]);
  case PKV_DTYPE_BF16: return pkv_bf16_to_f32(((const uint16_t *)base)[idx]);
  default: return ((const float *)base)[idx];
  }
}

/* Stores v (rounded to f32 first, then to the storage type). */
static inline void pkv_store_elem(pkv_dtype dtype, void *base, int64_t idx,
                                  double v) {
  float f = (float)v;
  switch (dtype) {
  case PKV_DTYPE_F16: ((uint16_t *)base)[idx] = pkv_f32_to_f16(f); break;
  case PKV_DTYPE_BF16: ((uint16_t *)base)[idx] = pkv_f32_to_bf16(f); break;
  default: ((float *)base)[idx] = f; break;
  }
}

#endif
