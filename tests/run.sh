#!/usr/bin/env bash
# The test suite, from a fresh Debian machine: installs what it needs, then runs every test (as root:
# the integration tests build real namespaces). Extra arguments go to both pytest runs.
#
# Two runs: the tests that need no namespaces use only the CPU and share nothing, so they run two at a time
# (pytest-xdist, one per core); the namespace tests run one at a time, since some of them measure how long a
# takeover or a handshake took and a second test beside them would be what they measure.
set -euo pipefail
cd "$(dirname "$0")/.."
netns/setup.sh --test
status=0
.venv/bin/python -m pytest -p no:cacheprovider -m "not netns" -n 2 "$@" || status=$?
[ "$status" = 5 ] && status=0            # 5: nothing selected (the arguments named namespace tests only)
netns_status=0
.venv/bin/python -m pytest -p no:cacheprovider -m netns "$@" || netns_status=$?
[ "$netns_status" = 5 ] && netns_status=0
if [ "$status" != 0 ]; then exit "$status"; fi
exit "$netns_status"
