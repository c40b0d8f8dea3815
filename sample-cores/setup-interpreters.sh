#!/usr/bin/env bash
# Set up every interpreter that sample-cores/generate.py needs, and the Debian
# packages that it and the tests use (gdb, binutils, zstd, xz-utils, lz4, gzip,
# dpkg, coreutils' chroot, gcc, the archive keyring, qemu-user-static,
# gdb-multiarch; installed only when missing),
# and each interpreter's C headers (for the scenarios' C extension).
#
#   pyenv-2.7.18 ... pyenv-3.13.0   $PYENV_ROOT/versions/X.Y.Z; a missing one is built with
#                                   `pyenv install` (--enable-shared, CPython's default -g -O3:
#                                   full DWARF) when pyenv is installed, a few minutes each
#   debian-3.11                     host /usr/bin/python3.11 (stripped) + split debug files
#                                   from python3.11-dbg, unpacked (never installed) into
#                                   $CACHE/debian-3.11/dbg. If the apt repository has no -dbg
#                                   package of the installed version, python3.11 and its sibling
#                                   packages are (re)installed at the -dbg package's version so
#                                   the build-ids match.
#   debian-3.13 (trixie)            private apt setup; runtime closure unpacked into
#   debian-3.14 (sid)               $CACHE/debian-3.X/root (run with `chroot ROOT ...`), the
#   debian-3.15 (sid)               python3.X-dbg package unpacked into $CACHE/debian-3.X/dbg
#                                   (NOT into ROOT, so a core can be read "without debug files"
#                                   by simply not passing the debug dir).
#   debian-3.11-arm64 (bookworm)    the same for Debian's arm64 packages (private apt with
#   debian-3.13-arm64 (trixie)      APT::Architecture=arm64), in $CACHE/debian-3.X-arm64/{root,dbg};
#   debian-3.14-arm64 (sid)         run with `chroot ROOT /usr/bin/qemu-aarch64-static
#   debian-3.15-arm64 (sid)         /usr/bin/python3.X` (the host's qemu-user-static is copied
#                                   into ROOT/usr/bin; QEMU_CPU=cortex-a72 for the checks)
#
# Idempotent: each interpreter writes a stamp ($CACHE/<name>/.ready) after it verified the
# set-up; a later run re-verifies cheaply and does nothing else.
# The cache is per user, so every clone shares one set-up (from scratch: 740 MB, mostly
# downloads, 109-346 s measured on the 2-core machine; the arm64 interpreters add 930 MB and
# about 62 s, and a cached run takes about 8 s: each arm64 check runs Python under QEMU).
# Any interpreter that cannot be set up is a hard failure (exit 1), never skipped.
#
# Env: PYMORTEM_CORE_CACHE  cache dir (default: ${XDG_CACHE_HOME:-~/.cache}/pymortem-tests/interpreters;
#                           generate.py uses the same rule)
#      PYENV_ROOT           default ~/.pyenv
#      PYMORTEM_SID_SUITE   suite used for 3.14 (default sid)
#      PYMORTEM_315_SUITE   suite used for 3.15 (default sid; experimental carried it first)
set -euo pipefail

USER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
CACHE="${PYMORTEM_CORE_CACHE:-$USER_CACHE/pymortem-tests/interpreters}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
SID_SUITE="${PYMORTEM_SID_SUITE:-sid}"
SUITE_315="${PYMORTEM_315_SUITE:-sid}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PYENV_VERSIONS="2.7.18 3.6.15 3.7.16 3.8.18 3.9.18 3.10.13 3.11.7 3.12.1 3.13.0"

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
FAILED=()

log() { echo "[setup] $*" >&2; }
fail() { echo "[setup] ERROR: $*" >&2; FAILED+=("$1"); }

need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (for $1)"
    apt_updated_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null
}

APT_UPDATED=0
apt_updated_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq || { echo "[setup] ERROR: apt-get update failed" >&2; exit 1; }
        APT_UPDATED=1
    fi
}

