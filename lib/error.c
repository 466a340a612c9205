/* SPDX-License-Identifier: Apache-2.0 */
/* Error messages, kept per thread: one for calls without a context, and
 * one per context the thread has recently failed on. A context shared by
 * threads (doc/api.md "Threads") thus never mixes their messages, and
 * recording a message writes no shared memory. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Contexts whose last message a thread keeps; a thread failing on more
 * contexts than this forgets the least recently recorded one (its
 * pkv_last_error is "" then). */
#define PKV_ERR_CTX_SLOTS 8

typedef struct err_slot {
  uint64_t ctx_id; /* 0: unused (context ids start at 1) */
  char msg[PKV_ERRMSG_LEN];
} err_slot;

static _Thread_local char thread_msg[PKV_ERRMSG_LEN];
static _Thread_local err_slot ctx_msgs[PKV_ERR_CTX_SLOTS];
static _Thread_local unsigned ctx_next;

/* This thread's message buffer for ctx; with `create`, a slot is taken
 * (the oldest) when ctx has none, else NULL is returned. */
static char *msg_slot(const pkv_context *ctx, bool create) {
  if (!ctx) return thread_msg;
  for (int i = 0; i < PKV_ERR_CTX_SLOTS; i++)
    if (ctx_msgs[i].ctx_id == ctx->id) return ctx_msgs[i].msg;
  if (!create) return NULL;
  err_slot *s = &ctx_msgs[ctx_next++ % PKV_ERR_CTX_SLOTS];
  s->ctx_id = ctx->id;
  s->msg[0] = '\0';
  return s->msg;
}

pkv_status pkv__vfail(const pkv_context *ctx, pkv_status st, const char *fmt,
                     va_list ap) {
  char *m = msg_slot(ctx, true);
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

void pkv__clear_error(const pkv_context *ctx) {
  char *m = msg_slot(ctx, false);
  if (m) m[0] = '\0';
}

void pkv__error_to_thread(const pkv_context *ctx) {
  if (!ctx) return;
  const char *m = msg_slot(ctx, false);
  if (m)
    memcpy(thread_msg, m, PKV_ERRMSG_LEN);
  else
    thread_msg[0] = '\0';
}

const char *pkv_last_error(const pkv_context *ctx) {
  const char *m = msg_slot(ctx, false);
  return m ? m : "";
}

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
  case PKV_ERR_SCALE: return "PKV_ERR_SCALE";
  case PKV_ERR_QUANT_DTYPE: return "PKV_ERR_QUANT_DTYPE";
  case PKV_ERR_KEY_MISMATCH: return "PKV_ERR_KEY_MISMATCH";
  case PKV_ERR_INCOMPATIBLE: return "PKV_ERR_INCOMPATIBLE";
  case PKV_ERR_PEER: return "PKV_ERR_PEER";
  case PKV_ERR_TIMEOUT: return "PKV_ERR_TIMEOUT";
  }
  return "PKV_ERR_UNKNOWN";
}
