/* SPDX-License-Identifier: Apache-2.0 */
/* Backend modules: loading through PKV_BACKEND_PATH, the interface version
 * check, a broken and a missing module (PKV_ERR_NO_BACKEND with the
 * loader's text), the capability refusal at cache creation, thread-safe
 * first use, and that the current directory is never searched.
 *
 * Each scenario runs in a child process: a process loads each module once,
 * with the PKV_BACKEND_PATH it has at first use. The fake module
 * (tests/fake_backend.c) is built as backend-hip.so twice, once claiming
 * interface version 999.
 *
 * Then each real module of the build tree (or of DIR, with --load DIR, as
 * CI runs it on an install tree) is loaded alone: a module that does not
 * load fails; one that loads but finds no device SKIPs with that reason. */
#include "pagedkv.h"
#include "tap.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define OK_DIR PKV_FAKE_DIR "/ok/.libs"
#define ABI_DIR PKV_FAKE_DIR "/abi/.libs"
#define FAKE_NAME "fake module device"

static int contains(const char *s, const char *sub) {
  return s && strstr(s, sub) != NULL;
}

/* Runs fn in a child with PKV_BACKEND_PATH=path; the child's TAP lines
 * continue the parent's numbering, and its counts come back by a pipe. */
static void scenario(const char *path, void (*fn)(void)) {
  int fd[2];
  if (pipe(fd) != 0) {
    ok(0, "pipe");
    return;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    unsetenv("PKV_BACKEND");
    if (path)
      setenv("PKV_BACKEND_PATH", path, 1);
    else
      unsetenv("PKV_BACKEND_PATH");
    int n0 = tap_n, f0 = tap_failed;
    fn();
    int r[2] = {tap_n - n0, tap_failed - f0};
    fflush(stdout);
    _exit(write(fd[1], r, sizeof r) == (ssize_t)sizeof r ? 0 : 3);
  }
  close(fd[1]);
  int r[2] = {0, 0}, status = 0;
  ssize_t got = pid > 0 ? read(fd[0], r, sizeof r) : -1;
  close(fd[0]);
  if (pid > 0) waitpid(pid, &status, 0);
  tap_n += r[0];
  tap_failed += r[1];
  if (got != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status))
    ok(0, "scenario child ended abnormally (status %d)", status);
}

static pkv_context *open_hip(pkv_status *st) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_HIP;
  pkv_context *ctx = NULL;
  *st = pkv_context_create(&d, &ctx);
  return ctx;
}

/* ------------------------------------------------------------ good module */
static void *lister(void *arg) {
  int *count = arg;
  if (pkv_list_devices(PKV_BACKEND_HIP, NULL, 0, count) != PKV_OK) *count = -1;
  return NULL;
}

static pkv_status make_cache(pkv_context *ctx, pkv_dtype dt, int hd, int ps) {
  pkv_cache_desc cd;
  pkv_cache_desc_init(&cd);
  cd.num_layers = 1;
  cd.num_kv_heads = 1;
  cd.head_dim = hd;
  cd.page_size = ps;
  cd.num_pages = 4;
  cd.dtype = dt;
  pkv_cache *c = NULL;
  pkv_status st = pkv_cache_create(ctx, &cd, &c);
  pkv_cache_destroy(c);
  return st;
}

