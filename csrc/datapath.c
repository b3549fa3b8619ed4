/* datapath.c: ports, one flow table and the batch loop (docs/DATAPATH.md, "Datapath").
 *
 * One run takes up to PS_BATCH frames from each port in port-number order,
 * parses each, looks it up and runs the flow's actions in place, or copies it
 * to the upcall queue on a miss.  Outputs are queued per port and sent once
 * at the end of the run; only then are the received frames given back, so a
 * queued output may simply point at the frame it came from.
 *
 * With workers (ps_dp_set_workers(), workers.c) this datapath is the slow
 * path's: it owns the tables and worker 0's ports, and each worker thread
 * runs a datapath of its own that shares the tables ('owner'), looks up in
 * its own flow-table lane and has its own sockets, batch, upcall queue and
 * counters.  run, poll and serve are then the workers', and the upcalls the
 * slow path reads are theirs, gathered.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actions.h"
#include "conntrack.h"
#include "flowtable.h"
#include "io.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "ring.h"
#include "route.h"
#include "tap.h"
#include "workers.h"
#include "xdp.h"

struct ps_dp {
    struct ps_port *ports[PS_MAX_PORTS];   /* attached ports by number, NULL if none */
    struct ps_flowtable *ft;               /* the flows */
    struct ps_routes *routes;              /* what PS_ACT_ROUTE consults (route.c) */
    struct ps_conntrack *ct;               /* what PS_ACT_LB and LB_REPLY consult (conntrack.c) */
    struct ps_rings *rings;                /* VIPs whose new connections LB schedules itself (ring.c) */
    struct ps_taps *taps;                  /* mirrors and captures (tap.c): the owner's, shared */
    struct ps_capbuf capture;              /* this datapath's capture copies (a worker's are its own) */
    int wake_fds[PS_MAX_WAKE_FDS];         /* extra fds ps_dp_poll() wakes up for */
    uint32_t n_wake_fds;                   /* entries used in 'wake_fds' */
    struct ps_upcall *upcalls;             /* max_upcalls slots; 'data' fixed up in ps_dp_upcalls() */
    size_t *upcall_ofs;                    /* per upcall: offset of its bytes in 'arena' */
    uint32_t max_upcalls;                  /* the queue's bound */
    uint32_t n_upcalls;                    /* upcalls queued since the run started */
    uint32_t port_upcalls[PS_MAX_PORTS];   /* of them, how many each input port queued */
    uint32_t hold_us;                      /* serve: forward on this long once upcalls wait (ps_dp_set_hold) */
    uint8_t *arena;                        /* copies of upcalled frames, back to back */
    size_t arena_size;                     /* bytes allocated at 'arena' */
    size_t arena_used;                     /* bytes used at 'arena' */
    struct ps_frame rx[PS_BATCH];          /* the batch being processed */
    struct ps_dp_stats stats;              /* counters */
    uint32_t ft_lane;                      /* the flow-table lane its lookups use: its worker's, or 0 */
    uint64_t rx_ports;                     /* ports it receives on (bitmap); a worker only sends on a TAP port */
    uint64_t borrowed_ports;               /* ports that are another datapath's (worker 0 uses the owner's) */
    struct ps_dp *owner;                   /* a worker's: the datapath whose tables it shares; else NULL */
    struct ps_workers *workers;            /* worker threads that run the ports, or NULL: the caller does */
};

/* What the datapath's sink needs to know about the frame being executed. */
struct exec_ctx {
    struct ps_dp *dp;                      /* where outputs and upcalls go */
    uint16_t in_port;                      /* the frame's input port */
    const struct ps_flow_key *key;         /* its key, for upcalls from UPCALL and ROUTE */
    int64_t now_ms;                        /* the run's (or execute's) clock, for connections */
};

/* Zeroed memory on cache lines of its own.  A port and a worker's datapath
 * are written on every frame by one worker, and are allocated right after
 * another worker's: sharing a line would make them trade it on every frame. */
static void *
calloc_lines(size_t size)
{
    size_t rounded = (size + PS_CACHE_LINE - 1) / PS_CACHE_LINE * PS_CACHE_LINE;
    void *p = aligned_alloc(PS_CACHE_LINE, rounded);

    if (p) {
        memset(p, 0, rounded);
    }
    return p;
}

struct ps_dp *
ps_dp_new(uint32_t max_flows, uint32_t emc_entries, uint32_t max_upcalls)
{
    struct ps_dp *dp = calloc(1, sizeof *dp);

    if (!dp) {
        return NULL;
    }
    dp->ft = ps_ft_new(max_flows, emc_entries);
    dp->routes = ps_routes_new();
    dp->ct = ps_conntrack_new();
    dp->rings = ps_rings_new();
    dp->taps = ps_taps_new();
    dp->upcalls = calloc(max_upcalls ? max_upcalls : 1, sizeof *dp->upcalls);
    dp->upcall_ofs = calloc(max_upcalls ? max_upcalls : 1, sizeof *dp->upcall_ofs);
    if (!dp->ft || !dp->routes || !dp->ct || !dp->rings || !dp->taps || !dp->upcalls || !dp->upcall_ofs) {
        ps_dp_free(dp);
        return NULL;
    }
    dp->max_upcalls = max_upcalls;
    return dp;
}

