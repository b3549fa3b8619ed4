/* tunnel.c: IPIP and GRE encapsulation and decapsulation (docs/DATAPATH.md "Tunnels").
 *
 * A tunnel header goes between the Ethernet header (and its VLAN tags) and
 * the IP packet.  Both directions move only the bytes in front of the IP
 * packet, which are few, and leave the packet itself where it lies: encap
 * grows the frame into its headroom, decap shrinks it from the front.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "actions.h"
#include "nat.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "tunnel.h"

#define IP_DF 0x4000                /* ip_frag_off: don't fragment */
#define IP_VERSION_IHL5 0x45        /* version 4, a 20-byte header */

/* One LB encap per list can be alive at a time (a second LB sees the outer
 * protocol and misses), on a frame that has at most two tags (ps_ipv4_offset)
 * and whose route then leaves at most one: the headroom PUSH_VLAN needs
 * covers it with room to spare, and this keeps it so. */
_Static_assert(PS_HEADROOM >= 4 * (PS_MAX_ACTIONS + 1) + PS_TUNNEL_MAX_HDR,
               "headroom must hold 17 VLAN tags and one tunnel header");

/* Writes the outer IPv4 header at 'ip' for the IPv4 packet 'inner' carried
 * in 'payload_size' more bytes: TOS and DF from the inner header, id 0, TTL
 * PS_TUNNEL_TTL, the checksum computed. */
static void
outer_ip_write(uint8_t *ip, const uint8_t *inner, uint32_t payload_size, uint8_t proto, const uint8_t *src,
               const uint8_t *dst)
{
    struct ps_ip_hdr *h = (struct ps_ip_hdr *) ip;
    uint16_t inner_len = ps_be16_load(inner + offsetof(struct ps_ip_hdr, ip_tot_len));
    uint16_t inner_frag = ps_be16_load(inner + offsetof(struct ps_ip_hdr, ip_frag_off));

    memset(h, 0, sizeof *h);
    h->ip_ihl_ver = IP_VERSION_IHL5;
    h->ip_tos = inner[offsetof(struct ps_ip_hdr, ip_tos)];
    /* The inner total length, not the frame's size: Ethernet padding after
     * the inner packet stays padding after the outer one. */
    ps_be16_store(ip + offsetof(struct ps_ip_hdr, ip_tot_len), (uint16_t) (inner_len + payload_size));
    ps_be16_store(ip + offsetof(struct ps_ip_hdr, ip_frag_off), inner_frag & IP_DF);
    h->ip_ttl = PS_TUNNEL_TTL;
    h->ip_proto = proto;
    memcpy(h->ip_src, src, 4);
    memcpy(h->ip_dst, dst, 4);
    ps_be16_store(ip + offsetof(struct ps_ip_hdr, ip_csum), ps_csum(ip, sizeof *h, 0));
}

int
ps_tunnel_encap(struct ps_frame *frame, uint8_t proto, const uint8_t *src, const uint8_t *dst)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    uint32_t added = sizeof(struct ps_ip_hdr);
    uint8_t *data;

    if (!l3 || (proto != PS_IPPROTO_IPIP && proto != PS_IPPROTO_GRE)) {
        return -EINVAL;
    }
    if (proto == PS_IPPROTO_GRE) {
        added += sizeof(struct ps_gre_hdr);
    }
    data = frame->data - added;
    memmove(data, frame->data, l3);
    outer_ip_write(data + l3, frame->data + l3, added, proto, src, dst);
    if (proto == PS_IPPROTO_GRE) {
        uint8_t *gre = data + l3 + sizeof(struct ps_ip_hdr);

        ps_be16_store(gre, 0);
        ps_be16_store(gre + 2, PS_ETH_TYPE_IP);
    }
    frame->data = data;
    frame->size += added;
    ps_vnet_shift(&frame->vnet, added);
    return 0;
}

/* Returns the bytes of the GRE header at 'gre' with 'avail' bytes behind it,
 * or 0 if DECAP refuses it: routing present, version not 0, a payload other
 * than IPv4, or the header (with its optional words) cut short. */
static uint32_t
gre_hdr_size(const uint8_t *gre, uint32_t avail)
{
    uint16_t flags;
    uint32_t size = sizeof(struct ps_gre_hdr);

    if (avail < size) {
        return 0;
    }
    flags = ps_be16_load(gre);
    if ((flags & PS_GRE_F_ROUTING) || (flags & PS_GRE_VERSION_MASK) || ps_be16_load(gre + 2) != PS_ETH_TYPE_IP) {
        return 0;
    }
    size += (flags & PS_GRE_F_CSUM) ? 4 : 0;     /* checksum and reserved1 */
    size += (flags & PS_GRE_F_KEY) ? 4 : 0;
    size += (flags & PS_GRE_F_SEQ) ? 4 : 0;
    return size <= avail ? size : 0;
}

/* True if the 'avail' bytes at 'ip' start with a whole IPv4 header: what the
 * tunnel promised to carry. */
static bool
is_whole_ipv4(const uint8_t *ip, uint32_t avail)
{
    return avail >= sizeof(struct ps_ip_hdr) && ip[0] >> 4 == 4 && (ip[0] & 0xf) >= 5 && (ip[0] & 0xf) * 4u <= avail;
}

int
ps_tunnel_decap(struct ps_frame *frame)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    const uint8_t *ip;
    uint32_t removed;

    if (!l3) {
        return -EINVAL;
    }
    ip = frame->data + l3;
    if (ps_be16_load(ip + offsetof(struct ps_ip_hdr, ip_frag_off)) & (PS_IP_MF | PS_IP_FRAG_OFF_MASK)) {
        return -EINVAL;
    }
    removed = (ip[0] & 0xf) * 4u;
    if (ip[offsetof(struct ps_ip_hdr, ip_proto)] == PS_IPPROTO_GRE) {
        uint32_t gre_size = gre_hdr_size(ip + removed, frame->size - l3 - removed);

        if (!gre_size) {
            return -EINVAL;
        }
        removed += gre_size;
    } else if (ip[offsetof(struct ps_ip_hdr, ip_proto)] != PS_IPPROTO_IPIP) {
        return -EINVAL;
    }
    if (!is_whole_ipv4(ip + removed, frame->size - l3 - removed)) {
        return -EINVAL;
    }
    memmove(frame->data + removed, frame->data, l3);
    frame->data += removed;
    frame->size -= removed;
    ps_vnet_shift(&frame->vnet, -(int) removed);
    return 0;
}
