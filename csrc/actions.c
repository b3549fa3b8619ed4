/* actions.c: running a flow's action list on one frame (docs/DATAPATH.md, "Actions").
 *
 * The executor changes the frame in place and leaves all copying to its sink:
 * an output whose bytes no later action touches is marked 'stable', so the
 * datapath can queue a pointer to the received frame itself, and only an
 * output followed by a rewrite costs a copy.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "actions.h"
#include "nat.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "tunnel.h"

uint8_t *
ps_frame_clone(struct ps_frame *work, const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet)
{
    uint8_t *buf = malloc((size_t) PS_HEADROOM + size);

    if (!buf) {
        return NULL;
    }
    memcpy(buf + PS_HEADROOM, frame, size);
    work->data = buf + PS_HEADROOM;
    work->size = size;
    if (vnet) {
        work->vnet = *vnet;
    } else {
        memset(&work->vnet, 0, sizeof work->vnet);
    }
    return buf;
}

int
ps_actions_validate(const struct ps_action *actions, uint32_t n_actions)
{
    if (n_actions > PS_MAX_ACTIONS) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n_actions; i++) {
        const struct ps_action *a = &actions[i];

        if (a->type < PS_ACT_OUTPUT || a->type > PS_ACT_DECAP) {
            return -EINVAL;
        }
        if (a->type == PS_ACT_OUTPUT && a->arg >= PS_MAX_PORTS) {
            return -EINVAL;
        }
    }
    return 0;
}

static inline int
action_mutates(uint16_t type)
{
    return type == PS_ACT_SET_ETH_SRC || type == PS_ACT_SET_ETH_DST || type == PS_ACT_PUSH_VLAN
           || type == PS_ACT_POP_VLAN || type == PS_ACT_ROUTE || type == PS_ACT_SET_IPV4_SRC
           || type == PS_ACT_SET_IPV4_DST || type == PS_ACT_SET_TP_SRC || type == PS_ACT_SET_TP_DST
           || type == PS_ACT_LB || type == PS_ACT_LB_REPLY || type == PS_ACT_DECAP;
}

void
ps_vnet_shift(struct ps_vnet_hdr *vnet, int delta)
{
    if (vnet->flags & PS_VNET_F_NEEDS_CSUM) {
        int start = le16toh(vnet->csum_start) + delta;

        vnet->csum_start = htole16(start < 0 ? 0 : start);
    }
    if ((vnet->gso_type & PS_VNET_GSO_TYPE_MASK) && vnet->hdr_len) {
        int hdr_len = le16toh(vnet->hdr_len) + delta;

        vnet->hdr_len = htole16(hdr_len < 0 ? 0 : hdr_len);
    }
}

/* Inserts an 802.1Q tag with 'tci' at offset 12, growing the frame into its
 * headroom.  Frames shorter than an Ethernet header are left alone: the
 * datapath never carries them and a tag has no defined place in them. */
static void
push_vlan(struct ps_frame *frame, uint16_t tci)
{
    if (frame->size >= sizeof(struct ps_eth_hdr)) {
        ps_frame_push_tag(frame, PS_ETH_TYPE_VLAN, tci);
    }
}

void
ps_frame_push_tag(struct ps_frame *frame, uint16_t tpid, uint16_t tci)
{
    uint8_t *data = frame->data - sizeof(struct ps_vlan_hdr);

    memmove(data, frame->data, 2 * PS_ETH_ADDR_LEN);
    data[12] = tpid >> 8;
    data[13] = tpid & 0xff;
    data[14] = tci >> 8;
    data[15] = tci & 0xff;
    frame->data = data;
    frame->size += sizeof(struct ps_vlan_hdr);
    ps_vnet_shift(&frame->vnet, sizeof(struct ps_vlan_hdr));
}

void
ps_frame_pop_tag(struct ps_frame *frame)
{
    uint8_t *data = frame->data;
    uint16_t type;

    if (frame->size < sizeof(struct ps_eth_hdr) + sizeof(struct ps_vlan_hdr)) {
        return;
    }
    type = data[12] << 8 | data[13];
    if (type != PS_ETH_TYPE_VLAN && type != PS_ETH_TYPE_QINQ) {
        return;
    }
    memmove(data + sizeof(struct ps_vlan_hdr), data, 2 * PS_ETH_ADDR_LEN);
    frame->data = data + sizeof(struct ps_vlan_hdr);
    frame->size -= sizeof(struct ps_vlan_hdr);
    ps_vnet_shift(&frame->vnet, -(int) sizeof(struct ps_vlan_hdr));
}

