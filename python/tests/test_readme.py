"""The README's Python section runs as written (from the checkout's root,
where its sample path points)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

from conftest import ROOT


def readme_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python package\n", 1)[1].split("\n## ", 1)[0]
    # The section's script comes before its subsections (the Dask recipe
    # names a cluster that is not here; tests/test_dask.py runs it on one).
    section = section.split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "one Python block in the README's Python section before its subsections"
    return blocks[0]


def test_the_readme_script_runs_and_finds_the_samples_victim(monkeypatch):
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(readme_script(), "README.md", "exec"), scope)
    printed = out.getvalue()
    truth = json.loads((ROOT / "sample-cores" / "samples" / "pyenv-2.7.18-double_free.truth.json").read_text())
    # Every thread's innermost Python frame, as the dying process recorded it.
    for thread in truth["threads"]:
        top = thread["stack"][0]
        assert f"{thread['native_id']} {top['function']} {top['file']} {top['line']}" in printed
    # The victim the scenario double-freed, with its type.
    assert hex(truth["objects"]["victim_tuple"]) in printed
    assert "tuple 0 " in printed  # the victim: its type and its refcount of 0
    assert scope["largest"].kind in ("list", "tuple", "dict")
    assert os.getcwd() == str(ROOT)
