"""Type stubs of the native module (``pymortem._native``)."""

from os import PathLike
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._model import (
    CheckResult,
    Frame,
    FreeLists,
    GcGenerations,
    Module,
    PythonThread,
    Thread,
    ThreadStack,
    TriageResult,
)

_Path = Union[str, "PathLike[str]"]

__version__: str

class Error(Exception):
    """Any error pymortem raises: the input could not be opened or analysed."""

class OpenError(Error):
    """The input could not be opened (missing, unreadable, not a core)."""

class NoPython(Error):
    """The core holds no CPython runtime pymortem can read."""

class FreeThreaded(NoPython):
    """The interpreter is a free-threaded build, not supported yet."""

class ReadError(Error):
    """A read of the process's memory failed where a value was needed."""

    address: int
    length: int
    reason: str

class WrongType(Error):
    """An object is not of the type an accessor reads."""

    address: int
    expected: str
    found: str

def open(
    path: _Path,
    sysroot: Optional[_Path] = None,
    *,
    exe: Optional[_Path] = None,
    debug_dirs: Sequence[_Path] = (),
    search_path: Sequence[_Path] = (),
    no_default_debug_dir: bool = False,
    temp_dir: Optional[_Path] = None,
    max_core_size: Optional[int] = None,
    debuginfod: bool = False,
) -> Process:
    """Open a core (plain or compressed) or a bundle."""

def attach(
    pid: int,
    *,
    block: bool = True,
    sysroot: Optional[_Path] = None,
    exe: Optional[_Path] = None,
    debug_dirs: Sequence[_Path] = (),
    search_path: Sequence[_Path] = (),
    no_default_debug_dir: bool = False,
    temp_dir: Optional[_Path] = None,
    debuginfod: bool = False,
) -> Process:
    """Copy a running process (its threads stopped for milliseconds unless
    block=False) and open the copy as a core."""

def triage(
    paths: Sequence[_Path],
    *,
    jobs: Optional[int] = None,
    sysroot: Optional[_Path] = None,
    exe: Optional[_Path] = None,
    debug_dirs: Sequence[_Path] = (),
    search_path: Sequence[_Path] = (),
    no_default_debug_dir: bool = False,
    temp_dir: Optional[_Path] = None,
    max_core_size: Optional[int] = None,
    debuginfod: bool = False,
    no_checks: bool = False,
) -> TriageIterator:
    """Triage cores and folders of cores in parallel."""

def collect_cores(paths: Sequence[_Path]) -> Dict[str, Any]:
    """The cores under `paths` and the files that are not cores."""

def record(
    db: str,
    paths: Sequence[_Path],
    *,
    host: Optional[str] = None,
    jobs: Optional[int] = 1,
    sysroot: Optional[_Path] = None,
    exe: Optional[_Path] = None,
    debug_dirs: Sequence[_Path] = (),
    search_path: Sequence[_Path] = (),
    no_default_debug_dir: bool = False,
    temp_dir: Optional[_Path] = None,
    max_core_size: Optional[int] = None,
    debuginfod: bool = False,
    no_checks: bool = False,
) -> Dict[str, Any]:
    """Record cores into a crash database, as ``pymortem triage --db``."""

def groups(db: str, *, since: Optional[int] = None, limit: Optional[int] = None) -> Dict[str, Any]:
    """The groups of a crash database, as ``pymortem groups --json``."""

def run_cli(argv: List[str]) -> int:
    """Run the ``pymortem`` command line; returns its exit code."""

class Process:
    """A crashed process: its core, memory, modules and threads."""

    @property
    def path(self) -> str: ...
    @property
    def pid(self) -> Optional[int]: ...
    @property
    def signal(self) -> Optional[int]: ...
    @property
    def signal_name(self) -> Optional[str]: ...
    @property
    def crashed_lwp(self) -> Optional[int]: ...
    @property
    def threads(self) -> List[Thread]: ...
    @property
    def modules(self) -> List[Module]: ...
    @property
    def diagnostics(self) -> List[Dict[str, Any]]: ...
    def native_stack(self, lwp: int) -> Optional[List[Frame]]: ...
    def python(self, *, locals: bool = False) -> Python: ...
    def info(self) -> Dict[str, Any]: ...

class Python:
    """A process's CPython runtime. Iterating yields every GC-tracked object."""

    @property
    def version(self) -> str: ...
    @property
    def version_info(self) -> Tuple[int, ...]: ...
    @property
    def process(self) -> Process: ...
    @property
    def interpreters(self) -> List[Dict[str, Any]]: ...
    @property
    def threads(self) -> List[PythonThread]: ...
    @property
    def diagnostics(self) -> List[Dict[str, Any]]: ...
    def stacks(self) -> List[ThreadStack]: ...
    def stack(self, lwp: int) -> ThreadStack: ...
    def object(self, address: int) -> Object: ...
    def inspect(self, address: int) -> Dict[str, Any]: ...
    def free_lists(self) -> FreeLists: ...
    def gc_generations(self) -> GcGenerations: ...
    def gc_objects(self) -> GcObjects: ...
    def check(self) -> CheckResult: ...
    def tasks(self) -> Dict[str, Any]: ...
    def __iter__(self) -> GcObjects: ...

class GcObjects(Iterator[Object]):
    def __next__(self) -> Object: ...
    def __len__(self) -> int: ...

class Object:
    """A Python object at an address in the core, read on demand."""

    @property
    def address(self) -> int: ...
    @property
    def python(self) -> Python: ...
    @property
    def type_name(self) -> str: ...
    @property
    def type(self) -> Object: ...
    @property
    def refcount(self) -> int: ...
    @property
    def immortal(self) -> bool: ...
    @property
    def gc_state(self) -> Optional[str]: ...
    @property
    def kind(self) -> str: ...
    @property
    def attributes(self) -> Dict[str, Object]: ...
    def repr(self) -> str: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> ObjectIterator: ...
    def __getitem__(self, index: int) -> Object: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def items(self) -> List[Tuple[Object, Object]]: ...
    def keys(self) -> List[Object]: ...
    def values(self) -> List[Object]: ...
    def attribute(self, name: str) -> Optional[Object]: ...
    def value(self) -> Union[None, bool, int, float, str, bytes]: ...
    def inspect(self) -> Dict[str, Any]: ...

class ObjectIterator(Iterator[Object]):
    def __next__(self) -> Object: ...

class TriageIterator(Iterator[TriageResult]):
    def __next__(self) -> TriageResult: ...
    def __len__(self) -> int: ...
