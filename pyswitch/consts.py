"""Constants of the datapath contract, mirrored from csrc/pyswitch.h.

The C header is the source; tests/test_consts.py checks every value here against
the compiled module, so the pure-Python twin can run without the C build.
"""

MAX_PORTS = 64              # port numbers are 0..63; flood sets are a 64-bit bitmap
MAX_ACTIONS = 16            # actions in one flow's list
BATCH = 64                  # frames taken from one port per round
UPCALL_PORT_SHARES = 4      # an input port fills at most 1/4 of the upcall queue, or a batch
FRAME_MAX = 65600           # largest frame carried: a 64 KiB GSO super-frame plus headers
KEY_SIZE = 64               # bytes in a flow key
MAX_SUBTABLES = 256         # distinct (mask, priority) pairs in one flow table
LRU_GRANULE_MS = 100        # a hit reorders a flow's recency at most once per granule
UPCALL_PORT = 0xFFFF        # actions_apply: the "port" of an UPCALL output
MAX_WORKERS = 8             # datapath worker threads ([switch] workers)
VNET_HDR_SIZE = 10          # struct virtio_net_hdr

# Parse errors: anything but PE_OK is counted and the frame dropped.
PE_OK = 0
PE_RUNT = 1                 # shorter than an Ethernet header (14 bytes, 18 when tagged)
PE_OVERSIZE = 2             # longer than the port's max_frame and not a GSO frame
PE_VLAN = 3                 # more than two VLAN tags
PE_ARP = 4                  # ARP not Ethernet/IPv4, or truncated
PE_IP_TRUNC = 5             # shorter than a minimal IPv4/IPv6 header
PE_IP_VERSION = 6           # version nibble disagrees with the EtherType
PE_IP_IHL = 7               # IHL < 5 or beyond the frame
PE_IP_LEN = 8               # total/payload length below the header or beyond the frame
PE_IP6_EXT = 9              # IPv6 extension header chain truncated or too long
PE_L4_TRUNC = 10            # TCP/UDP/ICMP header truncated or lying
PE_COUNT = 11
PARSE_ERROR_NAMES = ("ok", "runt", "oversize", "vlan", "arp", "ip_trunc", "ip_version",
                     "ip_ihl", "ip_len", "ip6_ext", "l4_trunc")

# Action types.
ACT_OUTPUT = 1              # send a copy to port `arg`
ACT_FLOOD = 2               # send a copy to every port in bitmap `ports` but the input port
ACT_SET_ETH_SRC = 3         # Ethernet source := data[0:6]
ACT_SET_ETH_DST = 4         # Ethernet destination := data[0:6]
ACT_PUSH_VLAN = 5           # insert an 802.1Q tag, TCI := arg
ACT_POP_VLAN = 6            # remove the outermost tag, if any
ACT_UPCALL = 7              # queue a copy for the slow path, userdata := arg32
ACT_ROUTE = 8               # route an IPv4 packet through the LPM, next-hop and neighbor tables
ACT_SET_IPV4_SRC = 9        # IPv4 source := data[0:4]; IP and TCP/UDP checksums updated
ACT_SET_IPV4_DST = 10       # IPv4 destination := data[0:4]; checksums updated likewise
ACT_SET_TP_SRC = 11         # TCP/UDP source port := arg; L4 checksum updated unless the kernel completes it
ACT_SET_TP_DST = 12         # TCP/UDP destination port := arg; likewise
ACT_LB = 13                 # a client's packet to VIP arg32: rewrite it by its connection, route it
ACT_LB_REPLY = 14           # a backend's packet toward the client: undo its connection's NAT, route it
ACT_DECAP = 15              # strip the outer IPv4 (+GRE) header of an IPIP or GRE packet

# Why a packet came up to the slow path.
UPCALL_MISS = 0             # no flow matched
UPCALL_ACTION = 1           # a flow's UPCALL action
UPCALL_NO_ROUTE = 2         # ROUTE: no route to the destination
UPCALL_NO_NEIGH = 3         # ROUTE: the next hop's MAC is unknown; userdata := next-hop id
UPCALL_TTL = 4              # ROUTE: TTL <= 1
UPCALL_LOCAL = 5            # ROUTE: addressed to the switch itself
UPCALL_CONN_MISS = 6        # LB: no connection for the packet; userdata := the VIP id
UPCALL_L7 = 7               # LB, LB_REPLY: a packet of a held connection (CONN_F_HOLD); userdata := its vip_id

