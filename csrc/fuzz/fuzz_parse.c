/* fuzz_parse.c: libFuzzer target for the code that reads a frame's headers on its own.
 *
 * Input: one Ethernet frame, all of it (tests/fuzz/corpus/fuzz_parse/ holds real captures).
 *
 * It runs ps_parse() as every port would call it (no bound, a 1514-byte
 * bound, a GSO super-frame), ps_ipv4_offset() (what NAT, ROUTE and the
 * tunnels use to find IPv4), ps_csum() against a plain reference,
 * ps_offload_rx_csum() and ps_offload_csum(), and ps_gso_plan() with every
 * GSO type, cutting each plan into its segments.  Besides memory errors and
 * undefined behaviour it checks what the callers rely on: offsets inside the
 * frame, ps_ipv4_offset() agreeing with the parser, a NEEDS_CSUM mark whose
 * field completion accepts, and segments that fit the room the plan names,
 * parse as ordinary frames and carry checksums that verify.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "nat.h"
#include "ps_hdrs.h"
#include "pyswitch.h"

#define MAX_SEGS_CUT 16          /* a plan's first and last segments cut per input: enough, and fast */

/* The one's complement sum of a TCP/UDP segment's pseudo-header ('l3' is its IP header). */
static uint32_t
pseudo_sum(const uint8_t *l3, int ipv4, uint8_t proto, uint32_t l4_size)
{
    const uint8_t *addrs = l3 + (ipv4 ? 12 : 8);
    uint32_t sum = proto + (l4_size >> 16) + (l4_size & 0xffff);

    for (int i = 0; i < (ipv4 ? 8 : 32); i += 2) {
        sum += ps_be16_load(addrs + i);
    }
    return sum;
}

static void
check_parse(const uint8_t *data, uint32_t size, uint32_t max_frame, int is_gso)
{
    struct ps_flow_key key;
    struct ps_parse_result result;
    uint16_t error = ps_parse(data, size, 7, max_frame, is_gso, &key, &result);
    static const uint8_t zero[2];

    FUZZ_CHECK(error < PS_PE_COUNT && error == result.error);
    FUZZ_CHECK(!memcmp(key.pad0, zero, 2) && !memcmp(key.pad1, zero, 2) && result.pad == 0);
    FUZZ_CHECK(ps_be16_load(key.in_port) == 7);
    if (error != PS_PE_OK) {
        return;
    }
    FUZZ_CHECK(result.l3_ofs < size && result.l4_ofs < size);
    FUZZ_CHECK(!result.l4_ofs || result.l4_ofs > result.l3_ofs);
    if (result.l3_ofs && ps_be16_load(key.eth_type) == PS_ETH_TYPE_IP) {
        FUZZ_CHECK(ps_ipv4_offset(data, size) == result.l3_ofs);
    }
}

/* Completes a checksum ps_offload_rx_csum() marked, on a copy. */
static void
check_rx_csum(const uint8_t *data, uint32_t size)
{
    struct ps_vnet_hdr vnet = { 0 };
    uint8_t *copy;

    ps_offload_rx_csum(data, size, &vnet);
    if (!(vnet.flags & PS_VNET_F_NEEDS_CSUM)) {
        return;
    }
    FUZZ_CHECK(vnet.csum_start < size && vnet.gso_type == 0);
    copy = malloc(size);
    memcpy(copy, data, size);
    FUZZ_CHECK(ps_offload_csum(copy, size, &vnet) == 0);
    free(copy);
}

/* Checks segment 'index' of the plan 'gso' of the 'size'-byte frame at 'data'. */
static void
check_segment(const uint8_t *data, uint32_t size, const struct ps_gso *gso, uint32_t index)
{
    uint32_t room = gso->hdr_size + gso->seg_payload;
    uint8_t *out = malloc(room);     /* exactly the room the contract names: ASan sees a byte more */
    uint32_t seg_size = ps_gso_segment(data, gso, index, out);
    struct ps_flow_key key;
    struct ps_parse_result result;
    uint32_t l4_size = seg_size - gso->l4_ofs;
    const uint8_t *l3 = out + gso->l3_ofs;

    FUZZ_CHECK(seg_size > gso->hdr_size || (seg_size == gso->hdr_size && gso->payload == 0));
    FUZZ_CHECK(seg_size <= room);
    FUZZ_CHECK(ps_parse(out, seg_size, 0, 0, 0, &key, &result) == PS_PE_OK);
    FUZZ_CHECK(result.l3_ofs == gso->l3_ofs && result.l4_ofs == gso->l4_ofs && key.nw_proto == gso->proto);
    if (gso->ipv4) {
        FUZZ_CHECK(ps_csum(l3, (l3[0] & 0xf) * 4, 0) == 0);
    }
    FUZZ_CHECK(ps_csum(out + gso->l4_ofs, l4_size, pseudo_sum(l3, gso->ipv4, gso->proto, l4_size)) == 0);
    free(out);
}

static void
check_gso(const uint8_t *data, uint32_t size, uint8_t gso_type, uint16_t gso_size)
{
    struct ps_vnet_hdr vnet = { .gso_type = gso_type, .gso_size = gso_size };
    struct ps_gso gso;

    if (ps_gso_plan(data, size, &vnet, &gso) != 0) {
        return;
    }
    FUZZ_CHECK(gso.l3_ofs < gso.l4_ofs && gso.l4_ofs < gso.hdr_size && gso.hdr_size <= size);
    FUZZ_CHECK(gso.payload == size - gso.hdr_size && gso.seg_payload == gso_size && gso.n_segs >= 1);
    FUZZ_CHECK((uint64_t) gso.n_segs * gso.seg_payload >= gso.payload);
    FUZZ_CHECK(gso.n_segs == 1 || (uint64_t) (gso.n_segs - 1) * gso.seg_payload < gso.payload);
    for (uint32_t k = 0; k < gso.n_segs; k++) {
        if (k == MAX_SEGS_CUT / 2 && gso.n_segs > MAX_SEGS_CUT) {
            k = gso.n_segs - MAX_SEGS_CUT / 2;
        }
        check_segment(data, size, &gso, k);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t gso_types[] = { PS_VNET_GSO_TCPV4, PS_VNET_GSO_TCPV6, PS_VNET_GSO_UDP_L4,
                                         PS_VNET_GSO_UDP, PS_VNET_GSO_TCPV4 | 0x80 };
    uint16_t gso_size;

    if (size > PS_FRAME_MAX) {
        return 0;
    }
    check_parse(data, size, 0, 0);
    check_parse(data, size, 1514, 0);
    check_parse(data, size, 0, 1);
    FUZZ_CHECK(ps_csum(data, size, 0) == fuzz_csum_reference(data, size, 0));
    FUZZ_CHECK(ps_csum(data, size, 0xfffffffe) == fuzz_csum_reference(data, size, 0xfffffffe));
    check_rx_csum(data, size);
    /* The segment size comes from the frame's last two bytes, so the fuzzer can steer it, as a sender's MSS;
     * a real MSS besides. */
    gso_size = size >= 2 ? ps_be16_load(data + size - 2) : 0;
    for (size_t i = 0; i < sizeof gso_types; i++) {
        check_gso(data, size, gso_types[i], gso_size);
        check_gso(data, size, gso_types[i], 1448);
    }
    return 0;
}
