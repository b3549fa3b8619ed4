/* tap.h: port mirrors and live captures, the datapath's two ways of showing a
 * port's traffic (docs/OBSERVABILITY_CAPTURE.md).
 *
 * A mirror sends a copy of what a port receives, sends, or both, out of
 * another port (a monitoring host's).  A capture copies the frames of a port
 * that its classic BPF filter accepts into a buffer the slow path reads, which
 * hands them to `pyswitch capture`.  Both hook the same two places: a frame as
 * a port hands it over, before it is parsed, and a frame as it is queued for
 * sending.  When no port is tapped each place costs one test of a bitmap.
 *
 * The part between the cdef markers is cffi's (csrc/build_ffi.py).  The
 * Python twin is pyswitch/refpath/taps.py.
 */
#ifndef PS_TAP_H
#define PS_TAP_H 1

#include <stdbool.h>
#include <stdint.h>

#include "bpf.h"

/* cdef begin */

#define PS_TAP_IN 1                     /* what a port receives */
#define PS_TAP_OUT 2                    /* what the datapath sends out of it */
#define PS_MAX_CAPTURES 8               /* captures at once, over all ports */
#define PS_CAPTURE_MAX_RECORDS 8192     /* copies one datapath (one worker) holds until they are read */
#define PS_CAPTURE_ARENA 8388608        /* bytes of copies one datapath holds until they are read */
#define PS_CAPTURE_MAX_SNAPLEN 262144   /* the most bytes of one frame a capture copies (tcpdump's default) */

/* One copied frame.  'data' points into the buffer it came from and stays
 * valid until ps_dp_capture_clear() of that buffer. */
struct ps_capture_record {
    uint8_t capture;                    /* slot 0..PS_MAX_CAPTURES-1 */
    uint8_t direction;                  /* PS_TAP_IN or PS_TAP_OUT */
    uint16_t port_no;
    uint32_t wire_len;                  /* the frame's bytes */
    uint32_t cap_len;                   /* of them, copied at 'data' */
    int64_t ts_ns;                      /* CLOCK_REALTIME when it was copied */
    const uint8_t *data;
};

/* Mirrors.  ps_dp_mirror_set() sends a copy of every frame port 'port_no'
 * receives out of the ports in bitmap 'to_on_in', and of every frame sent out
 * of it out of those in 'to_on_out' (0 and 0: no mirror).  A mirror's target
 * is nobody's source: 0, or -EINVAL for a port number out of range, a source
 * among its own targets, a target that is a source or a source that is a
 * target.  The copy of a received frame is the frame as it came, before any
 * action rewrote it; a copy of a sent frame is the frame as it leaves. */
int ps_dp_mirror_set(struct ps_dp *dp, uint16_t port_no, uint64_t to_on_in, uint64_t to_on_out);

/* Captures.  ps_dp_capture_add() starts capture 'slot' on port 'port_no' for
 * 'directions' (PS_TAP_IN | PS_TAP_OUT): every frame 'filter' accepts
 * (filter_len 0: every frame) is copied, at most 'snaplen' bytes of it and no
 * more than the filter's return value, with its counters at zero.  0, or
 * -EINVAL (slot, port, directions, snaplen 1..PS_CAPTURE_MAX_SNAPLEN, a
 * filter ps_bpf_check() refuses), -EBUSY (the slot is in use), -ENOMEM.
 * ps_dp_capture_del() stops it (0, -ENOENT); copies already made stay
 * until read.  Copies are held in buffers: the datapath's own (0) and, with
 * workers, one per worker (1..n); ps_dp_capture_buffers() says how many,
 * ps_dp_capture_records() points '*out' at a buffer's copies in the order
 * they were made and returns how many, ps_dp_capture_clear() empties it.  A
 * copy that does not fit is counted in 'dropped'; ps_dp_capture_counts()
 * sums a slot's counters over the buffers (-EINVAL for a bad slot).  The
 * slow path reads while it holds the world (workers.c): no worker writes. */
