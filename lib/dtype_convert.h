/* SPDX-License-Identifier: Apache-2.0 */
/* Host conversions between f32 and the 16-bit storage types.
 * Round-to-nearest-even; NaN stays NaN (quiet), Inf stays Inf, f16
 * subnormals are produced and read exactly. Internal to the library, and
 * compiled into tests and tools that link it statically. */
#ifndef PKV_DTYPE_CONVERT_H
#define PKV_DTYPE_CONVERT_H

#include "pagedkv.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint16_t pkv__f32_to_f16(float f);
uint16_t pkv__f32_to_bf16(float f);

/* The widening conversions are inline: the reference attention calls them
 * for every K/V element it reads. */
static inline float pkv_bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float pkv_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24, exact in f32 */
    float v = (float)mant * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return pkv_bits_to_f32(sign | 0x7f800000u | (mant << 13));
  return pkv_bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline float pkv_bf16_to_f32(uint16_t h) {
  return pkv_bits_to_f32((uint32_t)h << 16);
}

/* n elements of `dtype` at src (element index 0) to f32 / from f32. */
void pkv__to_f32(pkv_dtype dtype, const void *src, float *dst, size_t n);
void pkv__from_f32(pkv_dtype dtype, const float *src, void *dst, size_t n);

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
  case PKV_DTYPE_F16: ((uint16_t *)base)[idx] = pkv__f32_to_f16(f); break;
  case PKV_DTYPE_BF16: ((uint16_t *)base)[idx] = pkv__f32_to_bf16(f); break;
  default: ((float *)base)[idx] = f; break;
  }
}

#endif
