/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel sources, embedded at build time by tools/embed-kernels.sh
 * from kernels/ (the generated file is in the build tree). */
#include "ocl.h"

#include "opencl/kernels_embedded.c"
