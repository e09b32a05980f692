/* SPDX-License-Identifier: MIT */
/*
 * test_ring.c - the SPSC record rings of shm/ring.c
 *
 * Every ring here lives at the END of an mmap'd area whose next page is
 * PROT_NONE, so a read or write one byte past the data area faults (and
 * ASan builds see the same). Producer and consumer are separate views of
 * the same control block, as they are in two processes; the stress test
 * really uses two processes and sleeps on eventfds through the wake
 * protocol.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/ring.h"

#define PAGE 4096u
#define HDR  ((uint32_t)sizeof(struct moat_rec_hdr))

/* A ring part (control page + @cap data bytes) that ends at a guard page. */
struct guarded {
	void *map;
	size_t map_len;
	void *part;
	uint64_t cap;
	uint8_t *end; /* first byte of the guard page */
};

static struct guarded make_ring_mem(uint64_t cap, int shared)
{
	struct guarded g = { 0 };
	size_t part_len = MOAT_RING_DATA_OFF + cap;

	g.map_len = part_len + PAGE;
	g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE,
		     (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	cr_assert(g.map != MAP_FAILED);
	g.end = (uint8_t *)g.map + part_len;
	cr_assert_eq(mprotect(g.end, PAGE, PROT_NONE), 0);
	g.part = g.map;
	g.cap = cap;
	return g;
}

static void free_ring_mem(struct guarded *g)
{
	munmap(g->map, g->map_len);
}

static size_t rec_size(uint32_t len)
{
	return (HDR + len + 7u) & ~7u;
}

/* Producer and consumer views over one guarded ring, no eventfds. */
struct pair {
	struct guarded m;
	struct ring p, c;
	uint64_t pwakes, cwakes;
};

static void pair_init(struct pair *x, uint64_t cap)
{
	memset(x, 0, sizeof(*x));
	x->m = make_ring_mem(cap, 0);
	ring_attach(&x->p, x->m.part, cap, -1, -1, &x->pwakes);
	ring_attach(&x->c, x->m.part, cap, -1, -1, &x->cwakes);
}

static void pair_init_at(struct pair *x, uint64_t cap, uint64_t start)
{
	memset(x, 0, sizeof(*x));
	x->m = make_ring_mem(cap, 0);
	((struct moat_ring_ctl *)x->m.part)->head = start;
	((struct moat_ring_ctl *)x->m.part)->tail = start;
	ring_attach(&x->p, x->m.part, cap, -1, -1, &x->pwakes);
	ring_attach(&x->c, x->m.part, cap, -1, -1, &x->cwakes);
	x->p.pub = x->c.pub = start;
}

static struct moat_ring_ctl *ctl_of(struct pair *x)
{
	return x->m.part;
}

static void fill_pattern(uint8_t *p, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
}

static int check_pattern(const uint8_t *p, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(seed * 31u + i * 7u + (i >> 8)))
			return 0;
	return 1;
}

static void push_pattern(struct ring *r, uint32_t type, uint32_t len)
{
	uint8_t buf[65536];

	cr_assert(len <= sizeof(buf));
	fill_pattern(buf, len, type);
	cr_assert_eq(ring_push(r, type, buf, len), 0, "push type %u len %u", type, len);
}

static void pop_expect(struct ring *r, uint32_t type, uint32_t len)
{
	uint8_t buf[65536];
	uint32_t t = 0;
	int n = ring_pop(r, &t, buf, sizeof(buf));

	cr_assert_eq(n, (int)len, "pop returned %d, want %u", n, len);
	cr_assert_eq(t, type);
	cr_assert(check_pattern(buf, len, type), "payload of record %u differs", type);
}

/* Advance an empty ring (both views) by pushing and popping @bytes of records. */
static void advance(struct pair *x, uint64_t bytes)
{
	uint8_t buf[4096];
	uint32_t t;

	cr_assert(bytes % 8 == 0);
	while (bytes) {
		uint64_t chunk = bytes > 512 ? 512 : bytes;

		cr_assert_eq(ring_push(&x->p, 7, buf, (uint32_t)(chunk - HDR)), 0);
		ring_flush(&x->p);
		cr_assert_eq(ring_pop(&x->c, &t, buf, sizeof(buf)), (int)(chunk - HDR));
		ring_release(&x->c);
		bytes -= chunk;
	}
}

/* ------------------------------------------------------------------ */
/* Basic operation                                                      */
/* ------------------------------------------------------------------ */

Test(ring, empty_is_eagain)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;
	uint8_t buf[16];

	pair_init(&x, 4096);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EAGAIN);
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EAGAIN);
	cr_assert_not(x.c.corrupt);
	cr_assert_eq(ring_free_bytes(&x.p), 4096);
	free_ring_mem(&x.m);
}

Test(ring, push_pop_round_trip)
{
	static const uint32_t lens[] = { 0, 1, 7, 8, 9, 13, 64, 100, 255, 1000, 1016 };
	struct pair x;
	uint32_t t;
	uint8_t buf[16];

	pair_init(&x, 4096);
	for (int round = 0; round < 20; round++) {
		for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			push_pattern(&x.p, 100 + i, lens[i]);
			ring_flush(&x.p);
			pop_expect(&x.c, 100 + i, lens[i]);
			ring_release(&x.c);
		}
	}
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EAGAIN);
	/* Free-running counters: the head is the sum of record sizes. */
	cr_assert_eq(ctl_of(&x)->head, ctl_of(&x)->tail);
	cr_assert_gt(ctl_of(&x)->head, 4096 * 5);
	free_ring_mem(&x.m);
}

