/* ps_hdrs.h: the wire formats the fast path reads and writes.
 *
 * Every multi-byte field is typed by its byte order (ps_be16, ps_be32), so a
 * reader sees at the declaration that it must go through ntohs()/ntohl().
 * The structs are packed to their wire size; a static assertion after each
 * one catches a layout the compiler padded.  Fields are read from frames with
 * memcpy-safe unaligned access: the parser never dereferences these structs
 * at an unaligned address without the packed attribute.
 */
#ifndef PS_HDRS_H
#define PS_HDRS_H 1

#include <stdbool.h>
#include <stdint.h>

typedef uint16_t ps_be16;        /* a 16-bit value in network byte order */
typedef uint32_t ps_be32;        /* a 32-bit value in network byte order */

#define PS_PACKED __attribute__((packed))

#define PS_ETH_ADDR_LEN 6        /* bytes in a MAC address */

/* Ethernet II header. */
struct ps_eth_hdr {
    uint8_t eth_dst[PS_ETH_ADDR_LEN];   /* destination MAC address */
    uint8_t eth_src[PS_ETH_ADDR_LEN];   /* source MAC address */
    ps_be16 eth_type;                   /* EtherType, or an 802.3 length when < 0x0600 */
} PS_PACKED;
_Static_assert(sizeof(struct ps_eth_hdr) == 14, "Ethernet header is 14 bytes");

/* An 802.1Q / 802.1ad tag as it sits after the addresses: TPID, TCI. */
struct ps_vlan_hdr {
    ps_be16 vlan_tpid;                  /* 0x8100 (802.1Q) or 0x88a8 (802.1ad) */
    ps_be16 vlan_tci;                   /* PCP (3 bits), DEI (1 bit), VID (12 bits) */
} PS_PACKED;
_Static_assert(sizeof(struct ps_vlan_hdr) == 4, "VLAN tag is 4 bytes");

/* ARP for Ethernet and IPv4 (RFC 826), the only kind the parser accepts. */
struct ps_arp_hdr {
    ps_be16 ar_hrd;                     /* hardware type: 1 for Ethernet */
    ps_be16 ar_pro;                     /* protocol type: 0x0800 for IPv4 */
    uint8_t ar_hln;                     /* hardware address length: 6 */
    uint8_t ar_pln;                     /* protocol address length: 4 */
    ps_be16 ar_op;                      /* opcode: 1 request, 2 reply */
    uint8_t ar_sha[PS_ETH_ADDR_LEN];    /* sender hardware address */
    uint8_t ar_spa[4];                  /* sender protocol address */
    uint8_t ar_tha[PS_ETH_ADDR_LEN];    /* target hardware address */
    uint8_t ar_tpa[4];                  /* target protocol address */
} PS_PACKED;
_Static_assert(sizeof(struct ps_arp_hdr) == 28, "Ethernet/IPv4 ARP is 28 bytes");

/* IPv4 header without options (RFC 791). */
struct ps_ip_hdr {
    uint8_t ip_ihl_ver;                 /* version (high nibble), header length in 32-bit words (low) */
    uint8_t ip_tos;                     /* DSCP and ECN */
    ps_be16 ip_tot_len;                 /* header plus payload, in bytes */
    ps_be16 ip_id;                      /* identification, for reassembly */
    ps_be16 ip_frag_off;                /* flags (DF 0x4000, MF 0x2000) and offset in 8-byte units */
    uint8_t ip_ttl;                     /* time to live */
    uint8_t ip_proto;                   /* payload protocol */
    ps_be16 ip_csum;                    /* header checksum */
    uint8_t ip_src[4];                  /* source address */
    uint8_t ip_dst[4];                  /* destination address */
} PS_PACKED;
_Static_assert(sizeof(struct ps_ip_hdr) == 20, "IPv4 header is 20 bytes");

#define PS_IP_MF 0x2000                 /* ip_frag_off: more fragments follow */
#define PS_IP_FRAG_OFF_MASK 0x1fff      /* ip_frag_off: the fragment offset */

/* IPv6 fixed header (RFC 8200). */
struct ps_ip6_hdr {
    ps_be32 ip6_vtc_flow;               /* version (4 bits), traffic class (8), flow label (20) */
    ps_be16 ip6_plen;                   /* payload length: everything after this header */
    uint8_t ip6_nxt;                    /* next header */
    uint8_t ip6_hlim;                   /* hop limit */
    uint8_t ip6_src[16];                /* source address */
    uint8_t ip6_dst[16];                /* destination address */
} PS_PACKED;
_Static_assert(sizeof(struct ps_ip6_hdr) == 40, "IPv6 header is 40 bytes");

/* The two bytes every IPv6 extension header we walk starts with. */
struct ps_ip6_ext_hdr {
    uint8_t ip6e_nxt;                   /* next header */
    uint8_t ip6e_len;                   /* length, in units that depend on the header type */
} PS_PACKED;
_Static_assert(sizeof(struct ps_ip6_ext_hdr) == 2, "IPv6 extension header prefix is 2 bytes");

