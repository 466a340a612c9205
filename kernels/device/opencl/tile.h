/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenCL definitions of the tile dialect (kernels/tile.h).
 *
 * Sub-groups: with PKV_SG_NATIVE (set by the host only for a GPU device
 * with cl_intel_subgroups) the shuffles are the device's own, at the
 * required sub-group size PKV_WAVE. Everywhere else, PoCL included, a
 * shuffle goes through local memory: each work-item writes its value,
 * a barrier, each reads its partner's, a barrier. Work-items are grouped
 * into emulated waves of PKV_WAVE consecutive ids, so a kernel that
 * shuffled across a wave boundary would read the wrong lane here as it
 * would on the GPU. The emulation needs every work-item of the group at
 * every shuffle, which the GPU's full-mask shuffles need per wave too.
 *
 * Async copies: a plain 16-byte copy. With PKV_EMU_POISON the copy writes
 * a NaN pattern to the destination and remembers the source; the data
 * arrives only at the wait that retires its commit group, so a kernel
 * that reads before waiting computes NaN and fails the conformance
 * grid. */
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)

typedef uint4 pkv_u32x4;

#if defined(PKV_SG_NATIVE) && defined(cl_intel_subgroups)
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
#define PKV_TILE_NATIVE 1
#define PKV_SG_ATTR __attribute__((intel_reqd_sub_group_size(PKV_WAVE)))
#define PKV_TILE_SCRATCH(name, nt) __local float name[1]
#define PKV_SHFL_XOR(x, m, scr) intel_sub_group_shuffle_xor((x), (uint)(m))
#else
#define PKV_SG_ATTR
/* One float per work-item of the group. */
#define PKV_TILE_SCRATCH(name, nt) __local float name[(nt)]
PKV_INLINE float pkv_shfl_xor_emu(float x, int m, __local float *scr) {
  const int l = (int)get_local_id(0);
  scr[l] = x;
  barrier(CLK_LOCAL_MEM_FENCE);
  /* m < PKV_WAVE keeps the partner inside the emulated wave. */
  const float y = scr[l ^ (m & (PKV_WAVE - 1))];
  barrier(CLK_LOCAL_MEM_FENCE);
  return y;
}
#define PKV_SHFL_XOR(x, m, scr) pkv_shfl_xor_emu((x), (m), (scr))
#endif

#define pkv_mulhi_u32(a, b) mul_hi((uint)(a), (uint)(b))

/* Async copies. PKV_ASYNC_MAX bounds the copies one work-item has in
 * flight (stages x copies per stage); the poison mode checks it. */
#ifdef PKV_EMU_POISON
#ifndef PKV_ASYNC_MAX
#define PKV_ASYNC_MAX 32
#endif
typedef struct pkv_async {
  __local pkv_u32x4 *dst[PKV_ASYNC_MAX];
  __global const pkv_u32x4 *src[PKV_ASYNC_MAX];
  int grp[PKV_ASYNC_MAX];
  int n;     /* copies pending */
  int open;  /* id of the group being filled */
} pkv_async;
PKV_INLINE void pkv_async_init(pkv_async *a) { a->n = 0; a->open = 0; }
PKV_INLINE void pkv_cp16(pkv_async *a, __local pkv_u32x4 *dst,
                         __global const pkv_u32x4 *src) {
  *dst = (uint4)(0x7fc07fc0u); /* NaN as f32, and in both f16 and bf16 halves */
  if (a->n < PKV_ASYNC_MAX) {
    a->dst[a->n] = dst;
    a->src[a->n] = src;
    a->grp[a->n] = a->open;
    a->n++;
  } /* over the bound: the data never arrives, and the tests fail */
}
PKV_INLINE void pkv_async_commit(pkv_async *a) { a->open++; }
/* Retires every group but the newest `keep` committed ones.
 * PKV_EMU_LATE_WAIT (a test of the test) retires one group too few, as a
 * kernel with an off-by-one wait would. */
PKV_INLINE void pkv_async_wait(pkv_async *a, int keep) {
#ifdef PKV_EMU_LATE_WAIT
  if (keep > 0) keep++;
#endif
  int last = a->open - keep, w = 0;
  for (int i = 0; i < a->n; i++) {
    if (a->grp[i] < last) {
      *a->dst[i] = *a->src[i];
    } else {
      a->dst[w] = a->dst[i];
      a->src[w] = a->src[i];
      a->grp[w] = a->grp[i];
      w++;
    }
  }
  a->n = w;
}
#else
typedef struct pkv_async {
  int unused; /* OpenCL C has no empty structs */
} pkv_async;
PKV_INLINE void pkv_async_init(pkv_async *a) { a->unused = 0; }
PKV_INLINE void pkv_cp16(pkv_async *a, __local pkv_u32x4 *dst,
                         __global const pkv_u32x4 *src) {
  (void)a;
  *dst = *src;
}
PKV_INLINE void pkv_async_commit(pkv_async *a) { (void)a; }
PKV_INLINE void pkv_async_wait(pkv_async *a, int keep) {
  (void)a;
  (void)keep;
}
#endif

/* 8 elements of a 16-byte aligned global row. */
#define pkv_ldg8_f32(dst, p) pkv_ld8v_f32(dst, p)
#define pkv_ldg8_f16(dst, p) pkv_ld8v_f16(dst, p)
#define pkv_ldg8_bf16(dst, p) pkv_ld8v_bf16(dst, p)

/* 8 elements of a local row (16-byte aligned by construction) as floats. */
#define pkv_lds8_f32(dst, p) ((dst) = vload8(0, (__local const float *)(p)))
#define pkv_lds8_f16(dst, p) ((dst) = vload_half8(0, (__local const half *)(p)))
#define pkv_lds8_bf16(dst, p) \
  ((dst) = as_float8(convert_uint8(vload8(0, (__local const ushort *)(p))) << 16))

#endif
