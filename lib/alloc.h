/* SPDX-License-Identifier: Apache-2.0 */
/* Every host allocation of the library goes through these wrappers, so that
 * a test can make the N-th one fail and check that each call is
 * all-or-nothing under out-of-memory (issue 8, item 4). Device memory
 * (backend mem_alloc) does not come through here. */
#ifndef PKV_ALLOC_H
#define PKV_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *pkv__malloc(size_t n);
void *pkv__calloc(size_t n, size_t size);
void *pkv__realloc(void *p, size_t n);
void pkv__free(void *p);

/* Fault injection, for tests (internal, reachable only when linked
 * statically). After pkv__fail_alloc(n, sticky), the n-th allocation from
 * now (n >= 1) returns NULL, and with sticky every one after it too;
 * n = 0 disarms. Allocations of size 0 count like any other. */
void pkv__fail_alloc(int64_t n, int sticky);
/* Allocations attempted since the process started (failed ones included). */
int64_t pkv__alloc_count(void);
/* Allocations made to fail since the process started. */
int64_t pkv__alloc_failures(void);

#endif
