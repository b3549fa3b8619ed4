/* pyswitch.h: the public interface of the fast path.
 *
 * Everything between the "cdef begin" and "cdef end" markers is read by
 * csrc/build_ffi.py and handed to cffi's cdef() verbatim, so that part holds
 * only declarations cffi understands: no #if, no macros with bodies, no
 * static asserts.  The Python twin in pyswitch/refpath/ implements the same
 * semantics; docs/DATAPATH.md is the contract both follow.
 *
 * Byte order: every multi-byte field of struct ps_flow_key is big-endian
 * (network order), so that a key is the same 64 bytes in C and in Python.
 * struct ps_vnet_hdr is little-endian, as the kernel hands it to us.
 */
#ifndef PYSWITCH_H
#define PYSWITCH_H 1

#include <stdint.h>
#include <stddef.h>

/* cdef begin */

#define PS_MAX_PORTS 64          /* port numbers are 0..63; flood sets are a uint64_t bitmap */
#define PS_MAX_ACTIONS 16        /* actions in one flow's list */
#define PS_BATCH 64              /* frames taken from one port per round */
#define PS_UPCALL_PORT_SHARES 4  /* an input port fills at most 1/4 of the upcall queue, or a batch */
#define PS_FRAME_MAX 65600       /* largest frame carried: a 64 KiB GSO super-frame plus headers */
#define PS_KEY_SIZE 64           /* bytes in struct ps_flow_key */
#define PS_MAX_SUBTABLES 256     /* distinct (mask, priority) pairs in one flow table */
#define PS_LRU_GRANULE_MS 100    /* a hit reorders a flow's recency at most once per granule */
#define PS_UPCALL_PORT 65535     /* ps_actions_apply: the "port" of an UPCALL output */
#define PS_MAX_WORKERS 8         /* datapath worker threads (ps_dp_set_workers) */

/* Parse results (struct ps_parse_result.error).  Anything but PS_PE_OK is
 * counted in ps_dp_stats.parse_errors[error] and the frame is dropped. */
#define PS_PE_OK 0
#define PS_PE_RUNT 1             /* shorter than an Ethernet header (14 bytes, 18 when tagged) */
#define PS_PE_OVERSIZE 2         /* longer than the port's max_frame and not a GSO frame */
#define PS_PE_VLAN 3             /* more than two VLAN tags */
#define PS_PE_ARP 4              /* ARP not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4) or truncated */
#define PS_PE_IP_TRUNC 5         /* fewer bytes than a minimal IPv4 (20) or IPv6 (40) header */
#define PS_PE_IP_VERSION 6       /* version nibble disagrees with the EtherType */
#define PS_PE_IP_IHL 7           /* IHL < 5, or IHL * 4 beyond the frame */
#define PS_PE_IP_LEN 8           /* total/payload length below the header or beyond the frame */
#define PS_PE_IP6_EXT 9          /* IPv6 extension header chain truncated or longer than 8 headers */
#define PS_PE_L4_TRUNC 10        /* TCP/UDP/ICMP header truncated, or TCP data offset < 5 or beyond the frame */
#define PS_PE_COUNT 11

/* Action types (struct ps_action.type). */
#define PS_ACT_OUTPUT 1          /* send a copy to port `arg` */
#define PS_ACT_FLOOD 2           /* send a copy to every port in bitmap `ports`, never to the input port */
#define PS_ACT_SET_ETH_SRC 3     /* Ethernet source := data[0..5] */
#define PS_ACT_SET_ETH_DST 4     /* Ethernet destination := data[0..5] */
#define PS_ACT_PUSH_VLAN 5       /* insert an 802.1Q tag (TPID 0x8100), TCI := arg */
#define PS_ACT_POP_VLAN 6        /* remove the outermost 802.1Q/802.1ad tag, if any */
#define PS_ACT_UPCALL 7          /* queue a copy for the slow path with reason PS_UPCALL_ACTION, userdata := arg32 */
#define PS_ACT_ROUTE 8           /* route an IPv4 packet through the LPM, next-hop and neighbor tables (DATAPATH.md) */
#define PS_ACT_SET_IPV4_SRC 9    /* IPv4 source := data[0..3]; IP, L4 checksums updated (DATAPATH.md "NAT rewrites") */
#define PS_ACT_SET_IPV4_DST 10   /* IPv4 destination := data[0..3]; checksums updated likewise */
#define PS_ACT_SET_TP_SRC 11     /* TCP/UDP source port := arg; L4 checksum updated unless the kernel completes it */
#define PS_ACT_SET_TP_DST 12     /* TCP/UDP destination port := arg; likewise */
#define PS_ACT_LB 13             /* a client's packet to virtual IP arg32: rewrite it by its connection, route it */
#define PS_ACT_LB_REPLY 14       /* a backend's packet toward the client: undo its connection's NAT, route it */
#define PS_DECAP_DELIVER 1       /* PS_ACT_DECAP arg: a later ROUTE delivers the inner packet to the outer destination */
#define PS_ACT_DECAP 15          /* strip the outer IPv4 (+GRE) header of an IPIP or GRE packet */

/* Why a packet came up to the slow path (struct ps_upcall.reason). */
#define PS_UPCALL_MISS 0         /* no flow matched */
#define PS_UPCALL_ACTION 1       /* a flow's PS_ACT_UPCALL action */
#define PS_UPCALL_NO_ROUTE 2     /* ROUTE: no route to the destination */
#define PS_UPCALL_NO_NEIGH 3     /* ROUTE: the next hop's MAC is unknown; userdata := next-hop id */
#define PS_UPCALL_TTL 4          /* ROUTE: TTL <= 1, the sender gets Time Exceeded */
#define PS_UPCALL_LOCAL 5        /* ROUTE: addressed to the switch itself */
#define PS_UPCALL_CONN_MISS 6    /* LB: no connection for the packet; userdata := the VIP id (arg32) */
#define PS_UPCALL_L7 7           /* LB, LB_REPLY: a packet of a held connection (PS_CONN_F_HOLD); userdata := its vip_id */

