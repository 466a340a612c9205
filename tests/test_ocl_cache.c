/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenCL program cache against a hostile cache directory (issue 8,
 * bug 9), and the argument checks of OpenCL context start-up:
 * - a payload changed with an unkeyed checksum kept consistent is refused;
 * - a genuine entry of another program planted under this program's key,
 *   header rewritten to match, is refused (it loaded and gave inf before);
 * - a FIFO at an entry's path does not hang start-up (alarm guard);
 * - a symbolic link at an entry's path is not followed;
 * - another secret refuses every entry; a directory others can write to is
 *   not used; files are 0600, the directory 0700;
 * - concurrent stores of one key never leave a torn entry;
 * - desc.platform < -1, unknown flags, PKV_OPENCL_DEVICE=2147483648.
 * Skips with the reason when there is no OpenCL device. */
#include "ocl.h"
#include "rm_tree.h"
#include "tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static char root[256];

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static pkv_status try_ctx(pkv_context_desc *d) {
  pkv_context *ctx = NULL;
  pkv_status st = pkv_context_create(d, &ctx);
  pkv_context_destroy(ctx);
  return st;
}

/* A context on `dir` building (head_dim, dtype): 1 when the program came
 * from the binary cache, 0 when built from source, -1 on failure. */
static int start(const char *dir, int head_dim, pkv_dtype dt) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  d.cache_dir = dir;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&d, &ctx) != PKV_OK) {
    diag("context: %s", pkv_last_error(NULL));
    return -1;
  }
  pkv_ocl_program *p = NULL;
  int r = -1;
  if (pkv__ocl_program_get(ctx, head_dim, (int)dt, &p) == PKV_OK)
    r = p->from_binary_cache;
  else
    diag("build: %s", pkv_last_error(ctx));
  pkv_context_destroy(ctx);
  return r;
}

/* The entries (*.clbin) of dir other than `except`; the first in *first. */
static int entries(const char *dir, const char *except, char *first, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l <= 6 || strcmp(e->d_name + l - 6, ".clbin") != 0) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (except && strcmp(p, except) == 0) continue;
    if (n++ == 0 && first) snprintf(first, cap, "%s", p);
  }
  closedir(d);
  return n;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
  if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *n = (size_t)sz;
  return b;
}

static int spit(const char *path, const unsigned char *b, size_t n) {
  remove(path);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int r = fwrite(b, 1, n, f) == n ? 0 : -1;
  if (fclose(f) != 0) r = -1;
  return r;
}

static int mode_of(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] =
      "not ok - start-up hung on a FIFO at the cache entry's path\n";
  if (write(1, m, sizeof m - 1) < 0) _exit(2);
  _exit(1);
}

static void test_arguments(void) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  d.platform = -2;
  ok(try_ctx(&d) == PKV_ERR_RANGE && contains(pkv_last_error(NULL), "platform"),
     "desc.platform -2 refused (not 'any'): %s", pkv_last_error(NULL));
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  d.flags = 0x80u;
  ok(try_ctx(&d) == PKV_ERR_INVALID && contains(pkv_last_error(NULL), "flags"),
     "unknown context flag bits refused: %s", pkv_last_error(NULL));
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  setenv("PKV_OPENCL_DEVICE", "2147483648", 1);
  ok(try_ctx(&d) == PKV_ERR_RANGE &&
         contains(pkv_last_error(NULL), "PKV_OPENCL_DEVICE"),
     "PKV_OPENCL_DEVICE=2147483648 is out of range, not a name: %s",
     pkv_last_error(NULL));
  setenv("PKV_OPENCL_DEVICE", "99999999999999999999999", 1);
  ok(try_ctx(&d) == PKV_ERR_RANGE, "a 23-digit PKV_OPENCL_DEVICE is out of range");
  unsetenv("PKV_OPENCL_DEVICE");
  setenv("PKV_OPENCL_PLATFORM", "4294967296", 1);
  ok(try_ctx(&d) == PKV_ERR_RANGE &&
         contains(pkv_last_error(NULL), "PKV_OPENCL_PLATFORM"),
     "PKV_OPENCL_PLATFORM=4294967296 is out of range: %s", pkv_last_error(NULL));
  unsetenv("PKV_OPENCL_PLATFORM");
}

