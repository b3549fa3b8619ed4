/* xdp_prog.h: the XDP program that steers an interface's frames into AF_XDP
 * sockets, loaded and attached with raw bpf(2) calls (no libbpf).
 *
 * Three kernel objects, each an fd: an XSKMAP (receive queue -> socket), the
 * program, which does
 *
 *     return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
 *
 * and the BPF link that attaches it to the interface.  Only the link holds
 * the attachment, so the program leaves the interface when the link fd is
 * closed, and therefore also when the process dies in any way: pyswitch never
 * leaves an XDP program behind.
 */
#ifndef PS_XDP_PROG_H
#define PS_XDP_PROG_H 1

#include <stdint.h>

/* The redirect program and what it needs. */
struct ps_xdp_prog {
    int map_fd;                    /* BPF_MAP_TYPE_XSKMAP: receive queue index -> AF_XDP socket */
    int prog_fd;                   /* the loaded program */
    int link_fd;                   /* the BPF link that attaches it; -1 until ps_xdp_prog_attach() */
    int mode;                      /* PS_XDP_MODE_NATIVE or PS_XDP_MODE_GENERIC once attached, else 0 */
};

/* Creates an XSKMAP of 'n_queues' slots and loads the program that redirects
 * into it.  Returns 0 or a negative errno; on failure nothing stays open. */
int ps_xdp_prog_open(struct ps_xdp_prog *prog, uint32_t n_queues);

/* Points slot 'queue' of the map at the AF_XDP socket 'xsk_fd'.  Returns 0 or
 * a negative errno. */
int ps_xdp_prog_set_socket(struct ps_xdp_prog *prog, uint32_t queue, int xsk_fd);

/* Attaches the program to interface 'ifindex' through a BPF link, in native
 * (driver) mode if the driver supports it, else in generic (SKB) mode, and
 * records which in prog->mode.  Fails with -EBUSY if the interface already
 * has an XDP program: another's program is never replaced.  Returns 0 or a
 * negative errno. */
int ps_xdp_prog_attach(struct ps_xdp_prog *prog, int ifindex);

/* Detaches the program (closes the link) and frees the map and program. */
void ps_xdp_prog_close(struct ps_xdp_prog *prog);

#endif /* PS_XDP_PROG_H */
