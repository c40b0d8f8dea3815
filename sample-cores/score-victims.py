#!/usr/bin/env python3
"""Score `pymortem check` on the C extension's reference-counting bug cores.

    score-victims.py [--pymortem BIN] [--cores DIR] [--json]

Reads DIR/victims.json (generate.py --victims), runs `check --json` on each
core with the interpreter's files, and compares the findings with the truth
the process wrote before its bug fired:

  named     a victim's address is the `address` of an error or warning finding
  holder    a finding on the victim lists its holder (the truth's list, or
            the extension's static) among its referrers
  non-clean a crash core that died of the bug got a verdict other than clean

Prints a table by phase, bug and victim type (the acceptance figures of the
forensics-for-every-type issue), or the raw per-core results with --json.
"""
import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def check(binary, entry):
    argv = [binary, "check", "--json", entry["core"]]
    if entry.get("sysroot"):
        argv += ["--sysroot", entry["sysroot"]]
    for d in entry.get("debug_dirs") or []:
        argv += ["--debug-dir", d]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    try:
        return json.loads(proc.stdout), proc.returncode
    except ValueError:
        return None, proc.returncode


def score(entry, report):
    truth = json.load(open(entry["truth"]))
    victims = truth["objects"]["victims"]
    findings = [f for f in report.get("findings", []) if f.get("severity") in ("error", "warning")]
    by_address = collections.defaultdict(list)
    for f in findings:
        by_address[f.get("address")].append(f)
    rows = []
    for kind, victim in sorted(victims.items()):
        hits = by_address.get(victim["address"], [])
        holder = victim["holder"]
        holder_named = False
        for f in hits:
            for r in f.get("referrers", []) or []:
                if holder.get("list") is not None and r.get("container") == holder["list"]:
                    holder_named = True
                if holder.get("address") is not None and r.get("at") == holder["address"]:
                    holder_named = True
                # Bug "owners": the owning object, and a referrer of its kind.
                if (holder.get("object") is not None and r.get("container") == holder["object"]
                        and r.get("kind") == holder.get("owner")):
                    holder_named = True
        rows.append({
            "victim": kind,
            "type": victim["type"],
            "named": bool(hits),
            "kinds": sorted({f["kind"] for f in hits}),
            "holder_named": holder_named,
        })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pymortem", default=os.path.join(HERE, "..", "target", "release", "pymortem"))
    ap.add_argument("--cores", default=os.environ.get("PYMORTEM_CORES") or os.path.join(HERE, "generated"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    entries = json.load(open(os.path.join(args.cores, "victims.json")))
    results = []
    for entry in entries:
        if not entry.get("ok"):
            continue
        report, code = check(args.pymortem, entry)
        _, bug, phase = entry["scenario"].split("_")
        result = {"interp": entry["interp"], "scenario": entry["scenario"], "kind": entry["kind"],
                  "bug": bug, "phase": phase, "exit": code, "died_of_bug": entry.get("died_of_bug")}
        if report is None:
            result["error"] = "no JSON report (exit %d)" % code
        else:
            result["status"] = report["verdict"]["status"]
            result["victims"] = score(entry, report)
        results.append(result)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()
        return 0
    print("%-8s %-9s %8s %8s %10s" % ("phase", "bug", "named", "holder", "non-clean"))
    for phase in ("now", "later", "crash"):
        for bug in ("decref", "borrowed", "static", "owners", "all"):
            rs = [r for r in results if r["phase"] == phase and (bug == "all" or r["bug"] == bug)]
            vs = [v for r in rs for v in r.get("victims", [])]
            if not vs:
                continue
            crash = [r for r in rs if r.get("died_of_bug")]
            non_clean = ("%d/%d" % (sum(r.get("status") != "clean" for r in crash), len(crash))) if crash else "-"
            print("%-8s %-9s %7.0f%% %7.0f%% %10s" % (
                phase, bug, 100.0 * sum(v["named"] for v in vs) / len(vs),
                100.0 * sum(v["holder_named"] for v in vs) / len(vs), non_clean))
    print()
    print("named, by victim type (all phases):")
    types = sorted({v["victim"] for r in results for v in r.get("victims", [])})
    for t in types:
        vs = [v for r in results for v in r.get("victims", []) if v["victim"] == t]
        print("  %-9s %3d/%-3d" % (t, sum(v["named"] for v in vs), len(vs)))
    errors = [r for r in results if "error" in r]
    for r in errors:
        print("ERROR %s/%s/%s: %s" % (r["interp"], r["scenario"], r["kind"], r["error"]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
