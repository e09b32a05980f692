/* SPDX-License-Identifier: MIT */
/*
 * guest.c - the guest port: frames between the guest and the frame rings
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's loop. The guest side is a tap device for now
 * (tap:IFNAME[@NETNS_PATH], opened inside that namespace as slirp4netns
 * does, or tap-fd:N). Guest -> stack: on readability we read frames
 * straight into reserved g2s records (no copy), check only the length, and
 * publish the batch with one flush (one wake at most). When g2s is full we
 * stop reading: the kernel's tap queue holds the rest and we resume when
 * the netstack releases space. Stack -> guest: on our eventfd we write
 * s2g records straight from the ring to the tap (the bytes are not parsed
 * here, so a peek without a copy is safe), and wait for POLLOUT when the
 * tap is full. The guest port does no parsing beyond the length check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/ring.h"
#include "supervisor/guest.h"

#define BATCH	64

struct guest {
	struct guest_spec spec;
	int fd;				/* tap */
	struct loop *loop;
	struct loop_watch w_fd, w_efd;
	uint32_t fd_events;
	struct ring g2s, s2g;
	struct moat_guest_counters *cnt;
	uint32_t max_frame;		/* mtu + 14 */
	bool waiting_g2s;		/* reading paused: g2s full */
	bool waiting_out;		/* writing paused: tap full */
};

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/**
 * guest_spec_parse() - parse a --guest argument
 * @s:		the argument
 * @out:	parsed spec
 * @err:	error text
 * @errlen:	size of @err
 *
 * Return: 0 or -1.
 */
int guest_spec_parse(const char *s, struct guest_spec *out, char *err, size_t errlen)
{
	const char *colon = strchr(s, ':');
	const char *arg = colon ? colon + 1 : "";
	size_t kl = colon ? (size_t)(colon - s) : strlen(s);

	memset(out, 0, sizeof(*out));
	out->fd = -1;
#define KIND(name) (kl == strlen(name) && !strncmp(s, name, kl))
	if (KIND("tap")) {
		const char *at = strchr(arg, '@');
		size_t il = at ? (size_t)(at - arg) : strlen(arg);

		out->kind = GUEST_TAP;
		if (il == 0 || il >= IFNAMSIZ) {
			snprintf(err, errlen, "'%s': tap needs an interface name of 1..%d characters",
				 s, IFNAMSIZ - 1);
			return -1;
		}
		memcpy(out->ifname, arg, il);
		if (at) {
			if (!at[1] || strlen(at + 1) >= sizeof(out->netns)) {
				snprintf(err, errlen, "'%s': bad namespace path after '@'", s);
				return -1;
			}
			strcpy(out->netns, at + 1);
		}
		return 0;
	}
	if (KIND("tap-fd") || KIND("stream-fd") || KIND("dgram-fd")) {
		char *end;
		long v = strtol(arg, &end, 10);

		if (!*arg || *end || v < 0 || v > 65535) {
			snprintf(err, errlen, "'%s': expected a descriptor number", s);
			return -1;
		}
		out->fd = (int)v;
		out->kind = KIND("tap-fd") ? GUEST_TAP_FD : KIND("stream-fd") ? GUEST_STREAM_FD
									: GUEST_DGRAM_FD;
		return 0;
	}
	if (KIND("stream") || KIND("dgram") || KIND("shm")) {
		if (!*arg || strlen(arg) >= sizeof(out->path)) {
			snprintf(err, errlen, "'%s': expected a socket path of 1..%zu characters", s,
				 sizeof(out->path) - 1);
			return -1;
		}
		strcpy(out->path, arg);
		out->kind = KIND("stream") ? GUEST_STREAM : KIND("dgram") ? GUEST_DGRAM : GUEST_SHM;
		return 0;
	}
#undef KIND
	snprintf(err, errlen, "'%s': unknown frontend (tap:, tap-fd:, stream:, stream-fd:, "
		 "dgram:, dgram-fd:, shm:)", s);
	return -1;
}

