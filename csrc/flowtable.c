/* flowtable.c: a bounded, wildcarded flow table with an exact-match cache.
 *
 * Flows live in a fixed array of 'max_flows' slots.  Flows sharing a (mask,
 * priority) pair form a subtable with its own hash table keyed by the masked
 * key; a lookup tries the subtables in priority order (equal priorities: the
 * older subtable first) and the first hit wins, which is the contract's
 * "highest priority, then earliest subtable".  An exact-match cache (EMC) in
 * front remembers full key -> slot for keys that hit.
 *
 * Three doubly linked lists of slot indices run through the slots: the LRU
 * list (head = most recent), the creation-order list (dumps walk it, so they
 * list flows in the order they were installed) and, singly linked, each
 * subtable bucket's chain.
 *
 * What a lookup writes lives in a lane: the EMC, each flow's hit counters and
 * the lookup counters.  A table has one lane; with datapath workers
 * (workers.c) it has one per worker, so that workers looking up in parallel
 * write only memory of their own, and the flow's counters are the sum of its
 * lanes'.  The one shared write of a hit, the LRU move at most once per
 * PS_LRU_GRANULE_MS, then takes 'lru_lock'.  Everything else changes only
 * while no worker runs (the slow path holds the world), so lookups need no
 * lock for it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actions.h"
#include "flowtable.h"
#include "ps_consts.h"
#include "pyswitch.h"

#define PS_NIL UINT32_MAX          /* "no slot" in every list */
#define KEY_WORDS (PS_KEY_SIZE / 8)

/* A flow key as eight 64-bit words, for masking, hashing and comparing. */
struct key_words {
    uint64_t w[KEY_WORDS];         /* the 64 key bytes, in memory order */
};

struct subtable {
    struct key_words mask;         /* the mask every flow here was installed with */
    uint32_t priority;             /* ...and the priority */
    uint64_t seq;                  /* creation sequence: orders equal priorities */
    uint32_t *buckets;             /* heads of slot chains, PS_NIL when empty */
    uint32_t n_buckets;            /* a power of two */
    uint32_t n_flows;              /* flows in this subtable; 0 destroys it */
};

struct flow {
    struct key_words key;          /* the installed key, already masked */
    struct subtable *subtable;     /* mask and priority; NULL when the slot is free */
    uint32_t gen;                  /* bumped when the slot is freed, so EMC entries go stale */
    uint32_t hash;                 /* hash of 'key' in its subtable */
    uint32_t bucket_next;          /* next slot in the subtable bucket */
    uint32_t lru_prev, lru_next;   /* LRU list neighbours (prev is more recent) */
    uint32_t all_prev, all_next;   /* creation-order list neighbours; all_next is also the free list */
    uint32_t idle_timeout_ms;      /* 0: never expires */
    uint64_t cookie;               /* the slow path's tag */
    int64_t lru_granule;           /* floor(now / PS_LRU_GRANULE_MS) of the last recency update */
    struct ps_flow_actions acts;   /* what a hit runs */
};

/* One lane's share of a flow's counters; the flow's are the sum over lanes. */
struct flow_use {
    uint64_t packets;              /* hits in this lane */
    uint64_t bytes;                /* bytes of those hits */
    int64_t used_ms;               /* lane 0: last hit or the insertion time; others: last hit, USED_NEVER */
};

#define USED_NEVER INT64_MIN       /* flow_use.used_ms of a lane that has not hit the flow */

struct emc_entry {
    struct key_words key;          /* the full, unmasked key */
    uint32_t slot;                 /* the flow it hit */
    uint32_t gen;                  /* the slot's generation then */
    uint32_t epoch;                /* the table's insert epoch then; 0 never matches */
};

/* What one reader of the table writes when it looks up.  A cache line of its
 * own: the counters change on every lookup, and lanes sit side by side in
 * the table, so two workers would otherwise trade the line on every frame. */
struct lane {
    struct emc_entry *emc;         /* n_emc_sets * PS_EMC_WAYS entries, or NULL: no EMC */
    struct flow_use *use;          /* per slot, max_flows entries */
    uint64_t emc_hits;             /* lookups the EMC answered */
    uint64_t masked_hits;          /* lookups the subtables answered */
    uint64_t misses;               /* lookups nothing answered */
} __attribute__((aligned(PS_CACHE_LINE)));

