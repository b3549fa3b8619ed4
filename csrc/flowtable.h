/* flowtable.h: the flow table's internals that the datapath needs.
 *
 * The public ps_ft_* functions (pyswitch.h) copy flows out as struct
 * ps_flow_info; the datapath instead borrows the flow itself, valid until
 * the next call that changes the table, to run its actions without a copy.
 */
#ifndef PS_FLOWTABLE_H
#define PS_FLOWTABLE_H 1

#include <stdint.h>

#include "pyswitch.h"

/* One installed flow, as the datapath sees it after a lookup. */
struct ps_flow_actions {
    uint32_t n_actions;                          /* entries used in 'actions' */
    struct ps_action actions[PS_MAX_ACTIONS];    /* the list, run in order */
};

/* Lanes a table can have: one per datapath worker. */
#define PS_FT_MAX_LANES PS_MAX_WORKERS

/* Looks up 'key' like ps_ft_lookup() (same counters, same recency update) in
 * lane 'lane' (< the table's lanes), and returns the flow's actions in place,
 * or NULL on a miss.  'now_ms' must be resolved already (not -1).  The
 * pointer is valid until the table changes.  Lookups in different lanes may
 * run in parallel. */
const struct ps_flow_actions *ps_ft_lookup_actions(struct ps_flowtable *ft, uint32_t lane,
                                                   const struct ps_flow_key *key, uint32_t size, int64_t now_ms);

/* Gives 'ft' 'n_lanes' lanes (1..PS_FT_MAX_LANES): 0, -EINVAL, -ENOMEM. */
int ps_ft_set_lanes(struct ps_flowtable *ft, uint32_t n_lanes);

/* The lookup counters of one lane (emc_hits, masked_hits, misses; the rest
 * zero): 0, or -ENOENT for a lane the table does not have. */
int ps_ft_get_lane_stats(const struct ps_flowtable *ft, uint32_t lane, struct ps_ft_stats *out);

/* Returns CLOCK_MONOTONIC in milliseconds: what now_ms = -1 means. */
int64_t ps_monotonic_ms(void);

/* Returns 'now_ms', or the monotonic clock if it is -1. */
static inline int64_t
ps_resolve_now(int64_t now_ms)
{
    return now_ms == -1 ? ps_monotonic_ms() : now_ms;
}

#endif /* PS_FLOWTABLE_H */
