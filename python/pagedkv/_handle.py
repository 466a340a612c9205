# SPDX-License-Identifier: Apache-2.0
"""Ownership of C handles: each Python object destroys its handle once.

A handle is released by close(), by leaving a `with` block, or when its
object is collected (weakref.finalize, also run at interpreter exit).

The C handle lives in a small _Core that holds nothing but the pointer and
its parent's core, and the finalizer hangs on the core, not on the object
users see. A core keeps its parent's core alive, so the collector destroys
children before parents whatever the order it drops the objects in, and a
reference cycle the user builds through the objects (ctx.x = seq) never
reaches the cores, so it is collected like any other cycle. Closing a
parent explicitly closes its live children first (tracked weakly).
"""
import weakref

from .errors import ClosedError


class _Core:
    __slots__ = ("ptr", "parent", "fin", "__weakref__")


class Handle:
    _kind = "object"
    # children close in rank order: caches (which may sit on wrapped pool
    # buffers, pkv_cache_create_over) before buffers
    _close_rank = 0

    def __init__(self, ptr, parent=None, destroy=None, args=()):
        """destroy(*args) releases the C object; args hold what must outlive
        it (the parent's core, wrapped memory), never this object."""
        core = _Core()
        core.ptr = ptr
        core.parent = parent._core if parent is not None else None
        core.fin = (weakref.finalize(core, destroy, *args)
                    if destroy is not None else None)
        self._core = core
        self._children = weakref.WeakSet()
        if parent is not None:
            parent._children.add(self)

    @property
    def _ptr(self):
        return self._core.ptr

    @property
    def _fin(self):
        return self._core.fin

    # -- life cycle ----------------------------------------------------
    def close(self):
        """Releases the handle (and first every child's). Idempotent."""
        if self._core.ptr is None:
            return
        for child in sorted(self._children, key=lambda c: c._close_rank):
            child._parent_closing()
        self._core.ptr = None
        if self._core.fin is not None:
            self._core.fin()

    def _parent_closing(self):
        """The parent is being destroyed: by default close normally."""
        self.close()

    def _forget(self):
        """The C object is gone with its parent: drop it without a call."""
        for child in list(self._children):
            child._forget()
        self._core.ptr = None
        if self._core.fin is not None:
            self._core.fin.detach()

    @property
    def closed(self):
        return self._core.ptr is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _h(self):
        """The live C handle; ClosedError after close()."""
        if self._core.ptr is None:
            raise ClosedError("pagedkv: %s is closed" % self._kind)
        return self._core.ptr

    def __repr__(self):
        state = "closed" if self._core.ptr is None else "open"
        return "<pagedkv.%s %s>" % (type(self).__name__, state)
