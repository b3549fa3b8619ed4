/* nat.h: the NAT rewrites SET_IPV4_SRC/DST and SET_TP_SRC/DST (nat.c), and
 * the IPv4 header finder they share with ROUTE.
 *
 * Each function rewrites one header field of a working frame and updates
 * every checksum that covers it incrementally; a frame without the header
 * (docs/DATAPATH.md, "NAT rewrites", step 1) is left alone.
 */
#ifndef PS_NAT_H
#define PS_NAT_H 1

#include <stddef.h>
#include <stdint.h>

#include "actions.h"
#include "ps_hdrs.h"

/* Offsets of the rewritable fields in their headers. */
#define PS_NAT_IPV4_SRC offsetof(struct ps_ip_hdr, ip_src)
#define PS_NAT_IPV4_DST offsetof(struct ps_ip_hdr, ip_dst)
#define PS_NAT_TP_SRC offsetof(struct ps_udp_hdr, udp_src)   /* the same in TCP */
#define PS_NAT_TP_DST offsetof(struct ps_udp_hdr, udp_dst)   /* the same in TCP */

/* Returns the offset of the IPv4 header in the 'size' bytes at 'data', behind
 * at most two VLAN tags, or 0 if the frame is not IPv4 with a whole header
 * (version 4, IHL >= 5, IHL*4 bytes within 'size').  ROUTE's step 1 too. */
uint32_t ps_ipv4_offset(const uint8_t *data, uint32_t size);

/* Writes the 4 bytes at 'addr' into the IPv4 address at 'field_ofs'
 * (PS_NAT_IPV4_SRC or _DST) of 'frame' and updates the IPv4 header checksum
 * and, when the frame has a rewritable TCP/UDP header, its checksum, whose
 * pseudo-header holds the address. */
void ps_ipv4_set_addr(struct ps_frame *frame, size_t field_ofs, const uint8_t *addr);

/* Writes 'port' into the TCP/UDP port at 'field_ofs' (PS_NAT_TP_SRC or _DST)
 * of 'frame', if it has a rewritable TCP/UDP header, and updates its checksum
 * unless the kernel will compute it (partial mode). */
void ps_l4_set_port(struct ps_frame *frame, size_t field_ofs, uint16_t port);

#endif /* PS_NAT_H */
