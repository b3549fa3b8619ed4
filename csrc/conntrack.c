/* conntrack.c: the connection table and the LB actions (docs/DATAPATH.md, "Connection table").
 *
 * The slow path picks a backend for a new connection and adds it here (or,
 * for a VIP with a Maglev ring, LB picks it from the ring and adds it itself:
 * lb_schedule()); from then on every packet of the connection is rewritten
 * and routed in C:
 *
 *   client index   client tuple -> entry (LB: a client's packet to a VIP)
 *   reply index    reply tuple -> entry (LB_REPLY: the backend's answer;
 *                  only nat and fullnat connections have one)
 *   state lists    one LRU list per TCP/UDP state, least recent first
 *
 * Entries live in chunks of CHUNK_CONNS, allocated as the table grows, and
 * are named by a uint32_t index; the bound is a count, not a preallocation.
 * Index 0 is never handed out and means "none" in every chain and list, so
 * that buckets fresh from calloc() are empty without being written.
 *
 * Each state has one idle timeout, so a list ordered by recency is ordered by
 * expiry time too: expiry and eviction look only at list heads.  A hit moves
 * its entry to the tail at most once per PS_LRU_GRANULE_MS (as flows do) and
 * on every state change; see ps_dp_conn_expire() for what that costs.
 *
 * L7 delayed binding (docs/DATAPATH.md "Hold and splice"): while a
 * nat/fullnat TCP connection holds (PS_CONN_F_HOLD), its packets go up to
 * the slow path's L7 engine, which answers the client itself; once the
 * engine has opened the backend's side it splices the two, and from then on
 * every packet also gets its direction's sequence, acknowledgement and
 * timestamp deltas (splice.c).  The deltas live in a bounded side table of
 * their own, so that an entry stays small for the connections that have
 * none: a spliced entry names its splice entry in the 'backend' field,
 * which nat and fullnat do not use.
 *
 * With datapath workers (workers.c) the table is shared: a connection's two
 * directions may arrive on different workers (the kernel's fanout hashes the
 * rewritten tuple of a NAT reply elsewhere), so there is one table, and LB
 * takes 'lock' around each packet, since every packet writes the entry, its
 * list and the counters; the splice table is read under the same lock.  The
 * slow path's calls run while no worker does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conntrack.h"
#include "flowtable.h"
#include "nat.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "route.h"
#include "splice.h"
#include "tunnel.h"
#include "vipguard.h"

#define CT_NIL 0                        /* "no entry" */
#define CHUNK_SHIFT 12
#define CHUNK_CONNS (1u << CHUNK_SHIFT) /* entries per allocation: 416 KiB */
#define CHUNK_MASK (CHUNK_CONNS - 1)
#define EVENTS_MIN 64                   /* the event ring's first size; it doubles up to PS_CT_MAX_EVENTS */
#define CT_HASH_SEED 0x27d4eb2f165667c5ULL
#define SPLICES_MIN 64                  /* the splice table's first size; it doubles up to max_splices */
#define SPLICE_NIL UINT32_MAX           /* "no splice entry": ends the splice free list */

#define CONN_F_RTT_REPORTED 1           /* struct conn.flags: the RTT was measured (and, unless held, queued) */
#define CONN_F_UNREPORTED 2             /* a ring's TCP connection not yet past SYN: the slow path knows nothing */
/* struct conn.flags also holds the public bits, as they are reported: */
#define CONN_F_PUBLIC (PS_CONN_F_HOLD | PS_CONN_F_SPLICED)
_Static_assert((CONN_F_RTT_REPORTED | CONN_F_UNREPORTED) < 0x100, "internal flags stay below the public ones");

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* One connection.  Tuples are compared and hashed whole, pads zero. */
struct conn {
    struct ps_conn_tuple client;        /* the client index's key */
    struct ps_conn_tuple reply;         /* the reply index's key; all zero: not in that index */
    union {
        uint8_t backend[4];             /* dsr: routed toward; ipip/gre: outer destination; nat/fullnat: unused */
        uint32_t splice;                /* PS_CONN_F_SPLICED: its splice entry, which keeps 'backend' instead */
    };
    uint8_t tunnel_src[4];              /* ipip/gre: outer source */
    uint8_t mode;                       /* PS_CONN_* */
    uint8_t state;                      /* PS_CS_*, and the list it is on; 0 while the entry is free */
    uint16_t flags;                     /* CONN_F_*, and the public PS_CONN_F_* */
    uint32_t vip_id;
    uint32_t backend_id;
    uint32_t client_next;               /* next entry in its client bucket, or in the free list */
    uint32_t reply_next;                /* next entry in its reply bucket */
    uint32_t lru_prev, lru_next;        /* neighbours in its state's list; prev is less recent */
    uint32_t held_rtt_us;               /* CONN_F_UNREPORTED: the RTT measured, queued after its CE_NEW */
    uint64_t packets;                   /* both directions */
    uint64_t bytes;
    int64_t created_ms;
    int64_t used_ms;
};
_Static_assert(sizeof(struct conn) <= 104, "a connection entry stays within 104 bytes");

/* A spliced connection's deltas (the side table's entry). */
struct splice_entry {
    struct ps_splice to_backend;        /* the client's packets, after the NAT rewrite */
    struct ps_splice to_client;         /* the backend's packets, likewise */
    union {
        uint8_t backend[4];             /* in use: the connection's 'backend', whose place its index took */
        uint32_t next_free;             /* free: the next free entry, or SPLICE_NIL */
    };
};

/* A state's LRU list. */
struct conn_list {
    uint32_t head;                      /* least recently used: expires and is evicted first */
    uint32_t tail;                      /* most recently used */
};

struct ps_conntrack {
    struct conn **chunks;               /* chunk pointers for max_conns + 1 entries; NULL until the first add */
    uint32_t n_chunks;                  /* chunks allocated */
    uint32_t n_used;                    /* entries ever handed out, plus entry 0: those above are untouched */
    uint32_t free_head;                 /* freed entries, chained through client_next */
    uint32_t *client_buckets;           /* n_buckets chain heads (CT_NIL: empty); NULL until the first add */
    uint32_t *reply_buckets;            /* likewise for the reply index */
    uint32_t n_buckets;                 /* a power of two >= max_conns */
    uint32_t max_conns;                 /* the bound */
    uint32_t timeouts_ms[PS_CS_COUNT];  /* idle timeout by state; [0] unused */
    struct conn_list lists[PS_CS_COUNT];/* by state; [0] unused */
    struct ps_conn_event *events;       /* a ring of events_cap (a power of two) */
    uint32_t events_cap;                /* slots at 'events' */
    uint32_t events_head;               /* the oldest event's slot */
    uint32_t n_events;                  /* events queued */
    uint64_t events_pushed;             /* events ever queued: workers read it without 'lock' */
    bool shared;                        /* workers run LB in parallel: take 'lock' */
    pthread_mutex_t lock;               /* held by LB and LB_REPLY while 'shared' */
    struct ps_ct_stats stats;           /* counters; conns, by_state and splices kept current */
    struct ps_vip_guards *guards;       /* each VIP's embryonic count and limits */
    struct splice_entry *splices;       /* splices_cap entries; NULL until the first splice */
    uint32_t splices_cap;               /* entries at 'splices': doubles as needed, at most max_splices */
    uint32_t splices_used;              /* entries ever handed out: those above are untouched */
    uint32_t splices_free;              /* freed entries, chained through next_free */
    uint32_t max_splices;               /* the bound on the entries in use (stats.splices) */
};

