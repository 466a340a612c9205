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

void *pkv__malloc(size_t n) { return should_fail() ? NULL : malloc(n); }

void *pkv__calloc(size_t n, size_t size) {
  return should_fail() ? NULL : calloc(n, size);
}

/* A failed realloc leaves p allocated, as realloc does. */
void *pkv__realloc(void *p, size_t n) {
  return should_fail() ? NULL : realloc(p, n);
}

void pkv__free(void *p) { free(p); }