static void good_module(void) {
  /* First use from 8 threads at once: one load, the same answer for all. */
  enum { T = 8 };
  pthread_t th[T];
  int counts[T];
  for (int i = 0; i < T; i++) pthread_create(&th[i], NULL, lister, &counts[i]);
  int all = 1;
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    if (counts[i] != 1) all = 0;
  }
  ok(all, "8 threads' first use all see the module's 1 device");
  ok(pkv_backend_available(PKV_BACKEND_HIP), "HIP slot available from PKV_BACKEND_PATH");

  pkv_device_info info;
  pkv_device_info_init(&info);
  int n = 0;
  is_int(pkv_list_devices(PKV_BACKEND_HIP, &info, 1, &n), PKV_OK, "list devices");
  ok(n == 1 && !strcmp(info.name, FAKE_NAME), "the device is the module's: '%s'",
     info.name);

  pkv_status st;
  pkv_context *ctx = open_hip(&st);
  is_int(st, PKV_OK, "context on the module's backend");

  /* the module's own errors reach the library's message slot */
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_HIP;
  d.device = 3;
  pkv_context *bad = NULL;
  is_int(pkv_context_create(&d, &bad), PKV_ERR_RANGE, "module refuses device 3");
  ok(contains(pkv_last_error(NULL), "fake device 3 out of range"),
     "the module's message comes through the host services: %s",
     pkv_last_error(NULL));

  /* AUTO picks the GPU-slot backend that has a device */
  pkv_context *autoc = NULL;
  is_int(pkv_context_create(NULL, &autoc), PKV_OK, "AUTO context");
  is_int(pkv_context_backend(autoc), PKV_BACKEND_HIP, "AUTO picks the module with a device");
  pkv_context_destroy(autoc);

  if (ctx) {
    is_int(make_cache(ctx, PKV_DTYPE_F16, 128, 16), PKV_OK,
           "cache within the module's capabilities");
    is_int(make_cache(ctx, PKV_DTYPE_BF16, 128, 16), PKV_ERR_UNSUPPORTED,
           "bf16 refused by the capability query");
    ok(contains(pkv_last_error(ctx), "dtype 2") && contains(pkv_last_error(ctx), "fake"),
       "message names the dtype and the backend: %s", pkv_last_error(ctx));
    is_int(make_cache(ctx, PKV_DTYPE_F32, 96, 16), PKV_ERR_UNSUPPORTED,
           "head dim 96 refused");
    ok(contains(pkv_last_error(ctx), "96") && contains(pkv_last_error(ctx), "64, 128"),
       "message lists the head dims it runs: %s", pkv_last_error(ctx));
    is_int(make_cache(ctx, PKV_DTYPE_F32, 64, 128), PKV_ERR_UNSUPPORTED,
           "page size 128 refused");
    ok(contains(pkv_last_error(ctx), "page_size 128"), "message names the page size: %s",
       pkv_last_error(ctx));
    is_int(make_cache(ctx, PKV_DTYPE_BF16, 100, 16), PKV_ERR_INVALID,
           "an API-invalid head dim stays PKV_ERR_INVALID (checked first)");
  } else {
    skip(8, "no context on the fake module");
  }
  pkv_context_destroy(ctx);
}

/* ------------------------------------------------------------ refusals */
static void expect_no_backend(const char *what, const char *text) {
  pkv_status st;
  pkv_context *ctx = open_hip(&st);
  is_int(st, PKV_ERR_NO_BACKEND, "%s: PKV_ERR_NO_BACKEND", what);
  ok(!ctx && contains(pkv_last_error(NULL), text), "%s: message has '%s': %s", what,
     text, pkv_last_error(NULL));
  pkv_context_destroy(ctx);
}

static void wrong_abi(void) {
  expect_no_backend("module of interface version 999", "interface version 999");
  ok(!pkv_backend_available(PKV_BACKEND_HIP), "refused module: HIP not available");
  int n = 0;
  is_int(pkv_list_devices(PKV_BACKEND_HIP, NULL, 0, &n), PKV_ERR_NO_BACKEND,
         "listing answers NO_BACKEND too");
}

static char broken_dir[256];

static void broken_module(void) {
  /* the broken one comes first in the path: it is reported, not skipped */
  expect_no_backend("a file that is no shared object", broken_dir);
  const char *m = pkv_last_error(NULL);
  ok(contains(m, "ELF") || contains(m, "too short") || contains(m, "invalid"),
     "the dlerror() text is in the message");
}

static int installed(void) {
  return access(PKV_MODULE_DIR "/backend-hip.so", F_OK) == 0 ||
         access(PKV_MODULE_DIR "/backend-cuda.so", F_OK) == 0;
}

static void missing_module(void) {
  if (installed()) {
    skip(2, "a HIP module is installed in " PKV_MODULE_DIR);
    return;
  }
  expect_no_backend("no module anywhere", "No such file");
}

static void never_cwd(void) {
  /* the good module lies in the current directory, named by '.' and a
   * relative entry: neither is searched */
  int cd = chdir(OK_DIR);
  ok(cd == 0, "chdir to the module's directory");
  pkv_device_info info;
  pkv_device_info_init(&info);
  int n = 0;
  pkv_status st = pkv_list_devices(PKV_BACKEND_HIP, &info, 1, &n);
  ok(st != PKV_OK || n == 0 || strcmp(info.name, FAKE_NAME) != 0,
     "the module in the current directory is not loaded (status %s)",
     pkv_status_name(st));
}

/* ------------------------------------------------------------ real modules */
static char load_file[1024];

/* Whether the process maps a file under prefix (proof of which copy of a
 * module was loaded, whatever else is installed). */
