# Scenario "generator": a suspended generator (and, on 3.5+, a suspended
# coroutine) held in locals; the process aborts from inside a *running*
# generator whose frame is on the main thread's stack.
import os
import sys

import _truth


def counting_generator(limit):
    i = 0
    while i < limit:
        yield i  # GEN_SUSPENDED
        i += 1


def aborting_generator(state):
    yield "first"
    _truth.write_truth("generator", expected_signal=6, crash_marker="CRASH",
                       objects=state)
    os.abort()  # CRASH
    yield "never"


def drive(state):
    gen = aborting_generator(state)
    next(gen)
    state["running_generator"] = id(gen)
    next(gen)  # DRIVE


def main():
    suspended = counting_generator(100)
    next(suspended)
    next(suspended)
    next(suspended)  # now suspended at the yield with i == 2
    state = {
        "suspended_generator": id(suspended),
        "suspended_generator_function": "counting_generator",
        "suspended_generator_line": _truth.marker_line("GEN_SUSPENDED"),
        "suspended_generator_local_i": 2,
        "running_generator_function": "aborting_generator",
        "coroutine": None,
    }
    coro = None
    if sys.version_info >= (3, 5):
        import _coro3
        coro = _coro3.coro_waiter("tag")
        coro.send(None)
        state["coroutine"] = id(coro)
        state["coroutine_function"] = "coro_waiter"
        state["coroutine_line"] = _truth.marker_line("CORO_SUSPENDED", _coro3.__file__.replace(".pyc", ".py"))
        state["coroutine_awaits_function"] = "__await__"
        state["coroutine_awaits_line"] = _truth.marker_line("CORO_YIELD", _coro3.__file__.replace(".pyc", ".py"))
    drive(state)
    # keep references alive
    return suspended, coro


if __name__ == "__main__":
    main()