# build_id FILE -> hex build-id (empty if none)
build_id() { readelf -n "$1" 2>/dev/null | awk '/Build ID:/ {print $3; exit}'; }

# ---------------------------------------------------------------- tools
if [ "$(id -u)" != 0 ]; then
    echo "[setup] ERROR: must run as root (apt-get, chroot)" >&2; exit 1
fi
command -v apt-get >/dev/null || { echo "[setup] ERROR: needs a Debian system (apt-get)" >&2; exit 1; }
need_tool gdb gdb
need_tool readelf binutils
need_tool zstd zstd
need_tool xz xz-utils
need_tool lz4 lz4
need_tool gzip gzip
need_tool dpkg-deb dpkg
need_tool chroot coreutils
need_tool gcc gcc
need_tool debuginfod debuginfod
need_tool dwz dwz
# The crash database's server tests (a private PostgreSQL server per test)
# and the HTML report's test in headless Chromium.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_tool /usr/lib/postgresql/initdb postgresql
need_tool chromium chromium
# the arm64 interpreters run under QEMU's user-mode emulator (which also writes their cores);
# gdb-multiarch reads those cores (the native-stack comparison)
need_tool qemu-aarch64-static qemu-user-static
need_tool gdb-multiarch gdb-multiarch
[ -r "$KEYRING" ] || need_tool /usr/share/keyrings/debian-archive-keyring.gpg debian-archive-keyring

# ---------------------------------------------------------------- core pattern
pattern="$(cat /proc/sys/kernel/core_pattern)"
case "$pattern" in
    core) ;;
    *)
        echo "[setup] ERROR: /proc/sys/kernel/core_pattern is '$pattern'; generate.py needs 'core'" >&2
        echo "[setup]        (kernel cores land in the crashing process's cwd). Fix with:" >&2
        echo "[setup]        echo core > /proc/sys/kernel/core_pattern; echo 0 > /proc/sys/kernel/core_uses_pid" >&2
        echo "[setup]        or run generate.py --kind gcore only." >&2
        FAILED+=("core_pattern")
        ;;
esac
if [ "$(cat /proc/sys/kernel/core_uses_pid)" != 0 ]; then
    log "note: core_uses_pid=1; generate.py also accepts core.<pid>"
fi

# ---------------------------------------------------------------- pyenv
PYENV="$PYENV_ROOT/bin/pyenv"
# build_pyenv VERSION: how the machine's interpreters were built (shared libpython, DWARF)
build_pyenv() {
    local pkg
    for pkg in build-essential libssl-dev zlib1g-dev libbz2-dev libreadline-dev libsqlite3-dev \
        libffi-dev liblzma-dev libncurses-dev uuid-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && continue
        apt_updated_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
    done
    log "pyenv-$1: building (pyenv install $1; a few minutes)"
    PYENV_ROOT="$PYENV_ROOT" PYTHON_CONFIGURE_OPTS="--enable-shared" MAKE_OPTS="-j$(nproc)" \
        "$PYENV" install --skip-existing "$1" >&2
}
for v in $PYENV_VERSIONS; do
    exe="$PYENV_ROOT/versions/$v/bin/python"
    if [ ! -x "$exe" ]; then
        if [ ! -x "$PYENV" ]; then
            fail "pyenv-$v"
            echo "[setup]        missing $exe, and no pyenv in $PYENV_ROOT: install pyenv" >&2
            echo "[setup]        (https://github.com/pyenv/pyenv) and run this again, it builds what is missing" >&2
            continue
        fi
        if ! build_pyenv "$v" || [ ! -x "$exe" ]; then
            fail "pyenv-$v"; echo "[setup]        pyenv install $v failed (its output is above)" >&2
            continue
        fi
    fi
    got="$("$exe" -c 'import platform; print(platform.python_version())' 2>/dev/null || true)"
    if [ "$got" != "$v" ]; then
        fail "pyenv-$v"; echo "[setup]        $exe reports version '$got'" >&2
        continue
    fi
    if ! "$exe" -c 'import ctypes, threading, json' 2>/dev/null; then
        fail "pyenv-$v"; echo "[setup]        $exe cannot import ctypes/threading/json" >&2
        continue
    fi
    log "pyenv-$v ok"
