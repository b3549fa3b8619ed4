/* route.c: the datapath's routing tables and the ROUTE action (docs/DATAPATH.md, "Routing").
 *
 * The slow path decides which routes exist and resolves next hops to MACs;
 * these tables only hold its answers, so that a packet to an already resolved
 * destination is routed without leaving C:
 *
 *   LPM         destination -> next-hop id (lpm.c)
 *   next hops   id -> kind, egress VLAN, gateway, our MAC there (an array)
 *   neighbors   (VLAN, address) -> MAC, port, egress tag (a bounded hash)
 *
 * ps_route_frame() checks everything before it writes anything, so a frame
 * that goes up to the slow path or is dropped is exactly the frame ROUTE got.
 * The checks are ps_route_decide() and the writing ps_route_rewrite(): LB
 * (conntrack.c) decides on the addresses a packet will have, and rewrites it
 * only once the route is known to forward it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "actions.h"
#include "nat.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "route.h"

#define PS_NIL UINT32_MAX              /* "no neighbor" in the chains and the free list */
#define NEIGH_BUCKETS PS_MAX_NEIGHS    /* a power of two: one bucket per possible neighbor */
#define ADDR_LEN 16                    /* bytes of a neighbor or gateway address */
#define MAX_VID 4095                   /* largest VLAN id */

/* One neighbor and its place in the hash table. */
struct neigh_node {
    uint8_t addr[ADDR_LEN];            /* its address (IPv4 in the first 4 bytes) */
    uint16_t vlan;                     /* the VLAN it lives on */
    uint32_t next;                     /* next node in the bucket chain, or in the free list */
    struct ps_neigh neigh;             /* what ROUTE needs of it */
};

struct ps_routes {
    struct ps_lpm *lpm;                          /* destination -> next-hop id */
    struct ps_nexthop nexthops[PS_MAX_NEXTHOPS]; /* by id; kind 0 means "not set" */
    struct neigh_node *neighs;                   /* PS_MAX_NEIGHS nodes */
    uint32_t *buckets;                           /* NEIGH_BUCKETS chain heads, PS_NIL when empty */
    uint32_t free_neigh;                         /* first freed node, chained through 'next' */
    uint32_t n_used_neighs;                      /* nodes ever handed out: nodes above are untouched */
    uint32_t n_neighs;                           /* neighbors stored now */
};

struct ps_routes *
ps_routes_new(void)
{
    struct ps_routes *routes = calloc(1, sizeof *routes);

    if (!routes) {
        return NULL;
    }
    routes->lpm = ps_lpm_new(PS_DP_MAX_ROUTES, PS_DP_MAX_TBL8);
    routes->neighs = calloc(PS_MAX_NEIGHS, sizeof *routes->neighs);
    routes->buckets = malloc(NEIGH_BUCKETS * sizeof *routes->buckets);
    if (!routes->lpm || !routes->neighs || !routes->buckets) {
        ps_routes_free(routes);
        return NULL;
    }
    memset(routes->buckets, 0xff, NEIGH_BUCKETS * sizeof *routes->buckets);
    routes->free_neigh = PS_NIL;
    return routes;
}

void
ps_routes_free(struct ps_routes *routes)
{
    if (!routes) {
        return;
    }
    ps_lpm_free(routes->lpm);
    free(routes->neighs);
    free(routes->buckets);
    free(routes);
}

/* Routes and next hops. */

int
ps_dp_route_add(struct ps_dp *dp, const uint8_t *prefix, uint8_t plen, uint32_t nh_id)
{
    return ps_lpm_add(ps_dp_routes(dp)->lpm, prefix, plen, nh_id);
}

int
ps_dp_route_del(struct ps_dp *dp, const uint8_t *prefix, uint8_t plen)
{
    return ps_lpm_del(ps_dp_routes(dp)->lpm, prefix, plen);
}

uint32_t
ps_dp_route_lookup(struct ps_dp *dp, const uint8_t *addr)
{
    return ps_lpm_lookup(ps_dp_routes(dp)->lpm, addr);
}

int
ps_dp_nexthop_set(struct ps_dp *dp, uint32_t nh_id, const struct ps_nexthop *nh)
{
    struct ps_nexthop *slot;

    if (nh_id == 0 || nh_id >= PS_MAX_NEXTHOPS || nh->kind < PS_NH_CONNECTED || nh->kind > PS_NH_BLACKHOLE
        || nh->vlan > MAX_VID) {
        return -EINVAL;
    }
    slot = &ps_dp_routes(dp)->nexthops[nh_id];
    *slot = *nh;
    slot->pad0 = 0;
    memset(slot->pad1, 0, sizeof slot->pad1);
    return 0;
}

