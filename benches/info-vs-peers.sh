#!/usr/bin/env bash
# benches/info-vs-peers.sh — time `pymortem info` against py-spy and pystack on one core.
#
# In one run:
#   1. cargo build --release                       (target/release/pymortem)
#   2. a venv with pystack + py-spy from PyPI      (cached in benches/.cache/venv-peers)
#   3. a ~50 MB kernel core of CPython 3.11.7       (cached in benches/.cache/core-*/core)
#      4 threads parked in named functions, a ~40 MB heap, death by os.abort()
#   4. times, warm cache, on that same core:
#        pymortem info CORE | pymortem info --json CORE | py-spy dump --core CORE |
#        pystack core CORE EXE
#      with hyperfine (warmup 3, >= 20 runs, JSON in benches/.cache/results/) or, without
#      hyperfine, a date +%s%N loop; max RSS via /usr/bin/time -f %M
#   5. prints tool | median ms | mean ± stddev | max RSS MB | ratio vs `pymortem info`
#   6. BENCH_CORES="a.core b.core" (or colon-separated) are timed too, one table each.
#
# Exit: 0 when pymortem worked (a failing peer is reported, not fatal); 1 when pymortem
# fails to build or to read a core; 2 on a set-up error (no core could be made, ...).
#
# Env (all optional):
#   BENCH_RUNS=20          timed runs per tool (minimum 20)
#   BENCH_WARMUP=3         warmup runs per tool
#   BENCH_RSS_RUNS=5       /usr/bin/time runs per tool (median of their max RSS is shown)
#   BENCH_HEAP_MB=40       heap the core's process grows (bytearrays + dicts)
#   BENCH_STACK_KB=512     thread stack size of the 4 parked threads (0 = glibc default, 8 MiB)
#   BENCH_CACHE=DIR        cache dir (default benches/.cache)
#   BENCH_PYTHON=PATH      interpreter that crashes (default ~/.pyenv/versions/3.11.7/bin/python3.11)
#   BENCH_VENV_PYTHON=PATH interpreter for the peers' venv (default ~/.pyenv/versions/3.11.7/bin/python)
#   BENCH_PEER_PINS="pystack py-spy"   pip requirement specs (e.g. "pystack==1.4.1 py-spy==0.4.0")
#   BENCH_CORES="..."      extra cores to time (whitespace- or colon-separated)
#   BENCH_NO_HYPERFINE=1   force the date-loop fallback
#   BENCH_NO_TIME=1        force the getrusage fallback for max RSS
#   BENCH_NO_BUILD=1       skip cargo build (binary must exist)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${BENCH_CACHE:-$HERE/.cache}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
CRASH_PY="${BENCH_PYTHON:-$PYENV_ROOT/versions/3.11.7/bin/python3.11}"
VENV_PY="${BENCH_VENV_PYTHON:-$PYENV_ROOT/versions/3.11.7/bin/python}"
RUNS="${BENCH_RUNS:-20}"
WARMUP="${BENCH_WARMUP:-3}"
RSS_RUNS="${BENCH_RSS_RUNS:-5}"
HEAP_MB="${BENCH_HEAP_MB:-40}"
STACK_KB="${BENCH_STACK_KB:-512}"
PEER_PINS="${BENCH_PEER_PINS:-pystack py-spy}"
PYMORTEM="$ROOT/target/release/pymortem"

[ "$RUNS" -ge 20 ] 2>/dev/null || { echo "BENCH_RUNS must be an integer >= 20 (got '$RUNS')" >&2; exit 2; }

mkdir -p "$CACHE/results"
CACHE="$(cd "$CACHE" && pwd)"
RESULTS="$CACHE/results"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit "${2:-2}"; }

