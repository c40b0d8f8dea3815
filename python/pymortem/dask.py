"""Triage on a Dask cluster: the cores are read where they live, on the
workers, and recorded into one crash database.

On one machine::

    from distributed import Client, LocalCluster
    import pymortem.dask

    with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as client:
        groups = pymortem.dask.triage(["/srv/cores"], client, db="crashes.sqlite")

On many machines, start a scheduler somewhere (``dask-scheduler``), a
worker on every host that has cores (``dask-worker tcp://scheduler:8786
--nthreads 1``, with the ``pymortem`` package installed), and record into
a PostgreSQL database every worker reaches::

    client = Client("tcp://scheduler:8786")
    for host in ["web1", "web2"]:
        pymortem.dask.triage(["/var/lib/systemd/coredump"], client,
                             db="postgresql://pymortem@crashdb/crashes",
                             workers=[host], host=host)

Each task opens its cores on its worker (``workers=`` pins the tasks to
the hosts whose disks hold them); every worker writes to the database at
once (a SQLite file is for one machine, PostgreSQL for several). The call
returns the database's groups, as ``pymortem groups --json`` lists them.
Without ``db``, the results are grouped in the client instead.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from . import _native

_Path = Union[str, "os.PathLike[str]"]

__all__ = ["triage"]


def _collect(paths: List[str]) -> List[str]:
    """The cores under `paths`, listed on the worker that runs it."""
    return [str(p) for p in _native.collect_cores(paths)["cores"]]


def _record(cores: List[str], db: Optional[str], host: Optional[str], options: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Read `cores` on this worker: recorded into `db`, or just triaged."""
    if db is not None:
        return list(_native.record(db, cores, host=host, jobs=1, **options)["results"])
    results = []
    for result in _native.triage(cores, jobs=1, **options):
        results.append({k: getattr(result, k) for k in ("path", "signature", "signature_text", "error", "skipped")})
    return results


def _groups_of(results: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Group results by signature, largest first (ties by signature)."""
    groups: Dict[str, Dict[str, Any]] = {}
    for r in results:
        signature = r.get("signature")
        if not signature:
            continue
        group = groups.setdefault(
            signature,
            {"signature": signature, "signature_text": r.get("signature_text"), "count": 0, "example": r.get("path")},
        )
        group["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["signature"]))


def triage(
    paths: Sequence[_Path],
    client: Any,
    db: Optional[str] = None,
    *,
    batch: int = 8,
    host: Optional[str] = None,
    workers: Optional[Sequence[str]] = None,
    **options: Any,
) -> List[Dict[str, Any]]:
    """Triage the cores under `paths` on the Dask cluster of `client`.

    `paths`: cores and folders, as the workers see them (folders are listed
    on a worker). `db`: a crash database, a SQLite file or a
    ``postgresql://`` URL every worker can reach; cores recorded before are
    not read again. `batch`: cores per task. `host`: the machine name
    recorded with each crash. `workers`: the Dask workers to run on (the
    hosts whose disks hold the cores). Other keyword arguments are
    :func:`pymortem.open`'s (``sysroot``, ``debug_dirs``, …) and
    ``no_checks``.

    Returns the groups, largest first: with `db`, the whole database's, as
    ``pymortem groups --json`` lists them; without, those of these cores
    (``signature``, ``signature_text``, ``count``, ``example``).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    given = [os.fspath(p) for p in paths]
    cores: List[str] = client.submit(_collect, given, workers=workers, pure=False).result()
    chunks = [cores[i : i + batch] for i in range(0, len(cores), batch)]
    futures = client.map(_record, chunks, db=db, host=host, options=options, workers=workers, pure=False)
    results: List[Dict[str, Any]] = []
    for chunk in client.gather(futures):
        results.extend(chunk)
    if db is not None:
        return list(_native.groups(db)["groups"])
    return _groups_of(results)
