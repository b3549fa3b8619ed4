/* workers.c: N datapath threads that share each port (docs/DATAPATH.md, "Workers").
 *
 * With [switch] workers = N > 1, each worker thread runs a datapath of its
 * own (ps_dp_new_worker()) over the tables of the slow path's datapath: its
 * own sockets, RX rings, batch, transmit queues, upcall queue and counters,
 * its own flow-table lane (exact-match cache and hit counters).  Each
 * AF_PACKET port has one socket per worker, and a port's N sockets form one
 * PACKET_FANOUT group of type PACKET_FANOUT_HASH: the kernel hands each frame
 * to one socket by the frame's symmetric flow hash.  Worker 0's sockets are
 * the slow path's datapath's own, so execute() sends on them.
 *
 * The world.  A worker runs a batch only while the slow path leaves it the
 * world; the slow path holds it from one ps_workers_serve() to the next, so
 * every other call into the datapath (flow puts, route and neighbor writes,
 * connection adds, execute, dumps and counters) sees tables no worker is
 * changing and changes them with no worker looking.  serve() releases the
 * world, sleeps on an eventfd a worker writes once it has queued upcalls or
 * connection events (and on the wake fds: the control socket), takes the
 * world back and gathers the workers' upcalls into the one list upcalls()
 * returns.  Taking the world waits only for the batches in progress.
 *
 * Each worker has a mutex and a condition variable of its own for this; the
 * slow path touches them only when it takes or releases the world, so under
 * steady load with nothing for the slow path, workers share nothing but what
 * the tables need: a flow's LRU move (at most once per PS_LRU_GRANULE_MS, a
 * lock in flowtable.c) and the connection table, whose lock LB and LB_REPLY
 * take for every packet (conntrack.c).  Routing lookups read only.
 *
 * The mutexes are not held across a return to Python (a mutex must be
 * unlocked by the thread that locked it, and that would tie the datapath to
 * one Python thread); 'held' and 'running' under each worker's mutex carry
 * the same meaning instead.
 */
#include <errno.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conntrack.h"
#include "flowtable.h"
#include "io.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "workers.h"

/* Newer than some uapi headers.  Without it a fanout group delivers the
 * interface's outgoing frames too, whatever its sockets' own
 * PACKET_IGNORE_OUTGOING says (seen on this project's 6.18 kernel: one frame
 * sent out of a veth end reached the group without the flag, none with it). */
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000
#endif

/* On cache lines of its own (the set holds them side by side): the worker
 * writes 'frames' and 'signalled' on every run. */
struct ps_worker {
    struct ps_workers *set;        /* the set it belongs to */
    struct ps_dp *dp;              /* its datapath: sockets, batch, upcalls, counters */
    uint32_t index;                /* 0..n-1: its flow-table lane and its place in each fanout group */
    pthread_t thread;              /* valid once 'started' */
    bool started;                  /* the thread exists and must be joined */
    pthread_mutex_t lock;          /* guards 'held', 'running' and 'exiting' */
    pthread_cond_t cond;           /* broadcast when one of them changes */
    bool held;                     /* the slow path holds the world: start no batch (read unlocked too) */
    bool running;                  /* the worker is forwarding (or spinning) */
    bool exiting;                  /* the thread must return */
    int kick_fd;                   /* eventfd that ends the worker's sleep in poll(2) */
    bool signalled;                /* it wrote 'notify_fd' since the slow path last gathered */
    uint64_t frames;               /* frames it took, ever */
    uint32_t fds_gen;              /* 'port_gen' when it last collected the fds it sleeps on */
    int failed_fds[PS_MAX_PORTS];  /* of those, fds whose POLLERR nothing cleared (a deleted TAP device) */
    uint32_t n_failed;             /* entries used in 'failed_fds'; the worker's own, never the slow path's */
} __attribute__((aligned(PS_CACHE_LINE)));

struct ps_workers {
    struct ps_worker workers[PS_MAX_WORKERS]; /* n used, each on lines of its own */
    struct ps_dp *dp;              /* the slow path's datapath: tables, worker 0's sockets, the gathered upcalls */
    uint32_t n;                    /* workers in 'workers' */
    int notify_fd;                 /* eventfd the workers write when the slow path has work */
    uint32_t spin_us;              /* serve()'s spin_us: how long an idle worker looks before it sleeps */
    uint64_t events_mark;          /* connection events ever pushed, when the world was last released */
    int fanout_flags[PS_MAX_PORTS];/* per AF_PACKET port: the flags its fanout group was made with */
    uint32_t port_gen;             /* bumped whenever a port comes or goes: a worker's failed fds are stale then */
};

