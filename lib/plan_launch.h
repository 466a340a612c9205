/* SPDX-License-Identifier: Apache-2.0 */
/* The launch shape of a plan-driven decode, shared by the OpenCL and HIP
 * hosts (and reached by tests/test_plan.c without a device): everything
 * comes from the plan, nothing from the batch's lengths, so that the same
 * launches replay for every step whose plan has the same grid. */
#ifndef PKV_PLAN_LAUNCH_H
#define PKV_PLAN_LAUNCH_H

#include "backend.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pkv__plan_launch {
  size_t items;        /* decode blocks along x: the plan's grid_items */
  size_t head_blocks;  /* along y: kv heads x chunks of at most max_group
                          query heads (a block serves one chunk of a GQA
                          group, each K/V row read once for all of it) */
  size_t merge_slots;  /* merge blocks along x (y: the query heads) */
  int64_t lse_off;     /* floats from the workspace to its LSE */
} pkv__plan_launch;

/* 0 when a grid dimension would not fit the launch limits (2^31 - 1 blocks
 * along x, 65535 along y, the smallest of OpenCL's and CUDA's). */
static inline int pkv__plan_launch_of(const pkv__plan_exec *pe,
                                      int32_t num_kv_heads, int32_t group,
                                      int32_t max_group,
                                      pkv__plan_launch *l) {
  const int64_t chunks = (group + max_group - 1) / max_group;
  l->items = (size_t)pe->grid_items;
  l->head_blocks = (size_t)(num_kv_heads * chunks);
  l->merge_slots = (size_t)pe->merge_slots;
  l->lse_off = pe->lse_off;
  return pe->grid_items > 0 && pe->grid_items <= INT32_MAX &&
         num_kv_heads * chunks <= 65535 && pe->merge_slots > 0 &&
         pe->merge_slots <= INT32_MAX;
}

#endif
