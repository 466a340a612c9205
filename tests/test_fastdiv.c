/* SPDX-License-Identifier: Apache-2.0 */
/* The page/offset fast divmod of the GPU kernels (lib/fastdiv.h) against
 * plain division: every divisor up to 4096 (page sizes), powers of two and
 * their neighbours up to 2^30, and numerators at the edges of the range
 * where a wrong magic number rounds the wrong way. */
#include "fastdiv.h"
#include "tap.h"

#include <stdint.h>

static int check_divisor(uint32_t d) {
  static const uint32_t fixed[] = {0u,          1u,          2u,
                                   0x7ffffffeu, 0x7fffffffu, 0x40000000u,
                                   0x3fffffffu, 0x55555555u, 123456789u};
  pkv__fastdiv f = pkv__fastdiv_make(d);
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    uint32_t n = fixed[i];
    if (pkv__fastdiv_div(f, n) != n / d || pkv__fastdiv_mod(f, n) != n % d)
      return 0;
  }
  /* Multiples of d and their neighbours: where floor() changes. */
  for (uint32_t k = 1; k < 70000; k += 1 + k / 7) {
    uint64_t base = (uint64_t)k * d;
    for (int e = -1; e <= 1; e++) {
      uint64_t n = base + (uint64_t)(int64_t)e;
      if (n >= 0x80000000u) break;
      if (pkv__fastdiv_div(f, (uint32_t)n) != (uint32_t)n / d ||
          pkv__fastdiv_mod(f, (uint32_t)n) != (uint32_t)n % d)
        return 0;
    }
  }
  /* Top of the range, where the multiply-high and the add carry. */
  uint64_t top = 0x7fffffffu / d * d;
  for (int e = -2; e <= 2; e++) {
    uint64_t n = top + (uint64_t)(int64_t)e;
    if (n >= 0x80000000u) continue;
    if (pkv__fastdiv_div(f, (uint32_t)n) != (uint32_t)n / d) return 0;
  }
  return 1;
}

int main(void) {
  plan(3);
  int good = 1;
  uint32_t bad = 0;
  for (uint32_t d = 1; d <= 4096 && good; d++)
    if (!check_divisor(d)) good = 0, bad = d;
  ok(good, "every divisor 1..4096 (first bad: %u)", bad);
  good = 1;
  for (int b = 1; b < 31 && good; b++)
    for (int e = -1; e <= 1; e++) {
      uint32_t d = (uint32_t)(((int64_t)1 << b) + e);
      if (d >= 1 && !check_divisor(d)) good = 0, bad = d;
    }
  ok(good, "powers of two and neighbours up to 2^30 (first bad: %u)", bad);
  pkv__fastdiv one = pkv__fastdiv_make(1);
  ok(one.shift == 0 && pkv__fastdiv_div(one, 0x7fffffffu) == 0x7fffffffu,
         "divisor 1 is the identity");
  return done_testing();
}
