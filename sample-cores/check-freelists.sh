#!/usr/bin/env bash
# Cross-check the free-list truth of the double_free / use_after_free /
# gc_already_tracked(3.8+) cores with gdb (DWARF of the pyenv builds, split
# debug files of the Debian builds):  head == victim, link == expected, count == expected.
# The arm64 cores (debian-3.X-arm64) are read with gdb-multiarch.
#   check-freelists.sh [OUT_DIR]     (default $PYMORTEM_CORES or sample-cores/generated)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${PYMORTEM_CORES:-$HERE/generated}}"
fails=0; n=0
while IFS='|' read -r interp scen kind core truth exe sysroot dbg arch; do
    read -r victim idx enumfree elink < <(python3 -c "
import json,sys; o=json.load(open('$truth'))['objects']
print(o['victim_tuple'], o['freelist_index'], o['expected_numfree'], o['expected_victim_link'])")
    base="${interp%-arm64}"
    gdb=gdb; [ "$arch" = aarch64 ] && gdb=gdb-multiarch
    case $base in
     pyenv-2.7.*|pyenv-3.[6-9].*) H="'tupleobject.c'::free_list[$idx]"; N="'tupleobject.c'::numfree[$idx]";;
     pyenv-3.1[0-2].*|debian-3.11) H="_PyRuntime.interpreters.main->tuple.free_list[$idx]"; N="_PyRuntime.interpreters.main->tuple.numfree[$idx]";;
     pyenv-3.13.*|debian-3.13) H="_PyRuntime.interpreters.main->object_state.freelists.tuples.items[$idx]"; N="_PyRuntime.interpreters.main->object_state.freelists.tuples.numfree[$idx]";;
     debian-3.1[45]) H="_PyRuntime.interpreters.main->object_state.freelists.tuples[$idx].freelist"; N="_PyRuntime.interpreters.main->object_state.freelists.tuples[$idx].size";;
     *) echo "skip $interp"; continue;;
    esac
    case $base in debian-3.1[45]) LINK='*(long*)$h';; *) LINK='(long)((PyTupleObject*)$h)->ob_item[0]';; esac
    args=(); [ -n "$sysroot" ] && args+=(-iex "set sysroot $sysroot")
    [ -n "$dbg" ] && args+=(-iex "set debug-file-directory $dbg")
    got=$($gdb -batch -nx "${args[@]}" -ex "set \$h=(long)$H" -ex 'printf "RESULT %ld ", $h' \
          -ex "printf \"%ld \", $LINK" -ex "printf \"%d\n\", $N" "$exe" "$core" 2>/dev/null | grep '^RESULT' | cut -d' ' -f2-)
    want="$victim $elink $enumfree"
    n=$((n+1))
    if [ "$got" = "$want" ]; then echo "ok   $interp/$scen/$kind"; else echo "FAIL $interp/$scen/$kind: got '$got' want '$want'"; fails=$((fails+1)); fi
done < <(python3 -c "
import json
for e in json.load(open('$OUT/manifest.json')):
    if e['scenario'] in ('double_free','use_after_free') and e['ok']:
        print('|'.join([e['interp'], e['scenario'], e['kind'], e['core'], e['truth'], e['exe'], e['sysroot'] or '', ':'.join(e['debug_dirs']), e.get('arch', 'x86_64')]))
")
echo "$((n-fails)) passed, $fails failed"
[ "$fails" = 0 ]
