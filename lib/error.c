/* SPDX-License-Identifier: Apache-2.0 */
/* Error messages: per context, or per thread for calls without a context. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char thread_msg[PKV_ERRMSG_LEN];

static char *msg_slot(const pkv_context *ctx) {
  /* The message is a cache of the last failure, not part of the logical
   * state, so const callers (queries) may still record why they failed. */
  return ctx ? (char *)ctx->errmsg : thread_msg;
}

pkv_status pkv__vfail(const pkv_context *ctx, pkv_status st, const char *fmt,
                     va_list ap) {
  char *m = msg_slot(ctx);
  int n = snprintf(m, PKV_ERRMSG_LEN, "%s: ", pkv_status_name(st));
  if (n < 0 || n >= PKV_ERRMSG_LEN) n = 0;
  vsnprintf(m + n, PKV_ERRMSG_LEN - (size_t)n, fmt, ap);
  return st;
}

pkv_status pkv__fail(const pkv_context *ctx, pkv_status st, const char *fmt,
                    ...) {
  va_list ap;
  va_start(ap, fmt);
  pkv__vfail(ctx, st, fmt, ap);
  va_end(ap);
  return st;
}

void pkv__clear_error(const pkv_context *ctx) { msg_slot(ctx)[0] = '\0'; }

void pkv__error_to_thread(const pkv_context *ctx) {
  if (ctx) memcpy(thread_msg, ctx->errmsg, PKV_ERRMSG_LEN);
}

const char *pkv_last_error(const pkv_context *ctx) { return msg_slot(ctx); }

const char *pkv_status_name(pkv_status s) {
  switch (s) {
  case PKV_OK: return "PKV_OK";
  case PKV_ERR_NULL: return "PKV_ERR_NULL";
  case PKV_ERR_INVALID: return "PKV_ERR_INVALID";
  case PKV_ERR_RANGE: return "PKV_ERR_RANGE";
  case PKV_ERR_OVERFLOW: return "PKV_ERR_OVERFLOW";
  case PKV_ERR_NO_MEMORY: return "PKV_ERR_NO_MEMORY";
  case PKV_ERR_NO_PAGES: return "PKV_ERR_NO_PAGES";
  case PKV_ERR_UNSUPPORTED: return "PKV_ERR_UNSUPPORTED";
  case PKV_ERR_NO_BACKEND: return "PKV_ERR_NO_BACKEND";
  case PKV_ERR_DEVICE: return "PKV_ERR_DEVICE";
  case PKV_ERR_DUPLICATE: return "PKV_ERR_DUPLICATE";
  case PKV_ERR_NOT_FOUND: return "PKV_ERR_NOT_FOUND";
  case PKV_ERR_STATE: return "PKV_ERR_STATE";
  case PKV_ERR_SIZE: return "PKV_ERR_SIZE";
  case PKV_ERR_BUILD: return "PKV_ERR_BUILD";
  case PKV_ERR_NO_HOST_PAGES: return "PKV_ERR_NO_HOST_PAGES";
  case PKV_ERR_NOT_EXPORTABLE: return "PKV_ERR_NOT_EXPORTABLE";
  }
  return "PKV_ERR_UNKNOWN";
}
