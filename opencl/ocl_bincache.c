/* SPDX-License-Identifier: Apache-2.0 */
/* On-disk cache of built program binaries. One file per key (a hash of the
 * device, driver, platform, kernel sources and build options):
 *
 *   magic "PKVCLB02" | key (16) | binding size (u64) | payload size (u64)
 *   | tag (16) | binding | payload
 *
 * The binding is a text naming what the binary was built for (device,
 * vendor, driver, platform, device version, build options, kernel source
 * hash, head dim, dtype); it must equal the loading context's byte for
 * byte. The tag is XXH3-128 keyed with a per-user secret kept in the cache
 * directory (created 0600) over everything before it and after it. So a
 * file whose payload was changed with its size and an unkeyed checksum kept
 * consistent, or a genuine entry copied under another key, is refused and
 * rebuilt: only files this user's pagedkv wrote are ever handed to the
 * driver. doc/opencl.md says how far that trusts the directory.
 *
 * Only regular files owned by this user are opened, never blocking
 * (O_NOFOLLOW | O_NONBLOCK, then fstat): a FIFO or a link planted at an
 * entry's path is ignored instead of hanging start-up. Writes go to a
 * temporary name unique per process and thread, renamed into place, so
 * concurrent writers never show anyone half a file. */
#include "alloc.h"
#include "ocl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "PKVCLB02"
#define HEADER_BYTES 56 /* magic 8, key 16, two sizes 8 + 8, tag 16 */
#define MAX_PAYLOAD ((uint64_t)1 << 30)
#define MAX_BINDING ((uint64_t)1 << 16)
#define SECRET_NAME "secret.key"
#define SECRET_BYTES 192 /* >= XXH3_SECRET_SIZE_MIN */

_Static_assert(SECRET_BYTES >= XXH3_SECRET_SIZE_MIN, "XXH3 secret too short");

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

/* Opens an existing regular file of this user for reading, never blocking
 * and never through a symbolic link; -1 otherwise. *size gets its size. */
static int open_regular(const char *path, uint64_t *size) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      st.st_size < 0) {
    close(fd);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}

