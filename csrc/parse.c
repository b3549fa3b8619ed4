/* parse.c: extract a flow key from an Ethernet frame (docs/DATAPATH.md, "Parsing").
 *
 * Each header is checked completely before any of its fields is written to
 * the key, so that on an error the key holds exactly the fields of the
 * headers before the bad one; the Python twin relies on the same order.
 */
#include <arpa/inet.h>
#include <string.h>

#include "pyswitch.h"
#include "ps_consts.h"
#include "ps_hdrs.h"

/* Parses the L4 header at 'l4' with 'region' bytes left in the L3 payload.
 * 'l4_allowed_icmp' is the ICMP protocol number valid for this IP version.
 * Returns a PS_PE_* code and sets result->l4_ofs on success for TCP, UDP and
 * ICMP; other protocols are OK with l4_ofs 0 (the result's "0 if none"). */
static uint16_t
parse_l4(const uint8_t *frame, uint32_t l4, uint32_t region, int is_gso, uint8_t icmp_proto,
         struct ps_flow_key *key, struct ps_parse_result *result)
{
    uint8_t proto = key->nw_proto;

    if (proto == PS_IPPROTO_TCP) {
        const struct ps_tcp_hdr *tcp = (const void *) (frame + l4);
        uint16_t ctl;
        uint32_t doff;

        if (region < sizeof *tcp) {
            return PS_PE_L4_TRUNC;
        }
        ctl = ntohs(tcp->tcp_ctl);
        doff = ctl >> 12;
        if (doff < 5 || doff * 4 > region) {
            return PS_PE_L4_TRUNC;
        }
        memcpy(key->tp_src, &tcp->tcp_src, 2);
        memcpy(key->tp_dst, &tcp->tcp_dst, 2);
        ps_be16_store(key->tcp_flags, ctl & PS_TCP_FLAGS_MASK);
    } else if (proto == PS_IPPROTO_UDP) {
        const struct ps_udp_hdr *udp = (const void *) (frame + l4);

        if (region < sizeof *udp) {
            return PS_PE_L4_TRUNC;
        }
        /* A GSO super-frame's UDP length describes one segment, not the
         * whole payload, so it is only checked on ordinary frames. */
        if (!is_gso) {
            uint16_t udp_len = ntohs(udp->udp_len);

            if (udp_len < sizeof *udp || udp_len > region) {
                return PS_PE_L4_TRUNC;
            }
        }
        memcpy(key->tp_src, &udp->udp_src, 2);
        memcpy(key->tp_dst, &udp->udp_dst, 2);
    } else if (proto == icmp_proto) {
        const struct ps_icmp_hdr *icmp = (const void *) (frame + l4);

        if (region < sizeof *icmp) {
            return PS_PE_L4_TRUNC;
        }
        ps_be16_store(key->tp_src, icmp->icmp_type);
        ps_be16_store(key->tp_dst, icmp->icmp_code);
    } else {
        return PS_PE_OK;
    }
    result->l4_ofs = l4;
    return PS_PE_OK;
}

static uint16_t
parse_arp(const uint8_t *frame, uint32_t size, uint32_t l3, struct ps_flow_key *key,
          struct ps_parse_result *result)
{
    const struct ps_arp_hdr *arp = (const void *) (frame + l3);
    uint16_t op;

    if (size - l3 < sizeof *arp || ntohs(arp->ar_hrd) != 1 || ntohs(arp->ar_pro) != PS_ETH_TYPE_IP
        || arp->ar_hln != PS_ETH_ADDR_LEN || arp->ar_pln != 4) {
        return PS_PE_ARP;
    }
    op = ntohs(arp->ar_op);
    key->nw_proto = op < 256 ? op : 0;
    memcpy(key->nw_src, arp->ar_spa, 4);
    memcpy(key->nw_dst, arp->ar_tpa, 4);
    result->l3_ofs = l3;
    return PS_PE_OK;
}

static uint16_t
parse_ipv4(const uint8_t *frame, uint32_t size, uint32_t l3, int is_gso, struct ps_flow_key *key,
           struct ps_parse_result *result)
{
    const struct ps_ip_hdr *ip = (const void *) (frame + l3);
    uint32_t avail = size - l3;
    uint32_t ihl_bytes, tot_len;
    uint16_t frag_off;

