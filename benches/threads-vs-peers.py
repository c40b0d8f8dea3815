#!/usr/bin/env python3
"""benches/threads-vs-peers.py: `pymortem threads` against pystack and py-spy.

In one run:
  1. cargo build --release                 (target/release/pymortem)
  2. the peers' venv with pystack + py-spy  (benches/.cache/venv-peers, shared with
                                             info-vs-peers.sh: same stamp, same pins)
  3. correctness: every core of sample-cores/generated/manifest.json (or --limit N of them)
     goes through
        pymortem threads --json [--sysroot R] [--debug-dir D]... CORE
        pystack core [--lib-search-root R] CORE EXE
        py-spy dump --core CORE --json
     and each tool's per-thread stacks are compared with the core's truth file
     (threads matched by LWP or pthread id; frames innermost first, by index;
     function, file and line compared).
  4. timing on the ~50 MB CPython 3.11.7 core made by info-vs-peers.sh (same generator, same
     cache directory; made here when it is missing): hyperfine -N --warmup 3 --runs 20 on
        pymortem threads CORE | pymortem threads --json CORE | py-spy dump --core CORE |
        pystack core CORE EXE
     (+ `pymortem threads --json --no-cache` as an extra, cold-layout row), max RSS via
     /usr/bin/time -f %M.
  5. writes benches/.cache/threads-vs-peers/summary.json (raw outputs next to it).

Exit status: 0 unless pymortem fails to build, or fails to run at all (it cannot even read
the timing core, or it errors on every manifest core).  Peer failures and disagreements
with the truth files are reported, never fatal.  2 on a set-up error (no venv, no core).

Usage: python3 benches/threads-vs-peers.py [--limit N] [--runs R] [--jobs J] ...
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import peers  # noqa: E402  (benches/peers.py: what the bench scripts share)
from peers import CACHE, CRASH_PY, PEER_PINS, PYENV_ROOT, PYSPY, PYSTACK, VENV  # noqa: E402,F401
OUT = os.path.join(CACHE, "threads-vs-peers")
PYMORTEM = os.path.join(OUT, "pymortem-under-test")  # the snapshot BENCH.build() takes
HEAP_MB = int(os.environ.get("BENCH_HEAP_MB", "40"))
STACK_KB = int(os.environ.get("BENCH_STACK_KB", "512"))
TOOLS = ("pymortem", "pystack", "py-spy")
# The functions the timing core's threads are parked in (info-vs-peers.sh's generator).
PARKED = ["park_on_event", "sleep_inner", "park_in_sleep", "lock_level2", "park_on_lock",
          "recurse_then_wait", "park_in_recursion"]


BENCH = peers.Bench("threads-bench")
log, die, apt_install = BENCH.log, BENCH.die, BENCH.apt_install


def timing_core():
    return peers.info_core(BENCH, HEAP_MB, STACK_KB)


# ---------------------------------------------------------------------------------------------
# running the tools and parsing their output
# ---------------------------------------------------------------------------------------------
def run(argv, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), \
            time.monotonic() - t0, False
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        err = (e.stderr or b"").decode("utf-8", "replace")
        return None, out, err, time.monotonic() - t0, True


def pystack_lib_args(sysroot):
    return ["--lib-search-root", sysroot] if sysroot else []


def commands(entry):
    core, exe, sysroot = entry["core"], entry["exe"], entry.get("sysroot")
    pm = [PYMORTEM, "threads", "--json"]
    if sysroot:
        pm += ["--sysroot", sysroot]
    for d in entry.get("debug_dirs") or []:
        pm += ["--debug-dir", d]
    return {
        "pymortem": pm + [core],
        "pystack": [PYSTACK, "core"] + pystack_lib_args(sysroot) + [core, exe],
        "py-spy": [PYSPY, "dump", "--core", core, "--json"],
    }


def parse_pymortem(out):
    doc = json.loads(out)
    threads = []
    for t in doc.get("threads") or []:
        threads.append({
            "lwp": t.get("lwp"), "pthread": t.get("pthread_id"),
            "frames": [(f.get("function"), f.get("file"), f.get("line")) for f in t.get("frames") or []],
            "note": t.get("frames_error"),
        })
    return threads


PYSTACK_HDR = re.compile(r"^Traceback for thread (\d+)(?: \[(.*?)\])? \(most recent call last\):")
PYSTACK_FRAME = re.compile(r'^\s+\(Python\) File "(.*)", line (\d+|\?), in (.+?)\s*$')


def parse_pystack(out):
    """Text: `Traceback for thread TID [flags] (most recent call last):` blocks of
    `    (Python) File "F", line N, in FUNC` (+ a source line), outermost first."""
    threads, cur = [], None
    for line in out.splitlines():
        m = PYSTACK_HDR.match(line)
        if m:
            cur = {"lwp": int(m.group(1)), "pthread": None, "frames": [], "note": m.group(2) or None}
            threads.append(cur)
            continue
        m = PYSTACK_FRAME.match(line)
        if m and cur is not None:
            ln = None if m.group(2) == "?" else int(m.group(2))
            cur["frames"].append((m.group(3), m.group(1), ln))
    for t in threads:
        t["frames"].reverse()  # innermost first, like the truth
    return threads


def parse_pyspy(out):
    threads = []
    for t in json.loads(out):
        threads.append({
            "lwp": t.get("os_thread_id"), "pthread": t.get("thread_id"),
            "frames": [(f.get("name"), f.get("filename"), f.get("line")) for f in t.get("frames") or []],
            "note": t.get("thread_name"),
        })
    return threads


PARSERS = {"pymortem": parse_pymortem, "pystack": parse_pystack, "py-spy": parse_pyspy}


# ---------------------------------------------------------------------------------------------
# comparison with the truth
# ---------------------------------------------------------------------------------------------
def same_function(tool, got, want):
    if got == want:
        return True
    # py-spy prints qualified names (`Condition.wait`) on 3.11+ where the truth has co_name.
    return tool == "py-spy" and isinstance(got, str) and got.endswith("." + want)


def compare_stack(tool, truth_stack, frames):
    """Index alignment, innermost first. Returns (positions that differ, per-field counts,
    first difference)."""
    diffs, fields, first = 0, collections.Counter(), None
    for i in range(max(len(truth_stack), len(frames))):
        w = truth_stack[i] if i < len(truth_stack) else None
        g = frames[i] if i < len(frames) else None
        if w is None:
            kinds = ["extra"]
        elif g is None:
            kinds = ["missing"]
        else:
            kinds = []
            if not same_function(tool, g[0], w["function"]):
                kinds.append("function")
            if g[1] != w["file"]:
                kinds.append("file")
            if g[2] != w["line"]:
                kinds.append("line")
        if kinds:
            diffs += 1
            fields.update(kinds)
            if first is None:
                first = {"index": i, "kinds": kinds,
                         "truth": None if w is None else [w["function"], w["file"], w["line"]],
                         "got": None if g is None else list(g)}
    return diffs, fields, first


def gcore_unreadable(entry):
    """gdb's `Memory read failed for corefile section` warnings: memory the gcore lacks."""
    if entry["kind"] != "gcore" or not entry.get("stderr"):
        return 0
    try:
        text = open(entry["stderr"], errors="replace").read()
    except OSError:
        return 0
    # every gcore has one for the vsyscall page (0xffffffffff600000), which holds nothing of Python
    return sum(1 for m in re.finditer(r"Memory read failed for corefile section, \d+ bytes at (0x[0-9a-f]+)", text)
               if int(m.group(1), 16) != 0xffffffffff600000)


