/* SPDX-License-Identifier: MIT */
/*
 * guest_harness.h - drive the guest port in one process, playing the
 * netstack's part on the frame rings (included by test_guest_*.c only)
 *
 * The harness creates a real region and the two frame-ring eventfds, opens
 * a frontend with guest_open()/guest_start() on a private loop, and holds
 * the netstack's views: the consumer of g2s and the producer of s2g, wired
 * to the eventfds exactly as netstack/ wires them. pump() runs the loop
 * until it has been idle for a moment. h_forge_*() play a hostile netstack
 * writing impossible ring state; h_busy_turns() tells a spinning port from
 * an idle one; violations reported through guest_on_violation() are
 * recorded in h_violations / h_violation.
 */
#ifndef MOAT_TEST_GUEST_HARNESS_H
#define MOAT_TEST_GUEST_HARNESS_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/region.h"
#include "shm/ring.h"
#include "supervisor/guest.h"
#include "supervisor/loop.h"

struct harness {
	struct region r;
	struct loop loop;
	int gefd, nefd;
	struct guest *g;
	struct ring g2s, s2g; /* the netstack's views */
	struct moat_guest_counters *cnt;
	char dir[64];
	char path[128];
	char err[512];
};

/* What guest_on_violation() reported, in this test process. */
static int h_violations;
static char h_violation[128];

static inline void h_on_violation(const char *detail)
{
	h_violations++;
	snprintf(h_violation, sizeof(h_violation), "%s", detail);
}

static inline void h_region(struct harness *h, unsigned mtu, uint64_t ring_bytes)
{
	struct moat_shm_header proto = { .mtu = mtu };
	struct region_config rc = { .frame_ring_bytes = ring_bytes, .flow_ring_bytes = 65536 };

	cr_assert_eq(region_create(&rc, &proto, &h->r), 0);
	h->gefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->nefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert(h->gefd >= 0 && h->nefd >= 0);
	cr_assert_eq(loop_init(&h->loop), 0);
	h->cnt = h->r.part[MOAT_PART_CNT_GUEST];
	ring_attach(&h->g2s, h->r.part[MOAT_PART_RING_G2S],
		    region_ring_capacity(&h->r, MOAT_PART_RING_G2S), -1, h->gefd, NULL);
	ring_attach(&h->s2g, h->r.part[MOAT_PART_RING_S2G],
		    region_ring_capacity(&h->r, MOAT_PART_RING_S2G), h->gefd, -1, NULL);
}

/* A private directory for socket paths. */
static inline void h_dir(struct harness *h)
{
	snprintf(h->dir, sizeof(h->dir), "/tmp/moat-gt.XXXXXX");
	cr_assert(mkdtemp(h->dir));
	snprintf(h->path, sizeof(h->path), "%s/guest.sock", h->dir);
}

/* Open and start a frontend from a --guest spec. */
static inline void h_start(struct harness *h, const char *spec, const char *pcap)
{
	struct guest_spec gs;

	log_init("test", LOG_LVL_WARN);
	cr_assert_eq(guest_spec_parse(spec, &gs, h->err, sizeof(h->err)), 0, "%s", h->err);
	h->g = guest_open(&gs, h->err, sizeof(h->err));
	cr_assert(h->g, "guest_open(%s): %s", spec, h->err);
	h_violations = 0;
	h_violation[0] = '\0';
	guest_on_violation(h->g, h_on_violation);
	if (pcap)
		cr_assert_eq(guest_open_pcap(h->g, pcap, h->r.hdr.mtu, h->err, sizeof(h->err)), 0,
			     "%s", h->err);
	cr_assert_eq(guest_start(h->g, &h->loop, &h->r, h->gefd, h->nefd), 0);
}

static inline void h_setup(struct harness *h, const char *kind, unsigned mtu, uint64_t ring_bytes,
			   const char *pcap)
{
	char spec[256];

	memset(h, 0, sizeof(*h));
	h_region(h, mtu, ring_bytes);
	h_dir(h);
	snprintf(spec, sizeof(spec), "%s:%s", kind, h->path);
	h_start(h, spec, pcap);
}

/* Run the loop until it has been idle for 30 ms (or stopped). */
static inline void h_pump(struct harness *h)
{
	for (int i = 0; i < 100000 && !h->loop.stop; i++)
		if (loop_run_once(&h->loop, 30) == 0)
			break;
}