Test(ring, pop_too_small_buffer_skips_record)
{
	struct pair x;
	uint8_t buf[8];
	uint32_t t;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 100);
	push_pattern(&x.p, 2, 5);
	ring_flush(&x.p);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EMSGSIZE);
	cr_assert_not(x.c.corrupt);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), 5);
	cr_assert_eq(t, 2);
	cr_assert(check_pattern(buf, 5, 2));
	free_ring_mem(&x.m);
}

Test(ring, wrap_record_when_record_does_not_fit)
{
	struct pair x;
	struct moat_rec_hdr h;
	uint64_t head0;

	pair_init(&x, 4096);
	advance(&x, 4096 - 64); /* 64 bytes left before the end */
	head0 = ctl_of(&x)->head;
	cr_assert_eq(head0 & 4095, 4096 - 64);
	push_pattern(&x.p, 42, 100); /* 112 bytes: does not fit in 64 */
	ring_flush(&x.p);
	/* A WRAP header sits at the old position, the record at 0. */
	memcpy(&h, x.c.data + 4096 - 64, sizeof(h));
	cr_assert_eq(h.type, MOAT_REC_WRAP);
	memcpy(&h, x.c.data, sizeof(h));
	cr_assert_eq(h.type, 42);
	cr_assert_eq(h.len, 100);
	cr_assert(check_pattern(x.c.data + HDR, 100, 42));
	cr_assert_eq(ctl_of(&x)->head, head0 + 64 + rec_size(100));
	pop_expect(&x.c, 42, 100);
	ring_release(&x.c);
	cr_assert_eq(ctl_of(&x)->tail, ctl_of(&x)->head);
	free_ring_mem(&x.m);
}

Test(ring, wrap_with_exactly_one_header_left)
{
	struct pair x;
	struct moat_rec_hdr h;

	pair_init(&x, 4096);
	advance(&x, 4096 - 8); /* room for a WRAP header and nothing else */
	push_pattern(&x.p, 5, 1);
	ring_flush(&x.p);
	memcpy(&h, x.c.data + 4096 - 8, sizeof(h));
	cr_assert_eq(h.type, MOAT_REC_WRAP);
	pop_expect(&x.c, 5, 1);
	free_ring_mem(&x.m);
}

Test(ring, record_ending_exactly_at_the_end)
{
	struct pair x;

	pair_init(&x, 4096);
	advance(&x, 4096 - 64);
	push_pattern(&x.p, 9, 64 - HDR); /* fills the last 64 bytes exactly */
	ring_flush(&x.p);
	cr_assert_eq(ctl_of(&x)->head & 4095, 0);
	pop_expect(&x.c, 9, 64 - HDR);
	push_pattern(&x.p, 10, 3); /* and the next starts at 0, no WRAP */
	ring_flush(&x.p);
	pop_expect(&x.c, 10, 3);
	free_ring_mem(&x.m);
}

/*
 * Fewer than 8 bytes left at the end: no WRAP header fits, so the producer
 * skips them silently and the consumer does the same. Records are padded to
 * 8, so this happens only when the counters started unaligned (a ring set
 * up by a VMM, say); attach both views there.
 */
Test(ring, implicit_wrap_when_less_than_a_header_remains)
{
	struct pair x;
	struct moat_rec_hdr h;
	uint64_t start = 3 * 4096 - 4;

	pair_init_at(&x, 4096, start);
	memset(x.c.data + 4096 - 4, 0xee, 4);
	push_pattern(&x.p, 77, 30);
	ring_flush(&x.p);
	/* The 4 bytes at the end were not touched; the record is at 0. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(x.c.data[4096 - 4 + i], 0xee);
	memcpy(&h, x.c.data, sizeof(h));
	cr_assert_eq(h.type, 77);
	cr_assert_eq(ctl_of(&x)->head, start + 4 + rec_size(30));
	pop_expect(&x.c, 77, 30);
	ring_release(&x.c);
	cr_assert_not(x.c.corrupt);
	cr_assert_eq(ctl_of(&x)->tail, ctl_of(&x)->head);
	free_ring_mem(&x.m);
}

Test(ring, full_is_enobufs)
{
	struct pair x;
	uint32_t max = RING_MAX_RECORD(4096);
	uint8_t buf[1024];
	uint32_t t;
	void *p;
	int n = 0;

	pair_init(&x, 4096);
	cr_assert_eq(rec_size(max), 1024);
	while (ring_push(&x.p, 1, buf, max) == 0)
		n++;
	cr_assert_eq(n, 4);
	cr_assert_eq(ring_free_bytes(&x.p), 0);
	cr_assert_eq(ring_reserve(&x.p, 0, &p), -ENOBUFS);
	cr_assert_eq(ring_push(&x.p, 1, "", 0), -ENOBUFS);
	cr_assert_not(x.p.corrupt);
	ring_flush(&x.p);
	cr_assert_eq(ctl_of(&x)->head, 4096);
	/* Popping without releasing gives nothing back to the producer. */
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), (int)max);
	cr_assert_eq(ring_push(&x.p, 1, "", 0), -ENOBUFS);
	ring_release(&x.c);
	cr_assert_eq(ring_free_bytes(&x.p), 1024);
	cr_assert_eq(ring_push(&x.p, 1, buf, max), 0);
	cr_assert_eq(ring_push(&x.p, 1, "", 0), -ENOBUFS);
	/* Drained, the consumer finds it empty. */
	ring_flush(&x.p);
	for (n = 0; n < 4; n++)
		cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), (int)max);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EAGAIN);
	free_ring_mem(&x.m);
}

