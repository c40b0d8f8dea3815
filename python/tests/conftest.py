"""The sample-core matrix the tests read: `$PYMORTEM_CORES/manifest.json`
(default /work/main/sample-cores/generated, or sample-cores/generated in
the checkout), written by `python3 sample-cores/generate.py`.

Without it the tests that need it are skipped, unless
PYMORTEM_REQUIRE_MATRIX=1, when they fail."""

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
    local = ROOT / "sample-cores" / "generated"
    if (local / "manifest.json").is_file():
        return local
    return Path("/work/main/sample-cores/generated")


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


def need_matrix(entry: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if entry is None:
        message = (
            f"{cores_dir() / 'manifest.json'} is missing: generate the sample cores "
            "(python3 sample-cores/generate.py) or set PYMORTEM_CORES"
        )
        if matrix_required():
            pytest.fail(message + " (PYMORTEM_REQUIRE_MATRIX=1)")
        pytest.skip(message)
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
