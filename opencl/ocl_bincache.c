/* SPDX-License-Identifier: Apache-2.0 */
/* On-disk cache of built program binaries. One file per key (a hash of the
 * device, driver, platform, kernel sources and build options):
 *   magic "PKVCLB01" | key (16) | payload size (u64) | XXH3-64 of payload
 *   | payload
 * The key and checksum are verified on load, so a truncated, corrupt or
 * foreign file (another device, another version) is rejected and rebuilt,
 * never handed to the driver on trust. Writes go to a temporary file that
 * is renamed into place, so concurrent processes never see half a file. */
#include "alloc.h"
#include "ocl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "PKVCLB01"
#define HEADER_BYTES 40
#define MAX_PAYLOAD ((uint64_t)1 << 30)

void pkv__ocl_bincache_path(const char *dir, const unsigned char *key,
                           char *path, size_t cap) {
  char hex[33];
  for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
  snprintf(path, cap, "%s/%s.clbin", dir, hex);
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

unsigned char *pkv__ocl_bincache_load(const char *dir, const unsigned char *key,
                                     size_t *size) {
  char path[1200];
  pkv__ocl_bincache_path(dir, key, path, sizeof path);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char h[HEADER_BYTES];
  unsigned char *data = NULL;
  if (fread(h, 1, HEADER_BYTES, f) != HEADER_BYTES) goto bad;
  if (memcmp(h, MAGIC, 8) != 0 || memcmp(h + 8, key, 16) != 0) goto bad;
  uint64_t n = get_u64(h + 24);
  if (n == 0 || n > MAX_PAYLOAD) goto bad;
  data = pkv__malloc((size_t)n);
  if (!data) goto bad;
  if (fread(data, 1, (size_t)n, f) != n || fgetc(f) != EOF) goto bad;
  if (XXH3_64bits(data, (size_t)n) != get_u64(h + 32)) goto bad;
  fclose(f);
  *size = (size_t)n;
  return data;
bad:
  pkv__free(data);
  fclose(f);
  return NULL;
}

/* mkdir -p with private permissions; existing directories are fine. */
static int make_dirs(const char *dir) {
  char p[1024];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof p) return -1;
  memcpy(p, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] == '/' || p[i] == '\0') {
      char c = p[i];
      p[i] = '\0';
      if (mkdir(p, 0700) != 0 && errno != EEXIST) return -1;
      p[i] = c;
    }
  }
  return 0;
}

void pkv__ocl_bincache_store(const char *dir, const unsigned char *key,
                            const unsigned char *data, size_t size) {
  if (!data || size == 0 || make_dirs(dir) != 0) return;
  char path[1200], tmp[1300];
  static _Thread_local unsigned counter;
  pkv__ocl_bincache_path(dir, key, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  unsigned char h[HEADER_BYTES];
  memcpy(h, MAGIC, 8);
  memcpy(h + 8, key, 16);
  put_u64(h + 24, size);
  put_u64(h + 32, XXH3_64bits(data, size));
  int ok = fwrite(h, 1, HEADER_BYTES, f) == HEADER_BYTES &&
           fwrite(data, 1, size, f) == size;
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) remove(tmp);
}
