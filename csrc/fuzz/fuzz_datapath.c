/* fuzz_datapath.c: libFuzzer target for one frame's way through a datapath.
 *
 * One datapath with N_PORTS memory ports is built once: a flow per input
 * port (matching the port only, so any frame hits it) runs one action list
 * of flow_actions[] below (OUTPUT, FLOOD, UPCALL, VLAN push and pop, MAC
 * and NAT rewrites, ROUTE through connected, gateway, local and blackhole
 * next hops, LB to a VIP with a Maglev ring and to one without, LB_REPLY,
 * DECAP), and one port has no flow (a miss).  Each input is one frame,
 * injected into a port and run, or executed with an action list of its own
 * (ps_dp_execute()); the connection table may first get the frame's own
 * connection in any mode, or one whose reply the frame is, so that LB and
 * LB_REPLY find it.  Every output is then taken and handed to the transmit
 * offloads an AF_XDP port applies (ps_offload_csum(), ps_gso_plan(),
 * ps_gso_segment()).  Connections and queues are emptied before each input,
 * so that an input replays alike.
 *
 * Input:
 *   byte 0   the input port (mod N_SELECT); EXECUTE_SELECT and above: ps_dp_execute()
 *   byte 1   flags: F_VNET, F_RX_CSUM, F_CONN_MODE (3 bits: 0 none, else PS_CONN_*), F_REPLY_CONN, F_EXPIRE
 *   execute: 1 byte n_actions (mod PS_MAX_ACTIONS + 1), then 4 bytes an action (type, arg high, arg low, param)
 *   F_VNET:  10 bytes of struct ps_vnet_hdr (little-endian, as the kernel gives it)
 *   the rest the frame
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "nat.h"
#include "ps_consts.h"
#include "ps_hdrs.h"
#include "pyswitch.h"

#define N_PORTS 16               /* memory ports 0..15 */
#define MISS_PORT 13             /* the port without a flow */
#define N_SELECT 16              /* byte 0 below this: the input port */
#define EXECUTE_SELECT 16        /* byte 0 from this: ps_dp_execute() */
#define MAX_CONNS 64             /* a small table, so that scheduling evicts */
#define MAX_SEGS_CUT 8           /* GSO segments cut per output */
#define NOW_MS 1000000           /* every input runs at this time */
#define VIP_RING 1               /* LB to it: scheduled by its Maglev ring */
#define VIP_NO_RING 2            /* LB to it: only connections the input adds */
#define TAKE_SIZE (PS_FRAME_MAX + PS_HEADROOM)

#define F_VNET 0x01              /* a vnet header follows */
#define F_RX_CSUM 0x02           /* recognise a partial checksum first, as an AF_XDP port's receive does */
#define F_CONN_SHIFT 2           /* 3 bits: the mode of the frame's own connection, 0: none */
#define F_REPLY_CONN 0x20        /* a nat (fullnat with F_CONN_FULL) connection whose reply the frame is */
#define F_CONN_FULL 0x40         /* ...fullnat */
#define F_EXPIRE 0x80            /* expire the connections a day later: every one goes, with events */

