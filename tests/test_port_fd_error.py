"""A TAP port whose device is deleted under the datapath: its fd reports POLLERR for ever and no read clears it.
Both datapaths stop receiving on such a port (counted once in rx_errors) and sleep, instead of spinning until
the slow path deletes the port; the C datapath and its twin alike.  Needs root for the TAP device."""
import subprocess
import time

import pytest

from pyswitch.config import PortConfig
from pyswitch.ports.tap import TapPort
from pyswitch.switch import make_datapath
from pyswitch.testing import new_id

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("kind, workers", [("c", 1), ("python", 1), ("c", 2)])
def test_a_deleted_tap_device_makes_the_datapath_sleep_not_spin(kind, workers):
    dp = make_datapath(kind, 1024, workers)
    port = TapPort(PortConfig(name="t", type="tap", device=f"psw-{new_id()}ft"), 0)
    port.open()
    try:
        port.attach(dp)
        dp.add_port(1, "memory")
        subprocess.run(["ip", "link", "del", port.device], check=True)
        cpu, wall = time.process_time(), time.monotonic()
        for _ in range(3):
            dp.serve(100, 0)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall     # every thread's CPU
        assert wall >= 0.25, "serve returned early instead of sleeping out its timeout"
        assert cpu < 0.1, f"serve used {cpu:.3f} s of CPU in {wall:.3f} s: it spun on the dead fd"
        assert dp.port_stats(0)["rx_errors"] == 1
        dp.inject(1, bytes.fromhex("ffffffffffff020000000001" "88b5") + bytes(46))
        upcalls = []
        for _ in range(20):                 # with workers the frame may be a worker's batch later
            dp.serve(50, 0)
            if upcalls := dp.upcalls():
                break
        assert [u.in_port for u in upcalls] == [1], "the other ports are still received on"
        dp.del_port(0)
    finally:
        port.close()
        dp.close()
