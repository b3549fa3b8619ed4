/* xdp_prog.c: the XDP redirect program, its XSKMAP and its BPF link, by
 * bpf(2) (see xdp_prog.h).
 *
 * The program is six instructions, assembled here by hand rather than
 * compiled, so that the build needs neither clang nor libbpf and the kernel
 * sees exactly what is written below.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pyswitch.h"
#include "xdp_prog.h"

/* "Dual MIT/GPL" is what the kernel counts as GPL-compatible for an MIT
 * project's program; a GPL-compatible license is what lets it call any
 * helper, should the program ever need one that is GPL-only. */
static const char ps_xdp_license[] = "Dual MIT/GPL";

static long
sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

/* Instruction constructors, named after the kernel's BPF_* macros. */
static struct bpf_insn
insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    return (struct bpf_insn) { .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
}

static int
map_create(uint32_t n_queues)
{
    union bpf_attr attr;
    long fd;

    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_XSKMAP;
    attr.key_size = sizeof(uint32_t);      /* the receive queue index */
    attr.value_size = sizeof(uint32_t);    /* an AF_XDP socket fd (on update) */
    attr.max_entries = n_queues;
    strncpy(attr.map_name, "psw_xsks", sizeof attr.map_name - 1);
    fd = sys_bpf(BPF_MAP_CREATE, &attr);
    return fd < 0 ? -errno : (int) fd;
}

static int
prog_load(int map_fd)
{
    /* r1 holds the context (struct xdp_md *) on entry; r1-r3 are the
     * helper's arguments, r0 its result and ours.  A queue without a socket
     * in the map gets the fallback verdict XDP_PASS: its frames go to the
     * kernel's stack as if no program were attached. */
    struct bpf_insn prog[] = {
        /* r2 = ctx->rx_queue_index */
        insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, offsetof(struct xdp_md, rx_queue_index), 0),
        /* r1 = &xsks: a 64-bit immediate in two slots; the kernel puts the
         * map's address in place of its fd */
        insn(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        /* r3 = XDP_PASS */
        insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, XDP_PASS),
        /* r0 = bpf_redirect_map(r1, r2, r3) */
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),
        /* return r0 */
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    union bpf_attr attr;
    long fd;

    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_XDP;
    attr.insns = (uint64_t) (uintptr_t) prog;
    attr.insn_cnt = sizeof prog / sizeof prog[0];
    attr.license = (uint64_t) (uintptr_t) ps_xdp_license;
    attr.expected_attach_type = BPF_XDP;
    strncpy(attr.prog_name, "psw_redirect", sizeof attr.prog_name - 1);
    fd = sys_bpf(BPF_PROG_LOAD, &attr);
    return fd < 0 ? -errno : (int) fd;
}

int
ps_xdp_prog_open(struct ps_xdp_prog *prog, uint32_t n_queues)
{
    prog->prog_fd = prog->link_fd = -1;
    prog->mode = 0;
    prog->map_fd = map_create(n_queues);
    if (prog->map_fd < 0) {
        int error = prog->map_fd;

        prog->map_fd = -1;
        return error;
    }
    prog->prog_fd = prog_load(prog->map_fd);
    if (prog->prog_fd < 0) {
        int error = prog->prog_fd;

        close(prog->map_fd);
        prog->map_fd = -1;
        return error;
    }
    return 0;
}

int
ps_xdp_prog_set_socket(struct ps_xdp_prog *prog, uint32_t queue, int xsk_fd)
{
    union bpf_attr attr;
    uint32_t value = xsk_fd;

    memset(&attr, 0, sizeof attr);
    attr.map_fd = prog->map_fd;
    attr.key = (uint64_t) (uintptr_t) &queue;
    attr.value = (uint64_t) (uintptr_t) &value;
    attr.flags = BPF_ANY;
    return sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0 ? -errno : 0;
}

static int
link_create(int prog_fd, int ifindex, uint32_t xdp_flags)
{
    union bpf_attr attr;
    long fd;

    memset(&attr, 0, sizeof attr);
    attr.link_create.prog_fd = prog_fd;
    attr.link_create.target_ifindex = ifindex;
    attr.link_create.attach_type = BPF_XDP;
    attr.link_create.flags = xdp_flags;
    fd = sys_bpf(BPF_LINK_CREATE, &attr);
    return fd < 0 ? -errno : (int) fd;
}

int
ps_xdp_prog_attach(struct ps_xdp_prog *prog, int ifindex)
{
    int fd = link_create(prog->prog_fd, ifindex, XDP_FLAGS_DRV_MODE);

    /* -EBUSY and -EEXIST: the interface has a program already (in this or
     * the other mode); generic mode would not change that.  Any other
     * failure means the driver cannot run this program natively (no XDP
     * support, an MTU too large for it, too few queues), and generic mode,
     * which runs the program on the kernel's socket buffers, can. */
    if (fd < 0 && fd != -EBUSY && fd != -EEXIST && fd != -EPERM) {
        fd = link_create(prog->prog_fd, ifindex, XDP_FLAGS_SKB_MODE);
        if (fd >= 0) {
            prog->mode = PS_XDP_MODE_GENERIC;
        }
    } else if (fd >= 0) {
        prog->mode = PS_XDP_MODE_NATIVE;
    }
    if (fd < 0) {
        return fd == -EEXIST ? -EBUSY : fd;
    }
    prog->link_fd = fd;
    return 0;
}

void
ps_xdp_prog_close(struct ps_xdp_prog *prog)
{
    /* The link first: the interface stops running the program before the
     * map it redirects into goes away. */
    if (prog->link_fd >= 0) {
        close(prog->link_fd);
        prog->link_fd = -1;
    }
    if (prog->prog_fd >= 0) {
        close(prog->prog_fd);
        prog->prog_fd = -1;
    }
    if (prog->map_fd >= 0) {
        close(prog->map_fd);
        prog->map_fd = -1;
    }
    prog->mode = 0;
}
