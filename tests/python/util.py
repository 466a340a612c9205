# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the Python tests: optional imports and the reference
attention (float64 numpy, gathered contiguous K/V)."""
import importlib


def optional(name):
    """(module, None) or (None, reason) for an optional import."""
    try:
        return importlib.import_module(name), None
    except ImportError as e:
        return None, "%s not importable by this interpreter (%s)" % (name, e)


def gather_kv(k_pool, v_pool, pages, length, layout_nhd=False):
    """Contiguous [length][kv_heads][dim] K and V of one sequence from pool
    arrays shaped as Cache.kv_arrays returns them."""
    import numpy as np
    ks, vs = [], []
    for t in range(length):
        p, o = pages[t // k_pool.shape[1 if layout_nhd else 2]], \
            t % k_pool.shape[1 if layout_nhd else 2]
        if layout_nhd:
            ks.append(k_pool[p, o]); vs.append(v_pool[p, o])
        else:
            ks.append(k_pool[p, :, o]); vs.append(v_pool[p, :, o])
    return np.stack(ks), np.stack(vs)


def ref_attention_np(q, k, v, scale=None, causal=True):
    """q [n][hq][d], k/v [m][hk][d] (the sequence's whole KV, the n queries
    being its last n tokens) -> out [n][hq][d], lse [n][hq]; float64."""
    import numpy as np
    q = q.astype(np.float64); k = k.astype(np.float64)
    v = v.astype(np.float64)
    n, hq, d = q.shape
    m, hk, _ = k.shape
    scale = 1.0 / np.sqrt(d) if not scale else scale
    g = hq // hk
    out = np.zeros((n, hq, d)); lse = np.full((n, hq), -np.inf)
    for h in range(hq):
        kh, vh = k[:, h // g], v[:, h // g]
        s = q[:, h] @ kh.T * scale              # [n][m]
        if causal:
            i = np.arange(n)[:, None] + (m - n)
            s = np.where(np.arange(m)[None, :] <= i, s, -np.inf)
        mx = s.max(axis=1, keepdims=True)
        e = np.exp(s - mx)
        den = e.sum(axis=1, keepdims=True)
        out[:, h] = (e / den) @ vh
        lse[:, h] = (mx + np.log(den))[:, 0]
    return out, lse