int ps_dp_capture_add(struct ps_dp *dp, uint32_t slot, uint16_t port_no, uint32_t directions, uint32_t snaplen,
                      const struct ps_bpf_insn *filter, uint32_t filter_len);
int ps_dp_capture_del(struct ps_dp *dp, uint32_t slot);
uint32_t ps_dp_capture_buffers(const struct ps_dp *dp);
uint32_t ps_dp_capture_records(struct ps_dp *dp, uint32_t buffer, struct ps_capture_record **out);
void ps_dp_capture_clear(struct ps_dp *dp, uint32_t buffer);
int ps_dp_capture_counts(const struct ps_dp *dp, uint32_t slot, uint64_t *captured, uint64_t *dropped);

/* cdef end */

struct ps_dp;

/* One capture's rule; 'filter' is a copy the taps own. */
struct ps_capture {
    bool active;
    uint16_t port_no;
    uint8_t directions;                 /* PS_TAP_* */
    uint32_t snaplen;
    struct ps_bpf_insn *filter;         /* NULL: every frame */
    uint32_t filter_len;
};

/* What is tapped, shared by a datapath and its workers and written only by
 * the slow path while it holds the world.  'watch_in' and 'watch_out' are the
 * one test the forwarding path makes: ports some mirror or capture wants. */
struct ps_taps {
    uint64_t watch_in;                  /* ports whose received frames are wanted (bit per port) */
    uint64_t watch_out;                 /* ports whose sent frames are wanted */
    uint64_t mirror_in[PS_MAX_PORTS];   /* per source: the targets of what it receives */
    uint64_t mirror_out[PS_MAX_PORTS];  /* per source: the targets of what it sends */
    uint8_t capture_in[PS_MAX_PORTS];   /* per port: the capture slots (bits) on what it receives */
    uint8_t capture_out[PS_MAX_PORTS];  /* per port: the capture slots on what it sends */
    struct ps_capture captures[PS_MAX_CAPTURES];
};

/* One datapath's copies (each worker has its own: no lock on the way). */
struct ps_capbuf {
    struct ps_capture_record *records;  /* PS_CAPTURE_MAX_RECORDS, allocated at the first copy */
    uint8_t *arena;                     /* PS_CAPTURE_ARENA bytes for the copies, likewise */
    uint32_t n_records;
    uint32_t arena_used;
    uint64_t captured[PS_MAX_CAPTURES];
    uint64_t dropped[PS_MAX_CAPTURES];
};

struct ps_taps *ps_taps_new(void);
void ps_taps_free(struct ps_taps *taps);
int ps_taps_mirror_set(struct ps_taps *taps, uint16_t port_no, uint64_t to_on_in, uint64_t to_on_out);
int ps_taps_capture_add(struct ps_taps *taps, uint32_t slot, uint16_t port_no, uint32_t directions,
                        uint32_t snaplen, const struct ps_bpf_insn *filter, uint32_t filter_len);
int ps_taps_capture_del(struct ps_taps *taps, uint32_t slot);
/* Forgets every mirror and capture of a port that is deleted. */
void ps_taps_port_gone(struct ps_taps *taps, uint16_t port_no);

/* Copies 'size' bytes at 'data' for each capture in bitmap 'slots' whose
 * filter accepts them, as seen on 'port_no' in 'direction'. */
void ps_capbuf_copy(struct ps_capbuf *buf, const struct ps_taps *taps, uint8_t slots, uint8_t direction,
                    uint16_t port_no, const uint8_t *data, uint32_t size);
void ps_capbuf_clear(struct ps_capbuf *buf);
void ps_capbuf_reset_slot(struct ps_capbuf *buf, uint32_t slot);
/* Frees its memory (the counters stay); the next copy allocates it again. */
void ps_capbuf_release(struct ps_capbuf *buf);
/* More than half full: the slow path should read it soon. */
bool ps_capbuf_pressing(const struct ps_capbuf *buf);

#endif /* PS_TAP_H */
