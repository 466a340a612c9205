/* SPDX-License-Identifier: Apache-2.0 */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>

/* The allocation number (from the count below) that fails first, 0 when
 * disarmed. Atomics, so that tests driving several threads stay race-free;
 * the hook costs one relaxed load when disarmed. */
static atomic_int_fast64_t alloc_count;
static atomic_int_fast64_t fail_at;
static atomic_int fail_sticky;
static atomic_int_fast64_t fail_count;
static atomic_int_fast64_t live_count;

static int should_fail(void) {
  int64_t k = atomic_fetch_add_explicit(&alloc_count, 1,
                                        memory_order_relaxed) + 1;
  int64_t at = atomic_load_explicit(&fail_at, memory_order_relaxed);
  if (at == 0 || k < at) return 0;
  if (k > at && !atomic_load_explicit(&fail_sticky, memory_order_relaxed))
    return 0;
  atomic_fetch_add_explicit(&fail_count, 1, memory_order_relaxed);
  return 1;
}

void pkv__fail_alloc(int64_t n, int sticky) {
  atomic_store(&fail_sticky, sticky != 0);
  atomic_store(&fail_at, n > 0 ? atomic_load(&alloc_count) + n : 0);
}

int64_t pkv__alloc_count(void) { return atomic_load(&alloc_count); }
int64_t pkv__alloc_failures(void) { return atomic_load(&fail_count); }
int64_t pkv__alloc_live(void) { return atomic_load(&live_count); }
int pkv__alloc_fault(void) { return should_fail(); }

static void *counted(void *p) {
  if (p) atomic_fetch_add_explicit(&live_count, 1, memory_order_relaxed);
  return p;
}

void *pkv__malloc(size_t n) { return should_fail() ? NULL : counted(malloc(n)); }

void *pkv__calloc(size_t n, size_t size) {
  return should_fail() ? NULL : counted(calloc(n, size));
}

void *pkv__aligned_alloc(size_t align, size_t n) {
  /* C11 wants the size a multiple of the alignment. */
  size_t m = (n + align - 1) & ~(align - 1);
  if (m < n) return NULL;
  return should_fail() ? NULL : counted(aligned_alloc(align, m ? m : align));
}

/* A failed realloc leaves p allocated, as realloc does. Never called with
 * n == 0 by the library (that would free p on some libcs). */
void *pkv__realloc(void *p, size_t n) {
  if (should_fail()) return NULL;
  void *q = realloc(p, n);
  return p ? q : counted(q);
}

void pkv__free(void *p) {
  if (!p) return;
  atomic_fetch_sub_explicit(&live_count, 1, memory_order_relaxed);
  free(p);
}
