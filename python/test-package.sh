#!/usr/bin/env bash
# The Python package's tests, run by the README's test command after the
# Rust tests (whose dev builds of the binary and the examples the pytest
# suite compares with):
#
#   1. a fresh virtual environment of CPython 3.13 (pyenv): `pip install .`
#      builds the abi3 wheel with maturin and installs it; `pymortem
#      --version` from the venv's bin
#   2. the same wheel, built once, installed (with its test extra) into a fresh 3.9 venv
#   3. pytest under both, with PYMORTEM_REQUIRE_MATRIX=1 (a skip fails) and
#      the wheel for the Debian 3.13/3.14/3.15 import test
#
# Everything temporary (venvs, wheel, pip's and pytest's temp files) lives
# in one folder that is removed at exit. Env: PYMORTEM_PYTHONS (default
# "3.13.0 3.9.18", pyenv versions; the first builds the wheel).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
step() { echo "== [python $(($(date +%s) - start))s] $*" >&2; }

read -r -a versions <<< "${PYMORTEM_PYTHONS:-3.13.0 3.9.18}"
work="$(mktemp -d "${TMPDIR:-/tmp}/pymortem-python.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# pip, maturin and the tests all write temp files (pip leaves an extracted
# cacert.pem behind): all of them under $work.
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"

venv() { # venv VERSION: a fresh venv of pyenv's VERSION in $work/venv-VERSION
    local python="$HOME/.pyenv/versions/$1/bin/python3"
    [ -x "$python" ] || { echo "test-package: no $python (sample-cores/setup-interpreters.sh installs it)" >&2; exit 1; }
    "$python" -m venv "$work/venv-$1"
    "$work/venv-$1/bin/python" -m pip install -q --upgrade pip
}

first="${versions[0]}"
step "pip install '.[test]' in a fresh $first venv (maturin builds the wheel)"
venv "$first"
"$work/venv-$first/bin/pip" install -q '.[test]'
"$work/venv-$first/bin/pymortem" --version

step "the wheel, built once, for the other venvs and the Debian interpreters"
"$work/venv-$first/bin/pip" wheel -q --no-deps -w "$work/dist" .
wheel="$(echo "$work"/dist/pymortem-*.whl)"
[ -f "$wheel" ] || { echo "test-package: pip wheel made no wheel in $work/dist" >&2; exit 1; }
echo "$(basename "$wheel") ($(du -h "$wheel" | cut -f1))" >&2
for version in "${versions[@]:1}"; do
    venv "$version"
    # The test extra (pytest, distributed): the Dask tests run here too.
    "$work/venv-$version/bin/pip" install -q "$wheel[test]"
done

status=0
for version in "${versions[@]}"; do
    step "pytest python/tests under $version"
    PYMORTEM_REQUIRE_MATRIX=1 PYMORTEM_WHEEL="$wheel" \
        PYMORTEM_BIN="${PYMORTEM_BIN:-$PWD/target/debug/pymortem}" \
        PYMORTEM_EXAMPLES="${PYMORTEM_EXAMPLES:-$PWD/target/debug/examples}" \
        "$work/venv-$version/bin/python" -m pytest -q -p no:cacheprovider python/tests || status=$?
done
step "done (pytest exit $status)"
exit "$status"