static int mapped(const char *prefix) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[2048];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, prefix)) found = 1;
  if (f) fclose(f);
  return found;
}

static void load_one(void) {
  const char *base = strrchr(load_file, '/') + 1;
  pkv_backend_kind kind =
      strstr(base, "opencl") ? PKV_BACKEND_OPENCL : PKV_BACKEND_HIP;
  char real[PATH_MAX];
  if (!realpath(load_file, real)) snprintf(real, sizeof real, "%s", load_file);
  int avail = pkv_backend_available(kind);
  ok(avail && mapped(real), "%s loads (from %s)%s%s", base, load_file,
     avail ? "" : ": ", avail ? "" : pkv_last_error(NULL));
  int n = 0;
  pkv_device_info info;
  pkv_device_info_init(&info);
  pkv_status st = avail ? pkv_list_devices(kind, &info, 1, &n) : PKV_ERR_NO_BACKEND;
  if (st == PKV_OK && n > 0) {
    ok(1, "%s: %d device(s), the first '%s'", base, n, info.name);
  } else {
    char why[600];
    if (st == PKV_OK)
      snprintf(why, sizeof why, "%s loaded, no device (it lists 0)", base);
    else
      snprintf(why, sizeof why, "%s loaded, no device (%.400s)", base,
               pkv_last_error(NULL));
    skip(1, why);
  }
}

/* Each module alone in a directory of its own (a symlink), so that the
 * other GPU module cannot answer for it. */
static void load_check(const char *file) {
  char dir[300], link[600];
  snprintf(dir, sizeof dir, "%s/pkv-modload.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) {
    skip(2, "mkdtemp failed");
    return;
  }
  snprintf(link, sizeof link, "%s/%s", dir, strrchr(file, '/') + 1);
  if (symlink(file, link) != 0) {
    ok(0, "symlink %s", link);
    skip(1, "no link");
  } else {
    snprintf(load_file, sizeof load_file, "%s", file);
    scenario(dir, load_one);
    remove(link);
  }
  rmdir(dir);
}

static int find_modules(const char *const *dirs, int ndirs, char files[][1024],
                        int cap) {
  int n = 0;
  for (int d = 0; d < ndirs; d++) {
    DIR *dh = opendir(dirs[d]);
    struct dirent *e;
    while (dh && (e = readdir(dh)) && n < cap) {
      size_t l = strlen(e->d_name);
      if (!strncmp(e->d_name, "backend-", 8) && l > 3 &&
          !strcmp(e->d_name + l - 3, ".so"))
        snprintf(files[n++], 1024, "%s/%s", dirs[d], e->d_name);
    }
    if (dh) closedir(dh);
  }
  return n;
}

int main(int argc, char **argv) {
  char files[8][1024];
  int nmods;
  if (argc == 3 && !strcmp(argv[1], "--load")) {
    const char *dirs[] = {argv[2]};
    nmods = find_modules(dirs, 1, files, 8);
    if (nmods == 0) {
      printf("1..0 # SKIP no backend-*.so in %s\n", argv[2]);
      return 0;
    }
    plan(2 * nmods);
    for (int i = 0; i < nmods; i++) load_check(files[i]);
    return done_testing();
  }
  const char *dirs[] = {PKV_BUILD_DIR "/opencl/.libs", PKV_BUILD_DIR "/hip/amd/.libs",
                        PKV_BUILD_DIR "/hip/cuda/.libs"};
  nmods = find_modules(dirs, 3, files, 8);
  plan(28 + 2 * nmods);
  scenario(OK_DIR, good_module);
  scenario(ABI_DIR, wrong_abi);

  snprintf(broken_dir, sizeof broken_dir, "%s/pkv-modtest.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(broken_dir)) {
    char file[512], path[1024];
    snprintf(file, sizeof file, "%s/backend-hip.so", broken_dir);
    FILE *f = fopen(file, "w");
    if (f) {
      fputs("this is not an ELF object\n", f);
      fclose(f);
    }
    snprintf(path, sizeof path, "%s:%s", broken_dir, OK_DIR);
    scenario(path, broken_module);
    remove(file);
    rmdir(broken_dir);
  } else {
    skip(3, "mkdtemp failed");
  }
  scenario("/nonexistent-pkv-modules", missing_module);
  scenario(".:tests/fakemod/ok/.libs:", never_cwd);
  for (int i = 0; i < nmods; i++) load_check(files[i]);
  return done_testing();
}
