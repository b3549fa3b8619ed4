/* splice.c: the per-segment rewrite of a spliced TCP connection (docs/L7.md).
 *
 * After delayed binding the switch has two TCP connections that it joins:
 * client <-> switch (whose ISN the switch chose, as a SYN cookie) and
 * switch <-> backend (whose ISN the backend chose).  From then on each
 * segment keeps its payload and is translated between the two number
 * spaces: its sequence number by the sender's delta, its acknowledgement
 * number and SACK edges (which name the receiver's bytes) by the receiver's,
 * its TSval (the sender's clock) and TSecr (the receiver's clock, echoed) by
 * their deltas.  All arithmetic is modulo 2^32, as TCP's is.
 *
 * Every changed 16-bit word is folded into the TCP checksum with RFC 1624's
 * update, so the payload is never summed.  Options need not lie on 4-byte
 * boundaries (NOPs are optional), so a field is updated through the aligned
 * words that cover it, which is right at any offset.  A frame whose checksum
 * the kernel completes (vnet NEEDS_CSUM at the TCP header) holds only the
 * pseudo-header's sum: the header words are summed later with the data, so
 * only an address change touches it (nat.c).
 */
#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "actions.h"
#include "nat.h"
#include "ps_hdrs.h"
#include "pyswitch.h"
#include "splice.h"

#define IP_FRAG_OFS offsetof(struct ps_ip_hdr, ip_frag_off)
#define IP_PROTO_OFS offsetof(struct ps_ip_hdr, ip_proto)
#define TCP_SEQ_OFS offsetof(struct ps_tcp_hdr, tcp_seq)
#define TCP_ACK_OFS offsetof(struct ps_tcp_hdr, tcp_ack)
#define TCP_CTL_OFS offsetof(struct ps_tcp_hdr, tcp_ctl)
#define TCP_CSUM_OFS offsetof(struct ps_tcp_hdr, tcp_csum)
#define TCP_FLAG_ACK 0x10
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_SACK 5
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10
#define TCPOLEN_SACK_BLOCK 8
#define SACK_MAX_BLOCKS 4        /* 2 + 4 * 8 = 34 bytes: the most the 40 option bytes hold */

static inline void
be32_store(uint8_t *p, uint32_t value)
{
    p[0] = value >> 24;
    p[1] = value >> 16 & 0xff;
    p[2] = value >> 8 & 0xff;
    p[3] = value & 0xff;
}

/* One TCP segment as the rewrite sees it. */
struct splice_seg {
    uint8_t *tcp;                /* the TCP header */
    uint32_t hdr_len;            /* data offset * 4: header and options */
    bool partial;                /* the kernel completes the checksum: header changes need no update */
};

/* Adds 'delta' to the 32-bit big-endian field at 'ofs' of the TCP header and
 * folds the change into its checksum.  The checksum sums 16-bit words from
 * the header's start, so the words covering [ofs, ofs + 4) are updated: two
 * when 'ofs' is even, three (one byte of each neighbour unchanged) when odd. */
static void
seg_add32(const struct splice_seg *seg, uint32_t ofs, uint32_t delta)
{
    uint8_t *field = seg->tcp + ofs;
    uint32_t start = ofs & ~1u;
    uint32_t end = (ofs + 4 + 1) & ~1u;
    uint8_t old[6];
    uint16_t check;

    if (!delta) {
        return;
    }
    memcpy(old, seg->tcp + start, end - start);
    be32_store(field, ps_be32_load(field) + delta);
    if (seg->partial) {
        return;
    }
    check = ps_be16_load(seg->tcp + TCP_CSUM_OFS);
    for (uint32_t w = start; w < end; w += 2) {
        check = ps_csum_update16(check, ps_be16_load(old + (w - start)), ps_be16_load(seg->tcp + w));
    }
    ps_be16_store(seg->tcp + TCP_CSUM_OFS, check);
}

/* Returns true if the options of 'seg' are well formed: every option but EOL
 * and NOP has a length of at least 2 within the header, a SACK holds 1 to 4
 * whole blocks, a timestamp is 10 bytes.  Parsing stops at EOL; what follows
 * it is padding. */
static bool
options_valid(const struct splice_seg *seg)
{
    uint32_t ofs = sizeof(struct ps_tcp_hdr);

    while (ofs < seg->hdr_len) {
        uint8_t kind = seg->tcp[ofs];
        uint8_t len;

        if (kind == TCPOPT_EOL) {
            return true;
        }
        if (kind == TCPOPT_NOP) {
            ofs++;
            continue;
        }
        if (ofs + 2 > seg->hdr_len) {
            return false;
        }
        len = seg->tcp[ofs + 1];
        if (len < 2 || ofs + len > seg->hdr_len) {
            return false;
        }
        if (kind == TCPOPT_SACK
            && ((len - 2) % TCPOLEN_SACK_BLOCK || len < 2 + TCPOLEN_SACK_BLOCK
                || len > 2 + SACK_MAX_BLOCKS * TCPOLEN_SACK_BLOCK)) {
            return false;
        }
        if (kind == TCPOPT_TIMESTAMP && len != TCPOLEN_TIMESTAMP) {
            return false;
        }
        ofs += len;
    }
    return true;
}

