/* SPDX-License-Identifier: Apache-2.0 */
/* Whole-page moves, bitwise, in 16-byte words (a page row is at least
 * 64 elements of 2 bytes, so a page is a whole number of words). One
 * launch serves every page of one pool buffer. */

/* Copy-on-write: pairs[i] = {src, dst} page indices. */
PKV_KERNEL void PKV_KNAME(pkv_copy_pages)(PKV_GLOBAL uint4 *pool,
                                          PKV_GLOBAL const int *pairs,
                                          pkv_i64 words_per_page) {
  pkv_i64 w = (pkv_i64)PKV_GROUP(0) * PKV_LSIZE(0) + PKV_LID(0);
  int i = PKV_GROUP(1);
  if (w >= words_per_page) return;
  pkv_i64 src = (pkv_i64)pairs[2 * i], dst = (pkv_i64)pairs[2 * i + 1];
  pool[dst * words_per_page + w] = pool[src * words_per_page + w];
}

/* Device -> staging: page pages[i] of pool buffer b goes to staging slot
 * i * num_pools + b, the order of the host tier's rows. */
PKV_KERNEL void PKV_KNAME(pkv_gather_pages)(PKV_GLOBAL const uint4 *pool,
                                            PKV_GLOBAL uint4 *staging,
                                            PKV_GLOBAL const int *pages,
                                            pkv_i64 words_per_page,
                                            int num_pools, int b) {
  pkv_i64 w = (pkv_i64)PKV_GROUP(0) * PKV_LSIZE(0) + PKV_LID(0);
  int i = PKV_GROUP(1);
  if (w >= words_per_page) return;
  staging[((pkv_i64)i * num_pools + b) * words_per_page + w] =
      pool[(pkv_i64)pages[i] * words_per_page + w];
}

/* Staging -> device, the reverse of pkv_gather_pages. */
PKV_KERNEL void PKV_KNAME(pkv_scatter_pages)(PKV_GLOBAL uint4 *pool,
                                             PKV_GLOBAL const uint4 *staging,
                                             PKV_GLOBAL const int *pages,
                                             pkv_i64 words_per_page,
                                             int num_pools, int b) {
  pkv_i64 w = (pkv_i64)PKV_GROUP(0) * PKV_LSIZE(0) + PKV_LID(0);
  int i = PKV_GROUP(1);
  if (w >= words_per_page) return;
  pool[(pkv_i64)pages[i] * words_per_page + w] =
      staging[((pkv_i64)i * num_pools + b) * words_per_page + w];
}
