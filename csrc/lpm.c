/* lpm.c: IPv4 longest-prefix match, DIR-24-8 (docs/DATAPATH.md, "Routing").
 *
 * The table is the classic two-level layout of Gupta, Lin and McKeown
 * ("Routing lookups in hardware at memory access speeds", 1998), as DPDK's
 * rte_lpm uses it:
 *
 *   tbl24   2^24 entries, one per /24, indexed by the address's top 24 bits.
 *   tbl8    groups of 256 entries, one group per /24 that holds a rule
 *           longer than /24, indexed by the address's last byte.
 *
 * An entry holds a next-hop id and the depth (prefix length) of the rule that
 * wrote it; a tbl24 entry may instead be "extended" and name a tbl8 group.
 * Lookup is one read for addresses whose /24 has no long rule and two reads
 * otherwise.
 *
 * The tables alone cannot undo a delete: an entry only knows its current
 * rule, not the shorter one it shadowed.  So the rules are kept as well, in a
 * hash table keyed by (prefix, length), and a delete looks up the longest
 * shorter rule covering the deleted prefix and writes it back into exactly the
 * entries whose depth says the deleted rule owned them.  Entries owned by
 * longer rules are left alone, which is what makes both add and delete
 * "depth-aware".
 *
 * tbl24 is calloc()ed: 64 MiB of address space, but only the pages a route
 * touches become memory (a /0 route touches all of it, a /8 256 KiB).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ps_hdrs.h"
#include "pyswitch.h"

#define TBL24_ENTRIES (1u << 24)       /* one entry per /24 */
#define TBL8_GROUP_ENTRIES 256u        /* one entry per address of a /24 */

/* Layout of a table entry (uint32_t). */
#define ENTRY_EXT (1u << 31)           /* tbl24 only: the low bits name a tbl8 group */
#define ENTRY_DEPTH_SHIFT 24           /* bits 24..29: depth of the rule that wrote the entry */
#define ENTRY_DEPTH_MASK 0x3fu
#define ENTRY_VALUE_MASK 0xffffffu     /* bits 0..23: next-hop id (0: no rule), or tbl8 group */

#define PS_NIL UINT32_MAX              /* "no rule" in the rule chains and free list */

/* One rule: what add() was told, kept so that delete() can fall back. */
struct lpm_rule {
    uint32_t prefix;                   /* host order, masked to 'plen' bits */
    uint32_t nh_id;                    /* 1..PS_MAX_NEXTHOPS-1 */
    uint32_t next;                     /* next rule in the bucket chain, or in the free list */
    uint8_t plen;                      /* 0..32 */
};

struct ps_lpm {
    uint32_t *tbl24;                   /* TBL24_ENTRIES entries */
    uint32_t *tbl8;                    /* max_tbl8 groups of TBL8_GROUP_ENTRIES entries */
    uint32_t *tbl8_long_rules;         /* per group: rules longer than /24 in its /24; 0 frees it */
    uint32_t *tbl8_free;               /* stack of free group numbers */
    uint32_t n_tbl8_free;              /* entries used in 'tbl8_free' */
    uint32_t max_tbl8;                 /* groups allocated at 'tbl8' */
    struct lpm_rule *rules;            /* max_routes slots */
    uint32_t *buckets;                 /* heads of rule chains, PS_NIL when empty */
    uint32_t n_buckets;                /* a power of two */
    uint32_t free_rule;                /* first freed slot, chained through 'next' */
    uint32_t n_used_rules;             /* slots ever handed out: slots above are untouched */
    uint32_t n_rules;                  /* rules stored now */
    uint32_t max_routes;               /* the bound on 'n_rules' */
};

static inline uint32_t
entry_make(uint32_t value, uint8_t depth)
{
    return (uint32_t) depth << ENTRY_DEPTH_SHIFT | value;
}

static inline uint8_t
entry_depth(uint32_t entry)
{
    return entry >> ENTRY_DEPTH_SHIFT & ENTRY_DEPTH_MASK;
}

static inline uint32_t
entry_value(uint32_t entry)
{
    return entry & ENTRY_VALUE_MASK;
}

static inline uint32_t
prefix_mask(uint8_t plen)
{
    return plen ? UINT32_MAX << (32 - plen) : 0;
}

