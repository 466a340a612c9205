/* SPDX-License-Identifier: Apache-2.0 */
/* HIP/CUDA launch configuration of the GPU-shaped kernels: the wave width
 * (64 on AMD CDNA, 32 on NVIDIA and RDNA: taken from the compiler, never
 * assumed), copy stages and launch bounds. */
#ifndef PKV_DEVICE_HIP_LAUNCH_BOUNDS_H
#define PKV_DEVICE_HIP_LAUNCH_BOUNDS_H
#ifndef PKV_WAVE
#if defined(__HIP_PLATFORM_AMD__) || defined(__HIP_PLATFORM_HCC__)
#if defined(__GFX10__) || defined(__GFX11__) || defined(__GFX12__)
#define PKV_WAVE 32
#else
#define PKV_WAVE 64
#endif
#else
#define PKV_WAVE 32
#endif
#endif
#ifndef PKV_STAGES
#define PKV_STAGES 2
#endif
/* Tells the register allocator the block size and asks for 1024 resident
 * threads per SM (CUDA: 1024/nt blocks, i.e. at most 64 registers per
 * thread: 50% occupancy on sm_80/sm_90, where 16 KiB of shared memory per
 * block allows it too). HIP reads the second value as waves per SIMD, a
 * looser bound (VGPRs <= 512 / it) that CDNA meets anyway. */
#define PKV_LAUNCH_BOUNDS(nt) __launch_bounds__((nt), 1024 / (nt))
#endif