int
ps_dp_nexthop_del(struct ps_dp *dp, uint32_t nh_id)
{
    struct ps_nexthop *slot;

    if (nh_id == 0 || nh_id >= PS_MAX_NEXTHOPS) {
        return -EINVAL;
    }
    slot = &ps_dp_routes(dp)->nexthops[nh_id];
    if (!slot->kind) {
        return 0;
    }
    memset(slot, 0, sizeof *slot);
    return 1;
}

/* Neighbors. */

/* FNV-1a over the VLAN and the address: 18 bytes, not worth more. */
static uint32_t
neigh_hash(uint16_t vlan, const uint8_t *addr)
{
    uint64_t lo, hi, h;

    /* Two multiply-and-fold rounds over the address as two words: every
     * routed packet hashes once, and a byte-wise hash cost ~90 instructions. */
    memcpy(&lo, addr, sizeof lo);
    memcpy(&hi, addr + sizeof lo, sizeof hi);
    h = (lo ^ ((uint64_t) vlan << 48)) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    h = (h ^ hi) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return (uint32_t) h;
}

/* Returns the link that points at the node of ('vlan', 'addr'), or at the
 * PS_NIL ending its chain if there is none, so callers can insert or unlink. */
static uint32_t *
neigh_link(const struct ps_routes *routes, uint16_t vlan, const uint8_t *addr)
{
    uint32_t *link = &routes->buckets[neigh_hash(vlan, addr) & (NEIGH_BUCKETS - 1)];

    while (*link != PS_NIL) {
        struct neigh_node *n = &routes->neighs[*link];

        if (n->vlan == vlan && !memcmp(n->addr, addr, ADDR_LEN)) {
            break;
        }
        link = &n->next;
    }
    return link;
}

static const struct ps_neigh *
neigh_find(const struct ps_routes *routes, uint16_t vlan, const uint8_t *addr)
{
    uint32_t i = *neigh_link(routes, vlan, addr);

    return i == PS_NIL ? NULL : &routes->neighs[i].neigh;
}

int
ps_dp_neigh_set(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr, const struct ps_neigh *neigh)
{
    struct ps_routes *routes = ps_dp_routes(dp);
    uint32_t *link;
    uint32_t i;

    if (vlan > MAX_VID || neigh->port >= PS_MAX_PORTS) {
        return -EINVAL;
    }
    link = neigh_link(routes, vlan, addr);
    if (*link == PS_NIL) {
        if (routes->n_neighs >= PS_MAX_NEIGHS) {
            return -ENOSPC;
        }
        if (routes->free_neigh != PS_NIL) {
            i = routes->free_neigh;
            routes->free_neigh = routes->neighs[i].next;
        } else {
            i = routes->n_used_neighs++;
        }
        memcpy(routes->neighs[i].addr, addr, ADDR_LEN);
        routes->neighs[i].vlan = vlan;
        routes->neighs[i].next = PS_NIL;
        *link = i;
        routes->n_neighs++;
    }
    i = *link;
    routes->neighs[i].neigh = *neigh;
    routes->neighs[i].neigh.pad = 0;
    return 0;
}

int
ps_dp_neigh_del(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr)
{
    struct ps_routes *routes = ps_dp_routes(dp);
    uint32_t *link;
    uint32_t i;

    if (vlan > MAX_VID) {
        return -EINVAL;
    }
    link = neigh_link(routes, vlan, addr);
    i = *link;
    if (i == PS_NIL) {
        return 0;
    }
    *link = routes->neighs[i].next;
    routes->neighs[i].next = routes->free_neigh;
    routes->free_neigh = i;
    routes->n_neighs--;
    return 1;
}

int
ps_dp_neigh_get(struct ps_dp *dp, uint16_t vlan, const uint8_t *addr, struct ps_neigh *out)
{
    const struct ps_neigh *neigh;

    if (vlan > MAX_VID) {
        return -EINVAL;
    }
    neigh = neigh_find(ps_dp_routes(dp), vlan, addr);
    if (!neigh) {
        return 0;
    }
    *out = *neigh;
    return 1;
}

/* The ROUTE action. */

/* 0/8, 127/8, 224/4 and 240/4 (which holds 255.255.255.255): sources no
 * router forwards from (RFC 1812 section 5.3.7). */
static inline bool
is_martian_source(const uint8_t *src)
{
    return src[0] == 0 || src[0] == 127 || src[0] >= 224;
}

