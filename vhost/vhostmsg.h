/* SPDX-License-Identifier: MIT */
/*
 * vhostmsg.h - vhost-user messages from a VMM, checked before they are used
 *
 * The message layer of the vhost-user backend (issue 15): one function that
 * takes the bytes and descriptors a VMM sent on its socket and either gives
 * back a typed message or says what was wrong with it. Pure; the socket and
 * the descriptors themselves are the caller's.
 */
#ifndef MOAT_VHOSTMSG_H
#define MOAT_VHOSTMSG_H

#include <stddef.h>
#include <stdint.h>

/* Requests moat knows (the vhost-user specification's numbers). */
enum vhostmsg_request {
	VHOSTMSG_GET_FEATURES = 1,
	VHOSTMSG_SET_FEATURES = 2,
	VHOSTMSG_SET_OWNER = 3,
	VHOSTMSG_RESET_OWNER = 4,
	VHOSTMSG_SET_MEM_TABLE = 5,
	VHOSTMSG_SET_VRING_NUM = 8,
	VHOSTMSG_SET_VRING_ADDR = 9,
	VHOSTMSG_SET_VRING_BASE = 10,
	VHOSTMSG_GET_VRING_BASE = 11,
	VHOSTMSG_SET_VRING_KICK = 12,
	VHOSTMSG_SET_VRING_CALL = 13,
	VHOSTMSG_SET_VRING_ERR = 14,
	VHOSTMSG_GET_PROTOCOL_FEATURES = 15,
	VHOSTMSG_SET_PROTOCOL_FEATURES = 16,
	VHOSTMSG_GET_QUEUE_NUM = 17,
	VHOSTMSG_SET_VRING_ENABLE = 18,
	VHOSTMSG_GET_CONFIG = 24,
};

#define VHOSTMSG_HDR	      12u    /* request, flags, size */
#define VHOSTMSG_VERSION      1u     /* flags & 3 */
#define VHOSTMSG_F_REPLY      0x4u   /* ours: this is an answer */
#define VHOSTMSG_F_NEED_REPLY 0x8u   /* the VMM wants an ack (REPLY_ACK) */
#define VHOSTMSG_MAX_REGIONS  8u     /* regions in one memory table */
#define VHOSTMSG_QUEUES	      2u     /* virtio-net without multiqueue: rx 0, tx 1 */
#define VHOSTMSG_NOFD	      0x100u /* KICK/CALL/ERR: no descriptor comes with it */
#define VHOSTMSG_CONFIG_MAX   256u   /* GET_CONFIG payload */
#define VHOSTMSG_MAX	      (VHOSTMSG_HDR + 8u + 32u * VHOSTMSG_MAX_REGIONS + VHOSTMSG_CONFIG_MAX)

struct vhostmsg_region {
	uint64_t gpa, size, uva, mmap_offset;
};

/**
 * struct vhostmsg - a message that passed vhostmsg_check()
 * @request:	enum vhostmsg_request
 * @flags:	the header's flags (NEED_REPLY is the one that matters)
 * @u64:	SET_FEATURES, SET_PROTOCOL_FEATURES
 * @index:	the queue (VRING_* requests): below VHOSTMSG_QUEUES
 * @num:	SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE
 * @has_fd:	KICK/CALL/ERR: a descriptor came with it
 * @desc_uva, @used_uva, @avail_uva: SET_VRING_ADDR, in the VMM's addresses
 * @nregions, @region: SET_MEM_TABLE (one descriptor per region came with it)
 * @cfg_offset, @cfg_size: GET_CONFIG
 */
struct vhostmsg {
	uint32_t request, flags;
	uint64_t u64;
	uint32_t index, num;
	int has_fd;
	uint64_t desc_uva, used_uva, avail_uva;
	uint32_t nregions;
	struct vhostmsg_region region[VHOSTMSG_MAX_REGIONS];
	uint32_t cfg_offset, cfg_size;
};

int vhostmsg_check(const uint8_t *buf, size_t len, unsigned nfds, struct vhostmsg *m,
		   const char **why);

#endif /* MOAT_VHOSTMSG_H */
