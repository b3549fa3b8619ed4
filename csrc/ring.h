/* ring.h: the Maglev rings that schedule new connections in the datapath
 * (ring.c; docs/DATAPATH.md "Maglev rings").
 *
 * The slow path builds each ring (pyswitch/lb/maglev.py) and writes only the
 * slots that change; LB (conntrack.c) asks ps_ring_pick() for the backend of
 * a connection it does not know before it would go up as CONN_MISS.
 */
#ifndef PS_RING_H
#define PS_RING_H 1

#include <stdint.h>

#include "pyswitch.h"

struct ps_rings;

/* Returns an empty set of rings, or NULL.  Rings are allocated per VIP by
 * ps_dp_ring_config(). */
struct ps_rings *ps_rings_new(void);
void ps_rings_free(struct ps_rings *rings);

/* Returns the rings of 'dp' (datapath.c). */
struct ps_rings *ps_dp_rings(const struct ps_dp *dp);

/* Returns the backend the ring of VIP 'vip_id' holds for a client at
 * 'client_addr' (4 bytes), or NULL when that VIP has no ring, the slot is
 * PS_RING_EMPTY or names a backend never set. */
const struct ps_ring_backend *ps_ring_pick(const struct ps_rings *rings, uint32_t vip_id,
                                           const uint8_t *client_addr);

/* Counts one connection added from a ring (ps_ring_stats.scheduled). */
void ps_rings_count_scheduled(struct ps_rings *rings);

#endif /* PS_RING_H */
