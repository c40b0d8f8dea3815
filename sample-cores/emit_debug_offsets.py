#!/usr/bin/env python3
"""Regenerate layouts/debug-offsets.toml: where each member of CPython's
`_Py_DebugOffsets` (3.13+) sits, per minor version.

Every interpreter of the sample-core manifest from 3.13 is read with gdb
(`ptype /o struct _Py_DebugOffsets`, from its DWARF: pyenv's libpython,
Debian's binaries with their -dbg files); micro versions of one minor
version must agree. gdb is the reader on purpose: it is independent of
pymortem's own DWARF code, which the file then checks.

    sample-cores/emit_debug_offsets.py [--manifest FILE] [--out FILE] [--check]
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LINE = re.compile(r"/\*\s+(\d+)\s+\|\s+\d+\s+\*/\s+(.*)")


def parse(out):
    """A small recursive parser of gdb's `ptype /o` output."""
    lines = [l.strip() for l in out.splitlines() if l.strip()]

    def walk_struct(i, into):
        while i < len(lines):
            text = lines[i]
            m = LINE.match(text)
            if m:
                offset, decl = int(m.group(1)), m.group(2)
                if decl.endswith("{"):
                    inner = {}
                    i = walk_struct(i + 1, inner)
                    name = lines[i].rstrip(";").split()[-1]
                    for k, v in inner.items():
                        into[name + "." + k] = v
                    i += 1
                    continue
                into[decl.rstrip(";").split()[-1].split("[")[0]] = offset
                i += 1
            elif text.startswith("}"):
                return i
            else:
                i += 1
        return i

    start = next(i for i, l in enumerate(lines) if "struct _Py_DebugOffsets {" in l)
    top = {}
    walk_struct(start + 1, top)
    return top


def read(entry):
    binary = entry.get("libpython") or entry["exe"]
    cmd = ["gdb", "-batch", "-nx"]
    for d in entry.get("debug_dirs") or []:
        cmd += ["-iex", f"set debug-file-directory {d}"]
    cmd += ["-ex", "ptype /o struct _Py_DebugOffsets", binary]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    if "struct _Py_DebugOffsets {" not in out:
        raise SystemExit(f"{entry['interp']}: gdb found no _Py_DebugOffsets in {binary}")
    return parse(out)


def render(tables):
    out = [
        "# _Py_DebugOffsets (CPython 3.13+): the byte position of each member, per minor",
        "# version, read from DWARF by sample-cores/emit_debug_offsets.py (gdb's",
        "# `ptype /o`). Generated: do not edit; regenerate when a version appears.",
    ]
    for version in sorted(tables, key=lambda v: tuple(int(x) for x in v.split("."))):
        out.append("")
        out.append(f'["{version}"]')
        for path, offset in sorted(tables[version].items(), key=lambda kv: (kv[1], kv[0])):
            out.append(f'"{path}" = {offset}')
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.environ.get("PYMORTEM_CORES", os.path.join(HERE, "generated"))
    parser.add_argument("--manifest", default=os.path.join(cores, "manifest.json"))
    parser.add_argument("--out", default=os.path.join(REPO, "layouts", "debug-offsets.toml"))
    parser.add_argument("--check", action="store_true", help="fail if --out differs instead of writing it")
    args = parser.parse_args()
    entries, seen = [], set()
    for e in json.load(open(args.manifest)):
        major, minor = (int(x) for x in e["python_version"].split(".")[:2])
        if (major, minor) >= (3, 13) and e["interp"] not in seen:
            seen.add(e["interp"])
            entries.append(e)
    tables = {}
    for e in entries:
        minor = ".".join(e["python_version"].split(".")[:2])
        found = read(e)
        if minor in tables and tables[minor] != found:
            raise SystemExit(f"{e['interp']}: _Py_DebugOffsets differs from another {minor} build")
        tables[minor] = found
        print(f"{e['interp']}: {len(found)} members", file=sys.stderr)
    text = render(tables)
    if args.check:
        current = open(args.out).read() if os.path.exists(args.out) else ""
        if current != text:
            raise SystemExit(f"{args.out} is out of date: run sample-cores/emit_debug_offsets.py")
        return
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
