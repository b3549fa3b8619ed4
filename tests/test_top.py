"""`pyswitch top`'s screen, made from two samples (pyswitch/top.py render): rates from the differences."""
from pyswitch.top import Sample, _human, render

PORT = {"name": "p1", "rx_packets": 100, "rx_bytes": 10000, "tx_packets": 50, "tx_bytes": 5000, "drops": 3,
        "state": "up"}
STATS = {"name": "demo", "datapath": "c", "uptime_s": 12.0, "flows": 4, "conn_conns": 2, "macs": 3,
         "upcalls": 40, "parse_errors_total": 1, "upcalls_shed": 0}
VIP = {"name": "web", "backends": [{"address": "192.0.2.11", "port": 8080, "state": "up", "active_conns": 2,
                                    "total_conns": 9, "rtt_ms": 0.25}]}


def sample(at, scale):
    port = dict(PORT, **{k: PORT[k] * scale for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")})
    return Sample(at, [port], dict(STATS, upcalls=STATS["upcalls"] * scale), [VIP])


def test_rates_are_the_differences_per_second():
    lines = render(sample(12.0, 3), sample(10.0, 1))
    row = next(line for line in lines if line.startswith("p1"))
    # 200 packets and 20,000 bytes in 2 s: 100 pps, 80 kbit/s in; half that out.
    assert row.split() == ["p1", "100", "80k", "50", "40k", "3", "up"]
    assert "upcalls/s 40" in lines[1] and "flows 4" in lines[1] and "conns 2" in lines[1]
    backend = next(line for line in lines if line.startswith("web"))
    assert backend.split() == ["web", "192.0.2.11:8080", "up", "2", "9", "0.2"]


def test_the_first_screen_and_a_restarted_counter_show_no_rate():
    assert render(sample(10.0, 1), None)[4].split()[1:5] == ["0", "0", "0", "0"]
    assert render(sample(12.0, 1), sample(10.0, 3))[4].split()[1:5] == ["0", "0", "0", "0"]


def test_lines_fit_the_width_and_rates_fit_their_cells():
    assert all(len(line) <= 40 for line in render(sample(12.0, 3), sample(10.0, 1), width=40))
    assert [_human(v) for v in (0, 0.5, 950, 12345, 4.56e6, 1.2e9)] == ["0", "0.5", "950", "12.3k", "4.56M", "1.2G"]
