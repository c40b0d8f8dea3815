#!/usr/bin/env python3
"""Build the small committed samples in sample-cores/samples/ from generated cores.

    make_samples.py [--cores DIR]      (default: $PYMORTEM_CORES or sample-cores/generated)

For every sample: NAME.core.zst (zstd -19), NAME.truth.json, and
NAME.sysroot.tar.zst: a tar of a mini sysroot holding only the binaries the core
needs (interpreter, libpython, split debug file) at their original absolute
paths.  Unpack with:  mkdir S && tar -C S --zstd -xf NAME.sysroot.tar.zst
samples/manifest.json describes them with paths relative to samples/.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "samples")

# (sample name, interp, scenario, kind)
SAMPLES = [
    ("pyenv-3.11.7-threads", "pyenv-3.11.7", "threads", "kernel"),
    ("pyenv-2.7.18-double_free", "pyenv-2.7.18", "double_free", "kernel"),
    ("debian-3.11-threads", "debian-3.11", "threads", "kernel"),
]
LIMIT = 40 * 1024 * 1024


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, universal_newlines=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split()[-1]
    return None


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sysroot_files(entry):
    """[(host path, absolute path inside the sysroot)]"""
    files = []
    if entry["sysroot"]:
        root = entry["sysroot"]
        files.append((entry["exe"], "/" + os.path.relpath(entry["exe"], root)))
    else:
        files.append((entry["exe"], entry["exe"]))
    if entry.get("libpython"):
        files.append((entry["libpython"], entry["libpython"]))
    if entry["stripped"]:
        bid = build_id(entry["exe"])
        rel = os.path.join(".build-id", bid[:2], bid[2:] + ".debug")
        for d in entry["debug_dirs"]:
            p = os.path.join(d, rel)
            if os.path.exists(p):
                files.append((p, "/usr/lib/debug/" + rel))
                break
        else:
            raise SystemExit("no debug file for build-id %s" % bid)
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default=os.environ.get("PYMORTEM_CORES") or os.path.join(HERE, "generated"))
    args = ap.parse_args()
    manifest = json.load(open(os.path.join(args.cores, "manifest.json")))
    os.makedirs(OUT, exist_ok=True)
    out_manifest = []
    total = 0
    for name, interp, scen, kind in SAMPLES:
        entry = [e for e in manifest if (e["interp"], e["scenario"], e["kind"]) == (interp, scen, kind)]
        if not entry or not entry[0]["ok"]:
            raise SystemExit("%s/%s/%s missing or failed in %s" % (interp, scen, kind, args.cores))
        e = entry[0]
        core_out = os.path.join(OUT, name + ".core.zst")
        subprocess.run(["zstd", "-19", "-T2", "-q", "-f", e["core"], "-o", core_out], check=True)
        os.chmod(core_out, 0o644)
        shutil.copy(e["truth"], os.path.join(OUT, name + ".truth.json"))
        files = sysroot_files(e)
        tmp = tempfile.mkdtemp()
        try:
            for src, dst in files:
                d = os.path.join(tmp, dst.lstrip("/"))
                os.makedirs(os.path.dirname(d), exist_ok=True)
                shutil.copy2(src, d)
            tar_out = os.path.join(OUT, name + ".sysroot.tar.zst")
            subprocess.run("tar -C %s --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . "
                           "| zstd -19 -T2 -q -f -o %s" % (tmp, tar_out), shell=True, check=True)
        finally:
            shutil.rmtree(tmp)
        sizes = {p: os.path.getsize(os.path.join(OUT, name + p))
                 for p in (".core.zst", ".truth.json", ".sysroot.tar.zst")}
        total += sum(sizes.values())
        out_manifest.append({
            "name": name,
            "interp": interp,
            "python_version": e["python_version"],
            "scenario": scen,
            "kind": kind,
            "core_zst": name + ".core.zst",
            "core_size": e["size"],
            "core_sha256": sha256(e["core"]),
            "truth": name + ".truth.json",
            "sysroot_tar_zst": name + ".sysroot.tar.zst",
            "sysroot_files": [dst for _, dst in files],
            "exe": [dst for _, dst in files][0],
            "debug_dirs_in_sysroot": ["/usr/lib/debug"] if e["stripped"] else [],
            "stripped": e["stripped"],
            "env": e.get("env"),
            "compressed_sizes": sizes,
        })
        print("%-28s core %6.1f MiB -> %5.1f MiB, sysroot %5.1f MiB" % (
            name, e["size"] / 1048576.0, sizes[".core.zst"] / 1048576.0, sizes[".sysroot.tar.zst"] / 1048576.0))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(out_manifest, f, indent=1)
    print("total %.1f MiB (limit %.0f MiB)" % (total / 1048576.0, LIMIT / 1048576.0))
    if total > LIMIT:
        print("ERROR: samples exceed the limit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
