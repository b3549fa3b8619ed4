"""Topologies from TOML: what a file means (no root needed) and what `up`/`down` do to real namespaces (netns)."""

import json
import os
import pathlib
import time
import subprocess

import pytest

from pyswitch import topology as topology_module
from pyswitch.testing import netns_id, new_id, topology  # noqa: F401 - fixtures, also without the plugin
from pyswitch.topology import Topology, TopologyError, cli_down, cli_exec, cli_up

NETNS_FILES = pathlib.Path(__file__).resolve().parent.parent / "netns"


def two_hosts():
    """h1 and h2, each on a veth pair, plus a wire; h1 with everything a host and a link can have."""
    return {
        "host": [
            {"name": "h1", "routes": [{"to": "default", "via": "198.51.100.1"},
                                      {"to": "2001:db8:1::/64", "via": "2001:db8::1"},
                                      {"to": "203.0.113.0/24", "dev": "eth0", "metric": 7}],
             "sysctl": {"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.rp_filter": 2}},
            {"name": "h2"},
        ],
        "link": [
            {"host": "h1", "name": "eth0", "peer": "psw-{id}sw-h1", "mac": "02:00:00:00:00:11",
             "address": ["198.51.100.11/24", "2001:db8::11/64"], "mtu": 1400},
            {"host": "h2", "name": "eth0", "peer": "psw-{id}sw-h2", "address": "198.51.100.12/24"},
        ],
        "wire": [{"a": "psw-{id}t1", "b": "psw-{id}t2"}],
    }


def leftovers(id):
    """Namespaces and root-namespace devices that still carry `id`."""
    names = os.listdir(topology_module.NETNS_DIR) if os.path.isdir(topology_module.NETNS_DIR) else []
    return sorted(n for n in names + os.listdir("/sys/class/net") if n.startswith("psw-") and id in n)


@pytest.fixture
def make(netns_id):
    """Topology.from_dict with this test's id; every topology made is brought down at teardown, and nothing may be
    left behind."""
    made = []

    def build(data, id=netns_id):
        topo = Topology.from_dict(data, id=id)
        made.append(topo)
        return topo

    yield build
    for topo in made:
        topo.down()
    assert leftovers(netns_id) == []


def ip_json(topo, host, *argv):
    result = topo.exec(host, ["ip", "-j", *argv], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def root_ip_json(*argv):
    return json.loads(subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True).stdout)


def vlan_supported():
    """True if this kernel can make 802.1Q devices (some minimal kernels have no CONFIG_VLAN_8021Q)."""
    ns = f"psw-{new_id()}vq"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "psw-vq", "type", "dummy"], capture_output=True)
        result = subprocess.run(["ip", "-n", ns, "link", "add", "link", "psw-vq", "name", "psw-vq.10", "type",
                                 "vlan", "id", "10"], capture_output=True)
        return result.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


# --- what a file means ------------------------------------------------------------------------------------------


def test_id_is_rendered_everywhere():
    topo = Topology.from_dict(two_hosts(), id="ab12")
    assert [topo.netns(h) for h in topo.hosts] == ["psw-ab12h1", "psw-ab12h2"]
    assert [link.peer for link in topo.links] == ["psw-ab12sw-h1", "psw-ab12sw-h2"]
    assert (topo.wires[0].a, topo.wires[0].b) == ("psw-ab12t1", "psw-ab12t2")


def test_empty_id_gives_the_plain_names():
    topo = Topology.from_dict(two_hosts())
    assert topo.netns("h1") == "psw-h1"
    assert topo.links[0].peer == "psw-sw-h1"


def test_explicit_netns_and_single_address_string():
    topo = Topology.from_dict({"host": [{"name": "a", "netns": "psw-{id}x"}],
                               "link": [{"host": "a", "name": "e", "peer": "psw-{id}p", "address": "192.0.2.1/24"}]},
                              id="zz")
    assert topo.netns("a") == "psw-zzx"
    assert topo.links[0].address == ("192.0.2.1/24",)


@pytest.mark.parametrize("name", ["demo", "vlans", "trunk"])
@pytest.mark.parametrize("id", ["", "ffff"])
def test_project_files_load_with_short_names(name, id):
    topo = Topology.load(NETNS_FILES / f"{name}.toml", id=id)
    assert topo.hosts
    for host in topo.hosts.values():
        assert host.netns.startswith("psw-")