def stderr_summary(err):
    """The first non-empty stderr line, plus the first `Caused by:` line (anyhow's layout)."""
    lines = [x.strip() for x in err.splitlines() if x.strip()]
    if not lines:
        return ""
    out = lines[0]
    for i, x in enumerate(lines[:-1]):
        if x == "Caused by:":
            out += " / caused by: " + re.sub(r"^\d+:\s*", "", lines[i + 1])
            break
    return out[:240]


def check_core(entry, timeout, rawdir):
    truth = json.load(open(entry["truth"]))
    res = {"interp": entry["interp"], "scenario": entry["scenario"], "kind": entry["kind"],
           "core": entry["core"], "size": entry.get("size"), "python_version": truth.get("python_version"),
           "truth_threads": len(truth["threads"]), "truth_frames": sum(len(t["stack"]) for t in truth["threads"]),
           "gcore_unreadable_sections": gcore_unreadable(entry), "tools": {}}
    tag = "%s.%s.%s" % (entry["interp"], entry["scenario"], entry["kind"])
    for tool, argv in commands(entry).items():
        rc, out, err, secs, timed_out = run(argv, timeout)
        base = os.path.join(rawdir, "%s.%s" % (tag, tool))
        with open(base + ".stdout", "w") as f:
            f.write(out)
        with open(base + ".stderr", "w") as f:
            f.write(err)
        r = {"argv": argv, "rc": rc, "seconds": round(secs, 3), "timed_out": timed_out, "error": None,
             "stderr_summary": stderr_summary(err)}
        if timed_out:
            r["error"] = "timeout after %ds" % timeout
        elif rc is not None and rc < 0:
            r["error"] = "killed by signal %d" % -rc
        elif rc != 0:
            r["error"] = "exit %d" % rc
        try:
            threads = PARSERS[tool](out) if out.strip() else []
            if not out.strip() and r["error"] is None:
                r["error"] = "no output"
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            threads = []
            r["error"] = (r["error"] + "; " if r["error"] else "") + "unparsable output (%s)" % e
        # match truth threads: by LWP, else by pthread id
        used, per = set(), []
        for t in truth["threads"]:
            hit = None
            for key_t, key_o in (("native_id", "lwp"), ("ident", "pthread")):
                for j, o in enumerate(threads):
                    if j not in used and t.get(key_t) is not None and o[key_o] == t[key_t]:
                        hit = j
                        break
                if hit is not None:
                    break
            th = {"native_id": t.get("native_id"), "ident": t.get("ident"), "name": t.get("name"),
                  "truth_frames": len(t["stack"])}
            if hit is None:
                th.update(status="missing", frame_diffs=len(t["stack"]), fields={}, first=None)
            else:
                used.add(hit)
                o = threads[hit]
                d, fields, first = compare_stack(tool, t["stack"], o["frames"])
                # frames normalised for the cross-tool check (py-spy's Class.func -> func)
                th["_frames"] = [[(f[0] or "").rsplit(".", 1)[-1] if tool == "py-spy" else f[0], f[1], f[2]]
                                 for f in o["frames"]]
                th.update(status="exact" if d == 0 else ("empty" if not o["frames"] else "mismatch"),
                          frame_diffs=d, fields=dict(fields), first=first, got_frames=len(o["frames"]),
                          note=o.get("note"))
            per.append(th)
        extra = [o for j, o in enumerate(threads) if j not in used]
        r.update(threads=per,
                 reported_threads=len(threads),
                 extra_threads=len(extra),
                 extra_threads_with_frames=[{"lwp": o["lwp"], "pthread": o["pthread"], "frames": len(o["frames"]),
                                             "innermost": list(o["frames"][0])} for o in extra if o["frames"]],
                 missing=sum(1 for x in per if x["status"] == "missing"),
                 exact=sum(1 for x in per if x["status"] == "exact"),
                 mismatched_threads=sum(1 for x in per if x["status"] in ("mismatch", "empty")),
                 frame_diffs=sum(x["frame_diffs"] for x in per if x["status"] != "missing"))
        res["tools"][tool] = r
    return res


