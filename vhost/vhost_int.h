/* SPDX-License-Identifier: MIT */
/*
 * vhost_int.h - private to the vhost-user role: vhost/vhost*.c only
 *
 * The state of moat-vhost: the frame rings toward the netstack, the VMM
 * connection and what it negotiated, guest memory and the two queues.
 * vhost.c runs the process (confinement, the loop, one VMM after another),
 * vhostuser.c speaks the protocol on the connection, vhostnet.c moves
 * frames between the queues and the rings.
 */
#ifndef MOAT_VHOST_INT_H
#define MOAT_VHOST_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/region.h"
#include "shm/ring.h"
#include "vhost/vring.h"

/* virtio and vhost-user feature bits moat takes part in. */
#define VIRTIO_NET_F_CSUM		0
#define VIRTIO_NET_F_GUEST_CSUM		1
#define VIRTIO_NET_F_GUEST_TSO4		7
#define VIRTIO_NET_F_GUEST_TSO6		8
#define VIRTIO_NET_F_HOST_TSO4		11
#define VIRTIO_NET_F_HOST_TSO6		12
#define VIRTIO_NET_F_MRG_RXBUF		15
#define VIRTIO_RING_F_INDIRECT_DESC	28
#define VHOST_USER_F_PROTOCOL_FEATURES	30
#define VIRTIO_F_VERSION_1		32
#define VHOST_USER_PROTOCOL_F_MQ	0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3

#define VHOST_BIT(b) (1ull << (b))

/*
 * Descriptors moat-vhost takes at run time, each moved to a fixed number
 * above those the supervisor hands over (common/fds.h), so that its
 * seccomp filter names the ones it may read and write.
 */
enum {
	VHOST_FD_CONN = 16, /* the VMM's connection */
	VHOST_FD_KICK0,	    /* the driver's doorbell of queue 0, 1 */
	VHOST_FD_KICK1,
	VHOST_FD_CALL0, /* our interrupt toward the driver for queue 0, 1 */
	VHOST_FD_CALL1,
	VHOST_FD_MAX = 32 /* RLIMIT_NOFILE: these, and a memory table in flight */
};

/* Queue indices of virtio-net without multiqueue. */
enum { VHOST_RXQ = 0, VHOST_TXQ = 1, VHOST_NQ = 2 };

/* Frames moved per pass in each direction before the loop looks around. */
#define VHOST_BATCH 64

/**
 * struct vhost_queue - one virtqueue as the VMM set it up
 * @ring:	our checked view (valid while @started)
 * @num:	SET_VRING_NUM (0: not yet)
 * @base:	SET_VRING_BASE: where the driver's avail ring continues
 * @desc_uva, @avail_uva, @used_uva: SET_VRING_ADDR, the VMM's addresses
 * @have_addr:	SET_VRING_ADDR came
 * @kick:	the driver's doorbell (an eventfd at a fixed number), or -1
 * @call:	our interrupt toward the driver (fixed number), or -1
 * @started:	kick, num and addresses are in and the rings checked out
 * @enabled:	SET_VRING_ENABLE (implied without protocol features)
 */
struct vhost_queue {
	struct vring ring;
	unsigned num;
	uint16_t base;
	uint64_t desc_uva, avail_uva, used_uva;
	bool have_addr;
	int kick, call;
	bool started, enabled;
};

/**
 * struct vhost - moat-vhost
 * @region:	our parts: header, guest counters, g2s, s2g
 * @g2s, @s2g:	producer of g2s, consumer of s2g (like the supervisor's guest port)
 * @cnt:	the guest counter block
 * @max_frame:	MTU + 14
 * @offloads:	MOAT_OFFLOAD_* from the header: what the netstack takes and sends
 * @lfd:	the listening socket (FD_VHOST_LISTEN)
 * @cfd:	the VMM's connection (FD_VHOST_CONN), or -1
 * @features:	what the VMM acked (SET_FEATURES)
 * @protocol:	protocol features acked (SET_PROTOCOL_FEATURES)
 * @mem:	guest memory as mapped here
 * @map, @map_len: our mappings (munmap), one per region of @mem
 * @q:		the receive (0) and transmit (1) queues
 * @hdr_len:	virtio_net_hdr bytes in front of each frame: 12 with
 *		VERSION_1 or MRG_RXBUF, 10 otherwise
 * @waiting_g2s: transmit paused: g2s full (our eventfd fires on space)
 * @drop:	the VMM broke the protocol or a queue: close it after this pass
 * @rec:	a record being cut in software, copied out of s2g (vhostnet.c)
 * @scratch:	the piece being made of it
 */
struct vhost {
	struct region region;
	struct ring g2s, s2g;
	struct moat_guest_counters *cnt;
	uint32_t max_frame;
	uint32_t offloads;
	int lfd, cfd;
	uint64_t features, protocol;
	struct vring_mem mem;
	void *map[VRING_MAX_REGIONS];
	size_t map_len[VRING_MAX_REGIONS];
	struct vhost_queue q[VHOST_NQ];
	unsigned hdr_len;
	bool waiting_g2s;
	bool drop;
	uint8_t rec[MOAT_FRAME_MAX_GSO + 16];
	uint8_t scratch[MOAT_FRAME_MAX_GSO + 16];
};

/* Relaxed add to a counter we are the only writer of. */
static inline void vhost_count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static inline bool vhost_has(const struct vhost *v, unsigned bit)
{
	return v->features & VHOST_BIT(bit);
}

uint64_t vhostuser_offered(const struct vhost *v);
int vhostuser_input(struct vhost *v);
void vhostuser_reset(struct vhost *v);
bool vhostnet_tx(struct vhost *v);
bool vhostnet_rx(struct vhost *v);
void vhostnet_discard(struct vhost *v);
bool vhostnet_ready(const struct vhost *v, int qi);

#endif /* MOAT_VHOST_INT_H */