    if (avail < sizeof *ip) {
        return PS_PE_IP_TRUNC;
    }
    if (ip->ip_ihl_ver >> 4 != 4) {
        return PS_PE_IP_VERSION;
    }
    ihl_bytes = (ip->ip_ihl_ver & 0x0f) * 4;
    if (ihl_bytes < sizeof *ip || ihl_bytes > avail) {
        return PS_PE_IP_IHL;
    }
    tot_len = ntohs(ip->ip_tot_len);
    if (tot_len < ihl_bytes || tot_len > avail) {
        return PS_PE_IP_LEN;
    }

    key->nw_tos = ip->ip_tos;
    key->nw_ttl = ip->ip_ttl;
    key->nw_proto = ip->ip_proto;
    memcpy(key->nw_src, ip->ip_src, 4);
    memcpy(key->nw_dst, ip->ip_dst, 4);
    frag_off = ntohs(ip->ip_frag_off);
    if (frag_off & (PS_IP_MF | PS_IP_FRAG_OFF_MASK)) {
        key->nw_frag = PS_FRAG_ANY;
        if (frag_off & PS_IP_FRAG_OFF_MASK) {
            key->nw_frag |= PS_FRAG_LATER;
        }
    }
    result->l3_ofs = l3;

    if (key->nw_frag & PS_FRAG_LATER) {
        return PS_PE_OK;
    }
    /* The L4 region ends at the IP total length: Ethernet padding after it
     * is not payload. */
    return parse_l4(frame, l3 + ihl_bytes, tot_len - ihl_bytes, is_gso, PS_IPPROTO_ICMP, key, result);
}

static uint16_t
parse_ipv6(const uint8_t *frame, uint32_t size, uint32_t l3, int is_gso, struct ps_flow_key *key,
           struct ps_parse_result *result)
{
    const struct ps_ip6_hdr *ip6 = (const void *) (frame + l3);
    uint32_t avail = size - l3;
    uint32_t vtc_flow, ofs, end;
    uint8_t nxt;
    int n_ext;

    if (avail < sizeof *ip6) {
        return PS_PE_IP_TRUNC;
    }
    vtc_flow = ntohl(ip6->ip6_vtc_flow);
    if (vtc_flow >> 28 != 6) {
        return PS_PE_IP_VERSION;
    }
    if (sizeof *ip6 + ntohs(ip6->ip6_plen) > avail) {
        return PS_PE_IP_LEN;
    }

    key->nw_tos = (vtc_flow >> 20) & 0xff;
    key->nw_ttl = ip6->ip6_hlim;
    memcpy(key->nw_src, ip6->ip6_src, 16);
    memcpy(key->nw_dst, ip6->ip6_dst, 16);
    result->l3_ofs = l3;

    /* Walk the extension headers inside [l3 + 40, l3 + 40 + payload length).
     * The walk follows the next-header chain even past a non-first fragment
     * header, as the contract lists no exception (the simplest reading). */
    ofs = l3 + sizeof *ip6;
    end = ofs + ntohs(ip6->ip6_plen);
    nxt = ip6->ip6_nxt;
    for (n_ext = 0;; n_ext++) {
        uint32_t hdr_size;

        if (nxt != PS_IPPROTO_HOPOPTS && nxt != PS_IPPROTO_ROUTING && nxt != PS_IPPROTO_DSTOPTS
            && nxt != PS_IPPROTO_AH && nxt != PS_IPPROTO_FRAGMENT) {
            break;
        }
        if (n_ext == PS_IP6_MAX_EXT_HDRS) {
            return PS_PE_IP6_EXT;
        }
        /* The length byte itself must be inside the region before it can be
         * read; the fragment header has a fixed size of 8. */
        if (nxt == PS_IPPROTO_FRAGMENT) {
            hdr_size = sizeof(struct ps_ip6_frag_hdr);
        } else if (end - ofs < sizeof(struct ps_ip6_ext_hdr)) {
            return PS_PE_IP6_EXT;
        } else if (nxt == PS_IPPROTO_AH) {
            hdr_size = (frame[ofs + 1] + 2) * 4;
        } else {
            hdr_size = (frame[ofs + 1] + 1) * 8;
        }
        if (hdr_size > end - ofs) {
            return PS_PE_IP6_EXT;
        }
        if (nxt == PS_IPPROTO_FRAGMENT) {
            const struct ps_ip6_frag_hdr *frag = (const void *) (frame + ofs);
            uint16_t offlg = ntohs(frag->ip6f_offlg);

            if ((offlg >> 3) != 0 || (offlg & 1)) {
                key->nw_frag = PS_FRAG_ANY;
                if (offlg >> 3) {
                    key->nw_frag |= PS_FRAG_LATER;
                }
            }
        }
        nxt = frame[ofs];
        ofs += hdr_size;
    }
    key->nw_proto = nxt;

