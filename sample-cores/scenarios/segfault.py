# Scenario "segfault": the main thread dies of SIGSEGV while reading address 8
# (the unmapped zero page) through ctypes inside the named function
# read_null_pointer().  (ctypes treats from_address(0) as "allocate my own
# buffer", so 0 itself does not fault.)  One worker is
# parked.  segfault_faulthandler.py runs the same crash with faulthandler on.
import ctypes
import os
import threading

import _truth

forever = threading.Event()
BAD_ADDRESS = 8


def parked_worker():
    forever.wait()  # PARK:worker


def read_null_pointer(workers, scenario, faulthandler_on):
    _truth.write_truth(scenario, expected_signal=11, crash_marker="CRASH",
                       objects={"crash_function": "read_null_pointer",
                                "bad_address": BAD_ADDRESS,
                                "faulthandler": faulthandler_on,
                                "workers": [{"name": t.name, "ident": t.ident} for t in workers]})
    return ctypes.c_char.from_address(BAD_ADDRESS).value  # CRASH


def main(scenario="segfault", faulthandler_on=False):
    workers = _truth.start_parked([("parked-worker", parked_worker, (), "parked_worker")])
    read_null_pointer(workers, scenario, faulthandler_on)
    os.abort()  # not reached


if __name__ == "__main__":
    main()
