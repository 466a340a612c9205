#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compare pagedkv's HIP/CUDA attention with PyTorch's SDPA on a GPU.

Runs where PyTorch (CUDA or ROCm build) and a GPU are. Loads libpagedkv
through ctypes, creates a HIP context on torch's current stream (used, not
owned), wraps torch tensors' device pointers as pagedkv buffers
(pkv_buffer_wrap), writes K/V into the paged cache, runs decode and prefill,
and compares with torch.nn.functional.scaled_dot_product_attention on the
same keys and values held contiguously (GQA heads expanded). Prints the
largest differences and the time ratio ours / SDPA.

  python3 tools/compare_torch.py --lib .libs/libpagedkv.so
  python3 tools/compare_torch.py --batch 64 --kv-len 4096 --page-size 16
  python3 tools/compare_torch.py --prefill 4096 --context 16384
  python3 tools/compare_torch.py --skip-decode --prefill 512 --context 16384 --flash

The ctypes structures below mirror lib/pagedkv.h field by field; keep them
in step with it (check_layouts() verifies the sizes it can).
"""
import argparse
import ctypes as C
import os
import sys

# ------------------------------------------------------------ the C API
PKV_OK = 0
PKV_BACKEND_HIP = 3
PKV_LAYOUT = {"hnd": 0, "nhd": 1}
PKV_MAX_CLASSES = 8


class ContextDesc(C.Structure):  # pkv_context_desc
    _fields_ = [
        ("struct_size", C.c_size_t),   # growable struct (doc/ABI.md)
        ("backend", C.c_int),          # pkv_backend_kind
        ("device", C.c_int),
        ("device_name", C.c_char_p),
        ("platform", C.c_int),
        ("native_context", C.c_void_p),
        ("native_queue", C.c_void_p),
        ("cpu_threads", C.c_int),
        ("flags", C.c_uint),
        ("cache_dir", C.c_char_p),
    ]


class CacheDesc(C.Structure):  # pkv_cache_desc
    _fields_ = [
        ("struct_size", C.c_size_t),   # growable struct (doc/ABI.md)
        ("num_layers", C.c_int32),
        ("num_kv_heads", C.c_int32),
        ("head_dim", C.c_int32),
        ("page_size", C.c_int32),
        ("num_pages", C.c_int64),
        ("pool_bytes", C.c_uint64),
        ("dtype", C.c_int),            # pkv_dtype
        ("layout", C.c_int),           # pkv_layout
        ("num_classes", C.c_int32),
        ("class_reserved", C.c_int64 * PKV_MAX_CLASSES),
        ("max_reserved_fraction", C.c_double),
        ("num_host_pages", C.c_int64),
    ]


class AttnParams(C.Structure):  # pkv_attn_params
    _fields_ = [
        ("struct_size", C.c_size_t),   # growable struct (doc/ABI.md)
        ("num_q_heads", C.c_int32),
        ("scale", C.c_float),
        ("causal", C.c_int32),
        ("window_left", C.c_int32),
        ("softcap", C.c_float),
        ("alibi_slopes", C.POINTER(C.c_float)),
    ]


class DeviceInfo(C.Structure):  # pkv_device_info
    _fields_ = [
        ("struct_size", C.c_size_t),   # growable struct (doc/ABI.md)
        ("backend", C.c_int),
        ("index", C.c_int),
        ("type", C.c_int),
        ("name", C.c_char * 256),
        ("vendor", C.c_char * 128),
        ("driver", C.c_char * 128),
        ("platform", C.c_char * 128),
        ("global_mem_bytes", C.c_uint64),
        ("max_alloc_bytes", C.c_uint64),
        ("compute_units", C.c_int),
        ("wave_size", C.c_int),
    ]


def check_layouts():
    """Sizes on LP64 (x86-64, aarch64), from the C declarations."""
    want = {ContextDesc: 64, CacheDesc: 136, AttnParams: 40, DeviceInfo: 688}
    for s, n in want.items():
        if C.sizeof(s) != n:
            raise SystemExit("ctypes %s is %d bytes, pagedkv.h says %d: "
                             "update this script" % (s.__name__, C.sizeof(s), n))


class Lib:
    def __init__(self, path):
        self.so = C.CDLL(path)
        so = self.so
        vp, i32, i64, st = C.c_void_p, C.c_int32, C.c_int64, C.c_int
        sig = {
            "pkv_status_name": (C.c_char_p, [st]),
            "pkv_last_error": (C.c_char_p, [vp]),
            "pkv_version_string": (C.c_char_p, []),
            "pkv_list_devices": (st, [C.c_int, C.POINTER(DeviceInfo), C.c_int,
                                      C.POINTER(C.c_int)]),
            "pkv_context_desc_init_sized": (None, [C.POINTER(ContextDesc),
                                                  C.c_size_t]),
            "pkv_context_create": (st, [C.POINTER(ContextDesc),
                                        C.POINTER(vp)]),
            "pkv_context_destroy": (None, [vp]),
            "pkv_context_synchronize": (st, [vp]),
            "pkv_buffer_wrap": (st, [vp, vp, C.c_size_t, C.POINTER(vp)]),
            "pkv_buffer_destroy": (None, [vp]),
            "pkv_cache_desc_init_sized": (None, [C.POINTER(CacheDesc),
                                                C.c_size_t]),
            "pkv_cache_create": (st, [vp, C.POINTER(CacheDesc),
                                      C.POINTER(vp)]),
            "pkv_cache_destroy": (None, [vp]),
            "pkv_seq_open": (st, [vp, vp, C.POINTER(i64)]),
            "pkv_seq_append": (st, [vp, i64, i64, vp, vp]),
            "pkv_seq_release": (st, [vp, i64]),
            "pkv_batch_create": (st, [vp, C.POINTER(vp)]),
            "pkv_batch_destroy": (None, [vp]),
            "pkv_batch_build": (st, [vp, C.POINTER(i64), i32,
                                     C.POINTER(i32)]),
            "pkv_write_kv": (st, [vp, i32, vp, vp]),
            "pkv_attn_params_init_sized": (None, [C.POINTER(AttnParams),
                                                 C.c_size_t, i32]),
            "pkv_attention": (st, [vp, i32, C.POINTER(AttnParams), vp, vp,
                                   vp]),
        }
        for name, (res, args) in sig.items():
            f = getattr(so, name)
            f.restype = res
            f.argtypes = args
        self.ctx = None

    def check(self, status, what):
        if status != PKV_OK:
            msg = self.so.pkv_last_error(self.ctx).decode(errors="replace")
            name = self.so.pkv_status_name(status).decode()
            raise SystemExit("%s failed: %s: %s" % (what, name, msg))


def find_lib(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(here, "..", ".libs"), os.path.join(here, ".libs"),
              ".libs", "."):
        p = os.path.join(d, "libpagedkv.so")
        if os.path.exists(p):
            return p
    return "libpagedkv.so"


# ------------------------------------------------------------ the runs
class Paged:
    """One HIP context on torch's stream, a one-layer cache and sequences."""

    def __init__(self, lib, torch, args, dtype_code, num_pages):
        self.lib, self.torch, self.args = lib, torch, args
        so = lib.so
        d = ContextDesc()
        so.pkv_context_desc_init_sized(C.byref(d), C.sizeof(d))
        d.backend = PKV_BACKEND_HIP
        d.device = torch.cuda.current_device()
        d.native_queue = C.c_void_p(torch.cuda.current_stream().cuda_stream)
        ctx = C.c_void_p()
        lib.check(so.pkv_context_create(C.byref(d), C.byref(ctx)),
                  "pkv_context_create(hip)")
        lib.ctx = self.ctx = ctx
        cd = CacheDesc()
        so.pkv_cache_desc_init_sized(C.byref(cd), C.sizeof(cd))
        cd.num_layers = 1
        cd.num_kv_heads = args.kv_heads
        cd.head_dim = args.head_dim
        cd.page_size = args.page_size
        cd.num_pages = num_pages
        cd.dtype = dtype_code
        cd.layout = PKV_LAYOUT[args.layout]
        self.cache = C.c_void_p()
        lib.check(so.pkv_cache_create(ctx, C.byref(cd), C.byref(self.cache)),
                  "pkv_cache_create")
        self.batch = C.c_void_p()
        lib.check(so.pkv_batch_create(self.cache, C.byref(self.batch)),
                  "pkv_batch_create")
        self.wrapped = []

    def wrap(self, t):
        """A pagedkv view of a contiguous torch tensor (never freed by us)."""
        assert t.is_cuda and t.is_contiguous()
        b = C.c_void_p()
        self.lib.check(self.lib.so.pkv_buffer_wrap(
            self.ctx, C.c_void_p(t.data_ptr()), t.numel() * t.element_size(),
            C.byref(b)), "pkv_buffer_wrap")
        self.wrapped.append((b, t))  # keep the tensor alive with its view
        return b

    def open_seqs(self, n):
        ids = (C.c_int64 * n)()
        for i in range(n):
            sid = C.c_int64()
            self.lib.check(self.lib.so.pkv_seq_open(self.cache, None,
                                                    C.byref(sid)),
                           "pkv_seq_open")
            ids[i] = sid.value
        return ids

    def append(self, ids, n):
        for i in range(len(ids)):
            self.lib.check(self.lib.so.pkv_seq_append(self.cache, ids[i], n,
                                                      None, None),
                           "pkv_seq_append")

    def build(self, ids, q_len):
        n = len(ids)
        ql = None
        if q_len is not None:
            ql = (C.c_int32 * n)(*([q_len] * n))
        self.lib.check(self.lib.so.pkv_batch_build(self.batch, ids, n, ql),
                       "pkv_batch_build")

    def write(self, k, v):
        self.lib.check(self.lib.so.pkv_write_kv(self.batch, 0, self.wrap(k),
                                                self.wrap(v)), "pkv_write_kv")

    def attention_fn(self, q, out, num_q_heads):
        p = AttnParams()
        self.lib.so.pkv_attn_params_init_sized(C.byref(p), C.sizeof(p),
                                               num_q_heads)
        bq, bo = self.wrap(q), self.wrap(out)
        so, batch = self.lib.so, self.batch

        def run():
            st = so.pkv_attention(batch, 0, C.byref(p), bq, bo, None)
            if st != PKV_OK:
                self.lib.check(st, "pkv_attention")
        return run

    def close(self):
        so = self.lib.so
        for b, _ in self.wrapped:
            so.pkv_buffer_destroy(b)
        self.wrapped = []
        so.pkv_batch_destroy(self.batch)
        so.pkv_cache_destroy(self.cache)
        so.pkv_context_destroy(self.ctx)