struct ps_lpm *
ps_lpm_new(uint32_t max_routes, uint32_t max_tbl8)
{
    struct ps_lpm *lpm = calloc(1, sizeof *lpm);
    uint32_t n_buckets = 16;

    if (!lpm) {
        return NULL;
    }
    while (n_buckets < max_routes && n_buckets < (1u << 31)) {
        n_buckets <<= 1;
    }
    lpm->tbl24 = calloc(TBL24_ENTRIES, sizeof *lpm->tbl24);
    lpm->tbl8 = calloc((size_t) (max_tbl8 ? max_tbl8 : 1) * TBL8_GROUP_ENTRIES, sizeof *lpm->tbl8);
    lpm->tbl8_long_rules = calloc(max_tbl8 ? max_tbl8 : 1, sizeof *lpm->tbl8_long_rules);
    lpm->tbl8_free = calloc(max_tbl8 ? max_tbl8 : 1, sizeof *lpm->tbl8_free);
    lpm->rules = calloc(max_routes ? max_routes : 1, sizeof *lpm->rules);
    lpm->buckets = malloc(n_buckets * sizeof *lpm->buckets);
    if (!lpm->tbl24 || !lpm->tbl8 || !lpm->tbl8_long_rules || !lpm->tbl8_free || !lpm->rules
        || !lpm->buckets) {
        ps_lpm_free(lpm);
        return NULL;
    }
    memset(lpm->buckets, 0xff, n_buckets * sizeof *lpm->buckets);
    lpm->n_buckets = n_buckets;
    lpm->max_routes = max_routes;
    lpm->max_tbl8 = max_tbl8;
    lpm->free_rule = PS_NIL;
    /* Hand out low group numbers first: their pages are the ones touched. */
    for (uint32_t i = 0; i < max_tbl8; i++) {
        lpm->tbl8_free[i] = max_tbl8 - 1 - i;
    }
    lpm->n_tbl8_free = max_tbl8;
    return lpm;
}

void
ps_lpm_free(struct ps_lpm *lpm)
{
    if (!lpm) {
        return;
    }
    free(lpm->tbl24);
    free(lpm->tbl8);
    free(lpm->tbl8_long_rules);
    free(lpm->tbl8_free);
    free(lpm->rules);
    free(lpm->buckets);
    free(lpm);
}

/* Returns the number of rules stored. */
uint32_t
ps_lpm_count(const struct ps_lpm *lpm)
{
    return lpm->n_rules;
}

/* The rule store. */

static inline uint32_t
rule_hash(uint32_t prefix, uint8_t plen)
{
    uint64_t h = ((uint64_t) prefix << 6 | plen) * 0x9e3779b97f4a7c15ULL;

    return h >> 32;
}

/* Returns the slot of rule 'prefix'/'plen' ('prefix' already masked), or PS_NIL. */
static uint32_t
rule_find(const struct ps_lpm *lpm, uint32_t prefix, uint8_t plen)
{
    uint32_t i = lpm->buckets[rule_hash(prefix, plen) & (lpm->n_buckets - 1)];

    while (i != PS_NIL && (lpm->rules[i].prefix != prefix || lpm->rules[i].plen != plen)) {
        i = lpm->rules[i].next;
    }
    return i;
}

/* Stores a new rule; the caller checked that there is room. */
static void
rule_insert(struct ps_lpm *lpm, uint32_t prefix, uint8_t plen, uint32_t nh_id)
{
    uint32_t *head = &lpm->buckets[rule_hash(prefix, plen) & (lpm->n_buckets - 1)];
    uint32_t i;

    if (lpm->free_rule != PS_NIL) {
        i = lpm->free_rule;
        lpm->free_rule = lpm->rules[i].next;
    } else {
        i = lpm->n_used_rules++;
    }
    lpm->rules[i] = (struct lpm_rule) { .prefix = prefix, .plen = plen, .nh_id = nh_id, .next = *head };
    *head = i;
    lpm->n_rules++;
}

static void
rule_remove(struct ps_lpm *lpm, uint32_t prefix, uint8_t plen)
{
    uint32_t *link = &lpm->buckets[rule_hash(prefix, plen) & (lpm->n_buckets - 1)];

    while (*link != PS_NIL) {
        struct lpm_rule *r = &lpm->rules[*link];

        if (r->prefix == prefix && r->plen == plen) {
            uint32_t i = *link;

            *link = r->next;
            r->next = lpm->free_rule;
            lpm->free_rule = i;
            lpm->n_rules--;
            return;
        }
        link = &r->next;
    }
}

