/* route.h: the datapath's routing tables and the ROUTE action (route.c).
 *
 * The public ps_dp_route_* / nexthop_* / neigh_* functions (pyswitch.h) edit
 * the tables of a datapath; the datapath's sink calls ps_route_frame() for
 * every PS_ACT_ROUTE and turns its verdict into an output, an upcall or
 * nothing.  The executor in actions.c never sees the tables.
 */
#ifndef PS_ROUTE_H
#define PS_ROUTE_H 1

#include <stdint.h>

#include "actions.h"
#include "pyswitch.h"

/* The bounds of a datapath's LPM. */
#define PS_DP_MAX_ROUTES 65536   /* rules */
#define PS_DP_MAX_TBL8 4096      /* /24s holding a route longer than /24 */

struct ps_routes;

/* What ps_route_frame() decided. */
enum ps_route_verdict {
    PS_ROUTE_FORWARD,            /* the frame is rewritten: emit it to 'port' */
    PS_ROUTE_DROP,               /* drop it (already counted) */
    PS_ROUTE_UPCALL,             /* the unchanged frame goes up with 'reason' and 'userdata' */
};

/* The details of a verdict. */
struct ps_route_result {
    uint16_t port;               /* FORWARD: the neighbor's port */
    uint16_t reason;             /* UPCALL: PS_UPCALL_NO_ROUTE, _NO_NEIGH, _TTL, _LOCAL */
    uint32_t userdata;           /* UPCALL: the next-hop id for NO_NEIGH, else 0 */
    const struct ps_nexthop *nh; /* FORWARD: the next hop, for ps_route_rewrite() */
    const struct ps_neigh *neigh;/* FORWARD: the neighbor, likewise */
};

struct ps_routes *ps_routes_new(void);
void ps_routes_free(struct ps_routes *routes);

/* Returns the routing tables of 'dp' (datapath.c). */
struct ps_routes *ps_dp_routes(struct ps_dp *dp);

/* Runs the ROUTE action's steps 1-6 (docs/DATAPATH.md, "Routing") on 'frame'
 * with the tables 'routes', counting routed, route_dropped and martian in
 * 'stats'.  The longest-prefix match, and the neighbor of a CONNECTED next
 * hop, use 'via' (4 bytes) instead of the destination if it is not NULL.
 * The frame changes only when the verdict is PS_ROUTE_FORWARD. */
enum ps_route_verdict ps_route_frame(const struct ps_routes *routes, struct ps_frame *frame, const uint8_t *via,
                                     struct ps_dp_stats *stats, struct ps_route_result *result);

/* Steps 2-5 alone, for a packet that will have source 'src', destination
 * 'dst' and TTL 'ttl' (4-byte addresses) once its caller has rewritten it:
 * decides without touching any frame, counting drops in 'stats'.  'via' as
 * for ps_route_frame().  On PS_ROUTE_FORWARD, ps_route_rewrite() must follow
 * before the tables change. */
enum ps_route_verdict ps_route_decide(const struct ps_routes *routes, const uint8_t *src, const uint8_t *dst,
                                      const uint8_t *via, uint8_t ttl, struct ps_dp_stats *stats,
                                      struct ps_route_result *result);

/* Step 6 on 'frame', an IPv4 packet behind at most two VLAN tags, with the
 * next hop and neighbor ps_route_decide() found in 'result': tags removed,
 * TTL - 1, MACs set, the egress tag pushed; counts 'routed'. */
void ps_route_rewrite(struct ps_frame *frame, const struct ps_route_result *result, struct ps_dp_stats *stats);

#endif /* PS_ROUTE_H */
