/* SPDX-License-Identifier: Apache-2.0 */
/* Contexts, backend names, device listing, version, buffers. */
#include "pagedkv.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

int main(void) {
  int maj = -1, min = -1, pat = -1;
  pkv_version(&maj, &min, &pat);
  ok(maj == PKV_VERSION_MAJOR && min == PKV_VERSION_MINOR &&
         pat == PKV_VERSION_PATCH,
     "run-time version matches the header");
  ok(strchr(pkv_version_string(), '.') != NULL, "version string %s",
     pkv_version_string());

  pkv_backend_kind k;
  ok(pkv_backend_from_name("OpenCL", &k) == PKV_OK && k == PKV_BACKEND_OPENCL,
     "backend names parse case-insensitively");
  ok(pkv_backend_from_name("vulkan", &k) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(NULL), "vulkan"),
     "an unknown backend name is refused, naming it");
  ok(pkv_backend_from_name(NULL, &k) == PKV_ERR_NULL, "NULL name refused");
  ok(pkv_backend_available(PKV_BACKEND_CPU), "the CPU backend is always built");

  int n = -1;
  pkv_device_info info[4];
  for (size_t i_ = 0; i_ < sizeof info / sizeof info[0]; i_++)
    pkv_device_info_init(&info[i_]);
  ok(pkv_list_devices(PKV_BACKEND_CPU, info, 4, &n) == PKV_OK && n == 1 &&
         info[0].type == PKV_DEVICE_CPU,
     "the CPU backend lists one device");
  ok(pkv_list_devices(PKV_BACKEND_CPU, NULL, 4, &n) == PKV_ERR_NULL,
     "NULL out with capacity refused");
  ok(pkv_list_devices(PKV_BACKEND_CPU, info, 4, NULL) == PKV_ERR_NULL,
     "NULL count refused");
  ok(pkv_list_devices((pkv_backend_kind)42, info, 4, &n) == PKV_ERR_INVALID,
     "unknown backend refused");

  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  d.device = 3;
  pkv_context *ctx = NULL;
  ok(pkv_context_create(&d, &ctx) == PKV_ERR_RANGE && ctx == NULL &&
         strstr(pkv_last_error(NULL), "device 3"),
     "a device index out of range is refused, naming it: %s",
     pkv_last_error(NULL));
  ok(pkv_context_create(&d, NULL) == PKV_ERR_NULL, "NULL out refused");
  d.device = -1;
  ok(pkv_context_create(&d, &ctx) == PKV_OK && ctx, "CPU context created");
  ok(pkv_context_backend(ctx) == PKV_BACKEND_CPU, "context reports cpu");

  setenv("PKV_BACKEND", "nonsense", 1);
  pkv_context *c2 = NULL;
  ok(pkv_context_create(NULL, &c2) == PKV_ERR_INVALID && !c2,
     "a bad PKV_BACKEND is refused under AUTO");
  setenv("PKV_BACKEND", "cpu", 1);
  ok(pkv_context_create(NULL, &c2) == PKV_OK &&
         pkv_context_backend(c2) == PKV_BACKEND_CPU,
     "PKV_BACKEND=cpu selects the CPU backend");
  pkv_context_destroy(c2);
  unsetenv("PKV_BACKEND");

  pkv_buffer *b = NULL;
  ok(pkv_buffer_create(ctx, 0, &b) == PKV_ERR_INVALID && !b,
     "zero-size buffer refused");
  ok(pkv_buffer_create(ctx, 64, &b) == PKV_OK && pkv_buffer_size(b) == 64,
     "buffer of 64 bytes");
  unsigned char src[64], dst[64];
  for (int i = 0; i < 64; i++) src[i] = (unsigned char)i;
  ok(pkv_buffer_upload(b, 0, src, 64) == PKV_OK, "upload");
  ok(pkv_buffer_upload(b, 60, src, 8) == PKV_ERR_SIZE &&
         strstr(pkv_last_error(ctx), "exceeds"),
     "upload past the end refused: %s", pkv_last_error(ctx));
  ok(pkv_buffer_upload(b, (size_t)-1, src, 8) == PKV_ERR_SIZE,
     "overflowing offset refused");
  memset(dst, 0, sizeof dst);
  ok(pkv_buffer_download(b, 0, dst, 64) == PKV_OK && !memcmp(src, dst, 64),
     "download returns what was uploaded");
  pkv_buffer *w = NULL;
  ok(pkv_buffer_wrap(ctx, dst, 64, &w) == PKV_OK && pkv_buffer_native(w) == dst,
     "wrap keeps the engine's pointer");
  ok(pkv_buffer_copy(w, 0, b, 32, 32) == PKV_OK && dst[0] == 32,
     "device copy between buffers");
  pkv_buffer_destroy(w);
  pkv_buffer_destroy(b);
  pkv_buffer_destroy(NULL);
  pkv_context_destroy(ctx);
  pkv_context_destroy(NULL);
  ok(1, "destroying NULL handles is harmless");

  /* Public host conversions: exact values, rounding, specials, bad input. */
  float in[5] = {1.0f, -2.5f, 65504.0f, 1.0f + 1.0f / 4096.0f, INFINITY};
  uint16_t h[5];
  float back[5];
  ok(pkv_convert_from_f32(PKV_DTYPE_F16, in, h, 5) == PKV_OK &&
         h[0] == 0x3c00 && h[1] == 0xc100 && h[2] == 0x7bff &&
         h[3] == 0x3c00 && h[4] == 0x7c00,
     "f32 -> f16: exact values, a tie rounds to even, Inf kept");
  ok(pkv_convert_to_f32(PKV_DTYPE_F16, h, back, 5) == PKV_OK &&
         back[0] == 1.0f && back[1] == -2.5f && back[2] == 65504.0f &&
         isinf(back[4]),
     "f16 -> f32 round trip");
  float nan_in = NAN, nan_back = 0.0f;
  uint16_t bf;
  ok(pkv_convert_from_f32(PKV_DTYPE_BF16, &nan_in, &bf, 1) == PKV_OK &&
         pkv_convert_to_f32(PKV_DTYPE_BF16, &bf, &nan_back, 1) == PKV_OK &&
         isnan(nan_back),
     "bf16 keeps NaN a NaN (never rounded to Inf)");
  ok(pkv_convert_from_f32(PKV_DTYPE_BF16, in, h, 2) == PKV_OK &&
         h[0] == 0x3f80 && h[1] == 0xc020,
     "f32 -> bf16 exact values");
  ok(pkv_convert_from_f32((pkv_dtype)9, in, h, 1) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(NULL), "dtype 9"),
     "unknown dtype refused, naming it");
  ok(pkv_convert_to_f32(PKV_DTYPE_F16, NULL, back, 1) == PKV_ERR_NULL &&
         strstr(pkv_last_error(NULL), "src"),
     "NULL src refused");
  ok(pkv_convert_from_f32(PKV_DTYPE_F16, in, NULL, 0) == PKV_OK,
     "n = 0 with NULL arrays does nothing");
  return done_testing();
}
