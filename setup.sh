#!/usr/bin/env bash
# kadtalk set-up: installs what is missing, then runs the main job or the test suite.
#
#   ./setup.sh run  [ARGS...]   set up, then run the default lookup study (ARGS go to kadtalk)
#   ./setup.sh test [ARGS...]   set up, then run the whole test suite (ARGS go to pytest)
#   ./setup.sh arm64 [--quick]  this set-up and the tests in an emulated arm64 root (tools/arm64)
#
# Works on a fresh Debian 12 machine as root or with sudo. Needs bash only (no make).
set -euo pipefail

# Debian packages the project needs. Add new ones here (space-separated).
#   python3 python3-venv python3-dev build-essential : the interpreter, venv, C builds
#   libopus0 libasound2-dev alsa-utils               : audio (Opus via ctypes, ALSA)
#   iproute2 iptables                                 : network tests
#   libnetfilter-queue-dev                            : the network testbed's delay relay (the
#                                                       NetfilterQueue package builds against it)
#   pulseaudio libasound2-plugins espeak-ng           : media tests and benchmark (a null sink
#                                                       paces ALSA's "pulse" device; real speech)
#   chromium fonts-dejavu-core                        : the web GUI's browser test (Playwright
#                                                       drives Debian's chromium; no download)
#   tshark                                            : the Wireshark dissector's tests
#                                                       (tools/wireshark, docs/wireshark.md)
# python3-venv is only installed when the python3 on PATH cannot make a venv by itself.
APT_PACKAGES="python3 python3-venv python3-dev build-essential libopus0 libasound2-dev alsa-utils iproute2 iptables libnetfilter-queue-dev pulseaudio libasound2-plugins espeak-ng chromium fonts-dejavu-core tshark"

VENV=.venv
STAMP="$VENV/.kadtalk-installed"

usage() {
    cat <<'EOF'
Usage: ./setup.sh COMMAND [ARGS...]

Installs missing Debian packages (apt, as root or via sudo), creates .venv,
installs kadtalk with `pip install -e '.[dev]'`, then:

  run  [ARGS...]   runs the main job: a simulated lookup study
                   (kadtalk sim lookup --nodes 2000 --lookups 500 --seed 1
                   --out results/default ARGS...)
  test [ARGS...]   runs the whole test suite (python -m pytest -q ARGS...)
  arm64 [--quick]  runs this set-up and the tests in an emulated Debian 12 arm64 root
                   (the Raspberry Pi check; ./setup.sh arm64 --help for its options)
  armhf [--quick]  the same in a 32-bit armhf root (Raspberry Pi OS 32-bit)
  --help           shows this message
EOF
}

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

# True when the python3 on PATH can create a working venv (with pip) on its own.
python_has_venv() {
    command -v python3 >/dev/null 2>&1 &&
        python3 -m venv --help >/dev/null 2>&1 &&
        python3 -c 'import ensurepip' >/dev/null 2>&1
}

is_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ "$status" == *" ok installed" ]]
}

install_apt_packages() {
    command -v dpkg-query >/dev/null 2>&1 ||
        die "dpkg-query not found: this script expects Debian 12 (or a derivative)"

    local pkg missing=()
    for pkg in $APT_PACKAGES; do
        if [[ "$pkg" == python3-venv ]] && python_has_venv; then
            continue
        fi
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages: all present"
        return
    fi

    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            die "missing apt packages: ${missing[*]}
  This script needs root or sudo to install them. Run as root, or install them first:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
        sudo=(sudo)
    fi

    say "installing apt packages: ${missing[*]}"
    # tshark's wireshark-common asks whether non-root users may capture: answer no, no prompt
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${sudo[@]}" debconf-set-selections
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

setup_venv() {
    python_has_venv ||
        die "python3 cannot create a virtual environment (is python3-venv installed?)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "kadtalk needs Python >= 3.11; python3 is $(python3 -V 2>&1)"

    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi

    # Reinstall only when pyproject.toml changed since the last successful install.
    if [[ pyproject.toml -nt "$STAMP" ]]; then
        say "upgrading pip"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        say "installing kadtalk: pip install -e '.[dev]'"
        "$VENV/bin/python" -m pip install -q -e '.[dev]'
        touch "$STAMP"
    else
        say "kadtalk already installed in $VENV"
    fi
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        run | test) shift ;;
        arm64) shift; exec "$(dirname "${BASH_SOURCE[0]}")/tools/arm64/check.sh" "$@" ;;
        armhf) shift; exec "$(dirname "${BASH_SOURCE[0]}")/tools/arm64/check.sh" --arch armhf "$@" ;;
        -h | --help | help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac

    cd "$(dirname "${BASH_SOURCE[0]}")"
    install_apt_packages
    setup_venv

    case "$cmd" in
        run)
            say "running: kadtalk sim lookup --nodes 2000 --lookups 500 --seed 1 --out results/default $*"
            exec "$VENV/bin/kadtalk" sim lookup --nodes 2000 --lookups 500 --seed 1 \
                --out results/default "$@"
            ;;
        test)
            say "running: python -m pytest -q $*"
            exec "$VENV/bin/python" -m pytest -q "$@"
            ;;
    esac
}

main "$@"