static void
set_eth_addr(struct ps_frame *frame, size_t offset, const uint8_t *addr)
{
    /* Like push_vlan(): a frame without a whole Ethernet header is left alone. */
    if (frame->size >= sizeof(struct ps_eth_hdr)) {
        memcpy(frame->data + offset, addr, PS_ETH_ADDR_LEN);
    }
}

/* Strips the tunnel header of 'frame'; when 'outer_dst' is not NULL, first
 * copies the outer destination there.  Returns false if it is no tunnel. */
static bool
decap(struct ps_frame *frame, uint8_t *outer_dst)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);

    if (outer_dst != NULL && l3 != 0 && frame->size >= l3 + 20) {
        memcpy(outer_dst, frame->data + l3 + 16, 4);
    }
    return ps_tunnel_decap(frame) == 0;
}

void
ps_actions_execute(struct ps_frame *frame, uint16_t in_port, const struct ps_action *actions,
                   uint32_t n_actions, const struct ps_sink *sink)
{
    int last_mutation = -1;
    uint8_t via_buf[4];
    const uint8_t *via = NULL;          /* set by DECAP with PS_DECAP_DELIVER for a later ROUTE */

    /* Outputs after the last rewrite see final bytes and need no copy. */
    for (uint32_t i = 0; i < n_actions; i++) {
        if (action_mutates(actions[i].type)) {
            last_mutation = i;
        }
    }

    for (uint32_t i = 0; i < n_actions; i++) {
        const struct ps_action *a = &actions[i];
        bool stable = (int) i > last_mutation;

        switch (a->type) {
        case PS_ACT_OUTPUT:
            sink->output(sink->ctx, a->arg, frame, stable);
            break;
        case PS_ACT_FLOOD:
            for (uint16_t port = 0; port < PS_MAX_PORTS; port++) {
                if ((a->ports >> port & 1) && port != in_port) {
                    sink->output(sink->ctx, port, frame, stable);
                }
            }
            break;
        case PS_ACT_SET_ETH_SRC:
            set_eth_addr(frame, PS_ETH_ADDR_LEN, a->data);
            break;
        case PS_ACT_SET_ETH_DST:
            set_eth_addr(frame, 0, a->data);
            break;
        case PS_ACT_PUSH_VLAN:
            push_vlan(frame, a->arg);
            break;
        case PS_ACT_POP_VLAN:
            ps_frame_pop_tag(frame);
            break;
        case PS_ACT_SET_IPV4_SRC:
            ps_ipv4_set_addr(frame, PS_NAT_IPV4_SRC, a->data);
            break;
        case PS_ACT_SET_IPV4_DST:
            ps_ipv4_set_addr(frame, PS_NAT_IPV4_DST, a->data);
            break;
        case PS_ACT_SET_TP_SRC:
            ps_l4_set_port(frame, PS_NAT_TP_SRC, a->arg);
            break;
        case PS_ACT_SET_TP_DST:
            ps_l4_set_port(frame, PS_NAT_TP_DST, a->arg);
            break;
        case PS_ACT_UPCALL:
            sink->upcall(sink->ctx, PS_UPCALL_ACTION, a->arg32, frame);
            break;
        case PS_ACT_ROUTE:
            /* The routed frame's output comes after ROUTE's own rewrite, so
             * it is final unless a later action rewrites it again. */
            if (!sink->route(sink->ctx, frame, via, (int) i >= last_mutation)) {
                return;
            }
            break;
        case PS_ACT_LB:
        case PS_ACT_LB_REPLY:
            /* Like ROUTE: the output comes after the action's own rewrite. */
            if (!sink->lb(sink->ctx, frame, a, (int) i >= last_mutation)) {
                return;
            }
            break;
        case PS_ACT_DECAP:
            if (!decap(frame, a->arg & PS_DECAP_DELIVER ? via_buf : NULL)) {
                sink->drop(sink->ctx, PS_DROP_DECAP);
                return;
            }
            if (a->arg & PS_DECAP_DELIVER) {
                via = via_buf;
            }
            break;
        default:
            break;
        }
    }
}

