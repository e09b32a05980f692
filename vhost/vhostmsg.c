/* SPDX-License-Identifier: MIT */
/*
 * vhostmsg.c - vhost-user messages from a VMM, checked before they are used
 *
 * Theory of Operation
 * -------------------
 * The VMM is as untrusted as the guest it runs (it is the guest's process,
 * and may be compromised with it). A message is the 12-byte header (request,
 * flags, size), size bytes of payload and, for some requests, descriptors
 * passed with SCM_RIGHTS. vhostmsg_check() copies the header and payload
 * out of the caller's buffer into a struct, and refuses:
 *
 * - a header that does not say version 1, a size that is not what arrived,
 *   or a payload longer than any request has (VHOSTMSG_MAX);
 * - a payload of the wrong size for its request, or the wrong number of
 *   descriptors with it (KICK/CALL/ERR: one unless the NOFD bit says none;
 *   SET_MEM_TABLE: one per region; everything else: none);
 * - a queue index moat does not have (virtio-net without multiqueue: 0, 1),
 *   a queue size that is not a power of two up to 32768, a memory table of
 *   0 or more than VHOSTMSG_MAX_REGIONS regions, a region of size 0 or whose
 *   guest, VMM or file range wraps around 2^64, regions whose guest ranges
 *   overlap, a GET_CONFIG larger than VHOSTMSG_CONFIG_MAX.
 *
 * -EBADMSG is a VMM that broke the protocol: the caller closes the
 * connection. -ENOTSUP is a well-formed request moat does not implement
 * (logging, IOTLB, ...): refused with a failure reply when the VMM asked
 * for one, which VMMs handle.
 */
#include <errno.h>
#include <string.h>

#include "vhost/vhostmsg.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int bad(const char **why, const char *what)
{
	*why = what;
	return -EBADMSG;
}

static int mem_table(const uint8_t *p, uint32_t size, unsigned nfds, struct vhostmsg *m,
		     const char **why)
{
	if (size < 8)
		return bad(why, "memory table: short");
	m->nregions = le32(p);
	if (!m->nregions || m->nregions > VHOSTMSG_MAX_REGIONS)
		return bad(why, "memory table: region count");
	if (size != 8u + 32u * m->nregions)
		return bad(why, "memory table: size");
	if (nfds != m->nregions)
		return bad(why, "memory table: one descriptor per region");
	for (uint32_t i = 0; i < m->nregions; i++) {
		struct vhostmsg_region *r = &m->region[i];
		const uint8_t *q = p + 8 + 32 * i;

		r->gpa = le64(q);
		r->size = le64(q + 8);
		r->uva = le64(q + 16);
		r->mmap_offset = le64(q + 24);
		if (!r->size || r->gpa + r->size < r->gpa || r->uva + r->size < r->uva ||
		    r->mmap_offset + r->size < r->mmap_offset)
			return bad(why, "memory table: a region wraps around or is empty");
		for (uint32_t j = 0; j < i; j++) {
			const struct vhostmsg_region *o = &m->region[j];

			if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
				return bad(why, "memory table: regions overlap");
		}
	}
	return 0;
}

