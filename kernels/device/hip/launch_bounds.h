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
/* Tells the register allocator the block size and the resident threads
 * per SM it must allow: on sm_90, 1024 (1024/nt blocks, at most 64
 * registers a thread: 50% occupancy, which 16 KiB of shared memory per
 * block allows too); elsewhere 768 (85 registers: sm_80 spills the head
 * dim 112 instantiation at 64 and 72, tests/gate-gpu-code.sh). HIP reads
 * the second value as waves per SIMD, a looser bound (VGPRs <= 512 / it)
 * that CDNA meets anyway. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PKV_LAUNCH_BOUNDS(nt) __launch_bounds__((nt), 1024 / (nt))
#else
#define PKV_LAUNCH_BOUNDS(nt) __launch_bounds__((nt), 768 / (nt))
#endif
#endif
