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
     * ROUTE run.  The executor owns no tables; the sink brings them. */
    bool (*route)(void *ctx, struct ps_frame *frame, bool stable);
    void *ctx;                      /* passed to every callback */
};

/* Inserts the tag 'tpid', 'tci' at offset 12 of 'frame', which must have a
 * whole Ethernet header and 4 bytes of headroom, and moves the vnet offsets
 * behind it (PUSH_VLAN, and restoring a tag the kernel stripped). */
void ps_frame_push_tag(struct ps_frame *frame, uint16_t tpid, uint16_t tci);

/* Removes the outermost 802.1Q/802.1ad tag of 'frame', if it has a whole
 * tagged Ethernet header, and moves the vnet offsets back (POP_VLAN). */
void ps_frame_pop_tag(struct ps_frame *frame);

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
 * A ROUTE that does not route the frame ends the list. */
void ps_actions_execute(struct ps_frame *frame, uint16_t in_port, const struct ps_action *actions,
                        uint32_t n_actions, const struct ps_sink *sink);

#endif /* PS_ACTIONS_H */
