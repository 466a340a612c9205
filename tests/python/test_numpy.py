# SPDX-License-Identifier: Apache-2.0
"""numpy interop: wrapping arrays as CPU buffers without a copy, dtype
conversion with the library's rounding, zero-copy pool views."""
from tap import Tap
from util import optional

t = Tap()
np, why = optional("numpy")
if np is None:
    t.skip_all(why)
import pagedkv  # noqa: E402

ctx = pagedkv.Context("cpu")
rng = np.random.default_rng(1)

a = rng.standard_normal((3, 5)).astype(np.float32)
buf = ctx.wrap(a)
t.eq(buf.native, a.ctypes.data, "wrap() uses the array's memory (no copy)")
t.eq(buf.size, a.nbytes, "the buffer is the array's size")
a[1, 2] = 42.0
t.eq(float(buf.to_numpy("float32", (3, 5))[1, 2]), 42.0,
     "a write to the array is seen through the buffer")
view = buf.numpy("float32", (3, 5))
view[0, 0] = -7.0
t.eq(float(a[0, 0]), -7.0, "Buffer.numpy() is a view of the same memory")
t.raises(ValueError, lambda: ctx.wrap(a[:, ::2]),
         "a non-contiguous array is refused")
ro = np.zeros(4, np.float32)
ro.flags.writeable = False
t.raises(ValueError, lambda: ctx.wrap(ro), "a read-only array is refused")

src = rng.standard_normal(1000).astype(np.float32) * 100
h = pagedkv.convert_from_f32("f16", src)
t.eq(h.dtype, np.float16, "f16 conversion gives float16")
t.ok(np.array_equal(h, src.astype(np.float16)),
     "f32 -> f16 rounds to nearest even, as numpy does")
t.ok(np.array_equal(pagedkv.convert_to_f32("f16", h), h.astype(np.float32)),
     "f16 -> f32 is exact")
bf = pagedkv.convert_from_f32("bf16", src)
back = pagedkv.convert_to_f32("bf16", bf)
# reference bf16 rounding: nearest even on the top 16 bits
bits = src.view(np.uint32).astype(np.uint64)
ref = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
t.ok(np.array_equal(bf, ref), "f32 -> bf16 rounds to nearest even")
t.ok(np.max(np.abs(back - src) / np.maximum(np.abs(src), 1e-30)) <= 2 ** -8,
     "bf16 round trip within half an ulp (2^-8 relative)")
special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
sp = pagedkv.convert_to_f32("f16", pagedkv.convert_from_f32("f16", special))
t.ok(np.isinf(sp[0]) and np.isinf(sp[1]) and np.isnan(sp[2]) and
     np.signbit(sp[4]), "Inf, NaN and -0 survive f16")

# pools as numpy views: write_kv lands where the block table says
for dtype, layout in (("f32", "hnd"), ("f16", "nhd"), ("bf16", "hnd")):
    cache = ctx.cache(num_layers=2, num_kv_heads=2, head_dim=64, page_size=8,
                      num_pages=16, dtype=dtype, layout=layout)
    s = cache.open_seq()
    s.append(13)
    b = cache.batch()
    b.build([s], [13])
    kf = rng.standard_normal((13, 2, 64)).astype(np.float32)
    k = pagedkv.convert_from_f32(dtype, kf)
    v = pagedkv.convert_from_f32(dtype, -kf)
    b.write_kv(1, k, v)
    K, V = cache.kv_arrays(1)
    pages = s.pages()
    got_k = np.stack([K[pages[i // 8], i % 8] if layout == "nhd" else
                      K[pages[i // 8], :, i % 8] for i in range(13)])
    got_v = np.stack([V[pages[i // 8], i % 8] if layout == "nhd" else
                      V[pages[i // 8], :, i % 8] for i in range(13)])
    t.ok(np.array_equal(got_k, k) and np.array_equal(got_v, v),
         "%s %s: kv_arrays() shows the written K/V at the table's slots"
         % (dtype, layout))
    cache.close()
ctx.close()
t.done()