done

# ---------------------------------------------------------------- debian-3.11 (host)
setup_debian_311() {
    local d="$CACHE/debian-3.11" exe=/usr/bin/python3.11
    local bid
    if [ -f "$d/.ready" ] && [ -x "$exe" ]; then
        bid="$(build_id "$exe")"
        if [ -n "$bid" ] && [ -f "$d/dbg/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" ]; then
            log "debian-3.11 ok (cached, build-id $bid)"; return 0
        fi
    fi
    apt_updated_once
    local installed dbgver
    installed="$(dpkg-query -W -f='${Version}' python3.11 2>/dev/null || true)"
    # all versions of python3.11-dbg the repository has
    local avail
    avail="$(apt-cache madison python3.11-dbg | awk -F'|' '{gsub(/ /,"",$2); print $2}')"
    if [ -z "$avail" ]; then echo "[setup] ERROR: no python3.11-dbg in the apt sources" >&2; return 1; fi
    if [ -n "$installed" ] && echo "$avail" | grep -qxF "$installed"; then
        dbgver="$installed"
    else
        dbgver="$(apt-cache policy python3.11-dbg | awk '/Candidate:/ {print $2}')"
        log "python3.11 installed='${installed:-none}', python3.11-dbg available: $(echo $avail); installing python3.11 $dbgver to match"
        # every installed binary package built from the python3.11 source, plus the core set
        local pkgs="python3.11 python3.11-minimal libpython3.11 libpython3.11-minimal libpython3.11-stdlib"
        local p
        for p in $(dpkg-query -W -f='${Package} ${Source}\n' 2>/dev/null | awk '$2=="python3.11" || $1 ~ /python3\.11/ {print $1}'); do
            case " $pkgs " in *" $p "*) ;; *) pkgs="$pkgs $p";; esac
        done
        local spec=""
        for p in $pkgs; do
            # only packages that exist at that version
            if apt-cache madison "$p" | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$dbgver"; then
                spec="$spec $p=$dbgver"
            fi
        done
        DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades --no-install-recommends $spec >&2 \
            || { echo "[setup] ERROR: could not install python3.11 $dbgver" >&2; return 1; }
    fi
    mkdir -p "$d/debs"
    local deb
    deb="$(ls "$d"/debs/python3.11-dbg_"${dbgver//:/%3a}"_amd64.deb 2>/dev/null | head -1 || true)"
    if [ -z "$deb" ]; then
        (cd "$d/debs" && apt-get download "python3.11-dbg=$dbgver" >&2) \
            || { echo "[setup] ERROR: apt-get download python3.11-dbg=$dbgver failed" >&2; return 1; }
        deb="$(ls "$d"/debs/python3.11-dbg_*.deb | head -1)"
    fi
    rm -rf "$d/dbg"; mkdir -p "$d/dbg"
    dpkg -x "$deb" "$d/dbg"
    bid="$(build_id "$exe")"
    if [ -z "$bid" ] || [ ! -f "$d/dbg/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" ]; then
        echo "[setup] ERROR: build-id $bid of $exe has no file in $d/dbg/usr/lib/debug/.build-id" >&2
        return 1
    fi
    echo "version=$dbgver build_id=$bid" > "$d/.ready"
    log "debian-3.11 ok ($dbgver, build-id $bid)"
}
setup_debian_311 || fail "debian-3.11"

# The C headers of the host's python3.11, for the scenarios' C extension.
setup_headers_311() {
    [ -f /usr/include/python3.11/Python.h ] && return 0
    local installed
    installed="$(dpkg-query -W -f='${Version}' python3.11 2>/dev/null || true)"
    apt_updated_once
    log "debian-3.11: installing libpython3.11-dev $installed (headers)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "libpython3.11-dev=$installed" >&2 \
        || { echo "[setup] ERROR: could not install libpython3.11-dev=$installed" >&2; return 1; }
}
setup_headers_311 || fail "debian-3.11 headers"

