# SPDX-License-Identifier: Apache-2.0
# HIP backend detection: AMD through hipcc (--with-hip[=DIR]) or NVIDIA
# through nvcc (--with-cuda[=DIR]). In a module build both may be given:
# each vendor's objects go into their own module (backend-hip.so,
# backend-cuda.so), so one install serves AMD and NVIDIA nodes. With
# --disable-modules the backend is linked into libpagedkv, where the two
# variants' identical kernel names would clash: one vendor only.
#
# Results:
#   PKV_HAVE_HIP (config.h)     a HIP backend is built (either vendor)
#   HIPCC, NVCC (precious)      the device compilers
#   HIP_AMD_FLAGS, HIP_AMD_LIBS     hipcc flags and runtime link flags
#   HIP_CUDA_FLAGS, HIP_CUDA_LIBS   nvcc flags and runtime link flags
#   HIP_LIBS                    the runtime of a --disable-modules build
#   HIP_LT_MODE                 libtool compile mode (one PIC object only)
#   HIP_AMD_DETAIL, HIP_CUDA_DETAIL   the summary line
#   conditionals HAVE_HIP_AMD, HAVE_HIP_CUDA, HAVE_HIP
have_hip_amd=no
have_hip_cuda=no
HIP_AMD_DETAIL=
HIP_CUDA_DETAIL=
HIP_AMD_FLAGS=
HIP_AMD_LIBS=
HIP_CUDA_FLAGS=
HIP_CUDA_LIBS=
HIP_LIBS=
AC_ARG_VAR([HIPCC], [HIP compiler for the AMD build (default: hipcc)])
AC_ARG_VAR([NVCC], [CUDA compiler for the NVIDIA build (default: nvcc)])
AC_ARG_VAR([HIPFLAGS], [extra flags for every HIP/CUDA device compile])

AS_IF([test "x$with_hip" != xno && test "x$with_cuda" != xno &&
       test "x$enable_modules" = xno],
  [AC_MSG_ERROR([--with-hip and --with-cuda together need backend modules: drop --disable-modules, or configure one build per vendor])])

