"""benches/peers.py: what the Python bench scripts share.

- `Bench(tag)`: `log` and `die` with the script's tag;
- `apt_install`: best-effort Debian packages (hyperfine, time, valgrind);
- `build`: `cargo build --release`, then a snapshot of the binary in the script's output
  folder, so a concurrent `cargo build` in the same tree cannot swap it mid-measurement;
- `ensure_venv`: the peers' venv (pystack and py-spy) in benches/.cache/venv-peers, with the
  same `.ready` stamp as info-vs-peers.sh, created when missing.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("BENCH_CACHE", os.path.join(HERE, ".cache"))
BUILT = os.path.join(ROOT, "target", "release", "pymortem")
PYENV_ROOT = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
VENV_PY = os.environ.get("BENCH_VENV_PYTHON", os.path.join(PYENV_ROOT, "versions/3.11.7/bin/python"))
CRASH_PY = os.environ.get("BENCH_PYTHON", os.path.join(PYENV_ROOT, "versions/3.11.7/bin/python3.11"))
PEER_PINS = os.environ.get("BENCH_PEER_PINS", "pystack py-spy")
VENV = os.path.join(CACHE, "venv-peers")
PYSTACK = os.path.join(VENV, "bin", "pystack")
PYSPY = os.path.join(VENV, "bin", "py-spy")


class Bench:
    """Logging for one bench script."""

    def __init__(self, tag):
        self.tag = tag
        self._apt_updated = False

    def log(self, msg):
        print("[%s] %s" % (self.tag, msg), file=sys.stderr, flush=True)

    def die(self, msg, code=2):
        self.log("ERROR: " + msg)
        sys.exit(code)

    def apt_install(self, pkg):
        """Best effort `apt-get install -y PKG` (root only); True when it worked."""
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            return False
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not self._apt_updated:
            self.log("apt-get update")
            if subprocess.call(["apt-get", "update", "-qq"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
                return False
            self._apt_updated = True
        self.log("apt-get install -y " + pkg)
        return subprocess.call(["apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0

    def build(self, skip, out_dir):
        """Build (unless `skip`) and snapshot the binary into `out_dir`.
        Returns (version, commit, sha256 prefix, path of the snapshot)."""
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True).stdout.strip()
        if not skip:
            self.log("cargo build --release (in %s)" % ROOT)
            if subprocess.call(["cargo", "build", "--release", "--quiet"], cwd=ROOT) != 0:
                self.die("cargo build --release failed", 1)
        if not os.access(BUILT, os.X_OK):
            self.die("no binary at " + BUILT, 1)
        os.makedirs(out_dir, exist_ok=True)
        snapshot = os.path.join(out_dir, "pymortem-under-test")
        shutil.copy2(BUILT, snapshot + ".tmp")
        os.replace(snapshot + ".tmp", snapshot)
        sha = hashlib.sha256(open(snapshot, "rb").read()).hexdigest()[:16]
        version = subprocess.run([snapshot, "--version"], capture_output=True, text=True).stdout.strip()
        return version, commit + ("+dirty" if dirty else ""), sha, snapshot

    def ensure_venv(self):
        """The peers' venv; returns ("pystack X", "py-spy Y")."""
        if not os.access(VENV_PY, os.X_OK):
            self.die("no interpreter for the venv at " + VENV_PY)
        pyver = subprocess.run([VENV_PY, "-c", "import sys; print(sys.version.split()[0])"],
                               capture_output=True, text=True).stdout.strip()
        key = "%s | %s" % (pyver, PEER_PINS)
        stamp = os.path.join(VENV, ".ready")

        def ok():
            try:
                if open(stamp).read() != key:
                    return False
            except OSError:
                return False
            return all(subprocess.call([t, "--version"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) == 0 for t in (PYSTACK, PYSPY))

        if not ok():
            self.log("creating venv %s with: %s" % (VENV, PEER_PINS))
            shutil.rmtree(VENV, ignore_errors=True)
            if subprocess.call([VENV_PY, "-m", "venv", VENV]) != 0:
                self.die("python -m venv failed")
            if subprocess.call([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "--quiet",
                                "--disable-pip-version-check"] + PEER_PINS.split()) != 0:
                self.die("pip install %s failed" % PEER_PINS)
            with open(stamp, "w") as f:
                f.write(key)
        vs = subprocess.run([PYSTACK, "--version"], capture_output=True, text=True).stdout.strip()
        vp = subprocess.run([PYSPY, "--version"], capture_output=True, text=True).stdout.strip()
        return "pystack " + vs, vp


def median_rss(argv, n):
    """Peak RSS (KiB) of `n` runs, from /usr/bin/time, else getrusage (an upper bound)."""
    import resource
    vals = []
    tb = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    for _ in range(n):
        if tb:
            p = subprocess.run([tb, "-f", "%M", "-o", "/dev/stdout"] + argv, capture_output=True, text=True)
            try:
                vals.append(int(p.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                pass
        else:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            vals.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    return vals


def measure(name, argv, rec, outdir, hf, runs, warmup, rss_runs, ignore_exit=False):
    """Time `argv` with hyperfine (or a perf_counter loop without it) and measure its RSS;
    fill `rec` with status, runs, median/mean/stddev/min/max ms and RSS."""
    import json
    import shlex
    import statistics
    import time
    if hf:
        js = os.path.join(outdir, name + ".hyperfine.json")
        q = subprocess.run([hf, "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs)]
                           + (["-i"] if ignore_exit else [])
                           + ["--export-json", js, "-n", name, " ".join(shlex.quote(a) for a in argv)],
                           capture_output=True, text=True)
        if q.returncode != 0:
            rec["status"] = "FAILED under hyperfine: " + q.stderr.strip()[-200:]
            return rec
        times = json.load(open(js))["results"][0]["times"]
        rec["hyperfine_json"] = js
    else:
        for _ in range(warmup):
            subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        rec["timer"] = "python perf_counter loop (no hyperfine)"
    rss = median_rss(argv, rss_runs)
    rec.update(status="ok", command=" ".join(argv), runs=len(times),
               median_ms=statistics.median(times) * 1e3, mean_ms=statistics.mean(times) * 1e3,
               stddev_ms=(statistics.stdev(times) if len(times) > 1 else 0) * 1e3,
               min_ms=min(times) * 1e3, max_ms=max(times) * 1e3, max_rss_kib=rss,
               max_rss_mib_median=statistics.median(rss) / 1024 if rss else None)
    return rec


def info_core(bench, heap_mb=40, stack_kb=512):
    """The core of info-vs-peers.sh (about 50 MB with the defaults): its generator is read from
    that script, so the cache key (and directory) is the same; when the core is missing it is
    made here the same way. Returns (core, exe, Python version)."""
    script = open(os.path.join(HERE, "info-vs-peers.sh")).read()
    m = re.search(r"GEN_SRC=\"\$\(cat <<'PYEOF'\n(.*?)\nPYEOF\n\)\"", script, re.S)
    if not m:
        bench.die("cannot find the core generator (GEN_SRC heredoc) in benches/info-vs-peers.sh")
    src = m.group(1).rstrip("\n")  # $(...) strips trailing newlines
    key = hashlib.sha256(("%s|%s|%s|%s" % (src, heap_mb, stack_kb, CRASH_PY)).encode()).hexdigest()[:12]
    if not os.access(CRASH_PY, os.X_OK):
        bench.die("no interpreter to crash at " + CRASH_PY)
    pyver = subprocess.run([CRASH_PY, "-c", "import sys; print(sys.version.split()[0])"],
                           capture_output=True, text=True).stdout.strip()
    cdir = os.path.join(CACHE, "core-py%s-heap%d-stack%d-%s" % (pyver, heap_mb, stack_kb, key))
    core = os.path.join(cdir, "core")
    if os.path.isfile(os.path.join(cdir, ".ready")) and os.path.isfile(core):
        bench.log("reusing cached core " + core)
    else:
        pattern = open("/proc/sys/kernel/core_pattern").read().strip()
        if pattern != "core":
            bench.die("kernel core_pattern is %r; this needs 'core' (fix: echo core > "
                "/proc/sys/kernel/core_pattern)" % pattern)
        if open("/proc/sys/kernel/core_uses_pid").read().strip() != "0":
            bench.die("kernel core_uses_pid is 1; this needs 0")
        shutil.rmtree(cdir, ignore_errors=True)
        os.makedirs(cdir)
        with open(os.path.join(cdir, "crash.py"), "w") as f:
            f.write(src + "\n")
        bench.log("making a core: %s crash.py %d %d (in %s)" % (CRASH_PY, heap_mb, stack_kb, cdir))
        import resource

        def unlimited():
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        with open(os.path.join(cdir, "crash.log"), "w") as logf:
            rc = subprocess.call([CRASH_PY, "crash.py", str(heap_mb), str(stack_kb)], cwd=cdir,
                                 stdout=logf, stderr=subprocess.STDOUT, preexec_fn=unlimited)
        if rc != -6:
            bench.die("the crash script ended with %s, not SIGABRT; see %s/crash.log" % (rc, cdir))
        if not (os.path.isfile(core) and os.path.getsize(core) > 0):
            bench.die("SIGABRT but no core at " + core)
        with open(os.path.join(cdir, "exe"), "w") as f:
            f.write(CRASH_PY + "\n")
        open(os.path.join(cdir, ".ready"), "w").close()
    exe = open(os.path.join(cdir, "exe")).read().strip()
    return core, exe, pyver


def timing_rows(rows, base, ratio_key, ratio_format, parked):
    """Table rows for measured commands: median, mean ± stddev, min, RSS, the ratio of the
    median to `base` (stored in each record under `ratio_key`), runs, and how many of the
    `parked` function names the probe's output showed."""
    out = []
    for name, rec in rows.items():
        if rec.get("status") != "ok":
            out.append([name, rec.get("status", "?")[:60], "", "", "", "", "", ""])
            continue
        rec[ratio_key] = rec["median_ms"] / base if base else None
        out.append([name, "%.2f" % rec["median_ms"], "%.2f ± %.2f" % (rec["mean_ms"], rec["stddev_ms"]),
                    "%.2f" % rec["min_ms"],
                    "%.1f" % rec["max_rss_mib_median"] if rec["max_rss_mib_median"] is not None else "?",
                    ratio_format % rec[ratio_key] if base else "n/a", rec["runs"],
                    "%d/%d" % (rec["parked_funcs_seen"], len(parked))])
    return out