static int open_tap(const struct guest_spec *spec, char *err, size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int self_ns = -1, target_ns = -1, fd = -1, saved;

	if (spec->netns[0]) {
		self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		target_ns = open(spec->netns, O_RDONLY | O_CLOEXEC);
		if (self_ns < 0 || target_ns < 0) {
			snprintf(err, errlen, "cannot open network namespace %s: %s", spec->netns,
				 strerror(errno));
			goto out;
		}
		if (setns(target_ns, CLONE_NEWNET) < 0) {
			snprintf(err, errlen, "cannot enter network namespace %s: %s", spec->netns,
				 strerror(errno));
			goto out;
		}
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(errno));
	} else {
		memcpy(ifr.ifr_name, spec->ifname, strlen(spec->ifname));
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			snprintf(err, errlen, "cannot attach to tap %s%s%s: %s", spec->ifname,
				 spec->netns[0] ? " in " : "", spec->netns, strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	if (self_ns >= 0 && target_ns >= 0 && setns(self_ns, CLONE_NEWNET) < 0) {
		saved = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
		snprintf(err, errlen, "cannot return to our network namespace: %s", strerror(saved));
	}
out:
	if (self_ns >= 0)
		close(self_ns);
	if (target_ns >= 0)
		close(target_ns);
	return fd;
}

/**
 * guest_open() - open the guest side before the children are forked
 * @spec:	parsed --guest
 * @err:	error text (one line, says what to fix)
 * @errlen:	size of @err
 *
 * Context: supervisor, still privileged.
 * Return: the port, or NULL with @err set.
 */
struct guest *guest_open(const struct guest_spec *spec, char *err, size_t errlen)
{
	struct guest *g;
	int fd = -1;

	switch (spec->kind) {
	case GUEST_TAP:
		fd = open_tap(spec, err, errlen);
		break;
	case GUEST_TAP_FD:
		if (fcntl(spec->fd, F_GETFD) < 0) {
			snprintf(err, errlen, "tap-fd:%d is not an open descriptor", spec->fd);
			return NULL;
		}
		fd = spec->fd;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		break;
	default:
		snprintf(err, errlen, "this frontend is not available yet");
		return NULL;
	}
	if (fd < 0)
		return NULL;
	g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	g->spec = *spec;
	g->fd = fd;
	return g;
}

static void set_fd_events(struct guest *g)
{
	uint32_t ev = (g->waiting_g2s ? 0 : EPOLLIN) | (g->waiting_out ? EPOLLOUT : 0);

	if (ev != g->fd_events) {
		loop_mod(g->loop, &g->w_fd, ev);
		g->fd_events = ev;
	}
}

/* Guest -> g2s: read frames into reserved records, publish once. */
static void guest_read(struct guest *g)
{
	uint64_t frames = 0, bytes = 0;

	for (int i = 0; i < BATCH; i++) {
		void *p;
		ssize_t n;
		int rc = ring_reserve(&g->g2s, g->max_frame + 1, &p);

		if (rc == -ENOBUFS) {
			if (!ring_wait_space(&g->g2s, g->max_frame + 1)) {
				g->waiting_g2s = true;
				break;
			}
			continue;
		}
		if (rc < 0) {
			log_error("g2s ring: %s", strerror(-rc));
			break;
		}
		n = read(g->fd, p, g->max_frame + 1);
		if (n < 0)
			break;
		if (n < 14) {
			count(&g->cnt->drops[MOAT_DROP_TOO_SHORT], 1);
			continue;
		}
		if (n > g->max_frame) {
			count(&g->cnt->drops[MOAT_DROP_TOO_LONG], 1);
			continue;
		}
		ring_commit(&g->g2s, MOAT_REC_FRAME, (uint32_t)n);
		frames++;
		bytes += (uint64_t)n;
	}
	count(&g->cnt->tx_frames, frames);
	count(&g->cnt->tx_bytes, bytes);
	ring_flush(&g->g2s);
}

/* s2g -> guest: write records straight from the ring. */
static void guest_write(struct guest *g)
{
	uint64_t frames = 0, bytes = 0;

	g->waiting_out = false;
	for (;;) {
		const uint8_t *p;
		uint32_t type;
		int n = ring_peek(&g->s2g, &type, &p);

		if (n == -EAGAIN) {
			if (ring_prepare_sleep(&g->s2g))
				break;
			continue;
		}
		if (n < 0) {
			log_error("s2g ring corrupt; the netstack is not trusted any more");
			break;
		}
		if (type == MOAT_REC_FRAME && n >= 14 && (uint32_t)n <= g->max_frame) {
			if (write(g->fd, p, (size_t)n) < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
				g->waiting_out = true;
				break;
			}
			frames++;
			bytes += (uint64_t)n;
		}
		ring_consume(&g->s2g);
		if (frames % BATCH == 0)
			ring_release(&g->s2g);
	}
	ring_release(&g->s2g);
	count(&g->cnt->rx_frames, frames);
	count(&g->cnt->rx_bytes, bytes);
}

static void on_fd(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;

	if (events & EPOLLOUT)
		guest_write(g);
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		guest_read(g);
	set_fd_events(g);
}

static void on_efd(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	uint64_t v;

	(void)events;
	if (read(w->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (!g->waiting_out)
		guest_write(g);
	if (g->waiting_g2s) {
		g->waiting_g2s = false;
		guest_read(g);
	}
	set_fd_events(g);
}

/**
 * guest_start() - attach the rings and start moving frames
 * @g:		port from guest_open()
 * @l:		the supervisor's loop
 * @r:		the region (supervisor's full mapping)
 * @guest_efd:	our eventfd (s2g data, g2s space)
 * @netstack_efd: the netstack's eventfd (g2s data, s2g space)
 * @pcap_path:	--pcap, or NULL
 *
 * Return: 0 or -1.
 */
int guest_start(struct guest *g, struct loop *l, struct region *r, int guest_efd,
		int netstack_efd, const char *pcap_path)
{
	g->loop = l;
	g->cnt = r->part[MOAT_PART_CNT_GUEST];
	g->max_frame = r->hdr.mtu + 14;
	(void)pcap_path;
	ring_attach(&g->g2s, r->part[MOAT_PART_RING_G2S], region_ring_capacity(r, MOAT_PART_RING_G2S),
		    netstack_efd, guest_efd, &g->cnt->wakes_sent);
	ring_attach(&g->s2g, r->part[MOAT_PART_RING_S2G], region_ring_capacity(r, MOAT_PART_RING_S2G),
		    guest_efd, netstack_efd, &g->cnt->wakes_sent);
	g->w_fd = (struct loop_watch){ .fd = g->fd, .cb = on_fd, .arg = g };
	g->w_efd = (struct loop_watch){ .fd = guest_efd, .cb = on_efd, .arg = g };
	g->fd_events = EPOLLIN;
	if (loop_add(l, &g->w_fd, EPOLLIN) < 0 || loop_add(l, &g->w_efd, EPOLLIN) < 0)
		return -1;
	ring_prepare_sleep(&g->s2g);
	return 0;
}

/**
 * guest_close() - close the guest side
 * @g:	port (may be NULL)
 */
void guest_close(struct guest *g)
{
	if (!g)
		return;
	close(g->fd);
	free(g);
}
