/* splice.h: the rewrite of a spliced TCP connection's segments on a working
 * frame (splice.c), for an executor that holds a struct ps_frame; the cffi
 * entry point ps_tcp_splice_rewrite() is declared in pyswitch.h. */
#ifndef PS_SPLICE_H
#define PS_SPLICE_H 1

#include "actions.h"
#include "pyswitch.h"

/* ps_tcp_splice_rewrite() on 'frame', whose vnet header says whether the
 * kernel completes its checksum. */
int ps_splice_rewrite_frame(struct ps_frame *frame, const struct ps_splice *sp, struct ps_splice_stats *stats);

/* The result ps_splice_rewrite_frame() would give 'frame' (with any splice),
 * without writing or counting anything: what the rewrite refuses depends
 * only on the IPv4 and TCP headers' framing and the TCP options, which the
 * NAT rewrite leaves alone, so LB can drop a segment before it accounts or
 * rewrites it. */
int ps_splice_check_frame(const struct ps_frame *frame);

#endif /* PS_SPLICE_H */
