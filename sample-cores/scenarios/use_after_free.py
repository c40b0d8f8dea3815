# Scenario "use_after_free": a 5-tuple is freed (pushed on the tuple free list)
# while a list still references it; nothing reuses it before the abort.
#
# Beside it, three unreferenced objects are released properly just before the
# abort, onto their type's free list (which is drained first so that it has
# room): a float (3.x: float_dealloc pushes an exact float while fewer than
# 100 are kept; 2.7 keeps floats in blocks instead), a list and a
# dict (list_dealloc / dict_dealloc push exact lists and dicts while fewer
# than 80 are kept).  They are the heads of those lists in the core.  So are
# a bound method and a built-in method (their own free lists up to 3.8, and
# from 3.14) and a context (3.7+), released the same way.
import gc
import os
import sys

import _truth

SIZE = 5
# The spares live here, not in main's locals: writing the truth reads the
# frames' f_locals, which (up to 3.12) caches them in a dict on the frame.
SPARES = {}
# What the spare methods are bound to: alive after the spares go.
class Holder(object):
    def method(self):
        return self


HOLDER = Holder()
HELD_LIST = []


def main():
    gc.disable()
    items = ["uaf-item-%d" % i for i in range(SIZE)]
    holder = [tuple(items)]
    victim_addr = id(holder[0])
    objects = {
        "victim_tuple": victim_addr,
        "victim_size": SIZE,
        "holder_list": id(holder),
        "holder_index": 0,
        "freelist_index": _truth.tuple_freelist_index(SIZE),
        "freelist_link_field": _truth.freelist_link_field(),
        "freelist_drained_before": True,
        "expected_numfree": 1,
        "expected_freelist_head": victim_addr,
        "expected_victim_link": 0,
        "expected_victim_refcount": 0 if sys.version_info[:2] < (3, 14) else "link (0: list was empty)",
        "expected_state": "victim is the free-list head (only entry), refcount 0, "
                          "still referenced by holder_list[0]",
        "victim_item_addresses": [id(x) for x in items],
        "victim_item_values": items,
    }
    SPARES["float"] = float(len(items)) + 0.25
    SPARES["list"] = [len(items)]
    SPARES["dict"] = {"spare": len(items)}
    SPARES["method"] = HOLDER.method
    SPARES["cfunction"] = HELD_LIST.append
    if sys.version_info[:2] >= (3, 7):
        import contextvars
        SPARES["context"] = contextvars.copy_context()
    objects["freed_to_free_lists"] = dict((kind, id(o)) for kind, o in SPARES.items())
    _truth.write_truth("use_after_free", objects=objects, expected_signal=6,
                       crash_marker="CRASH")
    # empty the free list right before the corruption (writing the truth
    # may have freed tuples of this size)
    keep_drained = _truth.drain_tuple_freelist(SIZE)
    # ---- corruption: no allocation of a 5-tuple from here on ----
    _truth.pyapi.Py_DecRef(victim_addr)
    # Room on the float, list and dict free lists, then the spares onto them;
    # nothing allocates a float, list or dict after this.
    keep_lists = [[] for _ in range(100)]
    keep_dicts = [{} for _ in range(100)]
    keep_floats = [i + 0.5 for i in range(120)]
    keep_methods = [HOLDER.method for _ in range(300)]
    keep_cfunctions = [HELD_LIST.append for _ in range(300)]
    if "context" in SPARES:
        keep_contexts = [contextvars.copy_context() for _ in range(300)]
    SPARES.clear()
    os.abort()  # CRASH
    return keep_drained, items, keep_lists, keep_dicts, keep_floats


if __name__ == "__main__":
    main()
