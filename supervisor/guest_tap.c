/* SPDX-License-Identifier: MIT */
/*
 * guest_tap.c - the tap frontend: tap:IFNAME[@NETNS_PATH] and tap-fd:N
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's loop (guest.c dispatches here). The tap is
 * opened inside NETNS_PATH (setns, open, setns back), as slirp4netns does,
 * or inherited as tap-fd:N. It must already exist: moat attaches to it and
 * never creates one, so a typo is an error instead of a new, unconfigured
 * device.
 *
 * Guest -> g2s: a tap hands out one frame per read(2), so we read straight
 * into reserved g2s records (no copy), check only the length, and publish
 * the batch with one flush. When g2s is full we stop reading: the kernel's
 * tap queue holds the rest, and our eventfd fires when the netstack
 * releases space; a corrupt g2s (guest_g2s_blocked()) stops reading for
 * good, and the tap leaves the epoll set while there is nothing to wait
 * for (a deleted tap would report EPOLLERR forever). s2g -> guest: records are written straight from the ring
 * (the bytes are not parsed here, so no copy is needed); when the tap's
 * queue is full (EAGAIN, or ENOBUFS) we wait for EPOLLOUT.
 *
 * Offloads. Unless --offload off, the tap is opened with IFF_VNET_HDR and
 * asked (TUNSETOFFLOAD) for partial checksums and TCP segmentation both
 * ways: every read and write then starts with a 10-byte virtio_net_hdr,
 * the guest's side sends TCP segments of up to 64 KiB that nobody cut, and
 * takes such segments from moat, cutting them itself. Records then carry
 * the header as MOAT_REC_FRAME_VNET (the netstack validates it); frames
 * the netstack sends plain get a zero header in front. A kernel that
 * refuses is logged once and counted (offloads_refused), and the tap runs
 * with plain frames as before. tap-fd:N uses the header when the
 * descriptor was opened with IFF_VNET_HDR (TUNGETIFF says so).
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
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/guest_int.h"

struct tap {
	int fd;
	struct loop_watch w;
	uint32_t events;
	bool parked; /* watch removed: nothing to wait for */
	bool vnet;   /* reads and writes start with a virtio_net_hdr */
};

#define TAP_VNET_LEN ((int)sizeof(struct moat_vnet_hdr))

_Static_assert(sizeof(struct moat_vnet_hdr) == 10, "the tap's virtio_net_hdr is 10 bytes");

static int attach_tap(const struct guest_spec *spec, bool vnet, char *err, size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) };
	const char *in = spec->netns[0] ? " in " : "";
	int fd;

	/* TUNSETIFF would create a missing device: refuse that instead. */
	if (!if_nametoindex(spec->ifname)) {
		snprintf(err, errlen,
			 "tap %s does not exist%s%s (create it first, e.g. "
			 "`ip tuntap add dev %s mode tap`)",
			 spec->ifname, in, spec->netns, spec->ifname);
		return -1;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(errno));
		return -1;
	}
	memcpy(ifr.ifr_name, spec->ifname, strlen(spec->ifname));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;

		if (e == EBUSY)
			snprintf(err, errlen, "tap %s%s%s is already attached to another process",
				 spec->ifname, in, spec->netns);
		else if (e == EINVAL)
			snprintf(err, errlen,
				 "%s%s%s is not a tap device (or not one with "
				 "IFF_NO_PI)",
				 spec->ifname, in, spec->netns);
		else if (e == EPERM)
			snprintf(err, errlen,
				 "no permission to attach to tap %s%s%s (it belongs to "
				 "another user, or moat lacks CAP_NET_ADMIN)",
				 spec->ifname, in, spec->netns);
		else
			snprintf(err, errlen, "cannot attach to tap %s%s%s: %s", spec->ifname, in,
				 spec->netns, strerror(e));
		close(fd);
		return -1;
	}
	return fd;
}