/* Connection modes (struct ps_conn.mode): how LB rewrites a client's packet. */
#define PS_CONN_NAT 1            /* destination := the backend (reply.src, reply.sport) */
#define PS_CONN_FULLNAT 2        /* ...and source := the switch's address (reply.dst, reply.dport) */
#define PS_CONN_DSR 3            /* unchanged, routed toward 'backend' (the VIP stays the destination) */
#define PS_CONN_IPIP 4           /* encapsulated in IPv4 (protocol 4), tunnel_src -> backend */
#define PS_CONN_GRE 5            /* encapsulated in IPv4 + GRE (protocol 47), tunnel_src -> backend */

/* Connection states (struct ps_conn.state); each has its own idle timeout. */
#define PS_CS_SYN 1              /* TCP: opened by a SYN, not yet acknowledged */
#define PS_CS_ESTABLISHED 2      /* TCP: an ACK without SYN was seen */
#define PS_CS_FIN_WAIT 3         /* TCP: a FIN was seen */
#define PS_CS_CLOSE 4            /* TCP: a RST was seen */
#define PS_CS_UDP 5              /* every UDP connection */
#define PS_CS_COUNT 6            /* states + 1: index 0 is unused */

/* Public bits of struct ps_conn.flags; the table's own bits lie below 0x100
 * and are neither reported nor accepted. */
#define PS_CONN_F_HOLD 0x100     /* nat/fullnat TCP: LB and LB_REPLY send every packet up untouched (PS_UPCALL_L7) */
#define PS_CONN_F_SPLICED 0x200  /* reported only: ps_dp_conn_splice() gave it sequence deltas per direction */

/* Connection events (struct ps_conn_event.kind). */
#define PS_CE_GONE 1             /* the connection expired or was evicted (not ps_dp_conn_del) */
#define PS_CE_RTT 2              /* the backend's first SYN+ACK: rtt_us since the connection was added */
#define PS_CE_STATE 3            /* the connection began closing (FIN_WAIT, CLOSE) or opened again (SYN): state := the new one */
#define PS_CE_NEW 4              /* LB added the connection itself, to the backend its VIP's Maglev ring chose */

/* Connection table bounds and default idle timeouts (ps_dp_conn_config). */
#define PS_CT_MAX_CONNS_DEFAULT 1048576   /* max_conns of a new datapath */
#define PS_CT_MAX_CONNS 16777216          /* the largest max_conns accepted */
#define PS_CT_MAX_EVENTS 65536            /* events queued until drained; more are counted in events_dropped */
#define PS_CT_MAX_SPLICES_DEFAULT 65536   /* max_splices of a new datapath (ps_dp_splice_config) */
#define PS_CT_SYN_TIMEOUT_MS 60000
#define PS_CT_ESTABLISHED_TIMEOUT_MS 900000
#define PS_CT_FIN_WAIT_TIMEOUT_MS 120000
#define PS_CT_CLOSE_TIMEOUT_MS 10000
#define PS_CT_UDP_TIMEOUT_MS 300000

/* VIP guards against new-connection floods (ps_dp_vip_guard_*; docs/DATAPATH.md "VIP guards"). */
#define PS_VIP_GUARD_MAX_VIPS 4096 /* VIP ids 1..PS_VIP_GUARD_MAX_VIPS-1 may have a guard */
#define PS_VIP_GUARD_SCAN 64     /* SYN-list entries searched for the VIP's oldest embryonic connection */
#define PS_VIP_GUARD_MAX_RATE 10000000 /* the largest upcall_rate and upcall_burst accepted */

/* Maglev rings (ps_dp_ring_*). */
#define PS_RING_EMPTY 0xffff     /* a slot no backend holds: its clients go up as CONN_MISS */
#define PS_RING_MAX_VIPS 4096    /* VIP ids 1..PS_RING_MAX_VIPS-1 may have a ring */
#define PS_RING_MAX_SIZE 16777216 /* slots in one ring */
#define PS_RING_MAX_BACKENDS 65535 /* backend indexes 0..PS_RING_MAX_BACKENDS-1 */

/* Next-hop kinds (struct ps_nexthop.kind). */
#define PS_NH_CONNECTED 1        /* the destination is on the next hop's VLAN: resolve the destination itself */
#define PS_NH_GATEWAY 2          /* forward to 'gateway' on the next hop's VLAN */
#define PS_NH_LOCAL 3            /* one of the switch's own addresses */
#define PS_NH_BLACKHOLE 4        /* drop silently (counted in route_dropped) */
#define PS_MAX_NEXTHOPS 4096     /* next-hop ids are 1..4095; 0 means "no route" */
#define PS_MAX_NEIGHS 65536      /* neighbors one datapath holds; a new one beyond is refused (-ENOSPC) */

/* Port kinds (ps_dp_port_add). */
#define PS_PORT_AFPACKET 1       /* AF_PACKET socket bound to an interface, RX ring, batched TX */
#define PS_PORT_TAP 2            /* an already opened TAP fd with IFF_VNET_HDR */
#define PS_PORT_MEMORY 3         /* in-memory queues, for unit and differential tests only */
#define PS_PORT_AFXDP 4          /* AF_XDP sockets on an interface's receive queues, an XDP program to steer to them */

/* How an AF_XDP port's XDP program is attached (ps_dp_port_xdp_mode). */
#define PS_XDP_MODE_NATIVE 1     /* by the driver, before any socket buffer exists */
#define PS_XDP_MODE_GENERIC 2    /* by the kernel's generic hook, on socket buffers (drivers without XDP) */