/* What LB needs of a packet's headers. */
struct lb_packet {
    struct ps_conn_tuple tuple;         /* as its headers hold it */
    const struct ps_ip_hdr *ip;         /* its IPv4 header */
    uint16_t tcp_flags;                 /* TCP: the flag bits; UDP: 0 */
};

static const uint32_t default_timeouts_ms[PS_CS_COUNT] = {
    [PS_CS_SYN] = PS_CT_SYN_TIMEOUT_MS,
    [PS_CS_ESTABLISHED] = PS_CT_ESTABLISHED_TIMEOUT_MS,
    [PS_CS_FIN_WAIT] = PS_CT_FIN_WAIT_TIMEOUT_MS,
    [PS_CS_CLOSE] = PS_CT_CLOSE_TIMEOUT_MS,
    [PS_CS_UDP] = PS_CT_UDP_TIMEOUT_MS,
};

/* Floor division, as Python's '//', so that negative fake clocks behave like
 * the twin's (flowtable.c has the same). */
static inline int64_t
granule_of(int64_t ms)
{
    int64_t q = ms / PS_LRU_GRANULE_MS;

    return (ms % PS_LRU_GRANULE_MS < 0) ? q - 1 : q;
}

static uint32_t
round_up_pow2(uint32_t n)
{
    uint32_t p = 1;

    while (p < n) {
        p <<= 1;
    }
    return p;
}

static inline struct conn *
conn_at(const struct ps_conntrack *ct, uint32_t i)
{
    return &ct->chunks[i >> CHUNK_SHIFT][i & CHUNK_MASK];
}

/* Tuples. */

static inline uint32_t
tuple_hash(const struct ps_conn_tuple *t)
{
    uint64_t w[2];
    uint64_t h;

    memcpy(w, t, sizeof w);
    h = (CT_HASH_SEED ^ w[0]) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    h = (h ^ w[1]) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    return (uint32_t) h;
}

static inline bool
tuple_eq(const struct ps_conn_tuple *a, const struct ps_conn_tuple *b)
{
    return !memcmp(a, b, sizeof *a);
}

static inline bool
tuple_is_zero(const struct ps_conn_tuple *t)
{
    static const struct ps_conn_tuple zero;

    return tuple_eq(t, &zero);
}

/* Copies 't' with its pad zeroed: a caller's pad must not hide a match. */
static inline struct ps_conn_tuple
tuple_norm(const struct ps_conn_tuple *t)
{
    struct ps_conn_tuple n = *t;

    memset(n.pad, 0, sizeof n.pad);
    return n;
}

/* Table memory. */

/* The lock is held for one packet's lookup, accounting and rewrite, a few
 * hundred nanoseconds, so a waiter spins a little before it sleeps
 * (adaptive): with two workers on LB traffic that took them from 0.59 to
 * about 0.8 times one worker's rate (bench/workers.py l4-nat).  What remains
 * is the lock and the table's shared lines moving between cores. */
static void
ct_lock_init(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
}

struct ps_conntrack *
ps_conntrack_new(void)
{
    struct ps_conntrack *ct = calloc(1, sizeof *ct);

    if (!ct) {
        return NULL;
    }
    ct->guards = ps_vip_guards_new();
    if (!ct->guards) {
        free(ct);
        return NULL;
    }
    ct->max_conns = PS_CT_MAX_CONNS_DEFAULT;
    ct->n_buckets = round_up_pow2(ct->max_conns);
    memcpy(ct->timeouts_ms, default_timeouts_ms, sizeof ct->timeouts_ms);
    ct->stats.max_conns = ct->max_conns;
    ct->max_splices = ct->stats.max_splices = PS_CT_MAX_SPLICES_DEFAULT;
    ct->splices_free = SPLICE_NIL;
    ct_lock_init(&ct->lock);
    return ct;
}

void
ps_conntrack_set_shared(struct ps_conntrack *ct, bool shared)
{
    ct->shared = shared;
}

/* Frees the splice table, which holds no entry in use. */
static void
splices_release(struct ps_conntrack *ct)
{
    free(ct->splices);
    ct->splices = NULL;
    ct->splices_cap = ct->splices_used = 0;
    ct->splices_free = SPLICE_NIL;
}

/* Frees the entries, buckets and splices of an empty table; the next add
 * allocates them again for the bound then in force. */
static void
ct_release(struct ps_conntrack *ct)
{
    splices_release(ct);
    for (uint32_t i = 0; i < ct->n_chunks; i++) {
        free(ct->chunks[i]);
    }
    free(ct->chunks);
    free(ct->client_buckets);
    free(ct->reply_buckets);
    ct->chunks = NULL;
    ct->client_buckets = ct->reply_buckets = NULL;
    ct->n_chunks = 0;
    ct->n_used = 0;
    ct->free_head = CT_NIL;
}

void
ps_conntrack_free(struct ps_conntrack *ct)
{
    if (!ct) {
        return;
    }
    ct_release(ct);
    free(ct->events);
    ps_vip_guards_free(ct->guards);
    pthread_mutex_destroy(&ct->lock);
    free(ct);
}

/* Allocates the chunk pointers and both bucket arrays for the bound in
 * force.  calloc() maps zero pages lazily: a bucket costs memory only once
 * a chain reaches it.  Returns 0 or -ENOMEM. */
static int
ct_reserve(struct ps_conntrack *ct)
{
    uint32_t max_chunks = (ct->max_conns >> CHUNK_SHIFT) + 1;

    ct->chunks = calloc(max_chunks, sizeof *ct->chunks);
    ct->client_buckets = calloc(ct->n_buckets, sizeof *ct->client_buckets);
    ct->reply_buckets = calloc(ct->n_buckets, sizeof *ct->reply_buckets);
    if (!ct->chunks || !ct->client_buckets || !ct->reply_buckets) {
        ct_release(ct);
        return -ENOMEM;
    }
    ct->n_used = 1;                     /* entry 0 is CT_NIL */
    return 0;
}

/* Returns a free entry's index, or CT_NIL if a new chunk cannot be had. */
static uint32_t
entry_alloc(struct ps_conntrack *ct)
{
    uint32_t i = ct->free_head;

    if (i != CT_NIL) {
        ct->free_head = conn_at(ct, i)->client_next;
        return i;
    }
    i = ct->n_used;
    if (i >> CHUNK_SHIFT == ct->n_chunks) {
        struct conn *chunk = malloc(CHUNK_CONNS * sizeof *chunk);

        if (!chunk) {
            return CT_NIL;
        }
        ct->chunks[ct->n_chunks++] = chunk;
    }
    ct->n_used++;
    return i;
}

/* The splice table. */

/* Doubles the splice table (from SPLICES_MIN), at most to max_splices.
 * Entries are named by index, so moving them costs nothing but the copy.
 * Returns false if out of memory. */