static int open_tap(const struct guest_spec *spec, bool vnet, char *err, size_t errlen)
{
	int self_ns = -1, target_ns = -1, fd = -1, saved;

	if (!spec->netns[0])
		return attach_tap(spec, vnet, err, errlen);
	self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	target_ns = open(spec->netns, O_RDONLY | O_CLOEXEC);
	if (self_ns < 0 || target_ns < 0) {
		if (target_ns < 0 && errno == ENOENT)
			snprintf(err, errlen, "network namespace %s does not exist", spec->netns);
		else
			snprintf(err, errlen, "cannot open network namespace %s: %s", spec->netns,
				 strerror(errno));
		goto out;
	}
	if (setns(target_ns, CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "cannot enter network namespace %s: %s", spec->netns,
			 errno == EINVAL ? "not a network namespace" : strerror(errno));
		goto out;
	}
	fd = attach_tap(spec, vnet, err, errlen);
	if (setns(self_ns, CLONE_NEWNET) < 0) {
		saved = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
		snprintf(err, errlen, "cannot return to our network namespace: %s",
			 strerror(saved));
	}
out:
	if (self_ns >= 0)
		close(self_ns);
	if (target_ns >= 0)
		close(target_ns);
	return fd;
}

/*
 * Ask the tap for offloads (its fd has IFF_VNET_HDR). Return: the
 * MOAT_OFFLOAD_* granted; 0 if the kernel refused even checksums.
 */
static uint32_t tap_offloads(int fd)
{
	int hdr = TAP_VNET_LEN;

	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
		return 0;
	if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0)
		return MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6;
	if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0)
		return MOAT_OFFLOAD_CSUM;
	return 0;
}

/*
 * A tap read without a virtio_net_hdr must not be offered segments: the
 * device keeps the offloads an earlier user set (TUNSETOFFLOAD outlives the
 * descriptor), and would hand us frames longer than the MTU.
 */
static int plain_tap(int fd)
{
	if (fd >= 0)
		ioctl(fd, TUNSETOFFLOAD, 0);
	return fd;
}

/* tap:IFNAME: with IFF_VNET_HDR and offloads if the kernel grants them. */
static int open_tap_offloaded(struct guest *g, struct tap *t, char *err, size_t errlen)
{
	const char *why = "IFF_VNET_HDR";

	if (g->spec.offload == GUEST_OFFLOAD_OFF)
		return plain_tap(open_tap(&g->spec, false, err, errlen));
	t->fd = open_tap(&g->spec, true, err, errlen);
	if (t->fd >= 0) {
		g->offloads = tap_offloads(t->fd);
		if (g->offloads) {
			t->vnet = true;
			return t->fd;
		}
		why = "TUNSETOFFLOAD";
		close(t->fd);
	}
	/* Refused: plain frames, as without offloads. */
	t->fd = plain_tap(open_tap(&g->spec, false, err, errlen));
	if (t->fd >= 0) {
		log_warn("guest port: tap %s refused %s: running without offloads", g->spec.ifname,
			 why);
		g->offloads_refused = true;
	}
	return t->fd;
}

static int guest_tap_open(struct guest *g, char *err, size_t errlen)
{
	struct tap *t = guest_fe_alloc(g, sizeof(*t), err, errlen);
	struct ifreq ifr;
	char what[32];

	if (!t)
		return -1;
	t->fd = -1;
	if (g->spec.kind == GUEST_TAP) {
		t->fd = open_tap_offloaded(g, t, err, errlen);
		return t->fd < 0 ? -1 : 0;
	}
	snprintf(what, sizeof(what), "tap-fd:%d", g->spec.fd);
	if (guest_check_fd(g->spec.fd, -1, what, err, errlen) < 0)
		return -1;
	t->fd = g->spec.fd;
	/* The descriptor's opener chose: a header if it set IFF_VNET_HDR. */
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(t->fd, TUNGETIFF, &ifr) < 0)
		return 0; /* not a tap (a test's socket): plain frames */
	t->vnet = ifr.ifr_flags & IFF_VNET_HDR;
	if (t->vnet && g->spec.offload != GUEST_OFFLOAD_OFF)
		g->offloads = tap_offloads(t->fd);
	else
		plain_tap(t->fd);
	return 0;
}

static void guest_tap_set_events(struct guest *g)
{
	struct tap *t = g->fe;
	uint32_t ev = (guest_input_off(g) ? 0 : EPOLLIN) | (g->waiting_out ? EPOLLOUT : 0);

	guest_watch_set(g, &t->w, &t->events, &t->parked, ev);
}

/*
 * One frame read into a reserved g2s record at @p (@n bytes, with the
 * virtio_net_hdr first if the tap has one): commit it, or count the drop.
 * Return: the frame's bytes committed, or 0.
 */
