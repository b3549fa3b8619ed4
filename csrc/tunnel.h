/* tunnel.h: IPIP and GRE encapsulation and decapsulation of a working frame
 * (tunnel.c; docs/DATAPATH.md "Tunnels").
 *
 * LB's ipip and gre modes encapsulate; PS_ACT_DECAP strips.  Both change the
 * frame at its front, as PUSH_VLAN/POP_VLAN do: the Ethernet header (with its
 * VLAN tags) moves and the IP packet behind it stays where it is.
 */
#ifndef PS_TUNNEL_H
#define PS_TUNNEL_H 1

#include <stdint.h>

#include "actions.h"
#include "ps_hdrs.h"

#define PS_IPPROTO_IPIP 4        /* IPv4 in IPv4 (RFC 2003) */
#define PS_IPPROTO_GRE 47        /* Generic Routing Encapsulation (RFC 2784, RFC 2890) */

/* The fixed part of a GRE header.  Optional 4-byte words follow it: the
 * checksum (C bit), the key (K bit), the sequence number (S bit). */
struct ps_gre_hdr {
    ps_be16 gre_flags;           /* C, R, K, S bits, recursion, flags, version (low 3 bits) */
    ps_be16 gre_proto;           /* EtherType of the payload */
} PS_PACKED;
_Static_assert(sizeof(struct ps_gre_hdr) == 4, "GRE header is 4 bytes");

#define PS_GRE_F_CSUM 0x8000     /* a checksum word follows */
#define PS_GRE_F_ROUTING 0x4000  /* RFC 1701 source routing: refused */
#define PS_GRE_F_KEY 0x2000      /* a key word follows */
#define PS_GRE_F_SEQ 0x1000      /* a sequence number word follows */
#define PS_GRE_VERSION_MASK 0x0007

#define PS_TUNNEL_TTL 64         /* TTL of an outer header */
#define PS_TUNNEL_MAX_HDR (sizeof(struct ps_ip_hdr) + sizeof(struct ps_gre_hdr))  /* bytes encap adds at most */

/* Inserts an outer IPv4 header from 'src' to 'dst' (4 bytes each) with
 * protocol 'proto' (PS_IPPROTO_IPIP, or PS_IPPROTO_GRE with a 4-byte GRE
 * header too) between the Ethernet header (with its VLAN tags) and the IPv4
 * packet of 'frame', growing it into its headroom, and moves the vnet offsets
 * behind it.  Returns 0, or -EINVAL (and changes nothing) if the frame is not
 * IPv4 (ps_ipv4_offset) or 'proto' is neither. */
int ps_tunnel_encap(struct ps_frame *frame, uint8_t proto, const uint8_t *src, const uint8_t *dst);

/* Removes the outer IPv4 header (and GRE header) of an IPIP or GRE-carrying-
 * IPv4 packet in 'frame' and moves the vnet offsets back.  Returns 0, or
 * -EINVAL (and changes nothing) for anything else: not IPv4, an outer
 * fragment, another protocol, a GRE header with routing, a version other
 * than 0, a payload other than IPv4, or any header truncated. */
int ps_tunnel_decap(struct ps_frame *frame);

#endif /* PS_TUNNEL_H */
