/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal TAP producer for the test programs (header-only).
 * plan() first or done_testing() last; ok()/is_int()/skip() in between. */
#ifndef PKV_TAP_H
#define PKV_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n = 0, tap_failed = 0, tap_planned = 0;

static inline void plan(int n) {
  tap_planned = n;
  printf("1..%d\n", n);
  fflush(stdout);
}

static inline void plan_skip_all(const char *why) {
  printf("1..0 # SKIP %s\n", why);
  fflush(stdout);
  exit(0);
}

static inline int vok(int cond, const char *fmt, va_list ap) {
  tap_n++;
  printf("%sok %d - ", cond ? "" : "not ", tap_n);
  vprintf(fmt, ap);
  printf("\n");
  if (!cond) tap_failed++;
  fflush(stdout);
  return cond;
}

static inline int ok(int cond, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static inline int ok(int cond, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vok(cond, fmt, ap);
  va_end(ap);
  return r;
}

static inline void diag(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static inline void diag(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("# ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

#define is_int(got, want, ...)                                                 \
  do {                                                                         \
    long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);           \
    if (!ok(tap_g_ == tap_w_, __VA_ARGS__))                                    \
      diag("  got %lld, want %lld", tap_g_, tap_w_);                           \
  } while (0)

static inline void skip(int n, const char *why) {
  for (int i = 0; i < n; i++) {
    tap_n++;
    printf("ok %d # SKIP %s\n", tap_n, why);
  }
  fflush(stdout);
}

/* Ends the run: prints the plan when none was given; exit status reflects
 * failures so that a crash or a miscount is never a pass. */
static inline int done_testing(void) {
  if (!tap_planned) printf("1..%d\n", tap_n);
  else if (tap_planned != tap_n)
    printf("# planned %d tests but ran %d\n", tap_planned, tap_n);
  fflush(stdout);
  return (tap_failed || (tap_planned && tap_planned != tap_n)) ? 1 : 0;
}

#endif
