"""The abi3 wheel imports and works on the newest interpreters too: Debian's
python3.13, 3.14 and 3.15 (the chroots of the sample-core matrix; root
runs `chroot`). The wheel is `$PYMORTEM_WHEEL`, which the README's test
command builds; it is unpacked into the chroot's /tmp and removed after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

import pymortem
from conftest import ROOT, entries, need, need_matrix

SAMPLE = ROOT / "sample-cores" / "samples" / "pyenv-3.11.7-threads.pymortem"

# Runs in the chroot: the sample bundle's Python stacks, as JSON.
SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import pymortem
py = pymortem.open(sys.argv[2]).python()
print(json.dumps({
    "module": pymortem._native.__file__,
    "version": py.version,
    "stacks": {s.lwp: [[f.function, f.file, f.line] for f in s.python_frames] for s in py.stacks()},
}))
"""


def stacks_here():
    py = pymortem.open(SAMPLE).python()
    return py.version, {str(s.lwp): [[f.function, f.file, f.line] for f in s.python_frames] for s in py.stacks()}


def debian_root(version: str):
    """The x86-64 chroot holding Debian's python`version`, from the matrix."""
    found = [e for e in entries(arch="x86_64") if e and e["interp"] == f"debian-{version}"]
    entry = need_matrix(found[0] if found else None)
    return Path(entry["sysroot"])


@pytest.mark.parametrize("version", ["3.13", "3.14", "3.15"])
def test_the_wheel_imports_and_reads_a_bundle_on_debian_python(version):
    wheel = os.environ.get("PYMORTEM_WHEEL")
    need(bool(wheel) and Path(wheel).is_file(), "no wheel to try (set PYMORTEM_WHEEL)")
    need(os.geteuid() == 0 and shutil.which("chroot") is not None, "chroot needs root")
    root = debian_root(version)
    (root / "tmp").mkdir(exist_ok=True)
    inside = Path(tempfile.mkdtemp(prefix="pymortem-wheel-", dir=root / "tmp"))
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(inside / "site")
        shutil.copy(SAMPLE, inside / SAMPLE.name)
        guest = Path("/tmp") / inside.name
        run = subprocess.run(
            ["chroot", str(root), f"/usr/bin/python{version}", "-c", SCRIPT, str(guest / "site"), str(guest / SAMPLE.name)],
            capture_output=True,
            text=True,
            timeout=300,
            # Reading the bundle unpacks its core into the temp dir: one in the chroot.
            env=dict(os.environ, TMPDIR=str(guest)),
        )
    finally:
        shutil.rmtree(inside)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    # The wheel's module, not one the chroot might have.
    assert got["module"].startswith(str(guest / "site"))
    version_here, stacks = stacks_here()
    assert (got["version"], got["stacks"]) == (version_here, stacks)
