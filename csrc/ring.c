/* ring.c: Maglev rings, the datapath's scheduler for new connections
 * (docs/DATAPATH.md "Maglev rings").
 *
 * A VIP with a ring has its new connections scheduled here instead of in the
 * slow path: slot = FNV-1a-64(client address) mod size, and the slot names a
 * backend, whose connection LB then adds to the table itself.  As in Katran,
 * the datapath only indexes; pyswitch/lb/maglev.py builds the table (Maglev,
 * weights, a prime size) and, when a backend changes, writes only the slots
 * that differ.  Slots hold a backend index (uint16_t, PS_RING_EMPTY for
 * none), so a ring of the default 65537 slots takes 128 KiB.
 *
 * Rings are found by VIP id in a fixed array: VIP ids are small numbers the
 * slow path hands out, and the lookup is one load.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyswitch.h"
#include "ring.h"

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

/* One VIP's ring. */
struct ring {
    uint32_t size;                      /* slots */
    uint16_t *slots;                    /* backend index by slot, or PS_RING_EMPTY */
    struct ps_ring_backend *backends;   /* n_backends entries; mode 0: never set */
    uint32_t n_backends;
};

struct ps_rings {
    struct ring *by_vip[PS_RING_MAX_VIPS];  /* NULL: that VIP is scheduled by the slow path */
    struct ps_ring_stats stats;
};

struct ps_rings *
ps_rings_new(void)
{
    return calloc(1, sizeof(struct ps_rings));
}

static void
ring_free(struct ring *r)
{
    if (r) {
        free(r->slots);
        free(r->backends);
        free(r);
    }
}

void
ps_rings_free(struct ps_rings *rings)
{
    if (!rings) {
        return;
    }
    for (uint32_t v = 0; v < PS_RING_MAX_VIPS; v++) {
        ring_free(rings->by_vip[v]);
    }
    free(rings);
}

static struct ring *
ring_of(const struct ps_rings *rings, uint32_t vip_id)
{
    return vip_id < PS_RING_MAX_VIPS ? rings->by_vip[vip_id] : NULL;
}

/* FNV-1a, 64 bits, as maglev.fnv1a64(): both sides must pick the same slot. */
static uint64_t
fnv1a64(const uint8_t *data, size_t size)
{
    uint64_t h = FNV64_OFFSET;

    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * FNV64_PRIME;
    }
    return h;
}

const struct ps_ring_backend *
ps_ring_pick(const struct ps_rings *rings, uint32_t vip_id, const uint8_t *client_addr)
{
    const struct ring *r = ring_of(rings, vip_id);
    uint16_t index;

    if (!r) {
        return NULL;
    }
    index = r->slots[fnv1a64(client_addr, 4) % r->size];
    if (index == PS_RING_EMPTY || index >= r->n_backends || !r->backends[index].mode) {
        return NULL;
    }
    return &r->backends[index];
}

void
ps_rings_count_scheduled(struct ps_rings *rings)
{
    rings->stats.scheduled++;
}

/* The public functions. */

int
ps_dp_ring_config(struct ps_dp *dp, uint32_t vip_id, uint32_t size)
{
    struct ps_rings *rings = ps_dp_rings(dp);
    struct ring *r = NULL;

    if (vip_id == 0 || vip_id >= PS_RING_MAX_VIPS || size > PS_RING_MAX_SIZE) {
        return -EINVAL;
    }
    if (size) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->slots = malloc((size_t) size * sizeof *r->slots))) {
            free(r);
            return -ENOMEM;
        }
        r->size = size;
        memset(r->slots, 0xff, (size_t) size * sizeof *r->slots);    /* PS_RING_EMPTY */
    }
    if (rings->by_vip[vip_id]) {
        rings->stats.rings--;
        rings->stats.bytes_used -= (uint64_t) rings->by_vip[vip_id]->size * sizeof(uint16_t)
                                   + (uint64_t) rings->by_vip[vip_id]->n_backends * sizeof(struct ps_ring_backend);
        ring_free(rings->by_vip[vip_id]);
    }
    rings->by_vip[vip_id] = r;
    if (r) {
        rings->stats.rings++;
        rings->stats.bytes_used += (uint64_t) size * sizeof(uint16_t);
    }
    return 0;
}

int
ps_dp_ring_backend_set(struct ps_dp *dp, uint32_t vip_id, uint32_t index, const struct ps_ring_backend *b)
{
    struct ps_rings *rings = ps_dp_rings(dp);
    struct ring *r = ring_of(rings, vip_id);

    if (!r) {
        return -ENOENT;
    }
    if (index >= PS_RING_MAX_BACKENDS
        || (b->mode != PS_CONN_NAT && b->mode != PS_CONN_DSR && b->mode != PS_CONN_IPIP
            && b->mode != PS_CONN_GRE)) {
        return -EINVAL;
    }
    if (index >= r->n_backends) {
        uint32_t n = index + 1;
        struct ps_ring_backend *grown = realloc(r->backends, (size_t) n * sizeof *grown);

        if (!grown) {
            return -ENOMEM;
        }
        memset(grown + r->n_backends, 0, (size_t) (n - r->n_backends) * sizeof *grown);
        rings->stats.bytes_used += (uint64_t) (n - r->n_backends) * sizeof *grown;
        r->backends = grown;
        r->n_backends = n;
    }
    r->backends[index] = *b;
    r->backends[index].pad = 0;
    return 0;
}

int
ps_dp_ring_write(struct ps_dp *dp, uint32_t vip_id, const uint32_t *slots, const uint16_t *values, uint32_t n)
{
    struct ps_rings *rings = ps_dp_rings(dp);
    struct ring *r = ring_of(rings, vip_id);

    if (!r) {
        return -ENOENT;
    }
    /* Check all before writing any: a bad batch changes nothing. */
    for (uint32_t k = 0; k < n; k++) {
        if (slots[k] >= r->size || (values[k] >= PS_RING_MAX_BACKENDS && values[k] != PS_RING_EMPTY)) {
            return -EINVAL;
        }
    }
    for (uint32_t k = 0; k < n; k++) {
        r->slots[slots[k]] = values[k];
    }
    rings->stats.slots_written += n;
    return 0;
}

int
ps_dp_ring_read(struct ps_dp *dp, uint32_t vip_id, uint32_t start, uint16_t *out, uint32_t max_out)
{
    const struct ring *r = ring_of(ps_dp_rings(dp), vip_id);
    uint32_t n;

    if (!r) {
        return -ENOENT;
    }
    if (start >= r->size) {
        return 0;
    }
    n = r->size - start < max_out ? r->size - start : max_out;
    memcpy(out, r->slots + start, (size_t) n * sizeof *out);
    return (int) n;
}

void
ps_dp_ring_get_stats(const struct ps_dp *dp, struct ps_ring_stats *out)
{
    *out = ps_dp_rings(dp)->stats;
}
