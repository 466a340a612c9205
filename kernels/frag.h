/* SPDX-License-Identifier: Apache-2.0 */
/* The fragment dialect: 16x16x16 matrix products on a wave's matrix unit,
 * on top of the tile dialect (tile.h). A fragment is a 16x16 tile spread
 * over the lanes of one wave, PKV_FRAG_N elements per lane:
 *
 *   pkv_frag_a   A operand, 16 rows x 16 k, f16 or bf16 (PKV_DTYPE)
 *   pkv_frag_b   B operand, 16 k x 16 columns, f16 or bf16
 *   pkv_frag_c   f32 accumulator, 16 rows x 16 columns; c.x[i] is element
 *                (pkv_frag_row(lane, i), pkv_frag_col(lane, i))
 *
 * Two lane maps (PKV_FRAG), each the one its vendor's instruction fixes:
 *   1  NVIDIA, wave 32: two mma.sync.m16n8k16 (columns 0-7 and 8-15).
 *      A and C: row = lane/4 + 8*((i>>1)&1), col = 2*(lane%4) + (i&1)
 *      + 8*(i>>2); B: k = 2*(lane%4) + (i&1) + 8*((i>>1)&1),
 *      n = lane/4 + 8*(i>>2). 8 elements per lane.
 *   2  AMD CDNA, wave 64: v_mfma_f32_16x16x16 with the operands swapped
 *      (the unit computes B^T A^T = C^T), which makes A and C share one map:
 *      A and C: row = lane%16, col = 4*(lane/16) + i; B: k = 4*(lane/16) + i,
 *      n = lane%16. 4 elements per lane.
 * On both maps A and C own the same (row, col) per (lane, i), so the f32
 * scores P of one product become the A operand of the next (P.V) in
 * registers: pkv_frag_c_to_a only rounds. Elements 2j and 2j+1 are
 * neighbouring columns of one row on both maps (pkv_frag_a_set2).
 *
 * A lane holds PKV_FRAG_LROWS rows of a C fragment (2 on NVIDIA, 1 on AMD),
 * element i in its row pkv_frag_lrow(i); the other lanes of a row are the
 * lane's xor partners at PKV_FRAG_RX1 and PKV_FRAG_RX2, which
 * pkv_frag_row_max/sum reduce over (a fixed tree: every lane of a row gets
 * the same bits).
 *
 * Operations (every lane of the wave, uniform control flow):
 *   pkv_frag_c_zero(&c)
 *   pkv_frag_ld_a(&a, p, ld)   A from a row-major 16x16 tile in local memory
 *   pkv_frag_ld_bt(&b, p, ld)  B from its transpose stored row-major (n x k:
 *                              the K tile, keys x head dim)
 *   pkv_frag_ld_b(&b, p, ld)   B stored row-major (k x n: the V tile)
 *   pkv_frag_a_set2(&a, j, v0, v1) elements 2j, 2j+1 of A from floats
 *   pkv_frag_c_to_a(&a, &c)    P as the A operand of the next product
 *   pkv_frag_mma(&c, &a, &b, scr)  c += a.b
 * Local tiles hold the raw 16-bit elements (pkv_u16) of PKV_DTYPE (1 f16,
 * 2 bf16), 16-byte aligned rows, ld a multiple of 8.
 *
 * Where no matrix unit is compiled for (every OpenCL device, PoCL
 * included; HIP targets without one), the products run through local
 * memory (PKV_FRAG_EMU): each lane writes the elements it owns by the map,
 * a barrier, each lane computes the elements of C it owns, a barrier. The
 * kernel body is the same, so PoCL exercises its use of each map. */
#ifndef PKV_FRAG_H
#define PKV_FRAG_H
/* OpenCL programs have it only when they carry the mma kernel. */
#if defined(PKV_WITH_MMA) || \
    !(defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__))

#if !(defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__))
#include "device/hip/frag.h"
#endif

#if PKV_FRAG == 1
#if PKV_WAVE != 32
#error "PKV_FRAG=1 (NVIDIA map) needs PKV_WAVE=32"
#endif
#define PKV_FRAG_N 8
#define PKV_FRAG_LROWS 2
#define PKV_FRAG_RX1 1
#define PKV_FRAG_RX2 2
PKV_INLINE int pkv_frag_row(int l, int i) { return (l >> 2) + 8 * ((i >> 1) & 1); }
PKV_INLINE int pkv_frag_col(int l, int i) { return 2 * (l & 3) + (i & 1) + 8 * (i >> 2); }
PKV_INLINE int pkv_frag_bk(int l, int i) { return 2 * (l & 3) + (i & 1) + 8 * ((i >> 1) & 1); }
PKV_INLINE int pkv_frag_bn(int l, int i) { return (l >> 2) + 8 * (i >> 2); }
#define pkv_frag_lrow(i) (((i) >> 1) & 1)
#define pkv_frag_lrow_elem(r) (2 * (r)) /* an element i of local row r */
#elif PKV_FRAG == 2
#if PKV_WAVE != 64
#error "PKV_FRAG=2 (AMD map) needs PKV_WAVE=64"
#endif
#define PKV_FRAG_N 4
#define PKV_FRAG_LROWS 1
#define PKV_FRAG_RX1 16
#define PKV_FRAG_RX2 32
PKV_INLINE int pkv_frag_row(int l, int i) { (void)i; return l & 15; }
PKV_INLINE int pkv_frag_col(int l, int i) { return 4 * (l >> 4) + i; }
PKV_INLINE int pkv_frag_bk(int l, int i) { return 4 * (l >> 4) + i; }
PKV_INLINE int pkv_frag_bn(int l, int i) { (void)i; return l & 15; }
#define pkv_frag_lrow(i) 0
#define pkv_frag_lrow_elem(r) 0
#else
#error "PKV_FRAG must be 1 (NVIDIA lane map) or 2 (AMD lane map)"
#endif