static void
kick(int fd)
{
    uint64_t one = 1;

    /* A full counter still wakes the reader, so a failed write is fine. */
    if (write(fd, &one, sizeof one) < 0) {
        return;
    }
}

static void
drain(int fd)
{
    uint64_t count;

    if (read(fd, &count, sizeof count) < 0) {
        return;
    }
}

/* The world, slow path's side. */

/* Makes every worker stop before its next batch and waits until none runs. */
static void
world_take(struct ps_workers *ws)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        pthread_mutex_lock(&w->lock);
        __atomic_store_n(&w->held, true, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&w->lock);
    }
    /* Asked all first, then waited: the workers finish their batches in
     * parallel. */
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        pthread_mutex_lock(&w->lock);
        while (w->running) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        pthread_mutex_unlock(&w->lock);
    }
}

static void
world_release(struct ps_workers *ws)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        pthread_mutex_lock(&w->lock);
        __atomic_store_n(&w->held, false, __ATOMIC_RELAXED);
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
}

/* The world, worker's side.  Everything below down to worker_main() runs in
 * the worker's thread. */

/* Waits until the world is free, then marks the worker running.  Returns
 * false when the thread must exit. */
static bool
worker_enter(struct ps_worker *w)
{
    bool go;

    pthread_mutex_lock(&w->lock);
    while (w->held && !w->exiting) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    go = !w->exiting;
    w->running = go;
    pthread_mutex_unlock(&w->lock);
    return go;
}