    if (key->nw_frag & PS_FRAG_LATER) {
        return PS_PE_OK;
    }
    return parse_l4(frame, ofs, end - ofs, is_gso, PS_IPPROTO_ICMPV6, key, result);
}

/* Parses the 'size' bytes at 'frame', received on 'in_port', into '*key'
 * and '*result', and returns result->error (a PS_PE_* code).  'max_frame'
 * (0: no limit) bounds frames that are not GSO super-frames ('is_gso' false).
 * The key starts all zero; see docs/DATAPATH.md for which fields an error
 * leaves filled. */
uint16_t
ps_parse(const uint8_t *frame, uint32_t size, uint16_t in_port, uint32_t max_frame, int is_gso,
         struct ps_flow_key *key, struct ps_parse_result *result)
{
    const struct ps_eth_hdr *eth = (const void *) frame;
    uint32_t type_ofs = offsetof(struct ps_eth_hdr, eth_type);
    uint16_t type, error;
    int n_tags;

    memset(key, 0, sizeof *key);
    memset(result, 0, sizeof *result);
    ps_be16_store(key->in_port, in_port);

    if (max_frame > 0 && !is_gso && size > max_frame) {
        error = PS_PE_OVERSIZE;
        goto out;
    }
    if (size < sizeof *eth) {
        error = PS_PE_RUNT;
        goto out;
    }
    memcpy(key->eth_dst, eth->eth_dst, PS_ETH_ADDR_LEN);
    memcpy(key->eth_src, eth->eth_src, PS_ETH_ADDR_LEN);

    type = ntohs(eth->eth_type);
    for (n_tags = 0; ps_is_vlan_tpid(type); n_tags++) {
        /* The tag (TPID at type_ofs, TCI after it) and the next type must
         * fit: 18 bytes for one tag.  The size check comes before the
         * third-tag check, in the contract's order. */
        if (size < type_ofs + sizeof(struct ps_vlan_hdr) + 2) {
            error = PS_PE_RUNT;
            goto out;
        }
        if (n_tags == 2) {
            error = PS_PE_VLAN;
            goto out;
        }
        if (n_tags == 0) {
            uint16_t tci = (frame[type_ofs + 2] << 8) | frame[type_ofs + 3];

            /* The DEI bit is dropped and its place marks "tag present". */
            ps_be16_store(key->vlan_tci, tci | PS_VLAN_PRESENT);
        }
        type_ofs += sizeof(struct ps_vlan_hdr);
        type = (frame[type_ofs] << 8) | frame[type_ofs + 1];
    }
    if (type < PS_ETH_TYPE_MIN) {
        ps_be16_store(key->eth_type, PS_ETH_TYPE_NONE);
        error = PS_PE_OK;
        goto out;
    }
    ps_be16_store(key->eth_type, type);

    switch (type) {
    case PS_ETH_TYPE_ARP:
        error = parse_arp(frame, size, type_ofs + 2, key, result);
        break;
    case PS_ETH_TYPE_IP:
        error = parse_ipv4(frame, size, type_ofs + 2, is_gso, key, result);
        break;
    case PS_ETH_TYPE_IPV6:
        error = parse_ipv6(frame, size, type_ofs + 2, is_gso, key, result);
        break;
    default:
        error = PS_PE_OK;
        break;
    }
out:
    result->error = error;
    return error;
}