static const uint8_t MAC_A[6] = { 0x02, 0, 0, 0, 0, 0x0a };
static const uint8_t MAC_SW[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t IP_SW[4] = { 192, 0, 2, 1 };
static const uint8_t IP_BACKEND[4] = { 198, 51, 100, 11 };
static const uint8_t IP_TUNNEL_END[4] = { 192, 0, 2, 7 };
static const uint8_t IP_VIP[4] = { 203, 0, 113, 1 };

#define ACT(t, ...) { .type = PS_ACT_##t, __VA_ARGS__ }

/* The flow of each input port. */
static const struct ps_action flow_actions[N_PORTS][PS_MAX_ACTIONS] = {
    [0] = { ACT(OUTPUT, .arg = 1) },
    [1] = { ACT(OUTPUT, .arg = 2), ACT(PUSH_VLAN, .arg = 10), ACT(OUTPUT, .arg = 3), ACT(PUSH_VLAN, .arg = 0x2014),
            ACT(OUTPUT, .arg = 4), ACT(POP_VLAN), ACT(POP_VLAN), ACT(POP_VLAN), ACT(OUTPUT, .arg = 5) },
    [2] = { ACT(POP_VLAN), ACT(SET_ETH_DST, .data = { 0x02, 0, 0, 0, 0, 0x0b }),
            ACT(SET_ETH_SRC, .data = { 0x02, 0, 0, 0, 0, 0x0c }), ACT(OUTPUT, .arg = 0) },
    [3] = { ACT(ROUTE) },
    [4] = { ACT(SET_IPV4_SRC, .data = { 192, 0, 2, 99 }), ACT(OUTPUT, .arg = 6),
            ACT(SET_IPV4_DST, .data = { 198, 51, 100, 99 }), ACT(SET_TP_SRC, .arg = 40000),
            ACT(SET_TP_DST, .arg = 0), ACT(OUTPUT, .arg = 5) },
    [5] = { ACT(LB, .arg32 = VIP_RING), ACT(OUTPUT, .arg = 7) },
    [6] = { ACT(LB, .arg32 = VIP_NO_RING) },
    [7] = { ACT(LB_REPLY), ACT(PUSH_VLAN, .arg = 30), ACT(OUTPUT, .arg = 8) },
    [8] = { ACT(DECAP), ACT(ROUTE) },
    [9] = { ACT(DECAP, .arg = PS_DECAP_DELIVER), ACT(ROUTE), ACT(OUTPUT, .arg = 9) },
    [10] = { ACT(FLOOD, .ports = 0xffff), ACT(UPCALL, .arg32 = 77) },
    [11] = { ACT(ROUTE), ACT(PUSH_VLAN, .arg = 40), ACT(SET_IPV4_DST, .data = { 192, 0, 2, 5 }),
             ACT(OUTPUT, .arg = 2), ACT(OUTPUT, .arg = 63) },
    [12] = { ACT(PUSH_VLAN, .arg = 50), ACT(PUSH_VLAN, .arg = 60), ACT(PUSH_VLAN, .arg = 70),
             ACT(LB, .arg32 = VIP_RING), ACT(LB_REPLY), ACT(DECAP), ACT(ROUTE) },
    /* [13]: no flow */
    [14] = { ACT(SET_TP_SRC, .arg = 1), ACT(SET_IPV4_DST, .data = { 203, 0, 113, 1 }), ACT(LB, .arg32 = VIP_NO_RING),
             ACT(OUTPUT, .arg = 1) },
    [15] = { ACT(UPCALL, .arg32 = 1), ACT(POP_VLAN), ACT(UPCALL, .arg32 = 2) },
};

/* What an executed action's param byte picks for data: addresses and MACs. */
static const uint8_t param_data[8][6] = {
    { 192, 0, 2, 1 }, { 198, 51, 100, 11 }, { 203, 0, 113, 1 }, { 0, 0, 0, 0 },
    { 255, 255, 255, 255 }, { 0x02, 0, 0, 0, 0, 0x0a }, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, { 127, 0, 0, 1 },
};

static struct ps_dp *dp;
static uint8_t *take_buf;

static void
must(int ok)
{
    FUZZ_CHECK(ok);
}

static void
add_nexthop(uint32_t id, uint8_t kind, uint16_t vlan, const uint8_t *gateway)
{
    struct ps_nexthop nh = { .kind = kind, .vlan = vlan };

    if (gateway) {
        memcpy(nh.gateway, gateway, 4);
    }
    memcpy(nh.src_mac, MAC_SW, 6);
    must(ps_dp_nexthop_set(dp, id, &nh) == 0);
}

static void
add_route(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t plen, uint32_t nh_id)
{
    const uint8_t prefix[4] = { a, b, c, d };

    must(ps_dp_route_add(dp, prefix, plen, nh_id) == 0);
}

static void
add_neigh(uint16_t vlan, uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port, uint16_t out_tci)
{
    uint8_t addr[16] = { a, b, c, d };
    struct ps_neigh neigh = { .port = port, .out_tci = out_tci };

    memcpy(neigh.mac, MAC_A, 6);
    neigh.mac[5] = d;
    must(ps_dp_neigh_set(dp, vlan, addr, &neigh) == 0);
}

/* Routes toward the test networks the seed captures use: 198.51.100.0/24 connected on VLAN 0 (every host
 * resolved), 192.0.2.0/24 connected on VLAN 20 (half resolved, tagged), 203.0.113.0/24 through a resolved
 * gateway on VLAN 10, the switch's own 192.0.2.1, a blackholed 198.18.0.0/15 and a default route through a
 * gateway nobody resolved. */
static void
add_routing(void)
{
    static const uint8_t gw_resolved[4] = { 198, 51, 100, 254 };
    static const uint8_t gw_unresolved[4] = { 198, 51, 100, 253 };

    add_nexthop(1, PS_NH_CONNECTED, 0, NULL);
    add_nexthop(2, PS_NH_GATEWAY, 10, gw_resolved);
    add_nexthop(3, PS_NH_CONNECTED, 20, NULL);
    add_nexthop(4, PS_NH_LOCAL, 0, NULL);
    add_nexthop(5, PS_NH_BLACKHOLE, 0, NULL);
    add_nexthop(6, PS_NH_GATEWAY, 0, gw_unresolved);
    add_route(198, 51, 100, 0, 24, 1);
    add_route(203, 0, 113, 0, 24, 2);
    add_route(192, 0, 2, 0, 24, 3);
    add_route(192, 0, 2, 1, 32, 4);
    add_route(198, 18, 0, 0, 15, 5);
    add_route(0, 0, 0, 0, 0, 6);
    add_route(203, 0, 113, 128, 25, 1);      /* a route longer than /24, and a next hop of another VLAN */
    for (int host = 0; host < 256; host++) {
        add_neigh(0, 198, 51, 100, host, host % N_PORTS, 0);
        if (host % 2) {
            add_neigh(20, 192, 0, 2, host, (host + 3) % N_PORTS, 20 | (host % 8) << 13);
        }
    }
    add_neigh(10, 198, 51, 100, 254, 2, 10);
}

/* VIP_RING's ring: one backend of each mode the datapath schedules, and empty slots. */
static void
add_ring(void)
{
    static const uint32_t slots[] = { 0, 1, 2, 3, 4, 5, 6 };
    static const uint16_t values[] = { 0, 1, 2, 3, PS_RING_EMPTY, 0, 2 };
    static const uint8_t modes[] = { PS_CONN_NAT, PS_CONN_DSR, PS_CONN_IPIP, PS_CONN_GRE };

    must(ps_dp_ring_config(dp, VIP_RING, 7) == 0);
    for (uint32_t i = 0; i < sizeof modes; i++) {
        struct ps_ring_backend b = { .port = 8080, .mode = modes[i], .backend_id = 100 + i };

        memcpy(b.address, modes[i] == PS_CONN_NAT || modes[i] == PS_CONN_DSR ? IP_BACKEND : IP_TUNNEL_END, 4);
        memcpy(b.tunnel_src, IP_SW, 4);
        must(ps_dp_ring_backend_set(dp, VIP_RING, i, &b) == 0);
    }
    must(ps_dp_ring_write(dp, VIP_RING, slots, values, 7) == 0);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct ps_flow_key key = { 0 }, mask = { 0 };

    dp = ps_dp_new(1024, 256, 64);
    take_buf = malloc(TAKE_SIZE);
    must(dp && take_buf);
    for (uint16_t p = 0; p < N_PORTS; p++) {
        /* Port 0 bounds its frames as an AF_PACKET port of MTU 1500 does. */
        must(ps_dp_port_add(dp, p, PS_PORT_MEMORY, -1, 0, p == 0 ? 1514 : 0) == 0);
    }
    memset(mask.in_port, 0xff, sizeof mask.in_port);
    for (uint16_t p = 0; p < N_PORTS; p++) {
        uint32_t n = 0;

        if (p == MISS_PORT) {
            continue;
        }
        while (n < PS_MAX_ACTIONS && flow_actions[p][n].type) {
            n++;
        }
        ps_be16_store(key.in_port, p);
        must(ps_ft_put(ps_dp_flowtable(dp), &key, &mask, 1, flow_actions[p], n, 0, p, 0) == 0);
    }
    add_routing();
    add_ring();
    must(ps_dp_conn_config(dp, MAX_CONNS, NULL) == 0);
    return 0;
}

/* The TCP/UDP tuple of an IPv4 frame, found the way LB finds it; false if it has none. */
static bool
frame_tuple(const uint8_t *frame, uint32_t size, struct ps_conn_tuple *t)
{
    uint32_t l3 = ps_ipv4_offset(frame, size), l4;

    if (!l3 || (frame[l3 + 9] != PS_IPPROTO_TCP && frame[l3 + 9] != PS_IPPROTO_UDP)) {
        return false;
    }
    l4 = l3 + (frame[l3] & 0xf) * 4;
    if (l4 + 8 > size) {
        return false;
    }
    memset(t, 0, sizeof *t);
    t->proto = frame[l3 + 9];
    memcpy(t->src, frame + l3 + 12, 4);
    memcpy(t->dst, frame + l3 + 16, 4);
    memcpy(t->sport, frame + l4, 2);
    memcpy(t->dport, frame + l4 + 2, 2);
    return true;
}

/* Adds the frame's own connection in 'mode' (PS_CONN_*; others are refused, as they must be), and with
 * F_REPLY_CONN one whose reply it is. */
static void
add_conns(const struct ps_conn_tuple *t, uint8_t mode, uint8_t flags)
{
    struct ps_conn c = { .client = *t, .mode = mode, .vip_id = VIP_NO_RING, .backend_id = 7 };

    c.state = t->proto == PS_IPPROTO_TCP ? PS_CS_ESTABLISHED : PS_CS_UDP;
    if (mode == PS_CONN_NAT || mode == PS_CONN_FULLNAT) {
        c.reply.proto = t->proto;
        memcpy(c.reply.src, IP_BACKEND, 4);
        memcpy(c.reply.dst, mode == PS_CONN_FULLNAT ? IP_SW : t->src, 4);
        ps_be16_store(c.reply.sport, 8080);
        if (mode == PS_CONN_FULLNAT) {
            ps_be16_store(c.reply.dport, 40001);
        } else {
            memcpy(c.reply.dport, t->sport, 2);
        }
    } else {
        memcpy(c.backend, mode == PS_CONN_DSR ? IP_BACKEND : IP_TUNNEL_END, 4);
        memcpy(c.tunnel_src, IP_SW, 4);
    }
    if (mode) {
        ps_dp_conn_add(dp, &c, NOW_MS);
    }
    if (flags & F_REPLY_CONN) {
        struct ps_conn r = { .reply = *t, .mode = flags & F_CONN_FULL ? PS_CONN_FULLNAT : PS_CONN_NAT,
                             .state = c.state, .vip_id = VIP_NO_RING, .backend_id = 8 };

        r.client.proto = t->proto;
        memcpy(r.client.src, (flags & F_CONN_FULL) ? (const uint8_t[]) { 198, 51, 100, 77 } : t->dst, 4);
        memcpy(r.client.dst, IP_VIP, 4);
        memcpy(r.client.sport, t->dport, 2);
        ps_be16_store(r.client.dport, 80);
        ps_dp_conn_add(dp, &r, NOW_MS);
    }
}

/* Removes every connection and event, so that the next input starts alike. */
static void
reset_conns(void)
{
    struct ps_conn conns[MAX_CONNS];
    struct ps_conn_event events[64];
    uint32_t next, n;

    while ((n = ps_dp_conn_dump(dp, 0, conns, MAX_CONNS, &next)) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            FUZZ_CHECK(ps_dp_conn_del(dp, &conns[i].client) == 1);
        }
    }
    while (ps_dp_conn_events(dp, events, 64) > 0) {
    }
}

