/* io.c: port I/O: AF_PACKET sockets with an RX ring, AF_XDP sockets (xdp.c), TAP fds, memory queues.
 *
 * Each kind has its own open, receive and transmit functions; the ps_port_*
 * entry points dispatch on port->kind, like OVS's netdev classes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "xdp.h"

static uint32_t
align_up(uint32_t n, uint32_t align)
{
    return (n + align - 1) / align * align;
}

static int
set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return -errno;
    }
    return 0;
}

/* AF_PACKET.
 *
 * We use TPACKET_V2, not V3, deliberately: V3 hands a block to userspace only
 * when it is full or its retire timer (>= 1 ms) fires, which adds about a
 * millisecond of latency at light load.  V2 marks each frame ready at once
 * and still lets us drain many frames per wakeup without a system call. */

static struct tpacket2_hdr *
ring_frame(const struct ps_port *port, uint32_t index)
{
    uint32_t block = index / port->ring_frames_per_block;
    uint32_t in_block = index % port->ring_frames_per_block;

    return (struct tpacket2_hdr *) (port->ring + (size_t) block * port->ring_block_size
                                    + (size_t) in_block * port->ring_frame_size);
}

static int
afpacket_open(struct ps_port *port, int ifindex, uint32_t ring_frames)
{
    int rcvbuf = PS_RX_COPY_RCVBUF;
    int version = TPACKET_V2, one = 1, reserve = PS_HEADROOM;
    long page = sysconf(_SC_PAGESIZE);
    struct packet_mreq mreq = { .mr_ifindex = ifindex, .mr_type = PACKET_MR_PROMISC };
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                               .sll_ifindex = ifindex };
    struct tpacket_req req;
    uint32_t frame_size, per_block, block_size, n_blocks;
    void *ring;
    int fd, error;

    if (ifindex <= 0) {
        return -EINVAL;
    }
    /* Protocol 0 receives nothing until bind() below names ETH_P_ALL and the
     * interface, so no frame of another interface slips into the ring. */
    fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        return -errno;
    }
    /* The vnet header must be enabled before the ring exists: the kernel
     * sizes the ring frames' layout with it. */
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof reserve) < 0) {
        goto fail_errno;
    }

    /* A frame holds the tpacket2_hdr and sockaddr_ll, the reserve (our
     * headroom), the vnet header and one frame of the port's MTU.  A frame
     * that does not fit (a GSO super-frame of up to 64 KiB) is truncated in
     * the ring, and with PACKET_COPY_THRESH the kernel also queues it whole
     * on the socket (TP_STATUS_COPY), where afpacket_rx() reads it: small
     * ring frames hold many more packets in the same memory than frames
     * sized for the rare super-frame would.  Several frames share a block
     * because the kernel allocates blocks in power-of-two pages. */
    frame_size = align_up(PS_RING_HDR_ROOM + PS_HEADROOM + PS_VNET_HDR_SIZE
                          + (port->max_frame > PS_RING_SNAP_MIN ? port->max_frame : PS_RING_SNAP_MIN),
                          TPACKET_ALIGNMENT);
    if (frame_size > PS_RING_HDR_ROOM + PS_HEADROOM + PS_VNET_HDR_SIZE + PS_FRAME_MAX) {
        frame_size = align_up(PS_RING_HDR_ROOM + PS_HEADROOM + PS_VNET_HDR_SIZE + PS_FRAME_MAX, TPACKET_ALIGNMENT);
    }
    per_block = PS_RING_BLOCK_MAX / frame_size ? PS_RING_BLOCK_MAX / frame_size : 1;
    block_size = align_up(per_block * frame_size, page);
    if (ring_frames == 0) {
        ring_frames = PS_RING_FRAMES_DEFAULT;
    }
    if (per_block > ring_frames) {
        per_block = ring_frames;
        block_size = align_up(per_block * frame_size, page);
    }
    n_blocks = (ring_frames + per_block - 1) / per_block;
    req = (struct tpacket_req) { .tp_block_size = block_size, .tp_block_nr = n_blocks,
                                 .tp_frame_size = frame_size, .tp_frame_nr = n_blocks * per_block };
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        goto fail_errno;
    }
    ring = mmap(NULL, (size_t) block_size * n_blocks, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED) {
        /* MAP_LOCKED fails under a small RLIMIT_MEMLOCK; the ring works
         * unlocked too, only with possible page faults. */
        ring = mmap(NULL, (size_t) block_size * n_blocks, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (ring == MAP_FAILED) {
            goto fail_errno;
        }
    }
    port->ring = ring;
    port->ring_size = (size_t) block_size * n_blocks;
    port->ring_frame_size = frame_size;
    port->ring_block_size = block_size;
    port->ring_frames_per_block = per_block;
    port->ring_n_frames = n_blocks * per_block;
    port->ring_hole = UINT32_MAX;

    /* Our own transmissions must not come back to us; we bypass the qdisc
     * like a NIC driver would, since the switch does its own queueing. */
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0
        || bind(fd, (struct sockaddr *) &sll, sizeof sll) < 0) {
        goto fail_errno;
    }
    /* The copies of oversized frames count against the receive buffer; a
     * copy that does not fit is not made and its frame is dropped (counted).
     * SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it the sysctl caps SO_RCVBUF. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    error = set_nonblock(fd);
    if (error) {
        goto fail;
    }
    port->fd = fd;
    return 0;

fail_errno:
    error = -errno;
fail:
    if (port->ring) {
        munmap(port->ring, port->ring_size);
        port->ring = NULL;
    }
    close(fd);
    return error;
}

/* Reads the whole copy of a frame the ring holds truncated (TP_STATUS_COPY)
 * from the socket into the next copy slot, and points 'f' at it.  Returns
 * false if there is none to read. */