static void
worker_leave(struct ps_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->running = false;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Wakes the slow path once per gathering if this worker queued upcalls, its
 * capture buffer is filling, or any worker queued connection events since
 * the world was released. */
static void
worker_notify(struct ps_worker *w)
{
    struct ps_workers *ws = w->set;

    if (w->signalled) {
        return;
    }
    if (ps_dp_n_upcalls(w->dp) == 0 && !ps_dp_capture_pressing(w->dp)
        && ps_conntrack_events_pushed(ps_dp_conntrack(w->dp)) == ws->events_mark) {
        return;
    }
    w->signalled = true;
    kick(ws->notify_fd);
}

/* Forwards while frames come and the world stays free; once the ports have
 * been idle for spin_us, stores their fds in 'fds' and returns how many (the
 * worker sleeps on them), or returns -1 when the slow path wants the world. */
static int
worker_forward(struct ps_worker *w, int *fds)
{
    int64_t last_frame = ps_monotonic_us();

    /* In the world now: the ports its last sleep found failed stop being
     * received on, unless ports changed since (an fd number may be another
     * port's by now). */
    if (w->n_failed && __atomic_load_n(&w->set->port_gen, __ATOMIC_ACQUIRE) == w->fds_gen) {
        for (uint32_t i = 0; i < w->n_failed; i++) {
            ps_dp_rx_fd_failed(w->dp, w->failed_fds[i]);
        }
    }
    w->n_failed = 0;
    for (;;) {
        int n = ps_dp_run_more(w->dp, -1);
        int64_t now;

        if (n > 0) {
            w->frames += n;
        }
        worker_notify(w);
        if (__atomic_load_n(&w->held, __ATOMIC_RELAXED)) {
            return -1;
        }
        now = ps_monotonic_us();
        if (n > 0 || ps_dp_rx_ready(w->dp)) {
            last_frame = n > 0 ? now : last_frame;
        } else if (now - last_frame >= (int64_t) w->set->spin_us) {
            /* Collected while running: the slow path changes ports only
             * while it holds the world. */
            w->fds_gen = __atomic_load_n(&w->set->port_gen, __ATOMIC_ACQUIRE);
            return (int) ps_dp_rx_fds(w->dp, fds);
        }
    }
}

/* Sleeps until a port it receives on is readable or it is kicked (a new
 * port, memory frames, exit).  'fds' may be stale by now (a port deleted
 * meanwhile kicks it): poll(2) then returns early, which is harmless. */
static void
worker_sleep(struct ps_worker *w, const int *fds, int n_fds)
{
    struct pollfd pfds[PS_MAX_PORTS + 1];

    for (int i = 0; i < n_fds; i++) {
        pfds[i] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
    }
    pfds[n_fds] = (struct pollfd) { .fd = w->kick_fd, .events = POLLIN };
    if (poll(pfds, n_fds + 1, -1) <= 0) {
        return;
    }
    for (int i = 0; i < n_fds; i++) {
        if (pfds[i].revents & POLLERR && !ps_fd_clear_error(pfds[i].fd) && w->n_failed < PS_MAX_PORTS) {
            w->failed_fds[w->n_failed++] = pfds[i].fd;     /* acted on in the world: worker_forward() */
        }
    }
    if (pfds[n_fds].revents) {
        drain(w->kick_fd);
    }
}

static void *
worker_main(void *w_)
{
    struct ps_worker *w = w_;
    int fds[PS_MAX_PORTS];

    while (worker_enter(w)) {
        int n_fds = worker_forward(w, fds);

        worker_leave(w);
        if (n_fds >= 0) {
            worker_sleep(w, fds, n_fds);
        }
    }
    return NULL;
}

/* The set. */

static int
worker_init(struct ps_workers *ws, uint32_t index, uint32_t max_upcalls)
{
    struct ps_worker *w = &ws->workers[index];

    w->set = ws;
    w->index = index;
    w->held = true;                 /* the slow path holds the world until it first serves */
    w->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->dp = ps_dp_new_worker(ws->dp, index, max_upcalls);
    if (w->kick_fd < 0) {
        return -errno;
    }
    return w->dp ? 0 : -ENOMEM;
}

/* Starts the threads with every signal blocked, so that SIGTERM and SIGINT
 * reach the slow path's thread, whose poll(2) they interrupt. */
static int
workers_start(struct ps_workers *ws)
{
    sigset_t all, old;
    int error = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (uint32_t i = 0; i < ws->n && !error; i++) {
        struct ps_worker *w = &ws->workers[i];
        char name[16];

        error = -pthread_create(&w->thread, NULL, worker_main, w);
        if (!error) {
            w->started = true;
            snprintf(name, sizeof name, "psw-worker-%u", i);
            pthread_setname_np(w->thread, name);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return error;
}

int
ps_workers_new(struct ps_dp *dp, uint32_t n_workers, uint32_t max_upcalls, struct ps_workers **out)
{
    struct ps_workers *ws;
    int error;

    if (n_workers < 2 || n_workers > PS_MAX_WORKERS) {
        return -EINVAL;
    }
    /* Cache-line aligned, for its workers. */
    ws = aligned_alloc(PS_CACHE_LINE, sizeof *ws);
    if (!ws) {
        return -ENOMEM;
    }
    memset(ws, 0, sizeof *ws);
    ws->dp = dp;
    ws->n = n_workers;
    for (uint32_t i = 0; i < n_workers; i++) {
        ws->workers[i].kick_fd = -1;
    }
    ws->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    error = ws->notify_fd < 0 ? -errno : ps_ft_set_lanes(ps_dp_flowtable(dp), n_workers);
    for (uint32_t i = 0; i < n_workers && !error; i++) {
        error = worker_init(ws, i, max_upcalls);
    }
    if (!error) {
        ps_conntrack_set_shared(ps_dp_conntrack(dp), true);
        error = workers_start(ws);
    }
    if (error) {
        ps_workers_free(ws);
        return error;
    }
    *out = ws;
    return 0;
}

void
ps_workers_free(struct ps_workers *ws)
{
    if (!ws) {
        return;
    }
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        if (!w->started) {
            continue;
        }
        pthread_mutex_lock(&w->lock);
        w->exiting = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        kick(w->kick_fd);
    }
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        if (w->started) {
            pthread_join(w->thread, NULL);
        }
        /* Worker 0's ports are borrowed: its ps_dp_free() closes none. */
        ps_dp_free(w->dp);
        if (w->kick_fd >= 0) {
            close(w->kick_fd);
        }
        if (w->set) {
            pthread_mutex_destroy(&w->lock);
            pthread_cond_destroy(&w->cond);
        }
    }
    if (ws->notify_fd >= 0) {
        close(ws->notify_fd);
    }
    ps_conntrack_set_shared(ps_dp_conntrack(ws->dp), false);
    ps_ft_set_lanes(ps_dp_flowtable(ws->dp), 1);
    free(ws);
}

uint32_t
ps_workers_count(const struct ps_workers *ws)
{
    return ws->n;
}

struct ps_dp *
ps_workers_dp(const struct ps_workers *ws, uint32_t index)
{
    return index < ws->n ? ws->workers[index].dp : NULL;
}

/* Ports. */

/* Joins AF_PACKET socket 'fd' to a fanout group of type PACKET_FANOUT_HASH:
 * to group 'group' with 'flags', or, if 'group' is -1, to a new group whose
 * id the kernel picks (ids are per network namespace, and another switch
 * here may use any), stored in '*group_out' with its flags in '*flags_out'.
 * PACKET_FANOUT_FLAG_DEFRAG stays off: it would make the kernel reassemble
 * fragments and hand us datagrams larger than the MTU, which we could not
 * send on; without it a datagram's fragments all hash alike anyway (they
 * carry no ports).  Returns 0 or a negative errno. */
static int
fanout_join(int fd, int group, int flags, int *group_out, int *flags_out)
{
    int arg;
    socklen_t len = sizeof arg;

    if (group >= 0) {
        arg = group | ((PACKET_FANOUT_HASH | flags) << 16);
        return setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0 ? -errno : 0;
    }
    flags = PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    arg = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID | flags) << 16;
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
        if (errno != EINVAL) {
            return -errno;
        }
        /* A kernel without the flag: the group then also sees the
         * interface's own transmissions (never ours: PACKET_QDISC_BYPASS
         * sends past the taps). */
        flags = 0;
        arg = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
            return -errno;
        }
    }
    if (getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, &len) < 0) {
        return -errno;
    }
    *group_out = arg & 0xffff;
    *flags_out = flags;
    return 0;
}

