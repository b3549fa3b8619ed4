/* conntrack.h: the datapath's connection table and the LB actions (conntrack.c).
 *
 * The public ps_dp_conn_* functions (pyswitch.h) edit the table of a
 * datapath; the datapath's sink calls ps_lb_frame() for every PS_ACT_LB and
 * PS_ACT_LB_REPLY and turns its verdict into an output, an upcall or nothing,
 * as it does with ps_route_frame()'s.
 */
#ifndef PS_CONNTRACK_H
#define PS_CONNTRACK_H 1

#include <stdbool.h>
#include <stdint.h>

#include "actions.h"
#include "pyswitch.h"
#include "ring.h"
#include "route.h"

struct ps_conntrack;

/* Returns an empty table with the default bound and timeouts, or NULL.  It
 * allocates its entries and hash buckets only when the first connection is
 * added, so a datapath that balances nothing pays for nothing. */
struct ps_conntrack *ps_conntrack_new(void);
void ps_conntrack_free(struct ps_conntrack *ct);

/* Returns how many events wait to be drained by ps_dp_conn_events(). */
uint32_t ps_conntrack_n_events(const struct ps_conntrack *ct);

/* Returns how many events were ever queued.  Safe to call while workers run
 * LB (a relaxed read): a worker compares it with an earlier value to learn
 * that the slow path has events to drain. */
uint64_t ps_conntrack_events_pushed(const struct ps_conntrack *ct);

/* Makes ps_lb_frame() take the table's lock ('shared': workers run LB in
 * parallel) or not (one thread). */
void ps_conntrack_set_shared(struct ps_conntrack *ct, bool shared);

/* Returns the connection table of 'dp' (datapath.c). */
struct ps_conntrack *ps_dp_conntrack(const struct ps_dp *dp);

/* Runs PS_ACT_LB or PS_ACT_LB_REPLY ('action') on 'frame' at 'now_ms' (already
 * resolved) with the connection table 'ct', the Maglev rings 'rings' and the
 * routing tables 'routes' (docs/DATAPATH.md, "Connection table"), counting
 * in 'stats' what ROUTE counts.  A connection's first packet to a VIP with a
 * ring adds the connection here (a CE_NEW event) instead of going up.  The verdict means what ps_route_frame()'s does: the frame changes
 * only when it is PS_ROUTE_FORWARD, and an upcall (PS_UPCALL_CONN_MISS with
 * the VIP id, PS_UPCALL_L7 with a held connection's VIP id, or one of
 * ROUTE's) carries the frame as it was. */
enum ps_route_verdict ps_lb_frame(struct ps_conntrack *ct, struct ps_rings *rings, const struct ps_routes *routes,
                                  struct ps_frame *frame, const struct ps_action *action, int64_t now_ms,
                                  struct ps_dp_stats *stats, struct ps_route_result *result);

#endif /* PS_CONNTRACK_H */
