/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernel dialect: a handful of macros under which one kernel
 * source compiles as OpenCL C 1.2 and as HIP/CUDA C++ (the approach of
 * Blender Cycles). Kernels written in this dialect use only:
 *   PKV_KERNEL            kernel entry qualifier (+ extern "C" on HIP)
 *   PKV_GLOBAL            pointer-to-global qualifier
 *   PKV_LOCAL_DECL        static-size local/shared array declaration prefix
 *   PKV_LOCAL             pointer-to-local qualifier (function parameters)
 *   PKV_BARRIER()         work-group barrier over local memory
 *   PKV_LID(d) PKV_GID(d) PKV_GROUP(d) PKV_LSIZE(d) PKV_NGROUPS(d)
 *   PKV_INLINE            device helper function qualifier
 *   pkv_load_f16/pkv_store_f16, pkv_load_bf16/pkv_store_bf16
 *   pkv_expf pkv_logf pkv_tanhf pkv_fmaxf pkv_sqrtf
 *   pkv_ld8_f32/f16/bf16  8 consecutive elements into a private float[8]
 *                         (one 16-byte load for f16/bf16, two for f32)
 *   pkv_f8                8 floats: pkv_f8_zero/fma/add/axpy/hsum, and the
 *                         statement macros pkv_ld8v_f32/f16/bf16(dst, p)
 *                         (global), pkv_f8_ldl/pkv_f8_stl (local) and
 *                         pkv_f8_stp (to a private float[8]); a
 *                         vector type where the language has one
 *   PKV_KNAME(name)       kernel entry name; HIP instantiates the same
 *                         sources several times with suffixed names
 *   pkv_half              storage type of an f16 element (pointers only)
 * Compile-time constants come from the build options: PKV_HEAD_DIM and
 * PKV_DTYPE (0 f32, 1 f16, 2 bf16, 3 fp8 e4m3, 4 fp8 e5m2), tile sizes in
 * kernels/common.cl; pkv_u8 and pkv_rintf (round to nearest even) serve
 * the fp8 conversions there.
 * Vendor fast paths (sub-groups, warp/wave shuffles, matrix units) live in
 * the backend's own headers behind PKV_HAVE_* macros, never here. */
#ifndef PKV_KERNEL_DIALECT_H
#define PKV_KERNEL_DIALECT_H

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
/* ------------------------------------------------------------ OpenCL C */
#define PKV_KERNEL __kernel
#define PKV_GLOBAL __global
#define PKV_LOCAL __local
#define PKV_LOCAL_DECL __local
#define PKV_BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define PKV_LID(d) ((int)get_local_id(d))
#define PKV_GID(d) ((int)get_global_id(d))
#define PKV_GROUP(d) ((int)get_group_id(d))
#define PKV_LSIZE(d) ((int)get_local_size(d))
#define PKV_NGROUPS(d) ((int)get_num_groups(d))
#define PKV_INLINE inline
typedef long pkv_i64;
typedef int pkv_i32;
typedef uint pkv_u32;
typedef ushort pkv_u16;
typedef uchar pkv_u8;
#define pkv_rintf(x) rint(x)
#define pkv_load_f16(p, i) vload_half((i), (p))
#define pkv_store_f16(v, p, i) vstore_half_rte((v), (i), (p))
#define pkv_as_float(u) as_float(u)
#define pkv_as_uint(f) as_uint(f)
#define pkv_expf(x) exp(x)
#define pkv_logf(x) log(x)
#define pkv_tanhf(x) tanh(x)
#define pkv_fmaxf(a, b) fmax((a), (b))
#define pkv_sqrtf(x) sqrt(x)
#define PKV_INFINITY INFINITY
typedef half pkv_half;
/* vloadN only needs element alignment, so these are legal at any element
 * offset; the kernels call them at multiples of 8 elements, where a
 * device with 16-byte memory transactions gets whole ones. */
