/* SPDX-License-Identifier: Apache-2.0 */
/* K/V write: token i's rows src[i][h][0..D) go to slot slots[i] of the
 * pool (slot = page * page_size + offset); a negative slot is padding and
 * is skipped, and so is a slot past the pool. k and v rows are strided
 * (elements of src_dtype). One work-item per 8-element chunk; the copy is
 * bitwise when src_dtype is the pool's, else converted through f32; into
 * an fp8 pool (has_scales) each value is divided by its head's scale
 * first: kv_scales = [K scales][V scales], num_kv_heads each. */
PKV_KERNEL void PKV_KNAME(pkv_write_kv)(
    PKV_GLOBAL pkv_bits_t *k_pool, PKV_GLOBAL pkv_bits_t *v_pool,
    PKV_GLOBAL const void *k, PKV_GLOBAL const void *v,
    PKV_GLOBAL const pkv_i64 *slots, pkv_i64 n, int num_kv_heads,
    int page_size, pkv_i64 page_stride, pkv_i64 head_stride,
    pkv_i64 token_stride, pkv_i64 k_off, pkv_i64 k_ts, pkv_i64 k_hs,
    pkv_i64 v_off, pkv_i64 v_ts, pkv_i64 v_hs, pkv_i64 num_pages,
    int src_dtype, PKV_GLOBAL const float *kv_scales, int has_scales,
    pkv_i64 scale_offset) {
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
#if PKV_DTYPE == 5
  /* int8 (never a bitwise copy: the layer above refuses int8 rows): the
   * scale max|x|/127 of the whole row, which every chunk's work-item
   * computes and chunk 0 stores in the page's scale block; codes rounded
   * to nearest even within -127..127. A NaN/Inf in the row makes its
   * scale NaN and its codes 0 (the CPU reference's rule). */
  (void)kv_scales;
  (void)has_scales;
  const pkv_i64 k0 = k_off + t * k_ts + h * k_hs, v0 = v_off + t * v_ts + h * v_hs;
  float ka = 0.0f, va = 0.0f;
  int kbad = 0, vbad = 0;
  for (int e = 0; e < PKV_HEAD_DIM; e++) {
    const float x = pkv_ld_io(k, k0 + e, src_dtype), y = pkv_ld_io(v, v0 + e, src_dtype);
    kbad |= !(x - x == 0.0f); /* NaN or Inf */
    vbad |= !(y - y == 0.0f);
    ka = pkv_fmaxf(ka, x < 0.0f ? -x : x);
    va = pkv_fmaxf(va, y < 0.0f ? -y : y);
  }
  const float ksc = kbad ? pkv_as_float(0x7fc00000u) : ka / 127.0f;
  const float vsc = vbad ? pkv_as_float(0x7fc00000u) : va / 127.0f;
  PKV_GLOBAL pkv_i8 *ke = (PKV_GLOBAL pkv_i8 *)k_pool;
  PKV_GLOBAL pkv_i8 *ve = (PKV_GLOBAL pkv_i8 *)v_pool;
  for (int e = 0; e < 8; e++) {
    float kc = (kbad || ksc == 0.0f) ? 0.0f : pkv_rintf(pkv_ld_io(k, ks + e, src_dtype) / ksc);
    float vc = (vbad || vsc == 0.0f) ? 0.0f : pkv_rintf(pkv_ld_io(v, vs + e, src_dtype) / vsc);
    kc = kc > 127.0f ? 127.0f : kc < -127.0f ? -127.0f : kc;
    vc = vc > 127.0f ? 127.0f : vc < -127.0f ? -127.0f : vc;
    ke[dst + e] = (pkv_i8)kc;
    ve[dst + e] = (pkv_i8)vc;
  }
  if (c == 0) {
    const pkv_i64 sb = page * page_stride + scale_offset +
                       ((pkv_i64)h * page_size + off) * 4;
    *(PKV_GLOBAL float *)((PKV_GLOBAL pkv_u8 *)k_pool + sb) = ksc;
    *(PKV_GLOBAL float *)((PKV_GLOBAL pkv_u8 *)v_pool + sb) = vsc;
  }
#else
  (void)scale_offset;
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
    const float kd = has_scales ? kv_scales[h] : 1.0f;
    const float vd = has_scales ? kv_scales[num_kv_heads + h] : 1.0f;
    for (int e = 0; e < 8; e++) {
      PKV_ST(pkv_ld_io(k, ks + e, src_dtype) / kd, ke, dst + e);
      PKV_ST(pkv_ld_io(v, vs + e, src_dtype) / vd, ve, dst + e);
    }
  }
#endif
}
