/* vipguard.c: per-VIP limits against new-connection floods (docs/DATAPATH.md "VIP guards").
 *
 * One slot per VIP id, allocated zeroed for all ids at once: calloc() maps
 * the pages lazily, so only the slots of VIPs in use cost memory.
 *
 * The upcall bucket counts in token-milliseconds (PER_TOKEN a token) so
 * that refilling 'upcall_rate' tokens a second stays an integer product of
 * the milliseconds elapsed, and the twin (pyswitch/refpath/vipguard.py)
 * computes exactly the same.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vipguard.h"

#define PER_TOKEN 1000                  /* credit of one token: a rate of tokens a second times milliseconds */

struct vip_guard {
    struct ps_vip_guard limits;         /* 0: no limit */
    uint64_t credit;                    /* token-milliseconds in the bucket, at most upcall_burst * PER_TOKEN */
    int64_t refilled_ms;                /* when 'credit' was last refilled */
    bool clock_set;                     /* 'refilled_ms' holds a time: false until the first upcall */
    struct ps_vip_guard_stats stats;    /* embryonic kept current */
};

struct ps_vip_guards {
    struct vip_guard slots[PS_VIP_GUARD_MAX_VIPS];  /* by VIP id; [0] unused */
};

struct ps_vip_guards *
ps_vip_guards_new(void)
{
    return calloc(1, sizeof(struct ps_vip_guards));
}

void
ps_vip_guards_free(struct ps_vip_guards *guards)
{
    free(guards);
}

static inline struct vip_guard *
slot_of(const struct ps_vip_guards *guards, uint32_t vip_id)
{
    return vip_id > 0 && vip_id < PS_VIP_GUARD_MAX_VIPS ? (struct vip_guard *) &guards->slots[vip_id] : NULL;
}

int
ps_vip_guards_set(struct ps_vip_guards *guards, uint32_t vip_id, const struct ps_vip_guard *limits)
{
    struct vip_guard *g = slot_of(guards, vip_id);

    if (!g || limits->upcall_rate > PS_VIP_GUARD_MAX_RATE || limits->upcall_burst > PS_VIP_GUARD_MAX_RATE
        || (limits->upcall_rate && !limits->upcall_burst)) {
        return -EINVAL;
    }
    g->limits = *limits;
    g->credit = (uint64_t) limits->upcall_burst * PER_TOKEN;
    g->clock_set = false;
    return 0;
}

int
ps_vip_guards_get_stats(const struct ps_vip_guards *guards, uint32_t vip_id, struct ps_vip_guard_stats *out)
{
    const struct vip_guard *g = slot_of(guards, vip_id);

    if (!g) {
        return -EINVAL;
    }
    *out = g->stats;
    return 0;
}

void
ps_vip_guard_embryonic_count(struct ps_vip_guards *guards, uint32_t vip_id, int delta)
{
    struct vip_guard *g = slot_of(guards, vip_id);

    if (g) {
        g->stats.embryonic += delta;
    }
}

bool
ps_vip_guard_embryonic_full(const struct ps_vip_guards *guards, uint32_t vip_id)
{
    const struct vip_guard *g = slot_of(guards, vip_id);

    return g && g->limits.max_embryonic && g->stats.embryonic >= g->limits.max_embryonic;
}

void
ps_vip_guard_count_evicted(struct ps_vip_guards *guards, uint32_t vip_id)
{
    struct vip_guard *g = slot_of(guards, vip_id);

    if (g) {
        g->stats.embryonic_evicted++;
    }
}

void
ps_vip_guard_count_refused(struct ps_vip_guards *guards, uint32_t vip_id)
{
    struct vip_guard *g = slot_of(guards, vip_id);

    if (g) {
        g->stats.embryonic_refused++;
    }
}

/* Adds the credit earned from 'g->refilled_ms' to 'now_ms', up to the
 * bucket's size.  A clock that goes backwards earns nothing. */
static void
bucket_refill(struct vip_guard *g, int64_t now_ms)
{
    uint64_t cap = (uint64_t) g->limits.upcall_burst * PER_TOKEN;
    uint64_t room, elapsed;

    if (!g->clock_set) {
        g->refilled_ms = now_ms;
        g->clock_set = true;
        return;
    }
    if (now_ms <= g->refilled_ms) {
        return;
    }
    elapsed = (uint64_t) (now_ms - g->refilled_ms);
    room = cap > g->credit ? cap - g->credit : 0;
    /* Compared before multiplying: a long idle time must not overflow. */
    g->credit = elapsed > room / g->limits.upcall_rate ? cap : g->credit + elapsed * g->limits.upcall_rate;
    g->refilled_ms = now_ms;
}

bool
ps_vip_guard_admit_upcall(struct ps_vip_guards *guards, uint32_t vip_id, int64_t now_ms)
{
    struct vip_guard *g = slot_of(guards, vip_id);

    /* Few half-open connections: no flood, however fast new clients come
     * (F5's SYN check activation threshold); the bucket waits untouched. */
    if (!g || !g->limits.upcall_rate || g->stats.embryonic < g->limits.upcall_threshold) {
        return true;
    }
    bucket_refill(g, now_ms);
    if (g->credit < PER_TOKEN) {
        g->stats.upcalls_limited++;
        return false;
    }
    g->credit -= PER_TOKEN;
    return true;
}
