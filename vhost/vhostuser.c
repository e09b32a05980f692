/* SPDX-License-Identifier: MIT */
/*
 * vhostuser.c - the vhost-user protocol toward one VMM
 *
 * Theory of Operation
 * -------------------
 * The VMM (QEMU's -netdev vhost-user, cloud-hypervisor's vhost_user=true)
 * is the front-end; moat-vhost is the back-end of one virtio-net device
 * with a receive queue (0) and a transmit queue (1). vhostuser_input()
 * reads one message (header, payload, the descriptors that came with it),
 * has vhostmsg_check() copy it out and refuse what is malformed, and
 * applies it:
 *
 * - features: moat offers VERSION_1, MRG_RXBUF, INDIRECT_DESC, the
 *   protocol-features bit and, where the netstack takes them (the
 *   header's guest_offloads, i.e. unless --offload off), CSUM/HOST_TSO4/6
 *   (the guest sends partial checksums and 64 KiB segments) and
 *   GUEST_CSUM/GUEST_TSO4/6 (it takes them). Protocol features: REPLY_ACK
 *   (QEMU 7.2 mishandles MQ's queue count with one pair); GET_QUEUE_NUM is
 *   still answered (2 queues).
 * - the memory table: every region's descriptor is checked to be a file
 *   long enough for the region (a shorter one would fault on first
 *   touch), mapped read-write shared (never executable) and closed; the
 *   new table replaces the old one, and running queues are checked again
 *   against it.
 * - a queue starts when its kick descriptor arrives after its size and
 *   addresses: the addresses are translated from the VMM's into guest
 *   physical ones and the rings checked (vring_setup()); a queue that does
 *   not check out drops the VMM. With protocol features acked, a queue
 *   also waits for SET_VRING_ENABLE; without, it is enabled when started.
 *   GET_VRING_BASE stops it and tells where it stopped.
 * - kick and call descriptors are moved to fixed numbers (vhost_int.h), so
 *   that the seccomp filter can name the descriptors moat-vhost may read
 *   and write.
 *
 * A message vhostmsg_check() refuses as broken (-EBADMSG), a descriptor
 * that is not what it should be or a queue that does not check out sets
 * ->drop: the connection is closed after this pass and counted
 * (vring_bad_messages). A well-formed request moat does not implement gets
 * a failure reply when the VMM asked for one. Replies are written whole to
 * a socket that has just delivered a request; a VMM that does not read
 * them is dropped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "vhost/vhost.h"
#include "vhost/vhost_int.h"
#include "vhost/vhostmsg.h"

/* How long a VMM may take to send the rest of a message it started. */
#define VHOSTUSER_MSG_TIMEOUT_MS 2000

/**
 * vhostuser_offered() - the virtio and vhost-user features moat offers
 * @v:	moat-vhost (its offloads come from the region's header)
 *
 * Return: the feature bits for GET_FEATURES.
 */
uint64_t vhostuser_offered(const struct vhost *v)
{
	uint64_t f = VHOST_BIT(VIRTIO_F_VERSION_1) | VHOST_BIT(VIRTIO_NET_F_MRG_RXBUF) |
		     VHOST_BIT(VIRTIO_RING_F_INDIRECT_DESC) |
		     VHOST_BIT(VHOST_USER_F_PROTOCOL_FEATURES);

	if (v->offloads & MOAT_OFFLOAD_CSUM) {
		f |= VHOST_BIT(VIRTIO_NET_F_CSUM) | VHOST_BIT(VIRTIO_NET_F_GUEST_CSUM);
		if (v->offloads & MOAT_OFFLOAD_TSO4)
			f |= VHOST_BIT(VIRTIO_NET_F_HOST_TSO4) | VHOST_BIT(VIRTIO_NET_F_GUEST_TSO4);
		if (v->offloads & MOAT_OFFLOAD_TSO6)
			f |= VHOST_BIT(VIRTIO_NET_F_HOST_TSO6) | VHOST_BIT(VIRTIO_NET_F_GUEST_TSO6);
	}
	return f;
}

