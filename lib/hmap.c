/* SPDX-License-Identifier: Apache-2.0 */
/* Open addressing with linear probing and backward-shift deletion. */
#include "alloc.h"
#include "hmap.h"

#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap) {
  /* Fibonacci mixing: sequence ids are consecutive integers. */
  key ^= key >> 31;
  key *= 0x9E3779B97F4A7C15ull;
  key ^= key >> 29;
  return (size_t)key & (cap - 1);
}

void pkv__hmap_free(pkv_hmap *m) {
  pkv__free(m->keys);
  pkv__free(m->vals);
  m->keys = NULL;
  m->vals = NULL;
  m->cap = m->count = 0;
}

void *pkv__hmap_get(const pkv_hmap *m, uint64_t key) {
  if (!m->cap) return NULL;
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (!m->vals[i]) return NULL;
    if (m->keys[i] == key) return m->vals[i];
  }
}

static void put_raw(uint64_t *keys, void **vals, size_t cap, uint64_t key,
                    void *val) {
  for (size_t i = slot_of(key, cap);; i = (i + 1) & (cap - 1)) {
    if (!vals[i] || keys[i] == key) {
      keys[i] = key;
      vals[i] = val;
      return;
    }
  }
}

bool pkv__hmap_reserve(pkv_hmap *m, size_t extra) {
  size_t need = m->count + extra;
  if (need < m->count) return false;
  /* Load factor at most 1/2. */
  if (m->cap && need <= m->cap / 2) return true;
  size_t cap = m->cap ? m->cap : 16;
  while (need > cap / 2) {
    if (cap > ((size_t)-1) / 4) return false;
    cap *= 2;
  }
  uint64_t *keys = pkv__malloc(cap * sizeof *keys);
  void **vals = pkv__calloc(cap, sizeof *vals);
  if (!keys || !vals) {
    pkv__free(keys);
    pkv__free(vals);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->vals[i]) put_raw(keys, vals, cap, m->keys[i], m->vals[i]);
  pkv__free(m->keys);
  pkv__free(m->vals);
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  return true;
}

void pkv__hmap_put(pkv_hmap *m, uint64_t key, void *val) {
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (!m->vals[i]) {
      m->keys[i] = key;
      m->vals[i] = val;
      m->count++;
      return;
    }
    if (m->keys[i] == key) {
      m->vals[i] = val;
      return;
    }
  }
}

void *pkv__hmap_del(pkv_hmap *m, uint64_t key) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1, i = slot_of(key, m->cap);
  for (;; i = (i + 1) & mask) {
    if (!m->vals[i]) return NULL;
    if (m->keys[i] == key) break;
  }
  void *val = m->vals[i];
  /* Shift later members of the probe run back into the hole. */
  size_t hole = i;
  for (size_t j = (i + 1) & mask; m->vals[j]; j = (j + 1) & mask) {
    size_t home = slot_of(m->keys[j], m->cap);
    /* j may move to hole when home is not cyclically in (hole, j]. */
    bool in_range = hole <= j ? (home > hole && home <= j)
                              : (home > hole || home <= j);
    if (!in_range) {
      m->keys[hole] = m->keys[j];
      m->vals[hole] = m->vals[j];
      hole = j;
    }
  }
  m->vals[hole] = NULL;
  m->count--;
  return val;
}