# The configure probes compile a tiny kernel that uses what the backend
# uses (half conversion, a shuffle of the device's width) for every
# requested target, so that a target the compiler does not know fails here
# rather than minutes into make. (No brackets in the probe: m4 quotes.)
# ---------------------------------------------------------------- AMD
AS_IF([test "x$with_hip" != xno], [
  pkv_hip_dir=
  AS_IF([test "x$with_hip" != xyes], [pkv_hip_dir=$with_hip])
  AS_IF([test -z "$HIPCC"], [
    AS_IF([test -n "$pkv_hip_dir"],
      [AC_PATH_PROG([HIPCC], [hipcc], [], [$pkv_hip_dir/bin])],
      [AC_PATH_PROG([HIPCC], [hipcc], [], [$PATH:/opt/rocm/bin])])
  ])
  AS_IF([test -z "$HIPCC"],
    [AC_MSG_ERROR([--with-hip: hipcc not found (Debian: apt-get install hipcc libamdhip64-dev; or --with-hip=/opt/rocm, or HIPCC=...)])])
  pkv_targets=
  for t in `echo "$with_amdgpu_targets" | tr , " "`; do
    AS_CASE([$t],
      [gfx@<:@0-9@:>@*], [pkv_targets="$pkv_targets --offload-arch=$t"],
      [AC_MSG_ERROR([--with-amdgpu-targets: '$t' is not an AMD GPU target like gfx90a])])
  done
  AS_IF([test -z "$pkv_targets"],
    [AC_MSG_ERROR([--with-amdgpu-targets is empty: name at least one target (gfx908,gfx90a,...)])])
  AS_IF([test -n "$pkv_hip_dir"], [
    HIP_AMD_LIBS="-L$pkv_hip_dir/lib"
    # A ROCm tree is found by hipcc itself through ROCM_PATH/HIP_PATH.
    HIP_AMD_FLAGS="--rocm-path=$pkv_hip_dir"
  ])
  HIP_AMD_LIBS="$HIP_AMD_LIBS -lamdhip64"
  # -fno-gpu-rdc: each object is complete, so libtool can link it like C.
  HIP_AMD_FLAGS="$HIP_AMD_FLAGS -x hip -std=c++17 -O3 -fPIC -fvisibility=hidden -fno-gpu-rdc -Wall -Wno-unused-command-line-argument $pkv_targets"

  AC_MSG_CHECKING([whether $HIPCC compiles for$pkv_targets])
  cat > conftest_rt.h <<'EOF'
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
__device__ inline float pkv_probe_half(unsigned short h) {
  return __half2float(__ushort_as_half(h)) + __shfl_xor(1.0f, 1, warpSize);
}
#define PROBE_COUNT hipGetDeviceCount
EOF
  cat > conftest.hip <<'EOF'
#include "conftest_rt.h"
__global__ void pkv_probe(float *o, const unsigned short *h, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) *(o + i) = pkv_probe_half(*(h + i));
}
extern "C" int pkv_probe_count(void) {
  int n = 0;
  return PROBE_COUNT(&n) == 0 ? n : -1;
}
EOF
  AS_IF([$HIPCC $HIP_AMD_FLAGS $HIPFLAGS -c conftest.hip -o conftest.$OBJEXT >&AS_MESSAGE_LOG_FD 2>&1],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([--with-hip: $HIPCC cannot compile for$pkv_targets (see config.log); choose targets it supports with --with-amdgpu-targets])])
  save_LIBS=$LIBS
  LIBS="$HIP_AMD_LIBS $LIBS"
  AC_MSG_CHECKING([for the HIP runtime ($HIP_AMD_LIBS)])
  AC_LINK_IFELSE([AC_LANG_CALL([], [hipGetDeviceCount])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([--with-hip: cannot link $HIP_AMD_LIBS (Debian: apt-get install libamdhip64-dev)])])
  LIBS=$save_LIBS
  rm -f conftest_rt.h conftest.hip conftest.$OBJEXT
  have_hip_amd=yes
  HIP_AMD_DETAIL="$HIPCC --offload-arch: $with_amdgpu_targets"
])