void
ps_dp_free(struct ps_dp *dp)
{
    if (!dp) {
        return;
    }
    /* The threads first: they use the ports and tables freed below. */
    ps_workers_free(dp->workers);
    dp->workers = NULL;
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        ps_dp_port_del(dp, i);
    }
    if (!dp->owner) {
        ps_ft_free(dp->ft);
        ps_routes_free(dp->routes);
        ps_conntrack_free(dp->ct);
        ps_rings_free(dp->rings);
        ps_taps_free(dp->taps);
    }
    ps_capbuf_release(&dp->capture);
    free(dp->upcalls);
    free(dp->upcall_ofs);
    free(dp->arena);
    free(dp);
}

const char *
ps_version(void)
{
    return PS_VERSION_STR;
}

struct ps_flowtable *
ps_dp_flowtable(struct ps_dp *dp)
{
    return dp->ft;
}

struct ps_routes *
ps_dp_routes(struct ps_dp *dp)
{
    return dp->routes;
}

struct ps_conntrack *
ps_dp_conntrack(const struct ps_dp *dp)
{
    return dp->ct;
}

struct ps_rings *
ps_dp_rings(const struct ps_dp *dp)
{
    return dp->rings;
}

void
ps_dp_get_stats(const struct ps_dp *dp, struct ps_dp_stats *out)
{
    *out = dp->stats;
    if (dp->workers) {
        ps_workers_add_stats(dp->workers, out);
    }
}

/* Attaches port 'port_no' of 'kind' (PS_PORT_*): an AF_PACKET socket on
 * interface 'ifindex_or_fd' with an RX ring of 'ring_frames' frames (0: the
 * default), AF_XDP sockets on its receive queues (xdp.c; 'ring_frames' sizes
 * their receive rings, from 2048 up), an open TAP fd, or memory queues.
 * 'max_frame' (0: none) bounds non-GSO frames the parser accepts.  Returns 0
 * or a negative errno. */
int
ps_dp_port_add(struct ps_dp *dp, uint16_t port_no, int kind, int ifindex_or_fd, uint32_t ring_frames,
               uint32_t max_frame)
{
    struct ps_port *port;
    int error;

    if (port_no >= PS_MAX_PORTS) {
        return -EINVAL;
    }
    if (dp->ports[port_no]) {
        return -EEXIST;
    }
    port = calloc_lines(sizeof *port);
    if (!port) {
        return -ENOMEM;
    }
    port->port_no = port_no;
    port->kind = kind;
    port->max_frame = max_frame;
    error = ps_port_open(port, ifindex_or_fd, ring_frames);
    if (error) {
        free(port);
        return error;
    }
    dp->ports[port_no] = port;
    dp->rx_ports |= UINT64_C(1) << port_no;
    if (dp->workers) {
        error = ps_workers_port_add(dp->workers, port_no, kind, ifindex_or_fd, ring_frames, max_frame);
        if (error) {
            ps_dp_port_del(dp, port_no);
            return error;
        }
    }
    return 0;
}

int
ps_dp_port_del(struct ps_dp *dp, uint16_t port_no)
{
    uint64_t bit;

    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        return -ENOENT;
    }
    bit = UINT64_C(1) << port_no;
    if (dp->workers) {
        ps_workers_port_del(dp->workers, port_no);
    }
    if (!(dp->borrowed_ports & bit)) {
        ps_port_close(dp->ports[port_no]);
        free(dp->ports[port_no]);
    }
    dp->ports[port_no] = NULL;
    dp->rx_ports &= ~bit;
    dp->borrowed_ports &= ~bit;
    if (!dp->owner) {
        ps_taps_port_gone(dp->taps, port_no);
    }
    return 0;
}

int
ps_dp_port_get_stats(struct ps_dp *dp, uint16_t port_no, struct ps_port_stats *out)
{
    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        return -ENOENT;
    }
    ps_port_update_stats(dp->ports[port_no]);
    *out = dp->ports[port_no]->stats;
    if (dp->workers) {
        ps_workers_add_port_stats(dp->workers, port_no, out);
    }
    return 0;
}

int
ps_dp_port_xdp_mode(struct ps_dp *dp, uint16_t port_no)
{
    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        return -ENOENT;
    }
    return dp->ports[port_no]->kind == PS_PORT_AFXDP ? ps_xdp_mode(dp->ports[port_no]) : 0;
}

int
ps_dp_add_wake_fd(struct ps_dp *dp, int fd)
{
    for (uint32_t i = 0; i < dp->n_wake_fds; i++) {
        if (dp->wake_fds[i] == fd) {
            return -EEXIST;
        }
    }
    if (dp->n_wake_fds == PS_MAX_WAKE_FDS) {
        return -ENOSPC;
    }
    dp->wake_fds[dp->n_wake_fds++] = fd;
    return 0;
}

int
ps_dp_del_wake_fd(struct ps_dp *dp, int fd)
{
    for (uint32_t i = 0; i < dp->n_wake_fds; i++) {
        if (dp->wake_fds[i] == fd) {
            dp->wake_fds[i] = dp->wake_fds[--dp->n_wake_fds];
            return 0;
        }
    }
    return -ENOENT;
}

/* Upcalls. */

/* Makes room for 'size' more bytes in the upcall arena.  Returns false if
 * there is none to be had.  The arena exists after the first call, even for
 * an empty frame: arena + offset must never be arithmetic on NULL, which C
 * leaves undefined (UBSan found it with a first upcall of 0 bytes). */
