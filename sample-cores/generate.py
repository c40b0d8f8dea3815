#!/usr/bin/env python3
"""Generate sample core dumps of crashed CPython processes for pymortem's tests.

    generate.py [--out DIR] [--interp NAME ...] [--scenario NAME ...]
                [--kind kernel|gcore|snapshot|qemu|qemu_pac ...] [--jobs N] [--force] [--no-verify]

Run sample-cores/setup-interpreters.sh first (it prepares the Debian
interpreters and their debug files in the cache dir).  See README.md.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

GENERATOR_VERSION = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
SCEN_DIR = os.path.join(HERE, "scenarios")
HELPERS = ["_truth.py", "_coro3.py"]
# Scenarios that import another scenario's script.
SCENARIO_IMPORTS = {"segfault_faulthandler": ["segfault.py"],
                    "subinterp_threads": ["_subinterp.py"],
                    "subinterp_nested": ["_subinterp.py"],
                    "subinterp_chains": ["_subinterp.py"]}
SCENARIOS = ["threads", "recursion", "generator", "double_free", "use_after_free",
             "gc_already_tracked", "segfault", "segfault_faulthandler", "busy_heap",
             "subinterp_threads", "subinterp_nested", "subinterp_chains", "asyncio_tasks"]
# Scenarios of a C extension's reference-counting bugs (scenarios/spool.py with
# scenarios/spoolext.c, compiled for each interpreter): bug x phase.  Their
# truth lists victims, not stacks; they have their own manifest (victims.json)
# and run only when asked for (--scenario, or --victims).
SPOOL_BUGS = ["decref", "borrowed", "static"]
SPOOL_PHASES = ["now", "later", "crash"]
VICTIM_SCENARIOS = ["spool_%s_%s" % (b, p) for b in SPOOL_BUGS for p in SPOOL_PHASES]
# Bug "owners": the extra Py_DECREF on victims held by owners other than a
# list (a deque, a set, a function's defaults, a closure cell, a bound
# method, a suspended generator, an instance's attributes).
VICTIM_SCENARIOS += ["spool_owners_now", "spool_owners_later"]
for _name in VICTIM_SCENARIOS:
    SCENARIO_IMPORTS[_name] = ["spoolext.c"]
SPOOLEXT_SOURCE = "spoolext.c"
# Where the extension is built inside a chroot (under the sysroot, so a core
# names a path that resolves there).
CHROOT_EXT = "/tmp/pymortem-ext"


def scenario_script(scenario):
    """The script a scenario runs, and the arguments after the truth path."""
    if scenario in VICTIM_SCENARIOS:
        _, bug, phase = scenario.split("_")
        return "spool.py", [bug, phase]
    return scenario + ".py", []


# The first Python version a scenario runs on (the others run on every interpreter):
# subinterpreters with their own thread states per OS thread need
# _xxsubinterpreters (3.12) or _interpreters (3.13+).
SCENARIO_MIN_VERSION = {"subinterp_threads": (3, 12), "subinterp_nested": (3, 12),
                        "subinterp_chains": (3, 12), "asyncio_tasks": (3, 8)}
KINDS = ["kernel", "gcore"]
# Scenarios that never die: generate.py snapshots the live process with gdb
# several times at random moments (kind "snapshot"), then kills it.
SNAPSHOT_SCENARIOS = ["busy_snapshot"]
SNAPSHOT_KIND = "snapshot"
# PYMORTEM_SNAPSHOTS raises it for a stress run (the stamp records it).
SNAPSHOTS_PER_RUN = int(os.environ.get("PYMORTEM_SNAPSHOTS") or 5)
# Random pause before each snapshot, in seconds.
SNAPSHOT_DELAY = (0.05, 0.8)
PYENV_VERSIONS = ["2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13",
                  "3.11.7", "3.12.1", "3.13.0"]
# Debian's interpreters run in a chroot of their suite (set up by setup-interpreters.sh).
DEBIAN_CHROOT_INTERPS = [
    "debian-3.13",
    "debian-3.14",
    "debian-3.15",
]
# Debian's arm64 (aarch64) interpreters: a chroot of their suite, run under QEMU's
# user-mode emulator (ROOT/usr/bin/qemu-aarch64-static; set up by setup-interpreters.sh).
ARM64_INTERPS = [
    "debian-3.11-arm64",
    "debian-3.13-arm64",
    "debian-3.14-arm64",
    "debian-3.15-arm64",
]
INTERPS = ["pyenv-" + v for v in PYENV_VERSIONS] + ["debian-3.11"] + DEBIAN_CHROOT_INTERPS + ARM64_INTERPS
QEMU_EMULATOR = "/usr/bin/qemu-aarch64-static"
# The kinds of the arm64 interpreters: QEMU writes the core of the guest itself
# (qemu_<exe>_<date>-<time>_<pid>.core in the guest's cwd; notes NT_PRSTATUS per thread,
# NT_PRPSINFO, NT_AUXV only), with the CPU model QEMU emulates:
#   qemu      cortex-a72 (ARMv8.0): no pointer authentication, 2-5x faster than "max"
#   qemu_pac  "max" (QEMU's default): saved return addresses carry pointer-authentication
#             bits and the auxv advertises PACA, but the core has no NT_ARM_PAC_MASK
QEMU_KINDS = {"qemu": "cortex-a72", "qemu_pac": "max"}
# qemu_pac is made only for these (interp, scenario): the unwinder's PAC-stripping case.
QEMU_PAC_JOBS = [("debian-3.14-arm64", "threads")]
# Scenarios that do not run on the arm64 interpreters: the C extension's (spool_*,
# below) would need an aarch64 C compiler and the arm64 headers.
ARM64_EXCLUDED = {"victims": "the C extension needs an aarch64 cross-compiler"}
JOB_TIMEOUT = 180
CHROOT_SCEN = "/tmp/pymortem-scenarios"
CHROOT_WORK = "/tmp/pymortem-work"
# One glibc malloc arena: otherwise every thread reserves a 64 MiB arena, which
# gdb's gcore writes out in full (4 workers -> +256 MiB per core).
SCENARIO_ENV = {"MALLOC_ARENA_MAX": "1", "PYTHONDONTWRITEBYTECODE": "1"}

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_ARM_PAC_MASK = 0x406
AT_HWCAP = 16
HWCAP_PACA = 1 << 30  # aarch64
EM_X86_64 = 62
EM_AARCH64 = 183
ARCH_MACHINE = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494c45


class SetupError(Exception):
    pass


def cache_dir():
    """Where setup-interpreters.sh put the interpreters: one cache per user, shared by clones."""
    if os.environ.get("PYMORTEM_CORE_CACHE"):
        return os.path.abspath(os.environ["PYMORTEM_CORE_CACHE"])
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(user_cache, "pymortem-tests", "interpreters"))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_identity(path):
    st = os.stat(path)
    return "%s:%d:%d" % (os.path.realpath(path), st.st_size, int(st.st_mtime))


# --------------------------------------------------------------------------- interpreters
class Interp(object):
    def __init__(self, name):
        self.name = name
        self.sysroot = None
        self.debug_dirs = []
        self.stripped = False
        self.libpython = None
        self.spoolext_dir = None
        self.arch = "x86_64"
        # the user-mode emulator the interpreter runs under (a path inside sysroot), or None
        self.emulator = None
        cache = cache_dir()
        if name.startswith("pyenv-"):
            ver = name[len("pyenv-"):]
            root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
            link = os.path.join(root, "versions", ver, "bin", "python")
            if not os.path.exists(link):
                raise SetupError("%s: %s does not exist (pyenv install %s)" % (name, link, ver))
            self.exe = os.path.realpath(link)
            self.run_exe = self.exe
            self.version = ver
            mm = ".".join(ver.split(".")[:2])
            # 3.6 and 3.7 name it libpython3.Xm (the pymalloc ABI flag).
            for abi in ("", "m"):
                lib = os.path.join(root, "versions", ver, "lib", "libpython%s%s.so.1.0" % (mm, abi))
                if os.path.exists(lib):
                    self.libpython = os.path.realpath(lib)
                    break
            self.identity = [file_identity(self.exe)] + ([file_identity(lib)] if self.libpython else [])
        elif name == "debian-3.11":
            self.exe = "/usr/bin/python3.11"
            self.run_exe = self.exe
            ready = os.path.join(cache, "debian-3.11", ".ready")
            dbg = os.path.join(cache, "debian-3.11", "dbg", "usr", "lib", "debug")
            if not os.path.exists(self.exe) or not os.path.exists(ready) or not os.path.isdir(dbg):
                raise SetupError("%s: not set up (%s / %s missing): run sample-cores/setup-interpreters.sh"
                                 % (name, self.exe, ready))
            self.debug_dirs = [dbg]
            self.stripped = True
            self.version = None
            self.identity = [file_identity(self.exe), open(ready).read().strip()]
        elif name in DEBIAN_CHROOT_INTERPS:
            mm = name[len("debian-"):]
            base = os.path.join(cache, name)
            self.sysroot = os.path.join(base, "root")
            self.exe = os.path.join(self.sysroot, "usr", "bin", "python" + mm)
            self.run_exe = "/usr/bin/python" + mm
            ready = os.path.join(base, ".ready")
            dbg = os.path.join(base, "dbg", "usr", "lib", "debug")
            if not os.path.exists(self.exe) or not os.path.exists(ready) or not os.path.isdir(dbg):
                raise SetupError("%s: not set up (%s / %s missing): run sample-cores/setup-interpreters.sh"
                                 % (name, self.exe, ready))
            self.debug_dirs = [dbg]
            self.stripped = True
            self.version = None
            self.identity = [file_identity(self.exe), open(ready).read().strip()]
        elif name in ARM64_INTERPS:
            mm = name[len("debian-"):-len("-arm64")]
            base = os.path.join(cache, name)
            self.sysroot = os.path.join(base, "root")
            self.exe = os.path.join(self.sysroot, "usr", "bin", "python" + mm)
            self.run_exe = "/usr/bin/python" + mm
            self.arch = "aarch64"
            self.emulator = QEMU_EMULATOR
            ready = os.path.join(base, ".ready")
            dbg = os.path.join(base, "dbg", "usr", "lib", "debug")
            qemu = self.host_path(QEMU_EMULATOR)
            if not all(map(os.path.exists, (self.exe, ready, dbg, qemu))):
                raise SetupError("%s: not set up (%s / %s / %s missing): run sample-cores/setup-interpreters.sh"
                                 % (name, self.exe, ready, qemu))
            self.debug_dirs = [dbg]
            self.stripped = True
            self.version = None
            # QEMU writes the cores: a new build of it remakes them
            self.identity = [file_identity(self.exe), open(ready).read().strip(),
                             "qemu=" + sha256_file(qemu)]
        else:
            raise SetupError("unknown interpreter %r (known: %s)" % (name, ", ".join(INTERPS)))

    def command(self, *args):
        """The argv that runs the interpreter with `args` (chroot and emulator included)."""
        prefix = ["chroot", self.sysroot] if self.sysroot else []
        if self.emulator:
            prefix.append(self.emulator)
        return prefix + [self.run_exe] + list(args)

    def argv(self, script, truth):
        return self.command(script, truth)

    def probe(self):
        """Run the interpreter once; returns its version string."""
        code = "import platform, ctypes, threading, json; print(platform.python_version())"
        argv = self.command("-c", code)
        env = dict(os.environ, QEMU_CPU=QEMU_KINDS["qemu"]) if self.emulator else None
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=60, check=True, env=env).stdout.decode().strip()
        except Exception as e:
            raise SetupError("%s: cannot run %s: %s" % (self.name, " ".join(argv), e))
        if self.version and out != self.version:
            raise SetupError("%s: reports version %s" % (self.name, out))
        self.version = out
        return out

    def include_dirs(self):
        """The interpreter's header folders (Python.h, pyconfig.h), as host paths."""
        code = ("import sysconfig; p = sysconfig.get_paths(); "
                "print(p['include']); print(p.get('platinclude') or p['include'])")
        argv = self.command("-c", code)
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=60, check=True).stdout.decode().split()
        except Exception as e:
            raise SetupError("%s: cannot ask for its include dirs: %s" % (self.name, e))
        dirs = []
        # Debian's pyconfig.h includes <x86_64-linux-gnu/python3.X/pyconfig.h>:
        # the sysroot's /usr/include must come before the host's.
        for d in out + (["/usr/include"] if self.sysroot else []):
            host = self.host_path(d)
            if host not in dirs:
                dirs.append(host)
        if not os.path.exists(os.path.join(dirs[0], "Python.h")):
            raise SetupError("%s: no Python.h in %s (run sample-cores/setup-interpreters.sh: "
                             "it fetches the -dev headers)" % (self.name, dirs[0]))
        return dirs

    def host_path(self, chroot_path):
        if self.sysroot:
            return os.path.join(self.sysroot, chroot_path.lstrip("/"))
        return chroot_path


