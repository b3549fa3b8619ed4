/* ps_consts.h: internal constants and tunables of the fast path.
 *
 * The contract's constants (PS_BATCH, PS_FRAME_MAX, ...) live in pyswitch.h
 * because Python must see them; these are private to csrc/.  A tunable can be
 * overridden at build time, e.g. PYSWITCH_CFLAGS=-DPS_EMC_WAYS=1.
 */
#ifndef PS_CONSTS_H
#define PS_CONSTS_H 1

/* Bytes kept free in front of every received frame, so that PUSH_VLAN (and
 * restoring a tag the kernel stripped) can grow the frame in place instead of
 * copying it.  At least 4 * (PS_MAX_ACTIONS + 1): every action a PUSH_VLAN,
 * plus one restored tag. */
#ifndef PS_HEADROOM
#define PS_HEADROOM 128
#endif
_Static_assert(PS_HEADROOM >= 4 * (16 + 1), "headroom must hold 17 VLAN tags");

/* Ways of the exact-match cache: 2 lets a hot flow survive one colliding
 * newcomer, at the price of a second 64-byte compare on a miss. */
#ifndef PS_EMC_WAYS
#define PS_EMC_WAYS 2
#endif

/* Seeds of the key hashes.  The EMC and the subtables use different seeds so
 * that keys colliding in one do not also collide in the other. */
#define PS_HASH_SEED_EMC 0x9e3779b97f4a7c15ULL
#define PS_HASH_SEED_SUBTABLE 0xc2b2ae3d27d4eb4fULL

/* Initial buckets of a subtable's hash table (a power of two); it doubles
 * whenever it holds more flows than buckets. */
#ifndef PS_SUBTABLE_MIN_BUCKETS
#define PS_SUBTABLE_MIN_BUCKETS 16
#endif

/* RX ring frames of an AF_PACKET port when ps_dp_port_add is given 0. */
#ifndef PS_RING_FRAMES_DEFAULT
#define PS_RING_FRAMES_DEFAULT 2048
#endif

/* The smallest frame an AF_PACKET ring frame holds whole, whatever the
 * port's MTU: 1500 bytes of payload, Ethernet and two VLAN tags. */
#ifndef PS_RING_SNAP_MIN
#define PS_RING_SNAP_MIN 1522
#endif

/* How long an empty AF_PACKET ring frame is waited for once the frame after
 * it is filled, before the reader passes it by (io.c, afpacket_hole_passed). */
#ifndef PS_RING_HOLE_GRACE_US
#define PS_RING_HOLE_GRACE_US 1000
#endif

/* Frames too big for an AF_PACKET ring frame (GSO super-frames) are read
 * from the socket into one of this many slots per batch; a batch ends early
 * when they are used up.  The socket's receive buffer, which holds those
 * frames until they are read, is this big. */
#ifndef PS_RX_COPY_SLOTS
#define PS_RX_COPY_SLOTS 16
#endif
#define PS_RX_COPY_SLOT_SIZE (PS_HEADROOM + PS_VNET_HDR_SIZE + PS_FRAME_MAX)
#ifndef PS_RX_COPY_RCVBUF
#define PS_RX_COPY_RCVBUF (8 << 20)
#endif

/* Largest AF_PACKET ring block: several frames share a block so that the
 * kernel's power-of-two page allocation wastes little. */
#ifndef PS_RING_BLOCK_MAX
#define PS_RING_BLOCK_MAX (1u << 20)
#endif

/* Bytes reserved in a ring frame for struct tpacket2_hdr, struct sockaddr_ll
 * and the kernel's alignment before PACKET_RESERVE and the vnet header. */
#define PS_RING_HDR_ROOM 128

/* AF_XDP: receive chunks per queue (and entries of its fill and RX rings) at
 * least, whatever ring_frames asks: without GSO a TCP stream is a frame per
 * 1448 bytes, and the ring must hold a burst of them while the datapath is
 * busy elsewhere.  At least 2 * PS_BATCH, so the kernel has chunks left while
 * a batch holds some. */
#ifndef PS_XDP_RX_FRAMES_MIN
#define PS_XDP_RX_FRAMES_MIN 2048
#endif

/* AF_XDP: transmit chunks of a port (and entries of its TX and completion
 * rings): a whole transmit queue of outputs, several of them GSO frames cut
 * into segments, while the kernel still holds earlier ones. */
#ifndef PS_XDP_TX_FRAMES
#define PS_XDP_TX_FRAMES 1024
#endif

/* AF_XDP: receive queues one port serves, with a socket and a UMEM each.  An
 * interface with more is refused, since a queue without a socket would hand
 * its frames to the kernel's stack, past the switch. */
#ifndef PS_XDP_MAX_QUEUES
#define PS_XDP_MAX_QUEUES 16
#endif

/* AF_XDP: sendto() calls one transmit flush makes at most while the kernel
 * keeps taking frames in copy mode. */
#define PS_XDP_KICKS_MAX 64

/* Frames a memory port's receive and transmit queues hold; more are dropped
 * and counted (rx_dropped, tx_dropped). */
#ifndef PS_MEM_QUEUE_LEN
#define PS_MEM_QUEUE_LEN 4096
#endif

/* Outputs a port's transmit queue holds before it is flushed early (the
 * frames stay valid: RX buffers are released only after the final flush). */
#ifndef PS_TXQ_LEN
#define PS_TXQ_LEN 256
#endif

/* Under load ps_dp_serve() looks at the wake fds (the control socket) this
 * often, so a `pyswitch show` is answered within about a millisecond. */
#ifndef PS_SERVE_WAKE_CHECK_US
#define PS_SERVE_WAKE_CHECK_US 1000
#endif

/* Bytes in a cache line: what a worker writes on every frame stays on lines
 * of its own (false sharing between workers costs a miss per write). */
#define PS_CACHE_LINE 64

/* Wake fds ps_dp_poll() watches besides the ports. */
#ifndef PS_MAX_WAKE_FDS
#define PS_MAX_WAKE_FDS 8
#endif

/* Extension headers the IPv6 parser walks before giving up (PS_PE_IP6_EXT). */
#define PS_IP6_MAX_EXT_HDRS 8

/* Bits of the TCP header's 16-bit control word that are flags. */
#define PS_TCP_FLAGS_MASK 0x0fff

#endif /* PS_CONSTS_H */
