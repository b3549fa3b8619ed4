/* nat.c: the NAT rewrites (docs/DATAPATH.md, "NAT rewrites") and the IPv4
 * header finder they share with ROUTE (route.c).
 *
 * A rewrite writes one field and updates every checksum that covers it with
 * RFC 1624's incremental update, so the payload is never summed: the IPv4
 * header checksum covers the addresses, the TCP/UDP checksum covers the
 * addresses (through its pseudo-header) and the ports.
 *
 * A frame whose L4 checksum the kernel will finish ("partial": virtio
 * NEEDS_CSUM with csum_start at the L4 header, as every GSO frame is) holds
 * only the pseudo-header sum, not complemented, in the checksum field.  There
 * an address change is applied to the sum itself (the complement of what the
 * full-mode update works on), and a port change touches nothing: the kernel
 * sums the ports with the data later.  This is Linux's
 * inet_proto_csum_replace4() for CHECKSUM_PARTIAL.
 */
#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "nat.h"
#include "ps_hdrs.h"
#include "pyswitch.h"

#define MAX_IPV4_TAGS 2          /* VLAN tags skipped to find IPv4, as the parser does */
#define IP_CSUM_OFS offsetof(struct ps_ip_hdr, ip_csum)
#define IP_FRAG_OFS offsetof(struct ps_ip_hdr, ip_frag_off)
#define IP_PROTO_OFS offsetof(struct ps_ip_hdr, ip_proto)
#define TCP_CSUM_OFS offsetof(struct ps_tcp_hdr, tcp_csum)
#define UDP_CSUM_OFS offsetof(struct ps_udp_hdr, udp_csum)
#define UDP_CSUM_MANGLED_0 0xffff  /* a computed UDP checksum of 0 is sent as this: 0 means "none" (RFC 768) */

_Static_assert(offsetof(struct ps_tcp_hdr, tcp_src) == PS_NAT_TP_SRC
               && offsetof(struct ps_tcp_hdr, tcp_dst) == PS_NAT_TP_DST, "TCP and UDP ports lie alike");

/* Where a rewrite finds the headers of one frame. */
struct nat_hdrs {
    uint8_t *ip;                 /* the IPv4 header */
    uint8_t *l4;                 /* the TCP/UDP header; NULL when L4 is not rewritten */
    uint8_t *l4_csum;            /* its checksum field */
    bool udp;                    /* L4 is UDP: a checksum of 0 means "none" */
    bool partial;                /* the kernel completes the L4 checksum: the field holds the pseudo-header sum */
};

uint32_t
ps_ipv4_offset(const uint8_t *data, uint32_t size)
{
    uint32_t type_ofs = 2 * PS_ETH_ADDR_LEN;
    uint32_t l3;
    uint16_t type;

    if (size < sizeof(struct ps_eth_hdr)) {
        return 0;
    }
    type = ps_be16_load(data + type_ofs);
    for (int n = 0; n < MAX_IPV4_TAGS && ps_is_vlan_tpid(type); n++) {
        type_ofs += sizeof(struct ps_vlan_hdr);
        if (type_ofs + 2 > size) {
            return 0;
        }
        type = ps_be16_load(data + type_ofs);
    }
    l3 = type_ofs + 2;
    if (type != PS_ETH_TYPE_IP || size < l3 + sizeof(struct ps_ip_hdr)) {
        return 0;
    }
    if (data[l3] >> 4 != 4 || (data[l3] & 0xf) < 5 || l3 + (data[l3] & 0xf) * 4u > size) {
        return 0;
    }
    return l3;
}

/* Fills 'h' for 'frame' and returns true, or returns false if the frame is not
 * IPv4 with a whole header (step 1).  L4 is rewritten only in a packet that is
 * not a later fragment, is TCP or UDP, and holds the whole TCP (20 bytes) or
 * UDP (8 bytes) header within the frame. */
static bool
nat_locate(struct ps_frame *frame, struct nat_hdrs *h)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    uint32_t l4;
    uint32_t l4_size;
    uint32_t csum_ofs;

    if (!l3) {
        return false;
    }
    h->ip = frame->data + l3;
    h->l4 = NULL;
    h->l4_csum = NULL;
    h->udp = false;
    h->partial = false;
    if (ps_be16_load(h->ip + IP_FRAG_OFS) & PS_IP_FRAG_OFF_MASK) {
        return true;
    }
    switch (h->ip[IP_PROTO_OFS]) {
    case PS_IPPROTO_TCP:
        l4_size = sizeof(struct ps_tcp_hdr);
        csum_ofs = TCP_CSUM_OFS;
        break;
    case PS_IPPROTO_UDP:
        l4_size = sizeof(struct ps_udp_hdr);
        csum_ofs = UDP_CSUM_OFS;
        h->udp = true;
        break;
    default:
        return true;             /* ICMP and the rest: no pseudo-header, no ports */
    }
    l4 = l3 + (h->ip[0] & 0xf) * 4u;
    if (l4 + l4_size > frame->size) {
        return true;
    }
    h->l4 = frame->data + l4;
    h->l4_csum = h->l4 + csum_ofs;
    h->partial = (frame->vnet.flags & PS_VNET_F_NEEDS_CSUM) && le16toh(frame->vnet.csum_start) == l4;
    return true;
}

/* Stores the full-mode L4 checksum 'check' of 'h', keeping UDP's 0 apart. */
static void
l4_csum_store(const struct nat_hdrs *h, uint16_t check)
{
    if (h->udp && check == 0) {
        check = UDP_CSUM_MANGLED_0;
    }
    ps_be16_store(h->l4_csum, check);
}

void
ps_ipv4_set_addr(struct ps_frame *frame, size_t field_ofs, const uint8_t *addr)
{
    struct nat_hdrs h;
    uint32_t old_addr;
    uint32_t new_addr;
    uint16_t check;

    if (!nat_locate(frame, &h)) {
        return;
    }
    old_addr = ps_be32_load(h.ip + field_ofs);
    new_addr = ps_be32_load(addr);
    memcpy(h.ip + field_ofs, addr, 4);
    ps_be16_store(h.ip + IP_CSUM_OFS, ps_csum_update32(ps_be16_load(h.ip + IP_CSUM_OFS), old_addr, new_addr));
    if (!h.l4) {
        return;
    }
    check = ps_be16_load(h.l4_csum);
    if (h.partial) {
        ps_be16_store(h.l4_csum, ~ps_csum_update32(~check, old_addr, new_addr));
    } else if (!(h.udp && check == 0)) {
        l4_csum_store(&h, ps_csum_update32(check, old_addr, new_addr));
    }
}

void
ps_l4_set_port(struct ps_frame *frame, size_t field_ofs, uint16_t port)
{
    struct nat_hdrs h;
    uint16_t old_port;
    uint16_t check;

    if (!nat_locate(frame, &h) || !h.l4) {
        return;
    }
    old_port = ps_be16_load(h.l4 + field_ofs);
    ps_be16_store(h.l4 + field_ofs, port);
    check = ps_be16_load(h.l4_csum);
    if (!h.partial && !(h.udp && check == 0)) {
        l4_csum_store(&h, ps_csum_update16(check, old_port, port));
    }
}
