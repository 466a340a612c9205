/* SPDX-License-Identifier: Apache-2.0 */
/* A small open-addressing map from uint64 keys to pointers, used for
 * sequences, sessions and namespaces. Deletion shifts entries back, so
 * there are no tombstones and lookups stay short after heavy churn. */
#ifndef PKV_HMAP_H
#define PKV_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pkv_hmap {
  uint64_t *keys;
  void **vals;   /* NULL marks an empty slot: values are never NULL */
  size_t cap;    /* power of two, or 0 */
  size_t count;
} pkv_hmap;

void pkv__hmap_free(pkv_hmap *m);
void *pkv__hmap_get(const pkv_hmap *m, uint64_t key);
/* Makes room for `extra` more entries so that the next `extra` puts cannot
 * fail; false when the allocation fails (the map is unchanged). */
bool pkv__hmap_reserve(pkv_hmap *m, size_t extra);
/* Inserts or replaces; the caller reserved room first. */
void pkv__hmap_put(pkv_hmap *m, uint64_t key, void *val);
/* Removes the key if present; returns its value or NULL. */
void *pkv__hmap_del(pkv_hmap *m, uint64_t key);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->vals[i]) ... */

#endif