def select(manifest, limit, interps, scenarios, kinds):
    es = [e for e in manifest
          if (not interps or e["interp"] in interps) and (not scenarios or e["scenario"] in scenarios)
          and (not kinds or e["kind"] in kinds)]
    if limit and limit < len(es):
        # round-robin over interpreters, so a small --limit still covers many of them
        import random
        by = collections.OrderedDict()
        for e in es:
            by.setdefault(e["interp"], []).append(e)
        for k, lst in enumerate(by.values()):  # a fixed shuffle: scenarios and kinds vary too
            random.Random(k).shuffle(lst)
        order, i = [], 0
        while len(order) < limit:
            for lst in by.values():
                if i < len(lst) and len(order) < limit:
                    order.append(lst[i])
            i += 1
        es = order
    return es


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------
def table(rows, header, right=None):
    w = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header, ["-" * x for x in w]] + rows:
        lines.append("  ".join(str(c).ljust(w[i]) if i < (right or 1) else str(c).rjust(w[i])
                               for i, c in enumerate(r)).rstrip())
    return "\n".join(lines)


def INTERP_ORDER(results):
    seen = []
    for r in results:
        if r["interp"] not in seen:
            seen.append(r["interp"])
    return seen


def row_key(res):
    # gcores whose thread stacks gdb could not read get their own row
    return res["interp"] + (" gcore*" if res["gcore_unreadable_sections"] else "")


