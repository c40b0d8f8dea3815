#!/usr/bin/env python3
"""`pymortem.dask.triage` on a LocalCluster against the CLI's `triage --db`,
on the same distinct cores of the generated matrix, each into a fresh
SQLite database: wall time, and whether the groups agree.

    .venv/bin/python benches/dask-triage.py [--cores 200] [--workers 2] [--bin target/release/pymortem]

Run it with a Python that has the package and its `dask` extra
(`pip install '.[dask]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--bin", default=str(ROOT / "target/release/pymortem"))
    args = parser.parse_args()

    import distributed
    import pymortem.dask

    manifest = json.loads((Path(os.environ.get("PYMORTEM_CORES", ROOT / "sample-cores/generated")) / "manifest.json").read_text())
    entries = manifest["cores"] if isinstance(manifest, dict) else manifest
    cores = sorted(e["core"] for e in entries if e["interp"].startswith("pyenv-") and e.get("ok") is not False)
    cores = cores[: args.cores]
    with tempfile.TemporaryDirectory(prefix="pymortem-dask-") as work:
        subprocess.run([args.bin, "triage", "--json", *cores], check=True, capture_output=True)  # warm caches
        start = time.perf_counter()
        cli_db = os.path.join(work, "cli.sqlite")
        subprocess.run([args.bin, "triage", "--db", cli_db, *cores], check=True, capture_output=True)
        cli_time = time.perf_counter() - start
        out = subprocess.run([args.bin, "groups", "--db", cli_db, "--json"], check=True, capture_output=True)
        cli_groups = json.loads(out.stdout)["groups"]

        start = time.perf_counter()
        with distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, distributed.Client(cluster) as client:
            started = time.perf_counter() - start
            run = time.perf_counter()
            groups = pymortem.dask.triage(cores, client, db=os.path.join(work, "dask.sqlite"), batch=args.batch)
            dask_time = time.perf_counter() - run
        same = {g["signature"]: g["count"] for g in groups} == {g["signature"]: g["count"] for g in cli_groups}
        print(f"{len(cores)} cores, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}:")
        print(f"  CLI triage --db            {cli_time:6.2f} s  ({len(cli_groups)} groups)")
        print(f"  Dask, {args.workers} worker processes  {dask_time:6.2f} s  (+{started:.2f} s cluster start; "
              f"{len(groups)} groups, {'the same' if same else 'DIFFERENT'})")


if __name__ == "__main__":
    main()
