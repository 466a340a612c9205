/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP/CUDA side of the fragment dialect (kernels/frag.h): which lane
 * map and which matrix instruction each target compiles to.
 *
 *   nvcc, sm_80 and newer (sm_90 included): PKV_FRAG 1, mma.sync.aligned.
 *     m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 twice per 16x16x16
 *     product, operands loaded by ldmatrix.sync.aligned.m8n8.x4(.trans)
 *     .shared.b16, f32 -> 16-bit pairs by cvt.rn.{f16,bf16}x2.f32;
 *   hipcc, gfx90a / gfx940-942: PKV_FRAG 2, __builtin_amdgcn_mfma_f32_
 *     16x16x16f16 and _16x16x16bf16_1k (v_mfma_f32_16x16x16_f16/bf16),
 *     operands read from LDS with the map (8-byte reads for A and K);
 *   hipcc, gfx908: MFMA for f16; bf16 (whose 16x16x16 form gfx908 lacks)
 *     and every other target (RDNA: Debian's hipcc does not target
 *     gfx1100's WMMA; older NVIDIA) run the local-memory emulation
 *     (PKV_FRAG_EMU) under the map of their wave width, as OpenCL does.
 * The host pass of a HIP compile only needs the kernels' signatures: it
 * gets the emulation. */
#ifndef PKV_DEVICE_HIP_FRAG_H
#define PKV_DEVICE_HIP_FRAG_H

#if defined(__CUDACC__) && !defined(__HIP__)
#define PKV_FRAG 1
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define PKV_FRAG_MMA_SYNC 1
#else
#define PKV_FRAG_EMU 1
#endif
#else
#if PKV_WAVE == 64
#define PKV_FRAG 2
#if defined(__HIP_DEVICE_COMPILE__) &&                                        \
    (defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) ||    \
     defined(__gfx942__) || (defined(__gfx908__) && PKV_DTYPE != 2))
#define PKV_FRAG_MFMA 1
#else
#define PKV_FRAG_EMU 1
#endif
#else
#define PKV_FRAG 1
#define PKV_FRAG_EMU 1
#endif
#endif

/* The kernel holds Q and O in registers (FA2); 128-256 threads a block
 * may use up to 255 registers a thread. The minimum of blocks per SM is
 * the includer's PKV_FRAG_MIN_BLOCKS (default 1), said explicitly: with
 * none, ptxas (CUDA 12, sm_90) held the head dim 64 mma instantiation at
 * 128 registers and spilled 28 bytes; with 1 it took 196 at head dim 128
 * (2 blocks per SM); prefill_mma.cl asks 3 up to head dim 128. */
#ifndef PKV_FRAG_MIN_BLOCKS
#define PKV_FRAG_MIN_BLOCKS 1
#endif
#define PKV_FRAG_LAUNCH_BOUNDS(nt) __launch_bounds__(nt, PKV_FRAG_MIN_BLOCKS)
#define PKV_FRAG_ZERO4 make_uint4(0u, 0u, 0u, 0u)
#define pkv_frag_h2f_(u) pkv_hip_h2f(u)
#define pkv_frag_f2h_(f) pkv_hip_f2h(f)

#if defined(PKV_FRAG_MMA_SYNC)
/* ------------------------------------------------------------ NVIDIA */
typedef struct pkv_frag_a { unsigned x[4]; } pkv_frag_a; /* 8 halves */
typedef struct pkv_frag_b { unsigned x[4]; } pkv_frag_b; /* 2 n8 tiles */
typedef struct pkv_frag_c { float x[8]; } pkv_frag_c;    /* 2 n8 tiles */
#define PKV_FRAG_SCRATCH(name, nt) float *name = 0

__device__ __forceinline__ void pkv_frag_c_zero(pkv_frag_c *c) {
#pragma unroll
  for (int i = 0; i < 8; i++) c->x[i] = 0.0f;
}
/* Two floats as a 16-bit pair, v0 in the low half. */
__device__ __forceinline__ unsigned pkv_frag_pack_(float v0, float v1) {
  unsigned r;
#if PKV_DTYPE == 2
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v1), "f"(v0));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v1), "f"(v0));
#endif
  return r;
}
__device__ __forceinline__ void pkv_frag_ldsm4_(unsigned *r, const void *p) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void pkv_frag_ldsm4t_(unsigned *r, const void *p) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(s));
}
/* Lane l gives the address of row l%8 of 8x8 matrix l/8. A: matrices
 * (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15). */
__device__ __forceinline__ void pkv_frag_ld_a(pkv_frag_a *a, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 31;
  pkv_frag_ldsm4_(a->x, p + (l & 15) * ld + 8 * (l >> 4));
}
/* B = K^T, K stored [n][k]: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k
 * 0-7), (n 8-15, k 8-15); a lane gets K[n][2t..2t+1] = B[2t..][n]. */
__device__ __forceinline__ void pkv_frag_ld_bt(pkv_frag_b *b, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 31, q = l >> 3;
  pkv_frag_ldsm4_(b->x, p + ((l & 7) + 8 * (q >> 1)) * ld + 8 * (q & 1));
}
/* B stored [k][n] (V): transposed loads of (k 0-7, n 0-7), (k 8-15, n
 * 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15). */