static bool
afpacket_rx_copy(struct ps_port *port, struct ps_frame *f)
{
    uint8_t *slot = port->copy_buf + (size_t) port->n_copy * PS_RX_COPY_SLOT_SIZE;
    struct iovec iov = { .iov_base = slot + PS_HEADROOM, .iov_len = PS_VNET_HDR_SIZE + PS_FRAME_MAX };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r = recvmsg(port->fd, &msg, MSG_DONTWAIT);

    if (r < (ssize_t) (PS_VNET_HDR_SIZE + sizeof(struct ps_eth_hdr)) || (msg.msg_flags & MSG_TRUNC)) {
        return false;
    }
    port->n_copy++;
    /* recvmsg() writes the virtio_net_hdr first, then the frame. */
    memcpy(&f->vnet, slot + PS_HEADROOM, PS_VNET_HDR_SIZE);
    f->data = slot + PS_HEADROOM + PS_VNET_HDR_SIZE;
    f->size = r - PS_VNET_HDR_SIZE;
    return true;
}

static bool
ring_frame_filled(const struct ps_port *port, uint32_t index)
{
    return __atomic_load_n(&ring_frame(port, index)->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER;
}

/* Whether the reader should pass by the empty frame at ring_head.
 *
 * Seen on Linux 6.18 with a ring kept full by a fast sender: now and then the
 * kernel fills the frame after an empty one and fills the empty one only
 * milliseconds later, or on its next lap.  A reader that waited there would
 * hold every frame after it: at light load, a ring's worth of frames, for
 * seconds.  A frame a writer on another CPU is still filling fills within
 * microseconds, so the empty frame gets PS_RING_HOLE_GRACE_US once the next
 * is filled; after that the reader moves on and reads the late frame on its
 * next lap.  (The twin, refpath/io.py, does the same.) */
static bool
afpacket_hole_passed(struct ps_port *port)
{
    int64_t now;

    if (!ring_frame_filled(port, (port->ring_head + 1) % port->ring_n_frames)) {
        return false;
    }
    now = ps_monotonic_us();
    if (port->ring_hole != port->ring_head) {
        port->ring_hole = port->ring_head;
        port->ring_hole_since_us = now;
        return false;
    }
    if (now - port->ring_hole_since_us < PS_RING_HOLE_GRACE_US) {
        return false;
    }
    port->ring_hole = UINT32_MAX;
    return true;
}

static uint32_t
afpacket_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max)
{
    uint32_t n = 0;

    port->n_copy = 0;
    while (n < max && port->ring_n_held < port->ring_n_frames) {
        struct tpacket2_hdr *h = ring_frame(port, port->ring_head);
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        struct ps_frame *f;
        uint8_t *mac;

        if (!(status & TP_STATUS_USER)) {
            /* The frames handed out must stay contiguous for the release,
             * which gives back the n_held frames before ring_head: a hole is
             * passed only at the start of a batch, and never given back (its
             * late writer sets its status). */
            if (port->ring_n_held == 0 && afpacket_hole_passed(port)) {
                port->ring_head = (port->ring_head + 1) % port->ring_n_frames;
                continue;
            }
            break;
        }
        if (status & TP_STATUS_COPY) {
            /* The copy slots are used up: the frame waits for the next batch. */
            if (port->n_copy == PS_RX_COPY_SLOTS) {
                break;
            }
            if (!port->copy_buf && !(port->copy_buf = malloc((size_t) PS_RX_COPY_SLOTS * PS_RX_COPY_SLOT_SIZE))) {
                break;
            }
        }
        port->ring_head = (port->ring_head + 1) % port->ring_n_frames;
        port->ring_n_held++;
        f = &frames[n];
        if (status & TP_STATUS_COPY) {
            if (!afpacket_rx_copy(port, f)) {
                port->stats.rx_errors++;
                continue;
            }
        } else if (h->tp_snaplen < h->tp_len || h->tp_snaplen < sizeof(struct ps_eth_hdr)) {
            /* Too big for the ring, and the socket had no room for a copy. */
            port->stats.rx_errors++;
            continue;
        } else {
            mac = (uint8_t *) h + h->tp_mac;
            f->data = mac;
            f->size = h->tp_snaplen;
            /* The kernel writes the virtio_net_hdr right before the MAC header. */
            memcpy(&f->vnet, mac - PS_VNET_HDR_SIZE, PS_VNET_HDR_SIZE);
        }
        n++;
        if (status & TP_STATUS_VLAN_VALID) {
            uint16_t tpid = status & TP_STATUS_VLAN_TPID_VALID ? h->tp_vlan_tpid : PS_ETH_TYPE_VLAN;

            /* Put back the tag the kernel stripped into the headroom, with
             * the vnet header moved exactly as PUSH_VLAN moves it. */
            ps_frame_push_tag(f, tpid, h->tp_vlan_tci);
        }
    }
    if (port->ring_hole != port->ring_head) {
        port->ring_hole = UINT32_MAX;   /* a hole seen before was read or passed since */
    }
    return n;
}

