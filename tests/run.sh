#!/usr/bin/env bash
# The test suite, from a fresh Debian machine: installs what it needs, then runs every test (as root:
# the integration tests build real namespaces). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
netns/setup.sh --test
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
