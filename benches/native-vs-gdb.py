#!/usr/bin/env python3
"""benches/native-vs-gdb.py: compare `pymortem threads --native` with gdb's `thread apply all bt`.

For each sample core (sample-cores/generated/manifest.json, filtered by the options):
  1. gdb -batch -nx with `thread apply all bt` (sysroot and debug-file-directory set the way
     the manifest says the core needs them), timed.  x86-64 cores: `gdb`, the settings with
     -ex.  AArch64 cores (`"arch": "aarch64"`, written by QEMU): `gdb-multiarch`, the settings
     with -iex, since -ex runs after the executable and core are loaded and gdb would then
     read no DWARF (only dynsym names);
  2. `pymortem threads --native --json` with the same sysroot and debug dirs, timed;
  3. per thread (matched by LWP), the native frames are matched by address.  gdb prints
     inlined functions as frames of their own without an address: they are grouped with the
     physical frame they belong to, which pymortem reports with its `source` (DWARF) list.
     gdb prints no address for `<signal handler called>` either, nor for the interrupted
     frame after it when its pc starts a line: those match in place, the signal frame with
     the one pymortem marks `signal_frame`, the interrupted frame with the frame after it.
     A frame is compared where both sides name it; names are normalised by dropping GCC's
     clone suffixes (`.cold`, `.constprop.0`, …) and glibc's `__GI_` prefix.  A frame agrees
     when gdb's physical function equals pymortem's symbol or pymortem's DWARF name for it,
     and every inlined function gdb lists is in pymortem's inline list;
     `<signal handler called>` agrees with a frame pymortem marks `signal_frame`.
     Frames matched by address that one side does not name (gdb's `??` for libc's internal
     functions without libc6-dbg) are counted as `unnamed`.
     Both synthesize tail-call frames from DW_TAG_call_site (DW_AT_call_tail_call), which
     no unwinder sees on the stack; gdb names such a frame by the innermost inlined
     function at the jump, which pymortem lists in `source`.  gdb 13 does not rebuild one
     whose call site's DW_AT_call_origin is a DIE with only DW_AT_abstract_origin (no pc:
     LTO's stub of a function emitted in another partition, as in Debian's arm64 python:
     `DW_AT_call_target is not specified` with `set debug entry-values 1`), and on x86-64
     it rebuilds none on cores whose debug files it did not read (see 1).  So a tail-call
     frame only pymortem shows is checked against the code, read from the module's file
     (matched by build-id): the instruction before its address must be a jump (`b`, `jmp`)
     to the start of the function of the frame inside it; those that pass are counted as
     `tail_calls_checked` (a jump through the PLT does not).  Other frames only one side
     shows are counted apart and listed with --details.
  4. prints per-core rows and a summary (frames compared, agreeing, disagreeing; frames only
     one side found; total time of each tool), and writes
     benches/.cache/native-vs-gdb/summary.json.

Exit status: 0 when every compared frame agrees, 1 on any disagreement or when pymortem
fails on a core, 2 on a set-up error (no manifest, no gdb or, for AArch64 cores,
gdb-multiarch, no pymortem binary).

Usage: python3 benches/native-vs-gdb.py [--scenario S ...] [--interp I ...] [--kind K ...]
                                         [--pymortem PATH] [--jobs N] [--quiet] [--details]
                                         [--out DIR]
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, ".cache", "native-vs-gdb")

THREAD_RE = re.compile(r"^Thread \d+ \(.*?LWP (\d+)\)")
FRAME_RE = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+)")


def normalise(name):
    if not name:
        return None
    if name.startswith("__GI_"):
        name = name[len("__GI_"):]
    return name.split(".")[0]


def gdb_threads(text):
    """{lwp: [group]}, group = {"address": int or None, "names": [innermost inline first ... physical]}."""
    threads = {}
    current = None
    for line in text.splitlines():
        m = THREAD_RE.match(line)
        if m:
            current = threads.setdefault(int(m.group(1)), [])
            continue
        m = FRAME_RE.match(line)
        if m is None or current is None:
            continue
        index, address, name = int(m.group(1)), m.group(2), m.group(3)
        if name.startswith("<signal"):
            name = "<signal handler called>"
        # A frame without an address after frame 0 is an inlined function's caller, except
        # after `<signal handler called>`: there it is the interrupted frame, whose exact pc
        # gdb does not print when it is at the start of a line.
        after_signal = bool(current) and current[-1]["names"] == ["<signal handler called>"]
        if address is None and index > 0 and current and name != "<signal handler called>" \
                and not after_signal:
            current[-1]["names"].append(name)
        else:
            current.append({"address": int(address, 16) if address else None, "names": [name],
                            "after_signal": after_signal})
    return threads


def matches(group, k, next_group, i, frame, address):
    """Whether pymortem's frame `i` (at `address`) is gdb's group `k`; `next_group` is the
    first gdb group not yet matched. gdb prints no address for a `<signal handler called>`
    frame, nor for a frame 0 or an interrupted frame whose pc starts a line: those match
    only in place, pymortem's signal frame with gdb's, an interrupted frame with the frame
    after it."""
    if group["address"] is not None:
        return group["address"] == address
    if k != next_group:
        return False
    if i == 0 and k == 0:
        return True
    if group["names"] == ["<signal handler called>"]:
        return bool(frame.get("signal_frame"))
    return group.get("after_signal", False)


def describe_group(group):
    return "%s %s" % ("%#x" % group["address"] if group["address"] is not None else "-",
                      " < ".join(group["names"]))


def describe_frame(frame):
    return "%#x %s%s (%s, %s)" % (frame["address"]["address"], frame.get("function") or "??",
                                   " [signal]" if frame.get("signal_frame") else "",
                                   frame.get("module") or "no module", frame.get("trust"))


class ModuleCode:
    """Code bytes at link-time addresses, read from the files of a core's modules: the
    executable and libpython the manifest names, else a file of the module's name in the
    usual library folders (under the sysroot when the core has one), used only when its
    build-id is the frame's. The cores QEMU writes hold no text at all."""

    def __init__(self, entry):
        self.entry = entry
        self.files = {}

    def candidates(self, module):
        entry = self.entry
        for p in (entry.get("exe"), entry.get("libpython")):
            if p and os.path.basename(p) == module:
                yield p
        root = entry.get("sysroot") or "/"
        triplet = "aarch64-linux-gnu" if entry.get("arch") == "aarch64" else "x86_64-linux-gnu"
        for d in ("lib/" + triplet, "usr/lib/" + triplet, "lib", "usr/lib"):
            yield os.path.join(root, d, module)
        for p in (entry.get("exe"), entry.get("libpython")):
            if p:
                yield os.path.join(os.path.dirname(p), module)

    @staticmethod
    def load(path):
        """(bytes, PT_LOAD segments, build-id hex) of an ELF file, or None."""
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data[:4] != b"\x7fELF":
                return None
            phoff, = struct.unpack_from("<Q", data, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
            segments, build_id = [], None
            for n in range(phnum):
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                    "<IIQQQQ", data, phoff + n * phentsize)
                if p_type == 1:  # PT_LOAD
                    segments.append((p_vaddr, p_filesz, p_offset))
                elif p_type == 4:  # PT_NOTE
                    at = p_offset
                    while at + 12 <= p_offset + p_filesz:
                        namesz, descsz, kind = struct.unpack_from("<III", data, at)
                        name_at = at + 12
                        desc_at = name_at + (namesz + 3) // 4 * 4
                        if kind == 3 and data[name_at:name_at + namesz] == b"GNU\0":
                            build_id = data[desc_at:desc_at + descsz].hex()
                        at = desc_at + (descsz + 3) // 4 * 4
            return data, segments, build_id
        except (OSError, struct.error):
            return None

    def read(self, module, build_id, vaddr, size):
        if module is None:
            return None
        key = (module, build_id)
        if key not in self.files:
            self.files[key] = None
            for path in self.candidates(module):
                loaded = self.load(path) if os.path.isfile(path) else None
                if loaded and (build_id is None or loaded[2] == build_id):
                    self.files[key] = loaded
                    break
        loaded = self.files[key]
        if loaded is None:
            return None
        data, segments, _ = loaded
        for start, filesz, offset in segments:
            if start <= vaddr and vaddr + size <= start + filesz:
                return data[offset + vaddr - start:offset + vaddr - start + size]
        return None