static void
kick_all(struct ps_workers *ws)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        kick(ws->workers[i].kick_fd);
    }
}

int
ps_workers_port_add(struct ps_workers *ws, uint16_t port_no, int kind, int ifindex_or_fd,
                    uint32_t ring_frames, uint32_t max_frame)
{
    struct ps_port *port = ps_dp_port(ws->dp, port_no);
    int group = -1, error = 0;

    if (kind == PS_PORT_AFPACKET) {
        error = fanout_join(port->fd, -1, 0, &group, &ws->fanout_flags[port_no]);
        if (error) {
            return error;
        }
    }
    ps_dp_port_borrow(ws->workers[0].dp, port_no, port);
    for (uint32_t i = 1; i < ws->n && !error; i++) {
        struct ps_dp *dp = ws->workers[i].dp;

        /* Joined in worker order on every port, so that a frame and the
         * answer to it (the same flow hash: it is symmetric) meet the same
         * worker even when they arrive on different ports. */
        error = ps_dp_port_add(dp, port_no, kind, ifindex_or_fd, ring_frames, max_frame);
        if (!error && kind == PS_PORT_AFPACKET) {
            error = fanout_join(ps_dp_port(dp, port_no)->fd, group, ws->fanout_flags[port_no], NULL, NULL);
        }
        if (!error && kind == PS_PORT_TAP) {
            /* A TAP fd is one queue: a second reader would split flows
             * between workers and reorder them. */
            ps_dp_port_set_rx(dp, port_no, false);
        }
    }
    if (error) {
        ps_workers_port_del(ws, port_no);
        return error;
    }
    __atomic_add_fetch(&ws->port_gen, 1, __ATOMIC_RELEASE);
    kick_all(ws);
    return 0;
}

void
ps_workers_port_del(struct ps_workers *ws, uint16_t port_no)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        ps_dp_port_del(ws->workers[i].dp, port_no);
    }
    __atomic_add_fetch(&ws->port_gen, 1, __ATOMIC_RELEASE);
    kick_all(ws);
}

/* Counters. */

/* Both counter structs are uint64_t counters only: summed member by member
 * as an array, so that a counter added later is summed too. */
_Static_assert(sizeof(struct ps_dp_stats) % sizeof(uint64_t) == 0, "ps_dp_stats holds only uint64_t counters");
_Static_assert(sizeof(struct ps_port_stats) % sizeof(uint64_t) == 0, "ps_port_stats holds only uint64_t counters");

static void
counters_add(void *out_, const void *in_, size_t size)
{
    uint64_t *out = out_;
    const uint64_t *in = in_;

    for (size_t i = 0; i < size / sizeof *out; i++) {
        out[i] += in[i];
    }
}