APT_UPDATED=0
apt_install() { # apt_install PACKAGE — best effort; returns non-zero when it did not work
    [ "$(id -u)" = 0 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
        APT_UPDATED=1
    fi
    log "apt-get install -y $1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# 1. build
# ---------------------------------------------------------------------------------------------
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release (in $ROOT)"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed" 1
fi
[ -x "$PYMORTEM" ] || die "no binary at $PYMORTEM" 1
PYMORTEM_VERSION="$("$PYMORTEM" --version 2>&1 || true)"
PYMORTEM_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null || true)" ]; then
    PYMORTEM_COMMIT="$PYMORTEM_COMMIT+dirty"
fi

# ---------------------------------------------------------------------------------------------
# tools: hyperfine (optional), /usr/bin/time (optional, python fallback)
# ---------------------------------------------------------------------------------------------
HYPERFINE=""
if [ "${BENCH_NO_HYPERFINE:-0}" != 1 ]; then
    command -v hyperfine >/dev/null 2>&1 || apt_install hyperfine || log "hyperfine unavailable: using the date +%s%N loop"
    HYPERFINE="$(command -v hyperfine || true)"
fi
TIME_BIN=""
if [ "${BENCH_NO_TIME:-0}" = 1 ]; then
    :
elif [ -x /usr/bin/time ] || apt_install time; then
    [ -x /usr/bin/time ] && TIME_BIN=/usr/bin/time
fi
[ -n "$TIME_BIN" ] || log "/usr/bin/time unavailable: max RSS via python's getrusage(RUSAGE_CHILDREN)"

# ---------------------------------------------------------------------------------------------
# 2. peers' venv
# ---------------------------------------------------------------------------------------------
[ -x "$VENV_PY" ] || die "no interpreter for the venv at $VENV_PY"
VENV="$CACHE/venv-peers"
VENV_KEY="$("$VENV_PY" -c 'import sys; print(sys.version.split()[0])') | $PEER_PINS"
venv_ok() {
    [ -f "$VENV/.ready" ] && [ "$(cat "$VENV/.ready")" = "$VENV_KEY" ] &&
        "$VENV/bin/pystack" --version >/dev/null 2>&1 && "$VENV/bin/py-spy" --version >/dev/null 2>&1
}
if ! venv_ok; then
    log "creating venv $VENV with: $PEER_PINS"
    rm -rf "$VENV"
    "$VENV_PY" -m venv "$VENV" || die "python -m venv failed"
    # shellcheck disable=SC2086  # PEER_PINS is a list of requirement specs
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PEER_PINS ||
        die "pip install $PEER_PINS failed"
    printf '%s' "$VENV_KEY" > "$VENV/.ready"
fi
PYSTACK="$VENV/bin/pystack"
PYSPY="$VENV/bin/py-spy"
PYSTACK_VERSION="pystack $("$PYSTACK" --version 2>&1)" || die "pystack --version failed: $PYSTACK_VERSION"
PYSPY_VERSION="$("$PYSPY" --version 2>&1)" || die "py-spy --version failed: $PYSPY_VERSION"
log "peers: $PYSTACK_VERSION; $PYSPY_VERSION"

# ---------------------------------------------------------------------------------------------
# 3. the core
# ---------------------------------------------------------------------------------------------
[ -x "$CRASH_PY" ] || die "no interpreter to crash at $CRASH_PY"
CRASH_PY_VERSION="$("$CRASH_PY" -c 'import sys; print(sys.version.split()[0])')"

GEN_SRC="$(cat <<'PYEOF'
# Generated by benches/info-vs-peers.sh: grow a heap, park 4 threads in named
# functions, then die by os.abort() (SIGABRT -> kernel core in the cwd).
import os, sys, threading, time

HEAP_MB = int(sys.argv[1])
STACK_KB = int(sys.argv[2])
if STACK_KB:
    threading.stack_size(STACK_KB * 1024)   # keeps the core's apparent size close to its content
parked = threading.Semaphore(0)
forever = threading.Event()
gate = threading.Lock()
gate.acquire()                      # never released
cond = threading.Condition()

def park_on_event():                # thread 1: Event.wait
    parked.release()
    forever.wait()

def sleep_inner():
    parked.release()
    time.sleep(3600)

def park_in_sleep():                # thread 2: time.sleep, one frame deeper
    sleep_inner()

def lock_level2():
    parked.release()
    gate.acquire()

def park_on_lock():                 # thread 3: Lock.acquire, two frames deep
    lock_level2()

def recurse_then_wait(n):           # thread 4: Condition.wait under 8 recursive frames
    if n == 0:
        with cond:
            parked.release()
            cond.wait()
        return
    recurse_then_wait(n - 1)

def park_in_recursion():
    recurse_then_wait(8)

def grow_heap(mb):
    # ~75% of it as 16 KiB bytearrays (malloc heap), the rest as small dicts (pymalloc arenas).
    blobs, records = [], []
    n_blobs = mb * 1024 * 3 // 4 // 16
    for i in range(n_blobs):
        b = bytearray(16384)
        b[::4096] = b"x" * len(b[::4096])
        b[:16] = b"blob-%011d" % i
        blobs.append(b)
    n_records = mb * 1024 * 1024 // 4 // 400   # ~400 bytes per dict+str+float
    for i in range(n_records):
        records.append({"id": i, "name": "record-%08d" % i, "score": i * 0.5})
    return blobs, records

def main():
    heap = grow_heap(HEAP_MB)
    for name, fn in (("parker-event", park_on_event), ("parker-sleep", park_in_sleep),
                     ("parker-lock", park_on_lock), ("parker-recursion", park_in_recursion)):
        threading.Thread(target=fn, name=name, daemon=True).start()
    for _ in range(4):
        parked.acquire()
    time.sleep(0.3)                 # let each thread block inside its primitive
    sys.stdout.write("heap objects: %d blobs, %d records\n" % (len(heap[0]), len(heap[1])))
    sys.stdout.flush()
    os.abort()

main()
PYEOF
)"
GEN_HASH="$(printf '%s|%s|%s|%s' "$GEN_SRC" "$HEAP_MB" "$STACK_KB" "$CRASH_PY" | sha256sum | cut -c1-12)"
CORE_DIR="$CACHE/core-py${CRASH_PY_VERSION}-heap${HEAP_MB}-stack${STACK_KB}-${GEN_HASH}"
CORE="$CORE_DIR/core"

