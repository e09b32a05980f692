/* SPDX-License-Identifier: MIT */
/*
 * shm_vmm.c - a stand-in VMM for `moat run --guest shm:PATH`
 *
 * Theory of Operation
 * -------------------
 * A test tool, not part of moat, and a worked example of docs/shm.md. It
 * includes nothing of moat's but the public header shm/moat_shm.h and
 * implements the ring protocol from that header's description alone, as a
 * third-party VMM would. It connects to PATH, receives the region's memfd
 * and the two eventfds (SCM_RIGHTS), maps and validates the region, and
 * bridges a tap device in the current network namespace (run it under
 * `ip netns exec GUEST`) to the rings:
 *   tap -> g2s: read frames straight into records, publish a batch with one
 *	release store of head, write the netstack's eventfd only if the
 *	consumer said it sleeps (cons_waiting);
 *   s2g -> tap: validate each record (the region is shared with the
 *	netstack, which we do not trust), write the frame, hand the space
 *	back with one release store of tail per batch and wake the netstack
 *	if it waits for space (prod_waiting); before sleeping, announce it
 *	(cons_waiting = 1, full fence, look again).
 * When g2s is full we stop reading the tap and sleep until the netstack
 * hands space back. We keep the guest port's frame counters, which belong
 * to the VMM in shm mode. Exits 0 when moat closes the connection.
 *
 * usage: shm_vmm [-w SECONDS] TAP PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shm/moat_shm.h"

#define BATCH 64
#define HDR   ((uint64_t)sizeof(struct moat_rec_hdr))

struct vring {
	struct moat_ring_ctl *ctl;
	uint8_t *data;
	uint64_t cap, mask;
	uint64_t head, tail; /* our private copy of the one we own */
};

static int vmm_efd, ns_efd;
static uint32_t max_frame;
static uint32_t max_rec; /* largest g2s/s2g payload: a frame, or a vnet header and a segment */
static bool vnet;	 /* the header's guest_offloads: records carry a virtio_net_hdr */
static struct moat_guest_counters *cnt;

static void die(const char *what)
{
	fprintf(stderr, "shm_vmm: %s: %s\n", what, errno ? strerror(errno) : "invalid");
	exit(1);
}

static uint64_t rec_size(uint32_t len)
{
	return (HDR + len + MOAT_REC_ALIGN - 1) & ~(uint64_t)(MOAT_REC_ALIGN - 1);
}

static void wake(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		die("eventfd write");
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Receive the hello and the three descriptors. */
static void handshake(int sock, int fds[MOAT_SHM_NFDS], struct moat_shm_hello *h)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MOAT_SHM_NFDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { h, sizeof(*h) };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

	errno = 0;
	if (n != (ssize_t)sizeof(*h) || (mh.msg_flags & MSG_CTRUNC))
		die("hello");
	if (h->magic != MOAT_SHM_HELLO_MAGIC || h->version != MOAT_SHM_VERSION ||
	    h->nfds != MOAT_SHM_NFDS)
		die("hello: not moat, or another version");
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int) * MOAT_SHM_NFDS))
		die("hello: descriptors");
	memcpy(fds, CMSG_DATA(c), sizeof(int) * MOAT_SHM_NFDS);
}

/* Map the region and check the header before trusting any offset. */
static uint8_t *map_region(int fd, uint64_t size, struct moat_shm_header *hdr)
{
	struct stat st;
	uint8_t *base;
	uint64_t end = 0;

	if (fstat(fd, &st) < 0)
		die("fstat");
	errno = 0;
	if ((uint64_t)st.st_size != size || size < sizeof(*hdr))
		die("region size");
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		die("mmap");
	memcpy(hdr, base, sizeof(*hdr)); /* a private copy: nobody changes it under us */
	if (hdr->magic != MOAT_SHM_MAGIC || hdr->version != MOAT_SHM_VERSION ||
	    hdr->header_size != sizeof(*hdr) || hdr->region_size != size || hdr->mtu < 576 ||
	    hdr->mtu > 65520)
		die("region header");
	for (int p = 0; p < MOAT_PART_COUNT; p++) {
		const struct moat_part_desc *d = &hdr->part[p];

		if (d->off < end || d->size > size || d->off > size - d->size)
			die("region part");
		end = d->off + d->size;
	}
	for (int p = MOAT_PART_RING_G2S; p <= MOAT_PART_RING_S2G; p++)
		if (hdr->part[p].size <= MOAT_RING_DATA_OFF ||
		    !pow2(hdr->part[p].size - MOAT_RING_DATA_OFF))
			die("ring size");
	return base;
}

