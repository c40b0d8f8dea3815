# Shared helper for the subinterp_* scenarios (3.12+): chains of
# subinterpreters, each level entered with run_string from the level before,
# on one OS thread.  Importable in a subinterpreter (it must not import
# _truth, whose ctypes isolated subinterpreters refuse).
#
# Every level records its own thread state's frames (sys._getframe() and
# f_back stay inside one thread state) into records/<chain>.<level>.json, with
# its interpreter id and OS thread; the innermost frame's line is the line of
# the call the level sits in when the process dies (marked "# PARK:run",
# "# PARK:read" or "# CRASH").  A parked level blocks in os.read() on a pipe
# that is never written.  The finisher (the main thread, at the end of its own
# chain) waits until every other chain's innermost level is blocked in read(),
# merges the records into the truth file and aborts.
import json
import os
import sys
import threading
import time

try:
    import _interpreters as _interp  # 3.13+
except ImportError:
    import _xxsubinterpreters as _interp  # 3.12

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS = "records"
SYS_READ = 0  # x86-64


def interpreter_id():
    current = _interp.get_current()
    if isinstance(current, tuple):  # 3.13+: (id, whence)
        current = current[0]
    return int(current)


def marker_line(marker, filename):
    needle = "# " + marker
    with open(filename) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith(needle):
                return i
    raise ValueError("marker %r not found in %s" % (marker, filename))


def own_frames(frame, marker):
    """The frames of this thread state from `frame` outward, innermost first;
    the innermost line is the marked line of `frame`'s file."""
    out = []
    f = frame
    while f is not None:
        out.append({"function": f.f_code.co_name, "file": f.f_code.co_filename,
                    "line": f.f_lineno})
        f = f.f_back
    out[0]["line"] = marker_line(marker, frame.f_code.co_filename)
    return out


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def record(cfg, frame, marker):
    rec = {
        "chain": cfg["chain"],
        "level": cfg["level"],
        "interpreter_id": interpreter_id(),
        "ident": threading.get_ident(),
        "native_id": threading.get_native_id(),
        "stack": own_frames(frame, marker),
    }
    os.makedirs(RECORDS, exist_ok=True)
    write_json(os.path.join(RECORDS, "%d.%d.json" % (cfg["chain"], cfg["level"])), rec)
    return rec


def enter_next(cfg):
    """Create the next interpreter of the chain on this thread and run the next level in it."""
    nxt = dict(cfg, level=cfg["level"] + 1)
    interp = _interp.create()
    script = "import sys; sys.path.insert(0, %r); import _subinterp; _subinterp.level(%r)" % (HERE, nxt)
    record(cfg, sys._getframe(), "PARK:run")
    _interp.run_string(interp, script)  # PARK:run


def level(cfg):
    """One level of a chain (called in the level's interpreter)."""
    if cfg["level"] < cfg["depth"]:
        enter_next(cfg)
    elif cfg.get("finisher"):
        finish(cfg)
    else:
        record(cfg, sys._getframe(), "PARK:read")
        os.read(cfg["block_fd"], 1)  # PARK:read


def blocked_in_read(tid, fd):
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            fields = f.read().split()
    except (IOError, OSError):
        return False
    return len(fields) >= 2 and fields[0] == str(SYS_READ) and int(fields[1], 16) == fd


def finish(cfg, timeout=60.0):
    """Wait for every parked chain, write the truth and abort (on the main thread)."""
    mine = record(cfg, sys._getframe(), "CRASH")
    expected = cfg["expected_records"]
    deadline = time.time() + timeout
    while True:
        names = set(os.listdir(RECORDS)) if os.path.isdir(RECORDS) else set()
        if all("%d.%d.json" % (c, l) in names for c, l in expected):
            records = []
            for c, l in expected:
                with open(os.path.join(RECORDS, "%d.%d.json" % (c, l))) as f:
                    records.append(json.load(f))
            parked = [r for r in records if r["level"] == cfg["depths"][str(r["chain"])]
                      and r["native_id"] != mine["native_id"]]
            if not os.path.isdir("/proc/self/task"):
                # No /proc (a chroot without it): a parked level writes its
                # record right before its read(), so a moment later it is in it.
                time.sleep(0.5)
                break
            if all(blocked_in_read(r["native_id"], cfg["block_fd"]) for r in parked):
                break
        if time.time() > deadline:
            raise RuntimeError("the chains did not park within %ss" % timeout)
        time.sleep(0.02)
    write_truth(cfg, records, mine)
    os.abort()  # CRASH


