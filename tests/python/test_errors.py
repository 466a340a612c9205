# SPDX-License-Identifier: Apache-2.0
"""Status codes become exceptions: one class per status with .status,
.status_name and .message; real failures of the library map to the right
class with the library's message; the library's state is unchanged."""
from tap import Tap

t = Tap()
import pagedkv  # noqa: E402
from pagedkv import lib  # noqa: E402

statuses = sorted((int(getattr(lib, n)), n) for n in dir(lib)
                  if n.startswith("PKV_ERR_"))
t.ok(len(statuses) >= 15, "the header declares %d error statuses"
     % len(statuses))
for value, name in statuses:
    cls = pagedkv.BY_STATUS.get(value)
    ok = (cls is not None and issubclass(cls, pagedkv.PagedKVError) and
          cls.status == value and pagedkv.BY_NAME[name] is cls and
          getattr(pagedkv, cls.__name__) is cls)
    t.ok(ok, "%s (%d) -> pagedkv.%s" % (name, value,
                                        cls.__name__ if cls else "?"))
t.eq(len(set(pagedkv.BY_STATUS.values())), len(statuses),
     "a distinct class per status")
t.eq(pagedkv.status_name(lib.PKV_ERR_NO_PAGES), "PKV_ERR_NO_PAGES",
     "status_name")


def has_fields(e, cls, status_name):
    return (type(e) is cls and e.status == getattr(lib, status_name) and
            e.status_name == status_name and bool(e.message) and
            status_name in str(e))


t.raises(pagedkv.InvalidArgumentError,
         lambda: pagedkv.backend_from_name("nonesuch"),
         "unknown backend name: InvalidArgumentError (context-less message)",
         lambda e: has_fields(e, pagedkv.InvalidArgumentError,
                              "PKV_ERR_INVALID"))
t.ok(issubclass(pagedkv.InvalidArgumentError, ValueError),
     "InvalidArgumentError is also a ValueError")

ctx = pagedkv.Context("cpu")
e = t.raises(pagedkv.InvalidArgumentError,
             lambda: ctx.cache(num_layers=1, num_kv_heads=1, head_dim=63,
                               page_size=16, num_pages=4),
             "head_dim 63: InvalidArgumentError",
             lambda e: has_fields(e, pagedkv.InvalidArgumentError,
                                  "PKV_ERR_INVALID"))
if e is not None:
    t.ok("head_dim" in e.message, "the message names the argument: %s"
         % e.message)
cache = ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64, page_size=4,
                  num_pages=4)
s = cache.open_seq()
s.append(3)
before = cache.stats()
e = t.raises(pagedkv.NoPagesError, lambda: s.append(100),
             "append past the pool: NoPagesError",
             lambda e: has_fields(e, pagedkv.NoPagesError, "PKV_ERR_NO_PAGES"))
after = cache.stats()
t.eq((len(s), after.pages_free, after.pages_live),
     (3, before.pages_free, before.pages_live),
     "a failed append changes nothing (all-or-nothing)")
t.raises(pagedkv.OutOfRangeError, lambda: cache.kv(5),
         "kv(layer 5) of 1 layer: OutOfRangeError",
         lambda e: has_fields(e, pagedkv.OutOfRangeError, "PKV_ERR_RANGE"))
t.raises(pagedkv.OutOfRangeError, lambda: cache.page_info(99),
         "page_info(99): OutOfRangeError")
b = cache.batch()
t.raises(pagedkv.DuplicateError, lambda: b.build([s, s]),
         "the same sequence twice in a batch: DuplicateError",
         lambda e: has_fields(e, pagedkv.DuplicateError, "PKV_ERR_DUPLICATE"))
t.raises(pagedkv.NotFoundError, lambda: b.build([12345]),
         "an unknown sequence id: NotFoundError",
         lambda e: has_fields(e, pagedkv.NotFoundError, "PKV_ERR_NOT_FOUND"))
try:
    import numpy as np
except ImportError:
    np = None
if np is None:
    t.skip("numpy not importable", "an f32 array for an f16 cache")
else:
    c16 = ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64, page_size=4,
                    num_pages=4, dtype="f16")
    s16 = c16.open_seq()
    s16.append(2)
    b16 = c16.batch()
    b16.build([s16], [2])
    f32 = np.zeros((2, 1, 64), np.float32)
    t.raises(ValueError, lambda: b16.write_kv(0, f32, f32),
             "f32 arrays handed to an f16 cache's write_kv: ValueError")
    c16.close()
small = ctx.buffer(8)
t.raises(pagedkv.PagedKVError, lambda: small.upload(bytes(16)),
         "upload past the buffer's end raises a PagedKVError",
         lambda e: e.status in (lib.PKV_ERR_SIZE, lib.PKV_ERR_RANGE))
t.eq(ctx.last_error() != "", True, "the context keeps the last message")
if not pagedkv.backend_available("hip"):
    t.raises(pagedkv.NoBackendError, lambda: pagedkv.Context("hip"),
             "Context('hip') without the backend: NoBackendError")
else:
    t.skip("the hip backend is built in", "Context('hip') NoBackendError")
t.raises(TypeError, lambda: ctx.cache(num_layerz=1),
         "a misspelt description field is a TypeError, never ignored")
t.raises(pagedkv.ClosedError, lambda: (s.close(), s.append(1)),
         "a closed Sequence raises ClosedError")
ctx.close()
t.done()