static bool
splices_grow(struct ps_conntrack *ct)
{
    uint32_t cap = ct->splices_cap ? ct->splices_cap * 2 : SPLICES_MIN;
    struct splice_entry *splices;

    if (cap > ct->max_splices) {
        cap = ct->max_splices;
    }
    splices = realloc(ct->splices, (size_t) cap * sizeof *splices);
    if (!splices) {
        return false;
    }
    ct->splices = splices;
    ct->splices_cap = cap;
    return true;
}

/* Hands out a splice entry in '*index': 0, -ENOSPC (max_splices in use,
 * counted in splice_refused) or -ENOMEM. */
static int
splice_alloc(struct ps_conntrack *ct, uint32_t *index)
{
    if (ct->stats.splices >= ct->max_splices) {
        ct->stats.splice_refused++;
        return -ENOSPC;
    }
    if (ct->splices_free != SPLICE_NIL) {
        *index = ct->splices_free;
        ct->splices_free = ct->splices[*index].next_free;
    } else {
        /* Below the bound with no free entry: every entry handed out is in
         * use, so the table has room to grow (splices_cap < max_splices). */
        if (ct->splices_used == ct->splices_cap && !splices_grow(ct)) {
            return -ENOMEM;
        }
        *index = ct->splices_used++;
    }
    ct->stats.splices++;
    return 0;
}

static void
splice_free(struct ps_conntrack *ct, uint32_t index)
{
    ct->splices[index].next_free = ct->splices_free;
    ct->splices_free = index;
    ct->stats.splices--;
}

/* Hash indexes. */

/* Returns the link that points at the entry whose client (or, 'by_reply',
 * reply) tuple is 't', or at the CT_NIL ending its chain if there is none, so
 * callers can insert or unlink.  The table must have its buckets. */
static uint32_t *
index_link(const struct ps_conntrack *ct, bool by_reply, const struct ps_conn_tuple *t)
{
    uint32_t *buckets = by_reply ? ct->reply_buckets : ct->client_buckets;
    uint32_t *link = &buckets[tuple_hash(t) & (ct->n_buckets - 1)];

    while (*link != CT_NIL) {
        struct conn *c = conn_at(ct, *link);

        if (tuple_eq(by_reply ? &c->reply : &c->client, t)) {
            break;
        }
        link = by_reply ? &c->reply_next : &c->client_next;
    }
    return link;
}

/* Returns the index of the entry with client (or reply) tuple 't', or CT_NIL. */
static uint32_t
index_find(const struct ps_conntrack *ct, bool by_reply, const struct ps_conn_tuple *t)
{
    if (!ct->client_buckets || (by_reply && tuple_is_zero(t))) {
        return CT_NIL;
    }
    return *index_link(ct, by_reply, t);
}

/* State lists. */

static void
list_unlink(struct ps_conntrack *ct, uint32_t i)
{
    struct conn *c = conn_at(ct, i);
    struct conn_list *list = &ct->lists[c->state];

    if (c->lru_prev != CT_NIL) {
        conn_at(ct, c->lru_prev)->lru_next = c->lru_next;
    } else {
        list->head = c->lru_next;
    }
    if (c->lru_next != CT_NIL) {
        conn_at(ct, c->lru_next)->lru_prev = c->lru_prev;
    } else {
        list->tail = c->lru_prev;
    }
    ct->stats.by_state[c->state]--;
    if (c->state == PS_CS_SYN) {
        ps_vip_guard_embryonic_count(ct->guards, c->vip_id, -1);
    }
}

/* Appends entry 'i' to the tail of the list of its state. */
static void
list_push_tail(struct ps_conntrack *ct, uint32_t i)
{
    struct conn *c = conn_at(ct, i);
    struct conn_list *list = &ct->lists[c->state];

    c->lru_next = CT_NIL;
    c->lru_prev = list->tail;
    if (list->tail != CT_NIL) {
        conn_at(ct, list->tail)->lru_next = i;
    } else {
        list->head = i;
    }
    list->tail = i;
    ct->stats.by_state[c->state]++;
    if (c->state == PS_CS_SYN) {
        ps_vip_guard_embryonic_count(ct->guards, c->vip_id, 1);
    }
}

/* Moves entry 'i' to the tail of the list of 'state' (its own or a new one). */
static void
list_move(struct ps_conntrack *ct, uint32_t i, uint8_t state)
{
    list_unlink(ct, i);
    conn_at(ct, i)->state = state;
    list_push_tail(ct, i);
}

/* Events. */

/* Doubles the event ring (from EVENTS_MIN), keeping the events in order.
 * Returns false if out of memory. */
static bool
events_grow(struct ps_conntrack *ct)
{
    uint32_t cap = ct->events_cap ? ct->events_cap * 2 : EVENTS_MIN;
    struct ps_conn_event *events = malloc((size_t) cap * sizeof *events);

    if (!events) {
        return false;
    }
    for (uint32_t k = 0; k < ct->n_events; k++) {
        events[k] = ct->events[(ct->events_head + k) & (ct->events_cap - 1)];
    }
    free(ct->events);
    ct->events = events;
    ct->events_cap = cap;
    ct->events_head = 0;
    return true;
}

static void
event_push(struct ps_conntrack *ct, uint8_t kind, const struct conn *c, uint32_t rtt_us)
{
    struct ps_conn_event *e;

    if (ct->n_events >= PS_CT_MAX_EVENTS || (ct->n_events == ct->events_cap && !events_grow(ct))) {
        ct->stats.events_dropped++;
        return;
    }
    e = &ct->events[(ct->events_head + ct->n_events++) & (ct->events_cap - 1)];
    memset(e, 0, sizeof *e);
    e->vip_id = c->vip_id;
    e->backend_id = c->backend_id;
    e->kind = kind;
    e->state = c->state;
    e->rtt_us = rtt_us;
    e->client = c->client;
    __atomic_store_n(&ct->events_pushed, ct->events_pushed + 1, __ATOMIC_RELAXED);
}

uint32_t
ps_conntrack_n_events(const struct ps_conntrack *ct)
{
    return ct->n_events;
}

uint64_t
ps_conntrack_events_pushed(const struct ps_conntrack *ct)
{
    return __atomic_load_n(&ct->events_pushed, __ATOMIC_RELAXED);
}

uint32_t
ps_dp_conn_events(struct ps_dp *dp, struct ps_conn_event *out, uint32_t max_out)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    uint32_t n = 0;

    for (; n < max_out && ct->n_events; n++, ct->n_events--) {
        out[n] = ct->events[ct->events_head];
        ct->events_head = (ct->events_head + 1) & (ct->events_cap - 1);
    }
    return n;
}

/* Entries. */

/* Removes entry 'i' from both indexes and its list and frees it, and its
 * splice entry with it: every way out of the table (del, expiry, eviction)
 * comes here.  Does not count the removal or report it. */
