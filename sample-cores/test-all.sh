#!/usr/bin/env bash
# The README's test command: everything a fresh clone on a fresh machine of
# the project's kind (Debian, root, Rust installed, the Debian and pyenv
# builds' mirrors reachable) needs, then every test.
#
#   1. setup-interpreters.sh: the Debian packages the set-up and the tests use,
#      the Debian interpreters, chroots and debug files (cached per user:
#      ${XDG_CACHE_HOME:-~/.cache}/pymortem-tests/interpreters, or $PYMORTEM_CORE_CACHE)
#   2. generate.py: the sample cores (cached per checkout, sample-cores/generated,
#      or $PYMORTEM_CORES)
#   3. cargo test --locked with PYMORTEM_REQUIRE_MATRIX=1, so a test that finds
#      no generated core fails instead of returning early, and with a private
#      TMPDIR that must be empty afterwards: the tests leave nothing behind.
#   4. python/test-package.sh: the Python package built with `pip install .`
#      in fresh venvs of CPython 3.13 and 3.9, and its pytest suite (same
#      private TMPDIR). Only when no arguments are given.
#
# Idempotent: a second run re-verifies the interpreters and the cores and runs
# the tests. Arguments go to `cargo test` (and skip step 4), e.g.
# `sample-cores/test-all.sh -- layout::`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
step() { echo "== [test-all $(($(date +%s) - start))s] $*" >&2; }

step "interpreters and system packages (sample-cores/setup-interpreters.sh)"
bash sample-cores/setup-interpreters.sh

step "sample cores (sample-cores/generate.py)"
python3 sample-cores/generate.py --jobs 2 --victims

step "build the tests"
cargo test --locked --no-run "$@"

step "cargo test --locked (PYMORTEM_REQUIRE_MATRIX=1, PYMORTEM_BUNDLE_ALL=1, private TMPDIR)"
tests_tmp="$(mktemp -d "${TMPDIR:-/tmp}/pymortem-test-all.XXXXXX")"
trap 'rm -rf "$tests_tmp"' EXIT
status=0
# PYMORTEM_BUNDLE_ALL: every scenario core is bundled and read back against
# the core with its files (a plain `cargo test` samples 78 of them).
TMPDIR="$tests_tmp" PYMORTEM_BUNDLE_ALL=1 PYMORTEM_REQUIRE_MATRIX=1 cargo test --locked --no-fail-fast "$@" || status=$?
if [ "$#" -eq 0 ]; then
    step "the Python package (python/test-package.sh)"
    TMPDIR="$tests_tmp" bash python/test-package.sh || status=$?
fi
leftovers="$(find "$tests_tmp" -mindepth 1 -maxdepth 1)"
if [ -n "$leftovers" ]; then
    echo "test-all: the tests left files in the temp dir:" >&2
    echo "$leftovers" >&2
    [ "$status" != 0 ] || status=1
fi
step "done (exit $status)"
exit "$status"