# --------------------------------------------------------------------------- ELF core notes
def read_core_notes(path):
    """Return dict with machine (e_machine), pid (PRPSINFO), threads [(lwp, cursig)] in note
    order, siginfo signo list, nt_file count, hwcap (NT_AUXV's AT_HWCAP) and pac_mask (whether
    there is an NT_ARM_PAC_MASK note)."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
            raise ValueError("not an ELF64 file")
        e_type, e_machine = struct.unpack_from("<HH", ehdr, 16)
        if e_type != 4:
            raise ValueError("not a core file (e_type %d)" % e_type)
        e_phoff, = struct.unpack_from("<Q", ehdr, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(e_phoff)
        phdrs = f.read(e_phentsize * e_phnum)
        res = {"machine": e_machine, "pid": None, "threads": [], "siginfo": [], "nt_file": 0,
               "load_segments": 0, "hwcap": None, "pac_mask": False}
        for i in range(e_phnum):
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", phdrs, i * e_phentsize)
            if p_type == 1:
                res["load_segments"] += 1
            if p_type != 4:
                continue
            f.seek(p_offset)
            data = f.read(p_filesz)
            off = 0
            while off + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, off)
                off += 12
                name = data[off:off + namesz]
                off += (namesz + 3) & ~3
                desc = data[off:off + descsz]
                off += (descsz + 3) & ~3
                if ntype == NT_ARM_PAC_MASK and name.rstrip(b"\0") == b"LINUX":
                    res["pac_mask"] = True
                if name.rstrip(b"\0") != b"CORE":
                    continue
                if ntype == NT_PRSTATUS:
                    cursig, = struct.unpack_from("<h", desc, 12)
                    pid, = struct.unpack_from("<i", desc, 32)
                    res["threads"].append((pid, cursig))
                elif ntype == NT_PRPSINFO:
                    res["pid"], = struct.unpack_from("<i", desc, 24)
                elif ntype == NT_SIGINFO:
                    res["siginfo"].append(struct.unpack_from("<i", desc, 0)[0])
                elif ntype == NT_FILE:
                    res["nt_file"] += 1
                elif ntype == NT_AUXV:
                    for i in range(0, len(desc) - 15, 16):
                        a_type, a_val = struct.unpack_from("<QQ", desc, i)
                        if a_type == AT_HWCAP:
                            res["hwcap"] = a_val
        return res


def verify(core, truth, kind, stderr_text, arch="x86_64"):
    """Check the core against its truth; returns a list of problems (empty = ok)."""
    problems = []
    notes = read_core_notes(core)
    if notes["machine"] != ARCH_MACHINE[arch]:
        problems.append("e_machine %s, not %s's %s" % (notes["machine"], arch, ARCH_MACHINE[arch]))
    if notes["pid"] != truth["pid"]:
        problems.append("PRPSINFO pid %s != truth pid %s" % (notes["pid"], truth["pid"]))
    lwps = [t[0] for t in notes["threads"]]
    want = [t["native_id"] for t in truth["threads"]]
    missing = [w for w in want if w not in lwps]
    if missing:
        problems.append("LWPs %s of the truth not in the core (core has %s)" % (missing, lwps))
    if truth["pid"] not in lwps:
        problems.append("main LWP %s not in the core" % truth["pid"])
    sig = truth["expected_signal"]
    if kind in QEMU_KINDS:
        # QEMU's core has no NT_SIGINFO (nor NT_FILE): the signal is the pr_cursig of the
        # first NT_PRSTATUS, the crashing thread's (the others have 0).
        cursig = notes["threads"][0][1] if notes["threads"] else None
        if sig is None:
            sig = cursig
        if cursig != sig:
            problems.append("first NT_PRSTATUS pr_cursig %s != expected %s" % (cursig, sig))
        if notes["siginfo"] and notes["siginfo"][0] != sig:
            problems.append("NT_SIGINFO signo %s != expected %s" % (notes["siginfo"][0], sig))
        # the CPU model shows in the auxv: PACA with "max" (qemu_pac), not with cortex-a72
        paca = bool((notes["hwcap"] or 0) & HWCAP_PACA)
        if notes["hwcap"] is None:
            problems.append("no AT_HWCAP in NT_AUXV")
        elif paca != (kind == "qemu_pac"):
            problems.append("AT_HWCAP %#x: PACA %s for kind %s" % (notes["hwcap"], "set" if paca else "clear", kind))
    else:
        if sig is None and notes["siginfo"]:
            # A scenario that dies of its own bug: whatever signal that was.
            sig = notes["siginfo"][0]
        if not notes["siginfo"]:
            problems.append("no NT_SIGINFO note")
        elif notes["siginfo"][0] != sig:
            problems.append("NT_SIGINFO signo %s != expected %s" % (notes["siginfo"][0], sig))
    crash = [t for t in truth["threads"] if t["ident"] == truth["crash_thread_ident"]]
    if crash and notes["threads"]:
        first_lwp, cursig = notes["threads"][0]
        if first_lwp != crash[0]["native_id"]:
            problems.append("first PRSTATUS LWP %s != crash thread LWP %s" % (first_lwp, crash[0]["native_id"]))
        if kind == "kernel" and cursig != sig:
            problems.append("pr_cursig %s != %s" % (cursig, sig))
    fatal = truth.get("expected_fatal_error")
    if fatal and ("Fatal Python error: " + fatal) not in stderr_text:
        problems.append("stderr lacks 'Fatal Python error: %s'" % fatal)
    return problems, notes


# --------------------------------------------------------------------------- jobs
def set_core_limit(unlimited):
    def fn():
        lim = resource.RLIM_INFINITY if unlimited else 0
        resource.setrlimit(resource.RLIMIT_CORE, (lim, lim))
        os.setsid()
    return fn


def qemu_preexec():
    """For a process that execs QEMU: QEMU writes the guest's core only when RLIMIT_CORE
    allows it; QEMU 7.2 then also lets the kernel dump QEMU itself (an x86-64 `core`,
    about 160 MB): coredump_filter 0 (inherited through exec) leaves that one a few KB,
    and the job deletes it."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.setsid()
    try:
        with open("/proc/self/coredump_filter", "w") as f:
            f.write("0")
    except (IOError, OSError):
        pass