Test(ring, full_then_space_after_release)
{
	struct pair x;
	uint8_t buf[2048];
	uint32_t t, len = 496; /* 504-byte records: 8 fill 4032, 64 bytes slack */
	int pushed = 0, popped = 0;

	pair_init(&x, 4096);
	while (ring_push(&x.p, (uint32_t)pushed, buf, len) == 0)
		pushed++;
	ring_flush(&x.p);
	cr_assert_eq(pushed, 8);
	cr_assert_eq(ring_free_bytes(&x.p), 64);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), (int)len);
	popped++;
	/* Not released yet: still full for the producer. */
	cr_assert_eq(ring_push(&x.p, 99, buf, len), -ENOBUFS);
	ring_release(&x.c);
	cr_assert_eq(ring_free_bytes(&x.p), 504 + 64);
	/* The next record wraps: it needs the 64-byte slack plus its own size. */
	cr_assert_eq(ring_push(&x.p, 99, buf, len), 0);
	cr_assert_eq(ring_free_bytes(&x.p), 0);
	ring_flush(&x.p);
	while (ring_pop(&x.c, &t, buf, sizeof(buf)) == (int)len)
		popped++;
	cr_assert_eq(popped, pushed + 1);
	cr_assert_eq(t, 99);
	cr_assert_not(x.c.corrupt);
	free_ring_mem(&x.m);
}

/* Enough free bytes in total, but not after skipping the end: -ENOBUFS. */
Test(ring, wrap_needs_room_for_the_skipped_tail)
{
	struct pair x;
	void *p;

	pair_init(&x, 4096);
	advance(&x, 992);
	push_pattern(&x.p, 1, 1016);
	push_pattern(&x.p, 2, 1016);
	push_pattern(&x.p, 3, 984); /* head at 4032: 64 bytes to the end */
	ring_flush(&x.p);
	cr_assert_eq(x.p.head & 4095, 4032);
	cr_assert_eq(ring_free_bytes(&x.p), 1056);
	/* 1024 <= 1056 free, but 64 skipped + 1024 > 1056. */
	cr_assert_eq(ring_reserve(&x.p, 1016, &p), -ENOBUFS);
	cr_assert_eq(x.p.head & 4095, 4032, "a refused reserve writes no wrap");
	cr_assert_not(ring_wait_space(&x.p, 1016));
	/* A record that fits the end exactly still goes in. */
	cr_assert_eq(ring_reserve(&x.p, 56, &p), 0);
	cr_assert_eq((uint8_t *)p, x.p.data + 4032 + HDR);
	pop_expect(&x.c, 1, 1016);
	ring_release(&x.c);
	cr_assert_eq(ring_reserve(&x.p, 1016, &p), 0);
	cr_assert_eq((uint8_t *)p, x.p.data + HDR);
	free_ring_mem(&x.m);
}

Test(ring, batching_publishes_only_on_flush)
{
	struct pair x;
	uint8_t buf[64];
	uint32_t t;

	pair_init(&x, 4096);
	for (uint32_t i = 0; i < 10; i++)
		push_pattern(&x.p, i, 10 + i);
	cr_assert_eq(ctl_of(&x)->head, 0);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EAGAIN);
	cr_assert(ring_prepare_sleep(&x.c), "nothing was published yet");
	ring_cancel_sleep(&x.c);
	ring_flush(&x.p);
	for (uint32_t i = 0; i < 10; i++)
		pop_expect(&x.c, i, 10 + i);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EAGAIN);
	/* Releasing is batched too: the tail moves only on ring_release(). */
	cr_assert_eq(ctl_of(&x)->tail, 0);
	ring_release(&x.c);
	cr_assert_eq(ctl_of(&x)->tail, ctl_of(&x)->head);
	free_ring_mem(&x.m);
}

Test(ring, reserve_commit_in_place)
{
	struct pair x;
	void *p;

	pair_init(&x, 4096);
	cr_assert_eq(ring_reserve(&x.p, 200, &p), 0);
	cr_assert((uint8_t *)p >= x.p.data && (uint8_t *)p + 200 <= x.m.end);
	fill_pattern(p, 150, 33);
	ring_commit(&x.p, 33, 150); /* commit less than reserved */
	ring_flush(&x.p);
	pop_expect(&x.c, 33, 150);
	cr_assert_eq(ctl_of(&x)->head, rec_size(150));
	free_ring_mem(&x.m);
}