def with_change(change):
    data = two_hosts()
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d["link"][1].update(host="h9"), "link[1].host: no host named 'h9'"),
    (lambda d: d["link"][0].update(peer="psw-{id}much-too-long"), "link[0].peer: interface name"),
    (lambda d: d["link"][0].update(peer="eth1"), "link[0].peer: root-namespace device 'eth1' must start with"),
    (lambda d: d["link"][0].update(adress="192.0.2.1/24"), "link[0].adress: unknown key"),
    (lambda d: d["link"][0].update(address=["192.0.2.1"]), "link[0].address[0]: '192.0.2.1' has no prefix"),
    (lambda d: d["link"][0].update(address=["192.0.2.300/24"]), "link[0].address[0]: '192.0.2.300/24' is not"),
    (lambda d: d["link"][0].update(mac="01:00:00:00:00:01"), "link[0].mac: '01:00:00:00:00:01' is a multicast"),
    (lambda d: d["link"][0].update(mtu=10), "link[0].mtu: expected an integer from 68"),
    (lambda d: d["link"][0].update(vlans=[{"id": 5000}]), "link[0].vlans[0].id: expected an integer"),
    (lambda d: d["link"][0].update(name="eth-long-name", vlans=[{"id": 100}]), "link[0].vlans[0]: interface name"),
    (lambda d: d["link"][1].update(peer="psw-{id}sw-h1"), "link[1].peer: root-namespace device"),
    (lambda d: d["link"].append({"host": "h1", "name": "eth0", "peer": "psw-x"}), "link[2].name: device in host"),
    (lambda d: d["link"][0].pop("peer"), "link[0].peer: missing"),
    (lambda d: d["host"][1].update(name="h1"), "host[1].name: host 'h1' is also host[0].name"),
    (lambda d: d["host"][1].update(netns="other"), "host[1].netns: namespace 'other' must start with"),
    (lambda d: d["host"][0]["routes"].append({"to": "default"}), "host[0].routes[3]: needs via or dev"),
    (lambda d: d["host"][0]["routes"].append({"to": "x", "dev": "eth0"}), "host[0].routes[3].to: 'x' is neither"),
    (lambda d: d["host"][0]["routes"].append({"to": "default", "dev": "eth9"}), "host[0].routes[3].dev: host"),
    (lambda d: d["host"][0].update(run="sleep 1"), "host[0].run: expected a list"),
    (lambda d: d["host"][0].update(sysctl={"a b": 1}), "host[0].sysctl.a b: not a sysctl name"),
    (lambda d: d["wire"][0].update(b="psw-{id}sw-h2"), "wire[0].b: root-namespace device 'psw-ab12sw-h2' is also"),
    (lambda d: d.update(hosts=[]), "hosts: unknown key"),
])
def test_errors_name_the_key(change, message):
    with pytest.raises(TopologyError) as error:
        Topology.from_dict(with_change(change), id="ab12")
    assert message in str(error.value)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[host]]\nname = "h1"\n[[link]]\nhost = "h9"\nname = "e"\npeer = "psw-p"\n')
    with pytest.raises(TopologyError, match=r"bad.toml: link\[0\].host: no host named 'h9'"):
        Topology.load(path)
    path.write_text("[[host]\n")
    with pytest.raises(TopologyError, match="bad.toml: not valid TOML"):
        Topology.load(path)
    with pytest.raises(TopologyError, match="no such file"):
        Topology.load(tmp_path / "missing.toml")


def test_bad_id_is_refused():
    with pytest.raises(TopologyError, match="id: 'a/b'"):
        Topology.from_dict(two_hosts(), id="a/b")


def test_unknown_host():
    with pytest.raises(TopologyError, match="no host named 'h9'"):
        Topology.from_dict(two_hosts()).netns("h9")


# --- up and down ------------------------------------------------------------------------------------------------


