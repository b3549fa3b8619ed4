/* xdp.h: AF_XDP ports (PS_PORT_AFXDP), the per-kind functions io.c
 * dispatches to.
 *
 * A port is one AF_XDP socket per receive queue of an existing interface,
 * each with its own UMEM (the memory frames live in, shared with the kernel)
 * and its four rings, and the XDP program of xdp_prog.c that redirects every
 * frame the interface receives to the socket of its queue.
 *
 * Receive hands the datapath frames in place in the UMEM, as the AF_PACKET
 * ring does; ps_xdp_rx_release() gives their chunks back to the fill ring
 * after the batch's transmit flush.  Transmit copies each queued output into
 * a free chunk, posts it on the TX ring and kicks the kernel with sendto().
 * Frames carry no virtio_net_hdr either way; offload.c does in software what
 * one would have said (see ps_xdp_tx()).
 */
#ifndef PS_XDP_H
#define PS_XDP_H 1

#include <stdbool.h>
#include <stdint.h>

#include "actions.h"

struct ps_port;

/* Opens 'port' on interface 'ifindex': sockets bound to each of its receive
 * queues with UMEMs of 'ring_frames' receive chunks each (0: the default),
 * and the XDP program attached, natively if the driver can, else in generic
 * mode.  Sets port->fd to what ps_dp_poll() should wait on.  Returns 0 or a
 * negative errno (-EMSGSIZE: port->max_frame does not fit a chunk; -EBUSY:
 * the interface has another XDP program); on failure nothing stays open and
 * no program stays attached. */
int ps_xdp_open(struct ps_port *port, int ifindex, uint32_t ring_frames);

/* Detaches the program and closes the sockets and their memory. */
void ps_xdp_close(struct ps_port *port);

/* Stores up to 'max' received frames in 'frames' (in place in the UMEM, with
 * PS_HEADROOM bytes in front) and returns how many. */
uint32_t ps_xdp_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max);

/* Gives the chunks of the frames ps_xdp_rx() handed out back to the kernel. */
void ps_xdp_rx_release(struct ps_port *port);

/* Returns true if a receive ring holds frames, without a system call. */
bool ps_xdp_rx_ready(const struct ps_port *port);

/* Sends the port's queued outputs and returns how many were handed over.
 * An output with a partial checksum (NEEDS_CSUM) leaves with the checksum
 * completed; a GSO super-frame leaves cut into segments; either that cannot
 * be done, and an output with no free chunk or one larger than a chunk, is
 * dropped and counted in tx_dropped. */
uint32_t ps_xdp_tx(struct ps_port *port);

/* Refreshes rx_dropped from the kernel's XDP_STATISTICS. */
void ps_xdp_update_stats(struct ps_port *port);

/* How the XDP program is attached: PS_XDP_MODE_NATIVE or _GENERIC. */
int ps_xdp_mode(const struct ps_port *port);

#endif /* PS_XDP_H */