static void
conn_remove(struct ps_conntrack *ct, uint32_t i)
{
    struct conn *c = conn_at(ct, i);
    uint32_t *link = index_link(ct, false, &c->client);

    *link = c->client_next;
    if (!tuple_is_zero(&c->reply)) {
        link = index_link(ct, true, &c->reply);
        *link = c->reply_next;
    }
    list_unlink(ct, i);
    if (c->flags & PS_CONN_F_SPLICED) {
        splice_free(ct, c->splice);
    }
    c->state = 0;
    c->client_next = ct->free_head;
    ct->free_head = i;
    ct->stats.conns--;
}

/* Reports entry 'i' gone and removes it (expiry, eviction).  A connection
 * the slow path never heard of (CONN_F_UNREPORTED) leaves in silence: a SYN
 * flood's half-open connections cost the slow path no event at all. */
static void
conn_gone(struct ps_conntrack *ct, uint32_t i)
{
    if (!(conn_at(ct, i)->flags & CONN_F_UNREPORTED)) {
        event_push(ct, PS_CE_GONE, conn_at(ct, i), 0);
    }
    conn_remove(ct, i);
}

/* The backend address connection 'c' was added with: a spliced one keeps it
 * in its splice entry. */
static const uint8_t *
conn_backend(const struct ps_conntrack *ct, const struct conn *c)
{
    return (c->flags & PS_CONN_F_SPLICED) ? ct->splices[c->splice].backend : c->backend;
}

static void
conn_to_public(const struct ps_conntrack *ct, const struct conn *c, struct ps_conn *out)
{
    memset(out, 0, sizeof *out);
    out->client = c->client;
    out->reply = c->reply;
    memcpy(out->backend, conn_backend(ct, c), sizeof out->backend);
    memcpy(out->tunnel_src, c->tunnel_src, sizeof out->tunnel_src);
    out->mode = c->mode;
    out->state = c->state;
    out->flags = c->flags & CONN_F_PUBLIC;
    out->vip_id = c->vip_id;
    out->backend_id = c->backend_id;
    out->packets = c->packets;
    out->bytes = c->bytes;
    out->created_ms = c->created_ms;
    out->used_ms = c->used_ms;
}

/* Returns true if a connection of 'mode' and protocol 'proto' may hold and
 * be spliced: only nat and fullnat rewrite both directions, and only TCP
 * has sequence numbers to shift. */
static bool
mode_splices(uint8_t mode, uint8_t proto)
{
    return (mode == PS_CONN_NAT || mode == PS_CONN_FULLNAT) && proto == PS_IPPROTO_TCP;
}

/* Returns true if 'conn' (with tuples 'client' and 'reply', pads zeroed) is
 * a connection the table takes: a known mode; TCP in a TCP state or UDP in
 * PS_CS_UDP; a reply tuple of the same protocol for nat and fullnat, none
 * for the modes no reply passes; no flag but HOLD, and that one only where
 * it can splice (SPLICED is ps_dp_conn_splice()'s to set). */
static bool
conn_valid(const struct ps_conn *conn, const struct ps_conn_tuple *client, const struct ps_conn_tuple *reply)
{
    bool has_reply = !tuple_is_zero(reply);

    if (conn->mode < PS_CONN_NAT || conn->mode > PS_CONN_GRE) {
        return false;
    }
    if ((conn->flags & ~PS_CONN_F_HOLD)
        || ((conn->flags & PS_CONN_F_HOLD) && !mode_splices(conn->mode, client->proto))) {
        return false;
    }
    if (client->proto == PS_IPPROTO_TCP) {
        if (conn->state < PS_CS_SYN || conn->state > PS_CS_CLOSE) {
            return false;
        }
    } else if (client->proto != PS_IPPROTO_UDP || conn->state != PS_CS_UDP) {
        return false;
    }
    if (conn->mode == PS_CONN_NAT || conn->mode == PS_CONN_FULLNAT) {
        return has_reply && reply->proto == client->proto;
    }
    return !has_reply;
}

/* The entry an add into a full table may evict for a connection starting in
 * 'state', or CT_NIL: half-open and closing connections first (CLOSE, SYN,
 * FIN_WAIT heads), then, unless the newcomer is a SYN, the older of the
 * ESTABLISHED and UDP heads (ESTABLISHED on a tie).  So a SYN flood can only
 * ever push out half-open and closing connections. */
static uint32_t
eviction_victim(const struct ps_conntrack *ct, uint8_t state)
{
    static const uint8_t first[] = { PS_CS_CLOSE, PS_CS_SYN, PS_CS_FIN_WAIT };
    uint32_t est, udp;

    for (size_t k = 0; k < sizeof first; k++) {
        if (ct->lists[first[k]].head != CT_NIL) {
            return ct->lists[first[k]].head;
        }
    }
    if (state == PS_CS_SYN) {
        return CT_NIL;
    }
    est = ct->lists[PS_CS_ESTABLISHED].head;
    udp = ct->lists[PS_CS_UDP].head;
    if (est == CT_NIL || udp == CT_NIL) {
        return est != CT_NIL ? est : udp;
    }
    return conn_at(ct, udp)->used_ms < conn_at(ct, est)->used_ms ? udp : est;
}

/* The embryonic connection of VIP 'vip_id' a new SYN-state connection of
 * that VIP evicts when the VIP is at its limit (vipguard.h): the least
 * recent of the VIP's among the first PS_VIP_GUARD_SCAN of the SYN list, or
 * CT_NIL.  The scan is bounded so that an add stays cheap; under a flood at
 * one VIP its own entries make up the list's head.  Entries of other VIPs
 * are never taken: a flood at one VIP cannot push out another's. */
static uint32_t
embryonic_victim(const struct ps_conntrack *ct, uint32_t vip_id)
{
    uint32_t i = ct->lists[PS_CS_SYN].head;

    for (int n = 0; i != CT_NIL && n < PS_VIP_GUARD_SCAN; n++) {
        const struct conn *c = conn_at(ct, i);

        if (c->vip_id == vip_id) {
            return i;
        }
        i = c->lru_next;
    }
    return CT_NIL;
}

/* The public table functions. */

int
ps_dp_conn_config(struct ps_dp *dp, uint32_t max_conns, const uint32_t *timeouts_ms)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);

    if (max_conns == 0 || max_conns > PS_CT_MAX_CONNS) {
        return -EINVAL;
    }
    if (max_conns != ct->max_conns) {
        if (ct->stats.conns) {
            return -EBUSY;
        }
        ct_release(ct);
        ct->max_conns = max_conns;
        ct->n_buckets = round_up_pow2(max_conns);
        ct->stats.max_conns = max_conns;
    }
    if (timeouts_ms) {
        for (int s = PS_CS_SYN; s < PS_CS_COUNT; s++) {
            ct->timeouts_ms[s] = timeouts_ms[s];
        }
    }
    return 0;
}

/* Adds 'conn' at 'now_ms' and sets '*index' to its entry; returns as
 * ps_dp_conn_add() does. */