/* Rewrites an entry's payload byte and makes an unkeyed checksum
 * consistent again, as someone without the secret would: the old format's
 * XXH3-64 of the payload, or the new format's XXH3-128 over the fields. */
static int tamper_consistently(const char *path) {
  size_t n = 0;
  unsigned char *b = slurp(path, &n);
  if (!b || n < 200) return free(b), -1;
  int r = -1;
  if (memcmp(b, "PKVCLB01", 8) == 0) {
    b[n / 2] ^= 0x5a;
    uint64_t h = XXH3_64bits(b + 40, n - 40);
    for (int i = 0; i < 8; i++) b[32 + i] = (unsigned char)(h >> (8 * i));
    r = spit(path, b, n);
  } else if (memcmp(b, "PKVCLB02", 8) == 0) {
    b[n / 2] ^= 0x5a;
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, b, 40);
    XXH3_128bits_update(st, b + 56, n - 56);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    memcpy(b + 40, c.digest, 16);
    r = spit(path, b, n);
  }
  free(b);
  return r;
}

typedef struct store_job {
  const char *dir;
  int id;
} store_job;

static const unsigned char store_key[16] = {1, 2, 3, 4, 5, 6, 7, 8,
                                            9, 10, 11, 12, 13, 14, 15, 16};
#define STORE_BYTES 200000

static void *store_worker(void *arg) {
  const store_job *j = arg;
  unsigned char *data = malloc(STORE_BYTES);
  for (int round = 0; round < 20 && data; round++) {
    memset(data, 'a' + j->id, STORE_BYTES);
    pkv__ocl_bincache_store(j->dir, store_key, "binding\n", data, STORE_BYTES);
  }
  free(data);
  return NULL;
}