PKV_INLINE void pkv_ld8_f32(const PKV_GLOBAL float *p, float *o) {
  float8 t = vload8(0, p);
  o[0] = t.s0; o[1] = t.s1; o[2] = t.s2; o[3] = t.s3;
  o[4] = t.s4; o[5] = t.s5; o[6] = t.s6; o[7] = t.s7;
}
PKV_INLINE void pkv_ld8_f16(const PKV_GLOBAL half *p, float *o) {
  float8 t = vload_half8(0, p);
  o[0] = t.s0; o[1] = t.s1; o[2] = t.s2; o[3] = t.s3;
  o[4] = t.s4; o[5] = t.s5; o[6] = t.s6; o[7] = t.s7;
}
PKV_INLINE void pkv_ld8_bf16(const PKV_GLOBAL ushort *p, float *o) {
  uint8 t = convert_uint8(vload8(0, p)) << 16;
  o[0] = as_float(t.s0); o[1] = as_float(t.s1); o[2] = as_float(t.s2);
  o[3] = as_float(t.s3); o[4] = as_float(t.s4); o[5] = as_float(t.s5);
  o[6] = as_float(t.s6); o[7] = as_float(t.s7);
}
/* Eight lanes of f32 math on the native vector type; hsum adds in a fixed
 * tree ((0+4)+(2+6)) + ((1+5)+(3+7)) that the HIP version repeats. */
typedef float8 pkv_f8;
PKV_INLINE pkv_f8 pkv_f8_zero(void) { return (float8)(0.0f); }
PKV_INLINE pkv_f8 pkv_f8_fma(pkv_f8 a, pkv_f8 b, pkv_f8 c) { return a * b + c; }
PKV_INLINE pkv_f8 pkv_f8_add(pkv_f8 a, pkv_f8 b) { return a + b; }
PKV_INLINE pkv_f8 pkv_f8_axpy(float s, pkv_f8 x, pkv_f8 y) { return s * x + y; }
PKV_INLINE float pkv_f8_hsum(pkv_f8 a) {
  float4 s = a.lo + a.hi;
  float2 t = s.lo + s.hi;
  return t.x + t.y;
}
#define pkv_ld8v_f32(dst, p) ((dst) = vload8(0, (p)))
#define pkv_ld8v_f16(dst, p) ((dst) = vload_half8(0, (p)))
#define pkv_ld8v_bf16(dst, p) \
  ((dst) = as_float8(convert_uint8(vload8(0, (p))) << 16))
#define pkv_f8_ldl(dst, p) ((dst) = vload8(0, (p)))
#define pkv_f8_stl(v, p) vstore8((v), 0, (p))
#define pkv_f8_stp(v, p) vstore8((v), 0, (p)) /* to a private float[8] */
#else
/* ------------------------------------------------------------ HIP / CUDA */
#define PKV_KERNEL extern "C" __global__
#define PKV_GLOBAL
#define PKV_LOCAL
#define PKV_LOCAL_DECL __shared__
#define PKV_BARRIER() __syncthreads()
#define PKV_DIM_(v, d) ((d) == 0 ? (int)v.x : (d) == 1 ? (int)v.y : (int)v.z)
#define PKV_LID(d) PKV_DIM_(threadIdx, d)
#define PKV_GROUP(d) PKV_DIM_(blockIdx, d)
#define PKV_LSIZE(d) PKV_DIM_(blockDim, d)
#define PKV_NGROUPS(d) PKV_DIM_(gridDim, d)
#define PKV_GID(d) (PKV_GROUP(d) * PKV_LSIZE(d) + PKV_LID(d))
#define PKV_INLINE __device__ __forceinline__
typedef long long pkv_i64;
typedef int pkv_i32;
typedef unsigned int pkv_u32;
typedef unsigned short pkv_u16;
typedef unsigned char pkv_u8;
#define pkv_rintf(x) rintf(x)
/* half/bf16 conversions come from the backend header (hip/ or the CUDA
 * mapping), which defines pkv_load_f16 / pkv_store_f16 before including
 * the portable kernels. */
