/* SPDX-License-Identifier: Apache-2.0 */
/* OpenCL launch configuration of the GPU-shaped kernels: the wave width
 * the kernel bodies assume (a native sub-group size, or the emulated one),
 * the copy stages, and the launch-bounds attribute. The host passes the
 * values as build options (opencl/ocl_program.c); these are defaults. */
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#ifndef PKV_WAVE
#define PKV_WAVE 32
#endif
#ifndef PKV_STAGES
#define PKV_STAGES 2
#endif
/* reqd_work_group_size is OpenCL's launch bound: the compiler may size
 * registers (and PoCL its work-item loops) for exactly this block. */
#define PKV_LAUNCH_BOUNDS(nt) __attribute__((reqd_work_group_size((nt), 1, 1)))
#endif