static bool
arena_reserve(struct ps_dp *dp, size_t size)
{
    if (!dp->arena || dp->arena_used + size > dp->arena_size) {
        size_t new_size = dp->arena_size ? dp->arena_size : 65536;
        uint8_t *arena;

        while (new_size < dp->arena_used + size) {
            new_size *= 2;
        }
        /* Moving the arena is fine: data pointers are set only when the
         * slow path asks for the upcalls. */
        arena = realloc(dp->arena, new_size);
        if (!arena) {
            return false;
        }
        dp->arena = arena;
        dp->arena_size = new_size;
    }
    return true;
}

/* Whether port 'in_port' has queued its share of the upcall queue: a port
 * takes at most 1/PS_UPCALL_PORT_SHARES of it, so that one port's flood of
 * misses (while serve() holds them: ps_dp_set_hold()) leaves room for the
 * others'.  The share is never less than a batch, what one run takes from a
 * port; frames the switch originates, whose input port is none, have none. */
static bool
port_share_used(const struct ps_dp *dp, uint16_t in_port)
{
    uint32_t share = dp->max_upcalls / PS_UPCALL_PORT_SHARES;

    return in_port < PS_MAX_PORTS && dp->port_upcalls[in_port] >= (share > PS_BATCH ? share : PS_BATCH);
}

static void
upcall_queue(struct ps_dp *dp, uint16_t in_port, uint16_t reason, uint32_t userdata,
             const struct ps_flow_key *key, const struct ps_frame *frame)
{
    struct ps_upcall *u;

    if (dp->n_upcalls >= dp->max_upcalls || port_share_used(dp, in_port) || !arena_reserve(dp, frame->size)) {
        dp->stats.upcall_dropped++;
        return;
    }
    if (in_port < PS_MAX_PORTS) {
        dp->port_upcalls[in_port]++;
    }
    u = &dp->upcalls[dp->n_upcalls];
    u->in_port = in_port;
    u->reason = reason;
    u->userdata = userdata;
    u->key = *key;
    u->vnet = frame->vnet;
    u->pad = 0;
    u->size = frame->size;
    u->data = NULL;
    dp->upcall_ofs[dp->n_upcalls++] = dp->arena_used;
    memcpy(dp->arena + dp->arena_used, frame->data, frame->size);
    dp->arena_used += frame->size;
    dp->stats.upcalls++;
}

/* Stores in '*out' the upcalls queued since the last run started and returns
 * how many.  They and their data stay valid until the next run. */
uint32_t
ps_dp_upcalls(struct ps_dp *dp, struct ps_upcall **out)
{
    for (uint32_t i = 0; i < dp->n_upcalls; i++) {
        dp->upcalls[i].data = dp->arena + dp->upcall_ofs[i];
    }
    *out = dp->upcalls;
    return dp->n_upcalls;
}

void
ps_dp_upcalls_clear(struct ps_dp *dp)
{
    dp->n_upcalls = 0;
    dp->arena_used = 0;
    memset(dp->port_upcalls, 0, sizeof dp->port_upcalls);
}

/* Makes ps_dp_serve() forward on for 'hold_us' microseconds after a run
 * queued upcalls, while frames keep coming, before it returns them: the slow
 * path passes how long its last turn took when it is overloaded, so that a
 * flood of misses cannot take more than about half of the core from the
 * traffic that stays in the fast path (the upcalls that do not fit meanwhile
 * are dropped and counted).  0, the default, returns at once.  With workers,
 * the slow path waits that long before it takes the world. */
void
ps_dp_set_hold(struct ps_dp *dp, uint32_t hold_us)
{
    dp->hold_us = hold_us;
}

uint32_t
ps_dp_hold(const struct ps_dp *dp)
{
    return dp->hold_us;
}

uint32_t
ps_dp_n_upcalls(const struct ps_dp *dp)
{
    return dp->n_upcalls;
}

/* Appends the upcalls of 'src' (a worker's) to those of 'dst' (the slow
 * path's), in order, and empties 'src'.  They were counted in 'src' when
 * queued; one that 'dst' has no room for counts in dst's upcall_dropped. */
void
ps_dp_upcalls_move(struct ps_dp *dst, struct ps_dp *src)
{
    for (uint32_t i = 0; i < src->n_upcalls; i++) {
        const struct ps_upcall *u = &src->upcalls[i];

        if (dst->n_upcalls >= dst->max_upcalls || !arena_reserve(dst, u->size)) {
            dst->stats.upcall_dropped++;
            continue;
        }
        dst->upcalls[dst->n_upcalls] = *u;
        dst->upcalls[dst->n_upcalls].data = NULL;
        dst->upcall_ofs[dst->n_upcalls++] = dst->arena_used;
        memcpy(dst->arena + dst->arena_used, src->arena + src->upcall_ofs[i], u->size);
        dst->arena_used += u->size;
    }
    ps_dp_upcalls_clear(src);
}

/* The sink that connects the executor to the ports. */

/* Queues 'frame' on port 'port_no' and hands a copy to the captures on what
 * it sends; returns the frames an early flush sent. */
static uint32_t
send_captured(struct ps_dp *dp, uint16_t port_no, const struct ps_frame *frame, bool stable)
{
    const struct ps_taps *taps = dp->taps;

    if (taps->capture_out[port_no]) {
        ps_capbuf_copy(&dp->capture, taps, taps->capture_out[port_no], PS_TAP_OUT, port_no, frame->data, frame->size);
    }
    return ps_port_tx_queue(dp->ports[port_no], frame, stable);
}

