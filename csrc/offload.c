/* offload.c: checksums and segmentation in software (see offload.h). */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "offload.h"
#include "ps_hdrs.h"

#define TCP_FLAG_FIN 0x001
#define TCP_FLAG_PSH 0x008
#define TCP_FLAG_CWR 0x080

#define IPOPT_END 0                    /* IPv4 option: end of the list */
#define IPOPT_NOP 1                    /* IPv4 option: one byte of padding */
#define IPOPT_LSRR 0x83                /* IPv4 option: loose source route (RFC 791) */
#define IPOPT_SSRR 0x89                /* IPv4 option: strict source route */
#define IP6_RT_SEGLEFT 3               /* IPv6 routing header: offset of "segments left" */

/* The 16 bits a sum folds to (not complemented): ps_csum() of nothing
 * returns the complement of its folded initial sum. */
static uint16_t
fold(uint32_t sum)
{
    return ~ps_csum(NULL, 0, sum) & 0xffff;
}

/* The one's complement sum of the pseudo-header of a TCP or UDP segment of
 * 'l4_size' bytes behind the IP header at 'l3' (RFC 9293 3.1, RFC 8200 8.1). */
static uint32_t
pseudo_sum(const uint8_t *l3, int ipv4, uint8_t proto, uint32_t l4_size)
{
    const uint8_t *addrs = ipv4 ? l3 + offsetof(struct ps_ip_hdr, ip_src) : l3 + offsetof(struct ps_ip6_hdr, ip6_src);
    uint32_t n_words = ipv4 ? 4 : 16;
    uint32_t sum = proto + (l4_size >> 16) + (l4_size & 0xffff);

    for (uint32_t i = 0; i < n_words; i++) {
        sum += ps_be16_load(addrs + 2 * i);
    }
    return sum;
}

/* Segments get their checksums from the IP header's addresses, but the
 * pseudo-header's destination is a source route's last address (senders use
 * the final destination: Linux, scapy), and with an IPv6 routing header that
 * has segments left, the routing header's last one (RFC 8200 8.1).  Such a
 * frame cannot be cut right; neither can one through an IPv6 AH, whose ICV
 * covers the whole packet, and the kernel's GSO takes neither an AH nor a
 * fragment header.  The parser has walked these headers before us. */

/* Whether the IPv4 options between 'l3' + 20 and 'l4' hold no source route
 * (LSRR, SSRR).  A malformed option ends the walk, as the end of the list
 * does. */
static bool
ipv4_options_supported(const uint8_t *data, uint32_t l3, uint32_t l4)
{
    uint32_t ofs = l3 + sizeof(struct ps_ip_hdr);

    while (ofs < l4 && data[ofs] != IPOPT_END) {
        if (data[ofs] == IPOPT_LSRR || data[ofs] == IPOPT_SSRR) {
            return false;
        }
        if (data[ofs] == IPOPT_NOP) {
            ofs++;
        } else if (ofs + 1 < l4 && data[ofs + 1] >= 2) {
            ofs += data[ofs + 1];
        } else {
            break;
        }
    }
    return true;
}

/* Whether the IPv6 extension headers between 'l3' + 40 and 'l4' are only
 * hop-by-hop, destination options and routing headers without segments
 * left. */
static bool
ipv6_headers_supported(const uint8_t *data, uint32_t l3, uint32_t l4)
{
    uint32_t ofs = l3 + sizeof(struct ps_ip6_hdr);
    uint8_t nxt = data[l3 + offsetof(struct ps_ip6_hdr, ip6_nxt)];

    while (ofs < l4) {
        if (nxt == PS_IPPROTO_AH || nxt == PS_IPPROTO_FRAGMENT
            || (nxt == PS_IPPROTO_ROUTING && data[ofs + IP6_RT_SEGLEFT] != 0)) {
            return false;
        }
        /* What is left is measured in 8-byte units. */
        nxt = data[ofs];
        ofs += (data[ofs + 1] + 1) * 8;
    }
    return true;
}

/* Offset of the checksum field in a TCP or UDP header. */
static uint16_t
l4_csum_offset(uint8_t proto)
{
    return proto == PS_IPPROTO_TCP ? offsetof(struct ps_tcp_hdr, tcp_csum) : offsetof(struct ps_udp_hdr, udp_csum);
}

/* Sets NEEDS_CSUM, csum_start and csum_offset in '*vnet' if the 'size'
 * bytes at 'data' are IPv4 (not a fragment) or IPv6 (without extension
 * headers) carrying TCP or UDP, behind at most two VLAN tags, ending where
 * the frame ends, whose checksum field equals the folded sum of its
 * pseudo-header.  That is what a partial checksum holds; a complete checksum
 * holds it by chance once in 65536 frames, and completing such a checksum
 * rewrites the same value, so marking it is harmless.  Not so with bytes
 * after the packet (Ethernet padding), which completion would sum too; a
 * stack's partial checksum is never padded, so such a frame is not marked.
 * Leaves '*vnet' alone for every other frame. */
