"""`trace` and `show flows` explained, on a whole switch with memory ports (both datapaths): the trace says what
the switch then does with the same frame, byte for byte, and changes nothing while it looks."""
import ipaddress
import subprocess
import sys

import pytest

from pyswitch.config import from_dict
from pyswitch.flowkey import mac_str
from pyswitch.framespec import build
from pyswitch.switch import Switch

H1, H2 = "02:00:00:00:00:11", "02:00:00:00:00:12"
B1 = "02:00:00:00:00:21"
VIP = "203.0.113.10"


@pytest.fixture(params=["c", "python"])
def make_switch(request, tmp_path):
    switches = []

    def make(routed=False):
        data = {"switch": {"name": "trace-unit", "datapath": request.param, "control_dir": str(tmp_path)},
                "port": [{"name": "p1", "type": "afpacket", "device": "psw-none1", "vlan": 10},
                         {"name": "p2", "type": "afpacket", "device": "psw-none2", "vlan": 10},
                         {"name": "p3", "type": "afpacket", "device": "psw-none3", "vlan": 20}]}
        if routed:
            data["vlan"] = [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}]
            data["vip"] = [{"name": "web", "address": VIP, "port": 80, "protocol": "tcp", "mode": "nat",
                            "scheduler": "rr", "health": {"type": "none"},
                            "backend": [{"address": "192.0.2.11", "port": 8080},
                                        {"address": "192.0.2.12", "port": 8080}]}]
        config = from_dict(data)
        for port in config.ports:
            port.type = "memory"
        switch = Switch(config)
        switch.open()
        switches.append(switch)
        return switch

    yield make
    for switch in switches:
        switch.close()


def send(switch, port_no, frame):
    """The frame through the switch (fast path and slow path); what left each port (the input port too: the
    switch's answers, such as an ARP reply, leave there)."""
    switch.dp.inject(port_no, frame)
    switch.step(0)
    return {no: [f for f, _ in switch.dp.take(no)] for no in switch.ports}


def trace(switch, port, spec):
    return switch.handle_command({"cmd": "trace", "port": port, "frame": spec})


def state(switch):
    """Everything a trace must leave alone."""
    flows = sorted((f.key, f.mask, f.priority, f.packets, f.bytes, f.used_ms) for f in switch.dp.flows())
    stats = switch.dp.stats()
    return flows, stats, sorted((k, e.port_no) for k, e in switch.macs.entries()), switch.dp.conn_dump()


def test_unknown_destination_floods_then_a_learned_one_goes_to_its_port(make_switch):
    sw = make_switch()
    spec = f"eth_src={H1},eth_dst={H2},ip_src=198.51.100.11,ip_dst=198.51.100.12,tcp_dst=80"
    result = trace(sw, "p1", spec)
    assert result["flow"] is None and result["verdict"] == "flood to p2"      # p3 is in another VLAN
    assert any("would learn" in s for s in result["steps"]) and any("unknown" in s for s in result["steps"])
    assert sw.show_fdb() == [], "the trace learned nothing"

    send(sw, 1, build(f"eth_src={H2},eth_dst={H1}"))                         # h2 speaks: learned on p2
    before = state(sw)
    result = trace(sw, "p1", spec)
    assert result["verdict"] == "output to p2", result
    assert state(sw) == before, "the trace changed a table or a counter"
    out = send(sw, 0, build(spec))
    assert out[1] == [bytes.fromhex(result["outputs"][0]["frame"])] and out[2] == []

    # Now a flow holds it: the trace names the flow and agrees again.
    before = state(sw)
    result = trace(sw, "p1", spec)
    assert result["flow"] is not None and result["flow"]["priority"] == 100
    assert "output to p2" in result["flow"]["actions"] and result["verdict"] == "output to p2"
    assert state(sw) == before
    assert send(sw, 0, build(spec))[1] == [bytes.fromhex(result["outputs"][0]["frame"])]


def test_a_tagged_frame_on_an_access_port_is_dropped(make_switch):
    sw = make_switch()
    result = trace(sw, "p1", f"eth_src={H1},eth_dst={H2},vlan=10")
    assert result["verdict"] == "drop" and any("does not carry" in s for s in result["steps"])


def test_routed_frame_leaves_with_the_rewritten_headers_the_trace_showed(make_switch):
    sw = make_switch(routed=True)
    gw10, gw20 = mac_str(sw.l3.svis[10].mac), mac_str(sw.l3.svis[20].mac)
    spec = f"eth_src={H1},eth_dst={gw10},ip_src=198.51.100.11,ip_dst=192.0.2.11,udp_dst=9"
    result = trace(sw, "p1", spec)
    assert result["verdict"] == "slow path" and any("not resolved" in s for s in result["steps"]), result

    send(sw, 2, build(f"arp,eth_src={B1},ip_src=192.0.2.11,ip_dst=192.0.2.1"))  # the host asks for its gateway
    before = state(sw)
    result = trace(sw, "p1", spec)
    assert state(sw) == before
    assert result["verdict"] == "output to p3", result
    out = result["outputs"][0]
    assert (out["eth_src"], out["eth_dst"]) == (gw20, B1) and "nw_ttl=63" in out["packet"]
    assert send(sw, 0, build(spec))[2] == [bytes.fromhex(out["frame"])]

    assert any("no route" in s for s in trace(sw, "p1", spec.replace("192.0.2.11", "203.0.113.99"))["steps"])
    assert any("TTL runs out" in s for s in trace(sw, "p1", spec + ",ttl=1")["steps"])