/* What an AF_XDP port does to an output before it leaves: cut a GSO frame, or complete a partial checksum. */
static void
transmit_offloads(uint8_t *frame, uint32_t size, const struct ps_vnet_hdr *vnet)
{
    if (vnet->gso_type & PS_VNET_GSO_TYPE_MASK) {
        struct ps_gso gso;

        if (ps_gso_plan(frame, size, vnet, &gso) != 0) {
            return;
        }
        FUZZ_CHECK(gso.hdr_size <= size && gso.n_segs >= 1);
        for (uint32_t k = 0; k < gso.n_segs; k++) {
            uint32_t room = gso.hdr_size + gso.seg_payload;
            uint8_t *seg;

            if (k == MAX_SEGS_CUT / 2 && gso.n_segs > MAX_SEGS_CUT) {
                k = gso.n_segs - MAX_SEGS_CUT / 2;
            }
            seg = malloc(room);
            FUZZ_CHECK(ps_gso_segment(frame, &gso, k, seg) <= room);
            free(seg);
        }
    } else if (vnet->flags & PS_VNET_F_NEEDS_CSUM) {
        ps_offload_csum(frame, size, vnet);
    }
}

/* Takes every output of every port; checks what the contract bounds. */
static void
take_outputs(uint32_t in_size)
{
    for (uint16_t p = 0; p < N_PORTS; p++) {
        struct ps_vnet_hdr vnet;
        int n;

        while ((n = ps_dp_mem_take(dp, p, take_buf, TAKE_SIZE, &vnet)) >= 0) {
            /* Actions only grow a frame into its headroom. */
            FUZZ_CHECK((uint32_t) n <= in_size + PS_HEADROOM);
            transmit_offloads(take_buf, n, &vnet);
        }
        FUZZ_CHECK(n == -EAGAIN);
    }
}

