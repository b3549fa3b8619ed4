/* tap.c: the rules of mirrors and captures, and the buffers captures copy
 * into (see tap.h).  datapath.c decides where frames are tapped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyswitch.h"
#include "tap.h"

#define PORT_BIT(p) (UINT64_C(1) << (p))

struct ps_taps *
ps_taps_new(void)
{
    return calloc(1, sizeof(struct ps_taps));
}

void
ps_taps_free(struct ps_taps *taps)
{
    if (!taps) {
        return;
    }
    for (int i = 0; i < PS_MAX_CAPTURES; i++) {
        free(taps->captures[i].filter);
    }
    free(taps);
}

/* Recomputes the two bitmaps the forwarding path tests. */
static void
rewatch(struct ps_taps *taps)
{
    taps->watch_in = 0;
    taps->watch_out = 0;
    for (int p = 0; p < PS_MAX_PORTS; p++) {
        if (taps->mirror_in[p] || taps->capture_in[p]) {
            taps->watch_in |= PORT_BIT(p);
        }
        if (taps->mirror_out[p] || taps->capture_out[p]) {
            taps->watch_out |= PORT_BIT(p);
        }
    }
}

int
ps_taps_mirror_set(struct ps_taps *taps, uint16_t port_no, uint64_t to_on_in, uint64_t to_on_out)
{
    uint64_t targets = to_on_in | to_on_out, other_targets = 0, other_sources = 0;

    if (port_no >= PS_MAX_PORTS || (targets & PORT_BIT(port_no))) {
        return -EINVAL;
    }
    for (int p = 0; p < PS_MAX_PORTS; p++) {
        if (p != port_no) {
            other_targets |= taps->mirror_in[p] | taps->mirror_out[p];
            if (taps->mirror_in[p] | taps->mirror_out[p]) {
                other_sources |= PORT_BIT(p);
            }
        }
    }
    /* A target that were a source would mirror its mirror's copies: refused,
     * so that one frame is copied at most once per target. */
    if (targets && ((other_targets & PORT_BIT(port_no)) || (targets & other_sources))) {
        return -EINVAL;
    }
    taps->mirror_in[port_no] = to_on_in;
    taps->mirror_out[port_no] = to_on_out;
    rewatch(taps);
    return 0;
}

int
ps_taps_capture_add(struct ps_taps *taps, uint32_t slot, uint16_t port_no, uint32_t directions,
                    uint32_t snaplen, const struct ps_bpf_insn *filter, uint32_t filter_len)
{
    struct ps_capture *c;
    struct ps_bpf_insn *copy = NULL;

    if (slot >= PS_MAX_CAPTURES || port_no >= PS_MAX_PORTS || !directions
        || (directions & ~(uint32_t) (PS_TAP_IN | PS_TAP_OUT)) || !snaplen || snaplen > PS_CAPTURE_MAX_SNAPLEN
        || (filter_len && (!filter || ps_bpf_check(filter, filter_len) != 0))) {
        return -EINVAL;
    }
    c = &taps->captures[slot];
    if (c->active) {
        return -EBUSY;
    }
    if (filter_len) {
        copy = malloc(filter_len * sizeof *copy);
        if (!copy) {
            return -ENOMEM;
        }
        memcpy(copy, filter, filter_len * sizeof *copy);
    }
    *c = (struct ps_capture) {
        .active = true, .port_no = port_no, .directions = (uint8_t) directions, .snaplen = snaplen,
        .filter = copy, .filter_len = filter_len,
    };
    if (directions & PS_TAP_IN) {
        taps->capture_in[port_no] |= (uint8_t) (1u << slot);
    }
    if (directions & PS_TAP_OUT) {
        taps->capture_out[port_no] |= (uint8_t) (1u << slot);
    }
    rewatch(taps);
    return 0;
}