/* The flow key: what the parser extracts from a frame.  64 bytes; all
 * multi-byte fields big-endian.  Fields the frame does not have are zero. */
struct ps_flow_key {
    uint8_t in_port[2];          /* port number the frame arrived on */
    uint8_t vlan_tci[2];         /* outermost tag: PCP<<13 | 0x1000 (present) | VID; 0 when untagged */
    uint8_t eth_dst[6];
    uint8_t eth_src[6];
    uint8_t eth_type[2];         /* EtherType after the VLAN tags; 0x05ff for 802.3 length frames */
    uint8_t nw_proto;            /* IP protocol / IPv6 final next header; ARP: opcode if < 256 */
    uint8_t nw_tos;              /* IPv4 TOS / IPv6 traffic class */
    uint8_t nw_ttl;              /* IPv4 TTL / IPv6 hop limit */
    uint8_t nw_frag;             /* PS_FRAG_ANY | PS_FRAG_LATER */
    uint8_t pad0[2];
    uint8_t nw_src[16];          /* IPv4 in the first 4 bytes; ARP: sender protocol address */
    uint8_t nw_dst[16];          /* IPv4 in the first 4 bytes; ARP: target protocol address */
    uint8_t tp_src[2];           /* TCP/UDP source port; ICMP/ICMPv6: type */
    uint8_t tp_dst[2];           /* TCP/UDP destination port; ICMP/ICMPv6: code */
    uint8_t tcp_flags[2];        /* the 12 flag bits of TCP */
    uint8_t pad1[2];
};

#define PS_FRAG_ANY 1            /* the packet is a fragment */
#define PS_FRAG_LATER 2          /* ...and not the first one: no L4 header */

/* What ps_parse() reports besides the key. */
struct ps_parse_result {
    uint16_t error;              /* PS_PE_* */
    uint16_t l3_ofs;             /* offset of the IP/ARP header in the frame; 0 if none */
    uint16_t l4_ofs;             /* offset of the TCP/UDP/ICMP header; 0 if none */
    uint16_t pad;
};

/* virtio_net_hdr as PACKET_VNET_HDR and IFF_VNET_HDR carry it (little-endian). */
struct ps_vnet_hdr {
    uint8_t flags;               /* VIRTIO_NET_HDR_F_NEEDS_CSUM (1), _DATA_VALID (2) */
    uint8_t gso_type;            /* VIRTIO_NET_HDR_GSO_NONE (0), TCPV4 (1), UDP (3), TCPV6 (4), | ECN (0x80) */
    uint16_t hdr_len;            /* length of the headers up to and including L4 */
    uint16_t gso_size;           /* segment payload size */
    uint16_t csum_start;         /* where checksumming starts, from the start of the frame */
    uint16_t csum_offset;        /* where to store it, from csum_start */
};

/* virtio_net_hdr GSO types (struct ps_vnet_hdr.gso_type without the ECN flag 0x80). */
#define PS_VNET_GSO_TCPV4 1      /* TCP over IPv4: segments of gso_size payload bytes */
#define PS_VNET_GSO_UDP 3        /* UDP fragmentation (UFO): IP fragments; ps_gso_plan() refuses it */
#define PS_VNET_GSO_TCPV6 4      /* TCP over IPv6 */
#define PS_VNET_GSO_UDP_L4 5     /* UDP segmentation: one whole datagram of gso_size payload bytes per segment */

/* How ps_gso_plan() cuts a GSO super-frame into segments. */
struct ps_gso {
    uint16_t l3_ofs;             /* the IP header */
    uint16_t l4_ofs;             /* the TCP or UDP header */
    uint16_t hdr_size;           /* every header up to the payload, copied into each segment */
    uint16_t seg_payload;        /* payload bytes per segment but the last (the vnet's gso_size) */
    uint32_t payload;            /* payload bytes in all */
    uint32_t n_segs;             /* segments: at least one */
    uint8_t ipv4;                /* 1: IPv4, 0: IPv6 */
    uint8_t proto;               /* 6 (TCP) or 17 (UDP) */
    uint16_t pad;                /* zero */
};

/* One action.  32 bytes. */
struct ps_action {
    uint16_t type;               /* PS_ACT_* */
    uint16_t arg;                /* OUTPUT: port; PUSH_VLAN: TCI; SET_TP_SRC/DST: the port */
    uint32_t arg32;              /* UPCALL: userdata */
    uint8_t data[16];            /* SET_ETH_SRC/DST: the address in data[0..5]; SET_IPV4_SRC/DST: data[0..3] */
    uint64_t ports;              /* FLOOD: bitmap of port numbers */
};

/* A flow as the slow path installs it and as a dump returns it. */
struct ps_flow_info {
    struct ps_flow_key key;      /* already masked */
    struct ps_flow_key mask;     /* 1 bits must match */
    uint32_t priority;           /* higher wins among overlapping flows */
    uint32_t idle_timeout_ms;    /* 0: never idles out */
    uint64_t cookie;             /* the slow path's own tag, returned on expiry */
    uint64_t packets;
    uint64_t bytes;
    int64_t used_ms;             /* last hit; the insertion time until the first hit */
    uint32_t n_actions;
    uint32_t pad;
    struct ps_action actions[16];
};

/* Counters of one flow table. */
struct ps_ft_stats {
    uint64_t flows;              /* installed now */
    uint64_t max_flows;          /* the bound */
    uint64_t subtables;          /* distinct (mask, priority) pairs now */
    uint64_t inserts;
    uint64_t modifies;           /* puts that replaced an existing flow's actions */
    uint64_t deletes;
    uint64_t expired;
    uint64_t evictions;          /* flows removed to make room (least recently used) */
    uint64_t refused;            /* puts refused: too many subtables or too many actions */
    uint64_t emc_hits;
    uint64_t masked_hits;
    uint64_t misses;
};