Test(ring, pushv_concatenates)
{
	struct pair x;
	uint8_t whole[300], out[300];
	struct iovec iov[4];
	uint32_t t;

	pair_init(&x, 4096);
	fill_pattern(whole, sizeof(whole), 3);
	iov[0] = (struct iovec){ whole, 14 };
	iov[1] = (struct iovec){ whole + 14, 0 };
	iov[2] = (struct iovec){ whole + 14, 186 };
	iov[3] = (struct iovec){ whole + 200, 100 };
	cr_assert_eq(ring_pushv(&x.p, 3, iov, 4), 0);
	cr_assert_eq(ring_pushv(&x.p, 4, iov, 0), 0); /* empty record */
	ring_flush(&x.p);
	cr_assert_eq(ring_pop(&x.c, &t, out, sizeof(out)), 300);
	cr_assert_eq(t, 3);
	cr_assert_arr_eq(out, whole, 300);
	cr_assert_eq(ring_pop(&x.c, &t, out, sizeof(out)), 0);
	cr_assert_eq(t, 4);
	/* Too big in total: refused before anything is written. */
	iov[0] = (struct iovec){ whole, RING_MAX_RECORD(4096) };
	iov[1] = (struct iovec){ whole, 1 };
	cr_assert_eq(ring_pushv(&x.p, 5, iov, 2), -EMSGSIZE);
	free_ring_mem(&x.m);
}

Test(ring, peek_and_consume)
{
	struct pair x;
	const uint8_t *p, *p2;
	uint32_t t;
	int n;

	pair_init(&x, 4096);
	advance(&x, 4096 - 32); /* so the second record wraps */
	push_pattern(&x.p, 1, 10);
	push_pattern(&x.p, 2, 40);
	ring_flush(&x.p);

	n = ring_peek(&x.c, &t, &p);
	cr_assert_eq(n, 10);
	cr_assert_eq(t, 1);
	cr_assert(p >= x.c.data && p + n <= x.m.end);
	cr_assert(check_pattern(p, 10, 1));
	/* Peeking again returns the same record: nothing moved. */
	cr_assert_eq(ring_peek(&x.c, &t, &p2), 10);
	cr_assert_eq(p2, p);
	ring_consume(&x.c);

	n = ring_peek(&x.c, &t, &p);
	cr_assert_eq(n, 40);
	cr_assert_eq(t, 2);
	cr_assert_eq(p, x.c.data + HDR, "the wrapped record starts at 0");
	cr_assert(check_pattern(p, 40, 2));
	ring_consume(&x.c);
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EAGAIN);
	ring_release(&x.c);
	cr_assert_eq(ctl_of(&x)->tail, ctl_of(&x)->head);
	cr_assert_not(x.c.corrupt);
	free_ring_mem(&x.m);
}

Test(ring, max_record_limit)
{
	static const uint64_t caps[] = { 4096, 65536, 1 << 20 };

	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		struct pair x;
		uint32_t max = RING_MAX_RECORD(caps[i]);
		uint8_t *buf = malloc(max + 1);
		void *p;

		cr_assert_eq(max, caps[i] / 4 - HDR);
		pair_init(&x, caps[i]);
		cr_assert_eq(ring_reserve(&x.p, max + 1, &p), -EMSGSIZE);
		cr_assert_eq(ring_push(&x.p, 1, buf, max + 1), -EMSGSIZE);
		cr_assert_eq(ring_reserve(&x.p, UINT32_MAX, &p), -EMSGSIZE);
		cr_assert_not(x.p.corrupt);
		cr_assert_eq(ctl_of(&x)->head, 0);
		fill_pattern(buf, max, 8);
		cr_assert_eq(ring_push(&x.p, 8, buf, max), 0);
		ring_flush(&x.p);
		memset(buf, 0, max);
		{
			uint32_t t;

			cr_assert_eq(ring_pop(&x.c, &t, buf, max), (int)max);
			cr_assert(check_pattern(buf, max, 8));
		}
		free(buf);
		free_ring_mem(&x.m);
	}
}

/* ------------------------------------------------------------------ */
/* Wake suppression                                                     */
/* ------------------------------------------------------------------ */

static uint64_t efd_read(int fd)
{
	uint64_t v = 0;
	ssize_t n = read(fd, &v, sizeof(v));

	if (n < 0)
		return errno == EAGAIN ? 0 : (uint64_t)-1;
	return v;
}

struct wpair {
	struct pair x;
	int cons_efd, prod_efd;
};

static void wpair_init(struct wpair *w, uint64_t cap)
{
	pair_init(&w->x, cap);
	w->cons_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->prod_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert(w->cons_efd >= 0 && w->prod_efd >= 0);
	ring_attach(&w->x.p, w->x.m.part, cap, w->cons_efd, w->prod_efd, &w->x.pwakes);
	ring_attach(&w->x.c, w->x.m.part, cap, w->cons_efd, w->prod_efd, &w->x.cwakes);
}

static void wpair_fini(struct wpair *w)
{
	close(w->cons_efd);
	close(w->prod_efd);
	free_ring_mem(&w->x.m);
}