static const uint64_t vhostuser_protocol_offered = VHOST_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void unmap_all(struct vhost *v)
{
	for (unsigned i = 0; i < VRING_MAX_REGIONS; i++) {
		if (v->map[i])
			munmap(v->map[i], v->map_len[i]);
		v->map[i] = NULL;
		v->map_len[i] = 0;
	}
	memset(&v->mem, 0, sizeof(v->mem));
}

static void queue_reset(struct vhost_queue *q)
{
	if (q->kick >= 0)
		close(q->kick);
	if (q->call >= 0)
		close(q->call);
	memset(q, 0, sizeof(*q));
	q->kick = q->call = -1;
}

/**
 * vhostuser_reset() - forget everything a VMM set up
 * @v:	moat-vhost
 *
 * Guest memory is unmapped and the queues' descriptors closed, so the next
 * VMM starts from nothing (and the last one's memory is not kept mapped).
 */
void vhostuser_reset(struct vhost *v)
{
	for (int i = 0; i < VHOST_NQ; i++)
		queue_reset(&v->q[i]);
	unmap_all(v);
	v->features = v->protocol = 0;
	v->hdr_len = 12;
	v->waiting_g2s = false;
}

/*
 * Read exactly @len bytes into @buf, collecting descriptors into @fds
 * (up to @maxfds; *@nfds counts them, and any beyond are closed). Unless
 * @begun (the rest of a message), nothing waiting is -EAGAIN. A VMM that
 * stops in the middle of a message for VHOSTUSER_MSG_TIMEOUT_MS is
 * dropped. Return: 0, 1 on a clean EOF before any byte, or -errno.
 */
static int read_full(int fd, uint8_t *buf, size_t len, bool begun, int *fds, unsigned maxfds,
		     unsigned *nfds)
{
	size_t got = 0;
	int waited = 0;

	while (got < len) {
		union {
			char b[CMSG_SPACE(sizeof(int) * VRING_MAX_REGIONS)];
			struct cmsghdr align;
		} u;
		struct iovec iov = { buf + got, len - got };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = u.b,
				     .msg_controllen = sizeof(u.b) };
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n > 0) {
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
				int *p = (int *)(void *)CMSG_DATA(c);
				size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				for (size_t i = 0; i < k; i++) {
					if (*nfds < maxfds)
						fds[(*nfds)++] = p[i];
					else
						close(p[i]);
				}
			}
			if (mh.msg_flags & MSG_CTRUNC)
				return -EBADMSG;
			got += (size_t)n;
			continue;
		}
		if (n == 0) /* EOF: clean only between messages */
			return got == 0 && len && !begun ? 1 : -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if (got == 0 && !begun)
			return -EAGAIN; /* no message waiting */
		{
			struct pollfd p = { .fd = fd, .events = POLLIN };
			struct timespec ts = { 0, 100 * 1000000L };

			if (waited >= VHOSTUSER_MSG_TIMEOUT_MS)
				return -ETIMEDOUT;
			if (ppoll(&p, 1, &ts, NULL) == 0)
				waited += 100;
		}
	}
	return 0;
}

/* Write a reply whole. Return: 0 or -errno (the VMM is then dropped). */
static int reply(struct vhost *v, uint32_t request, const void *payload, uint32_t size)
{
	uint8_t buf[VHOSTMSG_HDR + VHOSTMSG_CONFIG_MAX + 12];
	uint32_t hdr[3] = { request, VHOSTMSG_VERSION | VHOSTMSG_F_REPLY, size };
	ssize_t n;

	if (size > sizeof(buf) - VHOSTMSG_HDR)
		return -EMSGSIZE;
	memcpy(buf, hdr, sizeof(hdr));
	memcpy(buf + VHOSTMSG_HDR, payload, size);
	n = write(v->cfd, buf, VHOSTMSG_HDR + size);
	if (n != (ssize_t)(VHOSTMSG_HDR + size))
		return n < 0 ? -errno : -EIO;
	return 0;
}

