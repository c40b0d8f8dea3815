# Scenario family "spool_<bug>_<phase>": a spooler's C binding (spoolext.c,
# built by generate.py for this interpreter) gets one reference count wrong
# on eight victims at once: a tuple, list, dict, float, int, str, bytes and an
# instance, each held by its own list (or, for bug "static", by a slot of the
# extension's static array).
#
#   argv: TRUTH.json BUG PHASE
#   BUG    decref    spoolext.release(holder[0]): an extra Py_DECREF on an argument
#          borrowed  job = spoolext.first_item(holder); del job: a borrowed
#                    reference returned as a new one, then released
#          static    spoolext.remember(slot, job); del job: a static kept after
#                    the last reference
#          owners    spoolext.release(victim) on victims held by other owners
#                    than a list (OWNERS below: a deque, a set, a function's
#                    defaults, a closure cell, a bound method's self, a
#                    suspended generator's local, an instance's attribute);
#                    phases now and later only
#   PHASE  now       abort right after the bug (nothing allocated since)
#          later     abort after 50 more requests' worth of work (the freed
#                    memory is handed out again)
#          crash     go on working and using the holders until the process
#                    dies of it; abort with "NO_CRASH" on stderr after a bound
#
# The truth lists every victim (address, type, holder, how it was freed)
# before any bug fires.
from __future__ import print_function

import gc
import json
import os
import sys
import time

import _truth

sys.path.insert(0, os.environ.get("PYMORTEM_SPOOLEXT_DIR", "."))
import spoolext  # noqa: E402

PY2 = sys.version_info[0] == 2
KINDS = ["tuple", "list", "dict", "float", "int", "str", "bytes", "instance"]
CRASH_ROUNDS = 2000


class Job(object):
    """An instance victim: attributes in a dict (2.7-3.10) or inline values."""

    def __init__(self, n):
        self.n = n
        self.name = "job-%d" % n
        self.args = None

    def describe(self):
        return self.name


# Bug "owners": each holder kind, the victim it holds (a fresh object of
# that type) and how it is made to hold it.
OWNERS = ["deque_item", "set_entry", "function_default", "cell",
          "bound_method", "generator_frame", "instance_attribute"]
OWNER_VICTIMS = {"deque_item": "float", "set_entry": "str", "function_default": "int",
                 "cell": "list", "bound_method": "instance",
                 "generator_frame": "dict", "instance_attribute": "float"}


def with_default(value):
    def job(arg=value):
        return arg
    return job


def with_cell(value):
    def job():
        return value
    return job


def suspended(value):
    yield None
    yield value


def hold(owner, victim, n):
    """An object of kind `owner` holding the only reference to `victim`."""
    import collections
    if owner == "deque_item":
        return collections.deque([victim])
    if owner == "set_entry":
        return set([victim])
    if owner == "function_default":
        return with_default(victim)
    if owner == "cell":
        return with_cell(victim)
    if owner == "bound_method":
        return victim.describe
    if owner == "generator_frame":
        gen = suspended(victim)
        next(gen)
        return gen
    if owner == "instance_attribute":
        job = Job(n)
        job.args = victim
        return job
    raise ValueError(owner)


def owners_bug(phase):
    """Bug "owners": truth first, then one extra DECREF per victim."""
    base = os.getpid() % 1000 * 100
    holders = {}
    victims = {}
    for slot, owner in enumerate(OWNERS):
        victim = make(OWNER_VICTIMS[owner], base + slot)
        holder = hold(owner, victim, base + slot)
        # The object that owns the reference: a closure's cell, not its function.
        owning = holder.__closure__[0] if owner == "cell" else holder
        victims[owner] = {"address": id(victim), "type": type_name(victim), "slot": slot,
                          "holder": {"owner": owner, "object": id(owning)}}
        del owning
        holders[owner] = (holder, victim)
        del victim, holder
    # Atomic tuples and dicts (the defaults tuple, instance dicts) are
    # untracked by a collection, as they would be in a long-running process.
    gc.collect()
    objects = {"bug": "owners", "phase": phase, "victims": victims, "frees": 1,
               "expectation": "each victim freed once while still referenced by its holder"}
    _truth.write_truth("spool_owners_%s" % phase, objects=objects, expected_signal=6,
                       crash_marker="CRASH", gc_stats=False)
    # Made before the bug, so that it does not reuse a freed victim.
    keep = []
    for owner in OWNERS:
        holder, victim = holders[owner]
        holders[owner] = holder
        spoolext.release(victim)
        del victim
    if phase == "later":
        for n in range(50):
            request(n, keep)
    os.abort()  # CRASH
    return holders, keep