/* The netstack's side: take one frame from g2s. Return: length or -1. */
static inline int h_pop(struct harness *h, void *buf, uint32_t size)
{
	uint32_t type;
	int n = ring_pop(&h->g2s, &type, buf, size);

	if (n < 0)
		return -1;
	cr_assert_eq(type, MOAT_REC_FRAME);
	return n;
}

/* Hand consumed g2s space back (wakes the guest port if it waits). */
static inline void h_release(struct harness *h)
{
	ring_release(&h->g2s);
}

/* The netstack's side: queue one frame in s2g (flush separately). */
static inline int h_push(struct harness *h, const void *frame, uint32_t len)
{
	return ring_push(&h->s2g, MOAT_REC_FRAME, frame, len);
}

static inline void h_flush(struct harness *h)
{
	ring_flush(&h->s2g);
}

/* A recognisable frame: dst/src MACs, ethertype, then @seq and a pattern. */
static inline uint32_t h_frame(uint8_t *buf, uint32_t len, uint32_t seq)
{
	memset(buf, 0xff, 6);
	memcpy(buf + 6, "\x52\x54\x00\x12\x34\x56", 6);
	buf[12] = 0x88, buf[13] = 0xb5; /* local experimental ethertype */
	for (uint32_t i = 14; i < len; i++)
		buf[i] = (uint8_t)(seq * 7 + i);
	if (len >= 18)
		memcpy(buf + 14, &seq, 4);
	return len;
}

static inline void h_check_frame(const uint8_t *buf, uint32_t len, uint32_t want_len, uint32_t seq)
{
	uint8_t ref[65536];

	cr_assert_eq(len, want_len, "frame %u: length %u, want %u", seq, len, want_len);
	h_frame(ref, want_len, seq);
	cr_assert(!memcmp(buf, ref, len), "frame %u: contents differ", seq);
}

/*
 * Run the loop for about @ms and count the turns that dispatched events:
 * an idle port has none, a port spinning on a ring it cannot use has one
 * per millisecond.
 */
static inline int h_busy_turns(struct harness *h, int ms)
{
	int busy = 0;

	for (int i = 0; i < ms && !h->loop.stop; i++)
		if (loop_run_once(&h->loop, 1) > 0)
			busy++;
	return busy;
}

static inline struct moat_ring_ctl *h_ctl(struct harness *h, enum moat_part part)
{
	return h->r.part[part];
}

/* A hostile netstack "releases" g2s space that was never written: tail > head. */
static inline void h_forge_g2s_tail(struct harness *h)
{
	struct moat_ring_ctl *c = h_ctl(h, MOAT_PART_RING_G2S);

	__atomic_store_n(&c->tail, __atomic_load_n(&c->head, __ATOMIC_RELAXED) + 4096,
			 __ATOMIC_RELEASE);
}

/* A hostile netstack publishes more s2g than the ring holds, and wakes us. */
static inline void h_forge_s2g_head(struct harness *h)
{
	struct moat_ring_ctl *c = h_ctl(h, MOAT_PART_RING_S2G);
	uint64_t one = 1;

	__atomic_store_n(&c->head,
			 __atomic_load_n(&c->tail, __ATOMIC_RELAXED) +
				 region_ring_capacity(&h->r, MOAT_PART_RING_S2G) + 4096,
			 __ATOMIC_RELEASE);
	cr_assert_eq(write(h->gefd, &one, sizeof(one)), sizeof(one));
}

static inline int h_connect(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

static inline void h_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		cr_assert(n > 0, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Send one frame with the stream framing. */
static inline void h_stream_send(int fd, const uint8_t *frame, uint32_t len)
{
	uint32_t be = htonl(len);

	h_write_all(fd, &be, 4);
	h_write_all(fd, frame, len);
}

/* Read exactly @len bytes (blocking, with a 5 s safety timeout). Return: 0, -1 on EOF. */
static inline int h_read_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			return -1;
		n = read(fd, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline uint64_t h_cnt(uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static inline void h_teardown(struct harness *h)
{
	guest_close(h->g);
	h->g = NULL;
	if (h->dir[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", h->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", h->dir);
	}
}

#endif /* MOAT_TEST_GUEST_HARNESS_H */
