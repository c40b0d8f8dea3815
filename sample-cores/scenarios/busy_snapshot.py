# Scenario "busy_snapshot": a healthy, busy process that never dies.
#
# Several threads sort, extend and copy big lists, resize dicts, build tuples
# and make cyclic garbage (with low GC thresholds, so collections run all the
# time). generate.py attaches gdb at random moments and writes a core each
# time, then kills the process: every core is a snapshot of a healthy process
# caught mid-operation, and a forensic check must raise no error or warning on
# any of them.
#
# The process cannot write its truth "just before dying": it writes what is
# known at start (pid, version, every thread's ident and LWP, that the heap is
# healthy) once every worker runs, then works until killed.
from __future__ import print_function

import gc
import json
import os
import platform
import random
import sys
import threading

import _truth

# Sizes: big enough that list and dict operations take a good share of the
# time, small enough that a core stays a few tens of MiB.
BIG = 20000
DICT_KEYS = 5000


def sorter(rng):
    data = [rng.random() for _ in range(BIG)]
    words = ["w%06d" % rng.randrange(10 ** 6) for _ in range(BIG // 4)]
    while True:
        ordered = sorted(data)
        data = ordered[::-1]
        data.sort()
        words.sort(key=len)
        rng.shuffle(data)


def extender(rng):
    base = list(range(BIG))
    objects = [(i, str(i)) for i in range(BIG // 4)]
    while True:
        grown = []
        for _ in range(4):
            grown.extend(base)
        grown.extend(objects)
        grown += objects
        copied = list(grown)
        copied[BIG // 2:BIG] = objects
        del copied[:BIG]
        grown = None
        copied = None
        sample = [x for x in objects if x[0] % 3 == 0]
        sample.insert(0, base)


def dict_resizer(rng):
    keys = ["key%d" % i for i in range(DICT_KEYS)]
    while True:
        d = {}
        for i, k in enumerate(keys):
            d[k] = (i, k)
        other = dict(d)
        other.update((k + "x", v) for k, v in d.items())
        for k in keys[::2]:
            del d[k]
        d.clear()
        ints = dict((i, [i]) for i in range(DICT_KEYS))
        ints = None


def tuple_builder(rng):
    values = list(range(BIG))
    while True:
        whole = tuple(values)
        pairs = list(zip(values, values[1:]))
        small = [(i, i + 1, str(i)) for i in range(BIG // 4)]
        nested = tuple((a, (b,)) for a, b in pairs[:BIG // 4])
        whole = pairs = small = nested = None


class Node(object):
    def __init__(self, payload):
        self.payload = payload
        self.peer = None


def cycle_maker(rng):
    while True:
        for _ in range(200):
            a, b = Node([1, 2, 3]), Node({"k": (4, 5)})
            a.peer, b.peer = b, a
            lst = [a, b]
            lst.append(lst)
            d = {"self": None}
            d["self"] = d
        if rng.random() < 0.05:
            gc.collect()


WORKERS = [
    ("sorter", sorter),
    ("extender", extender),
    ("dict_resizer", dict_resizer),
    ("tuple_builder", tuple_builder),
    ("cycle_maker", cycle_maker),
]


class Worker(threading.Thread):
    def __init__(self, name, body, seed):
        threading.Thread.__init__(self, name=name)
        self.daemon = True
        self.body = body
        self.seed = seed
        self.running = threading.Event()

    def run(self):
        _truth.register_thread()
        self.running.set()
        self.body(random.Random(self.seed))


def write_start_truth(workers, seed):
    """What is known at start: the process, its threads, that it is healthy."""
    names = dict((w.ident, w.name) for w in workers)
    names[_truth.MAIN_IDENT] = "MainThread"
    threads = []
    for ident in sorted(names):
        threads.append({
            "ident": ident,
            "native_id": _truth.NATIVE_IDS.get(ident),
            "name": names[ident],
            "is_main": ident == _truth.MAIN_IDENT,
        })
    truth = {
        "scenario": "busy_snapshot",
        "python_version": platform.python_version(),
        "hexversion": sys.hexversion,
        "implementation_executable": sys.executable,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": sys.argv,
        # Alive when snapshotted: no signal killed it, no thread crashed.
        "expected_signal": None,
        "expected_fatal_error": None,
        "crash_thread_ident": None,
        "healthy": True,
        "expected_findings": "none",
        "threads": threads,
        "objects": {"workload_seed": seed, "gc_thresholds": list(gc.get_threshold())},
        "notes": "snapshot of a live process; stacks are not known in advance",
    }
    tmp = _truth.TRUTH_PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, _truth.TRUTH_PATH)


def main():
    seed = int(os.environ.get("PYMORTEM_SNAPSHOT_SEED") or random.randrange(1 << 30))
    # Collections as often as the collector allows: a snapshot then often
    # lands inside one.
    gc.set_threshold(100, 2, 2)
    # Switch threads often, so that a snapshot finds each kind of work in flight.
    if hasattr(sys, "setswitchinterval"):
        sys.setswitchinterval(0.0005)
    else:
        sys.setcheckinterval(20)
    workers = [Worker(name, body, seed + i) for i, (name, body) in enumerate(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.running.wait()
    write_start_truth(workers, seed)
    # The main thread works too, then waits for the kill.
    extender(random.Random(seed - 1))


if __name__ == "__main__":
    main()
