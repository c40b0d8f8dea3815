# Scenario "recursion": the main thread recurses DEPTH levels deep in
# recurse_deeply() and aborts from the deepest frame.  One extra worker is
# parked so the core has more than one thread.
import os
import sys
import threading

import _truth

DEPTH = 1000
sys.setrecursionlimit(DEPTH + 500)
forever = threading.Event()


def idle_worker():
    forever.wait()  # PARK:idle


def recurse_deeply(n, workers):
    if n == 0:
        _truth.write_truth(
            "recursion", expected_signal=6, crash_marker="CRASH",
            objects={"depth": DEPTH, "recursive_function": "recurse_deeply",
                     "recursive_frames": DEPTH + 1,
                     "workers": [{"name": t.name, "ident": t.ident} for t in workers]})
        os.abort()  # CRASH
    return recurse_deeply(n - 1, workers)  # RECURSE


def main():
    workers = _truth.start_parked([("idle-worker", idle_worker, (), "idle_worker")])
    recurse_deeply(DEPTH, workers)


if __name__ == "__main__":
    main()