/* Sends a frame out of a tapped port: its captures, the frame, and the copies
 * its mirror adds.  A target is no source (ps_taps_mirror_set()), so its copy
 * is only captured.  Out of line, so that dp_output() stays as small as it was
 * without taps for every port nobody taps. */
static void __attribute__((noinline))
send_tapped(struct ps_dp *dp, uint16_t port_no, const struct ps_frame *frame, bool stable)
{
    uint64_t targets = dp->taps->mirror_out[port_no];

    dp->stats.tx_packets += send_captured(dp, port_no, frame, stable);
    while (targets) {
        uint16_t target = (uint16_t) __builtin_ctzll(targets);

        targets &= targets - 1;
        if (dp->ports[target]) {
            dp->stats.tx_packets += send_captured(dp, target, frame, stable);
        }
    }
}

/* The same for a frame as its port hands it over: the copies are of the frame
 * as it came, so they are taken before any action rewrites it in place. */
static void __attribute__((noinline))
tap_received(struct ps_dp *dp, uint16_t port_no, const struct ps_frame *frame)
{
    const struct ps_taps *taps = dp->taps;
    uint64_t targets = taps->mirror_in[port_no];

    if (taps->capture_in[port_no]) {
        ps_capbuf_copy(&dp->capture, taps, taps->capture_in[port_no], PS_TAP_IN, port_no, frame->data, frame->size);
    }
    while (targets) {
        uint16_t target = (uint16_t) __builtin_ctzll(targets);

        targets &= targets - 1;
        if (dp->ports[target]) {
            dp->stats.tx_packets += send_captured(dp, target, frame, false);
        }
    }
}

static void
dp_output(void *ctx_, uint16_t port_no, const struct ps_frame *frame, bool stable)
{
    struct exec_ctx *ctx = ctx_;
    struct ps_dp *dp = ctx->dp;

    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        dp->stats.bad_port++;
        return;
    }
    if (__builtin_expect((dp->taps->watch_out >> port_no) & 1, 0)) {
        send_tapped(dp, port_no, frame, stable);
        return;
    }
    dp->stats.tx_packets += ps_port_tx_queue(dp->ports[port_no], frame, stable);
}

static void
dp_upcall(void *ctx_, uint16_t reason, uint32_t userdata, const struct ps_frame *frame)
{
    struct exec_ctx *ctx = ctx_;

    upcall_queue(ctx->dp, ctx->in_port, reason, userdata, ctx->key, frame);
}

/* Carries out a verdict of ps_route_frame() or ps_lb_frame() on 'frame'.  An
 * upcall carries the frame unchanged (both write only when they forward) and
 * the key of the frame as it arrived.  Returns true if the frame was routed. */
static bool
dp_deliver(struct exec_ctx *ctx, enum ps_route_verdict verdict, const struct ps_route_result *result,
           struct ps_frame *frame, bool stable)
{
    switch (verdict) {
    case PS_ROUTE_FORWARD:
        dp_output(ctx, result->port, frame, stable);
        return true;
    case PS_ROUTE_UPCALL:
        dp_upcall(ctx, result->reason, result->userdata, frame);
        return false;
    case PS_ROUTE_DROP:
    default:
        return false;
    }
}

/* PS_ACT_ROUTE with the datapath's tables. */
static bool
dp_route(void *ctx_, struct ps_frame *frame, const uint8_t *via, bool stable)
{
    struct exec_ctx *ctx = ctx_;
    struct ps_route_result result;
    enum ps_route_verdict verdict = ps_route_frame(ctx->dp->routes, frame, via, &ctx->dp->stats, &result);

    return dp_deliver(ctx, verdict, &result, frame, stable);
}

/* PS_ACT_LB and PS_ACT_LB_REPLY with the datapath's connections and routes. */
static bool
dp_lb(void *ctx_, struct ps_frame *frame, const struct ps_action *action, bool stable)
{
    struct exec_ctx *ctx = ctx_;
    struct ps_dp *dp = ctx->dp;
    struct ps_route_result result;
    enum ps_route_verdict verdict = ps_lb_frame(dp->ct, dp->rings, dp->routes, frame, action, ctx->now_ms,
                                                &dp->stats, &result);

    return dp_deliver(ctx, verdict, &result, frame, stable);
}

static void
dp_drop(void *ctx_, enum ps_drop_reason reason)
{
    struct exec_ctx *ctx = ctx_;

    if (reason == PS_DROP_DECAP) {
        ctx->dp->stats.decap_errors++;
    }
}

static void
flush_all(struct ps_dp *dp)
{
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i]) {
            dp->stats.tx_packets += ps_port_tx_flush(dp->ports[i]);
        }
    }
}

