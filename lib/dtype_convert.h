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
/* f32 -> fp8, round to nearest even, saturating: finite values past the
 * largest finite and +-Inf give +-max; NaN gives the format's NaN. */
uint8_t pkv__f32_to_e4m3(float f);
uint8_t pkv__f32_to_e5m2(float f);

/* fp8: per-(layer, kv head) scales outside the pages. */
static inline int pkv__dtype_fp8(pkv_dtype d) {
  return d == PKV_DTYPE_FP8_E4M3 || d == PKV_DTYPE_FP8_E5M2;
}
/* Whether a dtype is a quantized storage dtype (fp8, int8): pools only,
 * never q or out. */
static inline int pkv__dtype_quantized(pkv_dtype d) {
  return pkv__dtype_fp8(d) || d == PKV_DTYPE_INT8;
}

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

/* e4m3fn: bias 7, 3 mantissa bits, no Inf; S.1111.111 is NaN. Every code
 * is exact in f32. */
static inline float pkv_e4m3_to_f32(uint8_t b) {
  uint32_t sign = (uint32_t)(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xfu, mant = b & 0x7u;
  if (exp == 15 && mant == 7) return pkv_bits_to_f32(sign | 0x7fc00000u);
  if (exp == 0) {
    float v = (float)mant * (1.0f / 512.0f); /* mant * 2^-9 */
    return sign ? -v : v;
  }
  return pkv_bits_to_f32(sign | ((exp + 120u) << 23) | (mant << 20));
}

/* e5m2: the top byte of an f16. */
static inline float pkv_e5m2_to_f32(uint8_t b) {
  return pkv_f16_to_f32((uint16_t)((uint16_t)b << 8));
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
  case PKV_DTYPE_FP8_E4M3: return pkv_e4m3_to_f32(((const uint8_t *)base)[idx]);
  case PKV_DTYPE_FP8_E5M2: return pkv_e5m2_to_f32(((const uint8_t *)base)[idx]);
  default: return ((const float *)base)[idx];
  }
}

/* Stores v (rounded to f32 first, then to the storage type; fp8 unscaled). */
static inline void pkv_store_elem(pkv_dtype dtype, void *base, int64_t idx,
                                  double v) {
  float f = (float)v;
  switch (dtype) {
  case PKV_DTYPE_F16: ((uint16_t *)base)[idx] = pkv__f32_to_f16(f); break;
  case PKV_DTYPE_BF16: ((uint16_t *)base)[idx] = pkv__f32_to_bf16(f); break;
  case PKV_DTYPE_FP8_E4M3: ((uint8_t *)base)[idx] = pkv__f32_to_e4m3(f); break;
  case PKV_DTYPE_FP8_E5M2: ((uint8_t *)base)[idx] = pkv__f32_to_e5m2(f); break;
  default: ((float *)base)[idx] = f; break;
  }
}

#endif
