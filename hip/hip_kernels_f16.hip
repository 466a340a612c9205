/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for f16 K/V storage, every head dim. */
#define PKV_DTYPE 1
#include "hip_kernels_dtype.h"
