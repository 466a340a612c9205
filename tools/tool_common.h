/* SPDX-License-Identifier: Apache-2.0 */
/* What the installed tools (pkv-sim, pkv-bench, pkv-conformance) share:
 * --help/--version handling, checked integer and dtype options, and a
 * monotonic clock. Header-only, so each tool stays one translation unit
 * that builds against the installed pagedkv.h alone. */
#ifndef PKV_TOOL_COMMON_H
#define PKV_TOOL_COMMON_H

/* clock_gettime: POSIX, also when built outside the tree with -std=c11 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pagedkv.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOOL_STR2(x) #x
#define TOOL_STR(x) TOOL_STR2(x)

/* The version the tool was built against and the library it runs on: a
 * mismatch is the first thing to see in a bug report. */
static inline void tool_print_version(const char *tool) {
  printf("%s (pagedkv) %d.%d.%d\n", tool, PKV_VERSION_MAJOR, PKV_VERSION_MINOR,
         PKV_VERSION_PATCH);
  printf("library: libpagedkv %s\n", pkv_version_string());
  printf("License: Apache-2.0 <https://www.apache.org/licenses/LICENSE-2.0>\n");
}

/* --help / -h and --version / -V, which every tool takes: prints and returns
 * 1 when `arg` is one of them (the caller exits 0), else 0. */
static inline int tool_std_option(const char *tool, const char *arg,
                                  void (*usage)(FILE *)) {
  if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
    usage(stdout);
    printf("\nCommon options:\n"
           "  -h, --help     this text, then exit\n"
           "  -V, --version  the tool's and the library's version, then exit\n"
           "See %s(1).\n",
           tool);
    return 1;
  }
  if (!strcmp(arg, "-V") || !strcmp(arg, "--version")) {
    tool_print_version(tool);
    return 1;
  }
  return 0;
}

/* A whole decimal integer in lo..hi: 1, else 0 (*out untouched). */
static inline int tool_parse_ll(const char *s, long long lo, long long hi,
                                long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

/* "f16", "bf16", "f32", "e4m3", "e5m2" or "int8": 1, else 0. */
static inline int tool_parse_dtype(const char *s, pkv_dtype *out) {
  if (!strcmp(s, "f16")) *out = PKV_DTYPE_F16;
  else if (!strcmp(s, "bf16")) *out = PKV_DTYPE_BF16;
  else if (!strcmp(s, "f32")) *out = PKV_DTYPE_F32;
  else if (!strcmp(s, "e4m3")) *out = PKV_DTYPE_FP8_E4M3;
  else if (!strcmp(s, "e5m2")) *out = PKV_DTYPE_FP8_E5M2;
  else if (!strcmp(s, "int8")) *out = PKV_DTYPE_INT8;
  else return 0;
  return 1;
}

/* A backend name, with the library's message on stderr when it is none. */
static inline int tool_parse_backend(const char *tool, const char *s,
                                     pkv_backend_kind *out) {
  if (pkv_backend_from_name(s, out) == PKV_OK) return 1;
  fprintf(stderr, "%s: %s\n", tool, pkv_last_error(NULL));
  return 0;
}

/* Seconds on the monotonic clock. */
static inline double tool_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
