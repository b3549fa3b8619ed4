"""`pyswitch capture` and [[mirror]] with real hosts (netns/mirror.toml, netns/mirror-sw.toml): a capture on a port
holds the same frames as tcpdump on the host's side of its veth, streams to `tcpdump -r -`, filters with tcpdump's
expressions; the mirror's monitoring host sees p1's traffic and takes no part in the switching."""
import signal
import subprocess
import sys
import time

import dpkt
import pytest

pytestmark = pytest.mark.netns

TOPOLOGY, SWITCH = "netns/mirror.toml", "netns/mirror-sw.toml"
H2 = "198.51.100.22"
DATAPATHS = ["c", "python"]


def tcpdump(topo, host, path, expression):
    """tcpdump writing pcap in `host`, once it listens; returns a function that stops it."""
    process = topo.popen(host, ["tcpdump", "-n", "-i", "eth0", "-U", "-w", str(path), expression],
                         stderr=subprocess.PIPE, text=True)
    try:
        while "listening on" not in (line := process.stderr.readline()):
            assert line, "tcpdump exited before listening"
    except BaseException:
        process.kill()
        process.wait()
        raise

    def stop():
        time.sleep(0.5)                 # what crossed is written before tcpdump is told to stop
        process.terminate()             # by its own PID
        process.communicate(timeout=10)
    return stop


def capture(topo, *argv, stdout=None):
    """`pyswitch capture` as a user runs it, once the switch said it started."""
    name = topo.switch("mirror").name
    process = subprocess.Popen([sys.executable, "-m", "pyswitch", "capture", *argv, "--name", name],
                               stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=stdout is None)
    first = process.stderr.readline()
    first = first.decode() if isinstance(first, bytes) else first
    assert first.startswith("capturing on"), first + str(process.stderr.read())
    return process


def frames(path):
    with open(path, "rb") as f:
        return [bytes(buf) for _ts, buf in dpkt.pcap.UniversalReader(f)]


def ping(topo, host, address, count=5):
    return topo.exec(host, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", address], capture_output=True,
                     text=True, timeout=30)


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_capture_holds_what_tcpdump_sees_on_the_host_side(topology, tmp_path, datapath):
    topo = topology(TOPOLOGY, switches=[SWITCH], datapath=datapath)
    host_pcap, switch_pcap = tmp_path / "h1.pcap", tmp_path / "p1.pcap"
    stop = tcpdump(topo, "h1", host_pcap, "icmp or arp")
    process = capture(topo, "p1", "-w", str(switch_pcap), "--filter", "icmp or arp")
    try:
        assert ping(topo, "h1", H2).returncode == 0
        topo.exec("h1", ["ip", "neigh", "flush", "dev", "eth0"], check=True)     # ARP again, both ways
        assert ping(topo, "h1", H2, count=3).returncode == 0
        time.sleep(0.5)
    finally:
        stop()
        process.terminate()             # as Ctrl-C: the capture ends and says what it saw
        _, err = process.communicate(timeout=10)
    on_host, on_port = frames(host_pcap), frames(switch_pcap)
    assert len(on_host) >= 16, "8 echo requests, 8 replies and ARP"
    assert sorted(on_port) == sorted(on_host), (len(on_port), len(on_host))
    assert f"{len(on_port)} frames captured" in err, err


