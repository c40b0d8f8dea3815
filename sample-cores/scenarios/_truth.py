# Shared helper for the sample-core scenarios.  Python 2.7 and 3.6-3.14.
#
# A scenario builds a known state, calls write_truth() (which snapshots every
# thread's Python stack and writes the JSON truth file atomically) and then dies.
#
# Importing this module chdir()s into the directory of the truth file (argv[1]):
# kernel cores land in the cwd, and chroot(8) always starts in "/".
from __future__ import print_function

import ctypes
import json
import os
import platform
import sys
import threading
import time

try:
    import thread as _thread_mod  # py2
except ImportError:  # py3
    import _thread as _thread_mod

HELPER_FILE = os.path.abspath(__file__)
if HELPER_FILE.endswith(("c", "o")) and HELPER_FILE[-4:-1] == ".py":
    HELPER_FILE = HELPER_FILE[:-1]

if len(sys.argv) < 2:
    sys.stderr.write("usage: %s TRUTH.json\n" % sys.argv[0])
    sys.exit(2)
TRUTH_PATH = os.path.abspath(sys.argv[1])
os.chdir(os.path.dirname(TRUTH_PATH))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# gettid: 186 on x86-64, 178 on aarch64 (the arm64 interpreters run under QEMU's
# user-mode emulator, which reports the guest's machine)
SYS_gettid = 178 if platform.machine() == "aarch64" else 186

# Py_IncRef / Py_DecRef taking raw addresses, so no temporary reference is added.
pyapi = ctypes.pythonapi
pyapi.Py_IncRef.argtypes = [ctypes.c_void_p]
pyapi.Py_IncRef.restype = None
pyapi.Py_DecRef.argtypes = [ctypes.c_void_p]
pyapi.Py_DecRef.restype = None

PY_MAJOR_MINOR = sys.version_info[:2]


def gettid():
    """Kernel LWP id of the calling thread."""
    return int(_libc.syscall(SYS_gettid))


def get_ident():
    """pthread_self() of the calling thread (== threading ident)."""
    return _thread_mod.get_ident()


# ident -> native id, filled by every thread that calls register_thread()
NATIVE_IDS = {}
MAIN_IDENT = get_ident()


def register_thread():
    NATIVE_IDS[get_ident()] = gettid()


register_thread()


def marker_line(marker, filename=None):
    """Line number (1-based) of the line containing the comment '# <marker>'."""
    if filename is None:
        filename = sys._getframe(1).f_code.co_filename
    needle = "# " + marker
    with open(filename) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith(needle):
                return i
    raise ValueError("marker %r not found in %s" % (marker, filename))


_SCENARIO_DIR = os.path.dirname(os.path.abspath(__file__))


def _simple_locals(frame):
    """repr() of the locals whose repr is unambiguous in a core: None, bools,
    small ints and short ASCII strings, in frames of the scenario scripts."""
    if os.path.dirname(os.path.abspath(frame.f_code.co_filename)) != _SCENARIO_DIR:
        return None
    out = {}
    try:
        items = list(frame.f_locals.items())
    except Exception:
        return None
    for name, value in items:
        if value is None or value is True or value is False:
            out[name] = repr(value)
        elif type(value) is int and abs(value) < 2 ** 60:
            out[name] = repr(value)
        elif type(value) is str and len(value) <= 40 and all(32 <= ord(c) < 127 for c in value):
            out[name] = repr(value)
    return out


def _position(frame):
    """[line, end_line, column, end_column] of the frame's instruction (3.11+
    location tables; None where the table has none), or None before 3.11."""
    code = frame.f_code
    if not hasattr(code, "co_positions") or frame.f_lasti < 0:
        return None
    # One position per 2-byte code unit, cache entries included.
    for i, position in enumerate(code.co_positions()):
        if i == frame.f_lasti // 2:
            return list(position)
    return None


