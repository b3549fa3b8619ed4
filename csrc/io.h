/* io.h: port I/O for the datapath: AF_PACKET rings, AF_XDP sockets (xdp.c), TAP fds, memory queues.
 *
 * A port hands out received frames in batches, in place (a ring frame, a
 * UMEM chunk, a per-port buffer, a queued copy), each with PS_HEADROOM bytes in front for
 * VLAN pushes.  They stay valid until ps_port_rx_release(), which the
 * datapath calls only after the batch's transmit flush, so outputs can point
 * at them instead of copying.
 */
#ifndef PS_IO_H
#define PS_IO_H 1

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "actions.h"
#include "pyswitch.h"

/* Microseconds on CLOCK_MONOTONIC: the serve loops' and the ring-hole guard's clock. */
static inline int64_t
ps_monotonic_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One queued output. */
struct ps_tx_entry {
    const uint8_t *data;           /* the frame: borrowed, or 'copy' */
    uint32_t size;                 /* bytes at 'data' */
    struct ps_vnet_hdr vnet;       /* its virtio_net_hdr */
    uint8_t *copy;                 /* malloc'd bytes to free after sending, or NULL */
};

/* A frame in a memory port's queue, with headroom in front. */
struct ps_mem_frame {
    uint32_t size;                 /* frame bytes at bytes + PS_HEADROOM */
    struct ps_vnet_hdr vnet;       /* its virtio_net_hdr */
    uint8_t bytes[];               /* PS_HEADROOM bytes, then the frame */
};

/* A bounded FIFO of memory frames. */
struct ps_mem_queue {
    struct ps_mem_frame **frames;  /* PS_MEM_QUEUE_LEN slots */
    uint32_t head;                 /* index of the oldest frame */
    uint32_t count;                /* frames queued */
};

struct ps_xdp_port;

struct ps_port {
    uint16_t port_no;              /* 0..PS_MAX_PORTS-1 */
    int kind;                      /* PS_PORT_* */
    int fd;                        /* what to poll(2): socket, TAP fd, AF_XDP socket or epoll fd; -1 for memory ports */
    uint32_t max_frame;            /* the parser's bound; 0: none */
    struct ps_port_stats stats;    /* counters; rx_dropped updated when read */

    struct ps_tx_entry *txq;       /* PS_TXQ_LEN outputs waiting for the flush */
    uint32_t n_txq;                /* entries used in 'txq' */

    /* AF_PACKET. */
    uint8_t *ring;                 /* the mmapped RX ring */
    size_t ring_size;              /* its bytes */
    uint32_t ring_frame_size;      /* bytes per ring frame */
    uint32_t ring_block_size;      /* bytes per ring block */
    uint32_t ring_frames_per_block;/* frames in one block */
    uint32_t ring_n_frames;        /* frames in the ring */
    uint32_t ring_head;            /* next frame to look at */
    uint32_t ring_n_held;          /* frames before ring_head handed out, not yet released */
    uint32_t ring_hole;            /* an empty frame before a filled one, waited for since ...; UINT32_MAX: none */
    int64_t ring_hole_since_us;    /* ...this time (CLOCK_MONOTONIC) */
    uint8_t *copy_buf;             /* PS_RX_COPY_SLOTS slots for frames too big for the ring; NULL until needed */
    uint32_t n_copy;               /* slots used by the current batch */

    /* AF_XDP. */
    struct ps_xdp_port *xdp;       /* sockets, UMEMs, rings and the XDP program (xdp.c) */

    /* TAP. */
    uint8_t *tap_buf;              /* PS_BATCH receive buffers of tap_slot_size bytes */
    size_t tap_slot_size;          /* headroom, vnet header, PS_FRAME_MAX */

    /* Memory. */
    struct ps_mem_queue mem_rx;    /* injected, waiting for a run */
    struct ps_mem_queue mem_tx;    /* transmitted, waiting for ps_dp_mem_take() */
    struct ps_mem_frame *mem_held[PS_BATCH]; /* frames of the current batch */
    uint32_t mem_n_held;           /* entries used in 'mem_held' */
};

/* Opens 'port' (port_no and kind already set) on 'ifindex_or_fd'.
 * Returns 0 or a negative errno; on failure nothing stays open. */
int ps_port_open(struct ps_port *port, int ifindex_or_fd, uint32_t ring_frames);

/* Releases what ps_port_open() acquired; a TAP fd stays open (Python owns it). */
void ps_port_close(struct ps_port *port);

/* Stores up to 'max' received frames in 'frames' and returns how many. */
uint32_t ps_port_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max);

/* Gives the frames of the last ps_port_rx() back to the port. */
void ps_port_rx_release(struct ps_port *port);

/* Returns true if ps_port_rx() would return frames without waiting. */
bool ps_port_rx_ready(const struct ps_port *port);

/* Queues 'frame' for transmission; copies it unless 'stable'.  Returns the
 * number of frames sent by an early flush (when the queue was full). */
uint32_t ps_port_tx_queue(struct ps_port *port, const struct ps_frame *frame, bool stable);

/* Sends every queued output; returns how many were handed over. */
uint32_t ps_port_tx_flush(struct ps_port *port);

/* Reads and so clears the pending error of socket 'fd' (poll(2) said POLLERR).
 * An interface that goes down leaves ENETDOWN on its sockets, which poll(2)
 * reports at once until it is read: a loop that did not read it would spin
 * until the link came back.  Returns false if 'fd' is no socket, whose error
 * cannot be read away: a TAP fd whose device was deleted reports POLLERR for
 * ever. */
bool ps_fd_clear_error(int fd);

/* Refreshes counters kept by the kernel (rx_dropped). */
void ps_port_update_stats(struct ps_port *port);

/* Memory ports: queue a copy of a frame for the next run, take one output. */
int ps_port_mem_inject(struct ps_port *port, const uint8_t *frame, uint32_t size,
                       const struct ps_vnet_hdr *vnet);
int ps_port_mem_take(struct ps_port *port, uint8_t *buf, uint32_t buf_size, struct ps_vnet_hdr *vnet);

#endif /* PS_IO_H */
