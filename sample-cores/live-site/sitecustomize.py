# Wait instead of dying: with this folder on PYTHONPATH (sample-cores/live.py
# puts it there), a scenario's os.abort() blocks forever in read() on fd 1000,
# a pipe nobody writes, so the live-process tests can read the process at the
# point where it would have died, and compare with a core of it taken there.
#
# The replacement is a C callable (functools.partial of a C function): it adds
# no Python frame, so the stacks are those the scenario's truth recorded. In
# the main interpreter it is libc's read() through ctypes.PyDLL, which keeps
# the GIL as abort() would; a subinterpreter (no ctypes) uses os.read().
import functools
import os

WAIT_FD = 1000
_keep = []


def _install():
    try:
        os.fstat(WAIT_FD)
    except OSError:
        r, w = os.pipe()
        os.dup2(r, WAIT_FD)
        os.close(r)
        _keep.append(w)  # the write end stays open: read() never sees EOF
    try:
        import ctypes
        read = ctypes.PyDLL(None).read
        read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        read.restype = ctypes.c_ssize_t
        buf = ctypes.create_string_buffer(1)
        _keep.append(buf)
        os.abort = functools.partial(read, WAIT_FD, ctypes.addressof(buf), 1)
    except Exception:
        os.abort = functools.partial(os.read, WAIT_FD, 1)


_install()
