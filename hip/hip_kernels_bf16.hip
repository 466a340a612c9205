/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for bf16 K/V storage, every head dim. */
#define PKV_DTYPE 2
#include "hip_kernels_dtype.h"
