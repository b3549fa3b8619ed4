/* xdp.c: AF_XDP ports (see xdp.h; the kernel's side is described in
 * Documentation/networking/af_xdp.rst).
 *
 * Each receive queue of the interface gets a socket and a UMEM of its own:
 * n_rx receive chunks, and on queue 0, which also transmits, n_tx transmit
 * chunks behind them.  Every receive chunk is always in exactly one place:
 * the fill ring (waiting for the kernel), the RX ring (filled, waiting for
 * us), or 'held' (handed to the datapath until ps_xdp_rx_release()).  Every
 * transmit chunk likewise: 'tx_free', the TX ring, in the kernel, or the
 * completion ring on its way back.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/ethtool.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "offload.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "xdp.h"
#include "xdp_prog.h"

/* Linux 6.17: how many frames one sendto() may send in copy mode (32 before,
 * and where the option is unknown). */
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9
#endif

_Static_assert(PS_XDP_RX_FRAMES_MIN >= 2 * PS_BATCH, "the kernel must keep receive chunks while a batch holds some");

/* The bytes in front of a received frame in its chunk: the UMEM headroom we
 * ask for, then the kernel's own XDP_PACKET_HEADROOM.  Both are ours to grow
 * the frame into, but asking for PS_HEADROOM means we never depend on the
 * kernel's. */
#define RX_FRAME_OFFSET (PS_HEADROOM + XDP_PACKET_HEADROOM)

/* One ring shared with the kernel.  We produce into the fill and TX rings and
 * consume from the RX and completion rings; 'head' is our own index of the
 * two, which only we write, so we need not read it back from shared memory. */
struct xsk_ring {
    uint32_t *producer;            /* the producer's index (shared) */
    uint32_t *consumer;            /* the consumer's index (shared) */
    uint32_t *flags;               /* XDP_RING_NEED_WAKEUP (shared) */
    void *descs;                   /* 'size' entries: uint64_t chunk addresses, or struct xdp_desc for RX/TX */
    uint32_t size;                 /* entries, a power of two */
    uint32_t head;                 /* our index: the producer's (fill, TX) or the consumer's (RX, completion) */
    void *map;                     /* the mmapped ring, NULL if none */
    size_t map_size;               /* its bytes */
};

/* An AF_XDP socket bound to one receive queue, with its own UMEM. */
struct xsk {
    int fd;                        /* the socket; -1 if not open */
    uint8_t *umem;                 /* receive chunks, then transmit chunks; NULL if not mapped */
    size_t umem_size;              /* its bytes */
    struct xsk_ring fill;          /* receive chunks we give the kernel to fill */
    struct xsk_ring comp;          /* transmit chunks the kernel is done with */
    struct xsk_ring rx;            /* received frames */
    struct xsk_ring tx;            /* frames to send (queue 0 only) */
    uint64_t held[PS_BATCH];       /* chunks of the frames handed to the datapath, to return on release */
    uint32_t n_held;               /* entries used in 'held' */
    uint64_t *tx_free;             /* transmit chunks free to use, a stack */
    uint32_t n_tx_free;            /* entries used in 'tx_free' */
};

struct ps_xdp_port {
    struct ps_xdp_prog prog;       /* the redirect program, its map and its link */
    uint32_t chunk_size;           /* bytes per UMEM chunk: 2048 or 4096 */
    uint32_t n_rx;                 /* receive chunks per socket, and entries of its fill and RX rings */
    uint32_t n_tx;                 /* transmit chunks of queue 0, and entries of its TX and completion rings */
    uint32_t n_queues;             /* sockets: one per receive queue */
    uint32_t next_queue;           /* where the next receive starts, so no queue starves the others */
    int epoll_fd;                  /* with several queues: their sockets, for ps_dp_poll() to wait on; else -1 */
    struct xsk queues[];           /* n_queues of them */
};