/* Processes one batch of 'n' frames received on 'port'. */
static void
process_batch(struct ps_dp *dp, struct ps_port *port, uint32_t n, int64_t now_ms)
{
    struct exec_ctx ctx = { .dp = dp, .in_port = port->port_no, .now_ms = now_ms };
    struct ps_sink sink = {
        .output = dp_output, .upcall = dp_upcall, .route = dp_route, .lb = dp_lb, .drop = dp_drop, .ctx = &ctx,
    };
    struct ps_flow_key key;
    struct ps_parse_result result;

    ctx.key = &key;
    /* A tapped port's frames are copied as they came, before any of them is
     * processed (an action rewrites a frame in place); one test a batch for
     * the ports nobody taps. */
    if (__builtin_expect((dp->taps->watch_in >> port->port_no) & 1, 0)) {
        for (uint32_t i = 0; i < n; i++) {
            tap_received(dp, port->port_no, &dp->rx[i]);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        struct ps_frame *frame = &dp->rx[i];
        const struct ps_flow_actions *acts;
        int is_gso = (frame->vnet.gso_type & PS_VNET_GSO_TYPE_MASK) != 0;
        uint16_t error;

        port->stats.rx_packets++;
        port->stats.rx_bytes += frame->size;
        dp->stats.rx_packets++;

        error = ps_parse(frame->data, frame->size, port->port_no, port->max_frame, is_gso, &key, &result);
        if (error) {
            port->stats.rx_errors++;
            dp->stats.parse_errors[error]++;
            continue;
        }
        acts = ps_ft_lookup_actions(dp->ft, dp->ft_lane, &key, frame->size, now_ms);
        if (acts) {
            ps_actions_execute(frame, port->port_no, acts->actions, acts->n_actions, &sink);
        } else {
            upcall_queue(dp, port->port_no, PS_UPCALL_MISS, 0, &key, frame);
        }
    }
}

/* Takes up to PS_BATCH frames from each port in number order and processes
 * them at 'now_ms' (-1: the monotonic clock), then sends all outputs and
 * gives the received frames back.  Discards the previous run's upcalls.
 * Returns the number of frames taken. */
int
ps_dp_run(struct ps_dp *dp, int64_t now_ms)
{
    if (dp->workers) {
        return ps_workers_run(dp->workers, now_ms);
    }
    ps_dp_upcalls_clear(dp);
    return ps_dp_run_more(dp, now_ms);
}

/* A run that keeps the upcalls queued before it: a worker forwards on while
 * the slow path has not gathered them yet. */
int
ps_dp_run_more(struct ps_dp *dp, int64_t now_ms)
{
    uint32_t total = 0;

    now_ms = ps_resolve_now(now_ms);
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        struct ps_port *port = dp->ports[i];
        uint32_t n;

        if (!port || !(dp->rx_ports & (UINT64_C(1) << i))) {
            continue;
        }
        n = ps_port_rx(port, dp->rx, PS_BATCH);
        process_batch(dp, port, n, now_ms);
        total += n;
    }
    flush_all(dp);
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i]) {
            ps_port_rx_release(dp->ports[i]);
        }
    }
    return total;
}

/* Waits up to 'timeout_ms' (-1: forever) for a port or wake fd to become
 * readable, then runs once.  Returns the number of frames taken or a
 * negative errno from poll(2). */
int
ps_dp_poll(struct ps_dp *dp, int timeout_ms, int64_t now_ms)
{
    struct pollfd pfds[PS_MAX_PORTS + PS_MAX_WAKE_FDS];
    nfds_t n = 0;

    if (dp->workers) {
        return ps_workers_poll(dp->workers, timeout_ms, now_ms);
    }
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        struct ps_port *port = dp->ports[i];

        if (!port || !(dp->rx_ports & (UINT64_C(1) << i))) {
            continue;
        }
        if (ps_port_rx_ready(port)) {
            /* Frames are already waiting: no need to ask the kernel. */
            return ps_dp_run(dp, now_ms);
        }
        if (port->fd >= 0) {
            pfds[n++] = (struct pollfd) { .fd = port->fd, .events = POLLIN };
        }
    }
    for (uint32_t i = 0; i < dp->n_wake_fds; i++) {
        pfds[n++] = (struct pollfd) { .fd = dp->wake_fds[i], .events = POLLIN };
    }
    if (poll(pfds, n, timeout_ms) < 0 && errno != EINTR) {
        return -errno;
    }
    return ps_dp_run(dp, now_ms);
}

/* Whether a port with a ring or a memory queue has frames waiting. */
static bool
any_rx_ready(const struct ps_dp *dp)
{
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i] && ps_port_rx_ready(dp->ports[i])) {
            return true;
        }
    }
    return false;
}

/* Waits up to 'timeout_ms' (0: just looks) for a port or, if 'with_ports' is
 * false, only a wake fd to become readable.  Returns 1 if a wake fd is
 * readable, 0 if not, or a negative errno from poll(2). */