static int
ct_add(struct ps_conntrack *ct, const struct ps_conn *conn, int64_t now_ms, uint32_t *index)
{
    struct ps_conn_tuple client = tuple_norm(&conn->client);
    struct ps_conn_tuple reply = tuple_norm(&conn->reply);
    bool has_reply = !tuple_is_zero(&reply);
    struct conn *c;
    uint32_t i;

    if (!conn_valid(conn, &client, &reply)) {
        return -EINVAL;
    }
    if (!ct->client_buckets && ct_reserve(ct)) {
        return -ENOMEM;
    }
    if (*index_link(ct, false, &client) != CT_NIL || (has_reply && *index_link(ct, true, &reply) != CT_NIL)) {
        return -EEXIST;
    }
    if (conn->state == PS_CS_SYN && ps_vip_guard_embryonic_full(ct->guards, conn->vip_id)) {
        uint32_t victim = embryonic_victim(ct, conn->vip_id);

        if (victim == CT_NIL) {
            ps_vip_guard_count_refused(ct->guards, conn->vip_id);
            return -ENOSPC;
        }
        conn_gone(ct, victim);
        ps_vip_guard_count_evicted(ct->guards, conn->vip_id);
    }
    if (ct->stats.conns >= ct->max_conns) {
        uint32_t victim = eviction_victim(ct, conn->state);

        if (victim == CT_NIL) {
            ct->stats.refused++;
            return -ENOSPC;
        }
        conn_gone(ct, victim);
        ct->stats.evictions++;
    }
    i = entry_alloc(ct);
    if (i == CT_NIL) {
        return -ENOMEM;
    }

    now_ms = ps_resolve_now(now_ms);
    c = conn_at(ct, i);
    memset(c, 0, sizeof *c);
    c->client = client;
    c->reply = reply;
    memcpy(c->backend, conn->backend, sizeof c->backend);
    memcpy(c->tunnel_src, conn->tunnel_src, sizeof c->tunnel_src);
    c->mode = conn->mode;
    c->state = conn->state;
    c->flags = conn->flags;             /* conn_valid(): HOLD or nothing */
    c->vip_id = conn->vip_id;
    c->backend_id = conn->backend_id;
    c->created_ms = c->used_ms = now_ms;

    *index_link(ct, false, &client) = i;
    if (has_reply) {
        *index_link(ct, true, &reply) = i;
    }
    list_push_tail(ct, i);
    ct->stats.conns++;
    ct->stats.inserts++;
    *index = i;
    return 0;
}

int
ps_dp_conn_add(struct ps_dp *dp, const struct ps_conn *conn, int64_t now_ms)
{
    uint32_t index;

    return ct_add(ps_dp_conntrack(dp), conn, now_ms, &index);
}

int
ps_dp_conn_del(struct ps_dp *dp, const struct ps_conn_tuple *client)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    struct ps_conn_tuple key = tuple_norm(client);
    uint32_t i = index_find(ct, false, &key);

    if (i == CT_NIL) {
        return 0;
    }
    conn_remove(ct, i);
    ct->stats.deletes++;
    return 1;
}

int
ps_dp_conn_get(struct ps_dp *dp, const struct ps_conn_tuple *tuple, int by_reply, struct ps_conn *out)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    struct ps_conn_tuple key = tuple_norm(tuple);
    uint32_t i = index_find(ct, by_reply != 0, &key);

    if (i == CT_NIL) {
        return 0;
    }
    conn_to_public(ct, conn_at(ct, i), out);
    return 1;
}

/* Hold and splice. */

/* Returns true if 'sp' sets nothing but deltas: the addresses and ports of
 * a spliced connection are its tuples', which the NAT rewrite writes. */
static bool
splice_args_valid(const struct ps_splice *sp)
{
    return !(sp->flags & ~PS_SPLICE_TIMESTAMPS);
}

/* Returns the entry of the nat/fullnat TCP connection with client tuple
 * 'client' in '*index': 0, -ENOENT (none) or -EINVAL (another kind). */
static int
splice_conn_find(struct ps_conntrack *ct, const struct ps_conn_tuple *client, uint32_t *index)
{
    struct ps_conn_tuple key = tuple_norm(client);
    uint32_t i = index_find(ct, false, &key);

    if (i == CT_NIL) {
        return -ENOENT;
    }
    if (!mode_splices(conn_at(ct, i)->mode, key.proto)) {
        return -EINVAL;
    }
    *index = i;
    return 0;
}

int
ps_dp_conn_hold(struct ps_dp *dp, const struct ps_conn_tuple *client, int hold)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    uint32_t i;
    int error = splice_conn_find(ct, client, &i);

    if (error) {
        return error;
    }
    if (hold) {
        conn_at(ct, i)->flags |= PS_CONN_F_HOLD;
    } else {
        conn_at(ct, i)->flags &= ~PS_CONN_F_HOLD;
    }
    return 0;
}

int
ps_dp_conn_splice(struct ps_dp *dp, const struct ps_conn_tuple *client, const struct ps_splice *to_backend,
                  const struct ps_splice *to_client)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    struct splice_entry *e;
    struct conn *c;
    uint32_t i;
    int error;

    if (!splice_args_valid(to_backend) || !splice_args_valid(to_client)) {
        return -EINVAL;
    }
    error = splice_conn_find(ct, client, &i);
    if (error) {
        return error;
    }
    c = conn_at(ct, i);
    if (!(c->flags & PS_CONN_F_SPLICED)) {
        uint32_t s;

        error = splice_alloc(ct, &s);
        if (error) {
            return error;
        }
        /* The entry takes the backend's place in the connection. */
        memcpy(ct->splices[s].backend, c->backend, sizeof c->backend);
        c->splice = s;
        c->flags |= PS_CONN_F_SPLICED;
    }
    e = &ct->splices[c->splice];
    e->to_backend = *to_backend;
    e->to_client = *to_client;
    c->flags &= ~PS_CONN_F_HOLD;
    return 0;
}

int
ps_dp_conn_get_splice(struct ps_dp *dp, const struct ps_conn_tuple *client, struct ps_splice *to_backend,
                      struct ps_splice *to_client)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    struct ps_conn_tuple key = tuple_norm(client);
    uint32_t i = index_find(ct, false, &key);
    const struct splice_entry *e;

    if (i == CT_NIL || !(conn_at(ct, i)->flags & PS_CONN_F_SPLICED)) {
        return 0;
    }
    e = &ct->splices[conn_at(ct, i)->splice];
    *to_backend = e->to_backend;
    *to_client = e->to_client;
    return 1;
}

/* The entries already allocated stay while some are in use (indexes name
 * them); with none in use the table is freed, so that a lowered bound also
 * bounds the memory. */
int
ps_dp_splice_config(struct ps_dp *dp, uint32_t max_splices)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);

    if (max_splices == 0 || max_splices > PS_CT_MAX_CONNS) {
        return -EINVAL;
    }
    if (max_splices < ct->stats.splices) {
        return -EBUSY;
    }
    if (!ct->stats.splices) {
        splices_release(ct);
    }
    ct->max_splices = ct->stats.max_splices = max_splices;
    return 0;
}

/* Returns the entry after 'i' in dump order: its list onward, then the lists
 * of the later states, each least recent first. */
static uint32_t
dump_next(const struct ps_conntrack *ct, uint32_t i)
{
    const struct conn *c = conn_at(ct, i);

    if (c->lru_next != CT_NIL) {
        return c->lru_next;
    }
    for (int s = c->state + 1; s < PS_CS_COUNT; s++) {
        if (ct->lists[s].head != CT_NIL) {
            return ct->lists[s].head;
        }
    }
    return CT_NIL;
}

