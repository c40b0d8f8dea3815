#!/usr/bin/env python3
"""benches/python-vs-rust.py: the Python package against the Rust library on the busy core.

In one run:
  1. cargo build --release --examples   (the binary and the three Rust examples, copied to
                                          benches/.cache/python-vs-rust/ before timing)
  2. a venv with the package: benches/.cache/venv-python (CPython 3.13.0 from pyenv,
     `pip install .` of this checkout; rebuilt when the checkout's HEAD changed), or
     --python PATH of an interpreter that has it
  3. the `busy` core of check-vs-pystack.py (CPython 3.11.7, about 1.1 million GC-tracked
     objects; made and cached the same way, shared with it)
  4. side by side, with hyperfine -N (warm page cache, warm layout cache):
       freed_tuples         Rust example  | examples/python/freed_tuples.py
       largest_containers   Rust example  | examples/python/largest_containers.py
       every GC object      Rust largest_containers (it reads each object's kind, and the length
                            of each container) | a Python loop over py.gc_objects() doing the
                            same reads, and one reading each object's type_name
       check                target/release/pymortem check | python -m pymortem check
     and prints the medians and the ratios Python / Rust.  The goal of the package: iterating
     every GC object from Python is not more than a few times slower than the Rust example.
  5. writes benches/.cache/python-vs-rust/summary.json.

Exit status: 0 when every command ran with the same exit status in both languages, 1 when a
build or a command failed, 2 on a set-up error.

Usage: python3 benches/python-vs-rust.py [--runs R] [--warmup W] [--no-build] [--python PATH]
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import peers  # noqa: E402
from peers import CACHE, PYENV_ROOT  # noqa: E402

OUT = os.path.join(CACHE, "python-vs-rust")
VENV = os.path.join(CACHE, "venv-python")
VENV_BASE = os.environ.get("BENCH_PACKAGE_PYTHON", os.path.join(PYENV_ROOT, "versions/3.13.0/bin/python3"))
EXAMPLES = ("freed_tuples", "largest_containers")
BENCH = peers.Bench("python-bench")
log, die = BENCH.log, BENCH.die

# Every GC object, from Python: what a script that walks the heap does first.
EVERY_OBJECT = r"""
import sys, pymortem
py = pymortem.open(sys.argv[1]).python()
count = longest = 0
if sys.argv[2] == "kind":  # the reads of the Rust example: kind, and length of containers
    for obj in py.gc_objects():
        count += 1
        if obj.kind in ("list", "tuple", "dict"):
            longest = max(longest, len(obj))
else:  # what a script asks first: every object's type name
    names = {}
    for obj in py.gc_objects():
        count += 1
        names[obj.type_name] = names.get(obj.type_name, 0) + 1
    longest = max(names.values())
print(count, longest)
"""


def busy_core():
    """check-vs-pystack.py's busy core (its generator and cache)."""
    spec = importlib.util.spec_from_file_location("check_vs_pystack", os.path.join(HERE, "check-vs-pystack.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    core, _exe, pyver, gen_line = module.make_core("busy")
    return core, pyver, gen_line


def head():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def ensure_venv():
    """The package's venv; returns its python."""
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, ".ready")
    key = head()
    if os.path.isfile(stamp) and open(stamp).read().strip() == key:
        return python
    if not os.access(VENV_BASE, os.X_OK):
        die("no interpreter for the venv at %s (BENCH_PACKAGE_PYTHON)" % VENV_BASE)
    shutil.rmtree(VENV, ignore_errors=True)
    log("pip install . into %s (maturin, release build; minutes the first time)" % VENV)
    subprocess.check_call([VENV_BASE, "-m", "venv", VENV])
    if subprocess.call([python, "-m", "pip", "install", "-q", ROOT]) != 0:
        die("pip install . failed", 1)
    with open(stamp, "w") as f:
        f.write(key + "\n")
    return python


def snapshot_examples(skip_build):
    if not skip_build:
        log("cargo build --release --examples")
        if subprocess.call(["cargo", "build", "--release", "--examples", "--quiet"], cwd=ROOT) != 0:
            die("cargo build --release --examples failed", 1)
    os.makedirs(OUT, exist_ok=True)
    copies = {}
    for name in EXAMPLES:
        built = os.path.join(ROOT, "target", "release", "examples", name)
        if not os.access(built, os.X_OK):
            die("no Rust example at " + built, 1)
        copies[name] = os.path.join(OUT, name)
        shutil.copy2(built, copies[name])
    return copies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-build", action="store_true", help="use the release builds as they are")
    parser.add_argument("--python", help="an interpreter with the package installed (skips the venv)")
    args = parser.parse_args()

    hf = shutil.which("hyperfine") or (BENCH.apt_install("hyperfine") and shutil.which("hyperfine"))
    version, commit, sha, binary = BENCH.build(args.no_build, OUT)
    examples = snapshot_examples(args.no_build)
    python = args.python or ensure_venv()
    core, pyver, gen_line = busy_core()
    log("core %s (CPython %s; %s)" % (core, pyver, gen_line))
    script = os.path.join(OUT, "every_object.py")
    with open(script, "w") as f:
        f.write(EVERY_OBJECT)

    pairs = [
        ("freed_tuples", [examples["freed_tuples"], core],
         [python, os.path.join(ROOT, "examples/python/freed_tuples.py"), core]),
        ("largest_containers", [examples["largest_containers"], core],
         [python, os.path.join(ROOT, "examples/python/largest_containers.py"), core]),
        ("every GC object: kind, len", [examples["largest_containers"], core], [python, script, core, "kind"]),
        ("every GC object: type_name", [examples["largest_containers"], core], [python, script, core, "type_name"]),
        ("check", [binary, "check", core], [python, "-m", "pymortem", "check", core]),
    ]
    status = 0
    rows = []
    for name, rust, py in pairs:
        codes = [subprocess.run(argv, capture_output=True).returncode for argv in (rust, py)]
        if codes[0] != codes[1] and not name.startswith("every GC object"):
            log("%s: exit %d in Rust, %d in Python" % (name, codes[0], codes[1]))
            status = 1
        recs = []
        for lang, argv in (("rust", rust), ("python", py)):
            rec = peers.measure("%s-%s" % (name.replace(" ", "_"), lang), argv, {}, OUT, hf,
                                args.runs, args.warmup, 3, ignore_exit=True)
            if rec.get("status") != "ok":
                log("%s (%s): %s" % (name, lang, rec.get("status")))
                status = 1
            recs.append(rec)
        rows.append((name, recs[0], recs[1]))

    print("pymortem %s (%s, %s); core: %s, CPython %s, %s" % (version, commit, sha, core, pyver, gen_line))
    print()
    print("| what | Rust median ms | Python median ms | Python / Rust | Rust RSS MiB | Python RSS MiB |")
    print("|---|---|---|---|---|---|")
    summary = []
    for name, rust, py in rows:
        if rust.get("status") != "ok" or py.get("status") != "ok":
            continue
        ratio = py["median_ms"] / rust["median_ms"]
        print("| %s | %.0f | %.0f | %.2f | %.0f | %.0f |" % (
            name, rust["median_ms"], py["median_ms"], ratio,
            rust["max_rss_mib_median"] or 0, py["max_rss_mib_median"] or 0))
        summary.append({"what": name, "rust": rust, "python": py, "ratio": ratio})
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"version": version, "commit": commit, "core": core, "rows": summary}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
