#!/usr/bin/env python3
"""Build the small committed samples in sample-cores/samples/ from generated cores.

    make_samples.py [--cores DIR] [--pymortem PATH]
        DIR:  $PYMORTEM_CORES or sample-cores/generated
        PATH: target/release/pymortem (cargo build --release first)

Every sample is a bundle, NAME.pymortem, written by `pymortem bundle` (zstd -19): the
core with the executable, the libraries the core maps whose build-id matches it (libc
and ld.so included), and, where asked, their debug files. It opens with no sysroot
on any machine: `pymortem threads samples/NAME.pymortem`. NAME.truth.json is the
truth file the scenario wrote. samples/manifest.json lists them with paths relative
to samples/.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "samples")
REPO = os.path.dirname(HERE)

# (sample name, interp, scenario, kind, debug files?) The pyenv builds carry their
# DWARF in libpython, so their samples leave out the (large) debug files of libc
# and friends; the stripped Debian interpreter needs its debug file.
SAMPLES = [
    ("pyenv-3.11.7-threads", "pyenv-3.11.7", "threads", "kernel", False),
    ("pyenv-2.7.18-double_free", "pyenv-2.7.18", "double_free", "kernel", False),
    ("debian-3.11-threads", "debian-3.11", "threads", "kernel", True),
]
LIMIT = 40 * 1024 * 1024


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle(pymortem, entry, out, debug):
    args = [pymortem, "bundle", "--json", "--level", "19", "-o", out]
    if entry["sysroot"]:
        args += ["--sysroot", entry["sysroot"]]
    for d in entry["debug_dirs"]:
        args += ["--debug-dir", d]
    if not debug:
        args.append("--no-debug")
    args.append(entry["core"])
    done = subprocess.run(args, stdout=subprocess.PIPE, check=True, universal_newlines=True)
    return json.loads(done.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default=os.environ.get("PYMORTEM_CORES") or os.path.join(HERE, "generated"))
    ap.add_argument("--pymortem", default=os.path.join(REPO, "target", "release", "pymortem"))
    args = ap.parse_args()
    manifest = json.load(open(os.path.join(args.cores, "manifest.json")))
    if isinstance(manifest, dict):
        manifest = manifest["cores"]
    os.makedirs(OUT, exist_ok=True)
    out_manifest = []
    total = 0
    for name, interp, scen, kind, debug in SAMPLES:
        entry = [e for e in manifest if (e["interp"], e["scenario"], e["kind"]) == (interp, scen, kind)]
        if not entry or not entry[0]["ok"]:
            raise SystemExit("%s/%s/%s missing or failed in %s" % (interp, scen, kind, args.cores))
        e = entry[0]
        out = os.path.join(OUT, name + ".pymortem")
        report = bundle(args.pymortem, e, out, debug)
        os.chmod(out, 0o644)
        shutil.copy(e["truth"], os.path.join(OUT, name + ".truth.json"))
        size = os.path.getsize(out) + os.path.getsize(os.path.join(OUT, name + ".truth.json"))
        total += size
        out_manifest.append({
            "name": name,
            "interp": interp,
            "python_version": e["python_version"],
            "scenario": scen,
            "kind": kind,
            "bundle": name + ".pymortem",
            "bundle_size": os.path.getsize(out),
            "core_size": e["size"],
            "core_sha256": sha256(e["core"]),
            "truth": name + ".truth.json",
            "debug_files": debug,
            "stripped": e["stripped"],
            "files": [{"path": f["path"], "role": f["role"], "build_id": f["build_id"], "size": f["size"]}
                      for f in report["manifest"]["files"]],
            "env": e.get("env"),
        })
        print("%-28s core %6.1f MiB -> bundle %5.1f MiB (%d files)" % (
            name, e["size"] / 1048576.0, os.path.getsize(out) / 1048576.0, len(report["manifest"]["files"])))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(out_manifest, f, indent=1)
        f.write("\n")
    print("total %.1f MiB (limit %.0f MiB)" % (total / 1048576.0, LIMIT / 1048576.0))
    if total > LIMIT:
        print("ERROR: samples exceed the limit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