struct ps_flowtable {
    struct flow *flows;            /* max_flows slots */
    uint32_t max_flows;            /* the bound */
    uint32_t n_used_slots;         /* slots ever handed out: slots above are untouched */
    uint32_t free_head;            /* freed slots, linked through all_next */
    uint32_t lru_head, lru_tail;   /* most and least recently used */
    uint32_t all_head, all_tail;   /* oldest and newest flow */
    struct subtable *subtables[PS_MAX_SUBTABLES]; /* by priority desc, then seq asc */
    uint32_t n_subtables;          /* entries used in 'subtables' */
    uint64_t subtable_seq;         /* next subtable's seq */
    struct lane lanes[PS_FT_MAX_LANES]; /* n_lanes used: the EMC and counters of each reader */
    uint32_t n_lanes;              /* 1, or the datapath's workers */
    uint32_t n_emc_sets;           /* per lane: a power of two, or 0: no EMC */
    uint32_t emc_epoch;            /* bumped by every new flow, which may shadow a cached hit */
    pthread_mutex_t lru_lock;      /* taken by a hit's LRU move when n_lanes > 1 */
    struct ps_ft_stats stats;      /* counters; flows/subtables kept current, lookups in the lanes */
};

int64_t
ps_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Floor division, as Python's '//', so that negative fake clocks behave like
 * the twin's. */
static inline int64_t
granule_of(int64_t now_ms)
{
    int64_t q = now_ms / PS_LRU_GRANULE_MS;

    return (now_ms % PS_LRU_GRANULE_MS < 0) ? q - 1 : q;
}

static inline void
key_load(struct key_words *dst, const struct ps_flow_key *src)
{
    memcpy(dst, src, sizeof *dst);
}

static inline void
key_and(struct key_words *dst, const struct key_words *key, const struct key_words *mask)
{
    for (int i = 0; i < KEY_WORDS; i++) {
        dst->w[i] = key->w[i] & mask->w[i];
    }
}

static inline bool
key_eq(const struct key_words *a, const struct key_words *b)
{
    uint64_t diff = 0;

    for (int i = 0; i < KEY_WORDS; i++) {
        diff |= a->w[i] ^ b->w[i];
    }
    return diff == 0;
}

