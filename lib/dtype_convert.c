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

void pkv__to_f32(pkv_dtype dtype, const void *src, float *dst, size_t n) {
  const uint16_t *s = src;
  switch (dtype) {
  case PKV_DTYPE_F16:
    for (size_t i = 0; i < n; i++) dst[i] = pkv_f16_to_f32(s[i]);
    break;
  case PKV_DTYPE_BF16:
    for (size_t i = 0; i < n; i++) dst[i] = pkv_bf16_to_f32(s[i]);
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
  default: memcpy(dst, src, n * sizeof(float)); break;
  }
}

static pkv_status check_convert(pkv_dtype dtype, const void *src,
                                const void *dst, size_t n) {
  if (n && !src) return pkv__fail(NULL, PKV_ERR_NULL, "src is NULL with n %zu", n);
  if (n && !dst) return pkv__fail(NULL, PKV_ERR_NULL, "dst is NULL with n %zu", n);
  if (pkv_dtype_size(dtype) == 0)
    return pkv__fail(NULL, PKV_ERR_INVALID,
                    "dtype %d is not f32 (0), f16 (1) or bf16 (2)", (int)dtype);
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
