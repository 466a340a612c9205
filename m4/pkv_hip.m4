# HIP backend detection (AMD via hipcc, NVIDIA via nvcc). Filled in by the
# HIP backend work; until then both variants report "no".
have_hip_amd=no
have_hip_cuda=no
HIP_AMD_DETAIL=
HIP_CUDA_DETAIL=
AS_IF([test "x$with_hip" != xno || test "x$with_cuda" != xno],
  [AC_MSG_ERROR([the HIP backend is not implemented in this version])])
AM_CONDITIONAL([HAVE_HIP_AMD], [test "x$have_hip_amd" = xyes])
AM_CONDITIONAL([HAVE_HIP_CUDA], [test "x$have_hip_cuda" = xyes])
AM_CONDITIONAL([HAVE_HIP], [test "x$have_hip_amd" = xyes || test "x$have_hip_cuda" = xyes])
HIP_LIBS=
AC_SUBST([HIP_LIBS])