#define pkv_as_float(u) __uint_as_float(u)
#define pkv_as_uint(f) __float_as_uint(f)
#define pkv_expf(x) __expf(x)
#define pkv_logf(x) __logf(x)
#define pkv_tanhf(x) tanhf(x)
#define pkv_fmaxf(a, b) fmaxf((a), (b))
#define pkv_sqrtf(x) sqrtf(x)
#define PKV_INFINITY __int_as_float(0x7f800000)
/* The backend header may provide vector versions (PKV_HAVE_LD8); the
 * scalar fallback (macros, so pkv_load_f16 may be defined later) lets the
 * compiler merge the loads where it can. pkv_half (e.g. __half) comes from
 * the backend header with pkv_load_f16. */
/* pkv_f8 as a struct; the backend may supply its own (PKV_HAVE_F8). */
#ifndef PKV_HAVE_F8
typedef struct pkv_f8 {
  float v[8];
} pkv_f8;
PKV_INLINE pkv_f8 pkv_f8_zero(void) {
  pkv_f8 r;
  for (int e = 0; e < 8; e++) r.v[e] = 0.0f;
  return r;
}
PKV_INLINE pkv_f8 pkv_f8_fma(pkv_f8 a, pkv_f8 b, pkv_f8 c) {
  for (int e = 0; e < 8; e++) c.v[e] = a.v[e] * b.v[e] + c.v[e];
  return c;
}
PKV_INLINE pkv_f8 pkv_f8_add(pkv_f8 a, pkv_f8 b) {
  for (int e = 0; e < 8; e++) a.v[e] += b.v[e];
  return a;
}
PKV_INLINE pkv_f8 pkv_f8_axpy(float s, pkv_f8 x, pkv_f8 y) {
  for (int e = 0; e < 8; e++) y.v[e] = s * x.v[e] + y.v[e];
  return y;
}
PKV_INLINE float pkv_f8_hsum(pkv_f8 a) {
  return ((a.v[0] + a.v[4]) + (a.v[2] + a.v[6])) +
         ((a.v[1] + a.v[5]) + (a.v[3] + a.v[7]));
}
/* Statement macros, expanded where used, so pkv_ld8_* may come later. */
#define pkv_ld8v_f32(dst, p) pkv_ld8_f32((p), (dst).v)
#define pkv_ld8v_f16(dst, p) pkv_ld8_f16((p), (dst).v)
#define pkv_ld8v_bf16(dst, p) pkv_ld8_bf16((p), (dst).v)
#define pkv_f8_ldl(dst, p) \
  do { for (int e_ = 0; e_ < 8; e_++) (dst).v[e_] = (p)[e_]; } while (0)
#define pkv_f8_stl(x, p) \
  do { for (int e_ = 0; e_ < 8; e_++) (p)[e_] = (x).v[e_]; } while (0)
#define pkv_f8_stp(x, p) pkv_f8_stl(x, p)
#endif
#ifndef PKV_HAVE_LD8
#define pkv_ld8_f32(p, o)                                                     \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = (p)[e_]; } while (0)
#define pkv_ld8_f16(p, o)                                                     \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = pkv_load_f16((p), e_); } while (0)
#define pkv_ld8_bf16(p, o)                                                    \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = pkv_bf16_to_f32((p)[e_]); } while (0)
#endif
#endif

#ifndef PKV_KNAME
#define PKV_KNAME(name) name
#endif

/* bf16 is the upper half of an f32: portable through bit operations. */
PKV_INLINE float pkv_bf16_to_f32(pkv_u16 h) {
  return pkv_as_float(((pkv_u32)h) << 16);
}
PKV_INLINE pkv_u16 pkv_f32_to_bf16(float f) {
  pkv_u32 u = pkv_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (pkv_u16)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (pkv_u16)(u >> 16);
}
#define pkv_load_bf16(p, i) pkv_bf16_to_f32((p)[i])
#define pkv_store_bf16(v, p, i) ((p)[i] = pkv_f32_to_bf16(v))

#endif
