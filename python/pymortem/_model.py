"""The reports of pymortem as dataclasses.

The native module hands reports over in their JSON form (the one
``pymortem ... --json`` prints, see docs/json-schema.md); :func:`build`
turns each into the dataclass below. Fields the JSON form has and a
dataclass does not name are kept in its ``details`` dict where it has one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def _pick(cls: type, data: Dict[str, Any], **overrides: Any) -> Any:
    """``cls`` from the keys of ``data`` it names (missing ones are None)."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    values = {name: data.get(name) for name in names}
    values.update(overrides)
    if "details" in names and "details" not in overrides:
        values["details"] = {k: v for k, v in data.items() if k not in names}
    return cls(**values)


@dataclass(frozen=True)
class Frame:
    """One frame of a stack, innermost first in every list of frames.

    ``kind`` is ``"python"`` for a Python frame (``function`` is its
    ``co_name``, ``file`` its ``co_filename``, ``line`` the line it was
    running, ``locals`` its arguments and locals by name as bounded reprs
    when they were asked for) and ``"native"`` for a machine frame
    (``function`` is the symbol, ``file`` and ``line`` the source position
    from DWARF when known, ``module`` the file the code is in). ``address``
    is the frame's address (``_PyInterpreterFrame`` or ``PyFrameObject``)
    for a Python frame, the instruction or return address for a native
    one. ``details`` holds every other field of the JSON form (qualname,
    columns, code object, trust, offsets, inlined source frames...).
    """

    kind: str
    function: Optional[str]
    file: Optional[str]
    line: Optional[int]
    module: Optional[str] = None
    locals: Optional[Dict[str, str]] = None
    address: Optional[int] = None
    details: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "Frame":
        data = dict(data)
        kind = data.pop("kind", "python")
        if kind == "native":
            source = data.get("source") or []
            innermost = source[0] if source else {}
            address = data.pop("address", None)
            return cls(
                kind="native",
                function=data.pop("function", None),
                file=innermost.get("file"),
                line=innermost.get("line"),
                module=data.pop("module", None),
                locals=None,
                address=address.get("address") if isinstance(address, dict) else address,
                details=data,
            )
        local_list = data.pop("locals", None)
        return cls(
            kind="python",
            function=data.pop("function", None),
            file=data.pop("file", None),
            line=data.pop("line", None),
            module=None,
            locals=None if local_list is None else {l["name"]: l["repr"] for l in local_list},
            address=data.pop("frame", None),
            details=data,
        )


def _frames(items: Optional[List[Dict[str, Any]]]) -> List[Frame]:
    return [Frame._from_json(f) for f in items or []]


@dataclass(frozen=True)
class Thread:
    """One thread of the core: its LWP, ``pthread_t`` (Python's
    ``threading.get_ident()``), whether it crashed, its signal, pc and sp."""

    lwp: int
    pthread_id: Optional[int]
    crashed: bool
    signal: Optional[int]
    pc: int
    sp: int


@dataclass(frozen=True)
class Module:
    """One mapped module: executable, library or vDSO, where its file and
    its debug information were found (``file`` and ``debug`` dicts)."""

    name: str
    path: str
    kind: str
    base: int
    end: int
    load_bias: Optional[int]
    build_id: Optional[str]
    deleted: bool
    file: Any = field(compare=False)
    debug: Any = field(compare=False)


@dataclass(frozen=True)
class PythonThread:
    """One Python thread state and its Python frames (innermost first)."""

    tstate: int
    interpreter: int
    interpreter_id: Optional[int]
    thread_id: int
    native_thread_id: Optional[int]
    lwp: Optional[int]
    holds_gil: bool
    nesting: int
    frames: List[Frame]
    walk_error: Optional[str] = None
    details: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "PythonThread":
        data = dict(data)
        stack = data.pop("stack", None) or {}
        frames = [Frame._from_json(dict(f, kind="python")) for f in stack.get("frames", [])]
        data["walk"] = {k: v for k, v in stack.items() if k != "frames"}
        return _pick(cls, data, frames=frames, walk_error=stack.get("error"))