Test(ring_wake, no_wake_while_consumer_is_awake)
{
	struct wpair w;
	uint64_t v;

	wpair_init(&w, 4096);
	for (int i = 0; i < 50; i++) {
		push_pattern(&w.x.p, (uint32_t)i, 20);
		ring_flush(&w.x.p);
		pop_expect(&w.x.c, (uint32_t)i, 20);
		ring_release(&w.x.c);
	}
	errno = 0;
	cr_assert_eq(read(w.cons_efd, &v, sizeof(v)), -1);
	cr_assert_eq(errno, EAGAIN, "the producer wrote the eventfd of an awake consumer");
	cr_assert_eq(read(w.prod_efd, &v, sizeof(v)), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(w.x.pwakes, 0);
	cr_assert_eq(w.x.cwakes, 0);
	wpair_fini(&w);
}

Test(ring_wake, exactly_one_wake_after_prepare_sleep)
{
	struct wpair w;

	wpair_init(&w, 4096);
	cr_assert(ring_prepare_sleep(&w.x.c), "empty ring: may sleep");
	cr_assert_eq(ctl_of(&w.x)->cons_waiting, 1);
	/* Pushing alone wakes nobody: only ring_flush() may. */
	push_pattern(&w.x.p, 1, 20);
	cr_assert_eq(efd_read(w.cons_efd), 0);
	ring_flush(&w.x.p);
	cr_assert_eq(efd_read(w.cons_efd), 1);
	cr_assert_eq(w.x.pwakes, 1);
	cr_assert_eq(ctl_of(&w.x)->cons_waiting, 0, "the producer clears the flag");
	/* More batches while the consumer has not gone back to sleep: no wakes. */
	for (int i = 0; i < 5; i++) {
		push_pattern(&w.x.p, 2, 20);
		ring_flush(&w.x.p);
	}
	cr_assert_eq(efd_read(w.cons_efd), 0);
	cr_assert_eq(w.x.pwakes, 1);
	/* A flush with nothing new wakes nobody either. */
	cr_assert_not(ring_prepare_sleep(&w.x.c), "records are pending");
	cr_assert_eq(ctl_of(&w.x)->cons_waiting, 0, "a refused sleep withdraws the flag");
	ring_flush(&w.x.p);
	cr_assert_eq(efd_read(w.cons_efd), 0);
	pop_expect(&w.x.c, 1, 20);
	for (int i = 0; i < 5; i++)
		pop_expect(&w.x.c, 2, 20);
	/* Drained: sleep again, and an empty flush does not wake. */
	cr_assert(ring_prepare_sleep(&w.x.c));
	ring_flush(&w.x.p);
	cr_assert_eq(efd_read(w.cons_efd), 0);
	push_pattern(&w.x.p, 3, 0);
	ring_flush(&w.x.p);
	cr_assert_eq(efd_read(w.cons_efd), 1);
	cr_assert_eq(w.x.pwakes, 2);
	cr_assert_eq(w.x.cwakes, 0);
	wpair_fini(&w);
}

Test(ring_wake, wait_space_and_release_wake_the_producer)
{
	struct wpair w;
	uint8_t buf[1024];
	uint32_t t;
	int n = 0;

	wpair_init(&w, 4096);
	/* Room now: no sleep, and no flag left behind. */
	cr_assert(ring_wait_space(&w.x.p, 100));
	cr_assert_eq(ctl_of(&w.x)->prod_waiting, 0);
	while (ring_push(&w.x.p, (uint32_t)n, buf, 400) == 0)
		n++;
	ring_flush(&w.x.p);
	cr_assert_not(ring_wait_space(&w.x.p, 400), "the ring is full");
	cr_assert_eq(ctl_of(&w.x)->prod_waiting, 1);
	/* Consuming without releasing does not wake. */
	cr_assert_eq(ring_pop(&w.x.c, &t, buf, sizeof(buf)), 400);
	cr_assert_eq(efd_read(w.prod_efd), 0);
	ring_release(&w.x.c);
	cr_assert_eq(efd_read(w.prod_efd), 1);
	cr_assert_eq(w.x.cwakes, 1);
	cr_assert_eq(ctl_of(&w.x)->prod_waiting, 0);
	/* Further releases do not wake a producer that is not waiting. */
	cr_assert_eq(ring_pop(&w.x.c, &t, buf, sizeof(buf)), 400);
	ring_release(&w.x.c);
	cr_assert_eq(efd_read(w.prod_efd), 0);
	cr_assert_eq(w.x.cwakes, 1);
	cr_assert_eq(efd_read(w.cons_efd), 0);
	/* The producer can push again. */
	cr_assert(ring_wait_space(&w.x.p, 400));
	cr_assert_eq(ring_push(&w.x.p, 50, buf, 400), 0);
	wpair_fini(&w);
}

/* ------------------------------------------------------------------ */
/* Cross-process stress                                                 */
/* ------------------------------------------------------------------ */

/* 1 GiB of payload; fast enough under ASan too (about a second either way). */
#define STRESS_BYTES (1ULL << 30)
#define STRESS_CAP   (256u << 10)
#define STRESS_BATCH 16

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Size of record @seq: a quarter tiny, the rest uniform over 0..max. */
static uint32_t stress_len(uint64_t seq, uint32_t max)
{
	uint64_t r = splitmix(seq * 2 + 1);

	if ((r & 3) == 0)
		return (uint32_t)((r >> 8) % 64);
	return (uint32_t)((r >> 8) % ((uint64_t)max + 1));
}

/* Content of record @seq: 64-bit words from the sequence number. */
static void stress_fill(uint8_t *p, uint32_t len, uint64_t seq)
{
	uint64_t k = splitmix(seq);
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = k + i;

		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)(k >> (i & 7));
}

static int stress_check(const uint8_t *p, uint32_t len, uint64_t seq)
{
	uint64_t k = splitmix(seq);
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		if (v != k + i)
			return 0;
	}
	for (; i < len; i++)
		if (p[i] != (uint8_t)(k >> (i & 7)))
			return 0;
	return 1;
}

/* Sleep on @efd (poll), with a very long bound that only a lost wake reaches. */
static int sleep_on(int efd)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	uint64_t v;
	int rc;

	do
		rc = poll(&pfd, 1, 60000);
	while (rc < 0 && errno == EINTR);
	if (rc <= 0)
		return -1;
	if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -1;
	return 0;
}

