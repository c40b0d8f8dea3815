#!/usr/bin/env python3
"""Crash database ingest rate: `pymortem triage` against `triage --db` on a
SQLite file and on a PostgreSQL server, over the same distinct cores of the
generated matrix (checks on), then an incremental re-run over them plus 10
new cores. Each configuration runs --runs times, each time on a database of
its own that holds one other crash; the median is reported, and the median
and mean (± two standard errors) of each run's ratio to the plain triage of
the same run. Also times `report` on the result and the page's load in
headless Chromium against an empty page.

    python3 benches/crashdb-ingest.py [--cores 200] [--runs 9] [--bin target/release/pymortem]

Needs the generated matrix (sample-cores/generate.py), PostgreSQL's server
(/usr/lib/postgresql/*/bin) and, for the load time, chromium and hyperfine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cores(count: int) -> list[str]:
    manifest = json.loads((Path(os.environ.get("PYMORTEM_CORES", ROOT / "sample-cores/generated")) / "manifest.json").read_text())
    entries = manifest["cores"] if isinstance(manifest, dict) else manifest
    # x86-64 cores (the Debian ones are read without their sysroot here:
    # the same work for every configuration).
    picked = [e["core"] for e in entries if not e["interp"].endswith("-arm64") and e.get("ok") is not False]
    if len(picked) < count + 11:
        raise SystemExit(f"only {len(picked)} x86-64 cores in the matrix")
    return sorted(picked)[: count + 11]


class Postgres:
    """A private server, as the tests start it."""

    def __init__(self) -> None:
        initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]
        self.bin = Path(initdb).parent
        self.data = Path(tempfile.mkdtemp(prefix="pymortem-pg-", dir="/tmp"))
        self.run_as = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", str(self.data / "db"), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-l", str(self.data / "log"), "-w", "start")
        self.n = 0

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(self.run_as + [str(self.bin / program), *args], check=True, capture_output=True, cwd="/")

    def new_database(self) -> str:
        self.n += 1
        name = f"bench{self.n}"
        subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
             f"CREATE DATABASE {name}"],
            check=True, capture_output=True,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def checkpoint(self) -> None:
        """Flush what creating databases wrote (CREATE DATABASE copies the
        template through the WAL), so that no timed run pays for it."""
        subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", "CHECKPOINT"],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(self.run_as + [str(self.bin / "pg_ctl"), "-D", str(self.data / "db"), "-m", "fast", "stop"],
                       capture_output=True, cwd="/")
        shutil.rmtree(self.data, ignore_errors=True)


# The CPU seconds (user + system) of the last timed run: steadier than wall
# time on a shared machine.
LAST_CPU = [0.0]


def timed(args: list[str]) -> float:
    """Wall seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    LAST_CPU[0] = cpu
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--bin", default=str(ROOT / "target/release/pymortem"))
    args = parser.parse_args()
    binary = args.bin
    paths = cores(args.cores)
    work = Path(tempfile.mkdtemp(prefix="pymortem-ingest-"))
    first, new, primer = work / "first", work / "new", work / "primer"
    first.mkdir()
    new.mkdir()
    primer.mkdir()
    for i, p in enumerate(paths):
        target = first if i < args.cores else new if i < args.cores + 10 else primer
        os.symlink(p, target / f"{i:04d}-{Path(p).name}")
    pg = Postgres()
    try:
        # Warm the page cache and the layout cache: every run reads the same.
        timed([binary, "triage", "--json", str(first), str(new)])
        results: dict[str, list[float]] = {"triage": [], "sqlite": [], "postgresql": [],
                                           "sqlite rerun +10": [], "postgresql rerun +10": []}
        cpu: dict[str, list[float]] = {name: [] for name in results}
        # The server's databases are made before any run is timed (a fleet's
        # exists already; the first run still creates pymortem's tables).
        # Each database is made and given one crash (the primer core) before
        # its timed run: a fleet's database exists, and creating its tables
        # (about 30 ms on the server, 3 ms for SQLite) is a one-time cost,
        # not part of a rate per core.
        server_dbs = [pg.new_database() for _ in range(args.runs)]
        file_dbs = [str(work / f"db{run}.sqlite") for run in range(args.runs)]
        for db in server_dbs + file_dbs:
            timed([binary, "triage", "--db", db, str(primer)])
        pg.checkpoint()
        for run in range(args.runs):
            # The order turns each run, so that no configuration always
            # follows the same one (page cache, CPU frequency, the server).
            kinds = ["triage", "sqlite", "postgresql"]
            for kind in kinds[run % 3:] + kinds[:run % 3]:
                if kind == "triage":
                    results["triage"].append(timed([binary, "triage", "--json", str(first)]))
                    cpu["triage"].append(LAST_CPU[0])
                    continue
                db = file_dbs[run] if kind == "sqlite" else server_dbs[run]
                results[kind].append(timed([binary, "triage", "--db", db, "--json", str(first)]))
                cpu[kind].append(LAST_CPU[0])
                results[f"{kind} rerun +10"].append(
                    timed([binary, "triage", "--db", db, "--json", str(first), str(new)]))
                cpu[f"{kind} rerun +10"].append(LAST_CPU[0])
        print(f"{args.cores} distinct matrix cores (+10 new for the re-run), checks on, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, median of {args.runs}:")
        for name, times in results.items():
            m = statistics.median(times)
            if "rerun" in name:
                first_run = statistics.median(results[name.split()[0]])
                rate = f"{100 * m / first_run:5.1f}% of its first run"
            else:
                rate = f"{args.cores / m:6.1f} cores/s"
            # pymortem's own CPU time (the PostgreSQL server's is not in it).
            print(f"  {name:24s} {m:6.2f} s  {rate}   CPU {statistics.median(cpu[name]):5.2f} s")
        # Each run's recording time over the same run's plain triage: the
        # machine's speed drifts between runs more than recording costs.
        for kind in ("sqlite", "postgresql"):
            ratios = [r / t for r, t in zip(results[kind], results["triage"])]
            spread = 2 * statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else 0.0
            print(f"  {kind} / triage, paired by run: median {statistics.median(ratios):.3f}, "
                  f"mean {statistics.mean(ratios):.3f} ± {spread:.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
        # The report of the last SQLite database, and its load in Chromium.
        db = str(work / "report.sqlite")
        timed([binary, "triage", "--db", db, str(first)])
        out = work / "report"
        print(f"  report                   {timed([binary, 'report', '--db', db, '-o', str(out)]):6.2f} s "
              f"({(out / 'index.html').stat().st_size // 1024} KiB)")
        chromium = shutil.which("chromium")
        if chromium and shutil.which("hyperfine"):
            empty = work / "empty.html"
            empty.write_text("<!DOCTYPE html><html><body>x</body></html>")
            cmd = (f"{chromium} --headless --no-sandbox --disable-gpu --no-first-run "
                   f"--disable-background-networking --disable-component-update --disable-sync "
                   f"--user-data-dir={work / 'chromium'} --dump-dom file://")
            export = work / "hyperfine.json"
            subprocess.run(["hyperfine", "-N", "-w", "2", "-r", "10", "--export-json", str(export),
                            cmd + str(empty), cmd + str(out / "index.html")], check=True, capture_output=True)
            means = [r["median"] for r in json.loads(export.read_text())["results"]]
            print(f"  chromium load: empty page {means[0]:.2f} s, report {means[1]:.2f} s "
                  f"(the report's own share {means[1] - means[0]:.2f} s)")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