def jump_target(arch, code, address):
    """The target of the jump that ends just before `address` (`code`: the 5 bytes before it),
    or None when no jump ends there: AArch64 `b imm26`, x86-64 `jmp rel32` or `jmp rel8`."""
    if arch == "aarch64":
        insn, = struct.unpack("<I", code[-4:])
        if insn & 0xfc000000 != 0x14000000:
            return None
        imm26 = insn & 0x3ffffff
        return address - 4 + ((imm26 - (1 << 26) if imm26 & (1 << 25) else imm26) << 2)
    if code[0] == 0xe9:
        return address + struct.unpack("<i", code[1:])[0]
    if code[3] == 0xeb:
        return address + struct.unpack("<b", code[4:])[0]
    return None


def tail_call_checks_out(arch, code_files, frame, inner):
    """Whether a tail-call frame pymortem rebuilt and gdb did not is borne out by the code:
    the instruction before its address is a jump to the start of the function of the frame
    inside it (both from the module's file)."""
    offset = frame.get("module_offset")
    if offset is None or inner is None or inner.get("function_offset") is None:
        return False
    code = code_files.read(frame.get("module"), frame.get("build_id"), offset - 5, 5)
    if code is None:
        return False
    address = frame["address"]["address"]
    return jump_target(arch, code, address) == inner["address"]["address"] - inner["function_offset"]