/* Copies up to 'max_out' connections to 'out', by state (PS_CS_SYN first)
 * and least recent first within a state, starting at cursor 'start' (0: the
 * first).  Stores in '*next' the cursor to continue from, 0 when the dump is
 * complete.  A cursor is valid only until the table changes. */
uint32_t
ps_dp_conn_dump(struct ps_dp *dp, uint32_t start, struct ps_conn *out, uint32_t max_out, uint32_t *next)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    uint32_t i = CT_NIL;
    uint32_t n = 0;

    if (start == 0) {
        for (int s = PS_CS_SYN; s < PS_CS_COUNT && i == CT_NIL; s++) {
            i = ct->lists[s].head;
        }
    } else if (start < ct->n_used && conn_at(ct, start)->state) {
        i = start;
    }
    for (; i != CT_NIL && n < max_out; i = dump_next(ct, i)) {
        conn_to_public(ct, conn_at(ct, i), &out[n++]);
    }
    *next = i;
    return n;
}

/* Removes every connection idle for its state's timeout at 'now_ms' (-1: the
 * monotonic clock), with a GONE event each, by state and least recent first.
 *
 * An entry that was hit without moving (same granule) may sit in front of
 * one that moved a little earlier than its last hit, so a list is sorted by
 * the time of each entry's last move, not quite by used_ms.  That time lies
 * in the granule of used_ms: once an entry's granule start plus the timeout
 * is after 'now_ms', no entry behind it can be expired, and the walk stops.
 * Before that it skips the few entries of the last granule that are not
 * idle yet.  Exact as long as the clock never goes backwards. */
uint32_t
ps_dp_conn_expire(struct ps_dp *dp, int64_t now_ms)
{
    struct ps_conntrack *ct = ps_dp_conntrack(dp);
    uint32_t n = 0;

    now_ms = ps_resolve_now(now_ms);
    for (int s = PS_CS_SYN; s < PS_CS_COUNT; s++) {
        int64_t timeout = ct->timeouts_ms[s];
        uint32_t i = ct->lists[s].head;

        while (i != CT_NIL) {
            struct conn *c = conn_at(ct, i);
            uint32_t next = c->lru_next;

            if (granule_of(c->used_ms) * PS_LRU_GRANULE_MS + timeout > now_ms) {
                break;
            }
            if (c->used_ms + timeout <= now_ms) {
                conn_gone(ct, i);
                ct->stats.expired++;
                n++;
            }
            i = next;
        }
    }
    return n;
}

void
ps_dp_conn_get_stats(const struct ps_dp *dp, struct ps_ct_stats *out)
{
    const struct ps_conntrack *ct = ps_dp_conntrack(dp);
    uint64_t index_bytes = 2 * sizeof(uint32_t) * (uint64_t) ct->n_buckets;

    *out = ct->stats;
    out->bytes_used = (uint64_t) ct->n_chunks * CHUNK_CONNS * sizeof(struct conn)
                      + (ct->client_buckets ? index_bytes : 0)
                      + (uint64_t) ct->splices_cap * sizeof(struct splice_entry);
    out->bytes_per_conn = sizeof(struct conn) + (index_bytes + ct->max_conns - 1) / ct->max_conns;
}

/* The LB actions. */

/* Fills 'p' from 'frame' and returns true if it is a packet LB can look up:
 * IPv4 (ps_ipv4_offset), not a later fragment, TCP or UDP with the whole
 * header (20 or 8 bytes) in the frame, as the NAT rewrites need it. */
static bool
lb_packet_parse(const struct ps_frame *frame, struct lb_packet *p)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    const uint8_t *l4;
    uint32_t l4_ofs, l4_size;

    if (!l3) {
        return false;
    }
    p->ip = (const struct ps_ip_hdr *) (frame->data + l3);
    if (ps_be16_load(frame->data + l3 + offsetof(struct ps_ip_hdr, ip_frag_off)) & PS_IP_FRAG_OFF_MASK) {
        return false;
    }
    if (p->ip->ip_proto == PS_IPPROTO_TCP) {
        l4_size = sizeof(struct ps_tcp_hdr);
    } else if (p->ip->ip_proto == PS_IPPROTO_UDP) {
        l4_size = sizeof(struct ps_udp_hdr);
    } else {
        return false;
    }
    l4_ofs = l3 + (frame->data[l3] & 0xf) * 4u;
    if (l4_ofs + l4_size > frame->size) {
        return false;
    }
    l4 = frame->data + l4_ofs;
    memset(&p->tuple, 0, sizeof p->tuple);
    p->tuple.proto = p->ip->ip_proto;
    memcpy(p->tuple.src, p->ip->ip_src, 4);
    memcpy(p->tuple.dst, p->ip->ip_dst, 4);
    memcpy(p->tuple.sport, l4, 2);
    memcpy(p->tuple.dport, l4 + 2, 2);
    p->tcp_flags = p->tuple.proto == PS_IPPROTO_TCP
                   ? ps_be16_load(l4 + offsetof(struct ps_tcp_hdr, tcp_ctl)) & PS_TCP_FLAGS_MASK : 0;
    return true;
}

/* A packet of VIP 'vip_id' for the slow path: a CONN_MISS upcall, unless
 * the VIP's upcall rate is used up (vipguard.h), when it is dropped: a flood
 * of new connections must not crowd the slow path out for everyone. */
static enum ps_route_verdict
lb_miss(struct ps_conntrack *ct, struct ps_route_result *result, uint32_t vip_id, int64_t now_ms)
{
    if (!ps_vip_guard_admit_upcall(ct->guards, vip_id, now_ms)) {
        return PS_ROUTE_DROP;
    }
    result->reason = PS_UPCALL_CONN_MISS;
    result->userdata = vip_id;
    return PS_ROUTE_UPCALL;
}

/* Adds the connection of packet 'p', to VIP 'vip_id' and of no connection
 * in the table, to the backend the VIP's ring holds for its client, with a
 * CE_NEW event, and returns its entry.  Not only a SYN: as in Katran, a later
 * packet of a connection the table lost (an HA takeover before the entry was
 * synced) lands on the same backend and goes on.  Returns CT_NIL to leave the
 * packet to the slow path: the VIP has no ring, the slot is empty (it refuses
 * the client), a TCP RST (nothing to go on with), or the add failed; then
 * '*refused' says whether that was for a full table, whose refusal is already
 * counted and needs no upcall; so is a VIP's refusal at its embryonic limit. */