if [ -f "$CORE_DIR/.ready" ] && [ -f "$CORE" ]; then
    log "reusing cached core $CORE"
else
    pattern="$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '?')"
    [ "$pattern" = core ] || die "kernel core_pattern is '$pattern'; this script needs 'core' (cores land in the cwd).
  fix: echo core > /proc/sys/kernel/core_pattern"
    if [ "$(cat /proc/sys/kernel/core_uses_pid 2>/dev/null || echo 0)" != 0 ]; then
        die "kernel core_uses_pid is 1; this script needs 0.  fix: echo 0 > /proc/sys/kernel/core_uses_pid"
    fi
    rm -rf "$CORE_DIR"
    mkdir -p "$CORE_DIR"
    printf '%s\n' "$GEN_SRC" > "$CORE_DIR/crash.py"
    log "making a core: $CRASH_PY crash.py $HEAP_MB $STACK_KB (in $CORE_DIR)"
    set +e
    # No `exec`: the subshell waits for python, so its "Aborted (core dumped)" goes to the log.
    (cd "$CORE_DIR" && ulimit -c unlimited && "$CRASH_PY" crash.py "$HEAP_MB" "$STACK_KB"; exit $?) \
        > "$CORE_DIR/crash.log" 2>&1
    rc=$?
    set -e
    [ "$rc" = 134 ] || die "the crash script exited $rc, not 134 (SIGABRT); see $CORE_DIR/crash.log"
    [ -s "$CORE" ] || die "SIGABRT but no core at $CORE (ulimit -c? core_pattern? coredump_filter?)"
    printf '%s\n' "$CRASH_PY" > "$CORE_DIR/exe"
    touch "$CORE_DIR/.ready"