/* One packet for the slow path. */
struct ps_upcall {
    uint16_t in_port;
    uint16_t reason;             /* PS_UPCALL_* */
    uint32_t userdata;           /* arg32 of the PS_ACT_UPCALL action; the next-hop id for PS_UPCALL_NO_NEIGH */
    struct ps_flow_key key;
    struct ps_vnet_hdr vnet;
    uint16_t pad;
    uint32_t size;               /* bytes at data */
    uint8_t *data;               /* valid until the next ps_dp_poll/ps_dp_run */
};

struct ps_port_stats {
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t rx_dropped;         /* lost before we saw them (ring full: PACKET_STATISTICS tp_drops, XDP_STATISTICS) */
    uint64_t rx_errors;          /* frames we refused: parse errors, truncated ring frames */
    uint64_t tx_dropped;         /* sends that failed; AF_XDP: also no free chunk, or a GSO frame it cannot cut */
};

struct ps_dp_stats {
    uint64_t rx_packets;         /* over all ports */
    uint64_t tx_packets;
    uint64_t upcalls;            /* packets queued for the slow path */
    uint64_t upcall_dropped;     /* upcalls lost because the queue was full */
    uint64_t bad_port;           /* outputs to a port number that is not attached */
    uint64_t parse_errors[11];   /* by PS_PE_*; [0] unused */
    uint64_t routed;             /* packets the ROUTE action forwarded */
    uint64_t route_dropped;      /* ROUTE: not IPv4, martian source, broadcast/multicast destination, blackhole */
    uint64_t martian;            /* ...of which martian sources (0/8, 127/8, 224/4, 240/4, 255.255.255.255) */
    uint64_t decap_errors;       /* DECAP on a packet that is not IPIP/GRE over IPv4, or truncated: dropped */
};

/* Where a route leads. */
struct ps_nexthop {
    uint8_t kind;                /* PS_NH_*; 0 in the datapath's table means "not set" */
    uint8_t pad0;                /* zero */
    uint16_t vlan;               /* the egress VLAN id */
    uint8_t gateway[16];         /* GATEWAY: the next hop's address (IPv4 in the first 4 bytes) */
    uint8_t src_mac[6];          /* the switch's MAC on that VLAN: the routed frame's new source */
    uint8_t pad1[2];             /* zero */
};

/* A resolved neighbor on a VLAN. */
struct ps_neigh {
    uint8_t mac[6];              /* its MAC: the routed frame's new destination */
    uint16_t port;               /* the port it was learned on */
    uint16_t out_tci;            /* 0: send untagged; else push an 802.1Q tag with this TCI */
    uint16_t pad;                /* zero */
};

/* One direction of a connection: what a TCP/UDP packet's headers hold.
 * 16 bytes; addresses and ports big-endian, like struct ps_flow_key. */
struct ps_conn_tuple {
    uint8_t proto;               /* 6 TCP, 17 UDP */
    uint8_t pad[3];              /* zero */
    uint8_t src[4];
    uint8_t dst[4];
    uint8_t sport[2];
    uint8_t dport[2];
};

/* A connection, as ps_dp_conn_add() takes it and ps_dp_conn_get/dump() return it. */
struct ps_conn {
    struct ps_conn_tuple client; /* as the client sends it: client -> VIP */
    struct ps_conn_tuple reply;  /* nat/fullnat: as the backend's reply arrives; all zero for dsr/ipip/gre */
    uint8_t backend[4];          /* dsr: the address routed toward; ipip/gre: the outer destination */
    uint8_t tunnel_src[4];       /* ipip/gre: the outer source */
    uint8_t mode;                /* PS_CONN_* */
    uint8_t state;               /* PS_CS_*; in ps_dp_conn_add(): the initial state */
    uint16_t flags;              /* PS_CONN_F_*; ps_dp_conn_add() takes PS_CONN_F_HOLD alone */
    uint32_t vip_id;
    uint32_t backend_id;         /* the slow path's tag, returned in events */
    uint32_t pad;
    uint64_t packets;            /* both directions */
    uint64_t bytes;
    int64_t created_ms;
    int64_t used_ms;
};

/* Something the slow path should know about a connection (ps_dp_conn_events). */
struct ps_conn_event {
    uint32_t vip_id;
    uint32_t backend_id;
    uint8_t kind;                /* PS_CE_* */
    uint8_t state;               /* the connection's state then */
    uint16_t pad;
    uint32_t rtt_us;             /* PS_CE_RTT: microseconds from the add to the backend's SYN+ACK */
    struct ps_conn_tuple client;
};

/* Counters of a datapath's connection table. */
struct ps_ct_stats {
    uint64_t conns;              /* stored now */
    uint64_t max_conns;          /* the bound */
    uint64_t by_state[6];        /* conns by PS_CS_*; [0] unused */
    uint64_t inserts;
    uint64_t deletes;            /* ps_dp_conn_del() */
    uint64_t expired;            /* ps_dp_conn_expire() */
    uint64_t evictions;          /* removed to make room for an add */
    uint64_t refused;            /* adds refused: full and nothing evictable (-ENOSPC) */
    uint64_t hits;               /* LB and LB_REPLY lookups that found a connection */
    uint64_t misses;             /* LB lookups that did not (CONN_MISS upcalls) */
    uint64_t reply_misses;       /* LB_REPLY lookups that did not (routed unchanged) */
    uint64_t events_dropped;     /* events lost because the queue was full */
    uint64_t bytes_used;         /* memory the table holds now: entry chunks and hash buckets */
    uint64_t bytes_per_conn;     /* one entry plus its share of the two hash indexes */
    uint64_t splices;            /* spliced connections now: entries of the splice table in use */
    uint64_t max_splices;        /* the splice table's bound */
    uint64_t splice_refused;     /* ps_dp_conn_splice() refused: the splice table full (-ENOSPC) */
    uint64_t splice_rewritten;   /* packets of spliced connections forwarded with their deltas */
    uint64_t splice_dropped;     /* ...dropped instead: a TCP header or options the rewrite cannot take */
    uint64_t l7_upcalls;         /* packets of held connections sent up (PS_UPCALL_L7) */
};

