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

/* Looks up 'key' like ps_ft_lookup() (same counters, same recency update) but
 * returns the flow's actions in place, or NULL on a miss.  'now_ms' must be
 * resolved already (not -1).  The pointer is valid until the table changes. */
const struct ps_flow_actions *ps_ft_lookup_actions(struct ps_flowtable *ft, const struct ps_flow_key *key,
                                                   uint32_t size, int64_t now_ms);

/* Returns CLOCK_MONOTONIC in milliseconds: what now_ms = -1 means. */
int64_t ps_monotonic_ms(void);

/* Returns 'now_ms', or the monotonic clock if it is -1. */
static inline int64_t
ps_resolve_now(int64_t now_ms)
{
    return now_ms == -1 ? ps_monotonic_ms() : now_ms;
}

#endif /* PS_FLOWTABLE_H */