static int reply_u64(struct vhost *v, uint32_t request, uint64_t val)
{
	return reply(v, request, &val, sizeof(val));
}

/* Move @fd to the fixed number @slot (closing what was there). */
static int to_slot(int fd, int slot)
{
	if (fd == slot)
		return slot;
	if (dup3(fd, slot, O_CLOEXEC) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	return slot;
}

/* Map every region of @m; on failure nothing stays mapped. */
static int set_mem_table(struct vhost *v, const struct vhostmsg *m, int *fds)
{
	struct vring_mem mem = { .n = m->nregions };
	void *map[VRING_MAX_REGIONS] = { 0 };
	size_t len[VRING_MAX_REGIONS] = { 0 };
	int rc = 0;

	for (uint32_t i = 0; i < m->nregions && !rc; i++) {
		const struct vhostmsg_region *r = &m->region[i];
		struct stat st;

		len[i] = (size_t)(r->mmap_offset + r->size);
		if (fstat(fds[i], &st) < 0 || !S_ISREG(st.st_mode) ||
		    (uint64_t)st.st_size < r->mmap_offset + r->size) {
			log_warn("vhost-user: memory region %u is not a file of %llu bytes", i,
				 (unsigned long long)(r->mmap_offset + r->size));
			rc = -EINVAL;
			break;
		}
		map[i] = mmap(NULL, len[i], PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (map[i] == MAP_FAILED) {
			rc = -errno;
			map[i] = NULL;
			log_warn("vhost-user: cannot map memory region %u: %s", i, strerror(-rc));
			break;
		}
		mem.gpa[i] = r->gpa;
		mem.size[i] = r->size;
		mem.uva[i] = r->uva;
		mem.hva[i] = (uint8_t *)map[i] + r->mmap_offset;
	}
	if (rc) {
		for (unsigned i = 0; i < VRING_MAX_REGIONS; i++)
			if (map[i])
				munmap(map[i], len[i]);
		return rc;
	}
	unmap_all(v);
	v->mem = mem;
	memcpy(v->map, map, sizeof(map));
	memcpy(v->map_len, len, sizeof(len));
	return 0;
}

/* Check and attach queue @qi's rings in the current memory table. */
static int queue_attach(struct vhost *v, int qi, bool keep_indices)
{
	struct vhost_queue *q = &v->q[qi];
	uint16_t last = q->ring.last_avail, used = q->ring.used_idx;
	uint64_t d, a, u;

	if (!q->num || !q->have_addr || vring_gpa_of_uva(&v->mem, q->desc_uva, &d) < 0 ||
	    vring_gpa_of_uva(&v->mem, q->avail_uva, &a) < 0 ||
	    vring_gpa_of_uva(&v->mem, q->used_uva, &u) < 0 ||
	    vring_setup(&q->ring, &v->mem, q->num, d, a, u) < 0) {
		q->started = false;
		return -EINVAL;
	}
	if (keep_indices) {
		q->ring.last_avail = last;
		q->ring.used_idx = used;
	} else {
		vring_start(&q->ring, q->base);
	}
	return 0;
}

static int vring_fd(struct vhost *v, const struct vhostmsg *m, int fd)
{
	struct vhost_queue *q = &v->q[m->index];
	int slot;

	if (m->request == VHOSTMSG_SET_VRING_ERR) {
		if (fd >= 0)
			close(fd); /* moat never reports errors this way */
		return 0;
	}
	slot = m->request == VHOSTMSG_SET_VRING_KICK ? VHOST_FD_KICK0 + (int)m->index :
						       VHOST_FD_CALL0 + (int)m->index;
	if (m->request == VHOSTMSG_SET_VRING_KICK) {
		if (q->kick >= 0 && fd < 0)
			close(q->kick);
		q->kick = -1;
		if (fd < 0) /* polling mode: moat only works from kicks */
			return -ENOTSUP;
		slot = to_slot(fd, slot);
		if (slot < 0)
			return slot;
		q->kick = slot;
		/* A new doorbell for a running queue: it goes on where it is. */
		if (queue_attach(v, (int)m->index, q->started) < 0) {
			log_warn("vhost-user: queue %u: its rings are not in guest memory",
				 m->index);
			return -EINVAL;
		}
		q->started = true;
		if (!vhost_has(v, VHOST_USER_F_PROTOCOL_FEATURES))
			q->enabled = true;
		log_debug("vhost-user: queue %u started (%u entries from %u)", m->index, q->num,
			  q->base);
		return 0;
	}
	if (q->call >= 0 && fd < 0)
		close(q->call);
	q->call = -1;
	if (fd < 0)
		return 0; /* no interrupts: the driver polls */
	slot = to_slot(fd, slot);
	if (slot < 0)
		return slot;
	q->call = slot;
	return 0;
}

static int apply(struct vhost *v, const struct vhostmsg *m, int *fds, bool *replied)
{
	struct vhost_queue *q = &v->q[m->index < VHOST_NQ ? m->index : 0];

	switch (m->request) {
	case VHOSTMSG_GET_FEATURES:
		*replied = true;
		return reply_u64(v, m->request, vhostuser_offered(v));
	case VHOSTMSG_SET_FEATURES:
		if (m->u64 & ~vhostuser_offered(v))
			return -EINVAL;
		v->features = m->u64;
		v->hdr_len = vhost_has(v, VIRTIO_F_VERSION_1) ||
					     vhost_has(v, VIRTIO_NET_F_MRG_RXBUF) ?
				     12 :
				     10;
		return 0;
	case VHOSTMSG_GET_PROTOCOL_FEATURES:
		*replied = true;
		return reply_u64(v, m->request, vhostuser_protocol_offered);
	case VHOSTMSG_SET_PROTOCOL_FEATURES:
		v->protocol = m->u64 & vhostuser_protocol_offered;
		return 0;
	case VHOSTMSG_GET_QUEUE_NUM:
		*replied = true;
		return reply_u64(v, m->request, VHOST_NQ);
	case VHOSTMSG_SET_OWNER:
		return 0;
	case VHOSTMSG_RESET_OWNER:
		vhostuser_reset(v);
		return 0;
	case VHOSTMSG_SET_MEM_TABLE: {
		int rc = set_mem_table(v, m, fds);

		for (unsigned i = 0; i < m->nregions; i++)
			close(fds[i]);
		if (rc < 0)
			return rc;
		for (int i = 0; i < VHOST_NQ; i++)
			if (v->q[i].started && queue_attach(v, i, true) < 0)
				return -EINVAL; /* a running queue left guest memory */
		return 0;
	}
	case VHOSTMSG_SET_VRING_NUM:
		if (q->started)
			return -EBUSY; /* a running queue cannot change under the driver */
		q->num = m->num;
		return 0;
	case VHOSTMSG_SET_VRING_BASE:
		if (q->started)
			return -EBUSY;
		q->base = (uint16_t)m->num;
		return 0;
	case VHOSTMSG_SET_VRING_ADDR:
		if (q->started)
			return -EBUSY;
		q->desc_uva = m->desc_uva;
		q->avail_uva = m->avail_uva;
		q->used_uva = m->used_uva;
		q->have_addr = true;
		return 0;
	case VHOSTMSG_GET_VRING_BASE: {
		uint32_t state[2] = { m->index, q->started ? q->ring.last_avail : q->base };

		/* The queue stops: the VMM takes it over or gives it to the next backend. */
		q->base = (uint16_t)state[1];
		q->started = q->enabled = false;
		if (q->kick >= 0)
			close(q->kick);
		q->kick = -1;
		*replied = true;
		return reply(v, m->request, state, sizeof(state));
	}
	case VHOSTMSG_SET_VRING_KICK:
	case VHOSTMSG_SET_VRING_CALL:
	case VHOSTMSG_SET_VRING_ERR:
		return vring_fd(v, m, m->has_fd ? fds[0] : -1);
	case VHOSTMSG_SET_VRING_ENABLE:
		q->enabled = m->num != 0;
		return 0;
	case VHOSTMSG_GET_CONFIG: {
		/* virtio_net_config: the MAC is QEMU's own; no status or MTU offered. */
		uint8_t cfg[12 + VHOSTMSG_CONFIG_MAX] = { 0 };
		uint32_t hdr[3] = { m->cfg_offset, m->cfg_size, 0 };

		memcpy(cfg, hdr, sizeof(hdr));
		*replied = true;
		return reply(v, m->request, cfg, 12 + m->cfg_size);
	}
	}
	return -ENOTSUP;
}

static int write_failed(struct vhost *v, int rc)
{
	log_warn("vhost-user: cannot answer the VMM (%s); dropping it", strerror(-rc));
	v->drop = true;
	return -1;
}

/**
 * vhostuser_input() - read and apply one message from the VMM
 * @v:	moat-vhost with a connection
 *
 * Return: 0 (a message was handled, or none was waiting), 1 if the VMM
 * closed the connection, or -1 if it must be dropped (->drop is set; the
 * reason is logged and counted).
 */
int vhostuser_input(struct vhost *v)
{
	uint8_t buf[VHOSTMSG_MAX];
	int fds[VRING_MAX_REGIONS];
	unsigned nfds = 0;
	struct vhostmsg m;
	const char *why;
	uint32_t size = 0;
	bool replied = false;
	int rc;

	for (unsigned i = 0; i < VRING_MAX_REGIONS; i++)
		fds[i] = -1;
	rc = read_full(v->cfd, buf, VHOSTMSG_HDR, false, fds, VRING_MAX_REGIONS, &nfds);
	if (rc == 1 || rc == -ECONNRESET) {
		close_fds(fds, nfds);
		return 1;
	}
	if (rc == -EAGAIN && !nfds)
		return 0;
	if (rc == 0) {
		memcpy(&size, buf + 8, sizeof(size));
		if (size > VHOSTMSG_MAX - VHOSTMSG_HDR)
			rc = -EMSGSIZE;
		else if (size)
			rc = read_full(v->cfd, buf + VHOSTMSG_HDR, size, true, fds,
				       VRING_MAX_REGIONS, &nfds);
		if (rc == -ECONNRESET) { /* the VMM left in the middle: nothing is applied */
			close_fds(fds, nfds);
			return 1;
		}
	}
	if (rc < 0) {
		close_fds(fds, nfds);
		log_warn("vhost-user: reading a message: %s; dropping the VMM",
			 rc == -EMSGSIZE ? "too long" : strerror(-rc));
		v->drop = true;
		return -1;
	}
	rc = vhostmsg_check(buf, VHOSTMSG_HDR + size, nfds, &m, &why);
	if (rc == -EBADMSG) {
		close_fds(fds, nfds);
		log_warn("vhost-user: a broken message (%s); dropping the VMM", why);
		v->drop = true;
		return -1;
	}
	if (rc == 0) {
		log_debug("vhost-user: request %u flags %#x size %u fds %u", m.request, m.flags,
			  size, nfds);
		rc = apply(v, &m, fds, &replied);
	} else
		close_fds(fds, nfds); /* -ENOTSUP: nothing was taken */
	if (replied)
		return rc < 0 ? write_failed(v, rc) : 0;
	if (rc == -ENOTSUP || rc == -EBUSY)
		log_debug("vhost-user: request %u %s", m.request,
			  rc == -EBUSY ? "refused: its queue is running" : "not implemented");
	else if (rc < 0) {
		log_warn("vhost-user: request %u refused (%s); dropping the VMM", m.request,
			 strerror(-rc));
		v->drop = true;
		return -1;
	}
	if ((m.flags & VHOSTMSG_F_NEED_REPLY) &&
	    (v->protocol & VHOST_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
		int wr = reply_u64(v, m.request, rc < 0 ? 1 : 0);

		if (wr < 0)
			return write_failed(v, wr);
	}
	return 0;
}
