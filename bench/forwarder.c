/* forwarder.c: the I/O ceiling for AF_PACKET on this machine, kept beside the
 * benchmarks as the row every forwarder is compared with.
 *
 *     cc -O2 -o forwarder bench/forwarder.c && ./forwarder IFACE_A IFACE_B
 *
 * Every frame that arrives on one interface leaves by the other, unparsed and
 * unchanged: a TPACKET_V3 RX ring per interface (the kernel fills blocks of
 * frames, one poll() wakes us for a whole block) and one sendmmsg() per block
 * toward the other side.  This is the least work a userspace forwarder on
 * AF_PACKET can do, so pyswitch's figures are read as a fraction of it.
 *
 * The block timeout is 1 ms: at light load a frame waits at most that long
 * for its block to be handed over (which is what latency costs a TPACKET_V3
 * reader).  Runs until SIGINT/SIGTERM; prints the frames it forwarded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define BLOCK_SIZE (1u << 18)       /* 256 KiB: a few thousand 64-byte frames */
#define BLOCKS 64
#define FRAME_SIZE 2048             /* TPACKET_V3 ignores it for packing, but the kernel checks it */
#define BLOCK_TIMEOUT_MS 1
#define MAX_BURST 1024              /* frames per sendmmsg() */

struct side {
    int fd;
    int ifindex;
    uint8_t *ring;
    unsigned int block;             /* the next block to read */
    struct sockaddr_ll to;          /* where frames to this side are sent */
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static void
open_side(struct side *s, const char *ifname)
{
    struct tpacket_req3 req = {
        .tp_block_size = BLOCK_SIZE, .tp_block_nr = BLOCKS, .tp_frame_size = FRAME_SIZE,
        .tp_frame_nr = BLOCK_SIZE / FRAME_SIZE * BLOCKS, .tp_retire_blk_tov = BLOCK_TIMEOUT_MS,
    };
    int version = TPACKET_V3;
    int one = 1;
    struct sockaddr_ll bind_to;

    s->ifindex = if_nametoindex(ifname);
    if (!s->ifindex) {
        die(ifname);
    }
    s->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s->fd < 0) {
        die("socket");
    }
    if (setsockopt(s->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0
        || setsockopt(s->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        die("PACKET_RX_RING");
    }
    /* Our own sends must not come back to us as received frames, and go straight to the driver (no qdisc:
     * a forwarder has its own queue, the RX ring). */
    setsockopt(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    setsockopt(s->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    s->ring = mmap(NULL, (size_t) BLOCK_SIZE * BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, s->fd, 0);
    if (s->ring == MAP_FAILED) {
        s->ring = mmap(NULL, (size_t) BLOCK_SIZE * BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
        if (s->ring == MAP_FAILED) {
            die("mmap");
        }
    }
    memset(&bind_to, 0, sizeof bind_to);
    bind_to.sll_family = AF_PACKET;
    bind_to.sll_protocol = htons(ETH_P_ALL);
    bind_to.sll_ifindex = s->ifindex;
    if (bind(s->fd, (struct sockaddr *) &bind_to, sizeof bind_to) < 0) {
        die("bind");
    }
    memset(&s->to, 0, sizeof s->to);
    s->to.sll_family = AF_PACKET;
    s->to.sll_ifindex = s->ifindex;
    s->to.sll_halen = ETH_ALEN;
}

/* Sends 'n' prepared frames to 'to'; returns how many the kernel took (a
 * full TX queue drops the rest, as a switch would). */
static unsigned long
send_burst(struct side *to, struct mmsghdr *msgs, unsigned int n)
{
    int sent = n ? sendmmsg(to->fd, msgs, n, MSG_DONTWAIT) : 0;

    return sent > 0 ? (unsigned long) sent : 0;
}

/* Sends every frame of the ready blocks of 'from' to 'to'; returns how many. */
static unsigned long
forward_blocks(struct side *from, struct side *to)
{
    static struct mmsghdr msgs[MAX_BURST];
    static struct iovec iovs[MAX_BURST];
    unsigned long total = 0;

    for (;;) {
        struct tpacket_block_desc *block = (void *) (from->ring + (size_t) from->block * BLOCK_SIZE);
        struct tpacket3_hdr *frame;
        unsigned int n = 0;

        if (!(block->hdr.bh1.block_status & TP_STATUS_USER)) {
            return total;
        }
        frame = (void *) ((uint8_t *) block + block->hdr.bh1.offset_to_first_pkt);
        for (uint32_t i = 0; i < block->hdr.bh1.num_pkts; i++) {
            iovs[n].iov_base = (uint8_t *) frame + frame->tp_mac;
            iovs[n].iov_len = frame->tp_snaplen;
            memset(&msgs[n], 0, sizeof msgs[n]);
            msgs[n].msg_hdr.msg_iov = &iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            msgs[n].msg_hdr.msg_name = &to->to;
            msgs[n].msg_hdr.msg_namelen = sizeof to->to;
            if (++n == MAX_BURST) {
                total += send_burst(to, msgs, n);
                n = 0;
            }
            frame = (void *) ((uint8_t *) frame + frame->tp_next_offset);
        }
        total += send_burst(to, msgs, n);
        __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        from->block = (from->block + 1) % BLOCKS;
    }
}

int
main(int argc, char **argv)
{
    struct side sides[2];
    struct pollfd fds[2];
    unsigned long forwarded = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s IFACE_A IFACE_B\n", argv[0]);
        return 2;
    }
    open_side(&sides[0], argv[1]);
    open_side(&sides[1], argv[2]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        for (int i = 0; i < 2; i++) {
            fds[i].fd = sides[i].fd;
            fds[i].events = POLLIN | POLLERR;
            fds[i].revents = 0;
        }
        if (poll(fds, 2, 100) < 0 && errno != EINTR) {
            die("poll");
        }
        forwarded += forward_blocks(&sides[0], &sides[1]);
        forwarded += forward_blocks(&sides[1], &sides[0]);
    }
    printf("forwarded %lu\n", forwarded);
    return 0;
}