static void test_store_api(void) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/api", root);
  pthread_t t[4];
  store_job jobs[4];
  for (int i = 0; i < 4; i++) {
    jobs[i].dir = dir;
    jobs[i].id = i;
    pthread_create(&t[i], NULL, store_worker, &jobs[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  size_t n = 0;
  unsigned char *got = pkv__ocl_bincache_load(dir, store_key, "binding\n", &n);
  int whole = got && n == STORE_BYTES;
  for (size_t i = 1; whole && i < n; i++) whole = got[i] == got[0];
  ok(whole && got[0] >= 'a' && got[0] <= 'd',
     "4 threads storing one key 20 times each leave one whole entry");
  free(got);
  got = pkv__ocl_bincache_load(dir, store_key, "binding-other\n", &n);
  ok(got == NULL, "an entry does not load under another binding");
  free(got);
  DIR *d = opendir(dir);
  int tmps = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) tmps++;
  if (d) closedir(d);
  ok(tmps == 0, "no temporary file is left behind (%d)", tmps);
}

static void test_cache(void) {
  char dir[400], e128[1024], e64[1024], path[1200];
  snprintf(dir, sizeof dir, "%s/c", root);

  is_int(start(dir, 128, PKV_DTYPE_F16), 0, "first start builds (128, f16)");
  ok(entries(dir, NULL, e128, sizeof e128) == 1, "one entry written");
  ok(mode_of(dir) == 0700, "cache directory is 0700 (%o)", mode_of(dir));
  ok(mode_of(e128) == 0600, "entry is 0600 (%o)", mode_of(e128));
  snprintf(path, sizeof path, "%s/secret.key", dir);
  ok(mode_of(path) == 0600, "the secret exists and is 0600 (%o)", mode_of(path));
  is_int(start(dir, 128, PKV_DTYPE_F16), 1, "second start loads the binary");

  /* Tampered payload, unkeyed checksum made consistent. */
  ok(tamper_consistently(e128) == 0, "entry tampered, checksum fixed up");
  is_int(start(dir, 128, PKV_DTYPE_F16), 0,
         "tampered entry refused and rebuilt, never handed to the driver");
  is_int(start(dir, 128, PKV_DTYPE_F16), 1, "the rewritten entry loads again");

  /* Another program's genuine entry under this key, header key rewritten. */
  is_int(start(dir, 64, PKV_DTYPE_F32), 0, "(64, f32) built");
  ok(entries(dir, e128, e64, sizeof e64) == 1, "its entry is the second one");
  size_t n128 = 0, n64 = 0;
  unsigned char *b128 = slurp(e128, &n128), *b64 = slurp(e64, &n64);
  int planted = b128 && b64 && n128 > 24 && n64 > 24;
  if (planted) {
    memcpy(b64 + 8, b128 + 8, 16);
    planted = spit(e128, b64, n64) == 0;
  }
  free(b128);
  free(b64);
  ok(planted, "(64, f32) entry planted under the (128, f16) key");
  is_int(start(dir, 128, PKV_DTYPE_F16), 0,
         "mismatched entry refused: bound to another head dim and dtype");

  /* A FIFO at the entry path: refused without blocking. */
  unlink(e128);
  ok(mkfifo(e128, 0600) == 0, "FIFO planted at the entry path");
  signal(SIGALRM, on_alarm);
  alarm(120);
  int r = start(dir, 128, PKV_DTYPE_F16);
  alarm(0);
  is_int(r, 0, "start-up with a FIFO at the entry does not block; builds");

  /* A symbolic link at the entry path, to a genuine entry. */
  unlink(e128);
  snprintf(path, sizeof path, "%s/real.bin", dir);
  is_int(start(dir, 128, PKV_DTYPE_F16), 0, "entry rebuilt after the FIFO");
  ok(rename(e128, path) == 0 && symlink(path, e128) == 0,
     "entry replaced by a symbolic link to it");
  is_int(start(dir, 128, PKV_DTYPE_F16), 0, "a link at the entry path is not followed");

  /* Another secret: every entry is refused. */
  is_int(start(dir, 128, PKV_DTYPE_F16), 1, "the rebuilt entry loads");
  snprintf(path, sizeof path, "%s/secret.key", dir);
  size_t ns = 0;
  unsigned char *sec = slurp(path, &ns);
  if (sec) {
    for (size_t i = 0; i < ns; i++) sec[i] ^= 0xff;
    spit(path, sec, ns);
    chmod(path, 0600);
  }
  free(sec);
  is_int(start(dir, 64, PKV_DTYPE_F32), 0, "an entry tagged under another secret is refused");

  /* A directory others may write to is not used at all. */
  char open_dir[400];
  snprintf(open_dir, sizeof open_dir, "%s/shared", root);
  mkdir(open_dir, 0700);
  chmod(open_dir, 0777);
  is_int(start(open_dir, 128, PKV_DTYPE_F16), 0, "builds with a world-writable directory");
  ok(entries(open_dir, NULL, NULL, 0) == 0,
     "... and writes nothing there (an untrusted directory is not used)");
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/pkv-test-ocl-cache-XXXXXX");
  if (!mkdtemp(root)) plan_skip_all("cannot create a temporary directory");
  unsetenv("PKV_OPENCL_DEVICE");
  unsetenv("PKV_OPENCL_PLATFORM");
  unsetenv("PKV_NO_BINARY_CACHE");
  int n = 0;
  if (pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &n) != PKV_OK || n == 0) {
    cleanup_dir(root);
    plan_skip_all("no OpenCL device");
  }
  test_arguments();
  test_store_api();
  test_cache();
  cleanup_dir(root);
  return done_testing();
}
