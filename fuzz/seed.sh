#!/usr/bin/env bash
# Seed the fuzz corpora from the sample cores and from real binaries.
set -euo pipefail
cd "$(dirname "$0")"
manifest="${PYMORTEM_CORES:-../sample-cores/generated}/manifest.json"
cores=$(python3 -c "import json,sys; m=json.load(open('$manifest')); print(' '.join(e['core'] for e in m if e['kind'] in ('kernel', 'qemu') and e['scenario'] in ('threads','generator')))")
mkdir -p corpus/core_notes corpus/memory_view corpus/dwarf_layout corpus/python_walkers corpus/cfi_step
for c in $cores; do
    n=$(basename "$(dirname "$c")")-$(basename "$c" .core)
    # Headers, program headers and notes come first in kernel cores.
    head -c 65536 "$c" > "corpus/core_notes/$n"
    head -c 32768 "$c" > "corpus/memory_view/$n"
    # A slice of a heap segment: real objects, pointers and strings.
    python3 - "$c" "corpus/python_walkers/$n" <<'PY'
import sys, struct
data = open(sys.argv[1], 'rb').read()
phoff, = struct.unpack_from('<Q', data, 32)
phnum, = struct.unpack_from('<H', data, 56)
best = None
for i in range(phnum):
    p_type, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from('<IIQQQQQQ', data, phoff + 56 * i)
    if p_type == 1 and flags & 2 and filesz >= 65536 and (best is None or filesz > best[1]):
        best = (off, filesz)
if best:
    open(sys.argv[2], 'wb').write(data[best[0] + 4096: best[0] + 4096 + 16384])
PY
done
# Small ELF files with DWARF.
for f in ~/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_bisect*.so ~/.pyenv/versions/2.7.18/lib/python2.7/lib-dynload/_bisect.so; do
    [ -f "$f" ] && cp "$f" "corpus/dwarf_layout/$(basename "$f")"
done
ls corpus/* | head -40
# CFI steps: a 160-byte head (registers, stack; bit 1 of the first byte picks
# AArch64) then a real `.eh_frame` of each architecture's C library.
libcs=$(python3 -c "import json; m=json.load(open('$manifest')); print(' '.join(sorted({(e.get('sysroot') or '/') + '|' + e.get('arch', 'x86_64') for e in m})))")
for pair in $libcs; do
    root=${pair%|*}; arch=${pair#*|}
    for libc in "$root"/lib/*-linux-gnu/libc.so.6 "$root"/usr/lib/*-linux-gnu/libc.so.6; do
        [ -f "$libc" ] || continue
        python3 - "$libc" "corpus/cfi_step/$arch-$(echo "$root" | md5sum | cut -c1-8)" "$arch" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
shoff, = struct.unpack_from('<Q', data, 40)
shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 58)
def section(i):
    return struct.unpack_from('<IIQQQQ', data, shoff + shentsize * i)
names = section(shstrndx)[4]
for i in range(shnum):
    name, _, _, addr, off, size = section(i)
    if data[names + name:data.index(b'\0', names + name)] == b'.eh_frame':
        head = bytearray(160)
        head[0] = 3 if sys.argv[3] == 'aarch64' else 1
        open(sys.argv[2], 'wb').write(bytes(head) + data[off:off + min(size, 65536)])
PY
        break
    done
done

