# SPDX-License-Identifier: Apache-2.0
"""pkv_status codes as exceptions.

Every failing call raises a subclass of PagedKVError, one per status, with
.status (the int), .status_name ("PKV_ERR_NO_PAGES") and .message (the
library's pkv_last_error text, which names the argument and the limit).
Statuses added to the header later get a class generated from their name,
so no status ever surfaces as a bare int.
"""
from ._ffi import ffi, lib, string


class PagedKVError(Exception):
    """Base of every error the library reports."""

    status = None

    def __init__(self, status, status_name, message):
        self.status = int(status)
        self.status_name = status_name
        self.message = message
        text = message or "(no message)"
        if not text.startswith(status_name):  # the library's may already
            text = "%s: %s" % (status_name, text)
        super().__init__(text)

    def __str__(self):  # KeyError's would quote it: keep it plain
        return self.args[0]


# Known statuses with a Python name and, where one fits, a builtin base so
# that `except ValueError` style code keeps working.
_KNOWN = {
    "PKV_ERR_NULL": ("NullArgumentError", (ValueError,)),
    "PKV_ERR_INVALID": ("InvalidArgumentError", (ValueError,)),
    "PKV_ERR_RANGE": ("OutOfRangeError", (IndexError,)),
    "PKV_ERR_OVERFLOW": ("SizeOverflowError", (OverflowError,)),
    "PKV_ERR_NO_MEMORY": ("NoMemoryError", (MemoryError,)),
    "PKV_ERR_NO_PAGES": ("NoPagesError", ()),
    "PKV_ERR_UNSUPPORTED": ("UnsupportedError", ()),
    "PKV_ERR_NO_BACKEND": ("NoBackendError", ()),
    "PKV_ERR_DEVICE": ("DeviceError", ()),
    "PKV_ERR_DUPLICATE": ("DuplicateError", (ValueError,)),
    "PKV_ERR_NOT_FOUND": ("NotFoundError", (KeyError,)),
    "PKV_ERR_STATE": ("StateError", ()),
    "PKV_ERR_SIZE": ("BufferSizeError", (ValueError,)),
    "PKV_ERR_BUILD": ("BuildError", ()),
    "PKV_ERR_NO_HOST_PAGES": ("NoHostPagesError", ()),
    # page transfer (pagedkv.xfer): not named TimeoutError, which would
    # shadow the builtin it derives from
    "PKV_ERR_INCOMPATIBLE": ("IncompatibleError", (ValueError,)),
    "PKV_ERR_PEER": ("PeerError", (ConnectionError,)),
    "PKV_ERR_TIMEOUT": ("TransferTimeoutError", (TimeoutError,)),
}

#: status int -> exception class
BY_STATUS = {}
#: "PKV_ERR_X" -> exception class
BY_NAME = {}


def _camel(status_name):
    words = status_name[len("PKV_ERR_"):].lower().split("_")
    return "".join(w.capitalize() for w in words) + "Error"


def _statuses():
    """(name, value) of every PKV_ERR_* the header declares."""
    for name in dir(lib):
        if name.startswith("PKV_ERR_"):
            yield name, int(getattr(lib, name))


for _name, _value in sorted(_statuses(), key=lambda x: x[1]):
    _cls_name, _bases = _KNOWN.get(_name, (_camel(_name), ()))
    _cls = type(_cls_name, (PagedKVError,) + _bases,
                {"status": _value, "__doc__": "%s (%d)" % (_name, _value),
                 "__module__": __name__,
                 "__str__": PagedKVError.__str__})
    globals()[_cls_name] = _cls
    BY_STATUS[_value] = _cls
    BY_NAME[_name] = _cls
del _name, _value, _cls_name, _bases, _cls


class ClosedError(ValueError):
    """An object was used after close() (not a library status)."""


def status_name(status):
    return string(lib.pkv_status_name(status)) or "PKV_STATUS_%d" % status


def error_for(status, ctx_ptr=None):
    """The exception for a failed status; the message is the context's last
    error (ctx_ptr) or this thread's context-less one."""
    msg = string(lib.pkv_last_error(ctx_ptr if ctx_ptr is not None
                                    else ffi.NULL))
    cls = BY_STATUS.get(int(status), PagedKVError)
    return cls(int(status), status_name(int(status)), msg)


def check(status, ctx_ptr=None):
    """Raises the matching PagedKVError unless status is PKV_OK."""
    if status != 0:
        raise error_for(status, ctx_ptr)
