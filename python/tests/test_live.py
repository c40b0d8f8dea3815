"""pymortem.attach: a running Python process read live, its own stacks
compared with what it says of itself."""

from __future__ import annotations

import subprocess
import sys

import pymortem

CHILD = """
import sys, threading, time
def parked_in_named_function():
    time.sleep(600)
threading.Thread(target=parked_in_named_function, daemon=True).start()
time.sleep(0.2)
print(threading.get_native_id() if hasattr(threading, "get_native_id") else 0, flush=True)
time.sleep(600)
"""


def test_attach_reads_a_running_process_and_leaves_it_running():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        process = pymortem.attach(child.pid)
        assert process.pid == child.pid
        assert len(process.threads) >= 2
        if "/.pyenv/" in sys.base_prefix:
            # pyenv's builds carry DWARF: the Python stacks need no other file.
            py = process.python()
            functions = {f.function for t in py.threads for f in t.frames}
            assert "parked_in_named_function" in functions
            assert py.check().verdict.status != "corrupt"
        assert child.poll() is None, "the process runs on"
    finally:
        child.kill()
        child.wait()


def test_attach_to_a_missing_process_says_so():
    try:
        pymortem.attach(2147483646)
    except pymortem.OpenError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("no error")
