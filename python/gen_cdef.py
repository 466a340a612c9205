#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates python/pagedkv/_cdef.py: the cffi declarations of pagedkv.h.

Run at build time over the header being installed, so the package binds
exactly the library it ships with and a function added to the header is
bound without touching the package. cffi's parser takes plain C
declarations only, so this keeps the declarations and the integer
#defines, follows "quoted" includes, drops comments, other preprocessor
lines, the C++ guard, PKV_API and __attribute__((...)), and substitutes
integer macros used as array sizes. Each declaration is checked with cffi;
one it cannot parse (e.g. a type from a system header) is dropped and
listed in DROPPED, never silently.

usage: gen_cdef.py OUTPUT HEADER
"""
import os
import re
import sys

_INT = re.compile(r"^\(?\s*(-?(?:0[xX][0-9a-fA-F]+|\d+))[uUlL]*\s*\)?$")


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"),
                  text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _preprocess(path, defines, seen):
    """Returns the declaration text of one header, its includes inlined."""
    if path in seen:
        return ""
    seen.add(path)
    with open(path, encoding="utf-8") as f:
        text = _strip_comments(f.read()).replace("\\\n", " ")
    out = []
    stack = []  # (taking, any_branch_taken)
    for line in text.split("\n"):
        s = line.strip()
        taking = all(t for t, _ in stack)
        if s.startswith("#"):
            d = s[1:].strip()
            word = d.split(None, 1)[0] if d else ""
            arg = d[len(word):].strip()
            if word in ("ifdef", "ifndef", "if"):
                if word == "ifdef":
                    val = arg in defines or arg == "__GNUC__"
                elif word == "ifndef":
                    # header guards and "not yet defined" fallbacks
                    val = arg not in defines or arg.endswith("_H")
                else:
                    val = "__cplusplus" not in arg
                stack.append((val, val))
            elif word == "elif":
                t, any_t = stack.pop()
                val = (not any_t) and "__cplusplus" not in arg
                stack.append((val, any_t or val))
            elif word == "else":
                t, any_t = stack.pop()
                stack.append((not any_t, True))
            elif word == "endif":
                if stack:
                    stack.pop()
            elif not taking:
                pass
            elif word == "define":
                m = re.match(r"(\w+)(\([^)]*\))?\s*(.*)$", arg)
                if m and not m.group(2):
                    name, value = m.group(1), m.group(3).strip()
                    defines[name] = value
                    iv = _INT.match(value)
                    if iv:
                        out.append("#define %s %s" % (name, iv.group(1)))
            elif word == "include":
                m = re.match(r'"([^"]+)"', arg)
                if m:
                    inc = os.path.join(os.path.dirname(path), m.group(1))
                    if os.path.exists(inc):
                        out.append(_preprocess(inc, defines, seen))
            continue
        if taking:
            out.append(line)
    return "\n".join(out)


def _split_decls(text):
    """Splits into #define lines and top-level declarations ending in ';'."""
    decls, cur, depth = [], [], 0
    for line in text.split("\n"):
        if line.startswith("#define"):
            decls.append(line)
            continue
        for ch in line:
            cur.append(ch)
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == ";" and depth == 0:
                d = " ".join("".join(cur).split())
                if d:
                    decls.append(d)
                cur = []
        cur.append("\n")
    return decls


def _decl_name(decl):
    m = re.search(r"(\w+)\s*\(", decl)
    if m and not decl.startswith("typedef"):
        return m.group(1)
    m = re.search(r"(\w+)\s*;$", decl)
    return m.group(1) if m else decl[:40]


def generate(header):
    defines = {}
    text = _preprocess(os.path.abspath(header), defines, set())
    text = re.sub(r"\bPKV_API\b", "", text)
    text = re.sub(r"__attribute__\s*\(\(.*?\)\)", "", text)
    # integer macros as array sizes: cffi needs the number
    ints = {k: _INT.match(v).group(1) for k, v in defines.items()
            if _INT.match(v)}

    def subst(decl):
        if decl.startswith("#define"):
            return decl
        return re.sub(r"\[\s*(\w+)\s*\]",
                      lambda m: "[%s]" % ints.get(m.group(1), m.group(1)),
                      decl)
    decls = [subst(d) for d in _split_decls(text)]
    decls = [d for d in decls if not re.match(r'extern\s+"C"', d)]

    import cffi
    dropped = []
    try:
        cffi.FFI().cdef("\n".join(decls))
        kept = decls
    except Exception:  # find the culprits one by one
        kept = []
        for d in decls:
            try:
                cffi.FFI().cdef("\n".join(kept + [d]))
                kept.append(d)
            except Exception as e:  # noqa: BLE001 - any parse error drops it
                dropped.append((_decl_name(d), str(e).split("\n")[0]))
    return "\n".join(kept), dropped


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    out, header = argv[1], argv[2]
    cdef, dropped = generate(header)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# SPDX-License-Identifier: Apache-2.0\n")
        f.write("# Generated by python/gen_cdef.py from pagedkv.h: do not edit.\n")
        f.write("CDEF = %r\n" % cdef)
        f.write("DROPPED = %r\n" % (dropped,))
    os.replace(tmp, out)
    for name, why in dropped:
        sys.stderr.write("gen_cdef: dropped %s: %s\n" % (name, why))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
