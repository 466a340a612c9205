# SPDX-License-Identifier: Apache-2.0
"""Plan/run (pkv_plan_*, pkv_attention_run): a plan made once per step
cuts each request's keys into chunks that fill the device; each layer then
runs under it into a workspace buffer the caller keeps. Experimental in the
C API (doc/plan-run.md), so it may change."""
from . import _structs
from ._ffi import ffi, has, lib, new_struct
from ._handle import Handle
from .batch import attn_params
from .kernel import Tensor, _buffer


def available():
    """True when the loaded library has plan/run."""
    return all(has(n) for n in ("pkv_plan_create", "pkv_attention_run"))


def _destroy_plan(ptr, _ctx):
    lib.pkv_plan_destroy(ptr)


class Plan(Handle):
    """Plan(ctx); build(view, table, num_q_heads=..., options=dict(...),
    **attention params) once per step; workspace_size() bytes for a Buffer;
    run(view, q, out, lse=None, workspace=None) per layer."""
    _kind = "plan"

    def __init__(self, ctx):
        if not available():
            raise NotImplementedError("pagedkv: this libpagedkv has no "
                                      "plan/run (pkv_plan_create)")
        out = ffi.new("pkv_plan **")
        ctx._check(lib.pkv_plan_create(ctx._h(), out))
        super().__init__(out[0], ctx, _destroy_plan, (out[0], ctx._core))
        self._ctx = ctx
        self._keep = []

    def _check(self, status):
        self._ctx._check(status)

    def build(self, view, table, *, num_q_heads, options=None, **params):
        """pkv_plan_build; options: num_sms, blocks_per_sm, min_chunk_keys,
        chunk_keys (pkv_plan_options). The plan keeps view and table."""
        p, keep = attn_params(num_q_heads, **params)
        o = new_struct("pkv_plan_options")
        _structs.fill(o, "pkv_plan_options", options or {}, keep)
        self._check(lib.pkv_plan_build(self._h(), view.c, table.c, p, o))
        self._keep = [view, table]

    def workspace_size(self):
        """Bytes of the workspace every run needs (pkv_plan_workspace_size)."""
        out = ffi.new("size_t *")
        self._check(lib.pkv_plan_workspace_size(self._h(), out))
        return int(out[0])

    def info(self):
        """What the build chose (pkv_plan_get_info), as a dict."""
        i = new_struct("pkv_plan_info")
        self._check(lib.pkv_plan_get_info(self._h(), i))
        return {f: int(getattr(i, f)) for f in _structs.fields("pkv_plan_info")
                if f != "struct_size"}

    def run(self, view, q, out, lse=None, workspace=None):
        """Attention of one layer under the plan (pkv_attention_run)."""
        keep = []
        qt, ot = Tensor.of(self._ctx, q), Tensor.of(self._ctx, out,
                                                    output=True)
        lb = _buffer(self._ctx, lse, keep, output=True) \
            if lse is not None else None
        wb = _buffer(self._ctx, workspace, keep, output=True) \
            if workspace is not None else None
        self._check(lib.pkv_attention_run(
            self._h(), view.c, qt.c, ot.c,
            lb._h() if lb is not None else ffi.NULL,
            wb._h() if wb is not None else ffi.NULL, ffi.NULL))
