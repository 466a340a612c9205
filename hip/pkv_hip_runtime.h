/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP runtime names the backend uses, on AMD (hipcc, the real HIP
 * headers) and on NVIDIA (nvcc, mapped onto the CUDA runtime here).
 *
 * Why not HIP's own NVIDIA headers: Debian's HIP 5.2 nvidia_detail headers
 * use CUDA APIs that CUDA 13 removed and do not compile with nvcc 13. The
 * backend needs only the small set below, so mapping it is simpler than
 * depending on a matching HIP release. Add a name here before using it in
 * hip/; a name missing here breaks only the NVIDIA build, which CI builds.
 *
 * Device-side, this header also gives the portable kernels (kernels/) the
 * HIP side of the dialect that kernels/dialect.h leaves to the backend:
 * half conversions. Vendor fast paths get PKV_HIP_* macros. */
#ifndef PKV_HIP_RUNTIME_H
#define PKV_HIP_RUNTIME_H

#if defined(__NVCC__) || defined(__CUDACC__)
#ifndef PKV_HIP_CUDA
#define PKV_HIP_CUDA 1
#endif
#endif

#if defined(PKV_HIP_CUDA)
/* ------------------------------------------------------------ NVIDIA */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

typedef cudaError_t hipError_t;
typedef cudaStream_t hipStream_t;
typedef cudaEvent_t hipEvent_t;
typedef cudaDeviceProp hipDeviceProp_t;
typedef cudaMemcpyKind hipMemcpyKind;

#define hipSuccess cudaSuccess
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipEventDefault cudaEventDefault

#define hipGetErrorName cudaGetErrorName
#define hipGetErrorString cudaGetErrorString
#define hipGetLastError cudaGetLastError
#define hipGetDeviceCount cudaGetDeviceCount
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipGetDevice cudaGetDevice
#define hipSetDevice cudaSetDevice
#define hipDriverGetVersion cudaDriverGetVersion
#define hipRuntimeGetVersion cudaRuntimeGetVersion
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipEventCreate cudaEventCreate
#define hipEventDestroy cudaEventDestroy
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemsetAsync cudaMemsetAsync
#define hipHostMalloc(p, n, f) cudaMallocHost((p), (n))
#define hipHostFree cudaFreeHost
#define hipEventCreateWithFlags cudaEventCreateWithFlags
#define hipEventDisableTiming cudaEventDisableTiming
#define hipOccupancyMaxActiveBlocksPerMultiprocessor \
  cudaOccupancyMaxActiveBlocksPerMultiprocessor

#define PKV_HIP_VENDOR "NVIDIA"
#define PKV_HIP_RUNTIME_NAME "CUDA"

#ifdef __CUDACC__
/* Full-warp shuffle: every lane of the warp takes part. */
#define PKV_HIP_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#endif

#else
/* ------------------------------------------------------------ AMD */
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#define PKV_HIP_VENDOR "AMD"
#define PKV_HIP_RUNTIME_NAME "HIP"
#define PKV_HIP_SHFL_XOR(v, m) __shfl_xor((v), (m))
#endif

/* ------------------------------------------------------------ dialect */
/* f16 storage is addressed as 16-bit words (pkv_u16 in the kernels): the
 * conversions go through __half so that both vendors round the same way
 * (to nearest even, as OpenCL's vstore_half_rte). */
#if defined(__HIPCC__) || defined(__CUDACC__)
__device__ __forceinline__ float pkv_hip_h2f(unsigned short u) {
  return __half2float(__ushort_as_half(u));
}
__device__ __forceinline__ unsigned short pkv_hip_f2h(float f) {
  return __half_as_ushort(__float2half_rn(f));
}
#define pkv_load_f16(p, i) \
  pkv_hip_h2f(((const unsigned short *)(p))[i])
#define pkv_store_f16(v, p, i) \
  (((unsigned short *)(p))[i] = pkv_hip_f2h(v))
#endif

#endif
