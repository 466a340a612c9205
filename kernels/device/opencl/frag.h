/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenCL side of the fragment dialect (kernels/frag.h). OpenCL C 1.2
 * has no matrix unit: every product runs through local memory
 * (PKV_FRAG_EMU), under the lane map the host asks for with -DPKV_FRAG=1
 * (NVIDIA m16n8k16, wave 32) or -DPKV_FRAG=2 (AMD CDNA 16x16x16, wave 64),
 * so the kernel body PoCL runs is the one each GPU compiles, with that
 * vendor's ownership of rows and columns. The default follows the wave. */
#if (defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)) && \
    defined(PKV_WITH_MMA)
#ifndef PKV_FRAG
#if PKV_WAVE == 64
#define PKV_FRAG 2
#else
#define PKV_FRAG 1
#endif
#endif
#define PKV_FRAG_EMU 1
PKV_INLINE float pkv_frag_h2f_(pkv_u16 u) {
  return vload_half(0, (const half *)&u);
}
PKV_INLINE pkv_u16 pkv_frag_f2h_(float f) {
  pkv_u16 u;
  vstore_half_rte(f, 0, (half *)&u);
  return u;
}
#endif
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define PKV_FRAG_LAUNCH_BOUNDS(nt) __attribute__((reqd_work_group_size((nt), 1, 1)))
#define PKV_FRAG_ZERO4 ((uint4)(0u))
#endif
