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
/* 64-byte (or other power-of-two) aligned block, freed with pkv__free: the
 * CPU backend's "device" memory, which is host memory too. */
void *pkv__aligned_alloc(size_t align, size_t n);
/* For allocations the wrappers cannot make (the CPU backend's mmap of a
 * large pool): counts as one allocation attempt and returns 1 when fault
 * injection wants it to fail. */
int pkv__alloc_fault(void);

/* Fault injection, for tests (internal, reachable only when linked
 * statically). After pkv__fail_alloc(n, sticky), the n-th allocation from
 * now (n >= 1) returns NULL, and with sticky every one after it too;
 * n = 0 disarms. Allocations of size 0 count like any other. */
void pkv__fail_alloc(int64_t n, int sticky);
/* Allocations attempted since the process started (failed ones included). */
int64_t pkv__alloc_count(void);
/* Allocations made to fail since the process started. */
int64_t pkv__alloc_failures(void);
/* Blocks from the wrappers not freed yet (mmap'ed pools excluded), so a
 * test can check that a failed call leaks nothing even without LSan. */
int64_t pkv__alloc_live(void);

#endif