void
ps_workers_add_stats(const struct ps_workers *ws, struct ps_dp_stats *out)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_dp_stats s;

        ps_dp_get_stats(ws->workers[i].dp, &s);
        counters_add(out, &s, sizeof s);
    }
}

void
ps_workers_add_port_stats(const struct ps_workers *ws, uint16_t port_no, struct ps_port_stats *out)
{
    /* Worker 0's socket is the slow path's datapath's: already in '*out'. */
    for (uint32_t i = 1; i < ws->n; i++) {
        struct ps_port_stats s;

        if (ps_dp_port_get_stats(ws->workers[i].dp, port_no, &s) == 0) {
            counters_add(out, &s, sizeof s);
        }
    }
}

int
ps_workers_get_stats(const struct ps_workers *ws, uint32_t worker, struct ps_dp_stats *out,
                     struct ps_ft_stats *ft_out)
{
    if (worker >= ws->n) {
        return -ENOENT;
    }
    if (out) {
        ps_dp_get_stats(ws->workers[worker].dp, out);
    }
    return ft_out ? ps_ft_get_lane_stats(ps_dp_flowtable(ws->dp), worker, ft_out) : 0;
}

/* Running. */

/* Moves every worker's upcalls to the slow path's list, worker by worker. */
static void
gather(struct ps_workers *ws)
{
    for (uint32_t i = 0; i < ws->n; i++) {
        ps_dp_upcalls_move(ws->dp, ws->workers[i].dp);
        ws->workers[i].signalled = false;
    }
}

/* One run of every worker in turn, in the caller's thread (the world is
 * held, so the threads wait): what tests with memory ports step through. */
int
ps_workers_run(struct ps_workers *ws, int64_t now_ms)
{
    int total = 0;

    ps_dp_upcalls_clear(ws->dp);
    for (uint32_t i = 0; i < ws->n; i++) {
        int n = ps_dp_run_more(ws->workers[i].dp, now_ms);

        ws->workers[i].frames += n;
        total += n;
    }
    gather(ws);
    return total;
}

int
ps_workers_poll(struct ps_workers *ws, int timeout_ms, int64_t now_ms)
{
    struct pollfd pfds[PS_MAX_WORKERS * PS_MAX_PORTS + PS_MAX_WAKE_FDS];
    int fds[PS_MAX_WORKERS * PS_MAX_PORTS + PS_MAX_WAKE_FDS];
    uint32_t n = 0;

    for (uint32_t i = 0; i < ws->n; i++) {
        if (ps_dp_rx_ready(ws->workers[i].dp)) {
            return ps_workers_run(ws, now_ms);
        }
        n += ps_dp_rx_fds(ws->workers[i].dp, &fds[n]);
    }
    n += ps_dp_wake_fds(ws->dp, &fds[n]);
    for (uint32_t i = 0; i < n; i++) {
        pfds[i] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
    }
    if (poll(pfds, n, timeout_ms) < 0 && errno != EINTR) {
        return -errno;
    }
    return ps_workers_run(ws, now_ms);
}

static bool
any_revents(const struct pollfd *pfds, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (pfds[i].revents) {
            return true;
        }
    }
    return false;
}

/* Lets the workers forward until one has something for the slow path, a
 * wake fd is readable, a signal arrives or 'timeout_ms' (-1: forever)
 * passes; then holds the world again and gathers their upcalls.  Returns the
 * frames they took meanwhile, or a negative errno from poll(2). */
