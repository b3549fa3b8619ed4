"""The `pyswitch` command.

    pyswitch run CONFIG                      run a switch in the foreground
    pyswitch show ports|fdb|flows|stats|upcalls|routes|arp|vips|conns|ha|events   ask a running switch (--name, --json)
    pyswitch show flows --explain            each fast-path flow said in words
    pyswitch trace PORT FRAME-SPEC           what the switch would do with a frame, sending nothing
    pyswitch route add PREFIX via ADDRESS    add a static route to a running switch (del PREFIX removes it)
    pyswitch backend VIP ADDRESS:PORT up|down|drain|weight=N   change a backend of a running switch
    pyswitch ha release                      hand HA mastership to the peer (maintenance)
    pyswitch reload                          apply the changed config file to a running switch (as SIGHUP)
    pyswitch netns up|down FILE              build or remove a topology of namespaces
    pyswitch netns exec FILE HOST -- CMD...  run a command in one of its hosts

Errors are one sentence on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys

EXIT_CONFIG = 2             # the config (or the command line) is wrong
EXIT_FAILURE = 1            # anything else that stops us

# The columns a table shows where JSON has more than fits a terminal.
TABLE_COLUMNS = {
    "ports": ["name", "type", "device", "vlan", "trunk", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "drops"],
}
FLOW_EXPLAIN_COLUMNS = ["priority", "packets", "bytes", "idle_ms", "explain"]
OPTIONAL_COLUMNS = {"ports": {"xdp_mode": "device", "state": "device"}}   # shown after the named column when
                                                                        # some row has them


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyswitch", description="a userspace switch for network namespaces")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run a switch in the foreground")
    run.add_argument("config", help="the switch's TOML config")
    run.add_argument("--datapath", choices=["c", "python"], help="override [switch] datapath")
    run.add_argument("-v", "--verbose", action="store_true", help="log decisions too")
    run.add_argument("--log-json", action="store_true", help="log one JSON object per line (events with their "
                                                             "fields), for a log collector")
    run.add_argument("--control-dir", help="override [switch] control_dir (where NAME.sock is made), e.g. for a "
                                           "switch that runs as an unprivileged user")
    run.set_defaults(func=cmd_run)

    show = sub.add_parser("show", help="ask a running switch")
    show.add_argument("what", choices=["ports", "fdb", "flows", "stats", "upcalls", "routes", "arp", "vips",
                                       "conns", "ha", "events", "captures"])
    show.add_argument("--name", help="the switch's name (default: the only one running)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument("--explain", action="store_true", help="flows: say each flow in words")
    _control_dir_option(show)
    show.set_defaults(func=cmd_show)

    top = sub.add_parser("top", help="a live view of a running switch: port rates, upcalls, flows, backends (q quits)")
    top.add_argument("--name", help="the switch's name (default: the only one running)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    _control_dir_option(top)
    top.set_defaults(func=cmd_top)

    trace = sub.add_parser("trace", help="what a running switch would do with a frame (nothing is sent)",
                           description="Walks a frame through the switch's pipeline without sending it. "
                                       "FRAME-SPEC: comma-separated key=value items and words, e.g. "
                                       "eth_src=02:00:00:00:00:11,eth_dst=02:00:00:00:00:12,ip_dst=198.51.100.12,"
                                       "tcp_dst=80 (keys: eth_src eth_dst vlan vlan_pcp ip_src ip_dst ttl tcp_src "
                                       "tcp_dst tcp_flags udp_src udp_dst arp_op payload; words: icmp tcp udp arp; "
                                       "see docs/OBSERVABILITY_TRACE.md)")
    trace.add_argument("port", help="the port the frame arrives on (its config name)")
    trace.add_argument("frame", metavar="FRAME-SPEC", help="the frame, e.g. eth_dst=02:00:00:00:00:12,icmp")
    trace.add_argument("--name", help="the switch's name (default: the only one running)")
    trace.add_argument("--json", action="store_true", help="print JSON")
    _control_dir_option(trace)
    trace.set_defaults(func=cmd_trace)

    capture = sub.add_parser("capture", help="a live copy of what a port receives and sends, as pcap or text",
                             description="Copies the frames of PORT (its config name) that the filter accepts, "
                                         "as the switch receives and sends them; see docs/OBSERVABILITY_CAPTURE.md. "
                                         "Example: pyswitch capture p1 -w - --filter icmp | tcpdump -nr -")
    capture.add_argument("port", help="the port, by its config name")
    capture.add_argument("-w", dest="write", metavar="FILE", help="write pcap to FILE (- for stdout) instead of text")
    capture.add_argument("--count", "-c", type=int, default=0, help="stop after this many frames (default: Ctrl-C)")
    capture.add_argument("--filter", "-f", default="", metavar="EXPR",
                         help="a tcpdump filter expression, compiled by libpcap (e.g. \"icmp or tcp port 80\")")
    capture.add_argument("--direction", "-Q", choices=["in", "out", "both"], default="both",
                         help="what the port receives (in), what the switch sends out of it (out), or both")
    capture.add_argument("--snaplen", "-s", type=int, default=262144, help="bytes of each frame kept (default 262144)")
    capture.add_argument("--name", help="the switch's name (default: the only one running)")
    _control_dir_option(capture)
    capture.set_defaults(func=cmd_capture)

    route = sub.add_parser("route", help="add or remove a static route on a running switch")
    route.add_argument("op", choices=["add", "del"])
    route.add_argument("prefix", help="e.g. 203.0.113.0/24")
    route.add_argument("via", nargs="*", help="via ADDRESS (add only)")
    route.add_argument("--name", help="the switch's name (default: the only one running)")
    _control_dir_option(route)
    route.set_defaults(func=cmd_route)

    backend = sub.add_parser("backend", help="change a backend of a VIP on a running switch")
    backend.add_argument("vip", help="the VIP's name")
    backend.add_argument("backend", help="ADDRESS:PORT")
    backend.add_argument("change", help="up | down | drain | weight=N")
    backend.add_argument("--name", help="the switch's name (default: the only one running)")
    _control_dir_option(backend)
    backend.set_defaults(func=cmd_backend)

    ha = sub.add_parser("ha", help="an HA pair's mastership on a running switch")
    ha.add_argument("op", choices=["release"], help="release: hand mastership to the peer and stay standby")
    ha.add_argument("--name", help="the switch's name (default: the only one running)")
    _control_dir_option(ha)
    ha.set_defaults(func=cmd_ha)

    reload = sub.add_parser("reload", help="apply the changed config file to a running switch (as SIGHUP)")
    reload.add_argument("--name", help="the switch's name (default: the only one running)")
    _control_dir_option(reload)
    reload.set_defaults(func=cmd_reload)

    netns = sub.add_parser("netns", help="build and remove namespace topologies (netns/*.toml)")
    nsub = netns.add_subparsers(metavar="ACTION")
    for action, helptext in (("up", "build the topology (idempotent)"), ("down", "remove everything it names")):
        p = nsub.add_parser(action, help=helptext)
        p.add_argument("file")
        p.add_argument("--id", default="", help="value of {id} in the file's names")
        p.set_defaults(func=cmd_netns, action=action)
    p = nsub.add_parser("exec", help="run a command in a host: exec FILE HOST -- CMD...")
    p.add_argument("file")
    p.add_argument("host")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.add_argument("--id", default="")
    p.set_defaults(func=cmd_netns, action="exec")
    return parser


def _control_dir_option(parser) -> None:
    from .control import DEFAULT_DIR

    parser.add_argument("--control-dir", default=DEFAULT_DIR,
                        help=f"where the switch's control socket is (default {DEFAULT_DIR})")


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"pyswitch: {message}", file=sys.stderr)
    return code


def cmd_run(args) -> int:
    from . import config as config_mod
    from . import log_json, privileges
    from .ports import PortError

    log_json.configure(verbose=args.verbose, json_lines=args.log_json)
    try:
        config = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        return _fail(f"config error: {exc}", EXIT_CONFIG)
    if args.datapath:
        config.switch.datapath = args.datapath
        try:
            config_mod.check_workers(config.switch)
        except config_mod.ConfigError as exc:
            return _fail(f"config error: {exc}", EXIT_CONFIG)
    if args.control_dir:
        config.switch.control_dir = args.control_dir
        try:
            config_mod.check_control_dir(config.switch)
        except config_mod.ConfigError as exc:
            return _fail(f"--control-dir: {exc}", EXIT_CONFIG)
    try:
        privileges.check(config)
    except privileges.PrivilegeError as exc:
        return _fail(str(exc))
    if config.vips and not config.vlans:
        return _fail("config error: vip[0]: a virtual IP is routed: give the switch [[vlan]] interfaces",
                     EXIT_CONFIG)
    try:
        from .switch import Switch
        switch = Switch(config)
        if args.datapath:
            switch.overrides["datapath"] = args.datapath
    except ImportError as exc:
        return _fail(str(exc))
    try:
        switch.open()
    except PortError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return _fail(privileges.explain_denied(exc))
        return _fail(f"cannot start: {exc.strerror or exc}")
    except RuntimeError as exc:
        return _fail(str(exc))
    try:
        switch.run()
    finally:
        switch.close()
        logging.getLogger("pyswitch").info("switch %s stopped", config.switch.name)
    return 0


def _ask(name: str | None, command: dict, directory: str | None = None, raise_refusal: bool = False):
    """The running switch's answer, or an exit code after printing why there is none (a refusal is raised
    instead when `raise_refusal`)."""
    from .control import DEFAULT_DIR
    from .control.client import ControlError, request, running_switches

    directory = directory or DEFAULT_DIR
    if name is None:
        names = running_switches(directory)
        if len(names) != 1:
            return _fail("no switch is running" if not names else
                         f"several switches are running ({', '.join(names)}): pick one with --name")
        name = names[0]
    try:
        return request(name, command, directory=directory)
    except ControlError as exc:
        if raise_refusal:
            raise
        return _fail(str(exc))
    except PermissionError:
        return _fail(f"permission denied on the control socket of switch {name!r}: only the switch's own user, "
                     f"root and the members of its [control] group may drive it")
    except OSError:
        return _fail(f"no switch named {name!r} is running (no answer on its control socket)")


def cmd_top(args) -> int:
    from . import top
    from .control import DEFAULT_DIR
    from .control.client import request

    if not 0.1 <= args.interval <= 60:
        return _fail(f"--interval: between 0.1 and 60 seconds, got {args.interval}")
    first = _ask(args.name, {"cmd": "show", "what": "stats"}, args.control_dir)
    if isinstance(first, int):
        return first                    # no such switch: _ask said why
    name, directory = first["name"], args.control_dir or DEFAULT_DIR
    if top.run(lambda command: request(name, command, directory=directory), args.interval) != 0:
        return _fail(f"switch {name!r} stopped answering")
    return 0


def cmd_capture(args) -> int:
    from . import capture_client
    from .control import DEFAULT_DIR
    from .control.client import ControlError, stream

    if args.count < 0:
        return _fail(f"--count: a whole number >= 0, got {args.count}", EXIT_CONFIG)
    program = []
    if args.filter:
        from .bpf import compile_filter
        try:
            program = compile_filter(args.filter, args.snaplen)
        except (ValueError, RuntimeError) as exc:
            return _fail(f"capture: --filter: {exc}", EXIT_CONFIG)
    first = _ask(args.name, {"cmd": "show", "what": "stats"}, args.control_dir)
    if isinstance(first, int):
        return first
    command = {"cmd": "capture", "port": args.port, "direction": args.direction, "snaplen": args.snaplen,
               "count": args.count, "filter": [list(i) for i in program]}
    try:
        started, sock, rest = stream(first["name"], command, directory=args.control_dir or DEFAULT_DIR)
    except ControlError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"switch {first['name']!r}: {exc}")
    out, pcap = capture_client.open_output(args.write)
    signal.signal(signal.SIGTERM, _interrupt)      # as tcpdump: a kill ends the capture with its summary
    print(f"capturing on {started['port']} ({started['direction']}), snap length {started['snaplen']}"
          f"{', filter ' + repr(args.filter) if args.filter else ''}", file=sys.stderr)
    capture = capture_client.Stream(out, args.snaplen, args.count, pcap)
    try:
        capture.run(sock, rest)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:             # the reader (| head, | tcpdump -c) has gone: as tcpdump, stop quietly
        pass
    finally:
        sock.close()
        if args.write not in (None, "-"):
            out.close()
    print(capture.summary(), file=sys.stderr)
    return 0


def _interrupt(*_):
    raise KeyboardInterrupt


def cmd_route(args) -> int:
    command = {"cmd": "route", "op": args.op, "prefix": args.prefix}
    if args.op == "add":
        if len(args.via) != 2 or args.via[0] != "via":
            return _fail("route add: give the next hop as: route add PREFIX via ADDRESS", EXIT_CONFIG)
        command["via"] = args.via[1]
    elif args.via:
        return _fail("route del: takes only the prefix", EXIT_CONFIG)
    result = _ask(args.name, command, args.control_dir)
    if isinstance(result, int):
        return result
    print(format_table(result))
    return 0


def cmd_backend(args) -> int:
    result = _ask(args.name, {"cmd": "backend", "vip": args.vip, "backend": args.backend, "change": args.change},
                  args.control_dir)
    if isinstance(result, int):
        return result
    print(format_table(vip_rows([result])))
    return 0


def cmd_ha(args) -> int:
    result = _ask(args.name, {"cmd": "ha", "op": args.op}, args.control_dir)
    if isinstance(result, int):
        return result
    print(format_table(result))
    return 0


def cmd_reload(args) -> int:
    """Exit 0 with what changed, 2 if the switch refused the file (nothing applied), 1 if no switch answered."""
    from .control.client import ControlError

    try:
        result = _ask(args.name, {"cmd": "reload"}, args.control_dir, raise_refusal=True)
    except ControlError as exc:
        return _fail(f"reload refused, the running config stays: {exc}", EXIT_CONFIG)
    if isinstance(result, int):
        return result
    print(f"{result['file']}: " + ("; ".join(result["changes"]) if result["changes"] else "nothing changed")
          + f" ({result['took_ms']} ms)")
    return 0


def cmd_show(args) -> int:
    if args.explain and args.what != "flows":
        return _fail(f"show {args.what}: --explain is for show flows", EXIT_CONFIG)
    result = _ask(args.name, {"cmd": "show", "what": args.what}, args.control_dir)
    if isinstance(result, int):
        return result
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "vips":
        print(format_table(vip_rows(result)))
    elif args.what == "flows":
        print(format_table(result, FLOW_EXPLAIN_COLUMNS if args.explain else _flow_columns(result)))
    elif args.what == "events":
        print(format_table(event_rows(result)))
    else:
        print(format_table(result, _columns(args.what, result)))
    return 0


def _flow_columns(rows: list) -> list[str] | None:
    """`show flows` without --explain: every column but the words, which would make each line too long."""
    if not rows:
        return None
    return [k for k, v in rows[0].items() if k != "explain" and not isinstance(v, (dict, list))]


def cmd_trace(args) -> int:
    from .framespec import FrameSpecError, build as build_frame

    try:
        build_frame(args.frame)     # mistakes are said here, before asking the switch (which checks again)
    except FrameSpecError as exc:
        return _fail(f"trace: frame spec: {exc}", EXIT_CONFIG)
    result = _ask(args.name, {"cmd": "trace", "port": args.port, "frame": args.frame}, args.control_dir)
    if isinstance(result, int):
        return result
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_trace(result))
    return 0


def format_trace(result: dict) -> str:
    """A trace as ofproto/trace prints one: the packet, each step, then where it leaves and as what."""
    lines = [f"packet: in {result['port']}: {result['packet']}"]
    flow = result.get("flow")
    if flow:
        lines.append(f"flow:   priority {flow['priority']} match {flow['match']} actions {flow['actions']}")
    else:
        lines.append("flow:   none (miss)")
    lines += [f"  - {step}" for step in result["steps"]]
    for out in result["outputs"]:
        vlan = f" VLAN {out['vlan']}" if out["vlan"] is not None else ""
        lines.append(f"output: {out['port']}{vlan}: {out['eth_src']} -> {out['eth_dst']}: {out['packet']}")
    lines.append(f"verdict: {result['verdict']}")
    return "\n".join(lines)


def _columns(what: str, rows) -> list[str] | None:
    columns = TABLE_COLUMNS.get(what)
    if columns is None or not isinstance(rows, list):
        return columns
    columns = list(columns)
    for name, after in OPTIONAL_COLUMNS.get(what, {}).items():
        if any(name in row for row in rows):
            columns.insert(columns.index(after) + 1, name)
    return columns


def vip_rows(vips: list[dict]) -> list[dict]:
    """`show vips` as a table: one line per backend, under its VIP."""
    rows = []
    for vip in vips:
        for b in vip["backends"]:
            rows.append({"vip": vip["name"], "service": f"{vip['address']}:{vip['port']}/{vip['protocol']}",
                         "mode": vip["mode"], "scheduler": vip["scheduler"],
                         "backend": f"{b['address']}:{b['port']}", "weight": b["weight"], "state": b["state"],
                         "active": b["active_conns"], "total": b["total_conns"], "rtt_ms": b["rtt_ms"],
                         **_guard_cells(vip.get("guard") or {})})
    return rows


def event_rows(events: list[dict]) -> list[dict]:
    """`show events` as a table: one line per event, its fields as key=value in the last column."""
    from .events import describe

    return [{"seq": e["seq"], "time": e["time"], "kind": e["kind"], "fields": describe(e) or "-"} for e in events]


def _guard_cells(guard: dict) -> dict:
    """A VIP's flood guard in `show vips`: half-open connections now, SYNs that took an older one's place, and
    what was refused (at max_embryonic with none of its own to evict, or over upcall_rate)."""
    if not guard:
        return {}
    return {"embryonic": guard["embryonic"], "syn_evicted": guard["embryonic_evicted"],
            "refused": guard["embryonic_refused"] + guard["upcalls_limited"]}


def cmd_netns(args) -> int:
    from . import topology

    if args.action == "up":
        return topology.cli_up(args.file, args.id)
    if args.action == "down":
        return topology.cli_down(args.file, args.id)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        return _fail("netns exec: give a command after --", EXIT_CONFIG)
    return topology.cli_exec(args.file, args.host, argv, args.id)


def format_table(result, columns: list[str] | None = None) -> str:
    """Rows of dicts as aligned columns (all, or the named ones); a single dict as key/value lines."""
    if isinstance(result, dict):
        width = max((len(k) for k in result), default=0)
        lines = []
        for key, value in result.items():
            if isinstance(value, dict):
                value = " ".join(f"{k}={v}" for k, v in value.items() if v) or "-"
            lines.append(f"{key:<{width}}  {value}")
        return "\n".join(lines)
    if not result:
        return "(empty)"
    if columns is None:
        columns = [k for k, v in result[0].items() if not isinstance(v, (dict, list))]
    cells = [[_cell(row.get(c)) for c in columns] for row in result]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