def sdpa(torch, q, k, v, causal_offset=None):
    """q [B, H, L, D], k/v [B, KVH, S, D]. causal_offset: query i sees keys
    j <= i + offset (bottom-right alignment), None = all keys."""
    F = torch.nn.functional
    mask = None
    if causal_offset is not None:
        L, S = q.shape[2], k.shape[2]
        i = torch.arange(L, device=q.device).view(L, 1)
        j = torch.arange(S, device=q.device).view(1, S)
        mask = j <= i + causal_offset
    h, kvh = q.shape[1], k.shape[1]
    try:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              enable_gqa=(h != kvh))
    except TypeError:  # torch < 2.5: expand the KV heads
        rep = h // kvh
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(rep, dim=1),
            v.repeat_interleave(rep, dim=1), attn_mask=mask)


def sdpa_flash(torch, q, k, v, offset):
    """SDPA restricted to the flash backend: causal with bottom-right
    alignment (query i sees keys j <= i + offset, offset = S - L), GQA
    heads expanded (contiguous, as an engine without paging holds them).
    None where this torch lacks the API or flash refuses the shapes."""
    F = torch.nn.functional
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return None
    h, kvh = q.shape[1], k.shape[1]
    if h != kvh:
        k = k.repeat_interleave(h // kvh, dim=1)
        v = v.repeat_interleave(h // kvh, dim=1)
    L, S = q.shape[2], k.shape[2]
    if offset == 0 and L == S:
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        try:
            from torch.nn.attention.bias import causal_lower_right
        except ImportError:
            return None
        bias = causal_lower_right(L, S)
        fn = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    def run():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return fn()
    try:
        run()
    except RuntimeError:
        return None
    return run


def time_ms(torch, fn, iters):
    fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def report(name, ours, ref, t_ours, t_ref, tol, bytes_read=None):
    diff = (ours.float() - ref.float()).abs().max().item()
    line = "%-28s max|diff| %.3g (tol %.3g) %s  ours %.3f ms  sdpa %.3f ms  " \
           "ours/sdpa %.2f" % (name, diff, tol, "ok" if diff <= tol else "FAIL",
                               t_ours, t_ref, t_ours / t_ref)
    if bytes_read:
        line += "  ours %.0f GB/s" % (bytes_read / t_ours / 1e6)
    print(line)
    return diff <= tol


def run_decode(lib, torch, a, dt, code):
    B, S, H, KVH, D = a.batch, a.kv_len, a.heads, a.kv_heads, a.head_dim
    pages_per_seq = (S + a.page_size - 1) // a.page_size
    pk = Paged(lib, torch, a, code, B * pages_per_seq + 8)
    try:
        g = torch.Generator(device="cuda").manual_seed(1)
        k = torch.randn(B, S, KVH, D, device="cuda", dtype=dt, generator=g)
        v = torch.randn(B, S, KVH, D, device="cuda", dtype=dt, generator=g)
        q = torch.randn(B, H, D, device="cuda", dtype=dt, generator=g)
        ids = pk.open_seqs(B)
        pk.append(ids, S)
        pk.build(ids, S)                      # every token is new: write all
        pk.write(k.reshape(B * S, KVH, D).contiguous(),
                 v.reshape(B * S, KVH, D).contiguous())
        pk.build(ids, None)                   # decode: the last token queries
        out = torch.empty_like(q)
        ours = pk.attention_fn(q, out, H)
        kt, vt = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
        qt = q.view(B, H, 1, D)
        ref_fn = lambda: sdpa(torch, qt, kt, vt)
        t_ours = time_ms(torch, ours, a.iters)
        t_ref = time_ms(torch, ref_fn, a.iters)
        ours()
        ref = ref_fn().view(B, H, D)
        torch.cuda.synchronize()
        kv_bytes = 2 * B * S * KVH * D * k.element_size()
        return report("decode B=%d S=%d page=%d" % (B, S, a.page_size), out,
                      ref, t_ours, t_ref, a.tol, kv_bytes)
    finally:
        pk.close()


def run_prefill(lib, torch, a, dt, code):
    P, Cx, H, KVH, D = a.prefill, a.context, a.heads, a.kv_heads, a.head_dim
    S = Cx + P
    pk = Paged(lib, torch, a, code, (S + a.page_size - 1) // a.page_size + 8)
    try:
        g = torch.Generator(device="cuda").manual_seed(2)
        k = torch.randn(S, KVH, D, device="cuda", dtype=dt, generator=g)
        v = torch.randn(S, KVH, D, device="cuda", dtype=dt, generator=g)
        q = torch.randn(P, H, D, device="cuda", dtype=dt, generator=g)
        ids = pk.open_seqs(1)
        pk.append(ids, S)
        pk.build(ids, S)
        pk.write(k, v)
        pk.build(ids, P)                      # the last P tokens query
        out = torch.empty_like(q)
        ours = pk.attention_fn(q, out, H)
        kt = k.transpose(0, 1).unsqueeze(0).contiguous()
        vt = v.transpose(0, 1).unsqueeze(0).contiguous()
        qt = q.transpose(0, 1).unsqueeze(0).contiguous()
        ref_fn = lambda: sdpa(torch, qt, kt, vt, causal_offset=Cx)
        t_ours = time_ms(torch, ours, a.iters)
        t_ref = time_ms(torch, ref_fn, a.iters)
        ours()
        ref = ref_fn()[0].transpose(0, 1)
        torch.cuda.synchronize()
        good = report("prefill P=%d over %d" % (P, Cx), out, ref, t_ours,
                      t_ref, a.tol)
        if a.flash:
            # causal FLOPs: 2 products of 2*D per visible (query, key)
            pairs = P * Cx + P * (P + 1) // 2
            flops = 4.0 * H * D * pairs
            fl = sdpa_flash(torch, qt, kt, vt, Cx)
            t_fl = time_ms(torch, fl, a.iters) if fl else None
            print("prefill P=%d over %d %s: ours %.1f TFLOP/s%s" % (
                P, Cx, a.dtype, flops / t_ours / 1e9,
                "  flash sdpa %.1f TFLOP/s  ours/flash time %.2f" % (
                    flops / t_fl / 1e9, t_ours / t_fl) if t_fl else
                "  flash sdpa: not available for these shapes"))
        return good
    finally:
        pk.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", help="path of libpagedkv.so (default: .libs/)")
    ap.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    ap.add_argument("--layout", choices=["hnd", "nhd"], default="hnd")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kv-len", type=int, default=4096)
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--context", type=int, default=0,
                    help="cached tokens before the prefill run")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--tol", type=float, default=None,
                    help="largest accepted |difference| (default by dtype)")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--skip-prefill", action="store_true")
    ap.add_argument("--flash", action="store_true",
                    help="prefill: also TFLOP/s, and the time against SDPA's "
                         "flash backend (contiguous K/V, causal lower right)")
    a = ap.parse_args()
    check_layouts()
    try:
        import torch
    except ImportError:
        raise SystemExit("PyTorch is not installed: nothing to compare with")
    if not torch.cuda.is_available():
        raise SystemExit("no GPU visible to PyTorch")
    dt = {"f16": torch.float16, "bf16": torch.bfloat16,
          "f32": torch.float32}[a.dtype]
    code = {"f16": 1, "bf16": 2, "f32": 0}[a.dtype]
    if a.tol is None:
        a.tol = {"f16": 1e-2, "bf16": 5e-2, "f32": 1e-4}[a.dtype]
    lib = Lib(find_lib(a.lib))
    n = C.c_int(0)
    lib.check(lib.so.pkv_list_devices(PKV_BACKEND_HIP, None, 0, C.byref(n)),
              "pkv_list_devices(hip)")
    if n.value == 0:
        raise SystemExit("libpagedkv's HIP backend sees no device")
    print("pagedkv %s, torch %s, %s, %s" % (
        lib.so.pkv_version_string().decode(), torch.__version__,
        torch.cuda.get_device_name(), a.dtype))
    good = True
    # A stream of our own for torch and pagedkv alike: the legacy default
    # stream's handle is 0, which pagedkv reads as "no engine stream" (it
    # would then queue on a stream of its own that does not wait for torch).
    with torch.cuda.stream(torch.cuda.Stream()):
        if not a.skip_decode:
            good &= run_decode(lib, torch, a, dt, code)
        if not a.skip_prefill:
            good &= run_prefill(lib, torch, a, dt, code)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