# Connection modes: how LB rewrites a client's packet.
DECAP_DELIVER = 1           # ACT_DECAP arg: a later ROUTE delivers the inner packet to the outer destination
CONN_NAT = 1                # destination := the backend (reply.src, reply.sport)
CONN_FULLNAT = 2            # ...and source := the switch's address (reply.dst, reply.dport)
CONN_DSR = 3                # unchanged, routed toward the backend (the VIP stays the destination)
CONN_IPIP = 4               # encapsulated in IPv4 (protocol 4), tunnel_src -> backend
CONN_GRE = 5                # encapsulated in IPv4 + GRE (protocol 47), tunnel_src -> backend
CONN_MODES = {"nat": CONN_NAT, "fullnat": CONN_FULLNAT, "dsr": CONN_DSR, "ipip": CONN_IPIP, "gre": CONN_GRE}

# Connection states; each has its own idle timeout.
CS_SYN = 1                  # TCP: opened by a SYN, not yet acknowledged
CS_ESTABLISHED = 2          # TCP: an ACK without SYN was seen
CS_FIN_WAIT = 3             # TCP: a FIN was seen
CS_CLOSE = 4                # TCP: a RST was seen
CS_UDP = 5                  # every UDP connection
CS_COUNT = 6                # states + 1: index 0 is unused
CONN_STATE_NAMES = ("none", "syn", "established", "fin_wait", "close", "udp")

# Public bits of Conn.flags (the table's own bits lie below 0x100 and are never reported).
CONN_F_HOLD = 0x100         # nat/fullnat TCP: LB and LB_REPLY send every packet up untouched (UPCALL_L7)
CONN_F_SPLICED = 0x200      # reported only: conn_splice gave it sequence deltas per direction

# Connection events.
CE_GONE = 1                 # the connection expired or was evicted (not conn_del)
CE_RTT = 2                  # the backend's first SYN+ACK: rtt_us since the connection was added
CE_STATE = 3                # began closing (FIN_WAIT, CLOSE) or opened again (SYN): state is the new one
CE_NEW = 4                  # LB added the connection itself, to the backend its VIP's Maglev ring chose

# Connection table bounds and default idle timeouts.
CT_MAX_CONNS_DEFAULT = 1048576  # max_conns of a new datapath
CT_MAX_CONNS = 16777216         # the largest max_conns accepted
CT_MAX_EVENTS = 65536           # events queued until drained; more are counted in events_dropped
CT_MAX_SPLICES_DEFAULT = 65536  # max_splices of a new datapath (splice_config)
CT_SYN_TIMEOUT_MS = 60000
CT_ESTABLISHED_TIMEOUT_MS = 900000
CT_FIN_WAIT_TIMEOUT_MS = 120000
CT_CLOSE_TIMEOUT_MS = 10000
CT_UDP_TIMEOUT_MS = 300000
CT_TIMEOUTS_MS = {CS_SYN: CT_SYN_TIMEOUT_MS, CS_ESTABLISHED: CT_ESTABLISHED_TIMEOUT_MS,
                  CS_FIN_WAIT: CT_FIN_WAIT_TIMEOUT_MS, CS_CLOSE: CT_CLOSE_TIMEOUT_MS, CS_UDP: CT_UDP_TIMEOUT_MS}

# Maglev rings (ring_*): new connections to a VIP scheduled in the datapath.
RING_EMPTY = 0xFFFF         # a slot no backend holds (the Python API reads and writes it as -1)
RING_MAX_VIPS = 4096        # VIP ids 1..RING_MAX_VIPS-1 may have a ring
RING_MAX_SIZE = 16777216    # slots in one ring
RING_MAX_BACKENDS = 65535   # backend indexes 0..RING_MAX_BACKENDS-1
RING_MODES = (CONN_NAT, CONN_DSR, CONN_IPIP, CONN_GRE)   # fullnat needs the slow path's port allocator

# VIP guards (vip_guard_*): per-VIP limits against new-connection floods.
VIP_GUARD_MAX_VIPS = 4096   # VIP ids 1..VIP_GUARD_MAX_VIPS-1 may have a guard (flood limits)
VIP_GUARD_SCAN = 64         # SYN-list entries searched for a VIP's oldest embryonic connection
VIP_GUARD_MAX_RATE = 10000000   # the largest upcall_rate and upcall_burst accepted

