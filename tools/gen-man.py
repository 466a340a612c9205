#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates the library's manual pages from doc/api.md and lib/pagedkv.h.

  gen-man.py --api doc/api.md --header lib/pagedkv.h --version 0.2.0 --out man

writes man/man3/<function>.3 for every function pagedkv.h exports (and a
.so link page for each pkv_X_init macro), and man/man7/pagedkv.7, the
overview: the conventions and, per section of doc/api.md, its text and its
functions. One source of truth: the API reference. A function of the header
that doc/api.md does not document is an error, so undocumented API cannot
ship.

Standard library only; the output is plain man(7) macros that groff and
mandoc render without warnings, reproducible (no date)."""

import argparse
import os
import re
import sys

SPECIAL = {
    "≥": r"\(>=", "≤": r"\(<=", "−": r"\-", "·": r"\(md", "—": r"\(em",
    "–": r"\(en", "×": r"\(mu", "…": "...", "→": r"\(->", "←": r"\(<-",
    "↔": r"\(<>", "≈": r"\(~~", "≠": r"\(!=", "±": r"\(+-", "’": "'",
    "“": r"\(lq", "”": r"\(rq", "µ": r"\(mc", "√": r"\(sr",
}


def esc(text, code=False):
    """Plain text to roff: backslashes, special characters; in code, every
    hyphen a minus sign (so that it copies and searches as ASCII)."""
    text = text.replace("\\", r"\e")
    if code:
        text = text.replace("-", r"\-")
    for k, v in SPECIAL.items():
        text = text.replace(k, v)
    return text


def inline(text):
    """Markdown inline markup to roff fonts."""
    out = []
    # links: keep the text (and the target when it is a URL)
    text = re.sub(r"\[([^\]]+)\]\((https?://[^)]+)\)", r"\1 <\2>", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    # bold may span code spans: mark it before the text is split at them
    text = re.sub(r"\*\*(.+?)\*\*", "\x01\\1\x02", text)
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append(r"\fB" + esc(part[1:-1], code=True) + r"\fR")
        else:
            p = esc(part)
            p = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", p)
            out.append(p)
    return "".join(out).replace("\x01", r"\fB").replace("\x02", r"\fR")


def line_safe(s):
    """A roff text line must not start with a control character."""
    s = s.strip()
    if s.startswith((".", "'")):
        s = r"\&" + s
    return s


def body_to_roff(lines):
    """Markdown block text (paragraphs, lists, tables, code) to man macros."""
    out = []
    i = 0
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.append(line_safe(inline(" ".join(x.strip() for x in para))))
            para.clear()

    while i < len(lines):
        ln = lines[i]
        if ln.startswith("```"):
            flush()
            out.append(".PP")
            out.append(".RS 4")
            out.append(".nf")
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(line_safe(esc(lines[i], code=True)) or r"\&")
                i += 1
            out.append(".fi")
            out.append(".RE")
            i += 1
            continue
        if ln.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            header, rows = rows[0], rows[1:]
            for r in rows:
                out.append(".TP")
                out.append(line_safe(inline(r[0])) or r"\&")
                rest = [
                    (inline(h) + ": " if len(r) > 2 and h else "") + inline(c)
                    for h, c in zip(header[1:], r[1:]) if c
                ]
                out.append(line_safe("; ".join(rest)) or r"\&")
            continue
        m = re.match(r"^(\s*)[-*] (.*)", ln)
        if m:
            flush()
            item = [m.group(2)]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and \
                    not re.match(r"^\s*[-*] ", lines[i]):
                item.append(lines[i].strip())
                i += 1
            out.append(".IP \\(bu 2")
            out.append(line_safe(inline(" ".join(item))))
            continue
        m = re.match(r"^\d+\. (.*)", ln)
        if m:
            flush()
            num = ln.split(".")[0]
            item = [m.group(1)]
            i += 1
            while i < len(lines) and lines[i].startswith("   "):
                item.append(lines[i].strip())
                i += 1
            out.append(".IP %s. 4" % num)
            out.append(line_safe(inline(" ".join(item))))
            continue
        if not ln.strip():
            flush()
            i += 1
            continue
        para.append(ln)
        i += 1
    flush()
    return out


def parse_api(path):
    """Sections of doc/api.md: [(title, intro_lines, [(sigs, body_lines)])]."""
    sections = []
    cur = None
    entry = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for ln in lines:
        if ln.startswith("## "):
            cur = (ln[3:].strip(), [], [])
            sections.append(cur)
            entry = None
        elif ln.startswith("### ") and cur is not None:
            sigs = re.findall(r"`([^`]*\([^`]*\))`", ln)
            if entry is not None and not entry[1] or \
                    (entry is not None and all(not x.strip() for x in entry[1])):
                entry[0].extend(sigs)  # consecutive headings share one text
                entry[1].clear()
            else:
                entry = (sigs, [])
                cur[2].append(entry)
        elif cur is not None:
            (entry[1] if entry is not None else cur[1]).append(ln)
    return sections


def header_api(path):
    """Exported function names and the _init macros of pagedkv.h."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    funcs = re.findall(r"\bPKV_API\b[^;{]*?\b(pkv_\w+)\s*\(", text, flags=re.S)
    macros = re.findall(r"#define\s+(pkv_\w+_init)\s*\(", text)
    return sorted(set(funcs)), sorted(set(macros))


def fname(sig):
    m = re.search(r"(pkv_\w+)\s*\(", sig)
    return m.group(1) if m else None


def first_sentence(body):
    text = " ".join(x.strip() for x in body if x.strip() and
                    not x.startswith(("|", "```", "- ")))
    m = re.match(r"(.+?\.)(\s|$)", text)
    s = (m.group(1) if m else text).rstrip(":.")
    s = re.sub(r"`([^`]*)`", r"\1", s)
    s = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", s)
    s = s.replace("**", "").replace("*", "")
    if len(s) > 110:
        s = s[:107].rsplit(" ", 1)[0] + "..."
    return s or "see DESCRIPTION"


def th(name, sect, version, title):
    return ['.\\" SPDX-License-Identifier: Apache-2.0',
            '.\\" Generated by tools/gen-man.py from doc/api.md: do not edit.',
            '.TH "%s" "%s" "" "pagedkv %s" "%s"' % (name.upper(), sect, version,
                                                    title)]


def page3(name, sigs, body, section, others, version):
    out = th(name, "3", version, "pagedkv Manual")
    out += [".SH NAME"]
    names = [fname(s) for s in sigs if fname(s)]
    out.append(r"%s \- %s" % (", ".join(n.replace("_", "_") for n in names),
                              esc(first_sentence(body))))
    out += [".SH LIBRARY", r"pagedkv (\fIlibpagedkv\fP, \fB\-lpagedkv\fP)",
            ".SH SYNOPSIS", ".nf", r".B #include <pagedkv.h>", ".PP"]
    for s in sigs:
        out.append(line_safe(r"\fB" + esc(s) + r";\fR"))
    for s in sigs:
        n = fname(s)
        if n and n.endswith("_init_sized"):
            base = n[:-len("_sized")]
            extra = ", num_q_heads" if "num_q_heads" in s else ""
            arg = "p" if extra else "x"
            out.append(r"\fB#define %s(%s%s)\fR" % (base, arg, extra))
    out += [".fi", ".SH DESCRIPTION"]
    desc = body_to_roff(body)
    if desc and desc[0] == ".PP":
        desc = desc[1:]
    out += desc
    out += [".SH SECTION", "%s, in" % esc(section), ".BR pagedkv (7)."]
    see = ["pagedkv(7)"] + ["%s(3)" % o for o in others if o not in names][:12]
    out += [".SH SEE ALSO"]
    out.append(",\n".join(".BR %s %s" % (s.split("(")[0], "(" + s.split("(")[1])
                          for s in see))
    return "\n".join(out) + "\n"


def page7(sections, version):
    out = th("pagedkv", "7", version, "pagedkv Manual")
    out += [".SH NAME",
            r"pagedkv \- paged key/value cache and paged attention for LLM inference",
            ".SH SYNOPSIS", ".nf", r".B #include <pagedkv.h>", ".PP",
            r"cc prog.c $(pkg\-config \-\-cflags \-\-libs pagedkv)", ".fi",
            ".SH DESCRIPTION",
            "libpagedkv keeps the key/value cache of transformer inference in",
            "fixed-size pages of one preallocated device pool, maps each sequence's",
            "tokens to pages through a block table, and runs paged attention over",
            "that pool on NVIDIA and AMD GPUs (HIP/CUDA), any OpenCL device, and a",
            "plain-C reference backend on the CPU. Prefix pages are shared between",
            "sequences (hashed and verified token by token), evicted by LRU,",
            "reserved per priority class, kept across turns of a session and",
            "swapped to a host tier.",
            ".PP",
            "Each function has its own page in section 3; this page gives the",
            "conventions every function follows and lists the functions by topic.",
            "The same text, with examples, is",
            r"\fIapi.md\fP in the package's documentation directory.",
            ]
    for title, intro, entries in sections:
        if title.lower().startswith("one step"):
            continue
        out.append(".SH %s" % esc(title.upper()))
        out += body_to_roff(intro)
        names = []
        for sigs, _ in entries:
            names += [fname(s) for s in sigs if fname(s)]
        if names:
            out.append(".PP")
            out.append("Functions:")
            out.append(",\n".join(".BR %s (3)" % n for n in names) + ".")
    out += [".SH ENVIRONMENT",
            ".TP", ".B PKV_BACKEND",
            "backend chosen for PKV_BACKEND_AUTO: auto, cpu, opencl or hip.",
            ".TP", ".B PKV_BACKEND_PATH",
            "an extra directory searched for backend modules.",
            ".TP", ".B PKV_CACHE_DIR",
            "directory of the OpenCL program binary cache.",
            ".SH FILES",
            ".TP", ".I pagedkv.h",
            "the one public header.",
            ".TP", ".I pagedkv.pc",
            "pkg-config metadata: compiler and linker flags.",
            ".SH SEE ALSO",
            ".BR pkv\\-sim (1),", ".BR pkv\\-bench (1),",
            ".BR pkv\\-conformance (1);",
            r"the documentation directory: \fIABI.md\fP (stability policy),",
            r"\fIcontrol\-plane.md\fP, \fIopencl.md\fP, \fIhip.md\fP."]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", required=True)
    ap.add_argument("--header", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    sections = parse_api(a.api)
    funcs, macros = header_api(a.header)
    documented = {}
    for title, _, entries in sections:
        names = [fname(s) for sigs, _ in entries for s in sigs if fname(s)]
        for sigs, body in entries:
            for s in sigs:
                n = fname(s)
                if n:
                    documented[n] = (sigs, body, title, names)
    missing = [f for f in funcs if f not in documented]
    if missing:
        sys.exit("gen-man.py: %s: not documented in %s (a '### `signature`' "
                 "heading per function)" % (", ".join(missing), a.api))
    stale = [n for n in documented if n not in funcs and n not in macros]
    if stale:
        sys.exit("gen-man.py: %s documented in %s but not exported by %s"
                 % (", ".join(sorted(stale)), a.api, a.header))

    d3 = os.path.join(a.out, "man3")
    d7 = os.path.join(a.out, "man7")
    os.makedirs(d3, exist_ok=True)
    os.makedirs(d7, exist_ok=True)
    for old in os.listdir(d3):  # a function removed from the API
        if old.endswith(".3"):
            os.remove(os.path.join(d3, old))
    written = 0
    for f in funcs:
        sigs, body, title, names = documented[f]
        with open(os.path.join(d3, f + ".3"), "w", encoding="utf-8") as o:
            o.write(page3(f, sigs, body, title, names, a.version))
        written += 1
    for m in macros:  # the _init macros document with their _sized function
        target = m + "_sized"
        if target not in funcs:
            sys.exit("gen-man.py: macro %s has no function %s" % (m, target))
        with open(os.path.join(d3, m + ".3"), "w", encoding="utf-8") as o:
            o.write(".so man3/%s.3\n" % target)
        written += 1
    with open(os.path.join(d7, "pagedkv.7"), "w", encoding="utf-8") as o:
        o.write(page7(sections, a.version))
    print("gen-man.py: %d man3 pages and pagedkv.7 in %s" % (written, a.out))


if __name__ == "__main__":
    main()