/* Shifts the SACK edges and timestamps of 'seg', whose options are valid. */
static void
options_rewrite(const struct splice_seg *seg, const struct ps_splice *sp, bool ack, struct ps_splice_stats *stats)
{
    uint32_t ofs = sizeof(struct ps_tcp_hdr);

    while (ofs < seg->hdr_len && seg->tcp[ofs] != TCPOPT_EOL) {
        uint8_t kind = seg->tcp[ofs];
        uint8_t len;

        if (kind == TCPOPT_NOP) {
            ofs++;
            continue;
        }
        len = seg->tcp[ofs + 1];
        if (kind == TCPOPT_SACK) {
            for (uint32_t edge = ofs + 2; edge < ofs + len; edge += 4) {
                seg_add32(seg, edge, sp->ack_delta);
            }
            stats->sack_blocks += (len - 2) / TCPOLEN_SACK_BLOCK;
        } else if (kind == TCPOPT_TIMESTAMP && (sp->flags & PS_SPLICE_TIMESTAMPS)) {
            seg_add32(seg, ofs + 2, sp->tsval_delta);
            if (ack) {
                seg_add32(seg, ofs + 6, sp->tsecr_delta);
            }
            stats->timestamps++;
        }
        ofs += len;
    }
}

/* Finds the TCP segment of 'frame' for 'seg'.  Returns PS_SPLICE_OK, or
 * NOT_TCP / BAD_HEADER for a frame that cannot be rewritten at all; counts
 * nothing, so that ps_splice_check_frame() can ask without a rewrite. */
static int
segment_find(const struct ps_frame *frame, struct splice_seg *seg)
{
    uint32_t l3 = ps_ipv4_offset(frame->data, frame->size);
    uint32_t l4;

    if (!l3 || frame->data[l3 + IP_PROTO_OFS] != PS_IPPROTO_TCP
        || ps_be16_load(frame->data + l3 + IP_FRAG_OFS) & PS_IP_FRAG_OFF_MASK) {
        return PS_SPLICE_NOT_TCP;
    }
    l4 = l3 + (frame->data[l3] & 0xf) * 4u;
    if (l4 + sizeof(struct ps_tcp_hdr) > frame->size) {
        return PS_SPLICE_NOT_TCP;
    }
    seg->tcp = frame->data + l4;
    seg->hdr_len = (seg->tcp[TCP_CTL_OFS] >> 4) * 4u;
    if (seg->hdr_len < sizeof(struct ps_tcp_hdr) || l4 + seg->hdr_len > frame->size) {
        return PS_SPLICE_BAD_HEADER;
    }
    seg->partial = (frame->vnet.flags & PS_VNET_F_NEEDS_CSUM) && le16toh(frame->vnet.csum_start) == l4;
    return PS_SPLICE_OK;
}

int
ps_splice_check_frame(const struct ps_frame *frame)
{
    struct splice_seg seg;
    int result = segment_find(frame, &seg);

    if (result != PS_SPLICE_OK) {
        return result;
    }
    return options_valid(&seg) ? PS_SPLICE_OK : PS_SPLICE_BAD_OPTIONS;
}

int
ps_splice_rewrite_frame(struct ps_frame *frame, const struct ps_splice *sp, struct ps_splice_stats *stats)
{
    struct splice_seg seg;
    int result = segment_find(frame, &seg);
    bool ack;

    if (result == PS_SPLICE_NOT_TCP) {
        stats->not_tcp++;
        return result;
    }
    if (result == PS_SPLICE_BAD_HEADER) {
        stats->bad_header++;
        return result;
    }

    /* The addresses and ports first, as nat/fullnat write them; nat.c updates
     * the IPv4 checksum and the pseudo-header's share of the TCP one. */
    if (sp->flags & PS_SPLICE_SET_SRC) {
        ps_ipv4_set_addr(frame, PS_NAT_IPV4_SRC, sp->src);
    }
    if (sp->flags & PS_SPLICE_SET_DST) {
        ps_ipv4_set_addr(frame, PS_NAT_IPV4_DST, sp->dst);
    }
    if (sp->flags & PS_SPLICE_SET_SPORT) {
        ps_l4_set_port(frame, PS_NAT_TP_SRC, sp->sport);
    }
    if (sp->flags & PS_SPLICE_SET_DPORT) {
        ps_l4_set_port(frame, PS_NAT_TP_DST, sp->dport);
    }

    /* An acknowledgement number (and TSecr, RFC 7323 section 3.2) means
     * something only with ACK set; without it the field is left as sent. */
    ack = seg.tcp[TCP_CTL_OFS + 1] & TCP_FLAG_ACK;
    seg_add32(&seg, TCP_SEQ_OFS, sp->seq_delta);
    if (ack) {
        seg_add32(&seg, TCP_ACK_OFS, sp->ack_delta);
    }
    if (!options_valid(&seg)) {
        stats->bad_options++;
        return PS_SPLICE_BAD_OPTIONS;
    }
    options_rewrite(&seg, sp, ack, stats);
    stats->rewritten++;
    return PS_SPLICE_OK;
}

int
ps_tcp_splice_check(const uint8_t *data, uint32_t size)
{
    /* The check only reads: the cast lends the bytes to a frame that is never written. */
    struct ps_frame frame = { .data = (uint8_t *) data, .size = size };

    return ps_splice_check_frame(&frame);
}

int
ps_tcp_splice_rewrite(uint8_t *data, uint32_t size, const struct ps_vnet_hdr *vnet, const struct ps_splice *sp,
                      struct ps_splice_stats *stats)
{
    struct ps_frame frame = { .data = data, .size = size };

    if (vnet) {
        frame.vnet = *vnet;
    }
    return ps_splice_rewrite_frame(&frame, sp, stats);
}