def make(kind, n):
    """A fresh object of `kind` that nothing else shares (no cached constant,
    no small int, no interned string)."""
    if kind == "tuple":
        return tuple([None, True, False, n % 5, 2, 3, 4])
    if kind == "list":
        return [n % 100, None, True]
    if kind == "dict":
        return {"job": n % 100, "state": None}
    if kind == "float":
        return float(n) + 0.25
    if kind == "int":
        return 1000003 + n
    if kind == "str":
        # 2.7's text type is unicode; its str is the bytes victim below.
        text = u"job-%d-%s" % (n, u"x" * 24)
        return text if PY2 else str(text)
    if kind == "bytes":
        return ("payload-%d" % n).encode("ascii") * 3
    if kind == "instance":
        return Job(n)
    raise ValueError(kind)


def type_name(obj):
    return type(obj).__name__


def request(n, keep):
    """One request's worth of allocation: what a spooler does between jobs."""
    record = {"id": n, "ts": time.time(), "tags": ["a", "b", str(n)], "size": float(n) * 1.5}
    encoded = json.dumps(record, sort_keys=True)
    parsed = json.loads(encoded)
    row = (parsed["id"], parsed["ts"], encoded.encode("utf-8"), [parsed["size"]] * 3)
    for kind in KINDS:
        keep.append(make(kind, n * 31 + len(keep)))
    keep.append(row)
    keep.append(Job(n))
    if len(keep) > 4000:
        del keep[:1000]


def main():
    bug, phase = sys.argv[2], sys.argv[3]
    gc.disable()
    if bug == "owners":
        return owners_bug(phase)
    base = os.getpid() % 1000 * 100
    holders = {}
    victims = {}
    for slot, kind in enumerate(KINDS):
        job = make(kind, base + slot)
        victims[kind] = {
            "address": id(job),
            "type": type_name(job),
            "slot": slot,
        }
        if bug == "static":
            spoolext.remember(slot, job)
            holders[kind] = job  # the only real reference, dropped by the bug
            victims[kind]["holder"] = {"static": "spool_last_jobs", "index": slot,
                                       "address": spoolext.slot_address(slot),
                                       "module": "spoolext"}
        else:
            holder = [job]
            holders[kind] = holder
            victims[kind]["holder"] = {"list": id(holder), "index": 0}
        del job
    keep = []
    objects = {
        "bug": bug,
        "phase": phase,
        "victims": victims,
        "frees": 1,
        "expectation": "each victim freed once while still referenced by its holder",
    }
    expected_signal = None if phase == "crash" else 6
    _truth.write_truth("spool_%s_%s" % (bug, phase), objects=objects,
                       expected_signal=expected_signal,
                       crash_marker=None if phase == "crash" else "CRASH",
                       gc_stats=False)
    # ---- the bug, once per victim ----
    for kind in KINDS:
        if bug == "decref":
            spoolext.release(holders[kind][0])
        elif bug == "borrowed":
            job = spoolext.first_item(holders[kind])
            del job
        else:
            del holders[kind]
    if phase == "later":
        for n in range(50):
            request(n, keep)
    elif phase == "crash":
        for n in range(CRASH_ROUNDS):
            request(n, keep)
            for slot, kind in enumerate(KINDS):
                if bug == "static":
                    keep.append(spoolext.recall(slot))
                    continue
                holder = holders[kind]
                # What the holder's owner does with its job: look at it,
                # replace it, let it go.
                repr(holder[0])
                holder.append(make(kind, n))
                holder.pop(0)
            if n % 10 == 0:
                gc.collect()
        sys.stderr.write("NO_CRASH after %d rounds\n" % CRASH_ROUNDS)
        sys.stderr.flush()
    os.abort()  # CRASH
    return holders, keep


if __name__ == "__main__":
    main()
