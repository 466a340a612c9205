/* SPDX-License-Identifier: Apache-2.0 */
/* K/V write: token i's rows src[i][h][0..D) go to slot slots[i] of the
 * pool (slot = page * page_size + offset); a negative slot is padding and
 * is skipped, and so is a slot past the pool. k and v rows are strided
 * (elements of src_dtype). One work-item per 8-element chunk; the copy is
 * bitwise when src_dtype is the pool's, else converted through f32. */
PKV_KERNEL void PKV_KNAME(pkv_write_kv)(
    PKV_GLOBAL pkv_bits_t *k_pool, PKV_GLOBAL pkv_bits_t *v_pool,
    PKV_GLOBAL const void *k, PKV_GLOBAL const void *v,
    PKV_GLOBAL const pkv_i64 *slots, pkv_i64 n, int num_kv_heads,
    int page_size, pkv_i64 page_stride, pkv_i64 head_stride,
    pkv_i64 token_stride, pkv_i64 k_off, pkv_i64 k_ts, pkv_i64 k_hs,
    pkv_i64 v_off, pkv_i64 v_ts, pkv_i64 v_hs, pkv_i64 num_pages,
    int src_dtype) {
  pkv_i64 gid = (pkv_i64)PKV_GROUP(0) * PKV_LSIZE(0) + PKV_LID(0);
  pkv_i64 per_token = (pkv_i64)num_kv_heads * PKV_NCH;
  if (gid >= n * per_token) return;
  pkv_i64 t = gid / per_token;
  int rem = (int)(gid - t * per_token);
  int h = rem / PKV_NCH, c = rem - h * PKV_NCH;
  pkv_i64 slot = slots[t];
  if (slot < 0) return;
  pkv_i64 page = slot / page_size;
  if (page >= num_pages) return; /* never write past the pool */
  int off = (int)(slot - page * page_size);
  pkv_i64 dst = page * page_stride + h * head_stride + off * token_stride +
                c * 8;
  pkv_i64 ks = k_off + t * k_ts + h * k_hs + c * 8;
  pkv_i64 vs = v_off + t * v_ts + h * v_hs + c * 8;
  if (src_dtype == PKV_DTYPE) {
    const PKV_GLOBAL pkv_bits_t *kb = (const PKV_GLOBAL pkv_bits_t *)k;
    const PKV_GLOBAL pkv_bits_t *vb = (const PKV_GLOBAL pkv_bits_t *)v;
    for (int e = 0; e < 8; e++) {
      k_pool[dst + e] = kb[ks + e];
      v_pool[dst + e] = vb[vs + e];
    }
  } else {
    PKV_GLOBAL pkv_elem_t *ke = (PKV_GLOBAL pkv_elem_t *)k_pool;
    PKV_GLOBAL pkv_elem_t *ve = (PKV_GLOBAL pkv_elem_t *)v_pool;
    for (int e = 0; e < 8; e++) {
      PKV_ST(pkv_ld_io(k, ks + e, src_dtype), ke, dst + e);
      PKV_ST(pkv_ld_io(v, vs + e, src_dtype), ve, dst + e);
    }
  }
}