def job_env(kind):
    """The environment variables a job sets for its process (recorded in the manifest)."""
    if kind in QEMU_KINDS:
        return dict(SCENARIO_ENV, QEMU_CPU=QEMU_KINDS[kind])
    return SCENARIO_ENV


def job_key(interp, scenario, kind):
    h = hashlib.sha256()
    h.update(("gen=%s\n" % GENERATOR_VERSION).encode())
    h.update(("interp=%s\n" % interp.name).encode())
    for ident in interp.identity:
        h.update(("id=%s\n" % ident).encode())
    h.update(("kind=%s\n" % kind).encode())
    for fn in [scenario_script(scenario)[0]] + SCENARIO_IMPORTS.get(scenario, []) + HELPERS:
        h.update(("%s=%s\n" % (fn, sha256_file(os.path.join(SCEN_DIR, fn)))).encode())
    h.update(sha256_file(os.path.abspath(__file__)).encode())
    return h.hexdigest()


class Job(object):
    def __init__(self, interp, scenario, kind, out):
        self.interp = interp
        self.scenario = scenario
        self.kind = kind
        self.dir = os.path.join(out, interp.name)
        base = os.path.join(self.dir, "%s.%s" % (scenario, kind))
        self.core = base + ".core"
        self.truth = base + ".truth.json"
        self.stderr = base + ".stderr.txt"
        self.stamp = base + ".stamp"
        self.status = None
        self.problems = []
        self.seconds = 0.0
        self.cached = False
        self.notes = None

    @property
    def label(self):
        return "%s/%s/%s" % (self.interp.name, self.scenario, self.kind)

    def up_to_date(self, key):
        try:
            with open(self.stamp) as f:
                return f.read().strip() == key and os.path.exists(self.core) and os.path.exists(self.truth)
        except IOError:
            return False

    def run(self, force, do_verify):
        t0 = time.time()
        key = job_key(self.interp, self.scenario, self.kind)
        if not force and self.up_to_date(key):
            self.cached = True
        else:
            for attempt in (1, 2):
                err = self._generate()
                if err is None:
                    break
                self.problems = ["attempt %d: %s" % (attempt, err)]
            else:
                self.status = "FAIL"
                self.seconds = time.time() - t0
                return
            self.problems = []
            with open(self.stamp, "w") as f:
                f.write(key + "\n")
        if do_verify:
            try:
                truth = json.load(open(self.truth))
                stderr_text = open(self.stderr, errors="replace").read() if os.path.exists(self.stderr) else ""
                self.problems, self.notes = verify(self.core, truth, self.kind, stderr_text, self.interp.arch)
            except Exception as e:
                self.problems = ["verify: %s" % e]
        self.status = "FAIL" if self.problems else "ok"
        self.seconds = time.time() - t0

    def _generate(self):
        ip = self.interp
        os.makedirs(self.dir, exist_ok=True)
        for p in (self.core, self.truth, self.stamp, self.stderr):
            if os.path.exists(p):
                os.unlink(p)
        tag = "%s.%s.%s" % (ip.name, self.scenario, self.kind)
        if ip.sysroot:
            work_in = "%s/%s" % (CHROOT_WORK, tag)
            script_in = "%s/%s" % (CHROOT_SCEN, scenario_script(self.scenario)[0])
        else:
            work_in = os.path.join(os.path.dirname(self.dir), ".work", tag)
            script_in = os.path.join(SCEN_DIR, scenario_script(self.scenario)[0])
        work = ip.host_path(work_in)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        truth_in = work_in + "/truth.json"
        argv = ip.argv(script_in, truth_in) + scenario_script(self.scenario)[1]
        env = dict(os.environ)
        env.update(job_env(self.kind))
        if self.scenario in VICTIM_SCENARIOS:
            env["PYMORTEM_SPOOLEXT_DIR"] = ip.spoolext_dir
        errf = open(self.stderr, "wb")
        try:
            if self.kind == "kernel":
                proc = subprocess.run(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env,
                                      preexec_fn=set_core_limit(True), timeout=JOB_TIMEOUT)
                rc = proc.returncode
                core_src = None
                for cand in os.listdir(work):
                    if cand == "core" or re.match(r"^core\.\d+$", cand):
                        core_src = os.path.join(work, cand)
                if rc >= 0:
                    return "process exited with %d instead of dying from a signal" % rc
                if core_src is None:
                    return "killed by signal %d but no core in %s (core_pattern?)" % (-rc, work)
            elif self.kind in QEMU_KINDS:
                proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                        env=env, preexec_fn=qemu_preexec)
                try:
                    rc = proc.wait(timeout=JOB_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise
                # chroot(8) execs QEMU, so the guest's pid is proc.pid. QEMU writes the
                # guest's core into the guest's cwd (the work dir, where _truth.py
                # chdir()s; "/" of the root before that); the kernel's core of QEMU
                # itself lands in the same cwd: never take that one.
                core_src = None
                guest_core = re.compile(r"^qemu_.*_%d\.core$" % proc.pid)
                for folder in (work, ip.sysroot):
                    for cand in sorted(os.listdir(folder)):
                        path = os.path.join(folder, cand)
                        if guest_core.match(cand) and core_src is None:
                            core_src = path
                        elif guest_core.match(cand) or cand == "core" or re.match(r"^core\.%d$" % proc.pid, cand):
                            os.unlink(path)
                if rc >= 0:
                    if core_src:
                        os.unlink(core_src)
                    return "process exited with %d instead of dying from a signal" % rc
                if core_src is None:
                    return "killed by signal %d but QEMU wrote no qemu_*_%d.core in %s" % (-rc, proc.pid, work)
                if shutil.which("fallocate"):
                    # QEMU writes every page of every dumped mapping (8 MiB stacks); punch holes
                    subprocess.run(["fallocate", "--dig-holes", core_src], check=False)
            else:
                core_tmp = os.path.join(work, "gcore.core")
                gdb = ["gdb", "-batch", "-nx",
                       "-iex", "set pagination off", "-iex", "set confirm off",
                       "-iex", "set startup-with-shell off",
                       "-iex", "set auto-load no",
                       "-iex", "set auto-solib-add off",
                       "-iex", "set debuginfod enabled off",
                       "-ex", "handle SIGPIPE SIGCHLD SIGALRM SIGUSR1 SIGUSR2 nostop noprint pass",
                       "-ex", "run",
                       "-ex", "info program",
                       "-ex", "generate-core-file " + core_tmp,
                       "-ex", "kill",
                       "--args"] + argv
                proc = subprocess.run(gdb, cwd=work, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env,
                                      preexec_fn=set_core_limit(False), timeout=JOB_TIMEOUT)
                core_src = core_tmp if os.path.exists(core_tmp) else None
                if core_src is not None and shutil.which("fallocate"):
                    # gdb writes untouched pages as zeros; punch holes (sparse file)
                    subprocess.run(["fallocate", "--dig-holes", core_src], check=False)
                if core_src is None:
                    return "gdb wrote no core (rc %d); see %s" % (proc.returncode, self.stderr)
        except subprocess.TimeoutExpired:
            return "timeout after %ds" % JOB_TIMEOUT
        finally:
            errf.close()
        truth_src = os.path.join(work, "truth.json")
        if not os.path.exists(truth_src):
            return "scenario wrote no truth file; see %s" % self.stderr
        try:
            json.load(open(truth_src))
        except ValueError as e:
            return "truth file does not parse: %s" % e
        os.rename(core_src, self.core)
        os.rename(truth_src, self.truth)
        shutil.rmtree(work, ignore_errors=True)
        return None

    def manifest_entry(self):
        st = os.stat(self.core) if os.path.exists(self.core) else None
        entry = {
            "interp": self.interp.name,
            "python_version": self.interp.version,
            "scenario": self.scenario,
            "kind": self.kind,
            "core": os.path.abspath(self.core),
            "truth": os.path.abspath(self.truth),
            "stderr": os.path.abspath(self.stderr),
            "exe": self.interp.exe,
            "libpython": self.interp.libpython,
            "sysroot": self.interp.sysroot,
            "debug_dirs": self.interp.debug_dirs,
            "stripped": self.interp.stripped,
            "env": job_env(self.kind),
            "arch": self.interp.arch,
            "size": st.st_size if st else None,
            "disk_bytes": st.st_blocks * 512 if st else None,
            "ok": self.status == "ok",
            "problems": self.problems,
        }
        if self.scenario in VICTIM_SCENARIOS:
            stderr_text = open(self.stderr, errors="replace").read() if os.path.exists(self.stderr) else ""
            entry["died_of_bug"] = "NO_CRASH" not in stderr_text if self.scenario.endswith("_crash") else None
        return entry


def verify_snapshot(core, truth):
    """Check a live-process snapshot against the truth its process wrote at
    start: same pid, every thread it started is in the core, nothing crashed."""
    problems = []
    notes = read_core_notes(core)
    if notes["pid"] != truth["pid"]:
        problems.append("PRPSINFO pid %s != truth pid %s" % (notes["pid"], truth["pid"]))
    lwps = [t[0] for t in notes["threads"]]
    missing = [t["native_id"] for t in truth["threads"] if t["native_id"] not in lwps]
    if missing:
        problems.append("LWPs %s of the truth not in the core (core has %s)" % (missing, lwps))
    if truth["pid"] not in lwps:
        problems.append("main LWP %s not in the core" % truth["pid"])
    if truth.get("expected_findings") != "none" or truth.get("crash_thread_ident") is not None:
        problems.append("a snapshot truth must say the process is healthy")
    if notes["load_segments"] == 0:
        problems.append("no memory in the core")
    return problems, notes


class SnapshotJob(object):
    """One live run of a scenario that never dies, snapshotted SNAPSHOTS_PER_RUN
    times by attaching gdb at random moments; each snapshot is a core with its
    own truth file (the process's start truth plus when it was taken)."""

    def __init__(self, interp, scenario, out):
        self.interp = interp
        self.scenario = scenario
        self.kind = SNAPSHOT_KIND
        self.dir = os.path.join(out, interp.name)
        self.base = os.path.join(self.dir, "%s.%s" % (scenario, SNAPSHOT_KIND))
        self.stamp = self.base + ".stamp"
        self.stderr = self.base + ".stderr.txt"
        self.status = None
        self.problems = []
        self.seconds = 0.0
        self.cached = False

    @property
    def label(self):
        return "%s/%s/%s" % (self.interp.name, self.scenario, self.kind)

    def core(self, i):
        return "%s%d.core" % (self.base, i)

    def truth(self, i):
        return "%s%d.truth.json" % (self.base, i)

    def outputs(self):
        return [p for i in range(1, SNAPSHOTS_PER_RUN + 1) for p in (self.core(i), self.truth(i))]

    def run(self, force, do_verify):
        t0 = time.time()
        key = job_key(self.interp, self.scenario, self.kind + "x%d" % SNAPSHOTS_PER_RUN)
        try:
            cached = open(self.stamp).read().strip() == key and all(map(os.path.exists, self.outputs()))
        except IOError:
            cached = False
        if not force and cached:
            self.cached = True
        else:
            for attempt in (1, 2):
                err = self._generate()
                if err is None:
                    break
                self.problems = ["attempt %d: %s" % (attempt, err)]
            else:
                self.status = "FAIL"
                self.seconds = time.time() - t0
                return
            self.problems = []
            with open(self.stamp, "w") as f:
                f.write(key + "\n")
        if do_verify:
            for i in range(1, SNAPSHOTS_PER_RUN + 1):
                try:
                    problems, _ = verify_snapshot(self.core(i), json.load(open(self.truth(i))))
                except Exception as e:
                    problems = ["verify: %s" % e]
                self.problems += ["snapshot %d: %s" % (i, p) for p in problems]
        self.status = "FAIL" if self.problems else "ok"
        self.seconds = time.time() - t0

    def _generate(self):
        ip = self.interp
        os.makedirs(self.dir, exist_ok=True)
        for p in self.outputs() + [self.stamp, self.stderr]:
            if os.path.exists(p):
                os.unlink(p)
        tag = "%s.%s.%s" % (ip.name, self.scenario, self.kind)
        if ip.sysroot:
            work_in = "%s/%s" % (CHROOT_WORK, tag)
            script_in = "%s/%s" % (CHROOT_SCEN, scenario_script(self.scenario)[0])
        else:
            work_in = os.path.join(os.path.dirname(self.dir), ".work", tag)
            script_in = os.path.join(SCEN_DIR, scenario_script(self.scenario)[0])
        work = ip.host_path(work_in)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        truth_src = os.path.join(work, "truth.json")
        env = dict(os.environ)
        env.update(SCENARIO_ENV)
        rng = random.Random(os.urandom(16))
        errf = open(self.stderr, "wb")
        # chroot(8) execs the interpreter: the child's pid is Python's.
        proc = subprocess.Popen(ip.argv(script_in, work_in + "/truth.json"), cwd=work,
                                stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env,
                                preexec_fn=set_core_limit(False))
        try:
            deadline = time.time() + JOB_TIMEOUT
            while not os.path.exists(truth_src):
                if proc.poll() is not None:
                    return "the process exited with %s before writing its truth; see %s" % (
                        proc.returncode, self.stderr)
                if time.time() > deadline:
                    return "no truth file after %ds" % JOB_TIMEOUT
                time.sleep(0.05)
            try:
                truth = json.load(open(truth_src))
            except ValueError as e:
                return "truth file does not parse: %s" % e
            if truth.get("pid") != proc.pid:
                return "truth pid %s is not the child's pid %s" % (truth.get("pid"), proc.pid)
            started = time.time()
            for i in range(1, SNAPSHOTS_PER_RUN + 1):
                delay = rng.uniform(*SNAPSHOT_DELAY)
                time.sleep(delay)
                err = self._snapshot(proc, self.core(i), errf)
                if err:
                    return "snapshot %d: %s" % (i, err)
                truth["snapshot"] = {
                    "index": i,
                    "of": SNAPSHOTS_PER_RUN,
                    "delay_s": round(delay, 3),
                    "taken_after_s": round(time.time() - started, 3),
                    "method": "gdb attach, generate-core-file, detach",
                }
                with open(self.truth(i), "w") as f:
                    json.dump(truth, f, indent=1, sort_keys=True)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            errf.close()
        shutil.rmtree(work, ignore_errors=True)
        return None

    def _snapshot(self, proc, core, errf):
        if proc.poll() is not None:
            return "the process died (status %s); see %s" % (proc.returncode, self.stderr)
        tmp = core + ".tmp"
        gdb = ["gdb", "-batch", "-nx",
               "-iex", "set pagination off", "-iex", "set confirm off",
               "-iex", "set auto-load no",
               "-iex", "set auto-solib-add off",
               "-iex", "set debuginfod enabled off",
               "-p", str(proc.pid),
               "-ex", "generate-core-file " + tmp,
               "-ex", "detach"]
        errf.flush()
        try:
            subprocess.run(gdb, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "gdb timed out after %ds" % JOB_TIMEOUT
        if not os.path.exists(tmp):
            return "gdb wrote no core; see %s" % self.stderr
        if shutil.which("fallocate"):
            subprocess.run(["fallocate", "--dig-holes", tmp], check=False)
        os.rename(tmp, core)
        return None

    def manifest_entries(self):
        entries = []
        for i in range(1, SNAPSHOTS_PER_RUN + 1):
            core = self.core(i)
            st = os.stat(core) if os.path.exists(core) else None
            entries.append({
                "interp": self.interp.name,
                "python_version": self.interp.version,
                "scenario": self.scenario,
                "kind": self.kind,
                "snapshot": i,
                "core": os.path.abspath(core),
                "truth": os.path.abspath(self.truth(i)),
                "stderr": os.path.abspath(self.stderr),
                "exe": self.interp.exe,
                "libpython": self.interp.libpython,
                "sysroot": self.interp.sysroot,
                "debug_dirs": self.interp.debug_dirs,
                "stripped": self.interp.stripped,
                "env": SCENARIO_ENV,
                "arch": self.interp.arch,
                "size": st.st_size if st else None,
                "disk_bytes": st.st_blocks * 512 if st else None,
                "ok": self.status == "ok",
                "problems": self.problems,
            })
        return entries


def build_spoolext(interp, out):
    """Compile scenarios/spoolext.c for `interp`; returns the folder the
    process imports it from (as the process sees it).  Rebuilt when the
    source or the headers change."""
    if interp.sysroot:
        inside = CHROOT_EXT
        folder = interp.host_path(CHROOT_EXT)
    else:
        folder = os.path.join(out, ".ext", interp.name)
        inside = folder
    os.makedirs(folder, exist_ok=True)
    includes = interp.include_dirs()
    source = os.path.join(SCEN_DIR, SPOOLEXT_SOURCE)
    key = hashlib.sha256()
    key.update(sha256_file(source).encode())
    key.update(("inc=%s\n" % file_identity(os.path.join(includes[0], "Python.h"))).encode())
    stamp = os.path.join(folder, "spoolext.stamp")
    target = os.path.join(folder, "spoolext.so")
    try:
        if open(stamp).read().strip() == key.hexdigest() and os.path.exists(target):
            return inside
    except IOError:
        pass
    argv = ["gcc", "-shared", "-fPIC", "-O2", "-g", "-Wall", "-fno-strict-aliasing"]
    argv += ["-I" + d for d in includes] + [source, "-o", target + ".tmp"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SetupError("%s: building spoolext failed:\n%s" % (interp.name, proc.stdout.decode(errors="replace")))
    os.rename(target + ".tmp", target)
    with open(stamp, "w") as f:
        f.write(key.hexdigest() + "\n")
    return inside


def prepare_chroot(interp):
    dst = interp.host_path(CHROOT_SCEN)
    os.makedirs(dst, exist_ok=True)
    for fn in os.listdir(SCEN_DIR):
        if fn.endswith(".py"):
            shutil.copy2(os.path.join(SCEN_DIR, fn), os.path.join(dst, fn))
    os.makedirs(interp.host_path(CHROOT_WORK), exist_ok=True)


def not_run_reason(interp, scenario):
    """Why `scenario` does not run on `interp` (its version is below the scenario's
    minimum; a C extension scenario on arm64), or None when it runs."""
    if interp.arch == "aarch64" and scenario in VICTIM_SCENARIOS:
        return ARM64_EXCLUDED["victims"]
    minimum = SCENARIO_MIN_VERSION.get(scenario)
    if minimum is not None and tuple(int(x) for x in interp.version.split(".")[:2]) < minimum:
        return "needs Python %s+, this is %s" % (".".join(map(str, minimum)), interp.version)
    return None


def applies(interp, scenario):
    """Whether `scenario` runs on `interp`."""
    return not_run_reason(interp, scenario) is None


def kinds_for(interp, scenario, kinds):
    """The kinds of core made of `scenario` on `interp`, out of `kinds`: kernel and gcore
    natively, qemu (and qemu_pac for QEMU_PAC_JOBS) under the emulator."""
    if interp.emulator:
        return [k for k in kinds if k == "qemu"
                or (k == "qemu_pac" and (interp.name, scenario) in QEMU_PAC_JOBS)]
    return [k for k in kinds if k in KINDS]


def check_core_pattern(kinds):
    if "kernel" not in kinds:
        return
    pat = open("/proc/sys/kernel/core_pattern").read().strip()
    if pat.startswith("|") or "/" in pat or not pat.startswith("core"):
        raise SetupError("kernel core_pattern is %r; kernel cores need 'core' (cores land in the cwd).\n"
                         "  fix: echo core > /proc/sys/kernel/core_pattern  (or use --kind gcore)" % pat)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0


def merge_manifest(path, fresh, key, order, only_if_any=False):
    """Write `path`: the entries of `fresh` and those of the existing file
    whose cores still exist and that `fresh` does not replace, sorted by
    `order`. With `only_if_any`, a file that does not exist yet is written
    only when there is something to list.  Returns `path`."""
    entries = {}
    if os.path.exists(path):
        try:
            for e in json.load(open(path)):
                if os.path.exists(e.get("core", "")):
                    # entries from before the arm64 interpreters are all x86-64
                    e.setdefault("arch", "x86_64")
                    entries[key(e)] = e
        except Exception:
            pass
    for e in fresh:
        entries[key(e)] = e
    if only_if_any and not entries and not os.path.exists(path):
        return path
    with open(path + ".tmp", "w") as f:
        json.dump(sorted(entries.values(), key=order), f, indent=1)
    os.rename(path + ".tmp", path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("PYMORTEM_CORES") or os.path.join(HERE, "generated"))
    ap.add_argument("--interp", nargs="+", action="extend", choices=INTERPS)
    ap.add_argument("--scenario", nargs="+", action="extend",
                    choices=SCENARIOS + SNAPSHOT_SCENARIOS + VICTIM_SCENARIOS)
    ap.add_argument("--victims", action="store_true",
                    help="also run the C extension's reference-counting bug scenarios (spool_*)")
    ap.add_argument("--kind", nargs="+", action="extend", choices=KINDS + list(QEMU_KINDS) + [SNAPSHOT_KIND])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="ignore the cache stamps")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    interps = args.interp or INTERPS
    chosen = args.scenario or SCENARIOS + SNAPSHOT_SCENARIOS
    if args.victims:
        chosen = chosen + [s for s in VICTIM_SCENARIOS if s not in chosen]
    kinds = args.kind or KINDS + list(QEMU_KINDS) + [SNAPSHOT_KIND]
    scenarios = [s for s in chosen if s in SCENARIOS or s in VICTIM_SCENARIOS]
    snapshot_scenarios = [s for s in chosen if s in SNAPSHOT_SCENARIOS] if SNAPSHOT_KIND in kinds else []
    kinds = [k for k in kinds if k in KINDS or k in QEMU_KINDS] if scenarios else []
    out = os.path.abspath(args.out)
    t0 = time.time()

    try:
        if any(name not in ARM64_INTERPS for name in interps):
            check_core_pattern(kinds)
        if ("gcore" in kinds or snapshot_scenarios) and not shutil.which("gdb"):
            raise SetupError("gdb not found (apt-get install gdb, or run setup-interpreters.sh)")
        def set_up(name):
            ip = Interp(name)
            ip.probe()
            if ip.sysroot:
                prepare_chroot(ip)
            if any(s in VICTIM_SCENARIOS and applies(ip, s) for s in scenarios):
                ip.spoolext_dir = build_spoolext(ip, os.path.abspath(args.out))
            return ip

        # in parallel: a probe under QEMU takes about 2 s
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            ips = list(ex.map(set_up, interps))
    except SetupError as e:
        sys.stderr.write("generate.py: ERROR: %s\n" % e)
        return 2

    os.makedirs(out, exist_ok=True)
    jobs = [Job(ip, s, k, out) for ip in ips for s in scenarios if applies(ip, s)
            for k in kinds_for(ip, s, kinds)]
    for ip in ips:
        reasons = {}
        for s in scenarios:
            reason = not_run_reason(ip, s)
            if reason:
                reasons.setdefault(reason, []).append(s)
        for reason, names in reasons.items():
            if len(names) > 3:
                names = ["%s (%d scenarios)" % (os.path.commonprefix(names) + "*", len(names))]
            sys.stderr.write("%s/%s: not run (%s)\n" % (ip.name, " ".join(names), reason))
    # A snapshot attaches gdb to the live process: under QEMU that is the emulator's.
    snapshot_jobs = [SnapshotJob(ip, s, out) for ip in ips for s in snapshot_scenarios if not ip.emulator]
    for ip in ips:
        if ip.emulator and snapshot_scenarios:
            sys.stderr.write("%s/%s: not run (a snapshot would be QEMU's own process)\n"
                             % (ip.name, " ".join(snapshot_scenarios)))
    # big/slow ones first for better packing
    order = {"busy_snapshot": -1, "busy_heap": 0, "recursion": 1}
    jobs_sorted = sorted(jobs + snapshot_jobs, key=lambda j: (j.kind not in QEMU_KINDS, order.get(j.scenario, 5),
                                                              j.kind != "gcore"))
    lock = threading.Lock()
    done = [0]

    def run(job):
        job.run(args.force, not args.no_verify)
        with lock:
            done[0] += 1
            sys.stderr.write("[%3d/%d] %-5s %-45s %5.1fs%s%s\n" % (
                done[0], len(jobs_sorted), job.status, job.label, job.seconds,
                " (cached)" if job.cached else "",
                ("  " + "; ".join(job.problems)) if job.problems else ""))
            sys.stderr.flush()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        list(ex.map(run, jobs_sorted))

    # Three manifests, each merged with the entries of the existing one that
    # this run did not touch: the crash scenarios (manifest.json); the
    # snapshots of live processes (snapshots.json: their truth holds no stacks
    # and no signal, which the crash scenarios' tests expect); the C
    # extension's bug scenarios (victims.json: victims, no stacks).
    interp_order = lambda e: INTERPS.index(e["interp"]) if e["interp"] in INTERPS else 99  # noqa: E731
    mpath = merge_manifest(
        os.path.join(out, "manifest.json"),
        [j.manifest_entry() for j in jobs if j.scenario not in VICTIM_SCENARIOS],
        key=lambda e: (e["interp"], e["scenario"], e["kind"]),
        order=lambda e: (interp_order(e),
                         SCENARIOS.index(e["scenario"]) if e["scenario"] in SCENARIOS else 99, e["kind"]))
    spath = merge_manifest(
        os.path.join(out, "snapshots.json"),
        [e for j in snapshot_jobs for e in j.manifest_entries()],
        key=lambda e: (e["interp"], e["scenario"], e["snapshot"]),
        order=lambda e: (interp_order(e), e["scenario"], e["snapshot"]))
    merge_manifest(
        os.path.join(out, "victims.json"),
        [j.manifest_entry() for j in jobs if j.scenario in VICTIM_SCENARIOS],
        key=lambda e: (e["interp"], e["scenario"], e["kind"]),
        order=lambda e: (interp_order(e), VICTIM_SCENARIOS.index(e["scenario"]), e["kind"]),
        only_if_any=True)

    # summary table
    print()
    hdr = "%-18s" % "interp" + "".join("%-20s" % s[:19] for s in scenarios + snapshot_scenarios)
    print(hdr)
    total = disk = 0
    failures = []
    letter = {"kernel": "k", "gcore": "g", "qemu": "q", "qemu_pac": "p"}
    for ip in ips:
        row = "%-18s" % ip.name
        for s in scenarios:
            cells = []
            for k in kinds:
                if (k in QEMU_KINDS) != bool(ip.emulator):
                    continue
                found = [x for x in jobs if x.interp is ip and x.scenario == s and x.kind == k]
                if not found:
                    if k != "qemu_pac":  # made for a few scenarios only
                        cells.append("%s-" % letter[k])
                    continue
                j = found[0]
                if j.status == "ok":
                    st = os.stat(j.core)
                    total += st.st_size
                    disk += st.st_blocks * 512
                    cells.append("%s%.0fM" % (letter[k], st.st_size / 1048576.0))
                else:
                    cells.append("%s:FAIL" % letter[k])
                    failures.append(j)
            row += "%-20s" % " ".join(cells)
        for s in snapshot_scenarios:
            found = [x for x in snapshot_jobs if x.interp is ip and x.scenario == s]
            if not found:
                row += "%-20s" % "s-"
                continue
            j = found[0]
            if j.status == "ok":
                sizes = [os.stat(j.core(i)) for i in range(1, SNAPSHOTS_PER_RUN + 1)]
                total += sum(st.st_size for st in sizes)
                disk += sum(st.st_blocks * 512 for st in sizes)
                row += "%-20s" % ("s%dx%.0fM" % (len(sizes), max(st.st_size for st in sizes) / 1048576.0))
            else:
                row += "%-20s" % "s:FAIL"
                failures.append(j)
        print(row)
    jobs = jobs + snapshot_jobs
    n_ok = sum(1 for j in jobs if j.status == "ok")
    print()
    print("cores: %d ok, %d failed, %d reused from cache; apparent size %s, on disk %s; %.1fs total"
          % (n_ok, len(failures), sum(1 for j in jobs if j.cached), human(total), human(disk), time.time() - t0))
    print("manifest: %s%s" % (mpath, " (snapshots: %s)" % spath if snapshot_jobs else ""))
    for j in failures:
        print("FAIL %s: %s" % (j.label, "; ".join(j.problems)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