static int
wait_readable(struct ps_dp *dp, int timeout_ms, bool with_ports)
{
    struct pollfd pfds[PS_MAX_PORTS + PS_MAX_WAKE_FDS];
    nfds_t n = 0, first_wake;

    for (int i = 0; with_ports && i < PS_MAX_PORTS; i++) {
        if (dp->ports[i] && (dp->rx_ports & (UINT64_C(1) << i)) && dp->ports[i]->fd >= 0) {
            pfds[n++] = (struct pollfd) { .fd = dp->ports[i]->fd, .events = POLLIN };
        }
    }
    first_wake = n;
    for (uint32_t i = 0; i < dp->n_wake_fds; i++) {
        pfds[n++] = (struct pollfd) { .fd = dp->wake_fds[i], .events = POLLIN };
    }
    if (poll(pfds, n, timeout_ms) < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    for (nfds_t i = 0; i < first_wake; i++) {
        if (pfds[i].revents & POLLERR && !ps_fd_clear_error(pfds[i].fd)) {
            ps_dp_rx_fd_failed(dp, pfds[i].fd);
        }
    }
    for (nfds_t i = first_wake; i < n; i++) {
        if (pfds[i].revents) {
            return 1;
        }
    }
    return 0;
}

/* Serves the ports until the slow path has something to do, so that under
 * load Python runs once per burst of work instead of once per batch.  Runs
 * like ps_dp_poll(), and goes on running while frames keep coming; returns
 * after the first run that queued upcalls or connection events (they stay
 * readable until the next run), as soon as a wake fd is readable (looked at
 * every PS_SERVE_WAKE_CHECK_US under load), or once 'timeout_ms' (-1:
 * forever) has passed.  When the ports fall idle it keeps looking for
 * 'spin_us' microseconds before it sleeps in poll(2): a frame that arrives
 * meanwhile is taken without the cost of a wakeup.  Returns the number of
 * frames taken, or a negative errno from poll(2). */
int
ps_dp_serve(struct ps_dp *dp, int timeout_ms, uint32_t spin_us)
{
    int64_t start = ps_monotonic_us();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : start + (int64_t) timeout_ms * 1000;
    int64_t last_frame = start, next_wake_check = start + PS_SERVE_WAKE_CHECK_US;
    int64_t hold_until = INT64_MAX;        /* set by the first run that queued work for the slow path */
    uint32_t events_start = ps_conntrack_n_events(dp->ct);
    int total = 0;

    if (dp->workers) {
        return ps_workers_serve(dp->workers, timeout_ms, spin_us);
    }
    for (;;) {
        int64_t now;
        int woken = 0, n;

        if (!any_rx_ready(dp)) {
            int64_t idle_until = last_frame + spin_us;

            if (hold_until != INT64_MAX) {
                return total;              /* holding is for a port that keeps sending, not to wait */
            }
            now = ps_monotonic_us();
            if (now < idle_until) {
                woken = wait_readable(dp, 0, true);
            } else {
                int64_t left_ms = deadline == INT64_MAX ? -1 : (deadline - now + 999) / 1000;

                woken = wait_readable(dp, left_ms > INT32_MAX ? INT32_MAX : (int) left_ms, true);
            }
            if (woken < 0) {
                return woken;
            }
        }
        /* Once work waits, runs keep it: it is handed over when the hold ends. */
        n = hold_until == INT64_MAX ? ps_dp_run(dp, -1) : ps_dp_run_more(dp, -1);
        total += n;
        now = ps_monotonic_us();
        if (n > 0) {
            last_frame = now;
        }
        if (hold_until == INT64_MAX && (dp->n_upcalls || ps_conntrack_n_events(dp->ct) > events_start)) {
            hold_until = now + dp->hold_us;
        }
        if (ps_capbuf_pressing(&dp->capture)) {
            return total;                  /* copies are dropped once the buffer is full: read them first */
        }
        if (woken || now >= hold_until || now >= deadline) {
            return total;
        }
        if (now >= next_wake_check) {
            next_wake_check = now + PS_SERVE_WAKE_CHECK_US;
            woken = wait_readable(dp, 0, false);
            if (woken) {
                return woken < 0 ? woken : total;
            }
        }
    }
}

/* Runs 'actions' on a copy of the 'size' bytes at 'frame' (virtio header
 * 'vnet', zero if NULL) as if received on 'in_port' at 'now_ms' (-1: the
 * monotonic clock; LB accounts connections with it), and sends the outputs
 * at once.  An UPCALL action queues with the key ps_parse() gives the frame
 * with no max_frame and is_gso false (partial if parsing fails), the simplest
 * reading of a contract that does not say which key.  Returns 0, -EINVAL for
 * more than PS_MAX_ACTIONS actions, -ENOMEM. */
int
ps_dp_execute(struct ps_dp *dp, uint16_t in_port, const uint8_t *frame, uint32_t size,
              const struct ps_vnet_hdr *vnet, const struct ps_action *actions, uint32_t n_actions,
              int64_t now_ms)
{
    struct ps_flow_key key;
    struct ps_parse_result result;
    struct exec_ctx ctx = { .dp = dp, .in_port = in_port, .key = &key, .now_ms = ps_resolve_now(now_ms) };
    struct ps_sink sink = {
        .output = dp_output, .upcall = dp_upcall, .route = dp_route, .lb = dp_lb, .drop = dp_drop, .ctx = &ctx,
    };
    struct ps_frame work;
    uint8_t *buf;

    /* Unlike ps_ft_put(), only the list's length is refused: the executor
     * skips unknown types and counts outputs to ports >= 64 in bad_port,
     * which is what the Python twin does with the same list. */
    if (n_actions > PS_MAX_ACTIONS) {
        return -EINVAL;
    }
    buf = ps_frame_clone(&work, frame, size, vnet);
    if (!buf) {
        return -ENOMEM;
    }
    ps_parse(frame, size, in_port, 0, 0, &key, &result);
    ps_actions_execute(&work, in_port, actions, n_actions, &sink);
    flush_all(dp);
    free(buf);
    return 0;
}

int
ps_dp_mem_inject(struct ps_dp *dp, uint16_t port_no, const uint8_t *frame, uint32_t size,
                 const struct ps_vnet_hdr *vnet)
{
    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        return -ENOENT;
    }
    if (dp->workers) {
        return ps_workers_mem_inject(dp->workers, -1, port_no, frame, size, vnet);
    }
    return ps_port_mem_inject(dp->ports[port_no], frame, size, vnet);
}