/* Finds the longest rule shorter than 'plen' that covers 'prefix', and stores
 * its length in '*depth' and its next hop in '*nh_id' (0 and 0 if none). */
static void
rule_find_shorter(const struct ps_lpm *lpm, uint32_t prefix, uint8_t plen, uint8_t *depth, uint32_t *nh_id)
{
    for (int len = plen - 1; len >= 0; len--) {
        uint32_t i = rule_find(lpm, prefix & prefix_mask(len), len);

        if (i != PS_NIL) {
            *depth = len;
            *nh_id = lpm->rules[i].nh_id;
            return;
        }
    }
    *depth = 0;
    *nh_id = 0;
}

/* Writing entries. */

/* Writes 'entry' (a next hop of depth 'depth') over every entry of tbl8 group
 * 'group' in [first, first + n) that a rule of at most 'depth' owns. */
static void
tbl8_fill(struct ps_lpm *lpm, uint32_t group, uint32_t first, uint32_t n, uint8_t depth, uint32_t entry)
{
    uint32_t *e = &lpm->tbl8[(size_t) group * TBL8_GROUP_ENTRIES + first];

    for (uint32_t i = 0; i < n; i++) {
        if (entry_depth(e[i]) <= depth) {
            e[i] = entry;
        }
    }
}

/* Like tbl8_fill(), but replaces only entries the rule of exactly 'depth' owns. */
static void
tbl8_replace(struct ps_lpm *lpm, uint32_t group, uint32_t first, uint32_t n, uint8_t depth, uint32_t entry)
{
    uint32_t *e = &lpm->tbl8[(size_t) group * TBL8_GROUP_ENTRIES + first];

    for (uint32_t i = 0; i < n; i++) {
        if (entry_depth(e[i]) == depth && entry_value(e[i])) {
            e[i] = entry;
        }
    }
}

/* Gives tbl24 entry 'index' a tbl8 group initialised from its current value,
 * unless it has one.  Returns the group, or PS_NIL if none is free. */
static uint32_t
tbl8_attach(struct ps_lpm *lpm, uint32_t index)
{
    uint32_t old = lpm->tbl24[index];
    uint32_t group;
    uint32_t *e;

    if (old & ENTRY_EXT) {
        return entry_value(old);
    }
    if (!lpm->n_tbl8_free) {
        return PS_NIL;
    }
    group = lpm->tbl8_free[--lpm->n_tbl8_free];
    e = &lpm->tbl8[(size_t) group * TBL8_GROUP_ENTRIES];
    for (uint32_t i = 0; i < TBL8_GROUP_ENTRIES; i++) {
        e[i] = old;
    }
    lpm->tbl8_long_rules[group] = 0;
    lpm->tbl24[index] = ENTRY_EXT | group;
    return group;
}

/* Folds tbl8 group 'group' back into tbl24 entry 'index' once no rule longer
 * than /24 is left in it: then every one of its entries is the same rule of
 * at most /24 (or none), so one tbl24 entry says it all. */
static void
tbl8_detach(struct ps_lpm *lpm, uint32_t index, uint32_t group)
{
    lpm->tbl24[index] = lpm->tbl8[(size_t) group * TBL8_GROUP_ENTRIES];
    lpm->tbl8_free[lpm->n_tbl8_free++] = group;
}

/* Writes the entry ('nh_id', 'depth') over the entries of the range
 * 'prefix'/'plen'.  With 'only_owned' false (add), every entry a rule of at
 * most 'owner_depth' owns is overwritten: longer rules keep theirs.  With
 * 'only_owned' true (delete), only the entries the rule of exactly
 * 'owner_depth' owns are, and 'nh_id' 0 clears them. */