/* The limits of one VIP's guard (ps_dp_vip_guard_set); 0 means no limit. */
struct ps_vip_guard {
    uint32_t max_embryonic;      /* SYN-state connections the VIP holds at most */
    uint32_t upcall_rate;        /* CONN_MISS upcalls a second the VIP sends up at most */
    uint32_t upcall_burst;       /* upcalls the bucket holds: at least 1 with a rate */
    uint32_t upcall_threshold;   /* the rate applies only while the VIP holds this many embryonic connections */
};

/* The counters of one VIP's guard. */
struct ps_vip_guard_stats {
    uint64_t embryonic;          /* the VIP's connections in PS_CS_SYN now */
    uint64_t embryonic_evicted;  /* its least recent SYN-state connection removed to admit a new one */
    uint64_t embryonic_refused;  /* SYN-state adds refused at the limit (-ENOSPC): none of its own to evict */
    uint64_t upcalls_limited;    /* CONN_MISS upcalls dropped by the rate limit */
};

/* A backend a Maglev ring slot can name: what LB needs to add its connection. */
struct ps_ring_backend {
    uint8_t address[4];          /* the backend's address: nat's new destination, dsr's next hop, the tunnel's end */
    uint8_t tunnel_src[4];       /* ipip/gre: the outer source */
    uint16_t port;               /* nat: the new destination port (host order); dsr/ipip/gre keep the VIP's */
    uint8_t mode;                /* PS_CONN_NAT, DSR, IPIP or GRE (fullnat needs the slow path's port allocator) */
    uint8_t pad;                 /* zero */
    uint32_t backend_id;         /* the slow path's tag for the connection and its events */
};

/* Counters of a datapath's Maglev rings. */
struct ps_ring_stats {
    uint64_t rings;              /* VIPs with a ring */
    uint64_t slots_written;      /* by ps_dp_ring_write(), all rings */
    uint64_t scheduled;          /* connections LB added from a ring (each with a PS_CE_NEW event) */
    uint64_t bytes_used;         /* slots and backend entries */
};

struct ps_flowtable;
struct ps_dp;

/* Frame parsing and checksums (parse.c, csum.c). */
uint16_t ps_parse(const uint8_t *frame, uint32_t size, uint16_t in_port, uint32_t max_frame,
                  int is_gso, struct ps_flow_key *key, struct ps_parse_result *result);
uint16_t ps_csum(const uint8_t *data, uint32_t size, uint32_t initial);
uint16_t ps_csum_update16(uint16_t check, uint16_t old_value, uint16_t new_value);
uint16_t ps_csum_update32(uint16_t check, uint32_t old_value, uint32_t new_value);

/* The rewrite of one segment of a spliced TCP connection (splice.c;
 * docs/L7.md).  One struct per direction; the deltas are added modulo
 * 2^32 (a negative shift is its two's complement). */
#define PS_SPLICE_SET_SRC 0x01       /* write 'src' into the IPv4 source */
#define PS_SPLICE_SET_DST 0x02       /* write 'dst' into the IPv4 destination */
#define PS_SPLICE_SET_SPORT 0x04     /* write 'sport' into the TCP source port */
#define PS_SPLICE_SET_DPORT 0x08     /* write 'dport' into the TCP destination port */
#define PS_SPLICE_TIMESTAMPS 0x10    /* both sides use timestamps: shift TSval and TSecr */

struct ps_splice {
    uint8_t src[4];              /* SET_SRC: the new IPv4 source */
    uint8_t dst[4];              /* SET_DST: the new IPv4 destination */
    uint16_t sport;              /* SET_SPORT: the new source port, host order */
    uint16_t dport;              /* SET_DPORT: the new destination port, host order */
    uint32_t seq_delta;          /* added to the sequence number: the sender's space to the receiver's view */
    uint32_t ack_delta;          /* added to the acknowledgement number (with ACK set) and to every SACK edge */
    uint32_t tsval_delta;        /* TIMESTAMPS: added to TSval */
    uint32_t tsecr_delta;        /* TIMESTAMPS: added to TSecr (with ACK set) */
    uint32_t flags;              /* PS_SPLICE_* */
};

/* What ps_tcp_splice_rewrite() did, accumulated by the caller's struct. */
struct ps_splice_stats {
    uint64_t rewritten;          /* PS_SPLICE_OK */
    uint64_t not_tcp;            /* PS_SPLICE_NOT_TCP */
    uint64_t bad_header;         /* PS_SPLICE_BAD_HEADER */
    uint64_t bad_options;        /* PS_SPLICE_BAD_OPTIONS */
    uint64_t sack_blocks;        /* SACK blocks shifted */
    uint64_t timestamps;         /* timestamp options shifted */
};

/* ps_tcp_splice_rewrite() results. */
#define PS_SPLICE_OK 0               /* every field rewritten */
#define PS_SPLICE_NOT_TCP 1          /* not IPv4 TCP with a whole 20-byte header (or a later fragment): unchanged */
#define PS_SPLICE_BAD_HEADER 2       /* data offset < 5 or past the frame: unchanged */
#define PS_SPLICE_BAD_OPTIONS 3      /* addresses, ports, seq, ack rewritten; malformed options left as they are */