static int read_all(int fd, unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Temporary names: pid plus a process-wide counter, so no two threads or
 * processes ever write the same file. */
static atomic_ulong tmp_counter;

static void tmp_name(const char *path, char *tmp, size_t cap) {
  unsigned long n = atomic_fetch_add(&tmp_counter, 1);
  snprintf(tmp, cap, "%s.tmp.%ld.%lu", path, (long)getpid(), n);
}

/* The directory is used only when it is a real directory of this user that
 * nobody else can write to: otherwise another user could swap entries (and
 * the secret) underneath us. */
static int dir_trusted(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st;
  int ok = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
           st.st_uid == geteuid() && (st.st_mode & 022) == 0;
  close(fd);
  return ok;
}

/* mkdir -p; the directories it creates are private (0700). */
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

static int read_secret(const char *path, unsigned char *secret) {
  uint64_t size = 0;
  int fd = open_regular(path, &size);
  if (fd < 0) return -1;
  struct stat st;
  int ok = size == SECRET_BYTES && fstat(fd, &st) == 0 &&
           (st.st_mode & 077) == 0 && read_all(fd, secret, SECRET_BYTES) == 0;
  close(fd);
  return ok ? 0 : -1;
}

static int random_bytes(unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* The per-user secret of the directory, created on first use. A new
 * secret is written whole to a temporary file and linked into place, so a
 * concurrent reader sees either no secret or the complete one, and of two
 * processes creating it at once both end up with the winner's. */
static int get_secret(const char *dir, int create, unsigned char *secret) {
  char path[1200], tmp[1300];
  snprintf(path, sizeof path, "%s/" SECRET_NAME, dir);
  if (read_secret(path, secret) == 0) return 0;
  if (!create) return -1;
  unsigned char fresh[SECRET_BYTES];
  if (random_bytes(fresh, sizeof fresh) != 0) return -1;
  tmp_name(path, tmp, sizeof tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int ok = write_all(fd, fresh, sizeof fresh) == 0;
  if (close(fd) != 0) ok = 0;
  if (ok && link(tmp, path) != 0 && errno != EEXIST) ok = 0;
  unlink(tmp);
  return ok ? read_secret(path, secret) : -1;
}

/* The tag: keyed XXH3-128 over the header (tag excluded), the binding and
 * the payload. */
static XXH128_hash_t tag_of(const unsigned char *secret, const unsigned char *h,
                            const char *binding, size_t blen,
                            const unsigned char *data, size_t size) {
  XXH128_hash_t t = {0, 0};
  XXH3_state_t *st = XXH3_createState();
  if (!st) return t;
  if (XXH3_128bits_reset_withSecret(st, secret, SECRET_BYTES) == XXH_OK &&
      XXH3_128bits_update(st, h, HEADER_BYTES - 16) == XXH_OK &&
      XXH3_128bits_update(st, binding, blen) == XXH_OK &&
      XXH3_128bits_update(st, data, size) == XXH_OK)
    t = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  return t;
}

unsigned char *pkv__ocl_bincache_load(const char *dir, const unsigned char *key,
                                     const char *binding, size_t *size) {
  if (!dir_trusted(dir)) return NULL;
  unsigned char secret[SECRET_BYTES];
  if (get_secret(dir, 0, secret) != 0) return NULL;
  char path[1200];
  pkv__ocl_bincache_path(dir, key, path, sizeof path);
  uint64_t fsize = 0;
  int fd = open_regular(path, &fsize);
  if (fd < 0) return NULL;
  const size_t blen = strlen(binding);
  unsigned char h[HEADER_BYTES];
  unsigned char *data = NULL;
  char *fb = NULL;
  if (fsize < HEADER_BYTES || read_all(fd, h, HEADER_BYTES) != 0) goto bad;
  if (memcmp(h, MAGIC, 8) != 0 || memcmp(h + 8, key, 16) != 0) goto bad;
  uint64_t bn = get_u64(h + 24), n = get_u64(h + 32);
  /* Sizes first, against the limits and the file's real size, so a header
   * that lies never drives an allocation or a read past the file. */
  if (bn != blen || bn > MAX_BINDING || n == 0 || n > MAX_PAYLOAD ||
      fsize != HEADER_BYTES + bn + n)
    goto bad;
  fb = pkv__malloc((size_t)bn + 1);
  data = pkv__malloc((size_t)n);
  if (!fb || !data) goto bad;
  if (read_all(fd, (unsigned char *)fb, (size_t)bn) != 0 ||
      memcmp(fb, binding, blen) != 0 || read_all(fd, data, (size_t)n) != 0)
    goto bad;
  XXH128_hash_t t = tag_of(secret, h, binding, blen, data, (size_t)n);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, t);
  if (memcmp(c.digest, h + 32 + 8, 16) != 0) goto bad;
  close(fd);
  pkv__free(fb);
  *size = (size_t)n;
  return data;
bad:
  pkv__free(fb);
  pkv__free(data);
  close(fd);
  return NULL;
}

void pkv__ocl_bincache_store(const char *dir, const unsigned char *key,
                            const char *binding, const unsigned char *data,
                            size_t size) {
  if (!data || size == 0 || size > MAX_PAYLOAD || make_dirs(dir) != 0 ||
      !dir_trusted(dir))
    return;
  const size_t blen = strlen(binding);
  if (blen > MAX_BINDING) return;
  unsigned char secret[SECRET_BYTES];
  if (get_secret(dir, 1, secret) != 0) return;
  char path[1200], tmp[1300];
  pkv__ocl_bincache_path(dir, key, path, sizeof path);
  tmp_name(path, tmp, sizeof tmp);
  unsigned char h[HEADER_BYTES];
  memcpy(h, MAGIC, 8);
  memcpy(h + 8, key, 16);
  put_u64(h + 24, blen);
  put_u64(h + 32, size);
  XXH128_hash_t t = tag_of(secret, h, binding, blen, data, size);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, t);
  memcpy(h + 40, c.digest, 16);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  int ok = write_all(fd, h, HEADER_BYTES) == 0 &&
           write_all(fd, (const unsigned char *)binding, blen) == 0 &&
           write_all(fd, data, size) == 0;
  if (close(fd) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}