fi
CORE_EXE="$(cat "$CORE_DIR/exe")"
CORE_BYTES="$(stat -c %s "$CORE")"
CORE_DISK_KB="$(du -k "$CORE" | cut -f1)"
log "core: $CORE — $CORE_BYTES bytes ($(awk -v b="$CORE_BYTES" 'BEGIN{printf "%.1f", b/1048576}') MiB apparent, ${CORE_DISK_KB} KiB on disk); exe $CORE_EXE"

# ---------------------------------------------------------------------------------------------
# 4. timing helpers
# ---------------------------------------------------------------------------------------------
# Python used for the stats and the fallback measurements: the venv's (always there by now).
STATPY="$VENV/bin/python"

# max_rss_kb OUTFILE CMD... — peak RSS (KiB) of one run of CMD; its status is returned.
max_rss_kb() {
    local out="$1"; shift
    if [ -n "$TIME_BIN" ]; then
        "$TIME_BIN" -f %M -o "$out" "$@" >/dev/null 2>&1
    else
        "$STATPY" - "$out" "$@" >/dev/null 2>&1 <<'PYEOF'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc if rc >= 0 else 128 - rc)
PYEOF
    fi
}

# time_loop JSON NAME CMD... — fallback: warmup + RUNS timed runs with date +%s%N,
# written in hyperfine's JSON layout (times in seconds).
time_loop() {
    local json="$1" name="$2"; shift 2
    local i t0 t1 times=()
    for ((i = 0; i < WARMUP; i++)); do "$@" >/dev/null 2>&1 || return 1; done
    for ((i = 0; i < RUNS; i++)); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || return 1
        t1=$(date +%s%N)
        times+=("$((t1 - t0))")
    done
    "$STATPY" - "$json" "$name" "${times[@]}" <<'PYEOF'
import json, statistics, sys
out, name, ns = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
t = [x / 1e9 for x in ns]
json.dump({"results": [{"command": name, "mean": statistics.mean(t),
                        "stddev": statistics.stdev(t) if len(t) > 1 else 0.0,
                        "median": statistics.median(t), "min": min(t), "max": max(t),
                        "times": t, "exit_codes": [0] * len(t)}],
           "timer": "date +%s%N loop"}, open(out, "w"), indent=1)
PYEOF
}

