/* SPDX-License-Identifier: Apache-2.0 */
/* A main() for the fuzz harness when libFuzzer is not there (gcc builds,
 * make check): replays inputs as TAP tests, each in a child process so
 * that an abort or a sanitizer report fails that input only.
 *
 *   fuzz_replay [FILE|DIR]...   replay these (default: the seed corpus)
 *   PKV_FUZZ_RANDOM=n           also run n random inputs (default 300)
 *   PKV_FUZZ_SEED=s             their seed (default 1)
 * A failing random input is written to fuzz-failure-SEED-I.bin for
 * replaying under a debugger or the libFuzzer build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int tests, failed;

/* 1 when the harness accepted the input (exit 0 in the child). */
static int run_one(const uint8_t *data, size_t size) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    LLVMFuzzerTestOneInput(data, size);
    exit(0); /* not _exit: LeakSanitizer checks the child at exit */
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void report(int good, const char *fmt, const char *name) {
  tests++;
  if (!good) failed++;
  printf("%sok %d - ", good ? "" : "not ", tests);
  printf(fmt, name);
  printf("\n");
  fflush(stdout);
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0, got;
  do {
    if (len == cap) {
      cap = cap ? 2 * cap : 4096;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(fp);
        return NULL;
      }
      buf = nb;
    }
    got = fread(buf + len, 1, cap - len, fp);
    len += got;
  } while (got > 0);
  fclose(fp);
  *n = len;
  return buf;
}

static void replay_file(const char *path) {
  size_t n = 0;
  uint8_t *d = slurp(path, &n);
  report(d && run_one(d, n), "replay %s", path);
  free(d);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_path(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    report(0, "%s exists", path);
    return;
  }
  if (!S_ISDIR(sb.st_mode)) {
    replay_file(path);
    return;
  }
  DIR *dir = opendir(path);
  if (!dir) {
    report(0, "%s can be read", path);
    return;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(dir)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) break;
      names = nn;
    }
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    names[n] = malloc(len);
    if (!names[n]) break;
    snprintf(names[n++], len, "%s/%s", path, e->d_name);
  }
  closedir(dir);
  if (n == 0) report(0, "%s holds inputs", path);
  qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    replay_file(names[i]);
    free(names[i]);
  }
  free(names);
}

static uint64_t rng;
static uint8_t rnd8(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint8_t)(rng >> 24);
}

static void random_inputs(long count, unsigned long seed) {
  if (count <= 0) return;
  rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed * 0xBF58476D1CE4E5B9ull);
  long bad = 0;
  uint8_t buf[4 + 8 * 96];
  for (long i = 0; i < count; i++) {
    size_t n = 4 + 8 * (size_t)(1 + rnd8() % 96);
    for (size_t j = 0; j < n; j++) buf[j] = rnd8();
    if (!run_one(buf, n)) {
      char name[64];
      snprintf(name, sizeof name, "fuzz-failure-%lu-%ld.bin", seed, i);
      FILE *fp = fopen(name, "wb");
      if (fp) {
        fwrite(buf, 1, n, fp);
        fclose(fp);
      }
      printf("# random input %ld failed: written to %s\n", i, name);
      bad++;
    }
  }
  char what[96];
  snprintf(what, sizeof what, "%ld random inputs (seed %lu), %ld failed", count,
           seed, bad);
  report(bad == 0, "%s", what);
}

int main(int argc, char **argv) {
  const char *e = getenv("PKV_FUZZ_RANDOM");
  long count = e && *e ? strtol(e, NULL, 10) : 300;
  e = getenv("PKV_FUZZ_SEED");
  unsigned long seed = e && *e ? strtoul(e, NULL, 10) : 1;
  if (argc > 1)
    for (int i = 1; i < argc; i++) replay_path(argv[i]);
  else
    replay_path(FUZZ_CORPUS_DIR);
  random_inputs(count, seed);
  printf("1..%d\n", tests);
  return failed ? 1 : 0;
}