static uint32_t
lb_schedule(struct ps_conntrack *ct, struct ps_rings *rings, uint32_t vip_id, const struct lb_packet *p,
            int64_t now_ms, bool *refused)
{
    const struct ps_ring_backend *b;
    struct ps_conn conn;
    uint32_t i;
    int error;

    if (p->tuple.proto == PS_IPPROTO_TCP && (p->tcp_flags & TCP_RST)) {
        return CT_NIL;
    }
    b = ps_ring_pick(rings, vip_id, p->tuple.src);
    if (!b) {
        return CT_NIL;
    }
    memset(&conn, 0, sizeof conn);
    conn.client = p->tuple;
    memcpy(conn.backend, b->address, sizeof conn.backend);
    memcpy(conn.tunnel_src, b->tunnel_src, sizeof conn.tunnel_src);
    conn.mode = b->mode;
    conn.state = p->tuple.proto == PS_IPPROTO_TCP ? PS_CS_SYN : PS_CS_UDP;
    conn.vip_id = vip_id;
    conn.backend_id = b->backend_id;
    if (b->mode == PS_CONN_NAT) {       /* the backend answers the client's address and port */
        conn.reply.proto = p->tuple.proto;
        memcpy(conn.reply.src, b->address, sizeof conn.reply.src);
        memcpy(conn.reply.dst, p->tuple.src, sizeof conn.reply.dst);
        ps_be16_store(conn.reply.sport, b->port);
        memcpy(conn.reply.dport, p->tuple.sport, sizeof conn.reply.dport);
    }
    error = ct_add(ct, &conn, now_ms, &i);
    if (error) {
        *refused = error == -ENOSPC;   /* a full table or the VIP's embryonic limit */
        return CT_NIL;
    }
    if (conn.state == PS_CS_SYN) {
        /* Reported once past the handshake (conn_account), as IPVS counts a
         * half-open connection as inactive: a flood's SYNs stay in C. */
        conn_at(ct, i)->flags |= CONN_F_UNREPORTED;
    } else {
        event_push(ct, PS_CE_NEW, conn_at(ct, i), 0);
    }
    ps_rings_count_scheduled(rings);
    return i;
}

/* Decides the route of packet 'p' of connection 'c' as it will be once
 * rewritten: from and to the addresses the rewrite writes (an outer header's
 * for the tunnels, with its TTL), toward 'backend' for dsr. */
static enum ps_route_verdict
lb_decide(const struct conn *c, const struct lb_packet *p, bool reply, const struct ps_routes *routes,
          struct ps_dp_stats *stats, struct ps_route_result *result)
{
    const uint8_t *src = p->ip->ip_src;
    const uint8_t *dst = p->ip->ip_dst;

    if (reply) {
        return ps_route_decide(routes, c->client.dst, c->mode == PS_CONN_FULLNAT ? c->client.src : dst, NULL,
                               p->ip->ip_ttl, stats, result);
    }
    switch (c->mode) {
    case PS_CONN_NAT:
        return ps_route_decide(routes, src, c->reply.src, NULL, p->ip->ip_ttl, stats, result);
    case PS_CONN_FULLNAT:
        return ps_route_decide(routes, c->reply.dst, c->reply.src, NULL, p->ip->ip_ttl, stats, result);
    case PS_CONN_DSR:
        return ps_route_decide(routes, src, dst, c->backend, p->ip->ip_ttl, stats, result);
    default:
        return ps_route_decide(routes, c->tunnel_src, c->backend, NULL, PS_TUNNEL_TTL, stats, result);
    }
}

/* Rewrites a client's packet of connection 'c' for its backend. */
static void
lb_rewrite_client(struct ps_frame *frame, const struct conn *c)
{
    switch (c->mode) {
    case PS_CONN_FULLNAT:
        ps_ipv4_set_addr(frame, PS_NAT_IPV4_SRC, c->reply.dst);
        ps_l4_set_port(frame, PS_NAT_TP_SRC, ps_be16_load(c->reply.dport));
        /* fall through */
    case PS_CONN_NAT:
        ps_ipv4_set_addr(frame, PS_NAT_IPV4_DST, c->reply.src);
        ps_l4_set_port(frame, PS_NAT_TP_DST, ps_be16_load(c->reply.sport));
        break;
    case PS_CONN_IPIP:
        ps_tunnel_encap(frame, PS_IPPROTO_IPIP, c->tunnel_src, c->backend);
        break;
    case PS_CONN_GRE:
        ps_tunnel_encap(frame, PS_IPPROTO_GRE, c->tunnel_src, c->backend);
        break;
    default:
        break;                          /* dsr: only routed differently */
    }
}

/* Rewrites a backend's reply of nat/fullnat connection 'c' for the client:
 * it comes from the VIP again (and, fullnat, goes to the client). */
static void
lb_rewrite_reply(struct ps_frame *frame, const struct conn *c)
{
    ps_ipv4_set_addr(frame, PS_NAT_IPV4_SRC, c->client.dst);
    ps_l4_set_port(frame, PS_NAT_TP_SRC, ps_be16_load(c->client.dport));
    if (c->mode == PS_CONN_FULLNAT) {
        ps_ipv4_set_addr(frame, PS_NAT_IPV4_DST, c->client.src);
        ps_l4_set_port(frame, PS_NAT_TP_DST, ps_be16_load(c->client.sport));
    }
}

/* FIN_WAIT and CLOSE: the slow path counts such connections as inactive,
 * as IPVS does, so that least-connection schedulers see only open ones. */
static bool
state_is_closing(uint8_t state)
{
    return state == PS_CS_FIN_WAIT || state == PS_CS_CLOSE;
}

/* The TCP state a connection in 'state' moves to on a packet with 'flags'
 * from the client, or from the backend when 'reply'. */
static uint8_t
tcp_next_state(uint8_t state, uint16_t flags, bool reply)
{
    uint16_t syn_ack = flags & (TCP_SYN | TCP_ACK);

    if (flags & TCP_RST) {
        return PS_CS_CLOSE;
    }
    if (flags & TCP_FIN) {
        return state == PS_CS_CLOSE ? PS_CS_CLOSE : PS_CS_FIN_WAIT;
    }
    if (!reply && syn_ack == TCP_SYN && (state == PS_CS_FIN_WAIT || state == PS_CS_CLOSE)) {
        return PS_CS_SYN;               /* the client reuses the port for a new connection */
    }
    if (syn_ack == TCP_ACK && state == PS_CS_SYN) {
        return PS_CS_ESTABLISHED;
    }
    return state;
}

/* Microseconds from 'from_ms' to 'to_ms', within uint32_t. */
static uint32_t
rtt_us_between(int64_t from_ms, int64_t to_ms)
{
    int64_t ms = to_ms - from_ms;

    if (ms <= 0) {
        return 0;
    }
    return ms > UINT32_MAX / 1000 ? UINT32_MAX : (uint32_t) (ms * 1000);
}

/* Accounts packet 'p' of 'size' bytes, forwarded at 'now_ms', to entry 'i':
 * counters, TCP state, the RTT event, recency. */