def aggregate(results):
    agg = collections.OrderedDict()
    for res in results:
        for tool in TOOLS:
            r = res["tools"][tool]
            a = agg.setdefault((row_key(res), tool), collections.Counter())
            a["cores"] += 1
            a["errored"] += r["error"] is not None
            a["threads"] += res["truth_threads"]
            a["frames"] += res["truth_frames"]
            a["missing"] += r["missing"]
            a["mismatched"] += r["mismatched_threads"]
            a["frame_diffs"] += r["frame_diffs"]
            a["exact"] += r["exact"]
            a["extra"] += len(r["extra_threads_with_frames"])
            for th in r["threads"]:
                for k, v in th["fields"].items():
                    a["f_" + k] += v
    return agg


def fields_str(a):
    return ",".join("%s %d" % (k, a["f_" + k]) for k in ("function", "file", "line", "missing", "extra")
                    if a["f_" + k]) or "-"


def report_correctness(results, cap):
    agg = aggregate(results)
    keys = []
    for res in results:
        if row_key(res) not in keys:
            keys.append(row_key(res))
    hdr = ["interpreter", "tool", "cores", "errored", "threads", "missing", "mismatched", "exact",
           "frame diffs", "of which", "extra thr"]
    rows = []
    for k in keys:
        for tool in TOOLS:
            a = agg[(k, tool)]
            rows.append([k, tool, a["cores"], a["errored"], a["threads"], a["missing"], a["mismatched"],
                         "%d/%d" % (a["exact"], a["threads"]), "%d/%d" % (a["frame_diffs"], a["frames"]),
                         fields_str(a), a["extra"]])
    tot = {}
    for tool in TOOLS:
        t = collections.Counter()
        for k in keys:
            t.update(agg[(k, tool)])
        tot[tool] = t
        rows.append(["TOTAL", tool, t["cores"], t["errored"], t["threads"], t["missing"], t["mismatched"],
                     "%d/%d" % (t["exact"], t["threads"]), "%d/%d" % (t["frame_diffs"], t["frames"]),
                     fields_str(t), t["extra"]])
    print()
    print("== correctness against the truth files (%d cores)" % len(results))
    print(table(rows, hdr, right=2))
    print("(threads = truth threads; missing = not reported; mismatched = reported with a stack that "
          "differs;\n exact = whole stack equal (function, file, line); frame diffs = stack positions "
          "that differ,\n innermost first, of all truth frames; extra thr = reported threads with "
          "frames that the truth lacks;\n rows 'gcore*': gcores where gdb logged 'Memory read failed for corefile section' "
          "(not the vsyscall page):\n their thread stacks are partly absent from the core, so no tool can "
          "show all of the truth)")

    print()
    print("== errors, grouped by message (cores)")
    errors = {}
    for tool in TOOLS:
        groups = collections.OrderedDict()
        for res in results:
            r = res["tools"][tool]
            if r["error"]:
                msg = r["error"] + (" | " + r["stderr_summary"] if r["stderr_summary"] else "")
                groups.setdefault(msg, []).append("%s %s.%s" % (res["interp"], res["scenario"], res["kind"]))
        errors[tool] = {m: v for m, v in groups.items()}
        n = sum(len(v) for v in groups.values())
        print("-- %s: %d errored cores" % (tool, n))
        for msg, where in groups.items():
            order = INTERP_ORDER(results)
            interps = sorted({w.split()[0] for w in where}, key=order.index)
            kinds = collections.Counter(w.rsplit(".", 1)[1] for w in where)
            print("   %3d x %s" % (len(where), msg))
            print("         kinds %s; interpreters %s; e.g. %s" % (dict(kinds), ", ".join(interps), where[0]))

    print()
    print("== stack disagreements with the truth (first %d per tool; errored cores are above)" % cap)
    listing = {}
    for tool in TOOLS:
        items = []
        for res in results:
            r = res["tools"][tool]
            where = "%s %s.%s" % (res["interp"], res["scenario"], res["kind"])
            unread = " [gcore*]" if res["gcore_unreadable_sections"] else ""
            for th in r["threads"]:
                if th["status"] == "exact" or (th["status"] == "missing" and r["error"]):
                    continue
                if th["status"] == "missing":
                    items.append("%s%s: thread lwp %s (%s) missing" % (where, unread, th["native_id"], th["name"]))
                    continue
                f = th["first"]
                note = ""
                if tool == "pymortem" and th.get("note"):
                    note = " | pymortem says: " + th["note"]
                items.append("%s%s: thread lwp %s (%s): %d of %d truth frames differ, got %d; first at #%d "
                             "(innermost = #0) [%s]: truth %s, got %s%s"
                             % (where, unread, th["native_id"], th["name"], th["frame_diffs"], th["truth_frames"],
                                th.get("got_frames", 0), f["index"], ",".join(f["kinds"]), fmt_frame(f["truth"]),
                                fmt_frame(f["got"]), note))
            for x in r["extra_threads_with_frames"]:
                items.append("%s%s: extra thread lwp %s pthread %s with %d frames (innermost %s)"
                             % (where, unread, x["lwp"], x["pthread"], x["frames"], fmt_frame(x["innermost"])))
        listing[tool] = items
        print("-- %s: %d disagreement lines" % (tool, len(items)))
        for it in items[:cap]:
            print("   " + it)
        if len(items) > cap:
            print("   ... %d more (all in summary.json)" % (len(items) - cap))

    # the tools against each other, truth aside (e.g. on gcore* cores, where the truth is out of reach)
    print()
    print("== pymortem against each peer (threads both reported, stacks compared frame by frame)")
    agreement = {}
    for peer in ("pystack", "py-spy"):
        same = both = 0
        differ = []
        for res in results:
            a, b = res["tools"]["pymortem"], res["tools"][peer]
            fa = {(t["native_id"], t["ident"]): t for t in a["threads"] if t["status"] != "missing"}
            for t in b["threads"]:
                k = (t["native_id"], t["ident"])
                if t["status"] == "missing" or k not in fa:
                    continue
                both += 1
                if fa[k].get("_frames") == t.get("_frames"):
                    same += 1
                else:
                    differ.append("%s %s.%s lwp %s" % (res["interp"], res["scenario"], res["kind"], k[0]))
        agreement[peer] = {"threads_both": both, "identical": same, "differ": differ}
        print("   pymortem vs %-8s identical stacks in %d of %d threads%s"
              % (peer, same, both, ("; differ: " + ", ".join(differ[:5]) + (" ..." if len(differ) > 5 else ""))
                 if differ else ""))
    return agg, tot, listing, errors, agreement