/* Child: produce @nrec records; exit 0, or 10+ on an error. */
static void __attribute__((noreturn))
stress_producer(struct ring *r, uint64_t nrec, uint64_t *waits, uint64_t *flushes)
{
	uint32_t max = RING_MAX_RECORD(r->cap);
	uint8_t *tmp = malloc(max);
	uint64_t seq = 0;
	unsigned batch = 0;

	if (!tmp)
		_exit(10);
	while (seq < nrec) {
		uint32_t len = stress_len(seq, max);
		int rc;

		if (seq % 3 == 0) {
			/* In place through reserve/commit. */
			void *p;

			rc = ring_reserve(r, len, &p);
			if (rc == 0) {
				stress_fill(p, len, seq);
				ring_commit(r, (uint32_t)seq, len);
			}
		} else {
			/* Copied through pushv, split in two pieces. */
			struct iovec iov[2] = { { tmp, len / 3 },
						{ tmp + len / 3, len - len / 3 } };

			stress_fill(tmp, len, seq);
			rc = ring_pushv(r, (uint32_t)seq, iov, 2);
		}
		if (rc == -ENOBUFS) {
			ring_flush(r);
			(*flushes)++;
			batch = 0;
			(*waits)++;
			if (!ring_wait_space(r, len)) {
				if (sleep_on(r->prod_efd) < 0)
					_exit(11);
			}
			continue;
		}
		if (rc)
			_exit(12);
		seq++;
		if (++batch == STRESS_BATCH) {
			ring_flush(r);
			(*flushes)++;
			batch = 0;
		}
	}
	ring_flush(r);
	(*flushes)++;
	free(tmp);
	_exit(0);
}

Test(ring_stress, fork_one_gib_variable_records, .timeout = 600)
{
	struct guarded m = make_ring_mem(STRESS_CAP, 1);
	uint64_t *shared_stats = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t max = RING_MAX_RECORD(STRESS_CAP);
	uint64_t nrec = 0, want_bytes = 0, got_bytes = 0, seq = 0, sleeps = 0;
	int cons_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int prod_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint8_t *buf = malloc(max);
	unsigned since_release = 0;
	struct ring c;
	int status;
	pid_t pid;

	cr_assert(shared_stats != MAP_FAILED && cons_efd >= 0 && prod_efd >= 0 && buf);
	while (want_bytes < STRESS_BYTES)
		want_bytes += stress_len(nrec++, max);

	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct ring p;

		ring_attach(&p, m.part, STRESS_CAP, cons_efd, prod_efd, &shared_stats[0]);
		stress_producer(&p, nrec, &shared_stats[2], &shared_stats[3]);
	}
	ring_attach(&c, m.part, STRESS_CAP, cons_efd, prod_efd, &shared_stats[1]);
	while (seq < nrec) {
		uint32_t t;
		int n;

		if (seq % 2 == 0) {
			n = ring_pop(&c, &t, buf, max);
			if (n >= 0 && !stress_check(buf, (uint32_t)n, seq))
				n = -EILSEQ;
		} else {
			const uint8_t *p;

			n = ring_peek(&c, &t, &p);
			if (n >= 0) {
				if ((const uint8_t *)p < c.data || p + n > m.end ||
				    !stress_check(p, (uint32_t)n, seq))
					n = -EILSEQ;
				else
					ring_consume(&c);
			}
		}
		if (n == -EAGAIN) {
			ring_release(&c);
			since_release = 0;
			sleeps++;
			if (ring_prepare_sleep(&c)) {
				if (sleep_on(cons_efd) < 0) {
					kill(pid, SIGKILL);
					cr_assert_fail("consumer never woken at record %llu",
						       (unsigned long long)seq);
				}
			}
			continue;
		}
		if (n < 0 || t != (uint32_t)seq || (uint32_t)n != stress_len(seq, max)) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			cr_assert_fail("record %llu: rc %d type %u len %d (want %u)%s",
				       (unsigned long long)seq, n, t, n, stress_len(seq, max),
				       n == -EILSEQ ? ": payload corrupted" : "");
		}
		got_bytes += (uint64_t)n;
		seq++;
		if (++since_release == STRESS_BATCH) {
			ring_release(&c);
			since_release = 0;
		}
	}
	ring_release(&c);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "producer failed: status 0x%x",
		  status);
	cr_assert_eq(got_bytes, want_bytes);
	cr_assert_geq(got_bytes, STRESS_BYTES);
	{
		uint32_t t;

		cr_assert_eq(ring_pop(&c, &t, buf, max), -EAGAIN, "nothing beyond the last record");
	}
	cr_assert_not(c.corrupt);
	cr_assert_eq(((struct moat_ring_ctl *)m.part)->head,
		     ((struct moat_ring_ctl *)m.part)->tail);
	/*
	 * Wakes are suppressed: each side writes the other's eventfd at most
	 * once per announced sleep (ring_prepare_sleep / ring_wait_space).
	 */
	cr_assert_leq(shared_stats[0], sleeps, "producer wakes %llu > consumer sleeps %llu",
		      (unsigned long long)shared_stats[0], (unsigned long long)sleeps);
	cr_assert_leq(shared_stats[1], shared_stats[2], "consumer wakes %llu > producer waits %llu",
		      (unsigned long long)shared_stats[1], (unsigned long long)shared_stats[2]);
	cr_assert_leq(shared_stats[0], shared_stats[3], "more wakes than flushes");
	cr_log_info("stress: %llu records, %llu bytes; consumer: %llu sleeps, %llu wakes sent; "
		    "producer: %llu waits, %llu flushes, %llu wakes sent",
		    (unsigned long long)nrec, (unsigned long long)got_bytes,
		    (unsigned long long)sleeps, (unsigned long long)shared_stats[1],
		    (unsigned long long)shared_stats[2], (unsigned long long)shared_stats[3],
		    (unsigned long long)shared_stats[0]);
	free(buf);
	close(cons_efd);
	close(prod_efd);
	free_ring_mem(&m);
}

