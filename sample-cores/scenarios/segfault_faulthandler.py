# Scenario "segfault_faulthandler": like "segfault" (SIGSEGV reading address 8
# through ctypes inside read_null_pointer()), but with faulthandler enabled,
# so the kernel core is written from inside faulthandler's signal handler,
# which re-raises the signal: the crashing stack runs handler, then signal frame
# (__restore_rt), then faulting C function, then Python.  Python 2.7 has no
# faulthandler; its truth file says so and the crash is the plain one.
import ctypes
import threading

import _truth

try:
    import faulthandler
except ImportError:  # 2.7
    faulthandler = None

forever = threading.Event()
BAD_ADDRESS = 8


def parked_worker():
    forever.wait()  # PARK:worker


def read_null_pointer(workers):
    _truth.write_truth("segfault_faulthandler", expected_signal=11, crash_marker="CRASH",
                       objects={"crash_function": "read_null_pointer",
                                "bad_address": BAD_ADDRESS,
                                "faulthandler": faulthandler is not None,
                                "workers": [{"name": t.name, "ident": t.ident} for t in workers]})
    return ctypes.c_char.from_address(BAD_ADDRESS).value  # CRASH


def main():
    if faulthandler is not None:
        faulthandler.enable()
    workers = _truth.start_parked([("parked-worker", parked_worker, (), "parked_worker")])
    read_null_pointer(workers)


if __name__ == "__main__":
    main()