def _frame_list(frame, positions=False):
    out = []
    while frame is not None:
        code = frame.f_code
        entry = {
            "function": code.co_name,
            "file": code.co_filename,
            "line": frame.f_lineno,
        }
        if positions:
            position = _position(frame)
            if position is not None:
                entry["position"] = position
        simple = _simple_locals(frame)
        if simple is not None:
            entry["locals"] = simple
        out.append(entry)
        frame = frame.f_back
    return out


def _is_helper(fr):
    fn = fr["file"]
    if fn.endswith((".pyc", ".pyo")):
        fn = fn[:-1]
    return os.path.basename(fn) == "_truth.py"


def snapshot_stacks(positions=False):
    """{ident: [frames innermost first]} for every thread; with `positions`,
    each 3.11+ frame's source position too."""
    frames = sys._current_frames()
    return dict((ident, _frame_list(f, positions)) for ident, f in frames.items())


def wait_until_parked(idents, timeout=20.0, must_contain=None):
    """Poll until the Python stacks of `idents` are identical for several polls
    (the threads are blocked).  must_contain: {ident: function name that must be
    on that thread's stack}."""
    deadline = time.time() + timeout
    stable = 0
    last = None
    while time.time() < deadline:
        snap = snapshot_stacks()
        cur = {}
        ok = True
        for ident in idents:
            st = snap.get(ident)
            if st is None:
                ok = False
                break
            if must_contain and must_contain.get(ident):
                if must_contain[ident] not in [fr["function"] for fr in st]:
                    ok = False
                    break
            cur[ident] = tuple((fr["function"], fr["file"], fr["line"]) for fr in st)
        if ok and cur == last:
            stable += 1
            if stable >= 3:
                return
        else:
            stable = 0
        last = cur if ok else None
        time.sleep(0.02)
    raise RuntimeError("threads did not park within %ss" % timeout)


def _thread_names():
    names = {}
    for t in threading.enumerate():
        if t.ident is not None:
            names[t.ident] = t.name
    return names


def gc_stats_now():
    """The collector's totals per generation as gc.get_stats() gives them
    (3.4+; from 3.15 the newest record of each generation's ring), with the
    monotonic clock's reading in nanoseconds (time.perf_counter_ns(), 3.7+:
    the clock of 3.15's collection timestamps); None before 3.4."""
    try:
        import gc
        stats = gc.get_stats()
    except (AttributeError, ImportError):
        return None
    now = getattr(time, "perf_counter_ns", None)
    return {"get_stats": stats, "perf_counter_ns": now() if now else None}


