/* SPDX-License-Identifier: Apache-2.0 */
/* What travels between two transfer endpoints: the connection blob and
 * the active messages of the page protocol. Every field is fixed-size and
 * little-endian hosts are assumed on both sides (the blob's magic, read
 * back byte-swapped, is reported as "not a blob"). */
#ifndef PKV_XFER_WIRE_H
#define PKV_XFER_WIRE_H

#include <stdint.h>

#define XFER_BLOB_MAGIC 0x31524658564b5050ull /* "PPKVXFR1" */
#define XFER_BLOB_VERSION 1u

/* The blob: this header, then the UCX worker address (addr_len bytes),
 * then the packed rkey of the staging buffer (rkey_len bytes). checksum is
 * XXH3-64 of the whole blob with the checksum field zero. */
typedef struct xfer_blob_hdr {
  uint64_t magic;
  uint32_t version;
  uint32_t total_len;
  int32_t layout, dtype, page_size, head_dim, num_kv_heads, num_layers;
  uint64_t wire_bytes;     /* pkv_cache_page_wire_bytes */
  uint64_t scales_hash;    /* fp8 per-layer scales (0 for other dtypes) */
  uint64_t staging_addr;   /* remote address of the staging buffer */
  int64_t staging_pages;   /* pages one batch may stage */
  uint32_t addr_len, rkey_len;
  uint64_t checksum;
} xfer_blob_hdr;

/* Active message ids. Requests go with UCP_AM_SEND_FLAG_REPLY, and the
 * answer goes back on the reply endpoint, so a peer that only fetches
 * never needs the other side's blob. */
enum {
  XFER_AM_STAGE = 1,   /* requester -> server: hold + read these keys */
  XFER_AM_STAGED = 2,  /* server -> requester: staged (or why not) */
  XFER_AM_RELEASE = 3, /* requester -> server: staging may be reused */
  XFER_AM_PUSH = 4,    /* pusher -> receiver: get this sequence */
  XFER_AM_PUSHED = 5,  /* receiver -> pusher: imported as seq (or why not) */
  XFER_AM_COUNT = 6
};

#define XFER_MSG_LEN 200 /* error text carried back to the requester */

typedef struct xfer_stage_msg { /* followed by n keys (16 bytes each) */
  uint64_t req_id;
  uint64_t ns;
  int64_t n;
  int32_t layout; /* the requester's layout: the server converts */
  int32_t pad;
} xfer_stage_msg;

typedef struct xfer_staged_msg {
  uint64_t req_id;
  int32_t status;
  int32_t pad;
  char msg[XFER_MSG_LEN];
} xfer_staged_msg;

typedef struct xfer_release_msg {
  uint64_t req_id;
} xfer_release_msg;

/* followed by rkey_len bytes of rkey, then addr_len bytes of the pusher's
 * worker address: the receiver gets through an endpoint of its own to
 * that address (UCX's reply endpoints carry active messages, not RMA) */
typedef struct xfer_push_msg {
  uint64_t req_id;
  uint64_t tag;
  int64_t n_tokens;
  uint64_t kv_bytes;     /* K/V at addr, then n_tokens int32 token ids */
  uint64_t tokens_off;   /* offset of the token ids from addr */
  uint64_t addr;
  uint64_t namespace_id;
  int32_t priority_class;
  int32_t layout;
  uint32_t rkey_len;
  uint32_t addr_len;
} xfer_push_msg;

typedef struct xfer_pushed_msg {
  uint64_t req_id;
  int32_t status;
  int32_t pad;
  int64_t seq;
  char msg[XFER_MSG_LEN];
} xfer_pushed_msg;

#endif