# bench_core LABEL CORE EXE OURS — probe, time and summarize the four tools on one core.
# EXE may be empty (pystack then finds it from the core); OURS=1 when CORE is this script's
# own core (its parked functions' names are then looked for in each tool's output).
# Returns 1 when pymortem failed on it.
bench_core() {
    local label="$1" core="$2" exe="${3:-}" ours="${4:-0}"
    local dir="$RESULTS/$label"
    rm -rf "$dir"; mkdir -p "$dir"
    local names=(pymortem-info pymortem-info-json py-spy-dump pystack-core)
    local -A cmd
    cmd[pymortem-info]="$(printf '%q ' "$PYMORTEM" info "$core")"
    cmd[pymortem-info-json]="$(printf '%q ' "$PYMORTEM" info --json "$core")"
    cmd[py-spy-dump]="$(printf '%q ' "$PYSPY" dump --core "$core")"
    if [ -n "$exe" ]; then
        cmd[pystack-core]="$(printf '%q ' "$PYSTACK" core "$core" "$exe")"
    else
        cmd[pystack-core]="$(printf '%q ' "$PYSTACK" core "$core")"
    fi
    local pymortem_failed=0 name rc argv
    : > "$dir/status.tsv"
    for name in "${names[@]}"; do
        eval "argv=(${cmd[$name]})"
        printf '%s\n' "${cmd[$name]}" > "$dir/$name.cmd"
        # probe: one run, output kept for the failure report and the sanity check
        set +e
        "${argv[@]}" > "$dir/$name.stdout" 2> "$dir/$name.stderr"
        rc=$?
        set -e
        if [ "$rc" != 0 ]; then
            printf '%s\tFAILED (exit %s)\n' "$name" "$rc" >> "$dir/status.tsv"
            log "$label: $name FAILED (exit $rc): ${cmd[$name]}"
            sed -e 's/^/    | /' "$dir/$name.stderr" | tail -n 15 >&2
            sed -e 's/^/    | /' "$dir/$name.stdout" | tail -n 5 >&2
            case "$name" in pymortem-*) pymortem_failed=1 ;; esac
            continue
        fi
        # timing (warm cache: hyperfine's warmup / the loop's warmup runs first)
        log "$label: timing $name"
        local json="$dir/$name.hyperfine.json"
        if [ -n "$HYPERFINE" ]; then
            if ! "$HYPERFINE" -N --style none --warmup "$WARMUP" --runs "$RUNS" \
                    --export-json "$json" -n "$name" "${cmd[$name]}" > "$dir/$name.hyperfine.log" 2>&1; then
                printf '%s\tFAILED (hyperfine; see %s)\n' "$name" "$dir/$name.hyperfine.log" >> "$dir/status.tsv"
                log "$label: $name FAILED under hyperfine"; tail -n 15 "$dir/$name.hyperfine.log" >&2
                case "$name" in pymortem-*) pymortem_failed=1 ;; esac
                continue
            fi
        else
            json="$dir/$name.loop.json"
            if ! time_loop "$json" "$name" "${argv[@]}"; then
                printf '%s\tFAILED (during timed runs)\n' "$name" >> "$dir/status.tsv"
                log "$label: $name FAILED during the timed runs"
                case "$name" in pymortem-*) pymortem_failed=1 ;; esac
                continue
            fi
        fi
        # max RSS: RSS_RUNS runs, each peak recorded
        local i rss_list=()
        for ((i = 0; i < RSS_RUNS; i++)); do
            max_rss_kb "$dir/$name.rss" "${argv[@]}" || true
            rss_list+=("$(tail -n 1 "$dir/$name.rss")")
        done
        printf '%s\n' "${rss_list[@]}" > "$dir/$name.rss"
        printf '%s\tok\t%s\n' "$name" "$json" >> "$dir/status.tsv"
    done

    "$STATPY" - "$dir" "$label" "$core" "$ours" "${names[@]}" <<'PYEOF'
import json, os, re, statistics, sys
d, label, core, ours, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
status = {}
for line in open(os.path.join(d, "status.tsv")):
    f = line.rstrip("\n").split("\t")
    status[f[0]] = f[1:]
PARKED = ["park_on_event", "sleep_inner", "park_in_sleep", "lock_level2", "park_on_lock",
          "recurse_then_wait", "park_in_recursion"]
rows, base = [], None
for n in names:
    st = status.get(n, ["missing"])
    if st[0] != "ok":
        rows.append((n, None, st[0]))
        continue
    r = json.load(open(st[1]))["results"][0]
    rss = [int(x) for x in open(os.path.join(d, n + ".rss")).read().split() if x.strip().isdigit()]
    out = open(os.path.join(d, n + ".stdout"), errors="replace").read()
    seen = [f for f in PARKED if re.search(r"\b%s\b" % f, out)]
    funcs = len(seen)
    rec = {"tool": n, "median_ms": r["median"] * 1e3, "mean_ms": r["mean"] * 1e3,
           "stddev_ms": (r.get("stddev") or 0.0) * 1e3, "runs": len(r["times"]),
           "min_ms": r["min"] * 1e3, "max_ms": r["max"] * 1e3,
           "max_rss_mb": statistics.median(rss) / 1024 if rss else None,
           "max_rss_mb_all": [x / 1024 for x in rss], "stdout_bytes": len(out),
           "parked_funcs_in_output": funcs, "funcs_seen": seen}
    if n == "pymortem-info":
        base = rec["median_ms"]
    rows.append((n, rec, "ok"))