static uint32_t
pow2_at_least(uint32_t n)
{
    uint32_t p = 1;

    while (p < n) {
        p <<= 1;
    }
    return p;
}

/* Rings. */

static uint32_t
ring_load(const uint32_t *index)
{
    return __atomic_load_n(index, __ATOMIC_ACQUIRE);
}

/* Publishes 'value' after every access to the entries it covers. */
static void
ring_store(uint32_t *index, uint32_t value)
{
    __atomic_store_n(index, value, __ATOMIC_RELEASE);
}

/* Entries a consumer ring holds for us. */
static uint32_t
ring_available(const struct xsk_ring *r)
{
    return ring_load(r->producer) - r->head;
}

/* Entries free in a producer ring. */
static uint32_t
ring_free(const struct xsk_ring *r)
{
    return r->size - (r->head - ring_load(r->consumer));
}

/* Whether the kernel asks to be woken (XDP_USE_NEED_WAKEUP) to look at the
 * ring we just produced into.  The fence orders our index store before the
 * flag's load: the kernel sets the flag and then reads the index, so one of
 * us always sees the other. */
static bool
ring_needs_wakeup(const struct xsk_ring *r)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(r->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP;
}

static uint64_t *
ring_addr(const struct xsk_ring *r, uint32_t index)
{
    return (uint64_t *) r->descs + (index & (r->size - 1));
}

static struct xdp_desc *
ring_desc(const struct xsk_ring *r, uint32_t index)
{
    return (struct xdp_desc *) r->descs + (index & (r->size - 1));
}

static int
ring_map(struct xsk_ring *r, int fd, const struct xdp_ring_offset *off, uint32_t size, size_t entry_size,
         off_t pgoff)
{
    size_t map_size = off->desc + (size_t) size * entry_size;
    uint8_t *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);

    if (map == MAP_FAILED) {
        return -errno;
    }
    r->map = map;
    r->map_size = map_size;
    r->producer = (uint32_t *) (map + off->producer);
    r->consumer = (uint32_t *) (map + off->consumer);
    r->flags = (uint32_t *) (map + off->flags);
    r->descs = map + off->desc;
    r->size = size;
    r->head = 0;   /* a new ring starts with both indexes at 0 */
    return 0;
}

static void
ring_unmap(struct xsk_ring *r)
{
    if (r->map) {
        munmap(r->map, r->map_size);
        r->map = NULL;
    }
}

/* Sockets. */

/* Opens 'q' on receive queue 'queue_id' of 'ifindex', transmitting with
 * 'n_tx' chunks (0: receive only).  On failure the caller frees what is open
 * (xdp_free()). */