static inline uint32_t
key_hash(const struct key_words *key, uint64_t seed)
{
    uint64_t h = seed;

    for (int i = 0; i < KEY_WORDS; i++) {
        h ^= key->w[i];
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 32;
    return (uint32_t) h;
}

static uint32_t
round_up_pow2(uint32_t n)
{
    uint32_t p = 1;

    while (p < n && p < (1u << 31)) {
        p <<= 1;
    }
    return p;
}

/* Allocates lane 'i' of 'ft': an EMC of 'n_emc_sets' sets and the per-slot
 * counters.  calloc() of the large counter array maps zero pages lazily, so a
 * lane costs memory only for slots it has hit.  Returns false on failure. */
static bool
lane_init(struct ps_flowtable *ft, uint32_t i)
{
    struct lane *lane = &ft->lanes[i];

    memset(lane, 0, sizeof *lane);
    lane->use = calloc(ft->max_flows, sizeof *lane->use);
    if (ft->n_emc_sets) {
        lane->emc = calloc((size_t) ft->n_emc_sets * PS_EMC_WAYS, sizeof *lane->emc);
    }
    if (!lane->use || (ft->n_emc_sets && !lane->emc)) {
        free(lane->use);
        free(lane->emc);
        memset(lane, 0, sizeof *lane);
        return false;
    }
    /* A new lane has not hit any flow yet, whichever slots are in use. */
    for (uint32_t slot = 0; i > 0 && slot < ft->n_used_slots; slot++) {
        lane->use[slot].used_ms = USED_NEVER;
    }
    return true;
}

static void
lane_destroy(struct lane *lane)
{
    free(lane->use);
    free(lane->emc);
    memset(lane, 0, sizeof *lane);
}

/* Returns a table of at most 'max_flows' (>= 1) flows with an exact-match
 * cache of about 'emc_entries' entries (0 disables it), or NULL. */
struct ps_flowtable *
ps_ft_new(uint32_t max_flows, uint32_t emc_entries)
{
    struct ps_flowtable *ft;

    if (max_flows == 0 || max_flows >= PS_NIL) {
        return NULL;
    }
    /* Cache-line aligned, for its lanes (the struct's size is a multiple of
     * the line, as aligned_alloc() wants). */
    ft = aligned_alloc(PS_CACHE_LINE, sizeof *ft);
    if (!ft) {
        return NULL;
    }
    memset(ft, 0, sizeof *ft);
    ft->max_flows = max_flows;
    if (emc_entries) {
        ft->n_emc_sets = round_up_pow2((emc_entries + PS_EMC_WAYS - 1) / PS_EMC_WAYS);
    }
    /* calloc() of a large array maps zero pages lazily: slots cost memory
     * only once used ('n_used_slots'). */
    ft->flows = calloc(max_flows, sizeof *ft->flows);
    if (!ft->flows || !lane_init(ft, 0)) {
        free(ft->flows);
        free(ft);
        return NULL;
    }
    ft->n_lanes = 1;
    pthread_mutex_init(&ft->lru_lock, NULL);
    ft->free_head = ft->lru_head = ft->lru_tail = ft->all_head = ft->all_tail = PS_NIL;
    ft->emc_epoch = 1;
    ft->stats.max_flows = max_flows;
    return ft;
}

void
ps_ft_free(struct ps_flowtable *ft)
{
    if (!ft) {
        return;
    }
    for (uint32_t i = 0; i < ft->n_subtables; i++) {
        free(ft->subtables[i]->buckets);
        free(ft->subtables[i]);
    }
    for (uint32_t i = 0; i < ft->n_lanes; i++) {
        lane_destroy(&ft->lanes[i]);
    }
    pthread_mutex_destroy(&ft->lru_lock);
    free(ft->flows);
    free(ft);
}

/* Gives 'ft' 'n_lanes' lanes (1..PS_FT_MAX_LANES), keeping lane 0 and the
 * counters of the lanes it keeps; a lane removed takes its counts with it.
 * Returns 0, -EINVAL, or -ENOMEM (nothing changed). */
int
ps_ft_set_lanes(struct ps_flowtable *ft, uint32_t n_lanes)
{
    if (n_lanes < 1 || n_lanes > PS_FT_MAX_LANES) {
        return -EINVAL;
    }
    for (uint32_t i = ft->n_lanes; i < n_lanes; i++) {
        if (!lane_init(ft, i)) {
            while (i-- > ft->n_lanes) {
                lane_destroy(&ft->lanes[i]);
            }
            return -ENOMEM;
        }
    }
    for (uint32_t i = n_lanes; i < ft->n_lanes; i++) {
        lane_destroy(&ft->lanes[i]);
    }
    ft->n_lanes = n_lanes;
    return 0;
}

/* The flow in 'slot''s counters, summed over the lanes; the last use is the
 * latest lane's. */
static struct flow_use
flow_use_total(const struct ps_flowtable *ft, uint32_t slot)
{
    struct flow_use total = ft->lanes[0].use[slot];

    for (uint32_t i = 1; i < ft->n_lanes; i++) {
        const struct flow_use *u = &ft->lanes[i].use[slot];

        total.packets += u->packets;
        total.bytes += u->bytes;
        if (u->used_ms > total.used_ms) {
            total.used_ms = u->used_ms;
        }
    }
    return total;
}

/* LRU list. */

static void
lru_unlink(struct ps_flowtable *ft, uint32_t slot)
{
    struct flow *f = &ft->flows[slot];

    if (f->lru_prev != PS_NIL) {
        ft->flows[f->lru_prev].lru_next = f->lru_next;
    } else {
        ft->lru_head = f->lru_next;
    }
    if (f->lru_next != PS_NIL) {
        ft->flows[f->lru_next].lru_prev = f->lru_prev;
    } else {
        ft->lru_tail = f->lru_prev;
    }
}

static void
lru_push_head(struct ps_flowtable *ft, uint32_t slot)
{
    struct flow *f = &ft->flows[slot];

    f->lru_prev = PS_NIL;
    f->lru_next = ft->lru_head;
    if (ft->lru_head != PS_NIL) {
        ft->flows[ft->lru_head].lru_prev = slot;
    } else {
        ft->lru_tail = slot;
    }
    ft->lru_head = slot;
}

/* Makes the flow in 'slot' the most recent one as of 'now_ms'. */
static void
lru_touch(struct ps_flowtable *ft, uint32_t slot, int64_t now_ms)
{
    if (ft->lru_head != slot) {
        lru_unlink(ft, slot);
        lru_push_head(ft, slot);
    }
    /* Read without the lock by lookup_touch() in other lanes. */
    __atomic_store_n(&ft->flows[slot].lru_granule, granule_of(now_ms), __ATOMIC_RELAXED);
}

/* The flow a full table gives up for a new one: the least recently used flow
 * that has an idle timeout.  Permanent flows (idle_timeout_ms 0: the routing,
 * ARP and VIP flows the slow path installs once and never again) are never
 * evicted, or a flood of new flows could take routing away for good; each one
 * met at the tail moves to the head, so that the next search does not walk
 * past it again.  Returns PS_NIL if every flow is permanent (the rotation of
 * all of them then leaves the list as it was). */
static uint32_t
lru_victim(struct ps_flowtable *ft)
{
    for (uint32_t n = ft->stats.flows; n > 0; n--) {
        uint32_t slot = ft->lru_tail;

        if (ft->flows[slot].idle_timeout_ms) {
            return slot;
        }
        lru_unlink(ft, slot);
        lru_push_head(ft, slot);
    }
    return PS_NIL;
}

/* Subtables. */

static struct subtable *
subtable_find(const struct ps_flowtable *ft, const struct key_words *mask, uint32_t priority)
{
    for (uint32_t i = 0; i < ft->n_subtables; i++) {
        struct subtable *st = ft->subtables[i];

        if (st->priority == priority && key_eq(&st->mask, mask)) {
            return st;
        }
    }
    return NULL;
}

/* Creates the subtable for ('mask', 'priority'), placed after every subtable
 * of higher or equal priority: equal priorities keep creation order.  The
 * caller has checked that there is room. */
static struct subtable *
subtable_create(struct ps_flowtable *ft, const struct key_words *mask, uint32_t priority)
{
    struct subtable *st = calloc(1, sizeof *st);
    uint32_t pos;

    if (!st) {
        return NULL;
    }
    st->buckets = malloc(PS_SUBTABLE_MIN_BUCKETS * sizeof *st->buckets);
    if (!st->buckets) {
        free(st);
        return NULL;
    }
    memset(st->buckets, 0xff, PS_SUBTABLE_MIN_BUCKETS * sizeof *st->buckets);
    st->n_buckets = PS_SUBTABLE_MIN_BUCKETS;
    st->mask = *mask;
    st->priority = priority;
    st->seq = ft->subtable_seq++;

    for (pos = 0; pos < ft->n_subtables && ft->subtables[pos]->priority >= priority; pos++) {
        continue;
    }
    memmove(&ft->subtables[pos + 1], &ft->subtables[pos], (ft->n_subtables - pos) * sizeof st);
    ft->subtables[pos] = st;
    ft->n_subtables++;
    ft->stats.subtables = ft->n_subtables;
    return st;
}

static void
subtable_destroy(struct ps_flowtable *ft, struct subtable *st)
{
    uint32_t pos;

    for (pos = 0; ft->subtables[pos] != st; pos++) {
        continue;
    }
    memmove(&ft->subtables[pos], &ft->subtables[pos + 1], (ft->n_subtables - pos - 1) * sizeof st);
    ft->n_subtables--;
    ft->stats.subtables = ft->n_subtables;
    free(st->buckets);
    free(st);
}

static uint32_t
subtable_find_flow(const struct ps_flowtable *ft, const struct subtable *st, const struct key_words *masked,
                   uint32_t hash)
{
    uint32_t slot = st->buckets[hash & (st->n_buckets - 1)];

    while (slot != PS_NIL) {
        const struct flow *f = &ft->flows[slot];

        if (f->hash == hash && key_eq(&f->key, masked)) {
            return slot;
        }
        slot = f->bucket_next;
    }
    return PS_NIL;
}

/* Doubles the buckets of 'st' when it holds more flows than buckets; on
 * allocation failure the chains just grow longer. */
static void
subtable_maybe_grow(struct ps_flowtable *ft, struct subtable *st)
{
    uint32_t n = st->n_buckets * 2;
    uint32_t *buckets;

    if (st->n_flows <= st->n_buckets || n == 0) {
        return;
    }
    buckets = malloc((size_t) n * sizeof *buckets);
    if (!buckets) {
        return;
    }
    memset(buckets, 0xff, (size_t) n * sizeof *buckets);
    for (uint32_t b = 0; b < st->n_buckets; b++) {
        uint32_t slot = st->buckets[b];

        while (slot != PS_NIL) {
            struct flow *f = &ft->flows[slot];
            uint32_t next = f->bucket_next;

            f->bucket_next = buckets[f->hash & (n - 1)];
            buckets[f->hash & (n - 1)] = slot;
            slot = next;
        }
    }
    free(st->buckets);
    st->buckets = buckets;
    st->n_buckets = n;
}

/* Flow slots. */

static uint32_t
slot_alloc(struct ps_flowtable *ft)
{
    uint32_t slot;

    if (ft->free_head != PS_NIL) {
        slot = ft->free_head;
        ft->free_head = ft->flows[slot].all_next;
    } else {
        slot = ft->n_used_slots++;
    }
    return slot;
}

/* Removes the flow in 'slot' from every list and frees the slot; destroys
 * its subtable if it was the last flow there.  Does not count the removal. */
static void
flow_remove(struct ps_flowtable *ft, uint32_t slot)
{
    struct flow *f = &ft->flows[slot];
    struct subtable *st = f->subtable;
    uint32_t *link = &st->buckets[f->hash & (st->n_buckets - 1)];

    while (*link != slot) {
        link = &ft->flows[*link].bucket_next;
    }
    *link = f->bucket_next;

    lru_unlink(ft, slot);
    if (f->all_prev != PS_NIL) {
        ft->flows[f->all_prev].all_next = f->all_next;
    } else {
        ft->all_head = f->all_next;
    }
    if (f->all_next != PS_NIL) {
        ft->flows[f->all_next].all_prev = f->all_prev;
    } else {
        ft->all_tail = f->all_prev;
    }

    if (--st->n_flows == 0) {
        subtable_destroy(ft, st);
    }
    f->subtable = NULL;
    f->gen++;
    f->all_next = ft->free_head;
    ft->free_head = slot;
    ft->stats.flows--;
}

static void
flow_to_info(const struct ps_flowtable *ft, uint32_t slot, struct ps_flow_info *out)
{
    const struct flow *f = &ft->flows[slot];
    struct flow_use use = flow_use_total(ft, slot);

    memset(out, 0, sizeof *out);
    memcpy(&out->key, &f->key, sizeof out->key);
    memcpy(&out->mask, &f->subtable->mask, sizeof out->mask);
    out->priority = f->subtable->priority;
    out->idle_timeout_ms = f->idle_timeout_ms;
    out->cookie = f->cookie;
    out->packets = use.packets;
    out->bytes = use.bytes;
    out->used_ms = use.used_ms;
    out->n_actions = f->acts.n_actions;
    memcpy(out->actions, f->acts.actions, f->acts.n_actions * sizeof out->actions[0]);
}

/* Installs 'key' & 'mask' at 'priority' with the 'n_actions' actions at
 * 'actions', or replaces the actions, timeout and cookie of the flow already
 * installed there.  Returns 0 for a new flow, 1 for a modified one, -EINVAL
 * for a bad action list, -ENOSPC when a new subtable would exceed
 * PS_MAX_SUBTABLES (the check comes before any eviction, so a full table of
 * subtables refuses even if evicting would have emptied one) or when the table
 * is full of permanent flows (none may be evicted), -ENOMEM.  A full table
 * evicts its least recently used flow that has an idle timeout. */
int
ps_ft_put(struct ps_flowtable *ft, const struct ps_flow_key *key, const struct ps_flow_key *mask,
          uint32_t priority, const struct ps_action *actions, uint32_t n_actions,
          uint32_t idle_timeout_ms, uint64_t cookie, int64_t now_ms)
{
    struct key_words k, m, masked;
    struct subtable *st;
    struct flow *f;
    uint32_t slot, hash;

    if (ps_actions_validate(actions, n_actions)) {
        ft->stats.refused++;
        return -EINVAL;
    }
    now_ms = ps_resolve_now(now_ms);
    key_load(&k, key);
    key_load(&m, mask);
    key_and(&masked, &k, &m);
    hash = key_hash(&masked, PS_HASH_SEED_SUBTABLE);

    st = subtable_find(ft, &m, priority);
    if (st) {
        slot = subtable_find_flow(ft, st, &masked, hash);
        if (slot != PS_NIL) {
            f = &ft->flows[slot];
            f->acts.n_actions = n_actions;
            memcpy(f->acts.actions, actions, n_actions * sizeof *actions);
            f->idle_timeout_ms = idle_timeout_ms;
            f->cookie = cookie;
            lru_touch(ft, slot, now_ms);
            ft->stats.modifies++;
            return 1;
        }
    } else if (ft->n_subtables >= PS_MAX_SUBTABLES) {
        ft->stats.refused++;
        return -ENOSPC;
    }

    if (ft->stats.flows >= ft->max_flows) {
        uint32_t victim = lru_victim(ft);

        if (victim == PS_NIL) {
            ft->stats.refused++;
            return -ENOSPC;
        }
        flow_remove(ft, victim);
        ft->stats.evictions++;
        /* The victim may have been the last flow of our subtable. */
        st = subtable_find(ft, &m, priority);
    }
    if (!st) {
        st = subtable_create(ft, &m, priority);
        if (!st) {
            return -ENOMEM;
        }
    }

    slot = slot_alloc(ft);
    f = &ft->flows[slot];
    f->key = masked;
    f->subtable = st;
    f->hash = hash;
    f->idle_timeout_ms = idle_timeout_ms;
    f->cookie = cookie;
    ft->lanes[0].use[slot] = (struct flow_use) { .used_ms = now_ms };
    for (uint32_t i = 1; i < ft->n_lanes; i++) {
        ft->lanes[i].use[slot] = (struct flow_use) { .used_ms = USED_NEVER };
    }
    f->acts.n_actions = n_actions;
    memcpy(f->acts.actions, actions, n_actions * sizeof *actions);

    f->bucket_next = st->buckets[hash & (st->n_buckets - 1)];
    st->buckets[hash & (st->n_buckets - 1)] = slot;
    st->n_flows++;
    subtable_maybe_grow(ft, st);

    f->all_next = PS_NIL;
    f->all_prev = ft->all_tail;
    if (ft->all_tail != PS_NIL) {
        ft->flows[ft->all_tail].all_next = slot;
    } else {
        ft->all_head = slot;
    }
    ft->all_tail = slot;

    lru_push_head(ft, slot);
    f->lru_granule = granule_of(now_ms);

    /* A new flow may outrank the flow an EMC entry remembers for some key;
     * a new epoch retires every entry at once. */
    ft->emc_epoch = ft->emc_epoch + 1 ? ft->emc_epoch + 1 : 1;
    ft->stats.flows++;
    ft->stats.inserts++;
    return 0;
}

/* Removes the flow installed exactly as ('key' & 'mask', 'mask', 'priority').
 * Returns 1 if there was one, 0 if not. */
int
ps_ft_del(struct ps_flowtable *ft, const struct ps_flow_key *key, const struct ps_flow_key *mask,
          uint32_t priority)
{
    struct key_words k, m, masked;
    struct subtable *st;
    uint32_t slot;

    key_load(&k, key);
    key_load(&m, mask);
    key_and(&masked, &k, &m);
    st = subtable_find(ft, &m, priority);
    if (!st) {
        return 0;
    }
    slot = subtable_find_flow(ft, st, &masked, key_hash(&masked, PS_HASH_SEED_SUBTABLE));
    if (slot == PS_NIL) {
        return 0;
    }
    flow_remove(ft, slot);
    ft->stats.deletes++;
    return 1;
}

/* Removes every flow whose mask covers 'mask' and whose key agrees with 'key'
 * on the bits of 'mask'.  Returns how many. */
uint32_t
ps_ft_del_loose(struct ps_flowtable *ft, const struct ps_flow_key *key, const struct ps_flow_key *mask)
{
    struct key_words k, m, masked;
    uint32_t slot, n = 0;

    key_load(&k, key);
    key_load(&m, mask);
    key_and(&masked, &k, &m);
    for (slot = ft->all_head; slot != PS_NIL;) {
        struct flow *f = &ft->flows[slot];
        uint32_t next = f->all_next;
        struct key_words fm, fk;

        key_and(&fm, &f->subtable->mask, &m);
        key_and(&fk, &f->key, &m);
        if (key_eq(&fm, &m) && key_eq(&fk, &masked)) {
            flow_remove(ft, slot);
            n++;
        }
        slot = next;
    }
    ft->stats.deletes += n;
    return n;
}

/* Removes every flow, counting each in 'deletes'. */
void
ps_ft_flush(struct ps_flowtable *ft)
{
    while (ft->all_head != PS_NIL) {
        flow_remove(ft, ft->all_head);
        ft->stats.deletes++;
    }
}

/* A hit's recency update.  With several lanes, workers hit in parallel and
 * the LRU list is the one structure they share, so the move takes the lock
 * and is checked again under it: another worker may just have made it. */
static void
lookup_touch(struct ps_flowtable *ft, uint32_t slot, int64_t now_ms)
{
    int64_t granule = granule_of(now_ms);

    if (__atomic_load_n(&ft->flows[slot].lru_granule, __ATOMIC_RELAXED) == granule) {
        return;
    }
    if (ft->n_lanes == 1) {
        lru_touch(ft, slot, now_ms);
        return;
    }
    pthread_mutex_lock(&ft->lru_lock);
    if (ft->flows[slot].lru_granule != granule) {
        lru_touch(ft, slot, now_ms);
    }
    pthread_mutex_unlock(&ft->lru_lock);
}

/* The lookup behind ps_ft_lookup() and the datapath: returns the slot of the
 * best flow for 'key' or PS_NIL, and accounts the hit or miss in 'lane'. */
static uint32_t
lookup_slot(struct ps_flowtable *ft, struct lane *lane, const struct ps_flow_key *key, uint32_t size,
            int64_t now_ms)
{
    struct emc_entry *set = NULL;
    struct key_words k;
    uint32_t slot = PS_NIL;
    struct flow_use *use;

    key_load(&k, key);
    if (lane->emc) {
        uint32_t h = key_hash(&k, PS_HASH_SEED_EMC);

        set = &lane->emc[(size_t) (h & (ft->n_emc_sets - 1)) * PS_EMC_WAYS];
        for (int way = 0; way < PS_EMC_WAYS; way++) {
            struct emc_entry *e = &set[way];

            if (e->epoch == ft->emc_epoch && ft->flows[e->slot].gen == e->gen && key_eq(&e->key, &k)) {
                slot = e->slot;
                lane->emc_hits++;
                goto hit;
            }
        }
    }

    for (uint32_t i = 0; i < ft->n_subtables; i++) {
        struct subtable *st = ft->subtables[i];
        struct key_words masked;

        key_and(&masked, &k, &st->mask);
        slot = subtable_find_flow(ft, st, &masked, key_hash(&masked, PS_HASH_SEED_SUBTABLE));
        if (slot != PS_NIL) {
            break;
        }
    }
    if (slot == PS_NIL) {
        lane->misses++;
        return PS_NIL;
    }
    lane->masked_hits++;
    if (set) {
        /* Take a stale way if there is one, else evict by the key's low bit
         * so that two hot keys sharing a set both tend to stay. */
        struct emc_entry *victim = &set[k.w[1] & (PS_EMC_WAYS - 1)];

        for (int way = 0; way < PS_EMC_WAYS; way++) {
            if (set[way].epoch != ft->emc_epoch || ft->flows[set[way].slot].gen != set[way].gen) {
                victim = &set[way];
                break;
            }
        }
        victim->key = k;
        victim->slot = slot;
        victim->gen = ft->flows[slot].gen;
        victim->epoch = ft->emc_epoch;
    }

hit:
    use = &lane->use[slot];
    use->packets++;
    use->bytes += size;
    use->used_ms = now_ms;
    lookup_touch(ft, slot, now_ms);
    return slot;
}

const struct ps_flow_actions *
ps_ft_lookup_actions(struct ps_flowtable *ft, uint32_t lane, const struct ps_flow_key *key, uint32_t size,
                     int64_t now_ms)
{
    uint32_t slot = lookup_slot(ft, &ft->lanes[lane], key, size, now_ms);

    return slot == PS_NIL ? NULL : &ft->flows[slot].acts;
}

/* Looks up 'key' for a frame of 'size' bytes at 'now_ms' (-1: the monotonic
 * clock).  On a hit, counts it in the flow, copies the flow (counters after
 * the hit) to '*out' if 'out' is nonnull and returns 1; on a miss returns 0. */
int
ps_ft_lookup(struct ps_flowtable *ft, const struct ps_flow_key *key, uint32_t size, int64_t now_ms,
             struct ps_flow_info *out)
{
    uint32_t slot = lookup_slot(ft, &ft->lanes[0], key, size, ps_resolve_now(now_ms));

    if (slot == PS_NIL) {
        return 0;
    }
    if (out) {
        flow_to_info(ft, slot, out);
    }
    return 1;
}

/* Removes up to 'max_cookies' flows that have an idle timeout and were not
 * used for that long at 'now_ms' (-1: the monotonic clock), least recent
 * first, and stores their cookies in 'cookies'.  Returns how many. */
uint32_t
ps_ft_expire(struct ps_flowtable *ft, int64_t now_ms, uint64_t *cookies, uint32_t max_cookies)
{
    uint32_t slot, n = 0;

    now_ms = ps_resolve_now(now_ms);
    for (slot = ft->lru_tail; slot != PS_NIL && n < max_cookies;) {
        struct flow *f = &ft->flows[slot];
        uint32_t prev = f->lru_prev;

        if (f->idle_timeout_ms > 0 && now_ms - flow_use_total(ft, slot).used_ms >= (int64_t) f->idle_timeout_ms) {
            cookies[n++] = f->cookie;
            flow_remove(ft, slot);
            ft->stats.expired++;
        }
        slot = prev;
    }
    return n;
}

/* Copies up to 'max_out' flows to 'out' in installation order, starting at
 * cursor 'start' (0: the first flow).  Stores in '*next' the cursor to
 * continue from, 0 when the dump is complete.  Returns how many were copied.
 * A cursor is valid only until the table changes. */
uint32_t
ps_ft_dump(struct ps_flowtable *ft, uint32_t start, struct ps_flow_info *out, uint32_t max_out,
           uint32_t *next)
{
    uint32_t slot, n = 0;

    if (start == 0) {
        slot = ft->all_head;
    } else if (start - 1 < ft->n_used_slots && ft->flows[start - 1].subtable) {
        slot = start - 1;
    } else {
        slot = PS_NIL;
    }
    for (; slot != PS_NIL && n < max_out; slot = ft->flows[slot].all_next) {
        flow_to_info(ft, slot, &out[n++]);
    }
    *next = slot == PS_NIL ? 0 : slot + 1;
    return n;
}

void
ps_ft_get_stats(const struct ps_flowtable *ft, struct ps_ft_stats *out)
{
    *out = ft->stats;
    for (uint32_t i = 0; i < ft->n_lanes; i++) {
        out->emc_hits += ft->lanes[i].emc_hits;
        out->masked_hits += ft->lanes[i].masked_hits;
        out->misses += ft->lanes[i].misses;
    }
}

/* Stores in '*out' the lookup counters of lane 'lane' alone (emc_hits,
 * masked_hits, misses; the rest zero).  Returns 0, or -ENOENT. */
int
ps_ft_get_lane_stats(const struct ps_flowtable *ft, uint32_t lane, struct ps_ft_stats *out)
{
    if (lane >= ft->n_lanes) {
        return -ENOENT;
    }
    memset(out, 0, sizeof *out);
    out->emc_hits = ft->lanes[lane].emc_hits;
    out->masked_hits = ft->lanes[lane].masked_hits;
    out->misses = ft->lanes[lane].misses;
    return 0;
}