# ---------------------------------------------------------------- private apt (3.13 / 3.14 / 3.15, arm64)
# papt ARCH SUITE apt-get|apt-cache ARGS...
# A private apt state per suite and architecture ($CACHE/apt/<suite> for amd64,
# $CACHE/apt/<suite>-<arch> for the others: the package lists are per architecture);
# the system's apt configuration is never touched.
papt() {
    local arch="$1" suite="$2" tool="$3"; shift 3
    local a="$CACHE/apt/$suite"
    [ "$arch" = amd64 ] || a="$CACHE/apt/$suite-$arch"
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/state" "$a/empty.d"
    [ -f "$a/state/status" ] || : > "$a/state/status"
    echo "deb [arch=$arch signed-by=$KEYRING] http://deb.debian.org/debian $suite main" > "$a/sources.list"
    "$tool" -o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts="$a/empty.d" \
        -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" -o Dir::State="$a/state" \
        -o Dir::State::status="$a/state/status" -o Dir::Etc::Preferences="$a/empty.d/none" \
        -o Dir::Etc::PreferencesParts="$a/empty.d" -o APT::Architectures::="$arch" \
        -o APT::Architecture="$arch" -o APT::Install-Recommends=false -o Debug::NoLocking=1 "$@"
}

# The CPU QEMU emulates for the arm64 checks (generate.py sets it per core kind):
# cortex-a72 (ARMv8.0: no pointer authentication, SVE or MTE) runs 2-5x faster than "max".
QEMU_CHECK_CPU=cortex-a72

# in_root ARCH ROOT CMD...: run CMD (a path inside ROOT) in the chroot, under QEMU for arm64
in_root() {
    local arch="$1" root="$2"; shift 2
    if [ "$arch" = amd64 ]; then
        chroot "$root" "$@"
    else
        QEMU_CPU="$QEMU_CHECK_CPU" chroot "$root" /usr/bin/qemu-aarch64-static "$@"
    fi
}

# gettid's syscall number, for the ctypes check
sys_gettid() { case "$1" in arm64) echo 178;; *) echo 186;; esac; }

