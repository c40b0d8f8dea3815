"""The committed samples (sample-cores/samples: bundles holding a core and
its interpreter's files), which need no generated matrix, and compressed
cores."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

import pymortem
from conftest import ROOT, entries, label, need_matrix, open_entry, truth

SAMPLES = ROOT / "sample-cores" / "samples"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())


def sample_truth(sample):
    return json.loads((SAMPLES / sample["truth"]).read_text())


def python_stacks(py):
    return {s.lwp: [(f.function, f.file, f.line) for f in s.python_frames] for s in py.stacks()}


def truth_stacks(t):
    return {th["native_id"]: [(f["function"], f["file"], f.get("line")) for f in th["stack"]] for th in t["threads"]}


@pytest.mark.parametrize("sample", MANIFEST, ids=lambda s: s["name"])
def test_bundle_stacks_equal_truth(sample):
    t = sample_truth(sample)
    process = pymortem.open(SAMPLES / sample["bundle"])
    py = process.python()
    assert py.version == sample["python_version"]
    stacks = python_stacks(py)
    for lwp, frames in truth_stacks(t).items():
        assert stacks[lwp] == frames


@pytest.mark.parametrize("sample", [s for s in MANIFEST if s["scenario"] == "double_free"], ids=lambda s: s["name"])
def test_bundle_double_free(sample):
    objects = sample_truth(sample)["objects"]
    result = pymortem.open(SAMPLES / sample["bundle"]).python().check()
    assert objects["victim_tuple"] in result.verdict.victims


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="threads", kind="kernel")[-1:], ids=label)
def test_gzip_compressed_core(entry, tmp_path):
    entry = need_matrix(entry)
    packed = tmp_path / "core.gz"
    with open(entry["core"], "rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    process = pymortem.open(
        packed,
        sysroot=entry.get("sysroot"),
        debug_dirs=entry.get("debug_dirs") or [],
        no_default_debug_dir=True,
        temp_dir=tmp_path,
    )
    stacks = python_stacks(process.python())
    for lwp, frames in truth_stacks(truth(entry)).items():
        assert stacks[lwp] == frames
    # A limit below the core's size: what is past it reads as truncated.
    small = pymortem.open(packed, max_core_size=1 << 20, temp_dir=tmp_path)
    assert any("1048576-byte limit" in d["message"] for d in small.diagnostics)
    assert small.info()["core"]["compression"] == "gzip"
    assert small.info()["core"]["truncated"]["actual_size"] == 1 << 20