static void
table_write(struct ps_lpm *lpm, uint32_t prefix, uint8_t plen, uint8_t depth, uint32_t nh_id, bool only_owned,
            uint8_t owner_depth)
{
    uint32_t entry = entry_make(nh_id, depth);

    if (plen <= 24) {
        uint32_t first = prefix >> 8;
        uint32_t n = 1u << (24 - plen);

        for (uint32_t i = first; i < first + n; i++) {
            uint32_t old = lpm->tbl24[i];

            if (old & ENTRY_EXT) {
                if (only_owned) {
                    tbl8_replace(lpm, entry_value(old), 0, TBL8_GROUP_ENTRIES, owner_depth, entry);
                } else {
                    tbl8_fill(lpm, entry_value(old), 0, TBL8_GROUP_ENTRIES, owner_depth, entry);
                }
            } else if (only_owned ? entry_depth(old) == owner_depth && entry_value(old)
                                  : entry_depth(old) <= owner_depth) {
                lpm->tbl24[i] = entry;
            }
        }
    } else {
        uint32_t group = entry_value(lpm->tbl24[prefix >> 8]);
        uint32_t first = prefix & 0xff;
        uint32_t n = 1u << (32 - plen);

        if (only_owned) {
            tbl8_replace(lpm, group, first, n, owner_depth, entry);
        } else {
            tbl8_fill(lpm, group, first, n, owner_depth, entry);
        }
    }
}

/* Adds the rule 'prefix'/'plen' -> 'nh_id' (the prefix is masked to 'plen'
 * bits first), replacing a rule of the same prefix and length.  Returns 0,
 * -EINVAL if 'plen' > 32 or 'nh_id' is not 1..PS_MAX_NEXTHOPS-1, -ENOSPC if
 * a new rule would exceed max_routes or needs a tbl8 group when none is free. */
int
ps_lpm_add(struct ps_lpm *lpm, const uint8_t *prefix_be, uint8_t plen, uint32_t nh_id)
{
    uint32_t prefix;
    uint32_t i;

    if (plen > 32 || nh_id == 0 || nh_id >= PS_MAX_NEXTHOPS) {
        return -EINVAL;
    }
    prefix = ps_be32_load(prefix_be) & prefix_mask(plen);
    i = rule_find(lpm, prefix, plen);
    if (i != PS_NIL) {
        lpm->rules[i].nh_id = nh_id;
    } else {
        if (lpm->n_rules >= lpm->max_routes) {
            return -ENOSPC;
        }
        if (plen > 24) {
            uint32_t group = tbl8_attach(lpm, prefix >> 8);

            if (group == PS_NIL) {
                return -ENOSPC;
            }
            lpm->tbl8_long_rules[group]++;
        }
        rule_insert(lpm, prefix, plen, nh_id);
    }
    table_write(lpm, prefix, plen, plen, nh_id, false, plen);
    return 0;
}

/* Removes the rule 'prefix'/'plen' (masked first); the addresses it covered
 * fall back to the longest shorter rule covering them, if any.  Returns 1 if
 * the rule existed, 0 if not, -EINVAL if 'plen' > 32. */
int
ps_lpm_del(struct ps_lpm *lpm, const uint8_t *prefix_be, uint8_t plen)
{
    uint32_t prefix;
    uint32_t fallback_nh;
    uint8_t fallback_depth;

    if (plen > 32) {
        return -EINVAL;
    }
    prefix = ps_be32_load(prefix_be) & prefix_mask(plen);
    if (rule_find(lpm, prefix, plen) == PS_NIL) {
        return 0;
    }
    rule_remove(lpm, prefix, plen);
    rule_find_shorter(lpm, prefix, plen, &fallback_depth, &fallback_nh);
    table_write(lpm, prefix, plen, fallback_depth, fallback_nh, true, plen);
    if (plen > 24) {
        uint32_t index = prefix >> 8;
        uint32_t group = entry_value(lpm->tbl24[index]);

        if (!--lpm->tbl8_long_rules[group]) {
            tbl8_detach(lpm, index, group);
        }
    }
    return 1;
}

/* Returns the next-hop id of the longest rule covering the IPv4 address at
 * 'addr' (4 bytes, network order), or 0 if none does. */
uint32_t
ps_lpm_lookup(const struct ps_lpm *lpm, const uint8_t *addr)
{
    uint32_t a = ps_be32_load(addr);
    uint32_t entry = lpm->tbl24[a >> 8];

    if (entry & ENTRY_EXT) {
        entry = lpm->tbl8[(size_t) entry_value(entry) * TBL8_GROUP_ENTRIES + (a & 0xff)];
    }
    return entry_value(entry);
}
