/* workers.h: datapath worker threads that share each port (workers.c).
 *
 * The datapath (datapath.c) calls the ps_workers_* functions when the slow
 * path has given it workers (ps_dp_set_workers()); the ps_dp_* functions
 * declared below are what workers.c needs of datapath.c in return.  Every
 * function here runs in the slow path's thread, while it holds the world
 * (no worker runs a batch), except where a comment says otherwise.
 */
#ifndef PS_WORKERS_H
#define PS_WORKERS_H 1

#include <stdbool.h>
#include <stdint.h>

#include "pyswitch.h"

struct ps_port;
struct ps_workers;

/* Starts 'n_workers' (2..PS_MAX_WORKERS) threads for the slow path's
 * datapath 'dp', each with a datapath of its own over dp's tables, queueing
 * at most 'max_upcalls' upcalls, and stores them in '*out'.  The threads
 * wait until the first ps_workers_serve().  Returns 0 or a negative errno
 * (nothing is left started). */
int ps_workers_new(struct ps_dp *dp, uint32_t n_workers, uint32_t max_upcalls, struct ps_workers **out);

/* Stops and joins every thread, closes the workers' own sockets and frees
 * their datapaths; 'dp' is single-threaded again.  NULL does nothing. */
void ps_workers_free(struct ps_workers *ws);

uint32_t ps_workers_count(const struct ps_workers *ws);

/* Worker 'index''s datapath (its capture buffer is read through it), or NULL. */
struct ps_dp *ps_workers_dp(const struct ps_workers *ws, uint32_t index);

/* Port 'port_no' was just attached to the slow path's datapath: attaches it
 * to every worker too (ps_dp_port_add()'s arguments).  AF_PACKET: one socket
 * per worker, all in one fanout group.  TAP: every worker sends on the fd,
 * worker 0 alone reads it.  Memory: queues per worker.  Returns 0 or a
 * negative errno (the workers then hold no part of the port). */
int ps_workers_port_add(struct ps_workers *ws, uint16_t port_no, int kind, int ifindex_or_fd,
                        uint32_t ring_frames, uint32_t max_frame);

/* Detaches port 'port_no' from every worker (the slow path's datapath closes
 * worker 0's socket itself). */
void ps_workers_port_del(struct ps_workers *ws, uint16_t port_no);

/* Adds the workers' counters to '*out' (the slow path's own), and their
 * sockets' counters of port 'port_no' to '*out' (worker 0's, which are the
 * slow path's datapath's). */
void ps_workers_add_stats(const struct ps_workers *ws, struct ps_dp_stats *out);
void ps_workers_add_port_stats(const struct ps_workers *ws, uint16_t port_no, struct ps_port_stats *out);

/* ps_dp_worker_get_stats() for datapaths with workers. */
int ps_workers_get_stats(const struct ps_workers *ws, uint32_t worker, struct ps_dp_stats *out,
                         struct ps_ft_stats *ft_out);

/* ps_dp_run(), ps_dp_poll() and ps_dp_serve() of a datapath with workers. */
int ps_workers_run(struct ps_workers *ws, int64_t now_ms);
int ps_workers_poll(struct ps_workers *ws, int timeout_ms, int64_t now_ms);
int ps_workers_serve(struct ps_workers *ws, int timeout_ms, uint32_t spin_us);

/* Memory ports: queues a frame on worker 'worker''s side of the port (-1:
 * the worker the frame's symmetric flow hash picks, as the kernel's fanout
 * would), or takes the oldest frame any worker sent (worker 0's first). */
int ps_workers_mem_inject(struct ps_workers *ws, int worker, uint16_t port_no, const uint8_t *frame,
                          uint32_t size, const struct ps_vnet_hdr *vnet);
int ps_workers_mem_take(struct ps_workers *ws, uint16_t port_no, uint8_t *buf, uint32_t buf_size,
                        struct ps_vnet_hdr *vnet);

/* What workers.c needs of datapath.c. */

/* A worker's datapath over the tables of 'owner', looking up in flow-table
 * lane 'lane', with no ports; ps_dp_free() frees it, not the tables. */
struct ps_dp *ps_dp_new_worker(struct ps_dp *owner, uint32_t lane, uint32_t max_upcalls);

/* The port attached as 'port_no', or NULL. */
struct ps_port *ps_dp_port(const struct ps_dp *dp, uint16_t port_no);

/* Attaches 'port', owned (and closed) by another datapath, as 'port_no'. */
void ps_dp_port_borrow(struct ps_dp *dp, uint16_t port_no, struct ps_port *port);

/* Whether a run receives on port 'port_no' (it always may send on it). */
void ps_dp_port_set_rx(struct ps_dp *dp, uint16_t port_no, bool rx);

/* Stops receiving on the port whose fd is 'fd', counted once in its
 * rx_errors: poll(2) said POLLERR and ps_fd_clear_error() could not clear it
 * (a TAP fd whose device was deleted), so polling it again would spin until
 * the slow path deletes the port. */
void ps_dp_rx_fd_failed(struct ps_dp *dp, int fd);

/* Whether a port it receives on has frames waiting (ring or memory queue). */
bool ps_dp_rx_ready(const struct ps_dp *dp);

/* Stores the fds of the ports it receives on in 'fds' (PS_MAX_PORTS room)
 * and the slow path's wake fds in 'fds' (PS_MAX_WAKE_FDS room); returns how
 * many. */
uint32_t ps_dp_rx_fds(const struct ps_dp *dp, int *fds);
uint32_t ps_dp_wake_fds(const struct ps_dp *dp, int *fds);

/* ps_dp_run() without discarding the upcalls queued before: a worker goes on
 * forwarding until the slow path gathers them. */
int ps_dp_run_more(struct ps_dp *dp, int64_t now_ms);

/* The upcall queue: empty it, count it, move one's upcalls to the end of
 * another's (emptying the first). */
void ps_dp_upcalls_clear(struct ps_dp *dp);
uint32_t ps_dp_n_upcalls(const struct ps_dp *dp);
void ps_dp_upcalls_move(struct ps_dp *dst, struct ps_dp *src);

/* Its capture buffer is more than half full (tap.h): the slow path must read it soon. */
bool ps_dp_capture_pressing(const struct ps_dp *dp);

#endif /* PS_WORKERS_H */
