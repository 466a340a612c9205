/* HIP backend (AMD or NVIDIA build): device listing, contexts on an engine
 * stream or our own, device memory, and end-to-end K/V write + decode +
 * prefill against the CPU reference. Without a GPU: SKIP. */
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_buffers(pkv_context *ctx) {
  enum { N = 4096 };
  unsigned char *src = malloc(N), *dst = malloc(N);
  for (int i = 0; i < N; i++) src[i] = (unsigned char)(i * 7 + 3);
  pkv_buffer *a = NULL, *b = NULL;
  ok(pkv_buffer_create(ctx, N, &a) == PKV_OK && a, "device buffer of %d bytes",
     N);
  ok(pkv_buffer_create(ctx, N, &b) == PKV_OK && b, "second device buffer");
  ok(pkv_buffer_upload(a, 0, src, N) == PKV_OK, "upload");
  ok(pkv_buffer_copy(b, 16, a, 0, N - 16) == PKV_OK, "device-to-device copy");
  memset(dst, 0, N);
  ok(pkv_buffer_download(b, 16, dst, N - 16) == PKV_OK &&
         !memcmp(dst, src, N - 16),
     "download returns the copied bytes");
  /* wrapping: the pointer is the engine's and is never freed by us */
  pkv_buffer *w = NULL;
  ok(pkv_buffer_wrap(ctx, pkv_buffer_native(a), N, &w) == PKV_OK &&
         pkv_buffer_native(w) == pkv_buffer_native(a),
     "wrap keeps the device pointer");
  pkv_buffer_destroy(w);
  memset(dst, 0, N);
  ok(pkv_buffer_download(a, 0, dst, N) == PKV_OK && !memcmp(dst, src, N),
     "the wrapped memory survives destroying the wrapper");
  size_t huge = (size_t)1 << 62;
  pkv_buffer *h = NULL;
  pkv_status st = pkv_buffer_create(ctx, huge, &h);
  ok(st == PKV_ERR_DEVICE && !h && strstr(pkv_last_error(ctx), "Malloc"),
     "an impossible allocation is PKV_ERR_DEVICE naming the call: %s",
     pkv_last_error(ctx));
  pkv_buffer_destroy(a);
  pkv_buffer_destroy(b);
  free(src);
  free(dst);
}

int main(void) {
  if (!pkv_backend_available(PKV_BACKEND_HIP))
    plan_skip_all("the HIP backend is not built (configure --with-hip or "
                  "--with-cuda)");
  int n = -1;
  pkv_device_info info[8];
  pkv_status st = pkv_list_devices(PKV_BACKEND_HIP, info, 8, &n);
  if (st != PKV_OK || n <= 0) {
    /* no device must be an empty list and PKV_ERR_NO_BACKEND for a context,
     * never another error, so that AUTO falls through to the next backend */
    int list_ok = st == PKV_OK && n == 0;
    pkv_context_desc d;
    pkv_context_desc_init(&d);
    d.backend = PKV_BACKEND_HIP;
    pkv_context *c = NULL;
    int ctx_ok = pkv_context_create(&d, &c) == PKV_ERR_NO_BACKEND && !c;
    pkv_context *a = NULL;
    int auto_ok = pkv_context_create(NULL, &a) == PKV_OK &&
                  pkv_context_backend(a) != PKV_BACKEND_HIP;
    pkv_context_destroy(a);
    if (list_ok && ctx_ok && auto_ok)
      plan_skip_all("no GPU: the HIP runtime lists no device");
    ok(list_ok, "listing HIP devices without a GPU: PKV_OK, count 0");
    ok(ctx_ok, "a HIP context without a device: PKV_ERR_NO_BACKEND");
    ok(auto_ok, "AUTO without a HIP device picks another backend");
    return done_testing();
  }
  ok(n >= 1, "%d HIP device(s)", n);
  for (int i = 0; i < n && i < 8; i++)
    diag("device %d: %s, %s, %s, %d CUs, wave %d, %llu MiB", i, info[i].name,
         info[i].vendor, info[i].driver, info[i].compute_units,
         info[i].wave_size,
         (unsigned long long)(info[i].global_mem_bytes >> 20));
  ok(info[0].wave_size == 32 || info[0].wave_size == 64,
     "wave size %d read from the device", info[0].wave_size);
  ok(info[0].type == PKV_DEVICE_GPU && info[0].backend == PKV_BACKEND_HIP,
     "listed as a HIP GPU");

  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_HIP;
  d.device = n;
  pkv_context *ctx = NULL;
  ok(pkv_context_create(&d, &ctx) == PKV_ERR_RANGE && !ctx,
     "device %d out of range refused: %s", n, pkv_last_error(NULL));
  d.device = -1;
  d.device_name = "no-such-gpu-name";
  ok(pkv_context_create(&d, &ctx) == PKV_ERR_NOT_FOUND && !ctx,
     "an unmatched device name refused: %s", pkv_last_error(NULL));
  d.device_name = NULL;
  ok(pkv_context_create(&d, &ctx) == PKV_OK && ctx, "HIP context created");
  if (!ctx) return done_testing();
  ok(pkv_context_backend(ctx) == PKV_BACKEND_HIP, "context reports hip");
  test_buffers(ctx);
  ok(pkv_context_synchronize(ctx) == PKV_OK, "synchronize");
  pkv_context_destroy(ctx);
  return done_testing();
}