/* Rewrites the TCP segment in the 'size' bytes at 'data' (an Ethernet frame,
 * at most two VLAN tags) for the spliced connection 'sp': addresses and
 * ports as nat/fullnat do, seq += seq_delta, ack += ack_delta, SACK edges +=
 * ack_delta, TSval += tsval_delta, TSecr += tsecr_delta, every checksum
 * updated incrementally; 'vnet' (NULL: none) says whether the kernel
 * completes the TCP checksum.  Counts into '*stats'; returns PS_SPLICE_*. */
int ps_tcp_splice_rewrite(uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet, const struct ps_splice *sp,
                          struct ps_splice_stats *stats);

/* The PS_SPLICE_* result ps_tcp_splice_rewrite() would give the 'size'
 * bytes at 'data', with any splice, reading only: what LB's splice asks of
 * a segment before it forwards it. */
int ps_tcp_splice_check(const uint8_t *data, uint32_t size);

/* Software offloads for ports whose frames carry no vnet header (offload.c;
 * docs/DATAPATH.md "Offloads").  ps_offload_rx_csum() sets NEEDS_CSUM,
 * csum_start and csum_offset in '*vnet' (leaving the rest) if the 'size'
 * bytes at 'frame' are one TCP or UDP packet whose checksum field holds the
 * folded sum of its pseudo-header, as a partial checksum does; else it
 * leaves '*vnet' alone.  ps_offload_csum() completes the checksum '*vnet'
 * describes (the sum from csum_start to the end, 0 stored as 0xffff): 0, or
 * -EINVAL if the field is outside the frame.  ps_gso_plan() fills '*gso'
 * for a TCPV4, TCPV6 or UDP_L4 super-frame: 0; -EOPNOTSUPP for other GSO
 * types (UFO) and headers whose segments it cannot make right (source
 * routes, IPv6 AH or fragment headers); -EINVAL for a frame that is not
 * what '*vnet' says.  ps_gso_segment() writes segment 'index'
 * (< gso->n_segs) of the planned frame into 'out' (room for gso->hdr_size +
 * gso->seg_payload bytes) with its own lengths, IPv4 id, sequence number,
 * flags and checksums, and returns its size. */
void ps_offload_rx_csum(const uint8_t *frame, uint32_t size, struct ps_vnet_hdr *vnet);
int ps_offload_csum(uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet);
int ps_gso_plan(const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet, struct ps_gso *gso);
uint32_t ps_gso_segment(const uint8_t *frame, const struct ps_gso *gso, uint32_t index, uint8_t *out);

/* The flow table alone (flowtable.c). */
struct ps_flowtable *ps_ft_new(uint32_t max_flows, uint32_t emc_entries);
void ps_ft_free(struct ps_flowtable *ft);
int ps_ft_put(struct ps_flowtable *ft, const struct ps_flow_key *key, const struct ps_flow_key *mask,
              uint32_t priority, const struct ps_action *actions, uint32_t n_actions,
              uint32_t idle_timeout_ms, uint64_t cookie, int64_t now_ms);
int ps_ft_del(struct ps_flowtable *ft, const struct ps_flow_key *key, const struct ps_flow_key *mask,
              uint32_t priority);
uint32_t ps_ft_del_loose(struct ps_flowtable *ft, const struct ps_flow_key *key,
                         const struct ps_flow_key *mask);
void ps_ft_flush(struct ps_flowtable *ft);
int ps_ft_lookup(struct ps_flowtable *ft, const struct ps_flow_key *key, uint32_t size, int64_t now_ms,
                 struct ps_flow_info *out);
uint32_t ps_ft_expire(struct ps_flowtable *ft, int64_t now_ms, uint64_t *cookies, uint32_t max_cookies);
uint32_t ps_ft_dump(struct ps_flowtable *ft, uint32_t start, struct ps_flow_info *out, uint32_t max_out,
                    uint32_t *next);
void ps_ft_get_stats(const struct ps_flowtable *ft, struct ps_ft_stats *out);

/* Applying actions to one frame, outside any datapath (actions.c): the
 * outputs are written back to back into out_buf and described in out_ports,
 * out_sizes and out_vnets.  Returns the number of outputs, or -1 if out_buf
 * is too small. */
int ps_actions_apply(const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet, uint16_t in_port,
                     const struct ps_action *actions, uint32_t n_actions,
                     uint8_t *out_buf, uint32_t out_buf_size, uint16_t *out_ports, uint32_t *out_sizes,
                     struct ps_vnet_hdr *out_vnets, uint32_t *out_userdata, uint32_t max_outputs);

/* The datapath: ports, one flow table, the batch loop (datapath.c, io.c). */
struct ps_dp *ps_dp_new(uint32_t max_flows, uint32_t emc_entries, uint32_t max_upcalls);
void ps_dp_free(struct ps_dp *dp);
const char *ps_version(void);
int ps_dp_port_add(struct ps_dp *dp, uint16_t port_no, int kind, int ifindex_or_fd,
                   uint32_t ring_frames, uint32_t max_frame);
int ps_dp_port_del(struct ps_dp *dp, uint16_t port_no);
int ps_dp_port_get_stats(struct ps_dp *dp, uint16_t port_no, struct ps_port_stats *out);
/* PS_XDP_MODE_* of an AF_XDP port, 0 for other kinds, -ENOENT without a port. */
int ps_dp_port_xdp_mode(struct ps_dp *dp, uint16_t port_no);
int ps_dp_add_wake_fd(struct ps_dp *dp, int fd);
int ps_dp_del_wake_fd(struct ps_dp *dp, int fd);
int ps_dp_poll(struct ps_dp *dp, int timeout_ms, int64_t now_ms);
int ps_dp_serve(struct ps_dp *dp, int timeout_ms, uint32_t spin_us);
void ps_dp_set_hold(struct ps_dp *dp, uint32_t hold_us);
uint32_t ps_dp_hold(const struct ps_dp *dp);
int ps_dp_run(struct ps_dp *dp, int64_t now_ms);
uint32_t ps_dp_upcalls(struct ps_dp *dp, struct ps_upcall **out);
int ps_dp_execute(struct ps_dp *dp, uint16_t in_port, const uint8_t *frame, uint32_t size,
                  const struct ps_vnet_hdr *vnet, const struct ps_action *actions, uint32_t n_actions,
                  int64_t now_ms);
