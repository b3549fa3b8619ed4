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
 *
 * The four functions and struct ps_gso are public (pyswitch.h), so that the
 * twin in pyswitch/refpath/offload.py is tested against them; their
 * contracts are in offload.c and docs/DATAPATH.md "Offloads".
 */
#ifndef PS_OFFLOAD_H
#define PS_OFFLOAD_H 1

#include "pyswitch.h"

#endif /* PS_OFFLOAD_H */