__device__ __forceinline__ void pkv_frag_ld_b(pkv_frag_b *b, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 31, q = l >> 3;
  pkv_frag_ldsm4t_(b->x, p + ((l & 7) + 8 * (q & 1)) * ld + 8 * (q >> 1));
}
__device__ __forceinline__ void pkv_frag_a_set2(pkv_frag_a *a, int j, float v0, float v1) {
  a->x[j] = pkv_frag_pack_(v0, v1);
}
__device__ __forceinline__ void pkv_frag_c_to_a(pkv_frag_a *a, const pkv_frag_c *c) {
#pragma unroll
  for (int j = 0; j < 4; j++) a->x[j] = pkv_frag_pack_(c->x[2 * j], c->x[2 * j + 1]);
}
#if PKV_DTYPE == 2
#define PKV_FRAG_MMA_OP_ "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
#else
#define PKV_FRAG_MMA_OP_ "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
#endif
__device__ __forceinline__ void pkv_frag_mma(pkv_frag_c *c, const pkv_frag_a *a,
                                             const pkv_frag_b *b, float *scr) {
  (void)scr;
#pragma unroll
  for (int t = 0; t < 2; t++)
    asm volatile(PKV_FRAG_MMA_OP_
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c->x[4 * t]), "+f"(c->x[4 * t + 1]),
                   "+f"(c->x[4 * t + 2]), "+f"(c->x[4 * t + 3])
                 : "r"(a->x[0]), "r"(a->x[1]), "r"(a->x[2]), "r"(a->x[3]),
                   "r"(b->x[2 * t]), "r"(b->x[2 * t + 1]));
}

#elif defined(PKV_FRAG_MFMA)
/* ------------------------------------------------------------ AMD CDNA */
typedef struct pkv_frag_a { unsigned x[2]; } pkv_frag_a; /* 4 halves */
typedef struct pkv_frag_b { unsigned x[2]; } pkv_frag_b;
typedef struct pkv_frag_c { float x[4]; } pkv_frag_c;
typedef _Float16 pkv_frag_h4_ __attribute__((ext_vector_type(4)));
typedef short pkv_frag_s4_ __attribute__((ext_vector_type(4)));
typedef float pkv_frag_f4_ __attribute__((ext_vector_type(4)));
#define PKV_FRAG_SCRATCH(name, nt) float *name = 0

__device__ __forceinline__ void pkv_frag_c_zero(pkv_frag_c *c) {
#pragma unroll
  for (int i = 0; i < 4; i++) c->x[i] = 0.0f;
}
__device__ __forceinline__ unsigned pkv_frag_bits_(float v) {
#if PKV_DTYPE == 2
  return pkv_f32_to_bf16(v);
#else
  return pkv_hip_f2h(v);
#endif
}
__device__ __forceinline__ unsigned pkv_frag_pack_(float v0, float v1) {
  return pkv_frag_bits_(v0) | (pkv_frag_bits_(v1) << 16);
}
/* A: row l%16, k 4*(l/16)..+3: one 8-byte LDS read (ld a multiple of 8). */
__device__ __forceinline__ void pkv_frag_ld_a(pkv_frag_a *a, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 63;
  const uint2 v = *(const uint2 *)(p + (l & 15) * ld + 4 * (l >> 4));
  a->x[0] = v.x;
  a->x[1] = v.y;
}
/* B = K^T, K stored [n][k]: n = l%16, k 4*(l/16)..+3, contiguous. */
__device__ __forceinline__ void pkv_frag_ld_bt(pkv_frag_b *b, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 63;
  const uint2 v = *(const uint2 *)(p + (l & 15) * ld + 4 * (l >> 4));
  b->x[0] = v.x;
  b->x[1] = v.y;
}
/* B stored [k][n] (V): four 2-byte reads down a column. */
__device__ __forceinline__ void pkv_frag_ld_b(pkv_frag_b *b, const pkv_u16 *p, int ld) {
  const int l = threadIdx.x & 63;
  const pkv_u16 *c = p + 4 * (l >> 4) * ld + (l & 15);
  b->x[0] = (unsigned)c[0] | ((unsigned)c[ld] << 16);
  b->x[1] = (unsigned)c[2 * ld] | ((unsigned)c[3 * ld] << 16);
}
__device__ __forceinline__ void pkv_frag_a_set2(pkv_frag_a *a, int j, float v0, float v1) {
  a->x[j] = pkv_frag_pack_(v0, v1);
}
__device__ __forceinline__ void pkv_frag_c_to_a(pkv_frag_a *a, const pkv_frag_c *c) {
  a->x[0] = pkv_frag_pack_(c->x[0], c->x[1]);
  a->x[1] = pkv_frag_pack_(c->x[2], c->x[3]);
}
/* The unit computes D = A'B' with A' lane l = row l%16, B' lane l =
 * column l%16, D lane l = column l%16, rows 4*(l/16)..: fed A' = our B
 * and B' = our A, it gives (AB)^T in D's map, i.e. AB in ours. */
__device__ __forceinline__ void pkv_frag_mma(pkv_frag_c *c, const pkv_frag_a *a,
                                             const pkv_frag_b *b, float *scr) {
  (void)scr;
  pkv_frag_f4_ acc = {c->x[0], c->x[1], c->x[2], c->x[3]};
#if PKV_DTYPE == 2
  pkv_frag_s4_ va, vb;
  __builtin_memcpy(&va, a->x, 8);
  __builtin_memcpy(&vb, b->x, 8);
  acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(vb, va, acc, 0, 0, 0);
#else
  pkv_frag_h4_ va, vb;
  __builtin_memcpy(&va, a->x, 8);
  __builtin_memcpy(&vb, b->x, 8);
  acc = __builtin_amdgcn_mfma_f32_16x16x16f16(vb, va, acc, 0, 0, 0);
#endif
  c->x[0] = acc[0];
  c->x[1] = acc[1];
  c->x[2] = acc[2];
  c->x[3] = acc[3];
}
#endif

#endif