static void
afpacket_rx_release(struct ps_port *port)
{
    uint32_t index = (port->ring_head + port->ring_n_frames - port->ring_n_held) % port->ring_n_frames;

    for (; port->ring_n_held; port->ring_n_held--) {
        __atomic_store_n(&ring_frame(port, index)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        index = (index + 1) % port->ring_n_frames;
    }
}

static uint32_t
afpacket_tx(struct ps_port *port)
{
    struct mmsghdr msgs[PS_TXQ_LEN];
    struct iovec iovs[PS_TXQ_LEN][2];
    uint32_t i, n = port->n_txq, sent = 0;

    memset(msgs, 0, n * sizeof msgs[0]);
    for (i = 0; i < n; i++) {
        struct ps_tx_entry *e = &port->txq[i];

        iovs[i][0] = (struct iovec) { .iov_base = &e->vnet, .iov_len = PS_VNET_HDR_SIZE };
        iovs[i][1] = (struct iovec) { .iov_base = (void *) e->data, .iov_len = e->size };
        msgs[i].msg_hdr.msg_iov = iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 2;
    }
    for (i = 0; i < n;) {
        int r = sendmmsg(port->fd, &msgs[i], n - i, MSG_DONTWAIT);

        if (r > 0) {
            for (int j = 0; j < r; j++) {
                port->stats.tx_bytes += port->txq[i + j].size;
            }
            sent += r;
            i += r;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            /* The device queue is full: drop the rest rather than spin. */
            port->stats.tx_dropped += n - i;
            break;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            /* This message failed (e.g. EMSGSIZE); skip it and go on. */
            port->stats.tx_dropped++;
            i++;
        }
    }
    return sent;
}

static void
afpacket_update_stats(struct ps_port *port)
{
    struct tpacket_stats st;
    socklen_t len = sizeof st;

    /* The kernel resets these counters on every read, so we accumulate. */
    if (getsockopt(port->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
        port->stats.rx_dropped += st.tp_drops;
    }
}

/* TAP: Python opened the fd with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so every
 * read() returns a 10-byte virtio_net_hdr and then the frame. */

static int
tap_open(struct ps_port *port, int fd)
{
    int error;

    if (fd < 0) {
        return -EBADF;
    }
    port->tap_slot_size = align_up(PS_HEADROOM + PS_VNET_HDR_SIZE + PS_FRAME_MAX, 64);
    port->tap_buf = malloc(port->tap_slot_size * PS_BATCH);
    if (!port->tap_buf) {
        return -ENOMEM;
    }
    error = set_nonblock(fd);
    if (error) {
        free(port->tap_buf);
        port->tap_buf = NULL;
        return error;
    }
    port->fd = fd;
    return 0;
}

static uint32_t
tap_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max)
{
    uint32_t n = 0;

    while (n < max) {
        uint8_t *slot = port->tap_buf + n * port->tap_slot_size;
        uint8_t *start = slot + PS_HEADROOM;
        ssize_t r = read(port->fd, start, PS_VNET_HDR_SIZE + PS_FRAME_MAX);

        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (r < (ssize_t) (PS_VNET_HDR_SIZE + sizeof(struct ps_eth_hdr))) {
            port->stats.rx_errors++;
            continue;
        }
        memcpy(&frames[n].vnet, start, PS_VNET_HDR_SIZE);
        frames[n].data = start + PS_VNET_HDR_SIZE;
        frames[n].size = r - PS_VNET_HDR_SIZE;
        n++;
    }
    return n;
}

static uint32_t
tap_tx(struct ps_port *port)
{
    uint32_t sent = 0;

    for (uint32_t i = 0; i < port->n_txq; i++) {
        struct ps_tx_entry *e = &port->txq[i];
        struct iovec iov[2] = {
            { .iov_base = &e->vnet, .iov_len = PS_VNET_HDR_SIZE },
            { .iov_base = (void *) e->data, .iov_len = e->size },
        };

        if (writev(port->fd, iov, 2) < 0) {
            port->stats.tx_dropped++;
        } else {
            port->stats.tx_bytes += e->size;
            sent++;
        }
    }
    return sent;
}

/* Memory queues. */

static struct ps_mem_frame *
mem_frame_new(const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet)
{
    struct ps_mem_frame *mf = malloc(sizeof *mf + PS_HEADROOM + size);

    if (mf) {
        mf->size = size;
        if (vnet) {
            mf->vnet = *vnet;
        } else {
            memset(&mf->vnet, 0, sizeof mf->vnet);
        }
        memcpy(mf->bytes + PS_HEADROOM, frame, size);
    }
    return mf;
}

static bool
mem_queue_push(struct ps_mem_queue *q, struct ps_mem_frame *mf)
{
    if (q->count == PS_MEM_QUEUE_LEN) {
        return false;
    }
    q->frames[(q->head + q->count++) % PS_MEM_QUEUE_LEN] = mf;
    return true;
}

static struct ps_mem_frame *
mem_queue_pop(struct ps_mem_queue *q)
{
    struct ps_mem_frame *mf;

    if (!q->count) {
        return NULL;
    }
    mf = q->frames[q->head];
    q->head = (q->head + 1) % PS_MEM_QUEUE_LEN;
    q->count--;
    return mf;
}

static void
mem_queue_destroy(struct ps_mem_queue *q)
{
    struct ps_mem_frame *mf;

    if (q->frames) {
        while ((mf = mem_queue_pop(q))) {
            free(mf);
        }
        free(q->frames);
        q->frames = NULL;
    }
}

static int
memory_open(struct ps_port *port)
{
    port->mem_rx.frames = calloc(PS_MEM_QUEUE_LEN, sizeof *port->mem_rx.frames);
    port->mem_tx.frames = calloc(PS_MEM_QUEUE_LEN, sizeof *port->mem_tx.frames);
    if (!port->mem_rx.frames || !port->mem_tx.frames) {
        mem_queue_destroy(&port->mem_rx);
        mem_queue_destroy(&port->mem_tx);
        return -ENOMEM;
    }
    return 0;
}

static uint32_t
memory_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max)
{
    uint32_t n = 0;
    struct ps_mem_frame *mf;

    while (n < max && port->mem_n_held < PS_BATCH && (mf = mem_queue_pop(&port->mem_rx))) {
        port->mem_held[port->mem_n_held++] = mf;
        frames[n].data = mf->bytes + PS_HEADROOM;
        frames[n].size = mf->size;
        frames[n].vnet = mf->vnet;
        n++;
    }
    return n;
}