def fmt_frame(f):
    if f is None:
        return "(none)"
    return "%s %s:%s" % (f[0], os.path.basename(f[1]) if f[1] else f[1], f[2])


def timing(core, exe, runs, warmup, rss_runs):
    d = os.path.join(OUT, "timing")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    hf = shutil.which("hyperfine") or (apt_install("hyperfine") and shutil.which("hyperfine"))
    if not os.access("/usr/bin/time", os.X_OK):
        apt_install("time")
    cmds = collections.OrderedDict([
        ("pymortem-threads", [PYMORTEM, "threads", core]),
        ("pymortem-threads-json", [PYMORTEM, "threads", "--json", core]),
        ("py-spy-dump", [PYSPY, "dump", "--core", core]),
        ("pystack-core", [PYSTACK, "core", core, exe]),
        ("pymortem-threads-json-nocache", [PYMORTEM, "threads", "--json", "--no-cache", core]),
    ])
    rows = collections.OrderedDict()
    for name, argv in cmds.items():
        p = subprocess.run(argv, capture_output=True, text=True)
        with open(os.path.join(d, name + ".stdout"), "w") as f:
            f.write(p.stdout)
        with open(os.path.join(d, name + ".stderr"), "w") as f:
            f.write(p.stderr)
        rec = {"tool": name, "argv": argv, "probe_rc": p.returncode,
               "parked_funcs_seen": sum(1 for fn in PARKED if re.search(r"\b%s\b" % fn, p.stdout))}
        if p.returncode != 0:
            rec["status"] = "FAILED (exit %d): %s" % (p.returncode, p.stderr.strip()[-200:])
            log("%s FAILED: %s" % (name, rec["status"]))
            rows[name] = rec
            continue
        log("timing " + name)
        rows[name] = peers.measure(name, argv, rec, d, hf, runs, warmup, rss_runs)
    base = rows["pymortem-threads"].get("median_ms")
    base_json = rows["pymortem-threads-json"].get("median_ms")
    out = peers.timing_rows(rows, base, "ratio_vs_pymortem_threads", "%.2fx", PARKED)
    size = os.path.getsize(core)
    print()
    print("== timing: %s (%d bytes, %.1f MiB apparent, %d KiB on disk), exe %s"
          % (core, size, size / 1048576, os.stat(core).st_blocks // 2, exe))
    print("   %s, -N --warmup %d --runs %d, warm page cache, load %s"
          % (subprocess.run([hf, "--version"], capture_output=True, text=True).stdout.strip() if hf
             else "perf_counter loop", warmup, runs, open("/proc/loadavg").read().split()[:3]))
    print(table(out, ["tool", "median ms", "mean ± stddev ms", "min ms", "max RSS MiB", "ratio", "runs",
                      "parked funcs"], right=1))
    print("(ratio = median / median of `pymortem threads`; RSS = median of %d /usr/bin/time peaks;\n"
          " 'parked funcs' = how many of the 7 parked functions' names the output shows;\n"
          " the -nocache row reads the layout from DWARF every run, the others use pymortem's layout cache)"
          % rss_runs)
    ratios = {}

    def med(n):
        return rows[n].get("median_ms") if rows[n].get("status") == "ok" else None

    for peer in ("pystack-core", "py-spy-dump"):
        for ours in ("pymortem-threads", "pymortem-threads-json", "pymortem-threads-json-nocache"):
            if med(peer) and med(ours):
                ratios["%s/%s" % (peer, ours)] = med(peer) / med(ours)
    goals = {}
    if med("pymortem-threads") and med("pystack-core"):
        goals["pymortem >= 3x faster than pystack"] = med("pystack-core") / med("pymortem-threads") >= 3
    if med("pymortem-threads") and med("py-spy-dump"):
        goals["pymortem faster than py-spy"] = med("py-spy-dump") / med("pymortem-threads") > 1
    print()
    for k, v in ratios.items():
        print("   %-48s %6.2fx" % (k, v))
    for k, v in goals.items():
        print("   goal: %-42s %s" % (k, "MET" if v else "NOT MET"))
    return {"core": core, "core_bytes": size, "core_disk_bytes": os.stat(core).st_blocks * 512, "exe": exe,
            "runs": runs, "warmup": warmup, "rows": list(rows.values()), "ratios": ratios, "goals": goals,
            "pymortem_ok": rows["pymortem-threads"].get("status") == "ok"
            and rows["pymortem-threads-json"].get("status") == "ok", "base_json_ms": base_json}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", "--cores", dest="limit", type=int, default=0,
                    help="check only N manifest cores, picked round-robin over the interpreters (default: all)")
    ap.add_argument("--runs", type=int, default=20, help="hyperfine runs per tool (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="hyperfine warmup runs (default 3)")
    ap.add_argument("--rss-runs", type=int, default=5, help="/usr/bin/time runs per tool (default 5)")
    ap.add_argument("--timeout", type=int, default=60, help="per-call timeout in seconds (default 60)")
    ap.add_argument("--jobs", type=int, default=2, help="cores checked in parallel (default 2)")
    ap.add_argument("--interp", action="append", default=[], help="only this interpreter (repeatable)")
    ap.add_argument("--scenario", action="append", default=[], help="only this scenario (repeatable)")
    ap.add_argument("--kind", action="append", default=[], choices=["kernel", "gcore"])
    ap.add_argument("--show", type=int, default=30, help="disagreement lines listed per tool (default 30)")
    ap.add_argument("--manifest", default=os.environ.get("PYMORTEM_CORES") and
                    os.path.join(os.environ["PYMORTEM_CORES"], "manifest.json")
                    or os.path.join(ROOT, "sample-cores", "generated", "manifest.json"))
    ap.add_argument("--no-build", action="store_true", help="skip cargo build (the binary must exist)")
    ap.add_argument("--no-correctness", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()

    t_start = time.time()
    os.makedirs(OUT, exist_ok=True)
    pm_version, pm_commit, _, _ = BENCH.build(args.no_build, OUT)
    ps_version, py_version = BENCH.ensure_venv()
    print("pymortem threads vs peers — %s, %d cores, %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                           os.cpu_count(), os.uname().release))
    print("  pymortem: %s (commit %s, release build)" % (pm_version, pm_commit))
    print("  peers:    %s; %s" % (ps_version, py_version))
    print("  load:     %s (1/5/15 min) at start" % " ".join(open("/proc/loadavg").read().split()[:3]))
    summary = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv,
               "pymortem": {"version": pm_version, "commit": pm_commit}, "pystack": ps_version,
               "py_spy": py_version, "comparison": {
                   "thread_matching": "truth native_id == tool LWP, else truth ident == tool pthread id",
                   "frames": "innermost first, by index; function, file and line must be equal; py-spy's "
                             "qualified names (Class.func) count as equal to co_name func",
                   "pystack": "text output parsed; `Traceback for thread N` is the LWP",
                   "py-spy": "--json; thread_id = pthread id, os_thread_id = LWP"}}
    status = 0

    if not args.no_correctness:
        if not os.path.isfile(args.manifest):
            die("no manifest at %s (run sample-cores/generate.py)" % args.manifest)
        manifest = json.load(open(args.manifest))
        entries = select(manifest, args.limit, set(args.interp), set(args.scenario), set(args.kind))
        rawdir = os.path.join(OUT, "raw")
        shutil.rmtree(rawdir, ignore_errors=True)
        os.makedirs(rawdir)
        log("checking %d cores with %d jobs (timeout %ds per call)" % (len(entries), args.jobs, args.timeout))
        t0 = time.time()
        results = [None] * len(entries)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            futs = {ex.submit(check_core, e, args.timeout, rawdir): i for i, e in enumerate(entries)}
            done = 0
            for fut in concurrent.futures.as_completed(futs):
                results[futs[fut]] = fut.result()
                done += 1
                if done % 24 == 0 or done == len(entries):
                    log("%d/%d cores checked (%.0f s)" % (done, len(entries), time.time() - t0))
        agg, tot, listing, errors, agreement = report_correctness(results, args.show)
        secs = {tool: round(sum(r["tools"][tool]["seconds"] for r in results), 2) for tool in TOOLS}
        print("   wall time per tool over all checked cores (s, sum of calls): %s" % secs)
        summary["correctness"] = {
            "cores": len(results), "manifest": args.manifest, "limit": args.limit, "timeout_s": args.timeout,
            "seconds_per_tool": secs,
            "table": [dict(interp=k[0], tool=k[1], **v) for k, v in agg.items()],
            "totals": {tool: dict(t) for tool, t in tot.items()},
            "errors": errors, "disagreements": listing, "pymortem_vs_peers": agreement,
            "per_core": results}
        for res in results:  # the normalised copies were only for the cross-tool check
            for r in res["tools"].values():
                for th in r["threads"]:
                    th.pop("_frames", None)
        pm_err = tot["pymortem"]["errored"]
        if results and pm_err == len(results):
            log("pymortem failed on every core")
            status = 1

    if not args.no_timing:
        core, exe, cver = timing_core()
        summary["timing"] = timing(core, exe, args.runs, args.warmup, args.rss_runs)
        summary["timing"]["python_version"] = cver
        if not summary["timing"]["pymortem_ok"]:
            status = 1

    summary["elapsed_s"] = round(time.time() - t_start, 1)
    path = os.path.join(OUT, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    print()
    print("summary: %s (raw outputs in %s/raw and %s/timing)  [%.0f s]" % (path, OUT, OUT, time.time() - t_start))
    return status


if __name__ == "__main__":
    sys.exit(main())