def test_capture_streams_pcap_to_tcpdump(topology):
    topo = topology(TOPOLOGY, switches=[SWITCH])
    reader = None
    process = capture(topo, "p2", "-w", "-", "--count", "4", "--filter", "icmp", stdout=subprocess.PIPE)
    try:
        reader = subprocess.Popen(["tcpdump", "-n", "-r", "-"], stdin=process.stdout, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        process.stdout.close()          # tcpdump holds the pipe's read end now
        assert ping(topo, "h1", H2).returncode == 0
        out, _ = reader.communicate(timeout=20)
        assert process.wait(timeout=10) == 0
    finally:
        for p in (process, reader):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert sum("ICMP echo request" in line for line in lines) == 2, out
    assert sum("ICMP echo reply" in line for line in lines) == 2, out


def test_capture_filter_direction_and_text(topology):
    topo = topology(TOPOLOGY, switches=[SWITCH])
    process = capture(topo, "p1", "--direction", "in", "--filter", "icmp[icmptype] == icmp-echo", "--count", "3")
    assert ping(topo, "h1", H2).returncode == 0
    out, err = process.communicate(timeout=20)
    lines = out.splitlines()
    assert len(lines) == 3 and all(" in " in line and "ICMP echo request" in line for line in lines), out
    assert "3 frames captured" in err and "3 frames captured" in err.splitlines()[-1], err


def test_capture_refuses_a_bad_filter_and_a_bad_port(topology):
    topo = topology(TOPOLOGY, switches=[SWITCH])
    name = topo.switch("mirror").name
    bad = subprocess.run([sys.executable, "-m", "pyswitch", "capture", "p1", "--filter", "icmp and and",
                          "--name", name], capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and "--filter" in bad.stderr and "syntax error" in bad.stderr, bad.stderr
    nope = subprocess.run([sys.executable, "-m", "pyswitch", "capture", "p9", "--name", name],
                          capture_output=True, text=True, timeout=20)
    assert nope.returncode == 1 and "no port 'p9'" in nope.stderr, nope.stderr
    stats = topo.switch("mirror").request({"cmd": "show", "what": "captures"})
    assert stats == [], "nothing left running"


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_mirror_shows_p1s_traffic_to_the_monitoring_host(topology, tmp_path, datapath):
    topo = topology(TOPOLOGY, switches=[SWITCH], datapath=datapath)
    mon_pcap, host_pcap = tmp_path / "mon.pcap", tmp_path / "h1.pcap"
    stop_mon = tcpdump(topo, "mon", mon_pcap, "icmp")
    stop_h1 = tcpdump(topo, "h1", host_pcap, "icmp")
    try:
        assert ping(topo, "h1", H2).returncode == 0
        assert ping(topo, "h2", "198.51.100.21", count=2).returncode == 0
        lost = ping(topo, "mon", H2, count=2)
    finally:
        stop_mon()
        stop_h1()
    assert lost.returncode != 0, "the monitoring host takes no part in the switching"
    seen, on_h1 = frames(mon_pcap), frames(host_pcap)
    assert len(on_h1) == 14, "5 + 2 echo requests and their replies"
    assert sorted(seen) == sorted(on_h1), "mon sees exactly what crosses p1, both ways"
    fdb = topo.switch("mirror").request({"cmd": "show", "what": "fdb"})
    assert "02:00:00:00:00:2f" not in str(fdb), fdb


def test_capture_and_mirror_with_two_datapath_workers(topology, tmp_path):
    """Each worker copies into a buffer of its own; the capture reads them all, the mirror runs in each."""
    config = tmp_path / "mirror-workers.toml"
    config.write_text(open(SWITCH).read().replace('datapath = "c"', 'datapath = "c"\nworkers = 2'))
    topo = topology(TOPOLOGY, switches=[str(config)])
    assert topo.switch("mirror").request({"cmd": "show", "what": "stats"})["workers"] == 2
    mon_pcap, switch_pcap, host_pcap = tmp_path / "mon.pcap", tmp_path / "p1.pcap", tmp_path / "h1.pcap"
    stops = [tcpdump(topo, "mon", mon_pcap, "icmp"), tcpdump(topo, "h1", host_pcap, "icmp")]
    process = capture(topo, "p1", "-w", str(switch_pcap), "--filter", "icmp")
    try:
        for sport in range(5):              # five pings, five ICMP ids: whichever worker each lands on
            assert topo.exec("h1", ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-p", f"{sport:02x}", H2],
                             capture_output=True, timeout=30).returncode == 0
        time.sleep(0.5)
    finally:
        for stop in stops:
            stop()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    on_host = frames(host_pcap)
    assert len(on_host) == 20
    assert sorted(frames(switch_pcap)) == sorted(on_host) == sorted(frames(mon_pcap))
