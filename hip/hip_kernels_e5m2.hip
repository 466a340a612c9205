/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for fp8 e5m2 K/V storage (per-head scales), every head dim. */
#define PKV_DTYPE 4
#include "hip_kernels_dtype.h"