/* Takes the oldest frame port 'port_no' transmitted into 'buf' and its vnet
 * header into '*vnet'.  Returns its size, 0 if there is none, -ENOSPC if it
 * does not fit in 'buf_size' bytes (it stays queued). */
int
ps_dp_mem_take(struct ps_dp *dp, uint16_t port_no, uint8_t *buf, uint32_t buf_size, struct ps_vnet_hdr *vnet)
{
    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no]) {
        return -ENOENT;
    }
    if (dp->workers) {
        return ps_workers_mem_take(dp->workers, port_no, buf, buf_size, vnet);
    }
    return ps_port_mem_take(dp->ports[port_no], buf, buf_size, vnet);
}

/* Workers (workers.c). */

/* Runs ports on 'n_workers' threads (1..PS_MAX_WORKERS); 1 is the default, no
 * thread.  Only before the first port is added, and only once.  The slow
 * path's upcall list then holds every worker's upcalls plus what execute()
 * queues: n_workers + 1 times max_upcalls.  Returns 0, -EINVAL, -EBUSY (ports
 * attached, or workers already set), -ENOMEM or a thread's errno. */
int
ps_dp_set_workers(struct ps_dp *dp, uint32_t n_workers)
{
    uint32_t per_worker = dp->max_upcalls;
    size_t n_slots = (size_t) (n_workers + 1) * (per_worker ? per_worker : 1);
    struct ps_upcall *upcalls;
    size_t *upcall_ofs;
    int error;

    if (n_workers < 1 || n_workers > PS_MAX_WORKERS || dp->owner) {
        return -EINVAL;
    }
    if (n_workers == ps_dp_n_workers(dp)) {
        return 0;
    }
    if (dp->workers) {
        return -EBUSY;
    }
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i]) {
            return -EBUSY;
        }
    }
    upcalls = realloc(dp->upcalls, n_slots * sizeof *upcalls);
    if (upcalls) {
        dp->upcalls = upcalls;
    }
    upcall_ofs = realloc(dp->upcall_ofs, n_slots * sizeof *upcall_ofs);
    if (upcall_ofs) {
        dp->upcall_ofs = upcall_ofs;
    }
    if (!upcalls || !upcall_ofs) {
        return -ENOMEM;
    }
    error = ps_workers_new(dp, n_workers, per_worker, &dp->workers);
    if (error) {
        return error;
    }
    dp->max_upcalls = (n_workers + 1) * per_worker;
    return 0;
}

uint32_t
ps_dp_n_workers(const struct ps_dp *dp)
{
    return dp->workers ? ps_workers_count(dp->workers) : 1;
}

/* Stores worker 'worker''s own counters in '*out' and its flow-table lane's
 * lookup counters in '*ft_out' (either may be NULL).  Without workers, worker
 * 0 is the datapath itself.  Returns 0, or -ENOENT. */
int
ps_dp_worker_get_stats(const struct ps_dp *dp, uint32_t worker, struct ps_dp_stats *out,
                       struct ps_ft_stats *ft_out)
{
    if (dp->workers) {
        return ps_workers_get_stats(dp->workers, worker, out, ft_out);
    }
    if (worker != 0) {
        return -ENOENT;
    }
    if (out) {
        *out = dp->stats;
    }
    return ft_out ? ps_ft_get_lane_stats(dp->ft, dp->ft_lane, ft_out) : 0;
}

int
ps_dp_mem_inject_worker(struct ps_dp *dp, uint32_t worker, uint16_t port_no, const uint8_t *frame, uint32_t size,
                        const struct ps_vnet_hdr *vnet)
{
    if (port_no >= PS_MAX_PORTS || !dp->ports[port_no] || worker >= ps_dp_n_workers(dp)) {
        return -ENOENT;
    }
    if (dp->workers) {
        return ps_workers_mem_inject(dp->workers, (int) worker, port_no, frame, size, vnet);
    }
    return ps_port_mem_inject(dp->ports[port_no], frame, size, vnet);
}

/* A worker's datapath: shares the tables of 'owner', looks up in flow-table
 * lane 'lane', queues at most 'max_upcalls' upcalls; no ports yet. */
struct ps_dp *
ps_dp_new_worker(struct ps_dp *owner, uint32_t lane, uint32_t max_upcalls)
{
    struct ps_dp *dp = calloc_lines(sizeof *dp);

    if (!dp) {
        return NULL;
    }
    dp->owner = owner;
    dp->ft = owner->ft;
    dp->routes = owner->routes;
    dp->ct = owner->ct;
    dp->rings = owner->rings;
    dp->taps = owner->taps;
    dp->ft_lane = lane;
    dp->max_upcalls = max_upcalls;
    dp->upcalls = calloc(max_upcalls ? max_upcalls : 1, sizeof *dp->upcalls);
    dp->upcall_ofs = calloc(max_upcalls ? max_upcalls : 1, sizeof *dp->upcall_ofs);
    if (!dp->upcalls || !dp->upcall_ofs) {
        ps_dp_free(dp);
        return NULL;
    }
    return dp;
}