@dataclass(frozen=True)
class ThreadStack:
    """One core thread's merged stack: its native frames with the Python
    frames each eval loop runs, innermost first.

    ``python`` is the Python thread state it runs (None for a thread that
    runs no Python), ``native_stop`` why the native unwind stopped,
    ``fatal_error`` what it was dying of when it is inside a fatal-error
    function."""

    lwp: int
    frames: List[Frame]
    python: Optional[PythonThread]
    native_stop: Any = None
    fatal_error: Optional[Dict[str, Any]] = None
    unattached_python_frames: int = 0
    thread_states: List[Dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def python_frames(self) -> List[Frame]:
        """The Python frames alone, innermost first."""
        return [f for f in self.frames if f.kind == "python"]

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "ThreadStack":
        stack = data.get("stack") or {}
        python = data.get("python")
        return cls(
            lwp=data["lwp"],
            frames=_frames(stack.get("frames")),
            python=None if python is None else PythonThread._from_json(python),
            native_stop=stack.get("native_stop"),
            fatal_error=stack.get("fatal_error"),
            unattached_python_frames=stack.get("unattached_python_frames", 0),
            thread_states=stack.get("thread_states", []),
        )


@dataclass(frozen=True)
class Finding:
    """One contradiction the checks found, with its evidence.

    ``kind`` (``free_list_cycle``, ``freed_but_referenced``...),
    ``severity`` (``error``, ``warning`` or ``note``), ``address`` of the
    object it is about, ``list`` the free list or GC generation involved,
    ``evidence`` the values read, by name, and ``referrers`` where pointers
    to the object were found (dicts: ``at``, ``kind``, ``container``,
    ``description``)."""

    kind: str
    severity: str
    address: int
    message: str
    list: Optional[str] = None
    evidence: Dict[str, Any] = field(default_factory=dict)
    referrers: List[Dict[str, Any]] = field(default_factory=list)

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "Finding":
        return _pick(
            cls,
            data,
            evidence=data.get("evidence") or {},
            referrers=data.get("referrers") or [],
        )


def _findings(items: Optional[List[Dict[str, Any]]]) -> List[Finding]:
    return [Finding._from_json(f) for f in items or []]


@dataclass(frozen=True)
class Verdict:
    """What probably happened: ``status`` (``clean``, ``suspicious``,
    ``corrupt`` or ``incomplete``), the story in one sentence, the root
    ``victims`` (addresses), the ``threads`` involved, the fatal error, and
    the checks that could not run (``unchecked``)."""

    status: str
    summary: str
    victims: List[int]
    secondary_victims: List[int]
    threads: List[int]
    fatal_error: Optional[str]
    unchecked: List[Dict[str, Any]]


@dataclass(frozen=True)
class CheckResult:
    """Everything the checks found: ``findings`` (errors first) and the
    ``verdict``, with the free lists, GC generations and GC statistics
    walked, and the crashing thread's frames."""

    findings: List[Finding]
    verdict: Verdict
    free_lists: List[Dict[str, Any]] = field(repr=False)
    generations: List[Dict[str, Any]] = field(repr=False)
    gc_objects: int = 0
    gc_stats: List[Dict[str, Any]] = field(default_factory=list, repr=False)
    diagnostics: List[Dict[str, Any]] = field(default_factory=list)
    crashed_thread_stack: Optional[List[Frame]] = field(default=None, repr=False)

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "CheckResult":
        crashed = data.get("crashed_thread_stack")
        return _pick(
            cls,
            data,
            findings=_findings(data.get("findings")),
            verdict=_pick(Verdict, data.get("verdict") or {}),
            crashed_thread_stack=None if crashed is None else _frames(crashed.get("frames")),
        )


@dataclass(frozen=True)
class FreeLists:
    """Every free list walked: its ``slots`` (dicts: ``list``, ``size``,
    ``counter``, ``walked``, ``members``...), the contradictions found
    inside them, and why a part could not be walked."""

    slots: List[Dict[str, Any]]
    findings: List[Finding]
    diagnostics: List[Dict[str, Any]]
    unchecked: Optional[Dict[str, Any]]

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "FreeLists":
        return _pick(cls, data, findings=_findings(data.get("findings")))


@dataclass(frozen=True)
class Generation:
    """One GC generation list: its name, head, counters, and the addresses
    of the ``objects`` walked in it."""

    name: str
    head: int
    count: Optional[int]
    threshold: Optional[int]
    walked: int
    complete: bool
    anomalies: int
    objects: List[int] = field(repr=False)
    unreadable: Optional[str] = None


@dataclass(frozen=True)
class GcGenerations:
    """Every GC generation walked, with what the walk found."""

    generations: List[Generation]
    findings: List[Finding]
    collecting: bool
    stats: List[Dict[str, Any]] = field(repr=False)
    diagnostics: List[Dict[str, Any]] = field(default_factory=list)
    unchecked: Optional[Dict[str, Any]] = None

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "GcGenerations":
        return _pick(
            cls,
            data,
            generations=[_pick(Generation, g) for g in data.get("generations") or []],
            findings=_findings(data.get("findings")),
        )


@dataclass(frozen=True)
class TriageResult:
    """What triage says of one input: its crash ``signature``
    (``v1:<16 hex digits>``; cores with the same one crashed the same way)
    and what it is made of, or the ``error`` that stopped it, or why it was
    ``skipped`` (not a core)."""

    path: str
    signature: Optional[str] = None
    signature_text: Optional[str] = field(default=None, repr=False)
    python_version: Optional[str] = None
    signal: Optional[str] = None
    fatal_error: Optional[str] = None
    python_frames: List[str] = field(default_factory=list, repr=False)
    native_frames: List[str] = field(default_factory=list, repr=False)
    finding_kinds: List[str] = field(default_factory=list)
    verdict: Optional[str] = None
    unchecked: List[str] = field(default_factory=list, repr=False)
    time: Optional[int] = field(default=None, repr=False)
    error: Optional[str] = None
    skipped: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the input was triaged (neither failed nor skipped)."""
        return self.error is None and self.skipped is None

    @classmethod
    def _from_json(cls, data: Dict[str, Any]) -> "TriageResult":
        lists = ("python_frames", "native_frames", "finding_kinds", "unchecked")
        return _pick(cls, data, **{k: data.get(k) or [] for k in lists})


_BUILDERS = {
    "Frame": Frame._from_json,
    "Thread": lambda d: _pick(Thread, d),
    "Module": lambda d: _pick(Module, d),
    "PythonThread": PythonThread._from_json,
    "ThreadStack": ThreadStack._from_json,
    "CheckResult": CheckResult._from_json,
    "FreeLists": FreeLists._from_json,
    "GcGenerations": GcGenerations._from_json,
    "TriageResult": TriageResult._from_json,
}


def build(kind: str, data: Dict[str, Any]) -> Any:
    """The dataclass ``kind`` from its JSON form (called by the native module)."""
    return _BUILDERS[kind](data)
