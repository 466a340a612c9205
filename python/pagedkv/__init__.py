# SPDX-License-Identifier: Apache-2.0
"""pagedkv: Python bindings of libpagedkv (paged KV cache + paged attention).

    import pagedkv
    with pagedkv.Context("cpu") as ctx, \\
         ctx.cache(num_layers=2, num_kv_heads=2, head_dim=64, page_size=16,
                   num_pages=64, dtype="f32") as cache:
        seq = cache.open_seq()
        slots = seq.append(5)
        batch = cache.batch()
        batch.build([seq], q_lens=[5])
        batch.write_kv(0, k, v)                  # numpy arrays or tensors
        batch.attention(0, q, out, num_q_heads=4)

Every C function of pagedkv.h is bound in `lib` (cffi, ABI mode, `ffi`
for its types); the classes below wrap them with objects that close
themselves and exceptions (PagedKVError and one subclass per status).
See doc/python.md.
"""
from ._ffi import ffi, lib, library_path, has
from .errors import (PagedKVError, ClosedError, BY_STATUS, BY_NAME, check,
                     status_name)
from .errors import *  # noqa: F401,F403  (one exception class per status)
from .context import (Context, version, version_string, backend_name,
                      backend_from_name, backend_available, list_devices,
                      AUTO, CPU, OPENCL, HIP)
from .buffer import Buffer
from .cache import (Cache, dtype_size, convert_from_f32, convert_to_f32,
                    HND, NHD, PAGE_FREE, PAGE_LIVE, PAGE_CACHED)
from .sequence import Sequence
from .batch import Batch
from .interop import F32, F16, BF16
from . import dlpack, kernel
from .kernel import Tensor, KVView, KVTable, kv_write, kv_attention, cache_over
from . import plan
from .plan import Plan
from . import kvevents
from . import xfer

__version__ = version_string()
