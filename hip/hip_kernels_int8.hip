/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernels for int8 K/V storage (a scale per token and head in each page), every head dim. */
#define PKV_DTYPE 5
#include "hip_kernels_dtype.h"