def run(cmd, env=None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return proc, time.perf_counter() - start


def compare_core(entry, pymortem):
    core = entry["core"]
    arm64 = entry.get("arch") == "aarch64"
    # -ex runs after the exe and core are loaded; the aarch64 cores need the sysroot and
    # the debug folder before (-iex), else exe frames have dynsym names only.
    gdb_bin, setting = ("gdb-multiarch", "-iex") if arm64 else ("gdb", "-ex")
    gdb = [gdb_bin, "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0"]
    pm = [pymortem, "threads", "--native", "--json", core]
    debug_dirs = list(entry.get("debug_dirs") or [])
    if entry.get("sysroot"):
        gdb += [setting, "set sysroot " + entry["sysroot"]]
        pm += ["--sysroot", entry["sysroot"]]
    else:
        debug_dirs.append("/usr/lib/debug")
    if debug_dirs:
        gdb += [setting, "set debug-file-directory " + ":".join(debug_dirs)]
    for d in entry.get("debug_dirs") or []:
        pm += ["--debug-dir", d]
    gdb += ["-ex", "thread apply all bt", entry["exe"], core]
    gdb_proc, gdb_seconds = run(gdb)
    pm_proc, pm_seconds = run(pm)
    row = {"core": os.path.relpath(core, ROOT), "gdb_seconds": gdb_seconds, "pymortem_seconds": pm_seconds,
           "compared": 0, "agree": 0, "disagreements": [], "gdb_only": 0, "pymortem_only": 0,
           "unnamed": 0, "error": None, "gdb_only_frames": [], "pymortem_only_frames": [],
           "named_by_gdb_only": [], "tail_calls_checked": 0}
    # 3: a frame walk stopped early (the core lacks memory); the native frames are all there.
    if pm_proc.returncode not in (0, 1, 3):
        row["error"] = "pymortem exited %d: %s" % (pm_proc.returncode, pm_proc.stderr.strip()[-300:])
        return row
    report = json.loads(pm_proc.stdout)
    by_gdb = gdb_threads(gdb_proc.stdout)
    code_files = ModuleCode(entry)
    for thread in report["threads"]:
        lwp = thread.get("lwp")
        groups = by_gdb.get(lwp)
        stack = thread.get("stack")
        if groups is None or stack is None:
            continue
        natives = [f for f in stack["frames"] if f["kind"] == "native"]
        # Walk both stacks in order: the same return address recurs in deep recursion.
        next_group = 0
        for i, frame in enumerate(natives):
            address = frame["address"]["address"]
            found = None
            # A rebuilt tail-call frame gdb did not rebuild must not pull the
            # match ahead to a later frame at the same address.
            window = 1 if frame.get("trust") == "tail_call" else 16
            for k in range(next_group, min(len(groups), next_group + window)):
                if matches(groups[k], k, next_group, i, frame, address):
                    found = k
                    break
            if found is None:
                row["pymortem_only"] += 1
                if frame.get("trust") == "tail_call" and tail_call_checks_out(
                        entry.get("arch", "x86_64"), code_files, frame, natives[i - 1] if i else None):
                    row["tail_calls_checked"] += 1
                else:
                    row["pymortem_only_frames"].append("LWP %s #%d %s" % (lwp, i, describe_frame(frame)))
                continue
            # gdb frames skipped over (pymortem synthesizes tail-call frames too, so
            # these are frames it missed).
            row["gdb_only"] += found - next_group
            row["gdb_only_frames"] += ["LWP %s #%d %s" % (lwp, k, describe_group(groups[k]))
                                       for k in range(next_group, found)]
            group = groups[found]
            next_group = found + 1
            gdb_names = group["names"]
            physical = gdb_names[-1]
            if physical == "<signal handler called>":
                row["compared"] += 1
                if frame.get("signal_frame"):
                    row["agree"] += 1
                else:
                    row["disagreements"].append("LWP %s %#x: gdb <signal handler called>, pymortem %s"
                                                % (lwp, address, frame.get("function")))
                continue
            source = [s.get("function") for s in frame.get("source") or []]
            ours = {normalise(frame.get("function"))}
            if source:
                ours.add(normalise(source[-1]))
            if frame.get("trust") == "tail_call":
                # gdb names a tail-call frame by the function the jump is in,
                # the innermost inlined one, without the inlined chain.
                ours.update(normalise(s) for s in source)
            ours.discard(None)
            if physical == "??" or not ours:
                row["unnamed"] += 1
                if physical != "??":
                    row["named_by_gdb_only"].append("LWP %s #%d %s" % (lwp, i, describe_group(group)))
                continue
            row["compared"] += 1
            inline_ok = all(normalise(n) in {normalise(s) for s in source} for n in gdb_names[:-1])
            if normalise(physical) in ours and inline_ok:
                row["agree"] += 1
            else:
                row["disagreements"].append("LWP %s %#x: gdb %s, pymortem %s (inlined %s)"
                                            % (lwp, address, " < ".join(gdb_names), frame.get("function"), source[:-1]))
        row["gdb_only"] += len(groups) - next_group
        row["gdb_only_frames"] += ["LWP %s #%d %s" % (lwp, k, describe_group(groups[k]))
                                   for k in range(next_group, len(groups))]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", nargs="+")
    ap.add_argument("--interp", nargs="+")
    ap.add_argument("--kind", nargs="+")
    ap.add_argument("--pymortem", default=os.path.join(ROOT, "target", "release", "pymortem"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--details", action="store_true",
                    help="list the frames only one side shows, and those only gdb names")
    ap.add_argument("--out", default=OUT, help="folder for summary.json")
    args = ap.parse_args()
    manifest_path = os.path.join(os.environ.get("PYMORTEM_CORES", os.path.join(ROOT, "sample-cores", "generated")),
                                 "manifest.json")
    if not os.path.exists(manifest_path):
        print("no %s: run python3 sample-cores/generate.py first" % manifest_path, file=sys.stderr)
        return 2
    entries = json.load(open(manifest_path))
    entries = [e for e in entries
               if (not args.scenario or e["scenario"] in args.scenario)
               and (not args.interp or e["interp"] in args.interp)
               and (not args.kind or e["kind"] in args.kind)]
    gdbs = {"gdb-multiarch" if e.get("arch") == "aarch64" else "gdb" for e in entries} or {"gdb"}
    if any(shutil.which(g) is None for g in gdbs) or not os.path.exists(args.pymortem):
        print("needs %s on PATH and %s (cargo build --release)" % (" and ".join(sorted(gdbs)), args.pymortem),
              file=sys.stderr)
        return 2
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda e: compare_core(e, args.pymortem), entries))
    totals = {k: sum(r[k] for r in rows)
              for k in ("compared", "agree", "gdb_only", "pymortem_only", "tail_calls_checked", "unnamed")}
    totals["disagree"] = sum(len(r["disagreements"]) for r in rows)
    totals["errors"] = sum(1 for r in rows if r["error"])
    totals["cores"] = len(rows)
    totals["gdb_seconds"] = round(sum(r["gdb_seconds"] for r in rows), 3)
    totals["pymortem_seconds"] = round(sum(r["pymortem_seconds"] for r in rows), 3)
    for r in rows:
        if not args.quiet or r["disagreements"] or r["error"]:
            print("%-60s compared %3d agree %3d gdb-only %2d pymortem-only %2d (tail calls checked %2d)"
                  "  gdb %.2fs pymortem %.3fs%s"
                  % (r["core"], r["compared"], r["agree"], r["gdb_only"], r["pymortem_only"],
                     r["tail_calls_checked"],
                     r["gdb_seconds"], r["pymortem_seconds"], "  ERROR " + r["error"] if r["error"] else ""))
            for d in r["disagreements"]:
                print("    " + d)
            if args.details:
                for key in ("gdb_only_frames", "pymortem_only_frames", "named_by_gdb_only"):
                    for d in r[key]:
                        print("    %s: %s" % (key, d))
    print("summary: %s" % json.dumps(totals))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"totals": totals, "cores": rows}, f, indent=1)
    return 1 if totals["disagree"] or totals["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
