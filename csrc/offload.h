/* offload.h: in software, what a virtio_net_hdr would ask of the kernel, for
 * ports whose frames carry none (AF_XDP, xdp.c).
 *
 * Receive.  A frame that a local stack sent with a partial checksum
 * (CHECKSUM_PARTIAL: the TCP or UDP checksum field holds only the sum of the
 * pseudo-header, and the "hardware" is to finish it) reaches an XDP program
 * as it was.  ps_offload_rx_csum() recognises such a frame and describes it
 * with NEEDS_CSUM, as PACKET_VNET_HDR would have, so that the datapath treats
 * it exactly as it treats one from an AF_PACKET port.
 *
 * Transmit.  ps_offload_csum() completes a NEEDS_CSUM checksum, and ps_gso_*()
 * cut a TCP or UDP GSO super-frame into segments with complete checksums, the
 * way the kernel's GSO does.
 */
#ifndef PS_OFFLOAD_H
#define PS_OFFLOAD_H 1

#include <stdint.h>

#include "actions.h"
#include "pyswitch.h"

/* Sets NEEDS_CSUM, csum_start and csum_offset in frame->vnet if 'frame' is
 * IPv4 (not a fragment) or IPv6 (without extension headers) carrying TCP or
 * UDP, behind at most two VLAN tags, whose checksum field equals the folded
 * sum of its pseudo-header.  That is what a partial checksum holds; a
 * complete checksum holds it by chance once in 65536 frames, and completing
 * such a checksum rewrites the same value, so marking it is harmless.  Leaves
 * every other frame alone. */
void ps_offload_rx_csum(struct ps_frame *frame);

/* Completes the partial checksum 'vnet' describes in the 'size' bytes at
 * 'data': the one's complement sum from csum_start to the end, whose field
 * at csum_start + csum_offset holds the pseudo-header's sum, is stored there
 * (0 as 0xffff, which means the same and is never "no checksum" for UDP).
 * Returns 0, or -EINVAL if the field lies outside the frame. */
int ps_offload_csum(uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet);

/* How a GSO super-frame is cut into segments. */
struct ps_gso {
    uint16_t l3_ofs;               /* the IP header */
    uint16_t l4_ofs;               /* the TCP or UDP header */
    uint16_t hdr_size;             /* every header up to the payload, copied into each segment */
    uint16_t seg_payload;          /* payload bytes per segment but the last (the vnet's gso_size) */
    uint32_t payload;              /* payload bytes in all */
    uint32_t n_segs;               /* segments: at least one */
    uint8_t ipv4;                  /* 1: IPv4, 0: IPv6 */
    uint8_t proto;                 /* PS_IPPROTO_TCP or PS_IPPROTO_UDP */
};

/* Plans the segmentation of the 'size'-byte GSO frame at 'data' as 'vnet'
 * describes it: TCPv4, TCPv6 or UDP_L4 (one datagram per segment).  Returns
 * 0, -EOPNOTSUPP for other GSO types (UFO), -EINVAL for a frame that is not
 * what its vnet header says. */
int ps_gso_plan(const uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet, struct ps_gso *gso);

/* Writes segment 'index' (< gso->n_segs) of the frame at 'data' into 'out',
 * which has room for gso->hdr_size + gso->seg_payload bytes: the headers with
 * their lengths, IPv4 id (+ index), TCP sequence number and flags (FIN and
 * PSH on the last segment only, CWR on the first only) and checksums made
 * right for it, then its payload.  Returns its size. */
uint32_t ps_gso_segment(const uint8_t *data, const struct ps_gso *gso, uint32_t index, uint8_t *out);

#endif /* PS_OFFLOAD_H */
