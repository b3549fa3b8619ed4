/* vipguard.h: per-VIP limits against new-connection floods (vipguard.c;
 * docs/DATAPATH.md "VIP guards").
 *
 * The connection table (conntrack.c) keeps each VIP's count of embryonic
 * (SYN-state) connections here as entries enter and leave PS_CS_SYN, asks
 * whether a VIP is at its embryonic limit before it adds a SYN-state
 * connection, and asks the VIP's token bucket before it sends a CONN_MISS
 * upcall.  What is limited and what the limits are is the slow path's
 * choice (pyswitch/pipeline/vip.py); this file only counts and meters.
 */
#ifndef PS_VIPGUARD_H
#define PS_VIPGUARD_H 1

#include <stdbool.h>
#include <stdint.h>

#include "pyswitch.h"

struct ps_vip_guards;

/* Returns guards for every VIP id, all without limits, or NULL. */
struct ps_vip_guards *ps_vip_guards_new(void);
void ps_vip_guards_free(struct ps_vip_guards *guards);

/* Sets VIP 'vip_id''s limits to '*limits' and fills its bucket; returns 0
 * or -EINVAL (see ps_dp_vip_guard_set()). */
int ps_vip_guards_set(struct ps_vip_guards *guards, uint32_t vip_id, const struct ps_vip_guard *limits);

/* Fills '*out' with VIP 'vip_id''s counters; returns 0 or -EINVAL. */
int ps_vip_guards_get_stats(const struct ps_vip_guards *guards, uint32_t vip_id, struct ps_vip_guard_stats *out);

/* Adds 'delta' (+1 or -1) to VIP 'vip_id''s embryonic count.  Ids without
 * a guard slot are ignored. */
void ps_vip_guard_embryonic_count(struct ps_vip_guards *guards, uint32_t vip_id, int delta);

/* Returns true if VIP 'vip_id' holds as many embryonic connections as its
 * limit allows: a new one must take the place of one of them. */
bool ps_vip_guard_embryonic_full(const struct ps_vip_guards *guards, uint32_t vip_id);

/* Counts an embryonic connection of 'vip_id' evicted for a new one, or a new
 * one refused because none of the VIP's own could be found to evict. */
void ps_vip_guard_count_evicted(struct ps_vip_guards *guards, uint32_t vip_id);
void ps_vip_guard_count_refused(struct ps_vip_guards *guards, uint32_t vip_id);

/* Returns true if VIP 'vip_id' may send a CONN_MISS upcall at 'now_ms':
 * it holds fewer embryonic connections than its upcall_threshold, or its
 * bucket has a token (taken).  False if its rate is used up (counted in
 * upcalls_limited). */
bool ps_vip_guard_admit_upcall(struct ps_vip_guards *guards, uint32_t vip_id, int64_t now_ms);

#endif /* PS_VIPGUARD_H */