# setup_debian_chroot VER SUITE [ARCH]: Debian's pythonVER of SUITE for ARCH (default amd64),
# its runtime closure unpacked into $CACHE/debian-VER[-ARCH]/root, python VER-dbg into .../dbg.
setup_debian_chroot() {
    local ver="$1" suite="$2" arch="${3:-amd64}" name="debian-$1"
    [ "$arch" = amd64 ] || name="debian-$ver-$arch"
    local d="$CACHE/$name" root="$CACHE/$name/root" dbg="$CACHE/$name/dbg"
    local exe="$root/usr/bin/python$ver" bid
    local check="import ctypes, threading, json; ctypes.CDLL(None).syscall($(sys_gettid "$arch"))"
    if [ "$arch" = arm64 ]; then
        # QEMU runs inside the chroot (guest paths everywhere, as on an arm64 machine);
        # the copy follows the host's package
        local qemu
        qemu="$(command -v qemu-aarch64-static)" || { echo "[setup] ERROR: no qemu-aarch64-static" >&2; return 1; }
        if [ -d "$root/usr/bin" ] && ! cmp -s "$qemu" "$root/usr/bin/qemu-aarch64-static"; then
            cp -p "$qemu" "$root/usr/bin/qemu-aarch64-static"
        fi
    fi
    if [ -f "$d/.ready" ] && [ -x "$exe" ]; then
        bid="$(build_id "$exe")"
        if [ -f "$dbg/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" ] \
            && in_root "$arch" "$root" "/usr/bin/python$ver" -c "$check" >/dev/null 2>&1; then
            log "$name ok (cached, $(cat "$d/.ready"))"; return 0
        fi
    fi
    log "$name: apt update ($suite, $arch)"
    papt "$arch" "$suite" apt-get -qq update >&2 || { echo "[setup] ERROR: private apt-get update for $suite ($arch) failed" >&2; return 1; }
    local pyver
    # anchored: apt-cache takes the name as a regex (python3.15 would match
    # postgresql-plpython3-15 on bookworm)
    pyver="$(papt "$arch" "$suite" apt-cache policy "^python${ver//./\\.}\$" | awk '/Candidate:/ {print $2; exit}')"
    if [ -z "$pyver" ] || [ "$pyver" = "(none)" ]; then
        echo "[setup] ERROR: suite $suite has no python$ver for $arch" >&2; return 1
    fi
    log "$name: python$ver $pyver from $suite; downloading runtime closure"
    # an archive dir per interpreter: 3.14 and 3.15 both come from sid, and a shared one
    # would unpack one interpreter's packages into the other's root
    local debs="$d/debs"
    mkdir -p "$debs/partial"
    # full dependency closure of the release interpreter (status file is empty, so
    # apt resolves everything, libc6 included)
    papt "$arch" "$suite" apt-get -qq -y -d -o Dir::Cache::archives="$debs/" install \
        "python$ver=$pyver" "python$ver-minimal=$pyver" \
        "libpython$ver-minimal=$pyver" "libpython$ver-stdlib=$pyver" libffi8 >&2 \
        || { echo "[setup] ERROR: download of python$ver closure failed" >&2; return 1; }
    # the split debug files of /usr/bin/python3.X live in python3.X-dbg (no deps needed)
    mkdir -p "$d/dbgdebs"
    local dbgdeb="python$ver-dbg_${pyver//:/%3a}_$arch.deb"
    (cd "$d/dbgdebs" && { [ -f "$dbgdeb" ] || papt "$arch" "$suite" apt-get -qq download "python$ver-dbg=$pyver" >&2; }) \
        || { echo "[setup] ERROR: download of python$ver-dbg failed" >&2; return 1; }
    rm -rf "$root" "$dbg"; mkdir -p "$root" "$dbg"
    # unpack only the newest version of each package present in the archive cache
    local f pkg
    for f in $(ls -t "$debs"/*.deb); do
        pkg="$(dpkg-deb -f "$f" Package)"
        [ -e "$d/.unpacked.$pkg" ] && continue
        dpkg -x "$f" "$root"; : > "$d/.unpacked.$pkg"
    done
    rm -f "$d"/.unpacked.*
    dpkg -x "$d/dbgdebs/$dbgdeb" "$dbg"
    # the -dbg package also ships python3.Xd; drop it, only the debug files matter
    rm -rf "$dbg/usr/bin" "$dbg/usr/share"
    # merged-/usr: the /lib64 -> usr/lib64 etc. links come from base-files, not from the
    # packages we unpack; create them so the ELF interpreter path resolves (bookworm is
    # not merged: its libc6 ships /lib itself).
    for f in bin sbin lib lib64; do
        [ -e "$root/$f" ] || [ ! -d "$root/usr/$f" ] || ln -s "usr/$f" "$root/$f"
    done
    mkdir -p "$root/tmp" "$root/proc" "$root/dev"
    chmod 1777 "$root/tmp"
    [ -e "$root/dev/null" ] || mknod -m 666 "$root/dev/null" c 1 3 || true
    [ "$arch" = amd64 ] || cp -p "$(command -v qemu-aarch64-static)" "$root/usr/bin/qemu-aarch64-static"
    bid="$(build_id "$exe")"
    if [ -z "$bid" ] || [ ! -f "$dbg/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" ]; then
        echo "[setup] ERROR: build-id $bid of $exe has no file under $dbg/usr/lib/debug/.build-id" >&2
        return 1
    fi
    if ! in_root "$arch" "$root" "/usr/bin/python$ver" -c "$check" >&2; then
        echo "[setup] ERROR: chroot $root /usr/bin/python$ver ($arch) cannot run ctypes" >&2; return 1
    fi
    # the interpreter reports the package's upstream version (3.15.0~rc1-1 -> 3.15.0rc1)
    local upstream got
    upstream="${pyver#*:}"; upstream="${upstream%%-*}"; upstream="${upstream//\~/}"
    got="$(in_root "$arch" "$root" "/usr/bin/python$ver" -c 'import platform; print(platform.python_version())')"
    if [ "$got" != "$upstream" ]; then
        echo "[setup] ERROR: chroot $root /usr/bin/python$ver ($arch) reports $got, package is $pyver" >&2; return 1
    fi
    if [ "$arch" = amd64 ]; then
        echo "version=$pyver suite=$suite build_id=$bid" > "$d/.ready"
    else
        local machine
        machine="$(in_root "$arch" "$root" "/usr/bin/python$ver" -c 'import platform; print(platform.machine())')"
        if [ "$machine" != aarch64 ]; then
            echo "[setup] ERROR: chroot $root /usr/bin/python$ver runs as '$machine', not aarch64" >&2; return 1
        fi
        echo "version=$pyver suite=$suite arch=$arch build_id=$bid" > "$d/.ready"
    fi
    log "$name ok ($pyver from $suite, build-id $bid)"
}
setup_debian_chroot 3.13 trixie || fail "debian-3.13"
setup_debian_chroot 3.14 "$SID_SUITE" || fail "debian-3.14"
setup_debian_chroot 3.15 "$SUITE_315" || fail "debian-3.15"
# arm64: 3.11 from bookworm (the host's suite), the others from the amd64 ones' suites
setup_debian_chroot 3.11 bookworm arm64 || fail "debian-3.11-arm64"
setup_debian_chroot 3.13 trixie arm64 || fail "debian-3.13-arm64"
setup_debian_chroot 3.14 "$SID_SUITE" arm64 || fail "debian-3.14-arm64"
setup_debian_chroot 3.15 "$SUITE_315" arm64 || fail "debian-3.15-arm64"

# The C headers of a chroot's interpreter (libpython3.X-dev at the interpreter's
# version), unpacked into its root: the scenarios' C extension is compiled
# against them on the host.
setup_chroot_headers() {
    local ver="$1" suite="$2" name="debian-$1"
    local d="$CACHE/$name" root="$CACHE/$name/root"
    [ -f "$root/usr/include/python$ver/Python.h" ] && return 0
    local pyver
    pyver="$(sed -n 's/^version=\([^ ]*\).*/\1/p' "$d/.ready" 2>/dev/null)"
    [ -n "$pyver" ] || { echo "[setup] ERROR: $name is not set up" >&2; return 1; }
    mkdir -p "$d/devdebs"
    local deb="libpython$ver-dev_${pyver//:/%3a}_amd64.deb"
    log "$name: headers (libpython$ver-dev $pyver)"
    (cd "$d/devdebs" && { [ -f "$deb" ] || papt amd64 "$suite" apt-get -qq download "libpython$ver-dev=$pyver" >&2; }) \
        || { echo "[setup] ERROR: download of libpython$ver-dev failed" >&2; return 1; }
    dpkg -x "$d/devdebs/$deb" "$root"
    [ -f "$root/usr/include/python$ver/Python.h" ] \
        || { echo "[setup] ERROR: libpython$ver-dev has no Python.h" >&2; return 1; }
}
setup_chroot_headers 3.13 trixie || fail "debian-3.13 headers"
setup_chroot_headers 3.14 "$SID_SUITE" || fail "debian-3.14 headers"
setup_chroot_headers 3.15 "$SUITE_315" || fail "debian-3.15 headers"

if [ "${#FAILED[@]}" != 0 ]; then
    echo "[setup] FAILED: ${FAILED[*]}" >&2
    exit 1
fi
log "all interpreters ready (cache: $CACHE)"