@pytest.mark.netns
def test_up_configures_hosts_links_and_wires(make, netns_id):
    topo = make(two_hosts())
    topo.up()

    namespaces = os.listdir(topology_module.NETNS_DIR)
    assert {f"psw-{netns_id}h1", f"psw-{netns_id}h2"} <= set(namespaces)

    links = {link["ifname"]: link for link in ip_json(topo, "h1", "addr", "show")}
    assert "UP" in links["lo"]["flags"]
    eth0 = links["eth0"]
    assert eth0["address"] == "02:00:00:00:00:11"
    assert eth0["mtu"] == 1400
    assert eth0["operstate"] == "UP"
    addresses = {(a["local"], a["prefixlen"]) for a in eth0["addr_info"]}
    assert {("198.51.100.11", 24), ("2001:db8::11", 64)} <= addresses

    routes = ip_json(topo, "h1", "route", "show")
    assert {"dst": "default", "gateway": "198.51.100.1"}.items() <= routes[0].items()
    assert any(r["dst"] == "203.0.113.0/24" and r.get("metric") == 7 for r in routes)
    routes6 = ip_json(topo, "h1", "-6", "route", "show")
    assert any(r["dst"] == "2001:db8:1::/64" and r.get("gateway") == "2001:db8::1" for r in routes6)

    sysctl = topo.exec("h1", ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.conf.eth0.rp_filter"],
                       capture_output=True, text=True, check=True)
    assert sysctl.stdout.split() == ["1", "2"]

    # Root-namespace ends: up, no addresses, IPv6 off so the kernel sends nothing from them.
    for name in (f"psw-{netns_id}sw-h1", f"psw-{netns_id}sw-h2", f"psw-{netns_id}t1", f"psw-{netns_id}t2"):
        [root_end] = root_ip_json("addr", "show", "dev", name)
        assert "UP" in root_end["flags"]
        assert root_end["addr_info"] == []
        assert pathlib.Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "1"
    [peer] = root_ip_json("link", "show", "dev", f"psw-{netns_id}sw-h1")
    assert peer["mtu"] == 1400

    # The host end keeps the default offloads: a switch in front of it must cope with GSO frames.
    features = topo.exec("h1", ["ethtool", "-k", "eth0"], capture_output=True, text=True, check=True).stdout
    assert "tcp-segmentation-offload: on" in features

    topo.down()
    assert leftovers(netns_id) == []


@pytest.mark.netns
def test_up_twice_changes_nothing(make, netns_id):
    data = two_hosts()
    data["host"][1]["run"] = ["sleep 600"]
    topo = make(data)
    topo.up()
    before = ip_json(topo, "h1", "addr", "show")
    pids = topology_module._netns_pids(topo.netns("h2"))
    topo.up()
    assert ip_json(topo, "h1", "addr", "show") == before
    assert topology_module._netns_pids(topo.netns("h2")) == pids  # `run` was not started twice
    # A second object for the same file and id sees the same topology.
    make(data).up()


@pytest.mark.netns
def test_failed_up_leaves_nothing_behind(make, netns_id):
    data = two_hosts()
    # The route fails only when it is added, after namespaces, veths and the wire exist.
    data["host"][1]["routes"] = [{"to": "default", "via": "203.0.113.1"}]
    data["host"][0]["run"] = ["sleep 600"]
    topo = make(data)
    with pytest.raises(TopologyError, match=r"host\[1\].routes\[0\]: add route to default: "):
        topo.up()
    assert leftovers(netns_id) == []
    topo.down()  # after a failed up, down is quiet


@pytest.mark.netns
def test_failed_second_up_keeps_the_running_topology(make, netns_id):
    topo = make(two_hosts())
    topo.up()
    broken = two_hosts()
    broken["host"].append({"name": "h3", "routes": [{"to": "default", "via": "203.0.113.1"}]})
    broken["link"].append({"host": "h3", "name": "eth0", "peer": "psw-{id}sw-h3", "address": "192.0.2.3/24"})
    with pytest.raises(TopologyError, match=r"host\[2\].routes\[0\]"):
        make(broken).up()
    # Only what the failed call made is gone.
    assert leftovers(netns_id) == sorted([f"psw-{netns_id}h1", f"psw-{netns_id}h2", f"psw-{netns_id}sw-h1",
                                          f"psw-{netns_id}sw-h2", f"psw-{netns_id}t1", f"psw-{netns_id}t2"])


@pytest.mark.netns
def test_down_after_a_partial_up(make, netns_id):
    # Only h1's half exists, as after an up that was killed midway.
    half = two_hosts()
    del half["host"][1], half["link"][1], half["wire"]
    make(half).up()
    topo = make(two_hosts())
    topo.down()
    assert leftovers(netns_id) == []
    topo.down()


@pytest.mark.netns
def test_missing_host_in_file_creates_nothing(make, netns_id):
    with pytest.raises(TopologyError, match=r"link\[1\].host: no host named 'h9'"):
        make(with_change(lambda d: d["link"][1].update(host="h9")))
    assert leftovers(netns_id) == []


@pytest.mark.netns
def test_exec_and_popen_run_inside_the_host(make):
    topo = make(two_hosts())
    topo.up()
    result = topo.exec("h1", ["ip", "-br", "addr", "show", "dev", "eth0"], capture_output=True, text=True)
    assert result.returncode == 0 and "198.51.100.11/24" in result.stdout
    assert topo.exec("h2", "ip addr show dev eth0 | grep -q 198.51.100.12").returncode == 0
    ping = topo.exec("h1", ["ping", "-c", "1", "-W", "1", "198.51.100.11"], capture_output=True)
    assert ping.returncode == 0
    process = topo.popen("h2", ["cat", "/proc/self/net/dev"], stdout=subprocess.PIPE, text=True)
    assert "eth0" in process.communicate(timeout=5)[0]


