/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP/CUDA definitions of the tile dialect (kernels/tile.h).
 *
 * Shuffles: the warp/wave's own (__shfl_xor_sync on NVIDIA, __shfl_xor on
 * AMD), which need every lane of the wave: the kernels call them from
 * uniform control flow, as the OpenCL emulation requires too.
 *
 * Async copies: on NVIDIA sm_80 and newer, cp.async.cg (16 bytes, L2
 * only, so a streamed K/V row does not evict the L1) with commit and wait
 * groups. Elsewhere (AMD CDNA, older NVIDIA) a 16-byte load into a
 * register and a store to shared memory: the kernels issue the copies
 * for a tile STAGES-1 tiles ahead of its use, so the loads of the next
 * tiles are in flight (in registers) while the current one is computed. */
#ifndef PKV_DEVICE_HIP_TILE_H
#define PKV_DEVICE_HIP_TILE_H

typedef uint4 pkv_u32x4;

#define PKV_SG_ATTR
#define PKV_TILE_SCRATCH(name, nt) float *name = 0
#if defined(__CUDACC__) && !defined(__HIP__)
#define PKV_SHFL_XOR(x, m, scr) __shfl_xor_sync(0xffffffffu, (x), (m))
#define pkv_mulhi_u32(a, b) __umulhi((unsigned)(a), (unsigned)(b))
#else
#define PKV_SHFL_XOR(x, m, scr) __shfl_xor((x), (m))
#define pkv_mulhi_u32(a, b) __umulhi((unsigned)(a), (unsigned)(b))
#endif

typedef struct pkv_async {
  int unused;
} pkv_async;
__device__ __forceinline__ void pkv_async_init(pkv_async *a) { (void)a; }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define PKV_HAVE_CP_ASYNC 1
__device__ __forceinline__ void pkv_cp16(pkv_async *a, pkv_u32x4 *dst,
                                         const pkv_u32x4 *src) {
  (void)a;
  const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src)
               : "memory");
}
__device__ __forceinline__ void pkv_async_commit(pkv_async *a) {
  (void)a;
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* keep is a constant expression at every call (the PTX takes an
 * immediate); the switch folds away. */
__device__ __forceinline__ void pkv_async_wait(pkv_async *a, int keep) {
  (void)a;
  switch (keep) {
  case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
  case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
  case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
  default: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
  }
}
#else
__device__ __forceinline__ void pkv_cp16(pkv_async *a, pkv_u32x4 *dst,
                                         const pkv_u32x4 *src) {
  (void)a;
  *dst = *src;
}
__device__ __forceinline__ void pkv_async_commit(pkv_async *a) { (void)a; }
__device__ __forceinline__ void pkv_async_wait(pkv_async *a, int keep) {
  (void)a;
  (void)keep;
}
#endif

/* 8 elements of a shared-memory row (16-byte aligned by construction). */
__device__ __forceinline__ void pkv_lds8_f32_(const void *p, pkv_f8 &d) {
  const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
  d.v[0] = a.x; d.v[1] = a.y; d.v[2] = a.z; d.v[3] = a.w;
  d.v[4] = b.x; d.v[5] = b.y; d.v[6] = b.z; d.v[7] = b.w;
}
__device__ __forceinline__ void pkv_lds8_f16_(const void *p, pkv_f8 &d) {
  pkv_hip_unpack_f16(*(const uint4 *)p, d.v);
}
__device__ __forceinline__ void pkv_lds8_bf16_(const void *p, pkv_f8 &d) {
  pkv_hip_unpack_bf16(*(const uint4 *)p, d.v);
}
/* 8 elements of a 16-byte aligned global row, through the read-only
 * path (ld.global.nc.v4 on NVIDIA). */
__device__ __forceinline__ void pkv_ldg8_f32_(const void *p, pkv_f8 &d) {
  const float4 a = __ldg((const float4 *)p), b = __ldg((const float4 *)p + 1);
  d.v[0] = a.x; d.v[1] = a.y; d.v[2] = a.z; d.v[3] = a.w;
  d.v[4] = b.x; d.v[5] = b.y; d.v[6] = b.z; d.v[7] = b.w;
}
__device__ __forceinline__ void pkv_ldg8_f16_(const void *p, pkv_f8 &d) {
  pkv_hip_unpack_f16(__ldg((const uint4 *)p), d.v);
}
__device__ __forceinline__ void pkv_ldg8_bf16_(const void *p, pkv_f8 &d) {
  pkv_hip_unpack_bf16(__ldg((const uint4 *)p), d.v);
}
#define pkv_ldg8_f32(dst, p) pkv_ldg8_f32_((p), (dst))
#define pkv_ldg8_f16(dst, p) pkv_ldg8_f16_((p), (dst))
#define pkv_ldg8_bf16(dst, p) pkv_ldg8_bf16_((p), (dst))
#define pkv_lds8_f32(dst, p) pkv_lds8_f32_((p), (dst))
#define pkv_lds8_f16(dst, p) pkv_lds8_f16_((p), (dst))
#define pkv_lds8_bf16(dst, p) pkv_lds8_bf16_((p), (dst))

#endif