static uint32_t
memory_tx(struct ps_port *port)
{
    uint32_t sent = 0;

    for (uint32_t i = 0; i < port->n_txq; i++) {
        struct ps_tx_entry *e = &port->txq[i];
        struct ps_mem_frame *mf = mem_frame_new(e->data, e->size, &e->vnet);

        if (!mf || !mem_queue_push(&port->mem_tx, mf)) {
            free(mf);
            port->stats.tx_dropped++;
        } else {
            port->stats.tx_bytes += e->size;
            sent++;
        }
    }
    return sent;
}

int
ps_port_mem_inject(struct ps_port *port, const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet)
{
    struct ps_mem_frame *mf;

    if (port->kind != PS_PORT_MEMORY) {
        return -EINVAL;
    }
    if (size > PS_FRAME_MAX) {
        return -EMSGSIZE;
    }
    mf = mem_frame_new(frame, size, vnet);
    if (!mf) {
        return -ENOMEM;
    }
    if (!mem_queue_push(&port->mem_rx, mf)) {
        free(mf);
        port->stats.rx_dropped++;
        return -ENOBUFS;
    }
    return 0;
}

int
ps_port_mem_take(struct ps_port *port, uint8_t *buf, uint32_t buf_size, struct ps_vnet_hdr *vnet)
{
    struct ps_mem_queue *q = &port->mem_tx;
    struct ps_mem_frame *mf;
    uint32_t size;

    if (port->kind != PS_PORT_MEMORY) {
        return -EINVAL;
    }
    if (!q->count) {
        return -EAGAIN;  /* not 0: an empty frame is a frame */
    }
    mf = q->frames[q->head];
    if (mf->size > buf_size) {
        return -ENOSPC;
    }
    mem_queue_pop(q);
    memcpy(buf, mf->bytes + PS_HEADROOM, mf->size);
    if (vnet) {
        *vnet = mf->vnet;
    }
    size = mf->size;
    free(mf);
    return size;
}