/* Lane within the wave; waves are PKV_WAVE consecutive ids. */
#define pkv_frag_lane() (PKV_LID(0) & (PKV_WAVE - 1))

/* An element of the cache's 16-bit type as float, and a float rounded to
 * it (round to nearest even), both on the raw bits. */
#if PKV_DTYPE == 2
#define pkv_frag_bits2f(u) pkv_bf16_to_f32(u)
#define pkv_frag_f2bits(f) pkv_f32_to_bf16(f)
#else
#define pkv_frag_bits2f(u) pkv_frag_h2f_(u)
#define pkv_frag_f2bits(f) pkv_frag_f2h_(f)
#endif

PKV_INLINE float pkv_frag_row_max(float x, PKV_LOCAL float *scr) {
  x = pkv_fmaxf(x, PKV_SHFL_XOR(x, PKV_FRAG_RX1, scr));
  return pkv_fmaxf(x, PKV_SHFL_XOR(x, PKV_FRAG_RX2, scr));
}
PKV_INLINE float pkv_frag_row_sum(float x, PKV_LOCAL float *scr) {
  x = x + PKV_SHFL_XOR(x, PKV_FRAG_RX1, scr);
  return x + PKV_SHFL_XOR(x, PKV_FRAG_RX2, scr);
}

#ifdef PKV_FRAG_EMU
/* ------------------------------------------------ emulation in local memory
 * A and B elements are kept as floats already rounded to the 16-bit type,
 * so the products are those of the matrix unit (exact in f32); the sum
 * over k runs in a fixed order (k = 0..15, f32 fma). */
typedef struct pkv_frag_a { float x[PKV_FRAG_N]; } pkv_frag_a;
typedef struct pkv_frag_b { float x[PKV_FRAG_N]; } pkv_frag_b;
typedef struct pkv_frag_c { float x[PKV_FRAG_N]; } pkv_frag_c;
/* 512 floats per wave: the A and the B tile of one product. */
#define PKV_FRAG_SCRATCH(name, nt) PKV_LOCAL_DECL float name[((nt) / PKV_WAVE) * 512]

PKV_INLINE void pkv_frag_c_zero(pkv_frag_c *c) {
  for (int i = 0; i < PKV_FRAG_N; i++) c->x[i] = 0.0f;
}
PKV_INLINE void pkv_frag_ld_a(pkv_frag_a *a, PKV_LOCAL const pkv_u16 *p, int ld) {
  const int l = pkv_frag_lane();
  for (int i = 0; i < PKV_FRAG_N; i++)
    a->x[i] = pkv_frag_bits2f(p[pkv_frag_row(l, i) * ld + pkv_frag_col(l, i)]);
}
PKV_INLINE void pkv_frag_ld_bt(pkv_frag_b *b, PKV_LOCAL const pkv_u16 *p, int ld) {
  const int l = pkv_frag_lane();
  for (int i = 0; i < PKV_FRAG_N; i++)
    b->x[i] = pkv_frag_bits2f(p[pkv_frag_bn(l, i) * ld + pkv_frag_bk(l, i)]);
}
PKV_INLINE void pkv_frag_ld_b(pkv_frag_b *b, PKV_LOCAL const pkv_u16 *p, int ld) {
  const int l = pkv_frag_lane();
  for (int i = 0; i < PKV_FRAG_N; i++)
    b->x[i] = pkv_frag_bits2f(p[pkv_frag_bk(l, i) * ld + pkv_frag_bn(l, i)]);
}
PKV_INLINE void pkv_frag_a_set2(pkv_frag_a *a, int j, float v0, float v1) {
  a->x[2 * j] = pkv_frag_bits2f(pkv_frag_f2bits(v0));
  a->x[2 * j + 1] = pkv_frag_bits2f(pkv_frag_f2bits(v1));
}
PKV_INLINE void pkv_frag_c_to_a(pkv_frag_a *a, const pkv_frag_c *c) {
  for (int i = 0; i < PKV_FRAG_N; i++)
    a->x[i] = pkv_frag_bits2f(pkv_frag_f2bits(c->x[i]));
}
/* Every work-item of the group must call it (two barriers). */
PKV_INLINE void pkv_frag_mma(pkv_frag_c *c, const pkv_frag_a *a,
                             const pkv_frag_b *b, PKV_LOCAL float *scr) {
  const int l = pkv_frag_lane();
  PKV_LOCAL float *sa = scr + (PKV_LID(0) / PKV_WAVE) * 512, *sb = sa + 256;
  for (int i = 0; i < PKV_FRAG_N; i++) {
    sa[pkv_frag_row(l, i) * 16 + pkv_frag_col(l, i)] = a->x[i];
    sb[pkv_frag_bk(l, i) * 16 + pkv_frag_bn(l, i)] = b->x[i];
  }
  PKV_BARRIER();
  for (int i = 0; i < PKV_FRAG_N; i++) {
    const int r = pkv_frag_row(l, i), n = pkv_frag_col(l, i);
    float acc = c->x[i];
    for (int k = 0; k < 16; k++) acc = sa[r * 16 + k] * sb[k * 16 + n] + acc;
    c->x[i] = acc;
  }
  PKV_BARRIER();
}
#endif /* PKV_FRAG_EMU */

#endif /* PKV_WITH_MMA or HIP */
#endif