static void ring_init(struct vring *r, uint8_t *base, const struct moat_part_desc *d)
{
	r->ctl = (struct moat_ring_ctl *)(base + d->off);
	r->data = base + d->off + MOAT_RING_DATA_OFF;
	r->cap = d->size - MOAT_RING_DATA_OFF;
	r->mask = r->cap - 1;
	/* Rings keep their positions across VMMs: start where the last one stopped. */
	r->head = __atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE);
	r->tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);
}

/* --- g2s: we produce --- */

static uint64_t g2s_free(struct vring *r)
{
	uint64_t used = r->head - __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);

	errno = 0;
	if (used > r->cap)
		die("g2s: the netstack published a bad tail");
	return r->cap - used;
}

/* Would a @len record fit now, counting the wrap it may need? */
static bool g2s_room(struct vring *r, uint32_t len)
{
	uint64_t need = rec_size(len), contig = r->cap - (r->head & r->mask);
	uint64_t avail = g2s_free(r);

	return need > contig ? avail >= contig + need : avail >= need;
}

/* Room for a @len record: returns its payload, or NULL when full. */
static uint8_t *g2s_reserve(struct vring *r, uint32_t len)
{
	uint64_t need = rec_size(len), pos = r->head & r->mask, contig = r->cap - pos;
	uint64_t avail = g2s_free(r);

	if (need > contig) {
		if (avail < contig + need)
			return NULL;
		if (contig >= HDR) {
			struct moat_rec_hdr w = { 0, MOAT_REC_WRAP };

			memcpy(r->data + pos, &w, sizeof(w));
		}
		r->head += contig;
		pos = 0;
	} else if (avail < need) {
		return NULL;
	}
	return r->data + pos + HDR;
}

static void g2s_commit(struct vring *r, uint32_t len)
{
	struct moat_rec_hdr h = { len, vnet ? MOAT_REC_FRAME_VNET : MOAT_REC_FRAME };

	memcpy(r->data + (r->head & r->mask), &h, sizeof(h));
	r->head += rec_size(len);
}

static void g2s_publish(struct vring *r)
{
	__atomic_store_n(&r->ctl->head, r->head, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&r->ctl->cons_waiting, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&r->ctl->cons_waiting, 0, __ATOMIC_RELAXED))
		wake(ns_efd);
}