/* Dispatch. */

int
ps_port_open(struct ps_port *port, int ifindex_or_fd, uint32_t ring_frames)
{
    int error;

    port->fd = -1;
    port->txq = calloc(PS_TXQ_LEN, sizeof *port->txq);
    if (!port->txq) {
        return -ENOMEM;
    }
    switch (port->kind) {
    case PS_PORT_AFPACKET:
        error = afpacket_open(port, ifindex_or_fd, ring_frames);
        break;
    case PS_PORT_AFXDP:
        error = ps_xdp_open(port, ifindex_or_fd, ring_frames);
        break;
    case PS_PORT_TAP:
        error = tap_open(port, ifindex_or_fd);
        break;
    case PS_PORT_MEMORY:
        error = memory_open(port);
        break;
    default:
        error = -EINVAL;
        break;
    }
    if (error) {
        free(port->txq);
        port->txq = NULL;
    }
    return error;
}

void
ps_port_close(struct ps_port *port)
{
    ps_port_rx_release(port);
    for (uint32_t i = 0; i < port->n_txq; i++) {
        free(port->txq[i].copy);
    }
    free(port->txq);
    port->txq = NULL;
    port->n_txq = 0;
    switch (port->kind) {
    case PS_PORT_AFPACKET:
        munmap(port->ring, port->ring_size);
        free(port->copy_buf);
        close(port->fd);
        break;
    case PS_PORT_AFXDP:
        ps_xdp_close(port);
        break;
    case PS_PORT_TAP:
        free(port->tap_buf);
        break;
    case PS_PORT_MEMORY:
        mem_queue_destroy(&port->mem_rx);
        mem_queue_destroy(&port->mem_tx);
        break;
    }
    port->fd = -1;
}

