"""The sample-core matrix the tests read: `$PYMORTEM_CORES/manifest.json`
(default sample-cores/generated in the checkout), written by
`python3 sample-cores/generate.py`, and the Rust builds the tests compare
with (`$PYMORTEM_BIN`, `$PYMORTEM_EXAMPLES`, else the checkout's target/).

Without them the tests that need them are skipped, unless
PYMORTEM_REQUIRE_MATRIX=1 (the README's test command), when they fail."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cores_dir() -> Path:
    env = os.environ.get("PYMORTEM_CORES")
    if env:
        return Path(env)
    return ROOT / "sample-cores" / "generated"


def matrix_required() -> bool:
    return os.environ.get("PYMORTEM_REQUIRE_MATRIX") == "1"


def load_manifest() -> Optional[List[Dict[str, Any]]]:
    path = cores_dir() / "manifest.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data["cores"] if isinstance(data, dict) else data


MANIFEST = load_manifest()


def entries(**match: Any) -> List[Dict[str, Any]]:
    """Manifest entries whose fields equal `match` (for parametrize); one
    placeholder when the manifest is missing, which `need_matrix` turns into
    a skip or, with PYMORTEM_REQUIRE_MATRIX=1, a failure."""
    if MANIFEST is None:
        return [None]  # type: ignore[list-item]
    return [e for e in MANIFEST if all(e.get(k) == v for k, v in match.items())]


def label(entry: Optional[Dict[str, Any]]) -> str:
    if entry is None:
        return "no-manifest"
    return f"{entry['interp']}-{entry['scenario']}-{entry['kind']}"


def need(available: bool, message: str) -> None:
    """Skip the test when something it needs is missing, or fail it under
    PYMORTEM_REQUIRE_MATRIX=1: in CI a skip is no pass."""
    if available:
        return
    if matrix_required():
        pytest.fail(message + " (PYMORTEM_REQUIRE_MATRIX=1)")
    pytest.skip(message)


def rust_build(name: str, env: str) -> Path:
    """A Rust build to compare with: `$env` (a file for the binary, a folder
    for the examples), else the checkout's release, then dev build."""
    given = os.environ.get(env)
    candidates = [Path(given)] if given else [ROOT / "target" / p for p in ("release", "debug")]
    for folder in candidates:
        path = folder if folder.is_file() else folder / name
        if path.is_file():
            return path
    need(False, f"no Rust build of {name} to compare with (cargo build --release --examples, or set {env})")
    raise AssertionError("unreachable")


def need_matrix(entry: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if entry is None:
        message = (
            f"{cores_dir() / 'manifest.json'} is missing: generate the sample cores "
            "(python3 sample-cores/generate.py) or set PYMORTEM_CORES"
        )
        need(False, message)
    return entry


def truth(entry: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(Path(entry["truth"]).read_text())


def open_entry(entry: Dict[str, Any], **extra: Any):
    import pymortem

    return pymortem.open(
        entry["core"],
        sysroot=entry.get("sysroot"),
        debug_dirs=entry.get("debug_dirs") or [],
        no_default_debug_dir=True,
        **extra,
    )


def search_args(entry: Dict[str, Any]) -> List[str]:
    """The command line's arguments for `entry`'s files."""
    args = ["--no-default-debug-dir"]
    if entry.get("sysroot"):
        args += ["--sysroot", entry["sysroot"]]
    for d in entry.get("debug_dirs") or []:
        args += ["--debug-dir", d]
    return args


@pytest.fixture
def postgres_url(tmp_path_factory):
    """A private PostgreSQL server for one test: its own data folder under
    /tmp (the server's user must reach it), its own port on 127.0.0.1,
    trust authentication; stopped and removed after. As root, it runs as
    the `postgres` user (the server refuses root)."""
    import glob
    import shutil
    import socket
    import subprocess
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    need(bool(found), "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
    bin_dir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="pymortem-pg-", dir="/tmp"))
    run_as: List[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, LC_ALL="C.UTF-8")

    def run(*args: str) -> None:
        subprocess.run(run_as + list(args), check=True, cwd="/", env=env, capture_output=True)

    db = data / "db"
    try:
        run(str(bin_dir / "initdb"), "-D", str(db), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        run(str(bin_dir / "pg_ctl"), "-D", str(db), "-o", options, "-l", str(data / "log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            run_as + [str(bin_dir / "pg_ctl"), "-D", str(db), "-m", "immediate", "-w", "stop"],
            cwd="/",
            env=env,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)