def test_a_new_vip_connection_names_the_backend_without_taking_the_schedulers_turn(make_switch):
    sw = make_switch(routed=True)
    for i, mac in ((11, B1), (12, "02:00:00:00:00:22")):
        send(sw, 2, build(f"arp,eth_src={mac},ip_src=192.0.2.{i},ip_dst=192.0.2.1"))
    gw10 = mac_str(sw.l3.svis[10].mac)
    spec = f"eth_src={H1},eth_dst={gw10},ip_src=198.51.100.11,ip_dst={VIP},tcp_dst=80"
    first = trace(sw, "p1", spec)
    again = trace(sw, "p1", spec)
    assert "192.0.2.11:8080" in " ".join(first["steps"]) and first["steps"] == again["steps"], first
    assert "VIP web" in first["flow"]["actions"] and first["verdict"] == "slow path"
    out = send(sw, 0, build(spec))[2]
    assert len(out) == 1 and ipaddress.IPv4Address(out[0][30:34]) == ipaddress.IPv4Address("192.0.2.11")
    after = trace(sw, "p1", spec)
    assert any("existing connection" in s and "192.0.2.11" in s for s in after["steps"]), after
    assert after["verdict"] == "load-balanced toward 192.0.2.11: output to p3", after
    assert send(sw, 0, build(spec))[2] == [bytes.fromhex(after["outputs"][0]["frame"])], \
        "the traced rewrite is, byte for byte, what the switch sends"
    assert "192.0.2.12:8080" in " ".join(trace(sw, "p1", spec.replace("tcp_dst=80", "tcp_dst=80,tcp_src=999"))
                                         ["steps"]), "the next new connection goes to the other backend"


def test_a_backends_reply_is_traced_back_to_the_client_as_the_switch_sends_it(make_switch):
    sw = make_switch(routed=True)
    gw10, gw20 = mac_str(sw.l3.svis[10].mac), mac_str(sw.l3.svis[20].mac)
    send(sw, 2, build(f"arp,eth_src={B1},ip_src=192.0.2.11,ip_dst=192.0.2.1"))
    send(sw, 0, build(f"arp,eth_src={H1},ip_src=198.51.100.11,ip_dst=198.51.100.1"))
    send(sw, 0, build(f"eth_src={H1},eth_dst={gw10},ip_src=198.51.100.11,ip_dst={VIP},tcp_src=4000,tcp_dst=80"))
    reply = (f"eth_src={B1},eth_dst={gw20},ip_src=192.0.2.11,ip_dst=198.51.100.11,tcp_src=8080,tcp_dst=4000,"
             f"tcp_flags=syn+ack")
    before = state(sw)
    result = trace(sw, "p3", reply)
    assert state(sw) == before, "the trace's copy of the connection is its own"
    assert result["verdict"] == "load-balanced toward 198.51.100.11:4000: output to p1", result
    out = result["outputs"][0]
    assert f"nw_src={VIP}" in out["packet"] and "tp_src=80" in out["packet"], out
    assert send(sw, 2, build(reply))[0] == [bytes.fromhex(out["frame"])]


def test_show_flows_explains_each_flow_by_config_names(make_switch):
    sw = make_switch(routed=True)
    send(sw, 1, build(f"eth_src={H2},eth_dst={H1}"))
    send(sw, 0, build(f"eth_src={H1},eth_dst={H2}"))
    rows = sw.show_flows()
    words = [r["explain"] for r in rows]
    assert f"from p1 VLAN 10, {H1} -> {H2}: output to p2" in words, words
    assert any(f"to VIP web {VIP}:80: load-balance (VIP web" in w for w in words), words
    assert all(r["explain"] for r in rows)


def test_bad_requests_name_what_is_wrong(make_switch):
    sw = make_switch()
    with pytest.raises(ValueError, match="port: no port named 'p9'.*p1, p2, p3"):
        trace(sw, "p9", "icmp")
    with pytest.raises(ValueError, match="frame spec: vlan: 9999"):
        trace(sw, "p1", "vlan=9999")


def test_the_command_refuses_a_bad_spec_before_asking_a_switch(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pyswitch", "trace", "p1", "vlan=5000,icmp",
                             "--control-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == \
        ["pyswitch: trace: frame spec: vlan: 5000 is not in 1..4094"], result.stderr
    result = subprocess.run([sys.executable, "-m", "pyswitch", "show", "ports", "--explain",
                             "--control-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--explain is for show flows" in result.stderr
