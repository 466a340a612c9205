/* SPDX-License-Identifier: Apache-2.0 */
/* Fast unsigned division by a run-time constant (the page size): the host
 * computes a magic multiplier once per launch, the kernels replace each
 * integer division by a multiply-high, an add and a shift
 * (kernels/tile.h, pkv_fastdiv). Round-up method (as in TensorRT's and
 * FlashInfer's uint_fastdiv): for 1 <= d < 2^31 and 0 <= n < 2^31,
 *   s = ceil(log2 d), m = floor(2^32 * (2^s - d) / d) + 1,
 *   n / d = (mulhi32(n, m) + n) >> s. */
#ifndef PKV_FASTDIV_H
#define PKV_FASTDIV_H

#include <stdint.h>

typedef struct pkv__fastdiv {
  uint32_t mul;   /* magic multiplier */
  uint32_t shift; /* s */
  uint32_t div;   /* d, for the remainder */
} pkv__fastdiv;

/* d must be in [1, 2^31). */
static inline pkv__fastdiv pkv__fastdiv_make(uint32_t d) {
  pkv__fastdiv f;
  uint32_t s = 0;
  while (s < 32 && ((uint64_t)1 << s) < d) s++;
  f.shift = s;
  f.mul = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << s) - d)) / d + 1);
  f.div = d;
  return f;
}

/* The kernels' computation, on the host (for tests and host-side users). */
static inline uint32_t pkv__fastdiv_div(pkv__fastdiv f, uint32_t n) {
  uint64_t hi = ((uint64_t)n * f.mul) >> 32;
  return (uint32_t)((hi + n) >> f.shift);
}

static inline uint32_t pkv__fastdiv_mod(pkv__fastdiv f, uint32_t n) {
  return n - pkv__fastdiv_div(f, n) * f.div;
}

#endif
