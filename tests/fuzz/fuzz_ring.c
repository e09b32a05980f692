/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ring.c - libFuzzer harness for the ring consumer (and producer)
 *
 * Theory of Operation
 * -------------------
 * A hostile peer may write anything into a ring's control block and data
 * area, at any time. The input builds such a ring in a heap buffer of
 * exactly control page + capacity bytes (so ASan sees any access past the
 * data area), then runs a little program of operations from the rest of
 * the input: pops into exact-size buffers, peeks whose payload is read in
 * full and then consumed, peer writes into the data area or the control
 * block between a peek and its consume, releases, sleeps, and pushes from
 * a producer view whose tail the peer also controls.
 *
 * Invariants checked (a violation traps): no access outside the buffer
 * (ASan); a popped or peeked length is at most RING_MAX_RECORD and inside
 * the data area; once a view is corrupt it stays corrupt and every call
 * returns -EBADMSG; the consumer never releases beyond the published head.
 *
 * ring.c is compiled into this harness so that it is instrumented even
 * when the moat libraries were built without sanitizers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shm/ring.c"

#define CHECK(x)                          \
	do {                              \
		if (!(x))                 \
			__builtin_trap(); \
	} while (0)

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t take8(struct input *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)take8(in) << (8 * i);
	return v;
}

static void check_sticky(struct ring *c)
{
	uint8_t b[8];
	const uint8_t *p;
	uint32_t t;

	CHECK(ring_pop(c, &t, b, sizeof(b)) == -EBADMSG);
	CHECK(ring_peek(c, &t, &p) == -EBADMSG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint64_t cap = 1ULL << (5 + take8(&in) % 12); /* 32 .. 64 KiB */
	uint8_t *part = malloc(MOAT_RING_DATA_OFF + cap);
	struct moat_ring_ctl *ctl = (struct moat_ring_ctl *)part;
	uint8_t *area = part + MOAT_RING_DATA_OFF;
	struct ring c, p;
	uint64_t tail0, fill;
	uint8_t mode;
	int ops = 0;

	if (!part)
		return 0;
	memset(part, 0, MOAT_RING_DATA_OFF);
	/* Where the counters start: anywhere, or aligned near the end. */
	mode = take8(&in);
	tail0 = take(&in, 8);
	if (mode & 1)
		tail0 = (tail0 & ~(uint64_t)7) | (cap - 8 * (1 + (mode >> 4)));
	ctl->tail = tail0;
	ctl->head = tail0;
	ring_attach(&c, part, cap, -1, -1, NULL);
	ring_attach(&p, part, cap, -1, -1, NULL);
	/* The published head: mostly plausible, sometimes anything. */
	ctl->head = (mode & 2) ? take(&in, 8) : tail0 + take(&in, 2) % (cap + 64);
	/* The data area: the next bytes of the input, repeated. */
	fill = take(&in, 2) % (cap + 1);
	for (uint64_t i = 0; i < cap; i++)
		area[i] = (fill && in.n) ? in.p[i % (fill < in.n ? fill : in.n)] : 0;
	if (fill && in.n) {
		uint64_t skip = fill < in.n ? fill : in.n;

		in.p += skip;
		in.n -= skip;
	}

	while (in.n && ops++ < 4096) {
		uint8_t op = take8(&in);
		bool was_corrupt = c.corrupt;
		uint32_t type;
		int n;

		switch (op % 10) {
		case 0:
		case 1: { /* pop into an exact-size buffer */
			uint32_t bufsize = (uint32_t)(take(&in, 2) % (cap + 1));
			uint8_t *buf = malloc(bufsize ? bufsize : 1);

			n = ring_pop(&c, &type, buf, bufsize);
			if (n >= 0) {
				CHECK((uint32_t)n <= bufsize &&
				      (uint32_t)n <= RING_MAX_RECORD(cap));
				CHECK(type != MOAT_REC_WRAP);
			} else {
				CHECK(n == -EAGAIN || n == -EBADMSG || n == -EMSGSIZE);
			}
			free(buf);
			break;
		}
		case 2:
		case 3: { /* peek, read every payload byte, consume */
			const uint8_t *pl;
			uint8_t sum = 0;

			n = ring_peek(&c, &type, &pl);
			if (n < 0) {
				CHECK(n == -EAGAIN || n == -EBADMSG);
				break;
			}
			CHECK((uint32_t)n <= RING_MAX_RECORD(cap));
			CHECK(pl >= area && pl + n <= area + cap);
			for (int i = 0; i < n; i++)
				sum += pl[i];
			(void)sum;
			if (op & 16) {
				/* The peer rewrites the header or the head before the consume. */
				uint64_t pos = (uint64_t)(pl - area) - sizeof(struct moat_rec_hdr);
				struct moat_rec_hdr h;

				h.len = (uint32_t)take(&in, 4);
				h.type = (op & 32) ? MOAT_REC_WRAP : (uint32_t)take8(&in);
				if (op & 64)
					memcpy(area + pos, &h, sizeof(h));
				else
					ctl->head = c.tail + take(&in, 2);
			}
			ring_consume(&c);
			break;
		}
		case 4: { /* the peer writes into the data area */
			uint64_t off = take(&in, 2) % cap;
			uint8_t len = take8(&in) % 32;

			for (uint8_t i = 0; i < len && off + i < cap; i++)
				area[off + i] = take8(&in);
			break;
		}
		case 5: /* the peer moves the head */
			ctl->head = (op & 16) ? take(&in, 8) : c.tail + take(&in, 2) % (cap + 16);
			break;
		case 6: { /* release; never beyond what was published and read */
			ring_release(&c);
			break;
		}
		case 7: /* sleep protocol */
			if (ring_prepare_sleep(&c))
				ring_cancel_sleep(&c);
			break;
		case 8: { /* producer view: push, the peer controls our tail */
			uint32_t len = (uint32_t)take(&in, 2);
			uint8_t src[256];
			void *dst;
			int rc;

			memset(src, op, sizeof(src));
			if (op & 16)
				ctl->tail = (op & 32) ? take(&in, 8) : p.head - take(&in, 2);
			if (len > RING_MAX_RECORD(cap) && (op & 64))
				len = RING_MAX_RECORD(cap);
			rc = ring_reserve(&p, len, &dst);
			if (rc == 0) {
				uint8_t *d = dst;

				CHECK(d >= area + sizeof(struct moat_rec_hdr) &&
				      d + len <= area + cap);
				for (uint32_t i = 0; i < len; i += sizeof(src))
					memcpy(d + i, src,
					       len - i < sizeof(src) ? len - i : sizeof(src));
				ring_commit(&p, 1, len);
				ring_flush(&p);
			} else {
				CHECK(rc == -EMSGSIZE || rc == -ENOBUFS || rc == -EBADMSG);
			}
			(void)ring_wait_space(&p, len % (RING_MAX_RECORD(cap) + 1));
			(void)ring_free_bytes(&p);
			break;
		}
		case 9: /* observers */
			CHECK(ring_used_bytes(ctl, cap) <= cap);
			break;
		}
		if (was_corrupt) {
			CHECK(c.corrupt);
			check_sticky(&c);
		}
	}
	if (c.corrupt)
		check_sticky(&c);
	free(part);
	return 0;
}
