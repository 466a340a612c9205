/* SPDX-License-Identifier: Apache-2.0 */
/* f32 <-> f16 / bf16 on the host, bit-exact round-to-nearest-even. */
#include "dtype_convert.h"
#include "internal.h"

#include <string.h>

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t pkv__f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
    return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x47800000u) /* >= 65536 (and Inf): past the largest finite */
    return (uint16_t)(sign | 0x7c00u);
  if (a < 0x38800000u) {
    /* Below 2^-14 the result is a subnormal (or zero). Adding 0.5 puts the
     * f16 subnormal quantum 2^-24 at the f32 unit in the last place, so the
     * FPU's own round-to-nearest-even does the rounding. */
    const uint32_t magic = 126u << 23; /* 0.5f: its ulp is 2^-24 */
    float r = bits_f32(a) + bits_f32(magic);
    return (uint16_t)(sign | (uint16_t)(f32_bits(r) - magic));
  }
  /* Normal: rebias the exponent and round the 13 dropped mantissa bits to
   * nearest even; a carry out of the mantissa correctly bumps the exponent
   * (up to Inf for values in [65520, 65536)). */
  uint32_t odd = (a >> 13) & 1u;
  a += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
  return (uint16_t)(sign | (uint16_t)(a >> 13));
}

uint16_t pkv__f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN, never rounded to Inf */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

/* f32 -> an fp8 format with `mbits` mantissa bits and bias `bias`, whose
 * largest finite magnitude is max_bits (the fp8 code without sign).
 * Rounds to nearest even at the format's precision (subnormals included)
 * by the FPU: adding a power of two whose f32 ulp equals the fp8 quantum
 * of |x|'s binade makes the hardware round for us; then saturates. */
static uint8_t to_fp8(float f, int mbits, int bias, uint8_t max_bits,
                      uint8_t nan_bits) {
  uint32_t x = f32_bits(f);
  uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
  uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint8_t)(sign | nan_bits);
  float av = bits_f32(a);
  /* binade exponent of |x|, clamped to the smallest normal exponent so
   * that subnormals share its quantum */
  int e = (int)(a >> 23) - 127;
  const int emin = 1 - bias;
  if (a < 0x00800000u || e < emin) e = emin;
  /* Inf and anything >= 2^20 (past both formats' max, and where the magic
   * constant below would overflow) saturate */
  if (e >= 20) return (uint8_t)(sign | max_bits);
  /* quantum 2^(e - mbits); the magic constant 2^(e - mbits + 23) has that
   * ulp in f32 */
  float magic = bits_f32((uint32_t)(e - mbits + 23 + 127) << 23);
  float r = (av + magic) - magic; /* |x| rounded to the fp8 grid (RNE) */
  /* decode the rounded value into fields */
  uint32_t rb = f32_bits(r);
  if (rb == 0) return sign;
  int re = (int)(rb >> 23) - 127;
  uint32_t code;
  if (re < emin) {
    /* subnormal: r = m * 2^(emin - mbits) */
    code = (uint32_t)(r * bits_f32((uint32_t)(127 - emin + mbits) << 23));
  } else {
    uint32_t m = (rb >> (23 - mbits)) & ((1u << mbits) - 1u);
    int be = re + bias;
    if (be > 31) be = 31;
    code = ((uint32_t)be << mbits) | m;
  }
  if (code > max_bits) code = max_bits; /* saturate (also e4m3's NaN code) */
  return (uint8_t)(sign | code);
}

uint8_t pkv__f32_to_e4m3(float f) { return to_fp8(f, 3, 7, 0x7e, 0x7f); }
uint8_t pkv__f32_to_e5m2(float f) { return to_fp8(f, 2, 15, 0x7b, 0x7e); }

void pkv__to_f32(pkv_dtype dtype, const void *src, float *dst, size_t n) {
  const uint16_t *s = src;
  switch (dtype) {
  case PKV_DTYPE_F16:
    for (size_t i = 0; i < n; i++) dst[i] = pkv_f16_to_f32(s[i]);
    break;
  case PKV_DTYPE_BF16:
    for (size_t i = 0; i < n; i++) dst[i] = pkv_bf16_to_f32(s[i]);
    break;
  case PKV_DTYPE_FP8_E4M3:
    for (size_t i = 0; i < n; i++)
      dst[i] = pkv_e4m3_to_f32(((const uint8_t *)src)[i]);
    break;
  case PKV_DTYPE_FP8_E5M2:
    for (size_t i = 0; i < n; i++)
      dst[i] = pkv_e5m2_to_f32(((const uint8_t *)src)[i]);
    break;
  default: memcpy(dst, src, n * sizeof(float)); break;
  }
}

void pkv__from_f32(pkv_dtype dtype, const float *src, void *dst, size_t n) {
  uint16_t *d = dst;
  switch (dtype) {
  case PKV_DTYPE_F16:
    for (size_t i = 0; i < n; i++) d[i] = pkv__f32_to_f16(src[i]);
    break;
  case PKV_DTYPE_BF16:
    for (size_t i = 0; i < n; i++) d[i] = pkv__f32_to_bf16(src[i]);
    break;
  case PKV_DTYPE_FP8_E4M3:
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = pkv__f32_to_e4m3(src[i]);
    break;
  case PKV_DTYPE_FP8_E5M2:
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = pkv__f32_to_e5m2(src[i]);
    break;
  default: memcpy(dst, src, n * sizeof(float)); break;
  }
}

static pkv_status check_convert(pkv_dtype dtype, const void *src,
                                const void *dst, size_t n) {
  if (n && !src) return pkv__fail(NULL, PKV_ERR_NULL, "src is NULL with n %zu", n);
  if (n && !dst) return pkv__fail(NULL, PKV_ERR_NULL, "dst is NULL with n %zu", n);
  if (dtype == PKV_DTYPE_INT8)
    return pkv__fail(NULL, PKV_ERR_INVALID,
                     "dtype PKV_DTYPE_INT8 has a scale per (token, head): "
                     "there is no element-wise conversion");
  if (pkv_dtype_size(dtype) == 0)
    return pkv__fail(NULL, PKV_ERR_INVALID,
                    "dtype %d is not f32 (0), f16 (1), bf16 (2), fp8 e4m3 (3) "
                    "or fp8 e5m2 (4)", (int)dtype);
  return PKV_OK;
}

pkv_status pkv_convert_from_f32(pkv_dtype dtype, const float *src, void *dst,
                                size_t n) {
  pkv_status st = check_convert(dtype, src, dst, n);
  if (st == PKV_OK && n) pkv__from_f32(dtype, src, dst, n);
  return st;
}

pkv_status pkv_convert_to_f32(pkv_dtype dtype, const void *src, float *dst,
                              size_t n) {
  pkv_status st = check_convert(dtype, src, dst, n);
  if (st == PKV_OK && n) pkv__to_f32(dtype, src, dst, n);
  return st;
}