/* ------------------------------------------------------------------ */
/* Corruption: a hostile peer writes anything into the ring              */
/* ------------------------------------------------------------------ */

/* The consumer is corrupt for good: pop and peek keep failing. */
static void assert_stays_corrupt(struct pair *x)
{
	uint8_t buf[64];
	const uint8_t *p;
	uint32_t t;

	cr_assert(x->c.corrupt);
	/* Even a ring that looks fine again stays refused. */
	ctl_of(x)->head = x->c.tail;
	cr_assert_eq(ring_pop(&x->c, &t, buf, sizeof(buf)), -EBADMSG);
	cr_assert_eq(ring_peek(&x->c, &t, &p), -EBADMSG);
	cr_assert(x->c.corrupt);
}

static void forge_hdr(struct pair *x, uint64_t pos, uint32_t len, uint32_t type)
{
	struct moat_rec_hdr h = { .len = len, .type = type };

	memcpy(x->c.data + pos, &h, sizeof(h));
}

Test(ring_corrupt, forged_head_beyond_capacity)
{
	struct pair x;
	uint8_t buf[64];
	uint32_t t;

	pair_init(&x, 4096);
	ctl_of(&x)->head = 4096 + 8;
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, forged_head_behind_tail)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	advance(&x, 1024);
	ctl_of(&x)->head = 512; /* head - tail wraps to a huge value */
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, forged_tail_ahead_of_head)
{
	struct pair x;
	void *p;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 100);
	ring_flush(&x.p);
	ctl_of(&x)->tail = x.p.head + 8; /* consumer "released" what was never written */
	cr_assert_eq(ring_free_bytes(&x.p), 0);
	cr_assert(x.p.corrupt);
	cr_assert_eq(ring_reserve(&x.p, 10, &p), -EBADMSG);
	/* cppcheck-suppress redundantAssignment ; shared memory: ring_reserve() read it in between */
	ctl_of(&x)->tail = x.p.head; /* sticky */
	cr_assert_eq(ring_push(&x.p, 1, "abc", 3), -EBADMSG);
	cr_assert(ring_wait_space(&x.p, 10), "a corrupt ring never sleeps");
	free_ring_mem(&x.m);
}

Test(ring_corrupt, forged_tail_more_than_capacity_behind)
{
	struct pair x;
	void *p;

	pair_init(&x, 4096);
	advance(&x, 8192);
	ctl_of(&x)->tail = x.p.head - 4096 - 8;
	cr_assert_eq(ring_reserve(&x.p, 10, &p), -EBADMSG);
	cr_assert(x.p.corrupt);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, record_longer_than_published)
{
	struct pair x;
	uint8_t buf[256];
	uint32_t t;

	pair_init(&x, 4096);
	forge_hdr(&x, 0, 100, 1);
	ctl_of(&x)->head = 16; /* only 8 payload bytes were published */
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, header_not_fully_published)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	forge_hdr(&x, 0, 0, 1);
	ctl_of(&x)->head = 4;
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, record_longer_than_contiguous_space)
{
	struct pair x;
	uint8_t buf[256];
	uint32_t t;

	pair_init(&x, 4096);
	advance(&x, 4096 - 32);
	/* 32 bytes to the end, a record claiming 100, and plenty "published". */
	forge_hdr(&x, 4096 - 32, 100, 1);
	ctl_of(&x)->head = x.c.tail + 1024;
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, record_longer_than_contiguous_space_peek)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	advance(&x, 4096 - 32);
	forge_hdr(&x, 4096 - 32, 32 - HDR + 1, 1); /* one byte too many */
	ctl_of(&x)->head = x.c.tail + 1024;
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, record_longer_than_max_record)
{
	const uint32_t max = RING_MAX_RECORD(65536);
	const uint32_t lens[] = { max + 1,     max + 8,	    65536 - HDR,
				  0x7ffffff8u, 0xfffffff8u, 0xffffffffu };

	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair x;
		uint8_t *buf = malloc(65536);
		uint32_t t;

		pair_init(&x, 65536);
		/* Fully published and contiguous: only the limit rejects it. */
		forge_hdr(&x, 0, lens[i], 1);
		ctl_of(&x)->head = 65536;
		cr_assert_eq(ring_pop(&x.c, &t, buf, 65536), -EBADMSG, "len 0x%x", lens[i]);
		assert_stays_corrupt(&x);
		free(buf);
		free_ring_mem(&x.m);
	}
}