struct ps_flowtable *ps_dp_flowtable(struct ps_dp *dp);
void ps_dp_get_stats(const struct ps_dp *dp, struct ps_dp_stats *out);
int ps_dp_mem_inject(struct ps_dp *dp, uint16_t port_no, const uint8_t *frame, uint32_t size,
                     const struct ps_vnet_hdr *vnet);
/* Takes the oldest frame a memory port sent into 'buf': returns its size (0 for an empty frame),
 * -EAGAIN when none is waiting, -ENOSPC when 'buf_size' is too small. */
int ps_dp_mem_take(struct ps_dp *dp, uint16_t port_no, uint8_t *buf, uint32_t buf_size,
                   struct ps_vnet_hdr *vnet);

/* Workers (workers.c, docs/DATAPATH.md "Workers").  ps_dp_set_workers()
 * runs the ports on 'n_workers' threads (1..PS_MAX_WORKERS, 1: none, the
 * default), before any port is added: 0, -EINVAL, -EBUSY, -ENOMEM.
 * ps_dp_worker_get_stats() copies one worker's counters and its flow-table
 * lane's lookup counters (emc_hits, masked_hits, misses): 0, or -ENOENT.
 * ps_dp_mem_inject_worker() queues a memory frame on one worker's side of
 * the port (ps_dp_mem_inject() lets the frame's symmetric flow hash pick). */
int ps_dp_set_workers(struct ps_dp *dp, uint32_t n_workers);
uint32_t ps_dp_n_workers(const struct ps_dp *dp);
int ps_dp_worker_get_stats(const struct ps_dp *dp, uint32_t worker, struct ps_dp_stats *out,
                           struct ps_ft_stats *ft_out);
int ps_dp_mem_inject_worker(struct ps_dp *dp, uint32_t worker, uint16_t port_no, const uint8_t *frame,
                            uint32_t size, const struct ps_vnet_hdr *vnet);

/* IPv4 longest-prefix match, DIR-24-8 (lpm.c): prefix -> next-hop id.
 * Prefixes and addresses are 4 bytes in network order.  ps_lpm_add() masks
 * 'prefix' to 'plen' bits and replaces a rule of the same prefix and length:
 * 0, -EINVAL ('plen' > 32, 'nh_id' not 1..PS_MAX_NEXTHOPS-1), -ENOSPC (more
 * than 'max_routes' rules, or no free tbl8 group of 'max_tbl8').  ps_lpm_del()
 * returns 1 if the rule existed, 0 if not, -EINVAL; the addresses it covered
 * fall back to the next shorter rule.  ps_lpm_lookup() returns 0 for "no
 * route".  ps_lpm_count() returns the number of rules. */
struct ps_lpm;
struct ps_lpm *ps_lpm_new(uint32_t max_routes, uint32_t max_tbl8);
void ps_lpm_free(struct ps_lpm *lpm);
int ps_lpm_add(struct ps_lpm *lpm, const uint8_t *prefix, uint8_t plen, uint32_t nh_id);
int ps_lpm_del(struct ps_lpm *lpm, const uint8_t *prefix, uint8_t plen);
uint32_t ps_lpm_lookup(const struct ps_lpm *lpm, const uint8_t *addr);
uint32_t ps_lpm_count(const struct ps_lpm *lpm);

/* The datapath's routing tables (route.c): one LPM (65536 routes, 4096 tbl8
 * groups), next hops, neighbors.  Addresses of neighbors and gateways are 16
 * bytes (IPv4 in the first 4, the rest zero).  The route functions return
 * what the ps_lpm_* ones do.  ps_dp_nexthop_set(): 0, or -EINVAL for an id
 * not 1..PS_MAX_NEXTHOPS-1, a kind not PS_NH_*, a VLAN > 4095.
 * ps_dp_neigh_set(): 0, -EINVAL (VLAN > 4095, port >= PS_MAX_PORTS), -ENOSPC
 * (a new neighbor beyond PS_MAX_NEIGHS).  The _del functions return 1 if the
 * entry existed, 0 if not (or -EINVAL); ps_dp_neigh_get() returns 1 and fills
 * '*out' if found, 0 if not. */
int ps_dp_route_add(struct ps_dp *dp, const uint8_t *prefix, uint8_t plen, uint32_t nh_id);
int ps_dp_route_del(struct ps_dp *dp, const uint8_t *prefix, uint8_t plen);
uint32_t ps_dp_route_lookup(struct ps_dp *dp, const uint8_t *addr);
int ps_dp_nexthop_set(struct ps_dp *dp, uint32_t nh_id, const struct ps_nexthop *nh);
int ps_dp_nexthop_del(struct ps_dp *dp, uint32_t nh_id);
int ps_dp_neigh_set(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr, const struct ps_neigh *neigh);
int ps_dp_neigh_del(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr);
int ps_dp_neigh_get(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr, struct ps_neigh *out);