struct ps_port *
ps_dp_port(const struct ps_dp *dp, uint16_t port_no)
{
    return port_no < PS_MAX_PORTS ? dp->ports[port_no] : NULL;
}

/* Attaches 'port', which another datapath owns and closes, as 'port_no': a
 * worker 0 receives and sends on its owner's ports. */
void
ps_dp_port_borrow(struct ps_dp *dp, uint16_t port_no, struct ps_port *port)
{
    dp->ports[port_no] = port;
    dp->rx_ports |= UINT64_C(1) << port_no;
    dp->borrowed_ports |= UINT64_C(1) << port_no;
}

void
ps_dp_port_set_rx(struct ps_dp *dp, uint16_t port_no, bool rx)
{
    if (rx) {
        dp->rx_ports |= UINT64_C(1) << port_no;
    } else {
        dp->rx_ports &= ~(UINT64_C(1) << port_no);
    }
}

void
ps_dp_rx_fd_failed(struct ps_dp *dp, int fd)
{
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i] && (dp->rx_ports & (UINT64_C(1) << i)) && dp->ports[i]->fd == fd) {
            /* The slow path notices the device is gone and deletes the port;
             * until then nothing is received on it. */
            dp->rx_ports &= ~(UINT64_C(1) << i);
            dp->ports[i]->stats.rx_errors++;
        }
    }
}

bool
ps_dp_rx_ready(const struct ps_dp *dp)
{
    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i] && (dp->rx_ports & (UINT64_C(1) << i)) && ps_port_rx_ready(dp->ports[i])) {
            return true;
        }
    }
    return false;
}

uint32_t
ps_dp_rx_fds(const struct ps_dp *dp, int *fds)
{
    uint32_t n = 0;

    for (int i = 0; i < PS_MAX_PORTS; i++) {
        if (dp->ports[i] && (dp->rx_ports & (UINT64_C(1) << i)) && dp->ports[i]->fd >= 0) {
            fds[n++] = dp->ports[i]->fd;
        }
    }
    return n;
}

uint32_t
ps_dp_wake_fds(const struct ps_dp *dp, int *fds)
{
    memcpy(fds, dp->wake_fds, dp->n_wake_fds * sizeof *fds);
    return dp->n_wake_fds;
}

/* Taps (tap.h). */

int
ps_dp_mirror_set(struct ps_dp *dp, uint16_t port_no, uint64_t to_on_in, uint64_t to_on_out)
{
    return ps_taps_mirror_set(dp->taps, port_no, to_on_in, to_on_out);
}

/* The capture buffer 'buffer' of ps_dp_capture_buffers()' numbering. */
static struct ps_capbuf *
capture_buffer(const struct ps_dp *dp, uint32_t buffer)
{
    const struct ps_dp *holder = dp;

    if (buffer > 0) {
        holder = dp->workers ? ps_workers_dp(dp->workers, buffer - 1) : NULL;
    }
    return holder ? (struct ps_capbuf *) &holder->capture : NULL;
}

int
ps_dp_capture_add(struct ps_dp *dp, uint32_t slot, uint16_t port_no, uint32_t directions, uint32_t snaplen,
                  const struct ps_bpf_insn *filter, uint32_t filter_len)
{
    int error = ps_taps_capture_add(dp->taps, slot, port_no, directions, snaplen, filter, filter_len);

    if (error == 0) {
        for (uint32_t b = 0; b < ps_dp_capture_buffers(dp); b++) {
            ps_capbuf_reset_slot(capture_buffer(dp, b), slot);
        }
    }
    return error;
}

int
ps_dp_capture_del(struct ps_dp *dp, uint32_t slot)
{
    return ps_taps_capture_del(dp->taps, slot);
}

uint32_t
ps_dp_capture_buffers(const struct ps_dp *dp)
{
    return dp->workers ? 1 + ps_workers_count(dp->workers) : 1;
}

uint32_t
ps_dp_capture_records(struct ps_dp *dp, uint32_t buffer, struct ps_capture_record **out)
{
    struct ps_capbuf *buf = capture_buffer(dp, buffer);

    *out = buf ? buf->records : NULL;
    return buf ? buf->n_records : 0;
}

void
ps_dp_capture_clear(struct ps_dp *dp, uint32_t buffer)
{
    struct ps_capbuf *buf = capture_buffer(dp, buffer);
    bool capturing = false;

    if (!buf) {
        return;
    }
    ps_capbuf_clear(buf);
    for (int i = 0; i < PS_MAX_CAPTURES; i++) {
        capturing |= dp->taps->captures[i].active;
    }
    if (!capturing) {
        ps_capbuf_release(buf);         /* nobody captures: the memory goes back, the counters stay */
    }
}

int
ps_dp_capture_counts(const struct ps_dp *dp, uint32_t slot, uint64_t *captured, uint64_t *dropped)
{
    if (slot >= PS_MAX_CAPTURES) {
        return -EINVAL;
    }
    *captured = 0;
    *dropped = 0;
    for (uint32_t b = 0; b < ps_dp_capture_buffers(dp); b++) {
        const struct ps_capbuf *buf = capture_buffer(dp, b);

        *captured += buf->captured[slot];
        *dropped += buf->dropped[slot];
    }
    return 0;
}

bool
ps_dp_capture_pressing(const struct ps_dp *dp)
{
    return ps_capbuf_pressing(&dp->capture);
}