static void
conn_account(struct ps_conntrack *ct, uint32_t i, const struct lb_packet *p, uint32_t size, bool reply,
             int64_t now_ms)
{
    struct conn *c = conn_at(ct, i);
    uint8_t state = c->state;
    bool was_closing = state_is_closing(state);

    c->packets++;
    c->bytes += size;
    if (p->tuple.proto == PS_IPPROTO_TCP) {
        state = tcp_next_state(c->state, p->tcp_flags, reply);
        if (reply && c->state == PS_CS_SYN && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)
            && !(c->flags & CONN_F_RTT_REPORTED)) {
            uint32_t rtt_us = rtt_us_between(c->created_ms, now_ms);

            if (c->flags & CONN_F_UNREPORTED) {
                c->held_rtt_us = rtt_us;
            } else {
                event_push(ct, PS_CE_RTT, c, rtt_us);
            }
            c->flags |= CONN_F_RTT_REPORTED;
        }
        if (state == PS_CS_SYN && c->state != PS_CS_SYN) {
            /* A new connection on the old tuple: its age and RTT start over. */
            c->created_ms = now_ms;
            c->flags &= ~CONN_F_RTT_REPORTED;
        }
    }
    if (state != c->state || granule_of(now_ms) != granule_of(c->used_ms)) {
        list_move(ct, i, state);
    }
    if ((c->flags & CONN_F_UNREPORTED) && c->state != PS_CS_SYN) {
        c->flags &= ~CONN_F_UNREPORTED;
        event_push(ct, PS_CE_NEW, c, 0);
        if (c->flags & CONN_F_RTT_REPORTED) {
            event_push(ct, PS_CE_RTT, c, c->held_rtt_us);
        }
    }
    if (state_is_closing(c->state) != was_closing) {
        event_push(ct, PS_CE_STATE, c, 0);
    }
    c->used_ms = now_ms;
}

/* Sends up a packet of held connection 'i', untouched, to the L7 engine that
 * answers it (PS_UPCALL_L7 with the VIP id).  Its state and counters stay:
 * the engine, not the packet, says how the connection goes.  Its recency
 * moves as a forwarded packet's would, so that a connection the engine is
 * still talking on does not expire or get evicted under it. */
static enum ps_route_verdict
lb_hold(struct ps_conntrack *ct, uint32_t i, int64_t now_ms, struct ps_route_result *result)
{
    struct conn *c = conn_at(ct, i);

    if (granule_of(now_ms) != granule_of(c->used_ms)) {
        list_move(ct, i, c->state);
    }
    c->used_ms = now_ms;
    ct->stats.l7_upcalls++;
    result->reason = PS_UPCALL_L7;
    result->userdata = c->vip_id;
    return PS_ROUTE_UPCALL;
}

/* The splice of the direction a packet of connection 'c' travels, or NULL
 * if it is not spliced. */
static const struct ps_splice *
lb_splice_of(const struct ps_conntrack *ct, const struct conn *c, bool reply)
{
    const struct splice_entry *e;

    if (!(c->flags & PS_CONN_F_SPLICED)) {
        return NULL;
    }
    e = &ct->splices[c->splice];
    return reply ? &e->to_client : &e->to_backend;
}

static enum ps_route_verdict
lb_frame(struct ps_conntrack *ct, struct ps_rings *rings, const struct ps_routes *routes,
         struct ps_frame *frame, const struct ps_action *action, int64_t now_ms, struct ps_dp_stats *stats,
         struct ps_route_result *result)
{
    bool reply = action->type == PS_ACT_LB_REPLY;
    const struct ps_splice *splice;
    enum ps_route_verdict verdict;
    struct ps_splice_stats splice_stats;
    struct lb_packet p;
    struct conn *c;
    uint32_t i;

    if (!lb_packet_parse(frame, &p)) {
        /* Not a connection's packet: a reply is ordinary routed traffic. */
        return reply ? ps_route_frame(routes, frame, NULL, stats, result)
                     : lb_miss(ct, result, action->arg32, now_ms);
    }
    i = index_find(ct, reply, &p.tuple);
    if (i == CT_NIL) {
        bool refused = false;

        if (reply) {
            ct->stats.reply_misses++;
            return ps_route_frame(routes, frame, NULL, stats, result);
        }
        i = lb_schedule(ct, rings, action->arg32, &p, now_ms, &refused);
        if (refused) {
            return PS_ROUTE_DROP;
        }
        if (i == CT_NIL) {
            ct->stats.misses++;
            return lb_miss(ct, result, action->arg32, now_ms);
        }
    } else {
        ct->stats.hits++;
    }
    c = conn_at(ct, i);
    if ((c->flags & PS_CONN_F_HOLD) || (!reply && (c->flags & PS_CONN_F_SPLICED)
                                        && (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)) {
        /* Before routing: the engine is its destination.  A client's SYN on a
         * spliced connection's ports opens a new connection, which the
         * engine's handshake answers: the old deltas mean nothing to it. */
        return lb_hold(ct, i, now_ms, result);
    }

    /* Route first, on the addresses the packet will have: an upcall or drop
     * then carries the frame untouched, and the slow path can send it again
     * with the same LB action.  Only a forwarded packet counts. */
    verdict = lb_decide(c, &p, reply, routes, stats, result);
    if (verdict != PS_ROUTE_FORWARD) {
        return verdict;
    }

    /* A spliced segment the rewrite would refuse (a data offset past the
     * frame, malformed options) is dropped before it counts: its numbers
     * cannot be made right, and the receiver would misread it.  The check
     * reads only what the NAT rewrite leaves alone, so it answers as the
     * rewrite after it will. */
    splice = lb_splice_of(ct, c, reply);
    if (splice && ps_splice_check_frame(frame) != PS_SPLICE_OK) {
        ct->stats.splice_dropped++;
        return PS_ROUTE_DROP;
    }
    conn_account(ct, i, &p, frame->size, reply, now_ms);
    if (reply) {
        lb_rewrite_reply(frame, c);
    } else {
        lb_rewrite_client(frame, c);
    }
    if (splice) {
        /* After the NAT rewrite, as the engine computed the deltas: the
         * addresses and ports are the tuples', the splice sets none. */
        memset(&splice_stats, 0, sizeof splice_stats);
        ps_splice_rewrite_frame(frame, splice, &splice_stats);
        ct->stats.splice_rewritten++;
    }
    ps_route_rewrite(frame, result, stats);
    return PS_ROUTE_FORWARD;
}

enum ps_route_verdict
ps_lb_frame(struct ps_conntrack *ct, struct ps_rings *rings, const struct ps_routes *routes,
            struct ps_frame *frame, const struct ps_action *action, int64_t now_ms, struct ps_dp_stats *stats,
            struct ps_route_result *result)
{
    enum ps_route_verdict verdict;

    if (!ct->shared) {
        return lb_frame(ct, rings, routes, frame, action, now_ms, stats, result);
    }
    /* The rings' 'scheduled' counter is written under this lock too. */
    pthread_mutex_lock(&ct->lock);
    verdict = lb_frame(ct, rings, routes, frame, action, now_ms, stats, result);
    pthread_mutex_unlock(&ct->lock);
    return verdict;
}

/* VIP guards. */

int
ps_dp_vip_guard_set(struct ps_dp *dp, uint32_t vip_id, const struct ps_vip_guard *guard)
{
    return ps_vip_guards_set(ps_dp_conntrack(dp)->guards, vip_id, guard);
}

int
ps_dp_vip_guard_get_stats(const struct ps_dp *dp, uint32_t vip_id, struct ps_vip_guard_stats *out)
{
    return ps_vip_guards_get_stats(ps_dp_conntrack(dp)->guards, vip_id, out);
}
