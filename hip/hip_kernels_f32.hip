/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for f32 K/V storage, every head dim. */
#define PKV_DTYPE 0
#include "hip_kernels_dtype.h"