uint32_t
ps_port_rx(struct ps_port *port, struct ps_frame *frames, uint32_t max)
{
    switch (port->kind) {
    case PS_PORT_AFPACKET:
        return afpacket_rx(port, frames, max);
    case PS_PORT_AFXDP:
        return ps_xdp_rx(port, frames, max);
    case PS_PORT_TAP:
        return tap_rx(port, frames, max);
    case PS_PORT_MEMORY:
        return memory_rx(port, frames, max);
    }
    return 0;
}

void
ps_port_rx_release(struct ps_port *port)
{
    if (port->kind == PS_PORT_AFPACKET) {
        afpacket_rx_release(port);
    } else if (port->kind == PS_PORT_AFXDP) {
        ps_xdp_rx_release(port);
    } else if (port->kind == PS_PORT_MEMORY) {
        for (uint32_t i = 0; i < port->mem_n_held; i++) {
            free(port->mem_held[i]);
        }
        port->mem_n_held = 0;
    }
    /* TAP buffers are simply reused by the next read. */
}

bool
ps_port_rx_ready(const struct ps_port *port)
{
    if (port->kind == PS_PORT_AFPACKET) {
        /* A filled frame after an empty head may be a hole to pass by. */
        return ring_frame_filled(port, port->ring_head)
               || ring_frame_filled(port, (port->ring_head + 1) % port->ring_n_frames);
    }
    if (port->kind == PS_PORT_AFXDP) {
        return ps_xdp_rx_ready(port);
    }
    if (port->kind == PS_PORT_MEMORY) {
        return port->mem_rx.count > 0;
    }
    return false;
}

uint32_t
ps_port_tx_flush(struct ps_port *port)
{
    uint32_t sent = 0;

    if (!port->n_txq) {
        return 0;
    }
    switch (port->kind) {
    case PS_PORT_AFPACKET:
        sent = afpacket_tx(port);
        break;
    case PS_PORT_AFXDP:
        sent = ps_xdp_tx(port);
        break;
    case PS_PORT_TAP:
        sent = tap_tx(port);
        break;
    case PS_PORT_MEMORY:
        sent = memory_tx(port);
        break;
    }
    port->stats.tx_packets += sent;
    for (uint32_t i = 0; i < port->n_txq; i++) {
        free(port->txq[i].copy);
    }
    port->n_txq = 0;
    return sent;
}

uint32_t
ps_port_tx_queue(struct ps_port *port, const struct ps_frame *frame, bool stable)
{
    uint32_t sent = 0;
    struct ps_tx_entry *e;

    if (port->n_txq == PS_TXQ_LEN) {
        /* Borrowed frames stay valid until the RX release, so sending early
         * is safe; it only gives up some batching. */
        sent = ps_port_tx_flush(port);
    }
    e = &port->txq[port->n_txq];
    e->size = frame->size;
    e->vnet = frame->vnet;
    if (stable) {
        e->data = frame->data;
        e->copy = NULL;
    } else {
        e->copy = malloc(frame->size ? frame->size : 1);
        if (!e->copy) {
            port->stats.tx_dropped++;
            return sent;
        }
        memcpy(e->copy, frame->data, frame->size);
        e->data = e->copy;
    }
    port->n_txq++;
    return sent;
}

bool
ps_fd_clear_error(int fd)
{
    int error;
    socklen_t len = sizeof error;

    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0;
}

void
ps_port_update_stats(struct ps_port *port)
{
    if (port->kind == PS_PORT_AFPACKET) {
        afpacket_update_stats(port);
    } else if (port->kind == PS_PORT_AFXDP) {
        ps_xdp_update_stats(port);
    }
}
