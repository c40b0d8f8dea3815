#!/usr/bin/env python3
"""benches/arm64-vs-x86.py: `pymortem threads --native` and `pymortem check` on an arm64 core
and on the x86-64 core of the same interpreter and scenario, side by side, with gdb's
`thread apply all bt` on each as the peer.

In one run:
  1. cargo build --release, and a snapshot of the binary
     (benches/.cache/arm64-vs-x86/pymortem-under-test), skipped with --no-build;
  2. for each Debian interpreter (--interp, default 3.11 3.13 3.14 3.15) and scenario
     (--scenario, default threads busy_heap double_free), two cores of the sample-core matrix
     (sample-cores/generated/manifest.json): the x86-64 core the kernel wrote
     (`debian-3.X`, kind `kernel`) and the AArch64 core QEMU wrote (`debian-3.X-arm64`, kind
     `qemu`, QEMU_CPU=cortex-a72). Both are Debian's packaged interpreter with its -dbg
     files, read through their sysroot and debug folder;
  3. on each core, with a warm page cache and a warm layout cache, times
        pymortem threads --native --sysroot R --debug-dir D CORE
        pymortem check --sysroot R --debug-dir D CORE
     (hyperfine -N, --warmup 2 --runs 10; max RSS the median of 3 /usr/bin/time -f %M runs;
     `check` exits 1 on double_free's findings and is timed all the same), and the peer
        gdb -batch -nx -iex 'set sysroot R' -iex 'set debug-file-directory D'
            -ex 'thread apply all bt' EXE CORE
     (gdb-multiarch on the arm64 core; -iex so that gdb reads the DWARF on both: the same
     work, named frames with source lines; --gdb-runs 3, no warmup beyond the probe run);
  4. prints a table per command (median wall ms, mean CPU ms (user + system, from
     hyperfine) and max RSS MiB, x86-64 beside arm64, and arm64 / x86-64), and writes benches/.cache/arm64-vs-x86/summary.json (hyperfine JSON
     and each probe's output next to it).

The goal (issue 21): `threads` and `check` as fast on the arm64 core as on the x86-64 core of
the same scenario. The cores differ: QEMU dumps every thread stack whole (8 MiB each) and no
text, so an arm64 core is some 9 MiB larger per thread; the same scenario runs the same
Python code, so the heaps are alike.

Exit status: 0 when pymortem ran on every core, 1 when it failed on one (or the build
failed), 2 on a set-up error (no manifest, a core missing). gdb failures are reported only.

Usage: python3 benches/arm64-vs-x86.py [--interp 3.13 ...] [--scenario threads ...]
                                        [--runs N] [--warmup N] [--rss-runs N]
                                        [--gdb-runs N | --no-gdb] [--no-build] [--markdown]
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import peers  # noqa: E402  (benches/peers.py: what the bench scripts share)

OUT = os.path.join(peers.CACHE, "arm64-vs-x86")
BENCH = peers.Bench("arm64-vs-x86")
ARCHES = (("x86_64", "kernel", ""), ("aarch64", "qemu", "-arm64"))


def entry_for(manifest, version, suffix, kind, scenario):
    interp = "debian-%s%s" % (version, suffix)
    for e in manifest:
        if e["interp"] == interp and e["kind"] == kind and e["scenario"] == scenario:
            return e
    return None


def tool_args(entry):
    args = []
    if entry.get("sysroot"):
        args += ["--sysroot", entry["sysroot"]]
    for d in entry.get("debug_dirs") or []:
        args += ["--debug-dir", d]
    return args


def gdb_argv(entry):
    gdb = "gdb-multiarch" if entry.get("arch") == "aarch64" else "gdb"
    argv = [gdb, "-batch", "-nx", "-ex", "set pagination off"]
    if entry.get("sysroot"):
        argv += ["-iex", "set sysroot " + entry["sysroot"]]
    if entry.get("debug_dirs"):
        argv += ["-iex", "set debug-file-directory " + ":".join(entry["debug_dirs"])]
    return argv + ["-ex", "thread apply all bt", entry["exe"], entry["core"]]


def time_one(name, argv, d, hf, runs, warmup, rss_runs, ok_codes):
    """Probe `argv` once (saving its output), then measure it; a record for the table."""
    p = subprocess.run(argv, capture_output=True, text=True)
    with open(os.path.join(d, name + ".stdout"), "w") as f:
        f.write(p.stdout)
    with open(os.path.join(d, name + ".stderr"), "w") as f:
        f.write(p.stderr)
    rec = {"name": name, "argv": argv, "probe_rc": p.returncode}
    if p.returncode not in ok_codes:
        rec["status"] = "FAILED (exit %d): %s" % (p.returncode, p.stderr.strip()[-200:])
        return rec
    rec = peers.measure(name, argv, rec, d, hf, runs, warmup, rss_runs, ignore_exit=p.returncode != 0)
    # CPU time (user + system, mean over the runs, from hyperfine): less swayed than wall
    # time by other work on a shared machine.
    if rec.get("hyperfine_json"):
        result = json.load(open(rec["hyperfine_json"]))["results"][0]
        rec["cpu_ms"] = (result["user"] + result["system"]) * 1e3
    return rec


def table(rows, header):
    w = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = []
    for r in [header, ["-" * x for x in w]] + rows:
        out.append("  ".join(str(c).ljust(w[i]) if i < 2 else str(c).rjust(w[i]) for i, c in enumerate(r)))
    return "\n".join(out)


def markdown(rows, header):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interp", nargs="+", default=["3.11", "3.13", "3.14", "3.15"],
                    help="Debian versions: debian-V (kernel core) against debian-V-arm64 (qemu core)")
    ap.add_argument("--scenario", nargs="+", default=["threads", "busy_heap", "double_free"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rss-runs", type=int, default=3)
    ap.add_argument("--gdb-runs", type=int, default=3)
    ap.add_argument("--no-gdb", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = ap.parse_args()

    manifest_path = os.path.join(os.environ.get("PYMORTEM_CORES", os.path.join(ROOT, "sample-cores", "generated")),
                                 "manifest.json")
    if not os.path.exists(manifest_path):
        BENCH.die("no %s: run python3 sample-cores/generate.py first" % manifest_path)
    manifest = json.load(open(manifest_path))
    pairs = []
    for version in args.interp:
        for scenario in args.scenario:
            pair = {}
            for arch, kind, suffix in ARCHES:
                e = entry_for(manifest, version, suffix, kind, scenario)
                if e is None or not os.path.exists(e["core"]):
                    BENCH.die("no %s core of debian-%s%s %s in the manifest" % (kind, version, suffix, scenario))
                pair[arch] = e
            pairs.append((version, scenario, pair))
    hf = shutil.which("hyperfine") or (BENCH.apt_install("hyperfine") and shutil.which("hyperfine"))
    if not os.access("/usr/bin/time", os.X_OK):
        BENCH.apt_install("time")
    gdbs = [] if args.no_gdb else ["gdb", "gdb-multiarch"]
    for g in gdbs:
        if shutil.which(g) is None:
            BENCH.die("%s is not on PATH (sample-cores/setup-interpreters.sh installs it); or --no-gdb" % g)
    version, commit, sha, pymortem = BENCH.build(args.no_build, OUT)
    BENCH.log("%s (%s, sha256 %s); %d core pairs; load %s" % (version, commit, sha, len(pairs),
              " ".join(open("/proc/loadavg").read().split()[:3])))

    results = []
    failed = False
    for version, scenario, pair in pairs:
        res = {"interp": "debian-" + version, "scenario": scenario, "arches": {}}
        for arch, _, _ in ARCHES:
            e = pair[arch]
            d = os.path.join(OUT, "debian-%s" % version, scenario, arch)
            os.makedirs(d, exist_ok=True)
            extra = tool_args(e)
            cmds = collections.OrderedDict([
                ("threads-native", ([pymortem, "threads", "--native"] + extra + [e["core"]], (0, 3))),
                ("check", ([pymortem, "check"] + extra + [e["core"]], (0, 1, 3))),
            ])
            rows = {}
            for name, (argv, ok) in cmds.items():
                BENCH.log("debian-%s %s %s: %s" % (version, scenario, arch, name))
                rows[name] = time_one(name, argv, d, hf, args.runs, args.warmup, args.rss_runs, ok)
                failed |= rows[name].get("status") != "ok"
            if not args.no_gdb:
                BENCH.log("debian-%s %s %s: gdb" % (version, scenario, arch))
                rows["gdb-bt"] = time_one("gdb-bt", gdb_argv(e), d, hf, args.gdb_runs, 0, 1, (0,))
            res["arches"][arch] = {"core": e["core"], "core_bytes": os.path.getsize(e["core"]),
                                   "interp": e["interp"], "kind": e["kind"], "rows": rows}
        results.append(res)

    def cell(rec, key, fmt):
        return fmt % rec[key] if rec.get("status") == "ok" and rec.get(key) is not None else "FAILED"

    tables = {}
    names = [("threads-native", "pymortem threads --native"), ("check", "pymortem check")]
    if not args.no_gdb:
        names.append(("gdb-bt", "gdb thread apply all bt (gdb / gdb-multiarch)"))
    ratios = collections.defaultdict(list)
    for name, title in names:
        header = ["interp", "scenario", "core MiB x86-64", "arm64", "median ms x86-64", "arm64", "arm64/x86",
                  "CPU ms x86-64", "arm64", "arm64/x86", "RSS MiB x86-64", "arm64"]
        rows = []
        for res in results:
            x, a = (res["arches"][arch]["rows"][name] for arch in ("x86_64", "aarch64"))
            both = x.get("status") == "ok" and a.get("status") == "ok"
            ratio = a["median_ms"] / x["median_ms"] if both else None
            cpu_ratio = a["cpu_ms"] / x["cpu_ms"] if both and x.get("cpu_ms") and a.get("cpu_ms") else None
            if ratio is not None:
                ratios[name].append(ratio)
            if cpu_ratio is not None:
                ratios[name + " (CPU)"].append(cpu_ratio)
            rows.append([res["interp"], res["scenario"],
                         "%.0f" % (res["arches"]["x86_64"]["core_bytes"] / 1048576),
                         "%.0f" % (res["arches"]["aarch64"]["core_bytes"] / 1048576),
                         cell(x, "median_ms", "%.0f"), cell(a, "median_ms", "%.0f"),
                         "%.2f" % ratio if ratio is not None else "-",
                         cell(x, "cpu_ms", "%.0f"), cell(a, "cpu_ms", "%.0f"),
                         "%.2f" % cpu_ratio if cpu_ratio is not None else "-",
                         cell(x, "max_rss_mib_median", "%.1f"), cell(a, "max_rss_mib_median", "%.1f")])
        tables[name] = {"title": title, "header": header, "rows": rows}
        print()
        print("== %s: %s" % (title, "hyperfine -N --warmup %d --runs %d" % (
            0 if name == "gdb-bt" else args.warmup, args.gdb_runs if name == "gdb-bt" else args.runs)
            if hf else "perf_counter loop"))
        print(table(rows, header))
        for key, what in ((name, "wall"), (name + " (CPU)", "CPU")):
            if ratios[key]:
                print("   arm64/x86-64 %s time, median over the pairs: %.2f (min %.2f, max %.2f)"
                      % (what, statistics.median(ratios[key]), min(ratios[key]), max(ratios[key])))
        if args.markdown:
            print()
            print(markdown(rows, header))
    print()
    print("load at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"pymortem": {"version": version, "commit": commit, "sha256": sha}, "runs": args.runs,
                   "warmup": args.warmup, "rss_runs": args.rss_runs, "gdb_runs": args.gdb_runs,
                   "results": results, "tables": tables,
                   "ratio_medians": {k: statistics.median(v) for k, v in ratios.items()}}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
