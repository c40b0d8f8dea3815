#!/usr/bin/env python3
"""benches/triage-vs-pystack.py: throughput of `pymortem triage` against `pystack core` once per core.

In one run:
  1. cargo build --release (snapshot in benches/.cache/triage-vs-pystack/) and the peers' venv;
  2. a folder of N cores (default 40): hard links to the ~50 MB pyenv 3.11 core of
     info-vs-peers.sh (made and cached the same way when missing), so every file is a full
     50 MB core in the page cache;
  3. times, each the median of R runs (default 3) on a warm page cache:
       pymortem triage --json DIR              (all checks, one worker per CPU)
       pymortem triage --json --no-checks DIR  (stacks and signal only)
       pystack core CORE EXE, once per core, one after another
       pystack core CORE EXE, once per core, as many at once as there are CPUs
     and prints cores per second for each and the ratios; the goals are at least 20 cores/s
     for triage and at least 10x the throughput of pystack;
  4. checks that triage put every core in one group (they are the same core) and writes
     benches/.cache/triage-vs-pystack/summary.json.

Exit status: 0 when pymortem triaged every core; 1 when it failed; 2 on a set-up error.
Missed goals are reported, not fatal.

Usage: python3 benches/triage-vs-pystack.py [--cores N] [--runs R] [--no-build]
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers  # noqa: E402  (benches/peers.py: what the bench scripts share)

OUT = os.path.join(peers.CACHE, "triage-vs-pystack")
BENCH = peers.Bench("triage-bench")
GOAL_CORES_PER_SECOND = 20.0
GOAL_RATIO = 10.0


def wall(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cores", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    version, commit, sha, pymortem = BENCH.build(args.no_build, OUT)
    pystack_version, _ = BENCH.ensure_venv()
    core, exe, pyver = peers.info_core(BENCH)
    folder = os.path.join(OUT, "cores")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    paths = []
    for i in range(args.cores):
        p = os.path.join(folder, "core.%03d" % i)
        try:
            os.link(core, p)
        except OSError:
            shutil.copy2(core, p)
        paths.append(p)
    size_mb = os.path.getsize(core) / 1e6
    cpus = os.cpu_count() or 1
    BENCH.log("%d links to %s (%.1f MB, Python %s); %d CPUs" % (args.cores, core, size_mb, pyver, cpus))

    out = subprocess.run([pymortem, "triage", "--json", folder], capture_output=True, text=True)
    if out.returncode != 0:
        BENCH.die("pymortem triage failed: " + out.stderr[-500:], 1)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    summary = lines[-1]
    rows = lines[:-1]
    errors = [r for r in rows if "error" in r]
    if errors or len(rows) != args.cores or len(summary["groups"]) != 1:
        BENCH.die("triage: %d rows, %d errors, %d groups (expected %d rows, 1 group)"
                  % (len(rows), len(errors), len(summary["groups"]), args.cores), 1)
    probe = subprocess.run([peers.PYSTACK, "core", core, exe], capture_output=True, text=True)
    if probe.returncode != 0:
        BENCH.log("pystack core failed on the core (exit %d): %s" % (probe.returncode, probe.stderr[-300:]))

    def triage(extra):
        return lambda: subprocess.run([pymortem, "triage", "--json"] + extra + [folder],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    def pystack_one(p):
        subprocess.run([peers.PYSTACK, "core", p, exe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pystack_serial():
        for p in paths:
            pystack_one(p)

    def pystack_parallel():
        with concurrent.futures.ThreadPoolExecutor(max_workers=cpus) as pool:
            list(pool.map(pystack_one, paths))

    triage(["--no-checks"])()  # warm the page cache and the layout cache
    measured = {}
    for name, fn in [("pymortem triage", triage([])),
                     ("pymortem triage --no-checks", triage(["--no-checks"])),
                     ("pystack core, one after another", pystack_serial),
                     ("pystack core, %d at once" % cpus, pystack_parallel)]:
        BENCH.log("timing " + name)
        median, times = wall(fn, args.runs)
        measured[name] = {"median_s": median, "times_s": times, "cores_per_s": args.cores / median}
    best_pystack = max(v["cores_per_s"] for k, v in measured.items() if k.startswith("pystack"))
    print("\n== %d cores of %.1f MB (Python %s), %d CPUs, warm page cache, median of %d runs, load %s"
          % (args.cores, size_mb, pyver, cpus, args.runs, " ".join(open("/proc/loadavg").read().split()[:3])))
    print("   %s (%s, %s) vs %s" % (version, commit, sha, pystack_version))
    for name, v in measured.items():
        print("   %-36s %8.2f s  %8.1f cores/s  %6.1fx the best pystack"
              % (name, v["median_s"], v["cores_per_s"], v["cores_per_s"] / best_pystack))
    full = measured["pymortem triage"]["cores_per_s"]
    goals = {
        "at least %.0f cores/s" % GOAL_CORES_PER_SECOND: full >= GOAL_CORES_PER_SECOND,
        "at least %.0fx pystack (the faster of serial and parallel)" % GOAL_RATIO:
            full >= GOAL_RATIO * best_pystack,
    }
    for k, v in goals.items():
        print("   goal: %-56s %s" % (k, "MET" if v else "NOT MET"))
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"pymortem": {"version": version, "commit": commit, "sha256_16": sha},
                   "pystack": pystack_version, "cores": args.cores, "core": core, "core_mb": size_mb,
                   "cpus": cpus, "runs": args.runs, "measured": measured, "goals": goals}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
