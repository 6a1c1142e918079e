#!/usr/bin/env bash
# The arm64 check (docs/raspberry-pi.md): kadtalk's own ./setup.sh and its tests in an emulated
# Debian 12 arm64 root built from Debian's packages (debootstrap, qemu-user-static, binfmt_misc).
# Entry point: ./setup.sh arm64 [OPTIONS] (./setup.sh armhf: the same with --arch armhf, the
# 32-bit Raspberry Pi OS). Run with --help for the options.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SUITE=bookworm
ARCH=arm64             # Debian's name (--arch): MACHINE and QEMU follow from it below
HOST_PACKAGES="debootstrap qemu-user-static curl"
# What debootstrap puts in the root; ./setup.sh inside installs everything else the project needs.
INCLUDE=ca-certificates,python3,python3-venv
PROJECT=/opt/kadtalk       # the copy of the project inside the root
TOOLS=/opt/kadtalk-arm64   # this directory's Python helpers inside the root

usage() {
    cat <<EOF
Usage: ./setup.sh arm64 [--quick] [OPTIONS] [-- PYTEST_ARGS...]

Builds (once, then cached) an emulated Debian 12 arm64 root with debootstrap, qemu-user-static
and binfmt_misc, copies the project into it (\`git archive HEAD\`: the committed tree), runs
the project's own ./setup.sh inside it (so Opus, ALSA, cryptography and numpy are the arm64
builds), proves that the interpreter and those libraries are aarch64, then runs the tests.
Needs root (mounts, chroot), binfmt_misc, and network access to a Debian mirror and PyPI.

  --arch ARCH      arm64 (default) or armhf (32-bit, Raspberry Pi OS 32-bit: numpy and psutil
                   are Debian's builds, see docs/raspberry-pi.md)
  --quick          run only the subset listed in tools/arm64/quick-tests.txt (identity,
                   routing, session vectors, media codec, ALSA, a two-daemon call);
                   under 20 minutes once the root is cached
  --worktree       copy the working tree (uncommitted changes too) instead of HEAD
  --ref REV        copy this commit instead of HEAD
  --rebuild        delete the cached root and build it again
  --cache DIR      where the root is kept (default: \${XDG_CACHE_HOME:-~/.cache}/kadtalk/arm64-bookworm)
  --mirror URL     Debian mirror (default: the host's apt source, else http://deb.debian.org/debian)
  -- ARGS          further arguments for pytest (after the test selection)
  -h, --help       this message

Timings under emulation say nothing about a Raspberry Pi's speed; this is a correctness check.
EOF
}

say() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '%s check: error: %s\n' "$ARCH" "$*" >&2; exit 1; }

# The host's own Debian mirror, so the root comes from wherever apt already reaches.
host_mirror() {
    local uri
    uri=$( {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:[/][/]/) print $i }'
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" { print $2 }'
    } | grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)
    uri=${uri%/}
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

quick_tests() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$HERE/quick-tests.txt" | grep -v '^$'
}

ARGS=("$@") QUICK=0 WORKTREE=0 REBUILD=0 CACHE="" MIRROR="" REF="" PYTEST_EXTRA=()
while (($#)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --arch) (($# >= 2)) || die "--arch needs arm64 or armhf"; ARCH=$2; shift ;;
        --worktree) WORKTREE=1 ;;
        --rebuild) REBUILD=1 ;;
        --cache) (($# >= 2)) || die "--cache needs a directory"; CACHE=$2; shift ;;
        --mirror) (($# >= 2)) || die "--mirror needs a URL"; MIRROR=$2; shift ;;
        --ref) (($# >= 2)) || die "--ref needs a commit"; REF=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        *) printf "arm64 check: error: unknown argument '%s' (pytest arguments go after --; see ./setup.sh arm64 --help)\n" "$1" >&2
           exit 2 ;;
    esac
    shift
done
case "$ARCH" in
    arm64) MACHINE=aarch64 QEMU=qemu-aarch64 ;;  # platform.machine() in the root, binfmt_misc entry
    armhf) MACHINE=armv7l QEMU=qemu-arm ;;
    *) die "--arch $ARCH: arm64 or armhf" ;;
esac
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kadtalk/$ARCH-$SUITE}
MIRROR=${MIRROR:-$(host_mirror)}
ROOT=$CACHE/root

((WORKTREE == 0)) || [[ -z $REF ]] || die "--worktree and --ref exclude each other"
REF=${REF:-HEAD}
case "$CACHE" in "$REPO" | "$REPO"/*) die "--cache $CACHE is inside the project; choose a directory outside it" ;; esac
((EUID == 0)) || die "needs root (debootstrap, mount and chroot): run sudo ./setup.sh arm64 ${ARGS[*]}"
((WORKTREE)) || git -C "$REPO" rev-parse -q --verify "$REF^{commit}" >/dev/null ||
    die "$REF is not a commit of $REPO (--ref), or $REPO is not a git clone (use --worktree)"

# --- host tools -------------------------------------------------------------------------------

install_host_packages() {
    local pkg missing=()
    for pkg in $HOST_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return
    say "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# qemu-user-static runs arm64 binaries once binfmt_misc knows it: mount binfmt_misc if needed
# and register qemu from the file the package ships (its F flag opens the interpreter now, so the
# root needs no copy of qemu).
enable_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/$QEMU.conf
    if [[ ! -e $dir/register ]]; then
        mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null ||
            die "binfmt_misc is not available: 'mount -t binfmt_misc binfmt_misc $dir' failed.
  The kernel needs CONFIG_BINFMT_MISC, and a container needs the right to mount it; on the host
  run that mount command (as root) and try again."
    fi
    if [[ ! -e $dir/$QEMU ]]; then
        [[ -r $conf ]] || die "$conf is missing: reinstall qemu-user-static (apt-get install --reinstall qemu-user-static)"
        say "registering $QEMU with binfmt_misc"
        cat "$conf" >"$dir/register" || die "could not register $QEMU in $dir/register (is it writable here?)"
    fi
    [[ $(head -n1 "$dir/$QEMU") == enabled ]] ||
        die "binfmt_misc entry $QEMU is disabled: echo 1 > $dir/$QEMU"
    [[ $(head -n1 "$dir/status") == enabled ]] ||
        die "binfmt_misc is disabled: echo 1 > $dir/status"
}

check_mirror() {
    curl -fsS --max-time 30 -o /dev/null "$MIRROR/dists/$SUITE/Release" 2>/tmp/kadtalk-arm64-curl.$$ || {
        local why; why=$(cat /tmp/kadtalk-arm64-curl.$$); rm -f /tmp/kadtalk-arm64-curl.$$
        die "cannot reach the Debian mirror $MIRROR ($why).
  The root and its packages come from Debian's mirror and the Python packages from PyPI:
  give this machine network access, or pass --mirror URL of a mirror it can reach."
    }
    rm -f /tmp/kadtalk-arm64-curl.$$
}

# --- the root -----------------------------------------------------------------------------------

mounts_under() { awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/mounts; }

unmount_all() {
    local m
    # Deepest first; lazily if something still holds a mount.
    for m in $(mounts_under "$ROOT" | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# Never delete a directory with /dev or /proc of the host mounted inside it.
remove_tree() {
    [[ -z $(mounts_under "$1") ]] || die "refusing to delete $1: still mounted: $(mounts_under "$1" | tr '\n' ' ')"
    rm -rf --one-file-system "$1"
}

build_root() {
    if ((REBUILD)) && [[ -d $ROOT ]]; then
        say "--rebuild: deleting $ROOT"
        remove_tree "$ROOT"
    fi
    if [[ -e $ROOT/.kadtalk-root-complete ]]; then
        say "cached $ARCH root: $ROOT (built $(cat "$ROOT/.kadtalk-root-complete"))"
        return
    fi
    local partial=$CACHE/root.partial start=$SECONDS
    [[ -d $partial ]] && remove_tree "$partial"
    say "debootstrap --arch=$ARCH --variant=minbase --include=$INCLUDE $SUITE (mirror $MIRROR); takes minutes"
    debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" "$SUITE" "$partial" "$MIRROR" ||
        die "debootstrap failed; see $partial/debootstrap/debootstrap.log"
    # The suite's updates and security fixes too, as on a Pi.
    cat >"$partial/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    # No services start inside a chroot.
    printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
    chmod 755 "$partial/usr/sbin/policy-rc.d"
    date -u '+%Y-%m-%d %H:%M UTC' >"$partial/.kadtalk-root-complete"
    mv "$partial" "$ROOT"
    say "root built in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
}

# The host's CA bundle and pip configuration (a proxying network needs both), and DNS.
copy_host_config() {
    local f
    for f in /etc/resolv.conf /etc/ssl/certs/ca-certificates.crt /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt; do
        [[ -e $f ]] || continue
        mkdir -p "$ROOT$(dirname "$f")"
        cp -L "$f" "$ROOT$f"
    done
}

mount_root() {
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    mount --make-rslave "$ROOT/dev"
    mount --rbind /sys "$ROOT/sys"
    mount --make-rslave "$ROOT/sys"
}

# A clean copy of the project; the root's own .venv is kept between runs (./setup.sh reuses it).
copy_project() {
    local dest=$ROOT$PROJECT
    mkdir -p "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    if ((WORKTREE)); then
        say "copying the working tree of $REPO to $PROJECT"
        tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./results --exclude=./test-artifacts \
            --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.hypothesis \
            -cf - . | tar -C "$dest" -xf -
    else
        say "copying $(git -C "$REPO" rev-parse --short "$REF") (git archive $REF) to $PROJECT"
        git -C "$REPO" archive --format=tar "$REF" | tar -C "$dest" -xf -
    fi
    rm -rf "$ROOT$TOOLS"
    mkdir -p "$ROOT$TOOLS"
    cp "$HERE"/*.py "$ROOT$TOOLS/"
}

# armhf: PyPI has an armv7l wheel of cryptography but none of numpy, pandas, matplotlib, psutil or
# cffi (cryptography's, >= 2.0: Debian's 1.15 is too old, so pip compiles it against libffi-dev),
# and compiling numpy and pandas under emulation takes hours. So the root gets Debian's own
# builds of numpy and psutil, the venv sees them
# (--system-site-packages), and kadtalk goes in without its dependency list (--no-deps) with the
# packages the quick subset imports. pandas and matplotlib
# (the simulator's tables and figures; Debian's are older than pyproject asks) are left out: the
# quick subset does not import them. Nor does it need all of setup.sh's Debian packages (chromium
# and tshark alone take most of an hour under qemu-arm), so the root gets the audio ones only and
# the tests run with the venv's pytest, not through ./setup.sh (whose apt list arm64 checks).
ARMHF_DEBIAN="python3-numpy python3-psutil libffi-dev python3-venv python3-dev build-essential"
ARMHF_DEBIAN+=" libasound2-dev libopus0 alsa-utils pulseaudio libasound2-plugins espeak-ng iproute2"
ARMHF_DEBIAN+=" iptables"
ARMHF_PIP="cryptography simpy rich websockets opuslib==3.0.1 pyalsaaudio networkx pytest hypothesis"
ARMHF_PIP+=" pytest-timeout"
prepare_armhf_venv() {
    say "armhf: Debian's $ARMHF_DEBIAN; a venv with --system-site-packages; pip $ARMHF_PIP"
    in_root apt-get update -q
    in_root apt-get install -y -q --no-install-recommends $ARMHF_DEBIAN
    in_root bash -c "set -e
        [[ -x .venv/bin/python ]] || python3 -m venv --system-site-packages .venv
        [[ .venv/.kadtalk-installed -nt pyproject.toml ]] && exit 0
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q --only-binary=cryptography $ARMHF_PIP
        .venv/bin/python -m pip install -q --no-deps -e .
        touch .venv/.kadtalk-installed"
}

# How the tests run in the root: through the project's ./setup.sh, or (armhf) the venv's pytest.
run_tests() {
    if [[ $ARCH == armhf ]]; then
        in_root .venv/bin/python -m pytest -q "$@"
    else
        in_root ./setup.sh test "$@"
    fi
}

# Run a command in the root, in the project copy, with a clean environment.
in_root() {
    local env=(HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH="$TOOLS")
    local v
    for v in PIP_DEFAULT_TIMEOUT http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [[ -n ${!v:-} ]] && env+=("$v=${!v}")
    done
    chroot "$ROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$PROJECT" "$@"
}

# Where the probe found a library, `file` on the host says what it is too.
host_file_check() {
    command -v file >/dev/null || return 0
    local path
    local name
    awk '$1 == "so" && $4 != "LOADED" { print $2, $3 }' | while read -r name path; do
        printf '    host `file` on %s: %s\n' "$name" "$(file -bL "$ROOT$path" | cut -d, -f1-2)"
    done
}

# "tests N failures N errors N skipped N" from pytest's JUnit XML report, or nothing; then the
# tests that failed, one a line.
junit_summary() {
    python3 -c '
import sys, xml.etree.ElementTree as ET
try:
    s = ET.parse(sys.argv[1]).getroot().find("testsuite")
except (OSError, ET.ParseError):
    sys.exit(0)
print(*(f"{k} {s.get(k)}" for k in ("tests", "failures", "errors", "skipped")))
for case in s.iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        print("    failed:", case.get("classname", "") + "::" + case.get("name", ""))
' "$1" || true
}

# --- main ---------------------------------------------------------------------------------------

# All in one function, called on the last line: bash reads a script as it runs, so editing this
# file during a long check must not change what runs.
main() {
    T0=$SECONDS
    say "$ARCH check: $([[ $QUICK == 1 ]] && echo quick subset || echo whole suite), cache $CACHE"
    install_host_packages
    enable_binfmt
    check_mirror
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock -n 9 || die "another arm64 check is using $CACHE (lock $CACHE/.lock)"

    trap unmount_all EXIT
    trap 'exit 130' INT TERM
    [[ -z $(mounts_under "$ROOT") ]] || { say "unmounting leftovers of an earlier run"; unmount_all; }

    build_root
    copy_host_config
    copy_project
    mount_root

    t=$SECONDS
    if [[ $ARCH == armhf ]]; then
        prepare_armhf_venv
    else
        say "in the root: ./setup.sh (apt packages, .venv, pip install -e '.[dev]'); the first run takes long"
        in_root ./setup.sh test --version
    fi
    SETUP_TIME=$((SECONDS - t))

    say "in the root: which builds are loaded"
    probe_out=$(in_root .venv/bin/python "$TOOLS/kadtalk_arm64_probe.py" "$MACHINE") || {
        printf '%s\n' "$probe_out"; die "the root does not run $MACHINE builds (see above)"; }
    sed 's/^/    /' <<<"$probe_out"
    printf '%s\n' "$probe_out" | host_file_check

    if ((QUICK)); then
        mapfile -t TESTS < <(quick_tests)
    else
        TESTS=()
    fi
    say "in the root: $([[ $ARCH == armhf ]] && echo .venv/bin/python -m pytest || echo ./setup.sh test) ${TESTS[*]:-(whole suite)} ${PYTEST_EXTRA[*]:-}"
    t=$SECONDS
    status=0
    run_tests -p no:cacheprovider -p kadtalk_emulated -rs --durations=10 \
        --junitxml="$TOOLS/junit.xml" "${TESTS[@]}" "${PYTEST_EXTRA[@]}" || status=$?
    TEST_TIME=$((SECONDS - t))

    summary=$(junit_summary "$ROOT$TOOLS/junit.xml")
    skipped=$(head -n1 <<<"$summary" | awk '{print $8}')
    say "done: setup.sh ${SETUP_TIME}s, tests ${TEST_TIME}s, total $(((SECONDS - T0) / 60)) min $(((SECONDS - T0) % 60)) s; ${summary:-no junit report}"
    ((status == 0)) || die "tests failed in the $ARCH root (pytest exit status $status)"
    if ((QUICK)) && [[ ${skipped:-0} != 0 ]]; then
        die "$skipped test(s) of the quick subset were skipped in the $ARCH root (see the skip reasons above); the subset proves nothing it skips"
    fi
    say "$ARCH check passed ($MACHINE: $(printf '%s\n' "$probe_out" | tail -n1 | sed 's/^probe: //'))"
}

main; exit $?