Test(ring_corrupt, wrap_record_not_covered_by_head)
{
	struct pair x;
	uint8_t buf[64];
	uint32_t t;

	pair_init(&x, 4096);
	advance(&x, 4096 - 64);
	forge_hdr(&x, 4096 - 64, 0, MOAT_REC_WRAP);
	ctl_of(&x)->head = x.c.tail + 16; /* skipping 64 bytes, only 16 published */
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, implicit_wrap_not_covered_by_head)
{
	struct pair x;
	uint8_t buf[64];
	uint32_t t;

	pair_init_at(&x, 4096, 4096 - 4);
	ctl_of(&x)->head = x.c.tail + 2;
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, wrap_then_bad_record_at_zero)
{
	struct pair x;
	uint8_t buf[64];
	uint32_t t;

	pair_init(&x, 4096);
	advance(&x, 4096 - 64);
	forge_hdr(&x, 4096 - 64, 0, MOAT_REC_WRAP);
	forge_hdr(&x, 0, 4000, 1); /* after the wrap: too long for what follows */
	ctl_of(&x)->head = x.c.tail + 64 + 32;
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

/*
 * The peer rewrites the header between ring_peek() and ring_consume():
 * the tail moves by the size the peek validated, whatever the header says
 * now (no second read of it), and the next record is where it should be.
 */
Test(ring_corrupt, header_rewritten_between_peek_and_consume)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;
	uint64_t tail;

	pair_init(&x, 4096);
	advance(&x, 4096 - 64);
	push_pattern(&x.p, 1, 40);
	push_pattern(&x.p, 2, 24); /* wraps to position 0 */
	ring_flush(&x.p);
	cr_assert_eq(ring_peek(&x.c, &t, &p), 40);
	tail = x.c.tail;
	forge_hdr(&x, 4096 - 64, 4000, 1); /* the peer rewrites the length */
	ring_consume(&x.c);
	cr_assert_not(x.c.corrupt, "a header nobody reads again is no reason to stop");
	cr_assert_eq(x.c.tail, tail + rec_size(40), "the tail must move by the validated size");
	pop_expect(&x.c, 2, 24);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, header_shrunk_between_peek_and_consume)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 200);
	push_pattern(&x.p, 2, 40);
	ring_flush(&x.p);
	cr_assert_eq(ring_peek(&x.c, &t, &p), 200);
	forge_hdr(&x, 0, 0, 1); /* would land the tail inside the payload */
	ring_consume(&x.c);
	cr_assert_eq(x.c.tail, rec_size(200));
	pop_expect(&x.c, 2, 40);
	free_ring_mem(&x.m);
}

Test(ring_corrupt, header_turned_into_wrap_between_peek_and_consume)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 40);
	ring_flush(&x.p);
	cr_assert_eq(ring_peek(&x.c, &t, &p), 40);
	forge_hdr(&x, 0, 0, MOAT_REC_WRAP); /* would skip to the end of the area */
	ring_consume(&x.c);
	cr_assert_eq(x.c.tail, rec_size(40));
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EAGAIN);
	cr_assert_not(x.c.corrupt);
	free_ring_mem(&x.m);
}

/* A head moved back under a peeked record is caught by the next look. */
Test(ring_corrupt, head_moved_back_between_peek_and_consume)
{
	struct pair x;
	const uint8_t *p;
	uint32_t t;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 40);
	ring_flush(&x.p);
	cr_assert_eq(ring_peek(&x.c, &t, &p), 40);
	ctl_of(&x)->head = 8;
	ring_consume(&x.c);
	cr_assert_eq(x.c.tail, rec_size(40));
	cr_assert_eq(ring_peek(&x.c, &t, &p), -EBADMSG);
	assert_stays_corrupt(&x);
	free_ring_mem(&x.m);
}

/* ring_consume() without a peek, or twice after one, moves nothing more. */
Test(ring, consume_steps_over_the_peeked_record_once)
{
	struct pair x;
	const uint8_t *p;
	uint8_t buf[64];
	uint32_t t;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 40);
	push_pattern(&x.p, 2, 16);
	push_pattern(&x.p, 3, 8);
	ring_flush(&x.p);
	ring_consume(&x.c);
	cr_assert_eq(x.c.tail, 0, "consume without a peek");
	cr_assert_eq(ring_peek(&x.c, &t, &p), 40);
	ring_consume(&x.c);
	ring_consume(&x.c);
	cr_assert_eq(x.c.tail, rec_size(40));
	cr_assert_eq(ring_peek(&x.c, &t, &p), 16);
	cr_assert_eq(ring_pop(&x.c, &t, buf, sizeof(buf)), 16,
		     "pop after a peek takes that record");
	ring_consume(&x.c); /* the pop took it: nothing left to step over */
	cr_assert_eq(x.c.tail, rec_size(40) + rec_size(16));
	pop_expect(&x.c, 3, 8);
	cr_assert_not(x.c.corrupt);
	free_ring_mem(&x.m);
}

/* The consumer's view never follows a tail the producer wrote. */
Test(ring_corrupt, consumer_ignores_shared_tail_after_attach)
{
	struct pair x;

	pair_init(&x, 4096);
	push_pattern(&x.p, 1, 40);
	push_pattern(&x.p, 2, 40);
	ring_flush(&x.p);
	ctl_of(&x)->tail = 1000; /* a hostile producer rewrites the consumer's tail */
	pop_expect(&x.c, 1, 40);
	pop_expect(&x.c, 2, 40);
	ring_release(&x.c);
	cr_assert_eq(ctl_of(&x)->tail, 2 * rec_size(40));
	free_ring_mem(&x.m);
}
