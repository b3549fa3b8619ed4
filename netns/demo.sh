#!/bin/bash
# The README's demo: three hosts on one pyswitch, pinging each other through veth and TAP ports.
#
#   sudo netns/demo.sh                 # DATAPATH=python netns/demo.sh to use the pure-Python datapath
#
# Brings netns/demo.toml up, runs the switch of netns/demo-sw.toml in the background, pings h1 -> h2, h1 -> h3 (TAP)
# and h2 -> h3, shows the switch's MAC table and ports, then stops the switch and removes the namespaces; the trap
# does that cleanup after a failure or Ctrl-C too.
set -euo pipefail

cd "$(dirname "$0")/.."
netns/setup.sh                                        # Debian tools and .venv with pyswitch, where missing
PYSWITCH=(.venv/bin/pyswitch)

TOPOLOGY=netns/demo.toml
NAME=demo
WORK=$(mktemp -d /tmp/psw-demo.XXXXXX)
SWITCH_PID=

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$SWITCH_PID" ] && kill -0 "$SWITCH_PID" 2>/dev/null; then
        kill -TERM "$SWITCH_PID"
        for _ in $(seq 50); do kill -0 "$SWITCH_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SWITCH_PID" 2>/dev/null && kill -KILL "$SWITCH_PID"
        wait "$SWITCH_PID" 2>/dev/null || true
    fi
    "${PYSWITCH[@]}" netns down "$TOPOLOGY" || status=1
    if [ "$status" -ne 0 ] && [ -s "$WORK/switch.log" ]; then
        echo "--- switch log ---" >&2
        cat "$WORK/switch.log" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # runs cleanup through the EXIT trap

step() { printf '\n== %s\n' "$*"; }

step "topology up: $TOPOLOGY"
"${PYSWITCH[@]}" netns up "$TOPOLOGY"

# The config names devices "psw-{id}..."; the CLI's id is empty, so render it the same way the CLI does.
sed -e 's/{id}//g' netns/demo-sw.toml > "$WORK/demo-sw.toml"
if [ -n "${DATAPATH:-}" ]; then
    sed -i -e "s/^datapath *=.*/datapath = \"$DATAPATH\"/" "$WORK/demo-sw.toml"
fi

step "switch: pyswitch run netns/demo-sw.toml"
"${PYSWITCH[@]}" run "$WORK/demo-sw.toml" >"$WORK/switch.log" 2>&1 &
SWITCH_PID=$!
for i in $(seq 150); do
    if ! kill -0 "$SWITCH_PID" 2>/dev/null; then echo "the switch exited early" >&2; exit 1; fi
    "${PYSWITCH[@]}" show stats --name "$NAME" >/dev/null 2>&1 && break
    if [ "$i" -eq 150 ]; then echo "the switch did not answer within 15 s" >&2; exit 1; fi
    sleep 0.1
done
echo "running as PID $SWITCH_PID"

ping_from() {   # HOST ADDRESS
    step "ping $1 -> $2"
    "${PYSWITCH[@]}" netns exec "$TOPOLOGY" "$1" -- ping -c 3 -i 0.2 -W 2 "$2"
}
ping_from h1 198.51.100.12   # veth -> veth
ping_from h1 198.51.100.13   # veth -> TAP
ping_from h2 198.51.100.13   # veth -> TAP

step "pyswitch show fdb --name $NAME"
"${PYSWITCH[@]}" show fdb --name "$NAME"
step "pyswitch show ports --name $NAME"
"${PYSWITCH[@]}" show ports --name "$NAME"

step "done; stopping the switch and removing the topology"
