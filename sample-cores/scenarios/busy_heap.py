# Scenario "busy_heap": a few hundred thousand live objects (lists, dicts,
# tuples, strings, ints, floats) reachable from one root list, then abort.
import os
import sys

import _truth

N = 50000  # records; ~6 objects each -> ~300k objects


def build():
    root = []
    for i in range(N):
        name = "item-%07d" % i
        rec = {"name": name, "index": i, "score": i * 0.5}
        pair = (name, i, -i)
        root.append([rec, pair])
    return root


def main():
    root = build()
    objects = {
        "root_list": id(root),
        "records": N,
        "approx_live_objects": N * 6,
        "sample_record_dict": id(root[1234][0]),
        "sample_record_tuple": id(root[1234][1]),
        "sample_record_list": id(root[1234]),
        "sample_string": id(root[1234][0]["name"]),
        "sample_string_value": root[1234][0]["name"],
        "per_record": "list [dict{name:str, index:int, score:float}, tuple(str, int, int)]",
    }
    _truth.write_truth("busy_heap", expected_signal=6, crash_marker="CRASH",
                       objects=objects)
    os.abort()  # CRASH


if __name__ == "__main__":
    main()