/* 224/4 and 255.255.255.255: destinations that are never routed by unicast. */
static inline bool
is_group_destination(const uint8_t *dst)
{
    static const uint8_t broadcast[4] = { 0xff, 0xff, 0xff, 0xff };

    return (dst[0] & 0xf0) == 0xe0 || !memcmp(dst, broadcast, 4);
}

static enum ps_route_verdict
route_upcall(struct ps_route_result *result, uint16_t reason, uint32_t userdata)
{
    result->reason = reason;
    result->userdata = userdata;
    return PS_ROUTE_UPCALL;
}

/* Decrements the TTL of the IPv4 header at 'l3' and updates its checksum
 * incrementally (RFC 1624) for the 16-bit word TTL and protocol share. */
static void
ttl_decrement(uint8_t *l3)
{
    struct ps_ip_hdr *ip = (struct ps_ip_hdr *) l3;
    uint8_t *csum = (uint8_t *) &ip->ip_csum;
    uint16_t old_word = ip->ip_ttl << 8 | ip->ip_proto;
    uint16_t check;

    ip->ip_ttl--;
    check = ps_csum_update16(ps_be16_load(csum), old_word, old_word - 0x100);
    csum[0] = check >> 8;
    csum[1] = check & 0xff;
}

enum ps_route_verdict
ps_route_decide(const struct ps_routes *routes, const uint8_t *src, const uint8_t *dst, const uint8_t *via,
                uint8_t ttl, struct ps_dp_stats *stats, struct ps_route_result *result)
{
    const struct ps_nexthop *nh;
    const struct ps_neigh *neigh;
    uint8_t key_addr[ADDR_LEN] = { 0 };
    uint32_t nh_id;

    if (is_martian_source(src)) {
        stats->martian++;
        stats->route_dropped++;
        return PS_ROUTE_DROP;
    }
    if (is_group_destination(dst)) {
        stats->route_dropped++;
        return PS_ROUTE_DROP;
    }
    if (!via) {
        via = dst;
    }

    nh_id = ps_lpm_lookup(routes->lpm, via);
    nh = &routes->nexthops[nh_id];
    if (!nh_id || !nh->kind) {
        return route_upcall(result, PS_UPCALL_NO_ROUTE, 0);
    }
    if (nh->kind == PS_NH_LOCAL) {
        return route_upcall(result, PS_UPCALL_LOCAL, 0);
    }
    if (nh->kind == PS_NH_BLACKHOLE) {
        stats->route_dropped++;
        return PS_ROUTE_DROP;
    }
    if (ttl <= 1) {
        return route_upcall(result, PS_UPCALL_TTL, 0);
    }
    if (nh->kind == PS_NH_GATEWAY) {
        memcpy(key_addr, nh->gateway, ADDR_LEN);
    } else {
        memcpy(key_addr, via, 4);
    }
    neigh = neigh_find(routes, nh->vlan, key_addr);
    if (!neigh) {
        return route_upcall(result, PS_UPCALL_NO_NEIGH, nh_id);
    }
    result->port = neigh->port;
    result->nh = nh;
    result->neigh = neigh;
    return PS_ROUTE_FORWARD;
}

void
ps_route_rewrite(struct ps_frame *frame, const struct ps_route_result *result, struct ps_dp_stats *stats)
{
    while (ps_is_vlan_tpid(ps_be16_load(frame->data + 2 * PS_ETH_ADDR_LEN))) {
        ps_frame_pop_tag(frame);
    }
    ttl_decrement(frame->data + sizeof(struct ps_eth_hdr));
    memcpy(frame->data, result->neigh->mac, PS_ETH_ADDR_LEN);
    memcpy(frame->data + PS_ETH_ADDR_LEN, result->nh->src_mac, PS_ETH_ADDR_LEN);
    if (result->neigh->out_tci) {
        ps_frame_push_tag(frame, PS_ETH_TYPE_VLAN, result->neigh->out_tci);
    }
    stats->routed++;
}

enum ps_route_verdict
ps_route_frame(const struct ps_routes *routes, struct ps_frame *frame, const uint8_t *via,
               struct ps_dp_stats *stats, struct ps_route_result *result)
{
    const struct ps_ip_hdr *ip;
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    enum ps_route_verdict verdict;

    if (!l3) {
        stats->route_dropped++;
        return PS_ROUTE_DROP;
    }
    ip = (const struct ps_ip_hdr *) (frame->data + l3);
    verdict = ps_route_decide(routes, ip->ip_src, ip->ip_dst, via, ip->ip_ttl, stats, result);
    if (verdict == PS_ROUTE_FORWARD) {
        /* Nothing above wrote to the frame; from here on it is routed. */
        ps_route_rewrite(frame, result, stats);
    }
    return verdict;
}