def wait_for_commands(netns, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        commands = set()
        for pid in topology_module._netns_pids(netns):
            try:
                commands.add(pathlib.Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                pass
        if wanted <= commands:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.netns
def test_run_processes_are_killed_on_down(make, netns_id):
    data = two_hosts()
    data["host"][0]["run"] = ["sleep 600", ["sleep", "601"]]
    # A process started by hand in the namespace goes too: down kills by namespace, not by what it started.
    topo = make(data)
    topo.up()
    stray = topo.popen("h2", ["sleep", "602"])
    # `ip netns exec` enters the namespace and then execs: wait until all three sleeps are really there.
    assert wait_for_commands(topo.netns("h1"), {b"sleep\x00600\x00", b"sleep\x00601\x00"})
    assert wait_for_commands(topo.netns("h2"), {b"sleep\x00602\x00"})
    pids = topology_module._netns_pids(topo.netns("h1"))
    topo.down()
    assert stray.wait(timeout=5) is not None
    for pid in pids:
        assert not topology_module._alive(pid)


@pytest.mark.netns
def test_run_command_that_fails_at_once_fails_up(make, netns_id):
    data = two_hosts()
    data["host"][1]["run"] = ["echo no such thing >&2; exit 3"]
    with pytest.raises(TopologyError, match=r"host\[1\].run\[0\]: exited at once with status 3: no such thing"):
        make(data).up()
    assert leftovers(netns_id) == []


@pytest.mark.netns
def test_vlan_subinterfaces(make, netns_id):
    if not vlan_supported():
        # This kernel cannot make them: then `up` must say so, name the key, and leave nothing behind.
        data = two_hosts()
        data["link"][1]["vlans"] = [{"id": 10}]
        with pytest.raises(TopologyError, match=r"link\[1\].vlans\[0\]: create eth0.10 in .*802.1Q"):
            make(data).up()
        assert leftovers(netns_id) == []
        return
    data = two_hosts()
    data["link"][0]["vlans"] = [{"id": 10, "address": ["203.0.113.11/24"]}, {"id": 20, "mtu": 1300}]
    topo = make(data)
    topo.up()
    links = {link["ifname"]: link for link in ip_json(topo, "h1", "-d", "addr", "show")}
    assert links["eth0.10"]["linkinfo"]["info_data"]["id"] == 10
    assert ("203.0.113.11", 24) in {(a["local"], a["prefixlen"]) for a in links["eth0.10"]["addr_info"]}
    assert links["eth0.20"]["mtu"] == 1300
    topo.up()




@pytest.mark.netns
def test_cli(tmp_path, capsys, netns_id):
    path = tmp_path / "t.toml"
    path.write_text('[[host]]\nname = "h1"\n[[link]]\nhost = "h1"\nname = "eth0"\npeer = "psw-{id}c"\n'
                    'address = "192.0.2.1/24"\n')
    try:
        assert cli_up(path, netns_id) == 0
        assert cli_up(path, netns_id) == 0
        assert cli_exec(path, "h1", ["ip", "addr", "show", "dev", "eth0"], netns_id) == 0
        assert cli_exec(path, "h1", ["false"], netns_id) == 1
        assert cli_exec(path, "h9", ["true"], netns_id) == 1
        assert "no host named 'h9'" in capsys.readouterr().err
    finally:
        assert cli_down(path, netns_id) == 0
    assert leftovers(netns_id) == []
    assert cli_exec(path, "h1", ["true"], netns_id) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_up(tmp_path / "missing.toml", netns_id) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


# --- the pytest fixture with real switches: needs the switch and its control client ------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("datapath", ["python"])
def test_demo_pings_through_the_switch(topology, datapath):
    net = topology(NETNS_FILES / "demo.toml", switches=[NETNS_FILES / "demo-sw.toml"], datapath=datapath)
    for host, address in (("h1", "198.51.100.12"), ("h1", "198.51.100.13"), ("h2", "198.51.100.13")):
        result = net.exec(host, ["ping", "-c", "2", "-i", "0.2", "-W", "2", address], capture_output=True, text=True)
        assert result.returncode == 0, f"{host} -> {address}:\n{result.stdout}\n{net.switch_log('demo')}"
    assert net.switch("demo").show("fdb")


def test_id_fixture_is_short_and_unique(netns_id):
    assert len(netns_id) == 4 and netns_id != new_id()