def write_truth(cfg, records, mine):
    with open(cfg["base_truth"]) as f:
        truth = json.load(f)
    # Outermost interpreter first on each OS thread, as the chain entered them.
    records.sort(key=lambda r: (r["chain"], r["level"]))
    threads = []
    for chain in sorted(set(r["chain"] for r in records)):
        states = [r for r in records if r["chain"] == chain]
        inner = states[-1]
        ident = inner["ident"]
        threads.append({
            "ident": ident,
            "native_id": inner["native_id"],
            "name": cfg["names"][str(chain)],
            "is_main": ident == mine["ident"],
            "writer": ident == mine["ident"],
            "is_crash_thread": ident == mine["ident"],
            # The thread's current (innermost) thread state's frames.
            "stack": inner["stack"],
        })
    truth.update({
        "crash_thread_ident": mine["ident"],
        "crash_frame": mine["stack"][0],
        "threads": threads,
        "thread_states": records,
    })
    write_json(cfg["truth_path"], truth)
    sys.stdout.flush()
    sys.stderr.flush()


def leak_thread_state():
    """A thread state bound to a thread that then ends: it stays in the main
    interpreter's list, matching no thread of the core.  The thread's
    pthread_t is free for the next thread to reuse."""
    import ctypes

    api = ctypes.pythonapi
    api.PyInterpreterState_Get.restype = ctypes.c_void_p
    api.PyThreadState_New.restype = ctypes.c_void_p
    api.PyThreadState_New.argtypes = [ctypes.c_void_p]
    made = {}

    def leak():
        made["thread_state"] = api.PyThreadState_New(api.PyInterpreterState_Get())
        made["interpreter_id"] = interpreter_id()
        made["native_id"] = threading.get_native_id()
        made["ident"] = threading.get_ident()

    t = threading.Thread(target=leak)
    t.start()
    t.join()
    return made


def run_scenario(scenario, depths, notes=None, orphan=False):
    """Main interpreter, main thread: start the chains and finish.

    depths[0] is the main thread's own chain (it finishes at its innermost
    level); depths[1:] are worker threads whose innermost level parks.
    orphan: first leave a thread state whose thread has ended."""
    import _truth  # main interpreter only: ctypes

    orphans = [leak_thread_state()] if orphan else []

    read_fd, write_fd = os.pipe()  # never written: a parked level blocks on read_fd
    chains = list(range(len(depths)))
    names = dict((str(c), "MainThread" if c == 0 else "chain-%d" % c) for c in chains)
    base = {
        "scenario": scenario,
        "python_version": _truth.platform.python_version(),
        "hexversion": sys.hexversion,
        "implementation_executable": sys.executable,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": sys.argv,
        "expected_signal": 6,
        "expected_fatal_error": None,
        "objects": {"depths": depths, "block_fd": read_fd, "orphan_thread_states": orphans},
        "notes": notes,
    }
    base_path = _truth.TRUTH_PATH + ".base"
    write_json(base_path, base)
    common = {
        "block_fd": read_fd,
        "keep_fd": write_fd,
        "expected_records": [(c, l) for c in chains for l in range(depths[c] + 1)],
        "depths": dict((str(c), depths[c]) for c in chains),
        "names": names,
        "base_truth": base_path,
        "truth_path": _truth.TRUTH_PATH,
    }
    for c in chains[1:]:
        cfg = dict(common, chain=c, level=0, depth=depths[c], finisher=False)
        t = threading.Thread(name=names[str(c)], target=level, args=(cfg,))
        t.daemon = True
        t.start()
    level(dict(common, chain=0, level=0, depth=depths[0], finisher=True))