/* The payload of @m->request, @size bytes at @p, with @nfds descriptors. */
static int payload(const uint8_t *p, uint32_t size, unsigned nfds, struct vhostmsg *m,
		   const char **why)
{
	switch (m->request) {
	case VHOSTMSG_GET_FEATURES:
	case VHOSTMSG_GET_PROTOCOL_FEATURES:
	case VHOSTMSG_SET_OWNER:
	case VHOSTMSG_RESET_OWNER:
	case VHOSTMSG_GET_QUEUE_NUM:
		/* Some VMMs send a zero u64 with a GET: take it, ignore it. */
		if ((size != 0 && size != 8) || nfds)
			return bad(why, "no payload expected");
		return 0;
	case VHOSTMSG_SET_FEATURES:
	case VHOSTMSG_SET_PROTOCOL_FEATURES:
		if (size != 8 || nfds)
			return bad(why, "features: size");
		m->u64 = le64(p);
		return 0;
	case VHOSTMSG_SET_MEM_TABLE:
		return mem_table(p, size, nfds, m, why);
	case VHOSTMSG_SET_VRING_NUM:
	case VHOSTMSG_SET_VRING_BASE:
	case VHOSTMSG_GET_VRING_BASE:
	case VHOSTMSG_SET_VRING_ENABLE:
		if (size != 8 || nfds)
			return bad(why, "vring state: size");
		m->index = le32(p);
		m->num = le32(p + 4);
		if (m->index >= VHOSTMSG_QUEUES)
			return bad(why, "vring state: queue index");
		if (m->request == VHOSTMSG_SET_VRING_NUM &&
		    (!m->num || m->num > 32768 || (m->num & (m->num - 1))))
			return bad(why, "vring num: not a power of two up to 32768");
		if (m->request == VHOSTMSG_SET_VRING_BASE && m->num > 0xffff)
			return bad(why, "vring base: beyond 16 bits");
		return 0;
	case VHOSTMSG_SET_VRING_ADDR:
		if (size != 40 || nfds)
			return bad(why, "vring addr: size");
		m->index = le32(p);
		m->desc_uva = le64(p + 8);
		m->used_uva = le64(p + 16);
		m->avail_uva = le64(p + 24);
		return m->index < VHOSTMSG_QUEUES ? 0 : bad(why, "vring addr: queue index");
	case VHOSTMSG_SET_VRING_KICK:
	case VHOSTMSG_SET_VRING_CALL:
	case VHOSTMSG_SET_VRING_ERR:
		if (size != 8)
			return bad(why, "vring fd: size");
		m->u64 = le64(p);
		m->index = (uint32_t)(m->u64 & 0xff);
		m->has_fd = !(m->u64 & VHOSTMSG_NOFD);
		if ((m->u64 & ~(uint64_t)(0xff | VHOSTMSG_NOFD)) || m->index >= VHOSTMSG_QUEUES)
			return bad(why, "vring fd: queue index");
		if (nfds != (m->has_fd ? 1u : 0u))
			return bad(why, "vring fd: descriptor count");
		return 0;
	case VHOSTMSG_GET_CONFIG:
		if (size < 12 || nfds)
			return bad(why, "config: short");
		m->cfg_offset = le32(p);
		m->cfg_size = le32(p + 4);
		if (m->cfg_size > VHOSTMSG_CONFIG_MAX || size != 12 + m->cfg_size ||
		    m->cfg_offset > VHOSTMSG_CONFIG_MAX)
			return bad(why, "config: size");
		return 0;
	default:
		*why = "request not implemented";
		return -ENOTSUP;
	}
}

/**
 * vhostmsg_check() - copy out and check one message from a VMM
 * @buf:	what arrived (header and payload)
 * @len:	its length
 * @nfds:	descriptors that came with it
 * @m:		the message, valid on 0
 * @why:	on failure, what was wrong (for the log)
 *
 * Return: 0, -EBADMSG (the VMM broke the protocol: close the connection),
 * or -ENOTSUP (a well-formed request moat does not implement).
 */
int vhostmsg_check(const uint8_t *buf, size_t len, unsigned nfds, struct vhostmsg *m,
		   const char **why)
{
	uint32_t size;

	memset(m, 0, sizeof(*m));
	*why = NULL;
	if (len < VHOSTMSG_HDR)
		return bad(why, "short header");
	m->request = le32(buf);
	m->flags = le32(buf + 4);
	size = le32(buf + 8);
	if ((m->flags & 3) != VHOSTMSG_VERSION || (m->flags & VHOSTMSG_F_REPLY))
		return bad(why, "version or direction");
	if (len > VHOSTMSG_MAX || size != len - VHOSTMSG_HDR)
		return bad(why, "size");
	return payload(buf + VHOSTMSG_HDR, size, nfds, m, why);
}
