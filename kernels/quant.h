/* SPDX-License-Identifier: Apache-2.0 */
/* Quantized K/V (fp8 e4m3/e5m2, int8) in the GPU-shaped decode
 * (decode_gpu.cl): eight codes of a staged row, dequantized in registers.
 * Kept apart from decode_gpu.cl so the kernel body reads one macro,
 * PKV_G_LDQ8, whatever the dtype. Compiled after common.cl (the exact
 * scalar decoders pkv_e4m3_to_f32 / pkv_e5m2_to_f32) and tile.h; the HIP
 * build includes it once per instantiation, so every macro is #undef'd
 * first and the functions are defined once.
 *
 * The codes are unscaled: the kernel folds the per-head fp8 scales into
 * the softmax scale (K) and the output (V), and multiplies int8 rows by
 * their per-token scale (the dot product for K, the softmax weight for V).
 *
 * Decoders, by device:
 * - OpenCL: branch-free on uint8 vectors (the same arithmetic as
 *   common.cl's PKV_LD8V, from local memory);
 * - CUDA sm_89+: the hardware conversion (cvt.rn.f16x2.e4m3x2 /
 *   .e5m2x2 via __nv_cvt_fp8x2_to_halfraw2), exact since every e4m3 and
 *   e5m2 value (NaN and Inf included) is an f16 value;
 * - elsewhere (sm_80, AMD): the portable bit decode. gfx940-942's fp8
 *   instructions implement the FNUZ formats (bias 8 / 16, NaN = 0x80, no
 *   Inf), not the OCP formats pagedkv stores, so they would read -0 as NaN
 *   and NaN as a finite value; OCP fp8 conversions arrive with gfx950. */
#ifndef PKV_QUANT_DEFINED
#define PKV_QUANT_DEFINED
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
PKV_INLINE float8 pkv_e4m3x8(uint8 b) {
  const uint8 s = (b & 0x80u) << 24, em = b & 0x7fu;
  const float8 n = as_float8(s | ((em + (120u << 3)) << 20));
  const float8 u = as_float8(s | as_uint8(convert_float8(em) * (1.0f / 512.0f)));
  return select(select(n, u, em < 8u), as_float8(s | 0x7fc00000u), em == 0x7fu);
}
PKV_INLINE float8 pkv_e5m2x8(uint8 b) {
  const uint8 s = (b & 0x80u) << 24, em = b & 0x7fu;
  const float8 n = as_float8(s | ((em + (112u << 2)) << 21));
  const float8 u = as_float8(s | as_uint8(convert_float8(em) * (1.0f / 65536.0f)));
  return select(select(n, u, em < 4u),
                as_float8(s | 0x7f800000u | ((em & 3u) << 21)), em >= 0x7cu);
}
#define pkv_ldq8_e4m3(dst, p) \
  ((dst) = pkv_e4m3x8(convert_uint8(vload8(0, (__local const uchar *)(p)))))
#define pkv_ldq8_e5m2(dst, p) \
  ((dst) = pkv_e5m2x8(convert_uint8(vload8(0, (__local const uchar *)(p)))))
#define pkv_ldq8_i8(dst, p) \
  ((dst) = convert_float8(vload8(0, (__local const char *)(p))))
#else
#if defined(PKV_HIP_CUDA)
#include <cuda_fp8.h>
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define PKV_HW_FP8 1
#endif
#endif
/* 8 codes as two 32-bit words (an 8-byte shared load; rows are 16-byte
 * aligned, lanes 8 bytes apart). */
__device__ __forceinline__ void pkv_ldq8_e4m3_(const void *p, pkv_f8 &d) {
  const uint2 w = *(const uint2 *)p;
#ifdef PKV_HW_FP8
  for (int i = 0; i < 4; i++) {
    const unsigned x = i < 2 ? w.x : w.y;
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
        (__nv_fp8x2_storage_t)((x >> (16 * (i & 1))) & 0xffffu), __NV_E4M3);
    const float2 f = __half22float2(__half2(h));
    d.v[2 * i] = f.x;
    d.v[2 * i + 1] = f.y;
  }
#else
  for (int e = 0; e < 8; e++)
    d.v[e] = pkv_e4m3_to_f32(((e < 4 ? w.x : w.y) >> (8 * (e & 3))) & 0xffu);
#endif
}
__device__ __forceinline__ void pkv_ldq8_e5m2_(const void *p, pkv_f8 &d) {
  const uint2 w = *(const uint2 *)p;
#ifdef PKV_HW_FP8
  for (int i = 0; i < 4; i++) {
    const unsigned x = i < 2 ? w.x : w.y;
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
        (__nv_fp8x2_storage_t)((x >> (16 * (i & 1))) & 0xffffu), __NV_E5M2);
    const float2 f = __half22float2(__half2(h));
    d.v[2 * i] = f.x;
    d.v[2 * i + 1] = f.y;
  }
#else
  for (int e = 0; e < 8; e++)
    d.v[e] = pkv_e5m2_to_f32(((e < 4 ? w.x : w.y) >> (8 * (e & 3))) & 0xffu);
#endif
}
__device__ __forceinline__ void pkv_ldq8_i8_(const void *p, pkv_f8 &d) {
  const uint2 w = *(const uint2 *)p;
  for (int e = 0; e < 8; e++)
    d.v[e] = (float)(signed char)(((e < 4 ? w.x : w.y) >> (8 * (e & 3))) & 0xffu);
}
#define pkv_ldq8_e4m3(dst, p) pkv_ldq8_e4m3_((p), (dst))
#define pkv_ldq8_e5m2(dst, p) pkv_ldq8_e5m2_((p), (dst))
#define pkv_ldq8_i8(dst, p) pkv_ldq8_i8_((p), (dst))
#endif
#endif /* PKV_QUANT_DEFINED */

/* PKV_G_LDQ8(dst, p): 8 codes of the instantiation's dtype from local
 * memory at p (8-byte aligned) as a pkv_f8; undefined for float dtypes. */
#undef PKV_G_LDQ8
#if PKV_DTYPE == 3
#define PKV_G_LDQ8(dst, p) pkv_ldq8_e4m3(dst, p)
#elif PKV_DTYPE == 4
#define PKV_G_LDQ8(dst, p) pkv_ldq8_e5m2(dst, p)
#elif PKV_DTYPE == 5
#define PKV_G_LDQ8(dst, p) pkv_ldq8_i8(dst, p)
#endif