# Next-hop kinds.
NH_CONNECTED = 1            # the destination is on the next hop's VLAN
NH_GATEWAY = 2              # forward to the gateway on the next hop's VLAN
NH_LOCAL = 3                # one of the switch's own addresses
NH_BLACKHOLE = 4            # drop silently
MAX_NEXTHOPS = 4096         # next-hop ids are 1..4095; 0 means "no route"
MAX_NEIGHS = 65536          # neighbors one datapath holds; a new one beyond is refused (ENOSPC)
NH_KINDS = {"connected": NH_CONNECTED, "gateway": NH_GATEWAY, "local": NH_LOCAL, "blackhole": NH_BLACKHOLE}

# Port kinds.
PORT_AFPACKET = 1           # AF_PACKET socket on an interface
PORT_TAP = 2                # an open TAP fd with IFF_VNET_HDR
PORT_MEMORY = 3             # in-memory queues, for tests only
PORT_AFXDP = 4              # AF_XDP sockets on an interface's receive queues (C datapath only)
PORT_KINDS = {"afpacket": PORT_AFPACKET, "tap": PORT_TAP, "memory": PORT_MEMORY, "afxdp": PORT_AFXDP}

# How an AF_XDP port's XDP program is attached.
XDP_MODE_NATIVE = 1         # by the driver
XDP_MODE_GENERIC = 2        # by the kernel's generic hook, on socket buffers
XDP_MODES = {XDP_MODE_NATIVE: "native", XDP_MODE_GENERIC: "generic"}

FRAG_ANY = 1                # the packet is a fragment
FRAG_LATER = 2              # ...and not the first one: no L4 header

# virtio_net_hdr
VNET_F_NEEDS_CSUM = 1       # csum_start/csum_offset say where to checksum
VNET_F_DATA_VALID = 2       # the receiver already checked the checksum
VNET_GSO_NONE = 0
VNET_GSO_TCPV4 = 1          # TCP over IPv4: segments of gso_size payload bytes
VNET_GSO_UDP = 3            # UDP fragmentation (UFO): gso_plan refuses it (EOPNOTSUPP)
VNET_GSO_TCPV6 = 4          # TCP over IPv6
VNET_GSO_UDP_L4 = 5         # UDP segmentation: one whole datagram per segment
VNET_GSO_ECN = 0x80         # flag bit on gso_type
VNET_GSO_TYPE_MASK = 0x7F   # gso_type without the ECN flag: non-zero means a GSO frame

# EtherTypes
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100      # 802.1Q
ETH_TYPE_QINQ = 0x88A8      # 802.1ad
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_NONE = 0x05FF      # 802.3 frames carry a length, not a type

VLAN_PRESENT = 0x1000       # set in a key's vlan_tci when the frame had a tag

# The splice rewrite of one TCP segment (csrc/splice.c, pyswitch/refpath/splice.py; docs/L7.md).
SPLICE_SET_SRC = 0x01       # flags of struct ps_splice
SPLICE_SET_DST = 0x02
SPLICE_SET_SPORT = 0x04
SPLICE_SET_DPORT = 0x08
SPLICE_TIMESTAMPS = 0x10
SPLICE_OK = 0               # every field rewritten
SPLICE_NOT_TCP = 1          # not IPv4 TCP with a whole 20-byte header, or a later fragment: unchanged
SPLICE_BAD_HEADER = 2       # data offset < 5 or past the frame: unchanged
SPLICE_BAD_OPTIONS = 3      # addresses, ports, seq, ack rewritten; malformed options left as they are

# Taps: port mirrors and live captures (csrc/tap.h, pyswitch/refpath/taps.py; docs/OBSERVABILITY_CAPTURE.md).
TAP_IN = 1                  # what a port receives
TAP_OUT = 2                 # what the datapath sends out of it
MAX_CAPTURES = 8            # captures at once, over all ports
CAPTURE_MAX_RECORDS = 8192  # copies one datapath (one worker) holds until the slow path reads them
CAPTURE_ARENA = 8388608     # bytes of copies one datapath holds until then
CAPTURE_MAX_SNAPLEN = 262144    # the most bytes of one frame a capture copies (tcpdump's default)