int
ps_workers_serve(struct ps_workers *ws, int timeout_ms, uint32_t spin_us)
{
    struct pollfd pfds[1 + PS_MAX_WAKE_FDS];
    int wake[PS_MAX_WAKE_FDS];
    uint32_t n_wake = ps_dp_wake_fds(ws->dp, wake);
    uint64_t frames = 0;
    int error = 0;

    /* As a run starts: the previous upcalls are gone. */
    ps_dp_upcalls_clear(ws->dp);
    ws->spin_us = spin_us;
    ws->events_mark = ps_conntrack_events_pushed(ps_dp_conntrack(ws->dp));
    pfds[0] = (struct pollfd) { .fd = ws->notify_fd, .events = POLLIN };
    for (uint32_t i = 0; i < n_wake; i++) {
        pfds[1 + i] = (struct pollfd) { .fd = wake[i], .events = POLLIN };
    }
    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_worker *w = &ws->workers[i];

        frames -= w->frames;
        /* A sleeping worker does not see memory frames queued meanwhile. */
        if (ps_dp_rx_ready(w->dp)) {
            kick(w->kick_fd);
        }
    }

    world_release(ws);
    if (poll(pfds, 1 + n_wake, timeout_ms) < 0 && errno != EINTR) {
        error = -errno;
    }
    if (!error && ps_dp_hold(ws->dp) && (pfds[0].revents & POLLIN) && !any_revents(pfds + 1, n_wake)) {
        /* An overloaded slow path lets the workers forward on a while (their
         * upcall queues are bounded; what does not fit is dropped and
         * counted) before it takes the world: ps_dp_set_hold(). */
        struct timespec hold = { .tv_sec = 0, .tv_nsec = (long) ps_dp_hold(ws->dp) % 1000000 * 1000 };

        ppoll(pfds + 1, n_wake, &hold, NULL);
    }
    world_take(ws);

    /* No worker runs now, so none writes the eventfd between this read and
     * the 'signalled' flags gather() clears. */
    drain(ws->notify_fd);
    gather(ws);
    for (uint32_t i = 0; i < ws->n; i++) {
        frames += ws->workers[i].frames;
    }
    return error ? error : (int) frames;
}

/* Memory ports. */

/* A flow hash that is the same both ways: addresses and ports each in
 * order, as the kernel's fanout hash (__skb_get_hash_symmetric) is.  Frames
 * that are not IP hash to 0; fragments hash without ports. */
static uint32_t
symmetric_hash(const uint8_t *frame, uint32_t size)
{
    struct ps_flow_key key;
    struct ps_parse_result result;
    uint16_t type, ports[2] = { 0, 0 };
    const uint8_t *lo, *hi;
    uint32_t h = 2166136261u;

    ps_parse(frame, size, 0, 0, 0, &key, &result);
    type = ps_be16_load(key.eth_type);
    if (type != PS_ETH_TYPE_IP && type != PS_ETH_TYPE_IPV6) {
        return 0;
    }
    lo = memcmp(key.nw_src, key.nw_dst, sizeof key.nw_src) <= 0 ? key.nw_src : key.nw_dst;
    hi = lo == key.nw_src ? key.nw_dst : key.nw_src;
    if (!key.nw_frag && (key.nw_proto == PS_IPPROTO_TCP || key.nw_proto == PS_IPPROTO_UDP)) {
        ports[0] = ps_be16_load(key.tp_src);
        ports[1] = ps_be16_load(key.tp_dst);
        if (ports[0] > ports[1]) {
            uint16_t t = ports[0];

            ports[0] = ports[1];
            ports[1] = t;
        }
    }
    for (size_t i = 0; i < sizeof key.nw_src; i++) {
        h = (h ^ lo[i]) * 16777619u;
    }
    for (size_t i = 0; i < sizeof key.nw_dst; i++) {
        h = (h ^ hi[i]) * 16777619u;
    }
    h = (h ^ key.nw_proto) * 16777619u;
    for (int i = 0; i < 2; i++) {
        h = (h ^ (ports[i] >> 8)) * 16777619u;
        h = (h ^ (ports[i] & 0xff)) * 16777619u;
    }
    return h;
}

int
ps_workers_mem_inject(struct ps_workers *ws, int worker, uint16_t port_no, const uint8_t *frame, uint32_t size,
                      const struct ps_vnet_hdr *vnet)
{
    struct ps_port *port;

    if (worker < 0) {
        worker = (int) (symmetric_hash(frame, size) % ws->n);
    }
    if ((uint32_t) worker >= ws->n) {
        return -ENOENT;
    }
    port = ps_dp_port(ws->workers[worker].dp, port_no);
    return port ? ps_port_mem_inject(port, frame, size, vnet) : -ENOENT;
}

int
ps_workers_mem_take(struct ps_workers *ws, uint16_t port_no, uint8_t *buf, uint32_t buf_size,
                    struct ps_vnet_hdr *vnet)
{
    int r = -ENOENT;

    for (uint32_t i = 0; i < ws->n; i++) {
        struct ps_port *port = ps_dp_port(ws->workers[i].dp, port_no);

        if (port) {
            r = ps_port_mem_take(port, buf, buf_size, vnet);
            if (r != -EAGAIN) {
                return r;
            }
        }
    }
    return r;
}