static uint32_t tap_commit(struct guest *g, struct tap *t, uint8_t *p, uint32_t n)
{
	uint32_t vlen = t->vnet ? TAP_VNET_LEN : 0;

	if (n < vlen + 14) {
		guest_count(&g->cnt->drops[MOAT_DROP_TOO_SHORT], 1);
		return 0;
	}
	if (n - vlen > (g->offloads ? MOAT_FRAME_MAX_GSO : g->max_frame)) {
		guest_count(&g->cnt->drops[MOAT_DROP_TOO_LONG], 1);
		return 0;
	}
	if (g->pcap)
		pcap_frame(g->pcap, p + vlen, n - vlen);
	if (g->offloads) {
		ring_commit(&g->g2s, MOAT_REC_FRAME_VNET, n);
	} else {
		/* A header with nothing in it (no offloads granted): drop it. */
		if (vlen)
			memmove(p, p + vlen, n - vlen);
		ring_commit(&g->g2s, MOAT_REC_FRAME, n - vlen);
	}
	return n - vlen;
}

/* Guest -> g2s: read frames into reserved records, publish once. */
static void guest_tap_input(struct guest *g)
{
	struct tap *t = g->fe;
	/* One byte more than a frame may be, to see oversize reads. */
	uint32_t want = (t->vnet ? TAP_VNET_LEN : 0) +
			(g->offloads ? MOAT_FRAME_MAX_GSO : g->max_frame) + 1;
	uint64_t frames = 0, bytes = 0;

	for (int i = 0; i < GUEST_BATCH; i++) {
		uint32_t len;
		void *p;
		ssize_t n;
		int rc = ring_reserve(&g->g2s, want, &p);

		if (rc < 0) {
			if (guest_g2s_blocked(g, rc, want))
				break;
			i--;
			continue;
		}
		n = read(t->fd, p, want);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				guest_gone(g, "the tap", strerror(errno));
			break;
		}
		len = tap_commit(g, t, p, (uint32_t)n);
		if (len) {
			frames++;
			bytes += len;
		}
	}
	guest_g2s_done(g, frames, bytes);
	guest_tap_set_events(g);
}

/* Write one s2g record to the tap; a plain frame gets a zero header if needed. */
static ssize_t tap_write(struct tap *t, const uint8_t *p, int n, bool vnet)
{
	static const struct moat_vnet_hdr none;
	struct iovec iov[2] = { { (void *)&none, sizeof(none) }, { (void *)p, (size_t)n } };

	if (vnet || !t->vnet)
		return write(t->fd, p, (size_t)n);
	return writev(t->fd, iov, 2);
}

/* s2g -> guest: write records straight from the ring. */
static void guest_tap_output(struct guest *g)
{
	struct tap *t = g->fe;
	uint64_t frames = 0, bytes = 0;
	const uint8_t *p;
	bool vnet;
	int n;

	g->waiting_out = false;
	while ((n = guest_s2g_next(g, &p, &vnet)) > 0) {
		int vlen = vnet ? TAP_VNET_LEN : 0;

		if (frames == GUEST_OUT_MAX) {
			guest_yield(g);
			break;
		}
		if (tap_write(t, p, n, vnet) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS) {
				g->waiting_out = true;
				break;
			}
			/* EIO: the tap is down; the frame is lost like on a wire. */
		} else {
			if (g->pcap)
				pcap_frame(g->pcap, p + vlen, (uint32_t)(n - vlen));
			frames++;
			bytes += (uint64_t)(n - vlen);
		}
		ring_consume(&g->s2g);
		if (frames % GUEST_BATCH == 0)
			ring_release(&g->s2g);
	}
	guest_s2g_done(g, frames, bytes);
	guest_tap_set_events(g);
}

static void guest_tap_on_fd(struct loop_watch *w, uint32_t events)
{
	guest_on_fd(w, events);
	guest_tap_set_events(w->arg);
}

static int guest_tap_start(struct guest *g)
{
	struct tap *t = g->fe;

	t->w = (struct loop_watch){ .fd = t->fd, .cb = guest_tap_on_fd, .arg = g };
	t->events = EPOLLIN;
	if (loop_add(g->loop, &t->w, EPOLLIN) < 0) {
		log_error("guest port: cannot watch the tap: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void guest_tap_close(struct guest *g)
{
	struct tap *t = g->fe;

	if (t && t->fd >= 0)
		close(t->fd);
}

const struct guest_ops guest_tap_ops = {
	.name = "tap",
	.open = guest_tap_open,
	.start = guest_tap_start,
	.input = guest_tap_input,
	.output = guest_tap_output,
	.close = guest_tap_close,
};
