#!/usr/bin/env python3
"""Regenerate pymortem's built-in layout tables (layouts/cpython-X.Y.toml).

Every interpreter of the sample-core manifest whose DWARF is available (pyenv's
libpython, Debian's binaries with their unpacked -dbg files) is read by
`pymortem layout --emit`; micro versions of one minor version share a table.

    sample-cores/emit_layouts.py [--out DIR] [--pymortem BIN] [--manifest FILE] [--arch ARCH]

Only the interpreters of one architecture (the manifest's `arch`, default x86_64) go
into one set of tables: aarch64's differ (glibc's pthread types, for one).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "layouts"))
    ap.add_argument("--pymortem", default=os.path.join(REPO, "target", "release", "pymortem"))
    default_manifest = os.path.join(os.environ.get("PYMORTEM_CORES", os.path.join(HERE, "generated")), "manifest.json")
    ap.add_argument("--manifest", default=default_manifest)
    ap.add_argument("--arch", default="x86_64", help="the manifest entries' arch (x86_64, aarch64)")
    args = ap.parse_args()
    with open(args.manifest) as f:
        manifest = json.load(f)
    targets = {}
    debug_dirs = []
    for entry in manifest:
        if entry.get("arch", "x86_64") != args.arch:
            continue
        # The module holding the interpreter: libpython when there is one.
        module = entry.get("libpython") or entry["exe"]
        targets[entry["interp"]] = "%s=%s" % (entry["python_version"], module)
        for d in entry.get("debug_dirs") or []:
            if d not in debug_dirs:
                debug_dirs.append(d)
    if not targets:
        sys.exit("emit_layouts: the manifest lists no interpreters")
    cmd = [args.pymortem, "layout", "--no-default-debug-dir", "--emit", args.out]
    for d in debug_dirs:
        cmd += ["--debug-dir", d]
    cmd += [targets[k] for k in sorted(targets)]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