void
ps_offload_rx_csum(const uint8_t *data, uint32_t size, struct ps_vnet_hdr *vnet)
{
    uint32_t l3, l4, l4_size;
    uint16_t type;
    uint8_t proto;
    int ipv4;

    /* A light walk of our own rather than ps_parse(): this runs on every
     * received frame, before the datapath parses it anyway. */
    if (size < sizeof(struct ps_eth_hdr)) {
        return;
    }
    l3 = sizeof(struct ps_eth_hdr);
    type = ps_be16_load(data + l3 - 2);
    for (int tags = 0; tags < 2 && ps_is_vlan_tpid(type) && l3 + sizeof(struct ps_vlan_hdr) <= size; tags++) {
        l3 += sizeof(struct ps_vlan_hdr);
        type = ps_be16_load(data + l3 - 2);
    }
    if (type == PS_ETH_TYPE_IP && l3 + sizeof(struct ps_ip_hdr) <= size) {
        const struct ps_ip_hdr *ip = (const void *) (data + l3);
        uint32_t ihl = (ip->ip_ihl_ver & 0x0f) * 4;
        uint32_t total = ps_be16_load(data + l3 + offsetof(struct ps_ip_hdr, ip_tot_len));
        uint16_t frag = ps_be16_load(data + l3 + offsetof(struct ps_ip_hdr, ip_frag_off));

        if (ip->ip_ihl_ver >> 4 != 4 || ihl < sizeof *ip || total < ihl || l3 + total != size
            || (frag & (PS_IP_MF | PS_IP_FRAG_OFF_MASK))) {
            return;
        }
        ipv4 = 1;
        proto = ip->ip_proto;
        l4 = l3 + ihl;
        l4_size = total - ihl;
    } else if (type == PS_ETH_TYPE_IPV6 && l3 + sizeof(struct ps_ip6_hdr) <= size) {
        const struct ps_ip6_hdr *ip6 = (const void *) (data + l3);
        uint32_t payload = ps_be16_load(data + l3 + offsetof(struct ps_ip6_hdr, ip6_plen));

        if (data[l3] >> 4 != 6 || l3 + sizeof *ip6 + payload != size) {
            return;
        }
        ipv4 = 0;
        proto = ip6->ip6_nxt;
        l4 = l3 + sizeof *ip6;
        l4_size = payload;
    } else {
        return;
    }
    if ((proto != PS_IPPROTO_TCP || l4_size < sizeof(struct ps_tcp_hdr))
        && (proto != PS_IPPROTO_UDP || l4_size < sizeof(struct ps_udp_hdr))) {
        return;
    }
    if (ps_be16_load(data + l4 + l4_csum_offset(proto)) == fold(pseudo_sum(data + l3, ipv4, proto, l4_size))) {
        vnet->flags |= PS_VNET_F_NEEDS_CSUM;
        vnet->csum_start = l4;
        vnet->csum_offset = l4_csum_offset(proto);
    }
}

/* Completes the partial checksum 'vnet' describes in the 'size' bytes at
 * 'data': the one's complement sum from csum_start to the end, whose field
 * at csum_start + csum_offset holds the pseudo-header's sum, is stored there
 * (0 as 0xffff, which means the same and is never "no checksum" for UDP).
 * Returns 0, or -EINVAL if the field lies outside the frame. */
int
ps_offload_csum(uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet)
{
    uint32_t start = vnet->csum_start, field = start + vnet->csum_offset;
    uint16_t check;

    if (field + 2 > size) {
        return -EINVAL;
    }
    check = ps_csum(data + start, size - start, 0);
    ps_be16_store(data + field, check ? check : 0xffff);
    return 0;
}

/* Plans the segmentation of the 'size'-byte GSO frame at 'data' as 'vnet'
 * describes it: TCPv4, TCPv6 or UDP_L4 (one datagram per segment).  Returns
 * 0; -EOPNOTSUPP for other GSO types (UFO) and for headers whose segments
 * it cannot make right (an IPv4 source route, an IPv6 AH, fragment header or
 * routing header with segments left: see above); -EINVAL for a frame that
 * is not what its vnet header says or whose segments would be too long for
 * their IP length field.  The payload is everything after the TCP or UDP header:
 * the frame's size, not its IP length, says how much there is, as the
 * socket buffer's length does for the kernel's GSO. */
