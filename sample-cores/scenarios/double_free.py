# Scenario "double_free": a 7-tuple is released once too often.
#
#  1. after the truth file is written, the free list for 7-tuples is drained
#     (2100 fresh 7-tuples are kept alive),
#     so it is empty before the victim is freed;
#  2. the victim's only real owner is `holder` (a list).  The main thread drops
#     one reference too many with Py_DecRef -> refcount 0 -> tupledealloc pushes
#     it on the free list (push #1) while holder[0] still points to it;
#  3. a second thread takes a reference from holder (refcount 0 -> 1) and drops
#     it (1 -> 0) -> tupledealloc again -> push #2.  The free-list link of the
#     victim now points to the victim itself (self-loop), numfree counts 2;
#  4. the main thread aborts before anything allocates a 7-tuple.
import gc
import os
import sys
import threading
import time

import _truth

SIZE = 7
forever = threading.Event()
go = threading.Event()
dropped = threading.Event()


class Owner(object):
    """The holder's owner: gives the library's attribute readers an instance
    whose attributes are known (values without a dict on 3.11+)."""

    def __init__(self, items, name):
        self.items = items
        self.name = name
        self.size = SIZE


def waiters(event):
    """How many threads wait on `event` (the Condition's waiter list: a
    private name that differs between 2.7 and 3.x)."""
    cond = getattr(event, "_cond", None) or getattr(event, "_Event__cond")
    queue = getattr(cond, "_waiters", None)
    if queue is None:
        queue = getattr(cond, "_Condition__waiters")
    return len(queue)


def second_owner(holder):
    go.wait()  # WAIT_GO
    ref = holder[0]  # refcount 0 -> 1 on an already freed tuple
    del ref  # 1 -> 0: second tupledealloc, second push
    dropped.set()
    forever.wait()  # PARK:second


def expectation():
    v = sys.version_info[:2]
    if v <= (3, 7):
        return ("self-loop: free_list[idx] == victim and victim->ob_item[0] == victim; "
                "numfree counts both pushes. The next two PyTuple_New(7) calls would hand out the "
                "victim twice and the second would die with 'Fatal Python error: GC object already tracked'.")
    if v <= (3, 13):
        return ("self-loop: free-list head == victim and victim->ob_item[0] == victim; numfree counts "
                "both pushes. No runtime check in release builds: the next two PyTuple_New(7) would "
                "return the same object twice.")
    return ("3.14+: the link is the object's first 8 bytes (ob_refcnt word). The list was empty "
            "before push #1, so the link was NULL (refcount reads 0); the second thread's "
            "incref/decref took it 0 -> 1 -> 0 and push #2 wrote the victim's own address: "
            "self-loop in the first 8 bytes; count 2.")


def main():
    gc.disable()
    # items: singletons / small ints that survive being decref'd twice
    holder = [tuple([None, True, False, 1, 2, 3, 4])]
    victim_addr = id(holder[0])
    owner = Owner(holder, "spooler")
    # Asking for __dict__ makes a real dict for this one.
    owner_with_dict = Owner(holder, "materialized")
    owner_with_dict.__dict__["extra"] = -5
    t2 = _truth.ParkedThread("second-owner", second_owner, (holder,))
    t2.start()
    t2.ready.wait()
    _truth.wait_until_parked([t2.ident], must_contain={t2.ident: "second_owner"})
    idx = _truth.tuple_freelist_index(SIZE)
    objects = {
        "victim_tuple": victim_addr,
        "victim_size": SIZE,
        "holder_list": id(holder),
        "holder_index": 0,
        "freelist_index": idx,
        "freelist_link_field": _truth.freelist_link_field(),
        "freelist_drained_before": True,
        "expected_numfree": 2,
        "expected_freelist_head": victim_addr,
        "expected_victim_link": victim_addr,
        "expected_state": "self_loop",
        "expectation": expectation(),
        "second_thread_ident": t2.ident,
        "victim_items_before_free": "None, True, False, 1, 2, 3, 4",
        "owner": id(owner),
        "owner_attributes": {"items": id(holder), "name": "spooler", "size": SIZE},
        "owner_with_dict": id(owner_with_dict),
        "owner_with_dict_attributes": {"items": id(holder), "name": "materialized",
                                       "size": SIZE, "extra": -5},
    }
    # Stacks are captured now, before the corruption (writing JSON must not run
    # after it).  The second thread will leave WAIT_GO and park at PARK:second
    # (same threading.Event.wait frames above it), so its line is patched.
    _truth.write_truth("double_free", objects=objects, expected_signal=6,
                       crash_marker="CRASH",
                       final_lines={t2.ident: ("second_owner", "PARK:second")})
    # empty the free list right before the corruption (writing the truth
    # may have freed tuples of this size)
    keep_drained = _truth.drain_tuple_freelist(SIZE)
    # ---- corruption: no allocation of a 7-tuple from here on ----
    _truth.pyapi.Py_DecRef(victim_addr)  # push #1 (refcount 1 -> 0)
    go.set()
    dropped.wait()
    # The truth has the second thread blocked in forever.wait(): wait until it
    # has queued its waiter lock there, then let it reach the lock (polling
    # allocates no 7-tuple).
    while not waiters(forever):
        time.sleep(0.001)
    time.sleep(0.05)
    os.abort()  # CRASH
    return keep_drained, owner, owner_with_dict


if __name__ == "__main__":
    main()
