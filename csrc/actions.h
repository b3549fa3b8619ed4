/* actions.h: the action executor shared by ps_actions_apply() and the datapath.
 *
 * The executor rewrites a frame in place and hands every output to a sink,
 * so the same code feeds caller buffers (ps_actions_apply) and per-port
 * transmit queues (the datapath).
 */
#ifndef PS_ACTIONS_H
#define PS_ACTIONS_H 1

#include <stdbool.h>
#include <stdint.h>

#include "pyswitch.h"

/* A frame being worked on.  PUSH_VLAN grows it at the front, so 'data' must
 * have at least PS_HEADROOM writable bytes before it. */
struct ps_frame {
    uint8_t *data;                  /* first byte of the Ethernet header */
    uint32_t size;                  /* bytes at 'data' */
    struct ps_vnet_hdr vnet;        /* the frame's virtio_net_hdr, adjusted along with it */
};

/* Why an action dropped a frame (struct ps_sink.drop). */
enum ps_drop_reason {
    PS_DROP_DECAP,                  /* DECAP on a packet that is not a tunnel it can strip */
};

/* Where the executor's results go. */
struct ps_sink {
    /* Emits 'frame' to 'port'.  'stable' is true when no later action of the
     * list changes these bytes, so the sink may keep a pointer to them until
     * the batch's transmit flush; otherwise it must copy them now. */
    void (*output)(void *ctx, uint16_t port, const struct ps_frame *frame, bool stable);
    /* Queues a copy of 'frame' for the slow path with 'reason' (PS_UPCALL_*)
     * and 'userdata'. */
    void (*upcall)(void *ctx, uint16_t reason, uint32_t userdata, const struct ps_frame *frame);
    /* Runs PS_ACT_ROUTE on 'frame': routes it in place and emits it (with
     * 'stable' as for output()), or upcalls or drops it unchanged.  Returns
     * true if the frame was routed, and only then do the actions after the
     * ROUTE run.  'via' (4 bytes) is NULL, or the address to route toward
     * instead of the destination (after a DECAP with PS_DECAP_DELIVER: the
     * tunnel's outer destination).  The executor owns no tables; the sink
     * brings them. */
    bool (*route)(void *ctx, struct ps_frame *frame, const uint8_t *via, bool stable);
    /* Runs PS_ACT_LB or PS_ACT_LB_REPLY ('action') on 'frame' like route():
     * rewrites it by its connection and routes it, or upcalls or drops it
     * unchanged.  Returns true only if the frame was routed. */
    bool (*lb)(void *ctx, struct ps_frame *frame, const struct ps_action *action, bool stable);
    /* Counts a frame an action refused; the list ends after it. */
    void (*drop)(void *ctx, enum ps_drop_reason reason);
    void *ctx;                      /* passed to every callback */
};

/* Inserts the tag 'tpid', 'tci' at offset 12 of 'frame', which must have a
 * whole Ethernet header and 4 bytes of headroom, and moves the vnet offsets
 * behind it (PUSH_VLAN, and restoring a tag the kernel stripped). */
void ps_frame_push_tag(struct ps_frame *frame, uint16_t tpid, uint16_t tci);

/* Removes the outermost 802.1Q/802.1ad tag of 'frame', if it has a whole
 * tagged Ethernet header, and moves the vnet offsets back (POP_VLAN). */
void ps_frame_pop_tag(struct ps_frame *frame);

/* Adds 'delta' to the vnet header offsets that lie past the bytes inserted
 * (delta > 0) or removed (delta < 0) in front of L3: csum_start when
 * NEEDS_CSUM is set, hdr_len of a GSO frame when it is not 0.  Shrinking
 * stops at 0. */
void ps_vnet_shift(struct ps_vnet_hdr *vnet, int delta);

/* Copies the 'size' bytes at 'frame' and its 'vnet' header (NULL: all zero)
 * into a new buffer with PS_HEADROOM bytes in front, and points 'work' at the
 * copy, so actions may grow it.  Returns the buffer for the caller to free(),
 * or NULL if out of memory. */
uint8_t *ps_frame_clone(struct ps_frame *work, const uint8_t *frame, uint32_t size,
                        const struct ps_vnet_hdr *vnet);

/* Returns 0 if the 'n_actions' actions at 'actions' are a list ps_ft_put()
 * accepts, -EINVAL otherwise (unknown type, more than PS_MAX_ACTIONS, OUTPUT
 * to a port >= PS_MAX_PORTS). */
int ps_actions_validate(const struct ps_action *actions, uint32_t n_actions);

/* Runs the 'n_actions' (validated) actions at 'actions' on 'frame', which
 * arrived on 'in_port', emitting through 'sink'.  Changes 'frame' in place.
 * A ROUTE, LB or LB_REPLY that does not route the frame, and a DECAP that
 * fails, end the list. */
void ps_actions_execute(struct ps_frame *frame, uint16_t in_port, const struct ps_action *actions,
                        uint32_t n_actions, const struct ps_sink *sink);

#endif /* PS_ACTIONS_H */