/* Full: say we wait for space, then look again. Return: true to sleep. */
static bool g2s_wait_space(struct vring *r)
{
	__atomic_store_n(&r->ctl->prod_waiting, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (g2s_room(r, max_rec + 1)) {
		__atomic_store_n(&r->ctl->prod_waiting, 0, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

/* --- s2g: we consume --- */

/* Next frame, validated. Return: length, 0 if empty. Corrupt: exit. */
static uint32_t s2g_next(struct vring *r, const uint8_t **payload, bool *is_vnet)
{
	for (;;) {
		uint64_t head = __atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE);
		uint64_t avail = head - r->tail, pos = r->tail & r->mask, contig = r->cap - pos;
		struct moat_rec_hdr h;

		errno = 0;
		if (avail > r->cap)
			die("s2g: bad head");
		if (!avail)
			return 0;
		if (contig < HDR) {
			if (avail < contig)
				die("s2g: bad wrap");
			r->tail += contig;
			continue;
		}
		if (avail < HDR)
			die("s2g: short record");
		memcpy(&h, r->data + pos, sizeof(h)); /* copy the header once */
		if (h.type == MOAT_REC_WRAP) {
			if (avail < contig)
				die("s2g: bad wrap");
			r->tail += contig;
			continue;
		}
		if (rec_size(h.len) > contig || rec_size(h.len) > avail)
			die("s2g: bad record length");
		r->tail += rec_size(h.len);
		if (h.type == MOAT_REC_FRAME_VNET && vnet && h.len >= 10 + 14 && h.len <= max_rec) {
			*payload = r->data + pos + HDR;
			*is_vnet = true;
			return h.len;
		}
		if (h.type != MOAT_REC_FRAME || h.len < 14 || h.len > max_frame)
			continue; /* not a frame the guest may get */
		*payload = r->data + pos + HDR;
		*is_vnet = false;
		return h.len;
	}
}

static void s2g_release(struct vring *r)
{
	__atomic_store_n(&r->ctl->tail, r->tail, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&r->ctl->prod_waiting, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&r->ctl->prod_waiting, 0, __ATOMIC_RELAXED))
		wake(ns_efd);
}

/* Announce we sleep; return false if records arrived meanwhile. */
static bool s2g_prepare_sleep(struct vring *r)
{
	__atomic_store_n(&r->ctl->cons_waiting, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE) != r->tail) {
		__atomic_store_n(&r->ctl->cons_waiting, 0, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

/*
 * With offloads (the header's guest_offloads) the tap reads and writes a
 * virtio_net_hdr before each frame, the layout of struct moat_vnet_hdr: the
 * records pass through as they are.
 */
static int tap_open(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		die("/dev/net/tun");
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		die(name);
	if (ioctl(fd, TUNSETOFFLOAD, vnet ? TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 : 0) < 0 && vnet)
		die("TUNSETOFFLOAD");
	return fd;
}

static void add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
	struct moat_shm_header hdr;
	struct moat_shm_hello hello;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vring g2s, s2g;
	int fds[MOAT_SHM_NFDS], sock, tfd, opt, wait_s = 10;
	bool g2s_full = false;
	uint8_t *base;

	while ((opt = getopt(argc, argv, "w:")) != -1) {
		if (opt != 'w') {
			fprintf(stderr, "usage: shm_vmm [-w SECONDS] TAP PATH\n");
			return 1;
		}
		wait_s = atoi(optarg);
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: shm_vmm [-w SECONDS] TAP PATH\n");
		return 1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[optind + 1]);
	for (int i = 0; i < wait_s * 10 && access(sa.sun_path, F_OK) < 0; i++)
		usleep(100000);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(sa.sun_path);
	handshake(sock, fds, &hello);
	base = map_region(fds[MOAT_SHM_FD_REGION], hello.region_size, &hdr);
	vmm_efd = fds[MOAT_SHM_FD_VMM];
	ns_efd = fds[MOAT_SHM_FD_NETSTACK];
	max_frame = hdr.mtu + 14;
	vnet = hdr.guest_offloads != 0;
	max_rec = vnet ? 10 + MOAT_FRAME_MAX_GSO : max_frame;
	cnt = (struct moat_guest_counters *)(base + hdr.part[MOAT_PART_CNT_GUEST].off);
	ring_init(&g2s, base, &hdr.part[MOAT_PART_RING_G2S]);
	ring_init(&s2g, base, &hdr.part[MOAT_PART_RING_S2G]);
	tfd = tap_open(argv[optind]);
	fprintf(stderr, "shm_vmm: %s <-> %s (region %llu bytes, mtu %u)\n", argv[optind],
		sa.sun_path, (unsigned long long)hello.region_size, hdr.mtu);

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = tfd, .events = g2s_full ? 0 : POLLIN },
			{ .fd = vmm_efd, .events = POLLIN },
			{ .fd = sock, .events = POLLIN },
		};
		uint64_t frames = 0, bytes = 0, v;
		const uint8_t *f;
		uint32_t len;
		bool rv;

		/* s2g -> tap, then sleep only once announced. */
		while ((len = s2g_next(&s2g, &f, &rv)) > 0) {
			static const struct moat_vnet_hdr none;
			struct iovec iov[2] = { { (void *)&none, sizeof(none) },
						{ (void *)f, len } };
			ssize_t want = (ssize_t)len + (vnet && !rv ? 10 : 0);

			/* A plain frame on a tap with headers gets an empty one. */
			if ((vnet && !rv ? writev(tfd, iov, 2) : write(tfd, f, len)) == want) {
				frames++;
				bytes += len - (rv ? 10 : 0);
			}
			if (frames % BATCH == 0)
				s2g_release(&s2g);
		}
		s2g_release(&s2g);
		add(&cnt->rx_frames, frames);
		add(&cnt->rx_bytes, bytes);
		if (!s2g_prepare_sleep(&s2g))
			continue;
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[2].revents) {
			fprintf(stderr, "shm_vmm: moat closed the connection\n");
			return 0;
		}
		if (p[1].revents & POLLIN) {
			if (read(vmm_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				die("eventfd read");
			g2s_full = false; /* look again below */
		}
		if (!(p[0].revents & POLLIN) && !(p[1].revents & POLLIN))
			continue;
		/* tap -> g2s, a batch per publish. */
		frames = bytes = 0;
		for (int i = 0; i < BATCH; i++) {
			uint8_t *dst = g2s_reserve(&g2s, max_rec + 1);
			uint32_t vl = vnet ? 10 : 0;
			ssize_t n;

			if (!dst) {
				if (g2s_wait_space(&g2s)) {
					g2s_full = true;
					break;
				}
				i--;
				continue;
			}
			n = read(tfd, dst, max_rec + 1);
			if (n < 0)
				break;
			if (n < 14 + vl || n > max_rec) {
				add(&cnt->drops[n < 14 + vl ? MOAT_DROP_TOO_SHORT :
							      MOAT_DROP_TOO_LONG],
				    1);
				continue;
			}
			g2s_commit(&g2s, (uint32_t)n);
			frames++;
			bytes += (uint64_t)n - vl;
		}
		g2s_publish(&g2s);
		add(&cnt->tx_frames, frames);
		add(&cnt->tx_bytes, bytes);
	}
}