# ---------------------------------------------------------------- NVIDIA
AS_IF([test "x$with_cuda" != xno], [
  pkv_cuda_dir=
  AS_IF([test "x$with_cuda" != xyes], [pkv_cuda_dir=$with_cuda])
  AS_IF([test -z "$NVCC"], [
    AS_IF([test -n "$pkv_cuda_dir"],
      [AC_PATH_PROG([NVCC], [nvcc], [], [$pkv_cuda_dir/bin])],
      [AC_PATH_PROG([NVCC], [nvcc], [], [$PATH:/usr/local/cuda/bin])])
  ])
  AS_IF([test -z "$NVCC"],
    [AC_MSG_ERROR([--with-cuda: nvcc not found (--with-cuda=/usr/local/cuda, or NVCC=...)])])
  AS_IF([test -z "$pkv_cuda_dir"],
    [pkv_cuda_dir=`AS_DIRNAME(["$NVCC"])`
     pkv_cuda_dir=`AS_DIRNAME(["$pkv_cuda_dir"])`])
  pkv_gencode=
  for a in `echo "$with_cuda_arch" | tr , " "`; do
    AS_CASE([$a],
      [@<:@1-9@:>@*], [pkv_gencode="$pkv_gencode -gencode arch=compute_$a,code=sm_$a"],
      [AC_MSG_ERROR([--with-cuda-arch: '$a' is not a compute capability like 80 or 90])])
  done
  AS_IF([test -z "$pkv_gencode"],
    [AC_MSG_ERROR([--with-cuda-arch is empty: name at least one compute capability (80,90)])])
  # The NVIDIA build reaches the HIP names through hip/pkv_hip_runtime.h.
  # (--compiler-options=, not -Xcompiler: libtool eats -Xcompiler.)
  HIP_CUDA_FLAGS="-x cu -std=c++17 -O3 --compiler-options=-fPIC,-fvisibility=hidden,-Wall $pkv_gencode"
  pkv_cuda_libdir=
  for d in "$pkv_cuda_dir/lib64" "$pkv_cuda_dir/lib"; do
    AS_IF([test -z "$pkv_cuda_libdir" && test -d "$d"], [pkv_cuda_libdir=$d])
  done
  AS_IF([test -n "$pkv_cuda_libdir"], [HIP_CUDA_LIBS="-L$pkv_cuda_libdir"])
  HIP_CUDA_LIBS="$HIP_CUDA_LIBS -lcudart"

  AC_MSG_CHECKING([whether $NVCC compiles for sm_$with_cuda_arch])
  cat > conftest_rt.h <<'EOF'
#include <cuda_runtime.h>
#include <cuda_fp16.h>
__device__ inline float pkv_probe_half(unsigned short h) {
  return __half2float(__ushort_as_half(h)) +
         __shfl_xor_sync(0xffffffffu, 1.0f, 1, warpSize);
}
#define PROBE_COUNT cudaGetDeviceCount
EOF
  cat > conftest.cu <<'EOF'
#include "conftest_rt.h"
__global__ void pkv_probe(float *o, const unsigned short *h, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) *(o + i) = pkv_probe_half(*(h + i));
}
extern "C" int pkv_probe_count(void) {
  int n = 0;
  return PROBE_COUNT(&n) == 0 ? n : -1;
}
EOF
  AS_IF([$NVCC $HIP_CUDA_FLAGS $HIPFLAGS -c conftest.cu -o conftest.$OBJEXT >&AS_MESSAGE_LOG_FD 2>&1],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([--with-cuda: $NVCC cannot compile for$pkv_gencode (see config.log); choose supported ones with --with-cuda-arch])])
  save_LIBS=$LIBS
  LIBS="$HIP_CUDA_LIBS $LIBS"
  AC_MSG_CHECKING([for the CUDA runtime ($HIP_CUDA_LIBS)])
  AC_LINK_IFELSE([AC_LANG_CALL([], [cudaGetDeviceCount])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([--with-cuda: cannot link $HIP_CUDA_LIBS])])
  LIBS=$save_LIBS
  rm -f conftest_rt.h conftest.cu conftest.$OBJEXT
  have_hip_cuda=yes
  HIP_CUDA_DETAIL="$NVCC sm: $with_cuda_arch"
])

AS_IF([test "x$have_hip_amd" = xyes || test "x$have_hip_cuda" = xyes], [
  AC_DEFINE([PKV_HAVE_HIP], [1], [HIP backend built (AMD or NVIDIA)])
  # The device objects are C++: their static initialisers register the code
  # objects, and the runtimes are C++ libraries.
  HIP_AMD_LIBS="$HIP_AMD_LIBS -lstdc++"
  HIP_CUDA_LIBS="$HIP_CUDA_LIBS -lstdc++"
  AS_IF([test "x$have_hip_amd" = xyes], [HIP_LIBS=$HIP_AMD_LIBS],
        [HIP_LIBS=$HIP_CUDA_LIBS])
  # One compile per object: the device compilers are slow, and the same
  # position-independent object serves the shared and the static library.
  AS_IF([test "x$enable_shared" = xno], [HIP_LT_MODE="-static"],
        [HIP_LT_MODE="-shared"])
])
# (No PKV_HIP_AMD/PKV_HIP_CUDA in config.h: one build may compile both
# vendors, and hip/pkv_hip_runtime.h tells them apart by the compiler.)
AM_CONDITIONAL([HAVE_HIP_AMD], [test "x$have_hip_amd" = xyes])
AM_CONDITIONAL([HAVE_HIP_CUDA], [test "x$have_hip_cuda" = xyes])
AM_CONDITIONAL([HAVE_HIP], [test "x$have_hip_amd" = xyes || test "x$have_hip_cuda" = xyes])
AC_SUBST([HIP_AMD_FLAGS])
AC_SUBST([HIP_AMD_LIBS])
AC_SUBST([HIP_CUDA_FLAGS])
AC_SUBST([HIP_CUDA_LIBS])
AC_SUBST([HIP_LIBS])
AC_SUBST([HIP_LT_MODE])