static void
check_upcalls(uint32_t in_size)
{
    struct ps_upcall *ups;
    uint32_t n = ps_dp_upcalls(dp, &ups);

    for (uint32_t i = 0; i < n; i++) {
        FUZZ_CHECK(ups[i].size <= in_size + PS_HEADROOM && ups[i].data != NULL);
        FUZZ_CHECK(ups[i].reason <= PS_UPCALL_CONN_MISS);
        if (ups[i].size) {
            /* Read every byte, so ASan sees one the arena does not hold. */
            FUZZ_CHECK(ps_csum(ups[i].data, ups[i].size, 0) <= 0xffff);
        }
    }
}

/* An action from 4 input bytes: any type (unknown ones are skipped), any argument, data and ports by 'param'. */
static struct ps_action
decode_action(const uint8_t *b)
{
    struct ps_action a = { .type = b[0] % 17, .arg = ps_be16_load(b + 1) };

    if (a.type == PS_ACT_OUTPUT) {
        a.arg %= PS_MAX_PORTS + 8;           /* now and then a port that does not exist */
    }
    a.arg32 = b[3] % 4;                      /* VIP ids 0..3: with a ring, without, unknown */
    memcpy(a.data, param_data[b[3] % 8], 6);
    a.ports = (uint64_t) b[3] << (b[3] % 48);
    return a;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ps_action actions[PS_MAX_ACTIONS];
    struct ps_vnet_hdr vnet = { 0 };
    struct ps_conn_tuple tuple;
    struct ps_dp_stats before, after;
    uint32_t n_actions = 0;
    uint8_t select, flags;
    bool execute;

    if (size < 2) {
        return 0;
    }
    select = data[0];
    flags = data[1];
    data += 2;
    size -= 2;
    execute = select >= EXECUTE_SELECT;
    if (execute) {
        if (size < 1) {
            return 0;
        }
        n_actions = data[0] % (PS_MAX_ACTIONS + 1);
        data++;
        size--;
        if (size < 4 * n_actions) {
            return 0;
        }
        for (uint32_t i = 0; i < n_actions; i++) {
            actions[i] = decode_action(data + 4 * i);
        }
        data += 4 * n_actions;
        size -= 4 * n_actions;
    }
    if (flags & F_VNET) {
        if (size < PS_VNET_HDR_SIZE) {
            return 0;
        }
        memcpy(&vnet, data, PS_VNET_HDR_SIZE);
        data += PS_VNET_HDR_SIZE;
        size -= PS_VNET_HDR_SIZE;
    }
    if (size > PS_FRAME_MAX) {
        return 0;
    }
    if (flags & F_RX_CSUM) {
        ps_offload_rx_csum(data, size, &vnet);
    }
    reset_conns();
    ps_dp_run(dp, NOW_MS);                   /* no frame waits: only forgets the last input's upcalls */
    if (frame_tuple(data, size, &tuple)) {
        add_conns(&tuple, (flags >> F_CONN_SHIFT) & 7, flags);
    }

    ps_dp_get_stats(dp, &before);
    if (execute) {
        FUZZ_CHECK(ps_dp_execute(dp, select % N_PORTS, data, size, &vnet, actions, n_actions, NOW_MS) == 0);
        check_upcalls(size);
    } else {
        FUZZ_CHECK(ps_dp_mem_inject(dp, select % N_SELECT, data, size, &vnet) == 0);
        FUZZ_CHECK(ps_dp_run(dp, NOW_MS) == 1);
        ps_dp_get_stats(dp, &after);
        FUZZ_CHECK(after.rx_packets == before.rx_packets + 1);
        check_upcalls(size);
    }
    take_outputs(size);
    if (flags & F_EXPIRE) {
        ps_dp_conn_expire(dp, NOW_MS + 86400000);
        FUZZ_CHECK(ps_dp_conn_dump(dp, 0, (struct ps_conn[1]) { 0 }, 1, (uint32_t[1]) { 0 }) == 0);
    }
    return 0;
}
