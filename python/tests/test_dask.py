"""pymortem.dask: triage on a Dask LocalCluster of two worker processes,
recording into a PostgreSQL server, gives the groups a single-machine
`pymortem triage --db` gives for the same cores; each core's Python version
is its truth file's."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import MANIFEST, need, need_matrix, rust_build, truth

SCENARIOS = ("double_free", "threads", "segfault", "gc_already_tracked", "recursion", "busy_heap")
INTERPRETERS = ("pyenv-2.7.18", "pyenv-3.8.18", "pyenv-3.11.7", "pyenv-3.12.1", "pyenv-3.13.0")


def chosen() -> List[Dict[str, Any]]:
    need_matrix(MANIFEST and MANIFEST[0])
    picked = [
        e
        for e in MANIFEST or []
        if e["kind"] == "kernel"
        and not e.get("sysroot")
        and e.get("ok") is not False
        and e["scenario"] in SCENARIOS
        and e["interp"] in INTERPRETERS
    ]
    assert len(picked) >= 12, len(picked)
    return picked


def cli_groups(binary: Path, db: Path, cores: List[str]) -> Dict[str, Any]:
    subprocess.run([str(binary), "triage", "--db", str(db), "--jobs", "2", *cores], check=True, capture_output=True)
    out = subprocess.run([str(binary), "groups", "--db", str(db), "--json"], check=True, capture_output=True)
    return json.loads(out.stdout)


def test_dask_cluster_groups_equal_the_cli(postgres_url, tmp_path):
    distributed = pytest.importorskip("distributed")
    import pymortem.dask

    entries = chosen()
    cores = [e["core"] for e in entries]
    # A second path of one core: one crash, not two.
    link = tmp_path / "core.linked"
    os.link(cores[0], link)
    paths = cores + [str(link)]
    binary = rust_build("pymortem", "PYMORTEM_BIN")

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        groups = pymortem.dask.triage(paths, client, db=postgres_url, batch=3)
        # Again: everything is recorded, nothing is read or counted twice.
        again = pymortem.dask.triage(paths, client, db=postgres_url, batch=3)
        # Without a database: grouped in the client.
        plain = pymortem.dask.triage(cores, client, batch=3)

    cli = cli_groups(binary, tmp_path / "cli.sqlite", paths)
    by_signature = {g["signature"]: g["count"] for g in groups}
    assert by_signature == {g["signature"]: g["count"] for g in cli["groups"]}
    assert sum(by_signature.values()) == len(cores)
    assert again == groups
    assert {g["signature"]: g["count"] for g in plain} == by_signature
    for g, c in zip(groups, cli["groups"]):
        assert g["python_versions"] == c["python_versions"]

    versions = Counter(truth(e)["python_version"] for e in entries)
    recorded = Counter()
    for g in groups:
        # Each group's versions are among the truth's.
        assert set(g["python_versions"]) <= set(versions), g
    for g in cli["groups"]:
        recorded.update({v: 0 for v in g["python_versions"]})
    assert set(recorded) == set(versions)


def test_record_and_groups_from_python(tmp_path):
    """pymortem._native.record / groups on a SQLite file: what the CLI's
    `triage --db` and `groups` do, from Python."""
    import pymortem._native as native

    entries = chosen()[:4]
    db = str(tmp_path / "crashes.sqlite")
    first = native.record(db, [e["core"] for e in entries])
    assert first["database"]["new_crashes"] == len(entries)
    by_path = {r["path"]: r for r in first["results"]}
    for e in entries:
        assert by_path[e["core"]]["python_version"] == truth(e)["python_version"]
    second = native.record(db, [e["core"] for e in entries])
    assert second["database"]["already_recorded"] == len(entries)
    assert second["results"] == []
    listed = native.groups(db)
    assert listed["crashes"] == len(entries)
    assert sum(g["count"] for g in listed["groups"]) == len(entries)
    with pytest.raises(pymortem_error()):
        native.groups(str(tmp_path / "missing.sqlite"))


def pymortem_error():
    import pymortem

    return pymortem.Error