/* IPv6 fragment header (RFC 8200 section 4.5). */
struct ps_ip6_frag_hdr {
    uint8_t ip6f_nxt;                   /* next header */
    uint8_t ip6f_reserved;              /* zero */
    ps_be16 ip6f_offlg;                 /* offset in 8-byte units (high 13 bits), M flag (bit 0) */
    ps_be32 ip6f_ident;                 /* identification */
} PS_PACKED;
_Static_assert(sizeof(struct ps_ip6_frag_hdr) == 8, "IPv6 fragment header is 8 bytes");

/* TCP header without options (RFC 9293). */
struct ps_tcp_hdr {
    ps_be16 tcp_src;                    /* source port */
    ps_be16 tcp_dst;                    /* destination port */
    ps_be32 tcp_seq;                    /* sequence number */
    ps_be32 tcp_ack;                    /* acknowledgment number */
    ps_be16 tcp_ctl;                    /* data offset (high 4 bits), reserved, 12 flag bits */
    ps_be16 tcp_winsz;                  /* window */
    ps_be16 tcp_csum;                   /* checksum */
    ps_be16 tcp_urg;                    /* urgent pointer */
} PS_PACKED;
_Static_assert(sizeof(struct ps_tcp_hdr) == 20, "TCP header is 20 bytes");

/* UDP header (RFC 768). */
struct ps_udp_hdr {
    ps_be16 udp_src;                    /* source port */
    ps_be16 udp_dst;                    /* destination port */
    ps_be16 udp_len;                    /* header plus payload, in bytes */
    ps_be16 udp_csum;                   /* checksum, 0 for none over IPv4 */
} PS_PACKED;
_Static_assert(sizeof(struct ps_udp_hdr) == 8, "UDP header is 8 bytes");

/* The fixed start of ICMP and ICMPv6 messages. */
struct ps_icmp_hdr {
    uint8_t icmp_type;                  /* message type */
    uint8_t icmp_code;                  /* message code */
    ps_be16 icmp_csum;                  /* checksum */
} PS_PACKED;
_Static_assert(sizeof(struct ps_icmp_hdr) == 4, "ICMP header prefix is 4 bytes");

/* EtherTypes and IP protocol numbers the parser knows. */
#define PS_ETH_TYPE_IP 0x0800           /* IPv4 */
#define PS_ETH_TYPE_ARP 0x0806          /* ARP */
#define PS_ETH_TYPE_VLAN 0x8100         /* 802.1Q customer tag */
#define PS_ETH_TYPE_QINQ 0x88a8         /* 802.1ad service tag */
#define PS_ETH_TYPE_IPV6 0x86dd         /* IPv6 */
#define PS_ETH_TYPE_MIN 0x0600          /* smaller values are 802.3 lengths */
#define PS_ETH_TYPE_NONE 0x05ff         /* the key's eth_type for 802.3 length frames */

#define PS_IPPROTO_HOPOPTS 0            /* IPv6 hop-by-hop options */
#define PS_IPPROTO_ICMP 1               /* ICMP (IPv4) */
#define PS_IPPROTO_TCP 6                /* TCP */
#define PS_IPPROTO_UDP 17               /* UDP */
#define PS_IPPROTO_ROUTING 43           /* IPv6 routing header */
#define PS_IPPROTO_FRAGMENT 44          /* IPv6 fragment header */
#define PS_IPPROTO_AH 51                /* authentication header */
#define PS_IPPROTO_ICMPV6 58            /* ICMPv6 */
#define PS_IPPROTO_DSTOPTS 60           /* IPv6 destination options */

#define PS_VLAN_PRESENT 0x1000          /* key vlan_tci: a tag was present (the DEI bit's place) */

/* virtio_net_hdr bits (struct ps_vnet_hdr in pyswitch.h). */
#define PS_VNET_F_NEEDS_CSUM 1          /* csum_start/csum_offset say where to checksum */
#define PS_VNET_GSO_TYPE_MASK 0x7f      /* gso_type without the ECN flag */
#define PS_VNET_HDR_SIZE 10             /* bytes of struct virtio_net_hdr on the wire */

/* Unaligned big-endian access to header fields inside a frame, and the
 * TPIDs of a VLAN tag: one definition for every file that reads headers. */
static inline uint16_t
ps_be16_load(const uint8_t *p)
{
    return p[0] << 8 | p[1];
}

static inline void
ps_be16_store(uint8_t *p, uint16_t value)
{
    p[0] = value >> 8;
    p[1] = value & 0xff;
}

static inline uint32_t
ps_be32_load(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static inline bool
ps_is_vlan_tpid(uint16_t type)
{
    return type == PS_ETH_TYPE_VLAN || type == PS_ETH_TYPE_QINQ;
}

#endif /* PS_HDRS_H */