/* The datapath's connection table (conntrack.c; docs/DATAPATH.md "Connection
 * table").  ps_dp_conn_config(): 'max_conns' 1..PS_CT_MAX_CONNS (-EINVAL),
 * changed only while the table is empty (-EBUSY); 'timeouts_ms' NULL keeps
 * the timeouts, else [state] for each PS_CS_* ([0] ignored).
 * ps_dp_conn_add(): 0, -EEXIST (the client tuple, or the non-zero reply
 * tuple, is already present), -EINVAL (bad mode, state or protocol, a
 * reply tuple that does not fit the mode, a flag other than PS_CONN_F_HOLD,
 * or HOLD on a connection that is not nat/fullnat TCP), -ENOSPC (full and
 * nothing evictable), -ENOMEM.  ps_dp_conn_del() returns 1 if the connection existed
 * (no event), 0 if not; ps_dp_conn_get() 1 and fills '*out' if found (by the
 * reply tuple when 'by_reply'), 0 if not.  ps_dp_conn_dump() pages like
 * ps_ft_dump().  ps_dp_conn_expire() removes idle connections with a GONE
 * event each and returns how many; ps_dp_conn_events() drains up to
 * 'max_out' queued events, oldest first.  now_ms -1: the monotonic clock. */
int ps_dp_conn_config(struct ps_dp *dp, uint32_t max_conns, const uint32_t *timeouts_ms);
int ps_dp_conn_add(struct ps_dp *dp, const struct ps_conn *conn, int64_t now_ms);
int ps_dp_conn_del(struct ps_dp *dp, const struct ps_conn_tuple *client);
int ps_dp_conn_get(struct ps_dp *dp, const struct ps_conn_tuple *tuple, int by_reply, struct ps_conn *out);
uint32_t ps_dp_conn_dump(struct ps_dp *dp, uint32_t start, struct ps_conn *out, uint32_t max_out, uint32_t *next);
uint32_t ps_dp_conn_expire(struct ps_dp *dp, int64_t now_ms);
uint32_t ps_dp_conn_events(struct ps_dp *dp, struct ps_conn_event *out, uint32_t max_out);
void ps_dp_conn_get_stats(const struct ps_dp *dp, struct ps_ct_stats *out);

/* L7 delayed binding (conntrack.c; docs/DATAPATH.md "Hold and splice").
 * ps_dp_conn_hold() sets ('hold' non-zero) or clears PS_CONN_F_HOLD of the
 * connection with client tuple 'client': 0, -ENOENT, -EINVAL (not a nat or
 * fullnat TCP connection).  ps_dp_conn_splice() gives such a connection one
 * struct ps_splice per direction (client -> backend, backend -> client),
 * applied after the NAT rewrite, and clears its HOLD; a spliced connection's
 * deltas are replaced.  The splices must set no address or port (only
 * PS_SPLICE_TIMESTAMPS may be in their flags): the conn's tuples give those.
 * Returns 0, -ENOENT, -EINVAL (flags, or not nat/fullnat TCP), -ENOSPC (the
 * splice table holds max_splices: counted in splice_refused), -ENOMEM.  The
 * entry is freed with the connection, however it goes.
 * ps_dp_conn_get_splice() returns 1 and fills both if the connection is
 * spliced, 0 if not or if there is no such connection.
 * ps_dp_splice_config() bounds the splice table: 'max_splices'
 * 1..PS_CT_MAX_CONNS (-EINVAL), not below the splices in use (-EBUSY). */
int ps_dp_conn_hold(struct ps_dp *dp, const struct ps_conn_tuple *client, int hold);
int ps_dp_conn_splice(struct ps_dp *dp, const struct ps_conn_tuple *client, const struct ps_splice *to_backend,
                      const struct ps_splice *to_client);
int ps_dp_conn_get_splice(struct ps_dp *dp, const struct ps_conn_tuple *client, struct ps_splice *to_backend,
                          struct ps_splice *to_client);
int ps_dp_splice_config(struct ps_dp *dp, uint32_t max_splices);

/* VIP guards (conntrack.c, vipguard.c; docs/DATAPATH.md "VIP guards").
 * ps_dp_vip_guard_set() gives VIP 'vip_id' (1..PS_VIP_GUARD_MAX_VIPS-1;
 * -EINVAL otherwise, a rate or burst above PS_VIP_GUARD_MAX_RATE, or a rate
 * with a burst of 0) the limits '*guard', its bucket full, its counters kept.
 * ps_dp_vip_guard_get_stats() fills '*out' (-EINVAL for a bad id). */
int ps_dp_vip_guard_set(struct ps_dp *dp, uint32_t vip_id, const struct ps_vip_guard *guard);
int ps_dp_vip_guard_get_stats(const struct ps_dp *dp, uint32_t vip_id, struct ps_vip_guard_stats *out);

/* Maglev rings: new connections to a VIP scheduled in the datapath (ring.c;
 * docs/DATAPATH.md "Maglev rings").  ps_dp_ring_config() gives VIP 'vip_id'
 * (1..PS_RING_MAX_VIPS-1) a ring of 'size' (1..PS_RING_MAX_SIZE) empty slots
 * and no backends, replacing any it had; 'size' 0 removes it (-EINVAL,
 * -ENOMEM).  ps_dp_ring_backend_set() sets backend 'index' (-ENOENT: no ring;
 * -EINVAL: index or mode).  ps_dp_ring_write() sets slots[k] := values[k]
 * for k < n, all or none (-EINVAL: a slot out of the ring or a value neither
 * an index nor PS_RING_EMPTY).  ps_dp_ring_read() copies up to 'max_out'
 * slots from 'start' and returns how many (-ENOENT: no ring). */
int ps_dp_ring_config(struct ps_dp *dp, uint32_t vip_id, uint32_t size);
int ps_dp_ring_backend_set(struct ps_dp *dp, uint32_t vip_id, uint32_t index, const struct ps_ring_backend *b);
int ps_dp_ring_write(struct ps_dp *dp, uint32_t vip_id, const uint32_t *slots, const uint16_t *values, uint32_t n);
int ps_dp_ring_read(struct ps_dp *dp, uint32_t vip_id, uint32_t start, uint16_t *out, uint32_t max_out);
void ps_dp_ring_get_stats(const struct ps_dp *dp, struct ps_ring_stats *out);

/* cdef end */

#endif /* PYSWITCH_H */
