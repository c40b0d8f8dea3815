"""pymortem: post-mortem forensics for crashed CPython processes.

Open a core (plain, compressed as systemd-coredump writes them, or a
bundle made by ``pymortem bundle``), read every thread's Python and native
stack, walk the free lists and the GC lists, and check them against each
other::

    import pymortem

    process = pymortem.open("core.12345", sysroot="/srv/cores/root")
    py = process.python()
    print(py.version, [t.lwp for t in process.threads])
    for thread in py.stacks():
        for frame in thread.python_frames:
            print(thread.lwp, frame.function, frame.file, frame.line)

    result = py.check()
    print(result.verdict.summary)
    for victim in result.verdict.victims:
        obj = py.object(victim)
        print(obj.type_name, obj.refcount, obj.repr())

Handles (:class:`Process`, :class:`Python`, :class:`Object`) are cheap and
can be shared between threads; long work releases the GIL. Errors are
:class:`Error` subclasses (:class:`OpenError`, :class:`NoPython`,
:class:`ReadError` with ``.address``, :class:`WrongType`); problems that do
not stop an analysis are listed in ``diagnostics``.
"""

from ._model import (
    CheckResult,
    Finding,
    Frame,
    FreeLists,
    GcGenerations,
    Generation,
    Module,
    PythonThread,
    Thread,
    ThreadStack,
    TriageResult,
    Verdict,
)
from ._native import (
    Error,
    FreeThreaded,
    NoPython,
    Object,
    OpenError,
    Process,
    Python,
    ReadError,
    WrongType,
    __version__,
    attach,
    open,
    triage,
)

__all__ = [
    "CheckResult",
    "Error",
    "Finding",
    "Frame",
    "FreeLists",
    "FreeThreaded",
    "GcGenerations",
    "Generation",
    "Module",
    "NoPython",
    "Object",
    "OpenError",
    "Process",
    "Python",
    "PythonThread",
    "ReadError",
    "Thread",
    "ThreadStack",
    "TriageResult",
    "Verdict",
    "WrongType",
    "__version__",
    "attach",
    "open",
    "triage",
]
