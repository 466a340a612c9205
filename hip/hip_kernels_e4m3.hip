/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for fp8 e4m3 K/V storage (per-head scales), every head dim. */
#define PKV_DTYPE 3
#include "hip_kernels_dtype.h"