/* ps_actions_apply()'s sink: outputs go back to back into caller arrays. */
struct apply_ctx {
    uint8_t *out_buf;               /* where the next output's bytes go */
    uint32_t out_buf_left;          /* room left there */
    uint16_t *out_ports;            /* per output: port, PS_UPCALL_PORT for an upcall */
    uint32_t *out_sizes;            /* per output: bytes */
    struct ps_vnet_hdr *out_vnets;  /* per output: vnet header */
    uint32_t *out_userdata;         /* per output: UPCALL userdata, else 0 */
    uint32_t n_outputs;             /* outputs stored */
    uint32_t max_outputs;           /* room in the per-output arrays */
    bool overflow;                  /* an output did not fit */
};

static void
apply_emit(struct apply_ctx *ctx, uint16_t port, uint32_t userdata, const struct ps_frame *frame)
{
    uint32_t i = ctx->n_outputs;

    if (ctx->overflow || i >= ctx->max_outputs || frame->size > ctx->out_buf_left) {
        ctx->overflow = true;
        return;
    }
    memcpy(ctx->out_buf, frame->data, frame->size);
    ctx->out_buf += frame->size;
    ctx->out_buf_left -= frame->size;
    ctx->out_ports[i] = port;
    ctx->out_sizes[i] = frame->size;
    ctx->out_vnets[i] = frame->vnet;
    ctx->out_userdata[i] = userdata;
    ctx->n_outputs++;
}

static void
apply_output(void *ctx, uint16_t port, const struct ps_frame *frame, bool stable)
{
    apply_emit(ctx, port, 0, frame);
}

static void
apply_upcall(void *ctx, uint16_t reason, uint32_t userdata, const struct ps_frame *frame)
{
    apply_emit(ctx, PS_UPCALL_PORT, userdata, frame);
}

/* Without routing tables a ROUTE can only ask the slow path: an UPCALL-style
 * output with userdata 0, after which the list ends as after any ROUTE that
 * upcalls. */
static bool
apply_route(void *ctx, struct ps_frame *frame, const uint8_t *via, bool stable)
{
    apply_emit(ctx, PS_UPCALL_PORT, 0, frame);
    return false;
}

/* Without a connection table LB can only ask the slow path, as a missed
 * lookup does: an UPCALL-style output with the VIP id as userdata.  LB_REPLY
 * routes, so it asks as ROUTE does here (userdata 0).  Either ends the list. */
static bool
apply_lb(void *ctx, struct ps_frame *frame, const struct ps_action *action, bool stable)
{
    apply_emit(ctx, PS_UPCALL_PORT, action->type == PS_ACT_LB ? action->arg32 : 0, frame);
    return false;
}

/* ps_actions_apply() keeps no counters: a refused frame just has no output. */
static void
apply_drop(void *ctx, enum ps_drop_reason reason)
{
}

/* Runs 'actions' on a copy of the 'size' bytes at 'frame' (with 'vnet',
 * all zero if NULL) as if it arrived on 'in_port'.  Returns the number of
 * outputs, -1 if they did not fit in 'out_buf' or 'max_outputs', -EINVAL if
 * ps_ft_put() would refuse the action list, -ENOMEM. */
int
ps_actions_apply(const uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet, uint16_t in_port,
                 const struct ps_action *actions, uint32_t n_actions,
                 uint8_t *out_buf, uint32_t out_buf_size, uint16_t *out_ports, uint32_t *out_sizes,
                 struct ps_vnet_hdr *out_vnets, uint32_t *out_userdata, uint32_t max_outputs)
{
    struct apply_ctx ctx = {
        .out_buf = out_buf, .out_buf_left = out_buf_size, .out_ports = out_ports, .out_sizes = out_sizes,
        .out_vnets = out_vnets, .out_userdata = out_userdata, .max_outputs = max_outputs,
    };
    struct ps_sink sink = {
        .output = apply_output, .upcall = apply_upcall, .route = apply_route, .lb = apply_lb, .drop = apply_drop,
        .ctx = &ctx,
    };
    struct ps_frame work;
    uint8_t *buf;

    if (ps_actions_validate(actions, n_actions)) {
        return -EINVAL;
    }
    buf = ps_frame_clone(&work, frame, size, vnet);
    if (!buf) {
        return -ENOMEM;
    }
    ps_actions_execute(&work, in_port, actions, n_actions, &sink);
    free(buf);
    return ctx.overflow ? -1 : (int) ctx.n_outputs;
}
