#!/usr/bin/env bash
# Installs everything pyswitch needs on a fresh Debian machine, and nothing that is already there:
# Debian's tools through apt (only the missing ones), then pyswitch itself into .venv (built from csrc/).
#   netns/setup.sh          what the demo needs
#   netns/setup.sh --test   ...and what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "pyswitch: run this as root (namespaces, veth pairs and AF_PACKET sockets need it): sudo $0 $*" >&2
    exit 1
fi

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

missing=()
need() {  # need COMMAND PACKAGE: install PACKAGE if COMMAND is not on PATH
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need ip iproute2
need ping iputils-ping
need sysctl procps
need gcc gcc
# pyswitch capture --filter: libpcap compiles the tcpdump expression (pyswitch/bpf.py).
ldconfig -p 2>/dev/null | grep -q 'libpcap\.so' || missing+=(libpcap0.8)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv python3-dev)
if [ "$with_tests" = 1 ]; then
    need ethtool ethtool
    need iperf3 iperf3
    need tcpdump tcpdump
    need tshark tshark
    need traceroute traceroute
    need curl curl
    need openssl openssl      # tests/test_l7_capture_netns.py: a real ClientHello (s_client -servername)
    need trafgen netsniff-ng
    need setpriv util-linux     # tests/test_privileges_netns.py, test_control_socket.py: clients and switches as nobody
    need groupadd passwd        # test_control_socket.py: a [control] group made for the test
    need tmux tmux              # tests/test_top_netns.py: pyswitch top in a real terminal
    # The fuzz targets (csrc/fuzz/) and the sanitized build: clang with libFuzzer and the sanitizer
    # runtimes (libclang-rt, only recommended by clang, so named), llvm for llvm-symbolizer and llvm-cov.
    need clang clang
    need llvm-symbolizer llvm
    [ -n "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null | grep /)" ] \
        || missing+=(libclang-rt-dev)
fi
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    python3 - <<'PY' || missing+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "pyswitch: installing ${missing[*]} with apt" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
extras=""
[ "$with_tests" = 1 ] && extras="[test]"
# Editable: the compiled fast path lands next to the sources, so `python -m pyswitch` from this
# directory and the installed command run the same build.
.venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