int
ps_gso_plan(const uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet, struct ps_gso *gso)
{
    uint8_t type = vnet->gso_type & PS_VNET_GSO_TYPE_MASK;
    struct ps_flow_key key;
    struct ps_parse_result result;
    uint16_t eth_type;
    uint32_t l4_hdr_size, largest;

    if (type != PS_VNET_GSO_TCPV4 && type != PS_VNET_GSO_TCPV6 && type != PS_VNET_GSO_UDP_L4) {
        return -EOPNOTSUPP;
    }
    if (ps_parse(data, size, 0, 0, 1, &key, &result) != PS_PE_OK || !result.l4_ofs || key.nw_frag
        || !vnet->gso_size) {
        return -EINVAL;
    }
    eth_type = ps_be16_load(key.eth_type);
    gso->ipv4 = eth_type == PS_ETH_TYPE_IP;
    gso->proto = key.nw_proto;
    if ((type == PS_VNET_GSO_TCPV4 && (!gso->ipv4 || gso->proto != PS_IPPROTO_TCP))
        || (type == PS_VNET_GSO_TCPV6 && (eth_type != PS_ETH_TYPE_IPV6 || gso->proto != PS_IPPROTO_TCP))
        || (type == PS_VNET_GSO_UDP_L4 && gso->proto != PS_IPPROTO_UDP)
        || (!gso->ipv4 && eth_type != PS_ETH_TYPE_IPV6)) {
        return -EINVAL;
    }
    /* The parser has checked that the whole TCP header lies in the frame. */
    l4_hdr_size = gso->proto == PS_IPPROTO_TCP ? (data[result.l4_ofs + 12] >> 4) * 4 : sizeof(struct ps_udp_hdr);
    gso->l3_ofs = result.l3_ofs;
    gso->l4_ofs = result.l4_ofs;
    gso->hdr_size = result.l4_ofs + l4_hdr_size;
    if (gso->hdr_size > size) {
        return -EINVAL;
    }
    if (!(gso->ipv4 ? ipv4_options_supported(data, gso->l3_ofs, gso->l4_ofs)
                    : ipv6_headers_supported(data, gso->l3_ofs, gso->l4_ofs))) {
        return -EOPNOTSUPP;
    }
    gso->seg_payload = vnet->gso_size;
    gso->payload = size - gso->hdr_size;
    gso->n_segs = gso->payload ? (gso->payload + gso->seg_payload - 1) / gso->seg_payload : 1;
    /* The IP length field of the largest segment must be able to say how
     * long it is (its UDP length is then shorter). */
    largest = gso->hdr_size - gso->l3_ofs + (gso->payload < gso->seg_payload ? gso->payload : gso->seg_payload);
    if (largest - (gso->ipv4 ? 0 : sizeof(struct ps_ip6_hdr)) > UINT16_MAX) {
        return -EINVAL;
    }
    return 0;
}

/* Writes segment 'index' (< gso->n_segs) of the frame at 'data' into 'out',
 * which has room for gso->hdr_size + gso->seg_payload bytes: the headers with
 * their lengths, IPv4 id (+ index), TCP sequence number and flags (FIN and
 * PSH on the last segment only, CWR on the first only) and checksums made
 * right for it, then its payload.  Returns its size. */
uint32_t
ps_gso_segment(const uint8_t *data, const struct ps_gso *gso, uint32_t index, uint8_t *out)
{
    uint32_t offset = index * gso->seg_payload;
    uint32_t len = gso->payload - offset < gso->seg_payload ? gso->payload - offset : gso->seg_payload;
    uint32_t l4_size = gso->hdr_size - gso->l4_ofs + len;
    uint8_t *l3 = out + gso->l3_ofs, *l4 = out + gso->l4_ofs;
    uint16_t check;

    memcpy(out, data, gso->hdr_size);
    memcpy(out + gso->hdr_size, data + gso->hdr_size + offset, len);
    if (gso->ipv4) {
        struct ps_ip_hdr *ip = (void *) l3;
        uint32_t ihl = (ip->ip_ihl_ver & 0x0f) * 4;

        ps_be16_store(l3 + offsetof(struct ps_ip_hdr, ip_tot_len), gso->l4_ofs - gso->l3_ofs + l4_size);
        ps_be16_store(l3 + offsetof(struct ps_ip_hdr, ip_id),
                      ps_be16_load(l3 + offsetof(struct ps_ip_hdr, ip_id)) + index);
        ps_be16_store(l3 + offsetof(struct ps_ip_hdr, ip_csum), 0);
        ps_be16_store(l3 + offsetof(struct ps_ip_hdr, ip_csum), ps_csum(l3, ihl, 0));
    } else {
        ps_be16_store(l3 + offsetof(struct ps_ip6_hdr, ip6_plen),
                      gso->l4_ofs - gso->l3_ofs - sizeof(struct ps_ip6_hdr) + l4_size);
    }
    if (gso->proto == PS_IPPROTO_TCP) {
        uint8_t *seq = l4 + offsetof(struct ps_tcp_hdr, tcp_seq);
        uint32_t next = ps_be32_load(seq) + offset;
        uint16_t ctl = ps_be16_load(l4 + offsetof(struct ps_tcp_hdr, tcp_ctl));

        seq[0] = next >> 24;
        seq[1] = next >> 16;
        seq[2] = next >> 8;
        seq[3] = next;
        if (index + 1 < gso->n_segs) {
            ctl &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
        }
        if (index > 0) {
            ctl &= ~TCP_FLAG_CWR;
        }
        ps_be16_store(l4 + offsetof(struct ps_tcp_hdr, tcp_ctl), ctl);
    } else {
        ps_be16_store(l4 + offsetof(struct ps_udp_hdr, udp_len), l4_size);
    }
    ps_be16_store(l4 + l4_csum_offset(gso->proto), 0);
    check = ps_csum(l4, l4_size, pseudo_sum(l3, gso->ipv4, gso->proto, l4_size));
    ps_be16_store(l4 + l4_csum_offset(gso->proto), check ? check : 0xffff);
    return gso->hdr_size + len;
}
