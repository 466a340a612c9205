/* SPDX-License-Identifier: Apache-2.0 */
/* The CPU reference attention (the oracle for the device backends). */
#ifndef PKV_CPU_ATTENTION_H
#define PKV_CPU_ATTENTION_H

#include "backend.h"

pkv_status pkv__cpu_attention(pkv_context *ctx, const pkv_attn_args *a);

#endif
