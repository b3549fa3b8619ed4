"""Which capabilities a switch needs, checked before it opens anything, so a missing one is named in one sentence.

A switch needs no more than CAP_NET_RAW and CAP_NET_ADMIN for afpacket ports and TAP ports that stay in its own
namespace; the other port features need more (docs/RELIABILITY.md "Config and privileges" has the table):

    AF_PACKET socket (afpacket ports)              CAP_NET_RAW
    bringing a down interface up (afpacket)        CAP_NET_ADMIN (not needed when it is up already)
    SO_RCVBUFFORCE / SO_SNDBUFFORCE                 CAP_NET_ADMIN (without it: capped by net.core.[rw]mem_max)
    PACKET_QDISC_BYPASS, PACKET_FANOUT, VNET_HDR   nothing beyond the socket
    TAP device: open /dev/net/tun                  read and write permission on it (0666 under udev; some
                                                   systems leave it 0600: then root, or CAP_DAC_OVERRIDE)
    TAP device: TUNSETIFF                          CAP_NET_ADMIN
    TAP device moved into, addressed in a netns    CAP_NET_ADMIN, and CAP_SYS_ADMIN for setns(2)
    afxdp: AF_XDP socket                           CAP_NET_RAW
    afxdp: XDP program and XSKMAP (bpf(2))         CAP_BPF and CAP_NET_ADMIN
    afxdp: UMEM registration                       CAP_IPC_LOCK, or an RLIMIT_MEMLOCK that holds every UMEM
                                                   (charged per user: 8 MiB held one port's here, not two)
    [control] group the user is not a member of    CAP_CHOWN

Capabilities are read from /proc/self/status (CapEff), so root with all of them passes every check.
"""
from __future__ import annotations

import os

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
CAP_BPF = 39
TUN_DEVICE = "/dev/net/tun"
CAP_NAMES = {CAP_CHOWN: "CAP_CHOWN", CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE", CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW",
             CAP_IPC_LOCK: "CAP_IPC_LOCK", CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_BPF: "CAP_BPF"}
BASE_CAPS = "+net_raw,+net_admin"     # what afpacket ports and TAP ports in the switch's namespace need


def grant_hint(cap: int | None = None) -> str:
    """How to run the switch with `cap` as well as the two it always needs."""
    caps = BASE_CAPS
    if cap is not None and cap not in (CAP_NET_RAW, CAP_NET_ADMIN):
        caps += ",+" + CAP_NAMES[cap][4:].lower()
    return (f"run the switch as root, or give it the capability, e.g. setpriv --reuid=nobody --regid=nogroup "
            f"--clear-groups --inh-caps={caps} --ambient-caps={caps} pyswitch run --control-dir DIR CONFIG")


class PrivilegeError(RuntimeError):
    """A capability the config needs is missing; the message is one sentence naming it."""


def effective() -> int:
    """This process's effective capability set, as a bit mask."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has(cap: int, mask: int | None = None) -> bool:
    return bool((effective() if mask is None else mask) >> cap & 1)


def needed(config) -> list[tuple[int, str]]:
    """(capability, what needs it) for everything `config` will do, in the order the switch does it."""
    needs = []
    for port in config.ports:
        if port.type == "afpacket" or (port.type == "afxdp" and config.switch.datapath == "python"):
            needs.append((CAP_NET_RAW, f"port {port.name}'s AF_PACKET socket"))
        elif port.type == "afxdp":
            needs.append((CAP_NET_RAW, f"port {port.name}'s AF_XDP sockets"))
            needs.append((CAP_NET_ADMIN, f"attaching port {port.name}'s XDP program"))
            needs.append((CAP_BPF, f"loading port {port.name}'s XDP program"))
        elif port.type == "tap":
            needs.append((CAP_NET_ADMIN, f"creating port {port.name}'s TAP device"))
            if not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
                needs.append((CAP_DAC_OVERRIDE, f"opening {TUN_DEVICE} (mode {_mode(TUN_DEVICE)}, not this user's) "
                                                f"for port {port.name}"))
            if port.netns:
                needs.append((CAP_SYS_ADMIN, f"entering namespace {port.netns} (setns) to set up port "
                                             f"{port.name}'s TAP device there"))
    group = config.control.group
    if group is not None and not _member_of(group):
        needs.append((CAP_CHOWN, f"giving the control socket to group {group}, which this user is not in"))
    return needs


def check(config, mask: int | None = None) -> None:
    """Raises PrivilegeError naming the first capability that `config` needs and this process lacks."""
    mask = effective() if mask is None else mask
    for cap, why in needed(config):
        if not has(cap, mask):
            if cap == CAP_BPF and has(CAP_SYS_ADMIN, mask):
                continue        # CAP_SYS_ADMIN still grants what CAP_BPF does
            raise PrivilegeError(f"missing capability {CAP_NAMES[cap]}, which {why} needs ({grant_hint(cap)})")


def explain_denied(exc: OSError) -> str:
    """One sentence for a permission error that check() did not foresee."""
    return (f"permission denied ({exc.strerror or exc}): a switch needs CAP_NET_RAW and CAP_NET_ADMIN "
            f"(afxdp ports also CAP_BPF, TAP ports in a namespace also CAP_SYS_ADMIN; {grant_hint()})")


def _member_of(group: str) -> bool:
    import grp

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return True             # the control socket says so, naming control.group
    return gid == os.getegid() or gid in os.getgroups()


def _mode(path: str) -> str:
    try:
        return f"{os.stat(path).st_mode & 0o7777:04o}"
    except OSError:
        return "missing"
