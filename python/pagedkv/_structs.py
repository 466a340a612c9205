# SPDX-License-Identifier: Apache-2.0
"""Filling public structs from keyword arguments and reading them back."""
import types

from ._ffi import ffi


def fields(ctype):
    return [name for name, _ in ffi.typeof(ctype).fields]


def fill(p, ctype, values, keep):
    """Sets p's fields from a dict. Strings become char arrays kept alive in
    `keep` (the library may read them during the call only, but a context
    keeps its description's strings as long as it lives anyway); sequences
    fill array fields. Unknown names raise TypeError, so a typo never goes
    unnoticed."""
    known = set(fields(ctype))
    for name, value in values.items():
        if name not in known or name == "struct_size":
            raise TypeError("%s has no field %r (fields: %s)"
                            % (ctype, name, ", ".join(sorted(known))))
        if value is None:
            continue
        ftype = ffi.typeof(p[0]).fields[[f for f, _ in ffi.typeof(
            p[0]).fields].index(name)][1].type
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, bytes) and ftype.kind == "pointer":
            c = ffi.new("char[]", value)
            keep.append(c)
            value = c
        elif ftype.kind == "pointer" and not isinstance(value, (int, ffi.CData)) \
                and hasattr(value, "__len__"):
            # a host array field (alibi_slopes, sinks): a C copy kept alive
            c = ffi.new(ftype.item.cname + "[]", [v for v in value])
            keep.append(c)
            value = c
        elif ftype.kind == "array" and not isinstance(value, bytes):
            arr = getattr(p, name)
            value = list(value)
            if len(value) > len(arr):
                raise ValueError("%s.%s holds at most %d values"
                                 % (ctype, name, len(arr)))
            for i, v in enumerate(value):
                arr[i] = v
            continue
        setattr(p, name, value)


def to_namespace(p, ctype):
    """A struct as a SimpleNamespace: char arrays as str, other arrays as
    lists, nested structs as namespaces."""
    out = types.SimpleNamespace()
    for name, f in ffi.typeof(ctype).fields:
        if name == "struct_size":
            continue
        v = getattr(p, name)
        t = f.type
        if t.kind == "array" and t.item.cname == "char":
            v = ffi.string(v).decode("utf-8", "replace")
        elif t.kind == "array" and t.item.kind == "struct":
            v = [to_namespace(x, t.item.cname) for x in v]
        elif t.kind == "array":
            v = list(v)
        elif t.kind == "struct":
            v = to_namespace(v, t.cname)
        setattr(out, name, v)
    return out
