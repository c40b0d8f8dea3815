# Scenario "gc_already_tracked": a 7-tuple is double-freed (self-loop on the
# free list, see double_free.py), then two 7-tuples are allocated.  Both get the
# same object; tracking it a second time is caught on 2.7-3.7 ("Fatal Python
# error: GC object already tracked", SIGABRT from Py_FatalError).  3.8+ release
# builds have no check: the process aborts explicitly right after.
import gc
import os
import sys

import _truth

SIZE = 7


def main():
    gc.disable()
    holder = [tuple([None, True, False, 1, 2, 3, 4])]
    victim_addr = id(holder[0])
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = None
    detected = sys.version_info[:2] <= (3, 7)
    objects = {
        "victim_tuple": victim_addr,
        "victim_size": SIZE,
        "holder_list": id(holder),
        "freelist_index": _truth.tuple_freelist_index(SIZE),
        "fatal_error_expected": detected,
        "fatal_line": _truth.marker_line("FATAL"),
        "expectation": ("the second allocation (line 'fatal_line') dies in PyTuple_New via "
                        "Py_FatalError -> abort" if detected else
                        "no check on this version: both allocations return the victim; "
                        "the explicit os.abort() follows"),
    }
    _truth.write_truth(
        "gc_already_tracked", objects=objects, expected_signal=6,
        expected_fatal_error="GC object already tracked" if detected else None,
        crash_marker="FATAL" if detected else "CRASH")
    # empty the free list right before the corruption (writing the truth
    # may have freed tuples of this size)
    keep_drained = _truth.drain_tuple_freelist(SIZE)
    # ---- corruption ----
    _truth.pyapi.Py_DecRef(victim_addr)  # push #1
    ref = holder[0]  # 0 -> 1
    del ref  # 1 -> 0, push #2 (self-loop)
    first = (a0, a1, a2, a3, a4, a5, a6)  # pops the victim
    second = (a0, a1, a2, a3, a4, a5, a6)  # FATAL
    os.abort()  # CRASH
    return keep_drained, first, second


if __name__ == "__main__":
    main()