for n, rec, _ in rows:
    if rec is not None:
        rec["ratio_vs_pymortem_info"] = rec["median_ms"] / base if base else None
hdr = ("tool", "median ms", "mean ± stddev ms", "min ms", "max RSS MB", "ratio", "runs", "py funcs seen")
table = []
for n, rec, st in rows:
    if rec is None:
        table.append((n, st, "", "", "", "", "", ""))
        continue
    table.append((n, "%.2f" % rec["median_ms"], "%.2f ± %.2f" % (rec["mean_ms"], rec["stddev_ms"]),
                  "%.2f" % rec["min_ms"],
                  "%.1f" % rec["max_rss_mb"] if rec["max_rss_mb"] is not None else "?",
                  "%.2fx" % rec["ratio_vs_pymortem_info"] if rec.get("ratio_vs_pymortem_info") else "n/a",
                  str(rec["runs"]), "%d/%d" % (rec["parked_funcs_in_output"], len(PARKED)) if ours else "-"))
w = [max(len(r[i]) for r in [hdr] + table) for i in range(len(hdr))]
print()
print("== %s: %s (%d bytes)" % (label, core, os.path.getsize(core)))
for r in [hdr, tuple("-" * x for x in w)] + table:
    print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
print("(ratio = median / median of `pymortem info`; RSS = median of per-run peaks"
      + ("; 'py funcs seen' = how many of the 7 parked functions' names the output shows)" if ours else ")"))
json.dump({"label": label, "core": core, "core_bytes": os.path.getsize(core),
           "rows": [rec if rec else {"tool": n, "status": st} for n, rec, st in rows]},
          open(os.path.join(d, "summary.json"), "w"), indent=1)
PYEOF
    return "$pymortem_failed"
}

# ---------------------------------------------------------------------------------------------
# 4/5. run it
# ---------------------------------------------------------------------------------------------
TIMER="hyperfine $([ -n "$HYPERFINE" ] && hyperfine --version | awk '{print $2}' || echo '(absent: date +%s%N loop)')"
echo
echo "pymortem info vs peers — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -r)"
echo "  pymortem: $PYMORTEM_VERSION (commit $PYMORTEM_COMMIT, release build)"
echo "  peers:    $PYSPY_VERSION; $PYSTACK_VERSION"
echo "  timer:    $TIMER; warmup $WARMUP, $RUNS runs per tool, warm page cache"
echo "  load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start — other work on the machine inflates and spreads the times"
echo "  core:     $CORE"
echo "            $CORE_BYTES bytes ($(awk -v b="$CORE_BYTES" 'BEGIN{printf "%.1f MiB", b/1048576}') apparent, ${CORE_DISK_KB} KiB on disk), CPython $CRASH_PY_VERSION, 4 parked threads + main, SIGABRT"

STATUS=0
bench_core main "$CORE" "$CORE_EXE" 1 || STATUS=1

# 6. extra cores
if [ -n "${BENCH_CORES:-}" ]; then
    n=0
    for extra in ${BENCH_CORES//:/ }; do
        n=$((n + 1))
        if [ ! -f "$extra" ]; then
            log "BENCH_CORES: no such file: $extra (skipped)"
            continue
        fi
        base="${extra##*/}"
        lbl="extra-$n-${base//[^A-Za-z0-9._-]/_}"
        bench_core "$lbl" "$extra" "" 0 || STATUS=1
    done
fi

echo
echo "raw results: $RESULTS/<label>/ (hyperfine JSON, probe stdout/stderr, RSS samples, summary.json)"
if [ "$STATUS" != 0 ]; then
    echo "pymortem FAILED on at least one core (see above)" >&2
fi
exit "$STATUS"
