/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenCL C 1.2 side of the plain kernel dialect (kernels/dialect.h).
 * Concatenated before dialect.h into every OpenCL program
 * (tools/embed-kernels.sh); no include guard is possible across the
 * program's sources, so it is wrapped in the language test alone. */
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
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
#endif
