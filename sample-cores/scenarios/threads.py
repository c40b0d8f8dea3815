# Scenario "threads": several workers parked in distinct named functions at
# known lines (different call depths and blocking primitives); the main thread
# then aborts.
import os
import sys
import threading
import time

import _truth

forever = threading.Event()
gate = threading.Lock()
gate.acquire()  # never released: workers block on it


def worker_alpha():
    # Locals of every simple kind, for `pymortem threads --locals`.
    label = "alpha"
    quoted = "it's"
    nothing = None
    flag = True
    negative = -42
    big = 2 ** 40 + 7
    forever.wait()  # PARK:alpha
    return label, quoted, nothing, flag, negative, big


def beta_inner(seconds):
    time.sleep(seconds)  # PARK:beta


def worker_beta():
    beta_inner(3600)


def gamma_level3():
    gate.acquire()  # PARK:gamma


def gamma_level2():
    gamma_level3()


def gamma_level1():
    gamma_level2()


def worker_gamma():
    secret = "kept in a cell"  # a closure variable: a cell in the frame

    def reveal():
        return secret

    gamma_level1()
    return reveal


def delta_recurse(n):
    if n == 0:
        forever.wait()  # PARK:delta
        return
    delta_recurse(n - 1)


def worker_delta():
    delta_recurse(5)


def main_thread_body(workers):
    objects = {
        "workers": [{"name": t.name, "ident": t.ident} for t in workers],
        "park_lines": dict((k, _truth.marker_line("PARK:" + k))
                           for k in ("alpha", "beta", "gamma", "delta")),
    }
    _truth.write_truth("threads", objects=objects, expected_signal=6,
                       crash_marker="CRASH")
    os.abort()  # CRASH


def main():
    workers = _truth.start_parked([
        ("worker-alpha", worker_alpha, (), "worker_alpha"),
        ("worker-beta", worker_beta, (), "beta_inner"),
        ("worker-gamma", worker_gamma, (), "gamma_level3"),
        ("worker-delta", worker_delta, (), "delta_recurse"),
    ])
    main_thread_body(workers)


if __name__ == "__main__":
    main()