static int
xsk_open(struct xsk *q, const struct ps_xdp_port *xp, int ifindex, uint32_t queue_id, uint32_t n_tx)
{
    /* A UMEM needs a completion ring even if it never transmits. */
    uint32_t n_rx = xp->n_rx, n_comp = n_tx ? n_tx : 1;
    int sndbuf = (int) (n_tx * xp->chunk_size * 2), budget = (int) n_tx;
    struct sockaddr_xdp sxdp;
    struct xdp_umem_reg reg;
    struct xdp_mmap_offsets off;
    socklen_t off_len = sizeof off;
    int error;

    q->umem_size = (size_t) (n_rx + n_tx) * xp->chunk_size;
    q->umem = mmap(NULL, q->umem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (q->umem == MAP_FAILED) {
        q->umem = NULL;
        return -errno;
    }
    q->tx_free = malloc(sizeof *q->tx_free * (n_tx ? n_tx : 1));
    if (!q->tx_free) {
        return -ENOMEM;
    }
    q->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (q->fd < 0) {
        return -errno;
    }
    /* Zeroed whole: newer kernels read a field where older headers have
     * padding (tx_metadata_len), and it must be 0. */
    memset(&reg, 0, sizeof reg);
    reg.addr = (uint64_t) (uintptr_t) q->umem;
    reg.len = q->umem_size;
    reg.chunk_size = xp->chunk_size;
    reg.headroom = PS_HEADROOM;
    if (setsockopt(q->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) < 0
        || setsockopt(q->fd, SOL_XDP, XDP_UMEM_FILL_RING, &n_rx, sizeof n_rx) < 0
        || setsockopt(q->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n_comp, sizeof n_comp) < 0
        || setsockopt(q->fd, SOL_XDP, XDP_RX_RING, &n_rx, sizeof n_rx) < 0
        || (n_tx && setsockopt(q->fd, SOL_XDP, XDP_TX_RING, &n_tx, sizeof n_tx) < 0)
        || getsockopt(q->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &off_len) < 0) {
        return -errno;
    }
    if ((error = ring_map(&q->fill, q->fd, &off.fr, n_rx, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING))
        || (error = ring_map(&q->comp, q->fd, &off.cr, n_comp, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING))
        || (error = ring_map(&q->rx, q->fd, &off.rx, n_rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING))
        || (n_tx && (error = ring_map(&q->tx, q->fd, &off.tx, n_tx, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)))) {
        return error;
    }
    for (uint32_t i = 0; i < n_rx; i++) {
        *ring_addr(&q->fill, i) = (uint64_t) i * xp->chunk_size;
    }
    q->fill.head = n_rx;
    ring_store(q->fill.producer, q->fill.head);
    for (uint32_t i = 0; i < n_tx; i++) {
        q->tx_free[i] = (uint64_t) (n_rx + i) * xp->chunk_size;
    }
    q->n_tx_free = n_tx;
    if (n_tx) {
        /* In copy mode every frame sent is a socket buffer charged to this
         * socket until the peer frees it: a send buffer that holds all our
         * transmit chunks makes those, not the buffer, the bound.  One
         * sendto() may send them all, where the kernel lets us say so (it
         * accepts a budget from 32 up to the TX ring's size). */
        if (setsockopt(q->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0) {
            setsockopt(q->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        }
        setsockopt(q->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof budget);
    }
    memset(&sxdp, 0, sizeof sxdp);
    sxdp.sxdp_family = AF_XDP;
    sxdp.sxdp_flags = XDP_USE_NEED_WAKEUP;
    sxdp.sxdp_ifindex = ifindex;
    sxdp.sxdp_queue_id = queue_id;
    if (bind(q->fd, (struct sockaddr *) &sxdp, sizeof sxdp) < 0) {
        return -errno;
    }
    return 0;
}

static void
xsk_close(struct xsk *q)
{
    ring_unmap(&q->fill);
    ring_unmap(&q->comp);
    ring_unmap(&q->rx);
    ring_unmap(&q->tx);
    if (q->fd >= 0) {
        close(q->fd);
        q->fd = -1;
    }
    if (q->umem) {
        munmap(q->umem, q->umem_size);
        q->umem = NULL;
    }
    free(q->tx_free);
    q->tx_free = NULL;
}

static void
xdp_free(struct ps_xdp_port *xp)
{
    if (!xp) {
        return;
    }
    /* The program first, so that no frame is steered to a closing socket. */
    ps_xdp_prog_close(&xp->prog);
    if (xp->epoll_fd >= 0) {
        close(xp->epoll_fd);
    }
    for (uint32_t i = 0; i < xp->n_queues; i++) {
        xsk_close(&xp->queues[i]);
    }
    free(xp);
}

/* The interface's receive queues, from its channel counts; an interface that
 * does not tell has one. */
static uint32_t
rx_queue_count(int ifindex)
{
    struct ethtool_channels channels = { .cmd = ETHTOOL_GCHANNELS };
    struct ifreq ifr;
    uint32_t n = 1;
    int fd;

    memset(&ifr, 0, sizeof ifr);
    if (!if_indextoname(ifindex, ifr.ifr_name)) {
        return n;
    }
    ifr.ifr_data = (void *) &channels;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (ioctl(fd, SIOCETHTOOL, &ifr) == 0 && channels.rx_count + channels.combined_count > 0) {
            n = channels.rx_count + channels.combined_count;
        }
        close(fd);
    }
    return n;
}

/* The smallest chunk that holds a received frame of 'max_frame' bytes behind
 * RX_FRAME_OFFSET, or 0 if none does. */
static uint32_t
chunk_size_for(uint32_t max_frame)
{
    uint32_t need = RX_FRAME_OFFSET + (max_frame > PS_RING_SNAP_MIN ? max_frame : PS_RING_SNAP_MIN);

    return need <= 2048 ? 2048 : need <= 4096 ? 4096 : 0;
}

int
ps_xdp_open(struct ps_port *port, int ifindex, uint32_t ring_frames)
{
    uint32_t n_queues, chunk_size = chunk_size_for(port->max_frame);
    struct ps_xdp_port *xp;
    int error;

    if (ifindex <= 0) {
        return -EINVAL;
    }
    if (!chunk_size) {
        return -EMSGSIZE;
    }
    /* Every queue must have a socket: the program passes the frames of a
     * queue without one to the kernel's stack, past the switch. */
    n_queues = rx_queue_count(ifindex);
    if (n_queues > PS_XDP_MAX_QUEUES) {
        return -ERANGE;
    }
    xp = calloc(1, sizeof *xp + n_queues * sizeof xp->queues[0]);
    if (!xp) {
        return -ENOMEM;
    }
    xp->prog.map_fd = xp->prog.prog_fd = xp->prog.link_fd = -1;
    xp->epoll_fd = -1;
    xp->n_queues = n_queues;
    xp->chunk_size = chunk_size;
    /* Hosts send an AF_XDP port MTU-sized frames, not super-frames: the
     * same bytes take many more ring entries than through AF_PACKET. */
    xp->n_rx = pow2_at_least(ring_frames > PS_XDP_RX_FRAMES_MIN ? ring_frames : PS_XDP_RX_FRAMES_MIN);
    xp->n_tx = PS_XDP_TX_FRAMES;
    for (uint32_t i = 0; i < n_queues; i++) {
        xp->queues[i].fd = -1;
    }

    error = ps_xdp_prog_open(&xp->prog, n_queues);
    for (uint32_t i = 0; !error && i < n_queues; i++) {
        error = xsk_open(&xp->queues[i], xp, ifindex, i, i == 0 ? xp->n_tx : 0);
        if (!error) {
            error = ps_xdp_prog_set_socket(&xp->prog, i, xp->queues[i].fd);
        }
    }
    if (!error && n_queues > 1) {
        xp->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (xp->epoll_fd < 0) {
            error = -errno;
        }
        for (uint32_t i = 0; !error && i < n_queues; i++) {
            struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

            if (epoll_ctl(xp->epoll_fd, EPOLL_CTL_ADD, xp->queues[i].fd, &ev) < 0) {
                error = -errno;
            }
        }
    }
    /* Last: the program steers frames only once every socket is ready. */
    if (!error) {
        error = ps_xdp_prog_attach(&xp->prog, ifindex);
    }
    if (error) {
        xdp_free(xp);
        return error;
    }
    port->xdp = xp;
    port->fd = n_queues > 1 ? xp->epoll_fd : xp->queues[0].fd;
    return 0;
}

void
ps_xdp_close(struct ps_port *port)
{
    xdp_free(port->xdp);
    port->xdp = NULL;
}

int
ps_xdp_mode(const struct ps_port *port)
{
    return port->xdp->prog.mode;
}

/* Receive. */

static uint32_t
xsk_rx(const struct ps_xdp_port *xp, struct xsk *q, struct ps_frame *frames, uint32_t max)
{
    uint32_t n = ring_available(&q->rx);
    uint64_t chunk_mask = ~(uint64_t) (xp->chunk_size - 1);

    if (n > max) {
        n = max;
    }
    if (n > PS_BATCH - q->n_held) {
        n = PS_BATCH - q->n_held;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = ring_desc(&q->rx, q->rx.head + i);
        struct ps_frame *f = &frames[i];

        f->data = q->umem + d->addr;
        f->size = d->len;
        memset(&f->vnet, 0, sizeof f->vnet);
        ps_offload_rx_csum(f->data, f->size, &f->vnet);
        q->held[q->n_held++] = d->addr & chunk_mask;
    }
    /* The descriptors are read; the chunks stay ours until released. */
    q->rx.head += n;
    ring_store(q->rx.consumer, q->rx.head);
    return n;
}

uint32_t
ps_xdp_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max)
{
    struct ps_xdp_port *xp = port->xdp;
    uint32_t n = 0;

    for (uint32_t i = 0; i < xp->n_queues && n < max; i++) {
        n += xsk_rx(xp, &xp->queues[(xp->next_queue + i) % xp->n_queues], frames + n, max - n);
    }
    xp->next_queue = (xp->next_queue + 1) % xp->n_queues;
    return n;
}

void
ps_xdp_rx_release(struct ps_port *port)
{
    struct ps_xdp_port *xp = port->xdp;

    for (uint32_t i = 0; i < xp->n_queues; i++) {
        struct xsk *q = &xp->queues[i];

        if (!q->n_held) {
            continue;
        }
        /* Always room: the fill ring has an entry for every receive chunk. */
        for (uint32_t k = 0; k < q->n_held; k++) {
            *ring_addr(&q->fill, q->fill.head + k) = q->held[k];
        }
        q->fill.head += q->n_held;
        q->n_held = 0;
        ring_store(q->fill.producer, q->fill.head);
        /* A driver that ran out of chunks sleeps until told there are more;
         * in copy mode the kernel never asks. */
        if (ring_needs_wakeup(&q->fill)) {
            recvfrom(q->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        }
    }
}

bool
ps_xdp_rx_ready(const struct ps_port *port)
{
    const struct ps_xdp_port *xp = port->xdp;

    for (uint32_t i = 0; i < xp->n_queues; i++) {
        if (ring_available(&xp->queues[i].rx)) {
            return true;
        }
    }
    return false;
}

/* Transmit. */

/* Moves the chunks the kernel has finished sending back to 'tx_free'. */
static void
tx_reclaim(const struct ps_xdp_port *xp, struct xsk *q)
{
    uint32_t n = ring_available(&q->comp);
    uint64_t chunk_mask = ~(uint64_t) (xp->chunk_size - 1);

    for (uint32_t i = 0; i < n; i++) {
        q->tx_free[q->n_tx_free++] = *ring_addr(&q->comp, q->comp.head + i) & chunk_mask;
    }
    q->comp.head += n;
    ring_store(q->comp.consumer, q->comp.head);
}

/* Whether 'n' chunks and TX ring entries are free, reclaiming if need be. */
static bool
tx_reserve(const struct ps_xdp_port *xp, struct xsk *q, uint32_t n)
{
    if (q->n_tx_free < n) {
        tx_reclaim(xp, q);
    }
    return q->n_tx_free >= n && ring_free(&q->tx) >= n;
}

/* Takes a chunk tx_reserve() promised and returns where to write into it. */
static uint8_t *
tx_chunk(struct xsk *q, uint64_t *addr)
{
    *addr = q->tx_free[--q->n_tx_free];
    return q->umem + *addr;
}

static void
tx_post(struct xsk *q, uint64_t addr, uint32_t len)
{
    struct xdp_desc *d = ring_desc(&q->tx, q->tx.head++);

    d->addr = addr;
    d->len = len;
    d->options = 0;
}

/* Queues one output on the TX ring (published by the caller), copied into
 * chunks; returns the frames queued, 0 if the output is dropped. */
static uint32_t
tx_output(const struct ps_xdp_port *xp, struct xsk *q, const struct ps_tx_entry *e)
{
    const struct ps_vnet_hdr *vnet = &e->vnet;
    uint64_t addr;
    uint8_t *chunk;

    if (vnet->gso_type & PS_VNET_GSO_TYPE_MASK) {
        struct ps_gso gso;

        /* Hosts behind other ports send GSO super-frames; nothing on the
         * far side of an AF_XDP port would cut them, so we do. */
        /* The largest segment carries min(gso_size, payload) bytes: a small
         * frame with a large MSS is one segment that may well fit. */
        if (ps_gso_plan(e->data, e->size, vnet, &gso)
            || gso.hdr_size + (gso.payload < gso.seg_payload ? gso.payload : gso.seg_payload) > xp->chunk_size
            || !tx_reserve(xp, q, gso.n_segs)) {
            return 0;
        }
        for (uint32_t k = 0; k < gso.n_segs; k++) {
            chunk = tx_chunk(q, &addr);
            tx_post(q, addr, ps_gso_segment(e->data, &gso, k, chunk));
        }
        return gso.n_segs;
    }
    if (e->size > xp->chunk_size || !e->size || !tx_reserve(xp, q, 1)) {
        return 0;
    }
    chunk = tx_chunk(q, &addr);
    memcpy(chunk, e->data, e->size);
    /* The frame leaves as a socket buffer with no checksum offload, so the
     * receiver checks every checksum: a partial one must be finished. */
    if ((vnet->flags & PS_VNET_F_NEEDS_CSUM) && ps_offload_csum(chunk, e->size, vnet)) {
        q->tx_free[q->n_tx_free++] = addr;
        return 0;
    }
    tx_post(q, addr, e->size);
    return 1;
}

/* Tells the kernel about new TX entries.  In copy mode it sends only from
 * sendto() (or poll()), and at most a budget of frames per call (32 before
 * Linux 6.17), so we call again while it keeps taking frames.  When it stops
 * (the device is busy), the rest goes out on the next flush or poll(). */
static void
tx_kick(struct xsk *q)
{
    if (!ring_needs_wakeup(&q->tx)) {
        return;
    }
    for (int i = 0; i < PS_XDP_KICKS_MAX; i++) {
        uint32_t before = ring_load(q->tx.consumer);

        if (before == q->tx.head) {
            return;
        }
        if (sendto(q->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN && errno != EBUSY
            && errno != ENOBUFS && errno != EINTR) {
            return;   /* the interface went down or away */
        }
        if (ring_load(q->tx.consumer) == before) {
            return;
        }
    }
}

uint32_t
ps_xdp_tx(struct ps_port *port)
{
    struct ps_xdp_port *xp = port->xdp;
    struct xsk *q = &xp->queues[0];
    uint32_t sent = 0, posted = 0;

    tx_reclaim(xp, q);
    for (uint32_t i = 0; i < port->n_txq; i++) {
        const struct ps_tx_entry *e = &port->txq[i];
        uint32_t n = tx_output(xp, q, e);

        if (n) {
            /* A GSO output counts once, as on the other port kinds. */
            sent++;
            posted += n;
            port->stats.tx_bytes += e->size;
        } else {
            port->stats.tx_dropped++;
        }
    }
    if (posted) {
        ring_store(q->tx.producer, q->tx.head);
        tx_kick(q);
    }
    return sent;
}

void
ps_xdp_update_stats(struct ps_port *port)
{
    struct ps_xdp_port *xp = port->xdp;
    uint64_t dropped = 0;

    /* Frames lost because the RX ring was full or no chunk was free.  The
     * kernel's counters only grow, so they replace ours. */
    for (uint32_t i = 0; i < xp->n_queues; i++) {
        struct xdp_statistics st;
        socklen_t len = sizeof st;

        if (getsockopt(xp->queues[i].fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
            dropped += st.rx_dropped + st.rx_ring_full;
        }
    }
    port->stats.rx_dropped = dropped;
}