int
ps_taps_capture_del(struct ps_taps *taps, uint32_t slot)
{
    struct ps_capture *c;

    if (slot >= PS_MAX_CAPTURES || !taps->captures[slot].active) {
        return -ENOENT;
    }
    c = &taps->captures[slot];
    taps->capture_in[c->port_no] &= (uint8_t) ~(1u << slot);
    taps->capture_out[c->port_no] &= (uint8_t) ~(1u << slot);
    free(c->filter);
    memset(c, 0, sizeof *c);
    rewatch(taps);
    return 0;
}

void
ps_taps_port_gone(struct ps_taps *taps, uint16_t port_no)
{
    if (port_no >= PS_MAX_PORTS) {
        return;
    }
    taps->mirror_in[port_no] = 0;
    taps->mirror_out[port_no] = 0;
    for (int p = 0; p < PS_MAX_PORTS; p++) {
        taps->mirror_in[p] &= ~PORT_BIT(port_no);
        taps->mirror_out[p] &= ~PORT_BIT(port_no);
    }
    for (uint32_t slot = 0; slot < PS_MAX_CAPTURES; slot++) {
        if (taps->captures[slot].active && taps->captures[slot].port_no == port_no) {
            ps_taps_capture_del(taps, slot);
        }
    }
    rewatch(taps);
}

/* The buffer's memory, allocated at its first copy so that a switch nobody
 * captures on never holds it. */
static bool
capbuf_ready(struct ps_capbuf *buf)
{
    if (!buf->records) {
        buf->records = malloc(PS_CAPTURE_MAX_RECORDS * sizeof *buf->records);
        buf->arena = malloc(PS_CAPTURE_ARENA);
        if (!buf->records || !buf->arena) {
            ps_capbuf_release(buf);
            return false;
        }
    }
    return true;
}

static int64_t
realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
ps_capbuf_copy(struct ps_capbuf *buf, const struct ps_taps *taps, uint8_t slots, uint8_t direction,
               uint16_t port_no, const uint8_t *data, uint32_t size)
{
    int64_t now_ns = -1;                /* read once, at the first copy */

    for (uint32_t slot = 0; slots; slot++, slots >>= 1) {
        const struct ps_capture *c = &taps->captures[slot];
        uint32_t len;

        if (!(slots & 1)) {
            continue;
        }
        len = c->filter_len ? ps_bpf_run(c->filter, c->filter_len, data, size, size) : UINT32_MAX;
        if (!len) {
            continue;
        }
        len = len < c->snaplen ? len : c->snaplen;
        len = len < size ? len : size;
        if (!capbuf_ready(buf) || buf->n_records == PS_CAPTURE_MAX_RECORDS
            || PS_CAPTURE_ARENA - buf->arena_used < len) {
            buf->dropped[slot]++;
            continue;
        }
        if (now_ns < 0) {
            now_ns = realtime_ns();
        }
        memcpy(buf->arena + buf->arena_used, data, len);
        buf->records[buf->n_records++] = (struct ps_capture_record) {
            .capture = (uint8_t) slot, .direction = direction, .port_no = port_no, .wire_len = size,
            .cap_len = len, .ts_ns = now_ns, .data = buf->arena + buf->arena_used,
        };
        buf->arena_used += len;
        buf->captured[slot]++;
    }
}

void
ps_capbuf_clear(struct ps_capbuf *buf)
{
    buf->n_records = 0;
    buf->arena_used = 0;
}

void
ps_capbuf_reset_slot(struct ps_capbuf *buf, uint32_t slot)
{
    buf->captured[slot] = 0;
    buf->dropped[slot] = 0;
}

void
ps_capbuf_release(struct ps_capbuf *buf)
{
    free(buf->records);
    free(buf->arena);
    buf->records = NULL;
    buf->arena = NULL;
    buf->n_records = 0;
    buf->arena_used = 0;
}

bool
ps_capbuf_pressing(const struct ps_capbuf *buf)
{
    return buf->n_records > PS_CAPTURE_MAX_RECORDS / 2 || buf->arena_used > PS_CAPTURE_ARENA / 2;
}