def write_truth(scenario, objects=None, expected_signal=6, expected_fatal_error=None,
                crash_marker=None, crash_thread_ident=None, notes=None, extra=None,
                final_lines=None, gc_stats=True):
    """Snapshot all stacks and write the truth JSON atomically.

    The writer thread's stack is recorded WITHOUT the frames of this helper; its
    innermost remaining frame is the scenario function that called write_truth().
    If crash_marker is given, that frame's line is replaced by the line carrying
    the comment '# <crash_marker>' in the caller's file: the line where the
    process will actually die (os.abort(), the bad read, ...), so the truth
    equals what the core shows.

    final_lines: {ident: (function, marker)} for threads that will still move
    from their current line to another line of the SAME function before the
    crash (e.g. a thread that does its part after the truth was written and then
    parks): the innermost frame of that function gets the marker's line.
    """
    caller = sys._getframe(1)
    writer = get_ident()
    stacks = snapshot_stacks(positions=True)
    names = _thread_names()
    if crash_thread_ident is None:
        crash_thread_ident = writer
    threads = []
    for ident in sorted(stacks):
        st = stacks[ident]
        entry = {
            "ident": ident,
            "native_id": NATIVE_IDS.get(ident),
            "name": names.get(ident, "<unknown>"),
            "is_main": ident == MAIN_IDENT,
            "writer": ident == writer,
            "is_crash_thread": ident == crash_thread_ident,
        }
        if ident == writer:
            skipped = 0
            while st and _is_helper(st[0]):
                st = st[1:]
                skipped += 1
            entry["helper_frames_skipped"] = skipped
            if st:
                # The writer dies at another instruction than the snapshot's.
                st[0] = dict(st[0])
                st[0].pop("position", None)
            if crash_marker and st:
                st[0]["line"] = marker_line(crash_marker, caller.f_code.co_filename)
        if final_lines and ident in final_lines:
            fn, marker = final_lines[ident]
            st = [dict(fr) for fr in st]
            for fr in st:
                if fr["function"] == fn:
                    fr["line"] = marker_line(marker, caller.f_code.co_filename)
                    fr.pop("position", None)
                    break
            entry["line_patched"] = fn
        entry["stack"] = st
        threads.append(entry)
    crash_frame = None
    for t in threads:
        if t["ident"] == crash_thread_ident and t["stack"]:
            crash_frame = t["stack"][0]
    truth = {
        "scenario": scenario,
        "python_version": platform.python_version(),
        "hexversion": sys.hexversion,
        "implementation_executable": sys.executable,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": sys.argv,
        "expected_signal": expected_signal,
        "expected_fatal_error": expected_fatal_error,
        "crash_thread_ident": crash_thread_ident,
        "crash_frame": crash_frame,
        "threads": threads,
        "objects": objects or {},
        "notes": notes,
    }
    if extra:
        truth.update(extra)
    # The collector's totals are read once the rest is encoded (encoding
    # allocates enough containers to run a collection) and spliced into the
    # text with few allocations: they are the ones the process dies with
    # unless the scenario works on after writing its truth.
    # gc_stats=False (the victim scenarios) allocates nothing more than the
    # encoding: their freed victims' blocks must not be taken by the truth.
    text = None
    if gc_stats:
        text = json.dumps(truth, indent=1, sort_keys=True)
        truth["gc_stats"] = gc_stats_now()
        text = (text[:text.rindex("}")].rstrip() + ',\n "gc_stats": '
                + json.dumps(truth["gc_stats"]) + "\n}")
    tmp = TRUTH_PATH + ".tmp"
    with open(tmp, "w") as f:
        if text is None:
            json.dump(truth, f, indent=1, sort_keys=True)
        else:
            f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, TRUTH_PATH)
    sys.stdout.flush()
    sys.stderr.flush()
    return truth


class ParkedThread(threading.Thread):
    """A worker that registers its native id, runs `target` (which should
    block forever) and exposes a `ready` event set just before it parks."""

    def __init__(self, name, target, args=()):
        threading.Thread.__init__(self, name=name)
        self.daemon = True
        self._t = target
        self._a = args
        self.ready = threading.Event()

    def run(self):
        register_thread()
        self.ready.set()
        self._t(*self._a)


def start_parked(specs):
    """specs: list of (name, target, args, function-name-that-parks).
    Starts them, waits until each is blocked, returns the thread objects."""
    ths = []
    for name, target, args, _fn in specs:
        t = ParkedThread(name, target, args)
        t.start()
        ths.append(t)
    for t in ths:
        t.ready.wait()
    wait_until_parked([t.ident for t in ths],
                      must_contain=dict((t.ident, s[3]) for t, s in zip(ths, specs)))
    return ths


def tuple_freelist_index(size):
    """Index of the tuple free list that holds tuples of `size` items."""
    if PY_MAJOR_MINOR >= (3, 11):
        return size - 1
    return size


def drain_tuple_freelist(size, count=2100):
    """Allocate `count` fresh tuples of `size` items (the cap is 2000 per list) and
    keep them, so the free list for that size is empty afterwards."""
    keep = []
    src = list(range(size))
    for _ in range(count):
        keep.append(tuple(src))
    return keep


def freelist_link_field():
    if PY_MAJOR_MINOR >= (3, 14):
        return "first 8 bytes of the object (ob_refcnt word)"
    return "ob_item[0] (offset 24)"

