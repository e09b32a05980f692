/* SPDX-License-Identifier: MIT */
/*
 * test_channel.c - the control channel's framing and non-blocking I/O (common/channel.c)
 *
 * Everything runs over a real AF_UNIX stream socketpair, as between the
 * supervisor and the proxy. The sending side must never block and never
 * queue half a message: a peer that stops reading makes flush() return 1,
 * the stall clock grow, and push() fail with -ENOBUFS once the bound is
 * reached, while every message that was accepted still arrives whole. A
 * closed peer is -EPIPE (and no SIGPIPE: SIGPIPE is left at its default
 * here, so a missing MSG_NOSIGNAL kills the test). The receiving side must
 * reassemble messages however the stream is cut, reject a length of 0 or
 * above its limit at once (-EPROTO), report end of file as 0, and read no
 * more than CHANNEL_READ_BUDGET bytes per call.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/channel.h"

/* What a reader delivered: every message, concatenated, and their lengths. */
struct got {
	size_t n, bytes;
	size_t len[4096];
	uint8_t *data;
	size_t cap;
	long fail_at; /* fail on this message (index), -1: never */
};

static void got_init(struct got *g, size_t cap)
{
	memset(g, 0, sizeof(*g));
	g->data = malloc(cap);
	g->cap = cap;
	g->fail_at = -1;
	cr_assert_not_null(g->data);
}

static int collect(void *arg, const char *msg, size_t len)
{
	struct got *g = arg;

	if (g->fail_at >= 0 && (size_t)g->fail_at == g->n)
		return -1;
	cr_assert_lt(g->n, sizeof(g->len) / sizeof(g->len[0]));
	cr_assert_leq(g->bytes + len, g->cap);
	memcpy(g->data + g->bytes, msg, len);
	g->len[g->n++] = len;
	g->bytes += len;
	return 0;
}

/* A message of @len bytes whose content depends on @seed. */
static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static void pair(int sp[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
}

static void small_sndbuf(int fd)
{
	int v = 4096; /* the kernel doubles it and enforces its own minimum */

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)), 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Append a frame to a byte stream built by hand. */
static size_t frame(uint8_t *out, size_t off, const void *msg, uint32_t len)
{
	memcpy(out + off, &len, 4);
	memcpy(out + off + 4, msg, len);
	return off + 4 + len;
}

static void write_all(int fd, const void *p, size_t len)
{
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
}

Test(channel, bounds_are_checked_at_init)
{
	struct channel_out q;
	struct channel_in r;

	cr_assert_eq(channel_out_init(&q, 0, 100), -EINVAL);
	cr_assert_eq(channel_out_init(&q, 100, 103), -EINVAL, "one whole frame must fit");
	cr_assert_eq(channel_out_init(&q, 100, 104), 0);
	channel_out_fini(&q);
	channel_out_fini(&q); /* twice is harmless */
	cr_assert_eq(channel_in_init(&r, 0), -EINVAL);
	cr_assert_eq(channel_in_init(&r, 100), 0);
	channel_in_fini(&r);
	channel_in_fini(&r);
}

Test(channel, push_checks_length_and_bound_all_or_nothing)
{
	static uint8_t big[1025];
	struct channel_out q;

	cr_assert_eq(channel_out_init(&q, 1024, 3000), 0);
	cr_assert_eq(channel_out_push(&q, big, 0), -EINVAL,
		     "an empty frame reads as a framing error");
	cr_assert_eq(channel_out_push(&q, big, 1025), -EMSGSIZE);
	cr_assert_eq(channel_out_pending(&q), 0);
	cr_assert_eq(channel_out_stalled_since_ms(&q), 0, "an empty queue is not stalled");
	cr_assert_eq(channel_out_push(&q, big, 1024), 0);
	cr_assert_eq(channel_out_push(&q, big, 1024), 0);
	cr_assert_eq(channel_out_pending(&q), 2 * 1028);
	cr_assert_neq(channel_out_stalled_since_ms(&q), 0);
	/* 2056 + 4 + 941 = 3001 > 3000: refused whole, nothing added. */
	cr_assert_eq(channel_out_push(&q, big, 941), -ENOBUFS);
	cr_assert_eq(channel_out_pending(&q), 2 * 1028);
	cr_assert_eq(channel_out_push(&q, big, 940), 0, "exactly the bound fits");
	cr_assert_eq(channel_out_pending(&q), 3000);
	cr_assert_eq(channel_out_push(&q, big, 1), -ENOBUFS);
	channel_out_fini(&q);
}

Test(channel, push_reuses_the_room_already_written)
{
	enum { SZ = 1000, BOUND = 64u << 10 };
	static uint8_t msg[SZ];
	struct channel_out q;
	struct channel_in r;
	struct got g;
	char err[128];
	int sp[2], pushed = 0, rc;

	pair(sp);
	small_sndbuf(sp[0]);
	got_init(&g, 1u << 20);
	cr_assert_eq(channel_out_init(&q, SZ, BOUND), 0);
	cr_assert_eq(channel_in_init(&r, SZ), 0);
	/* Fill the queue, let the socket take its part: the front of the buffer is free. */
	while (channel_out_pending(&q) + 4 + SZ <= BOUND) {
		pattern(msg, SZ, (unsigned)pushed++);
		cr_assert_eq(channel_out_push(&q, msg, SZ), 0);
	}
	cr_assert_eq(channel_out_flush(&q, sp[0]), 1);
	/* White box: the next frame fits in the bound, but not at the end of the buffer. */
	cr_assert_leq(channel_out_pending(&q) + 4 + SZ, BOUND, "the socket took too little");
	cr_assert_gt(q.tail + 4 + SZ, BOUND);
	for (;;) {
		pattern(msg, SZ, (unsigned)pushed);
		rc = channel_out_push(&q, msg, SZ);
		if (rc)
			break;
		pushed++;
	}
	cr_assert_eq(rc, -ENOBUFS);
	cr_assert_eq(q.head, 0, "pending bytes were not moved to the front");
	while ((rc = channel_out_flush(&q, sp[0])) == 1)
		cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(g.n, (size_t)pushed);
	for (int i = 0; i < pushed; i++) {
		pattern(msg, SZ, (unsigned)i);
		cr_assert_eq(memcmp(g.data + (size_t)i * SZ, msg, SZ), 0, "message %d", i);
	}
	close(sp[0]);
	close(sp[1]);
	channel_out_fini(&q);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, round_trip_over_a_socketpair)
{
	const char *msgs[] = { "{\"event\":\"denial\"}", "x", "{\"policy\":{},\"generation\":1}" };
	struct channel_out q;
	struct channel_in r;
	struct got g;
	char err[128];
	int sp[2];
	size_t off = 0;

	pair(sp);
	got_init(&g, 4096);
	cr_assert_eq(channel_out_init(&q, 1024, 4096), 0);
	cr_assert_eq(channel_in_init(&r, 1024), 0);
	cr_assert_eq(channel_out_flush(&q, sp[0]), 0, "an empty queue flushes to nothing");
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(channel_out_push(&q, msgs[i], strlen(msgs[i])), 0);
	cr_assert_eq(channel_out_flush(&q, sp[0]), 0);
	cr_assert_eq(channel_out_pending(&q), 0);
	cr_assert_eq(q.tail, 0, "an empty queue starts again at the front of its buffer");
	cr_assert_eq(channel_out_stalled_ms(&q), 0);
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(g.n, 3);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(g.len[i], strlen(msgs[i]));
		cr_assert_eq(memcmp(g.data + off, msgs[i], g.len[i]), 0);
		off += g.len[i];
	}
	cr_assert_eq(channel_in_pending(&r), 0);
	/* Nothing more: still open. */
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	close(sp[0]);
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 0, "EOF");
	close(sp[1]);
	channel_out_fini(&q);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, partial_writes_resume_mid_frame)
{
	enum { N = 400 };
	static uint8_t msg[5000], want[N * 5000];
	struct channel_out q;
	struct channel_in r;
	struct got g;
	char err[128];
	size_t total = 0, sizes[N];
	int sp[2], partial = 0, rounds = 0, rc;

	pair(sp);
	small_sndbuf(sp[0]);
	got_init(&g, sizeof(want));
	cr_assert_eq(channel_out_init(&q, sizeof(msg), 1u << 22), 0);
	cr_assert_eq(channel_in_init(&r, sizeof(msg)), 0);
	/* Odd sizes, so the socket fills in the middle of headers and bodies alike. */
	for (unsigned i = 0; i < N; i++) {
		sizes[i] = 1 + (i * 2654435761u) % sizeof(msg);
		pattern(msg, sizes[i], i);
		memcpy(want + total, msg, sizes[i]);
		total += sizes[i];
		cr_assert_eq(channel_out_push(&q, msg, sizes[i]), 0);
	}
	while ((rc = channel_out_flush(&q, sp[0])) != 0) {
		size_t before = channel_out_pending(&q);

		cr_assert_eq(rc, 1, "flush: %s", strerror(-rc));
		cr_assert_gt(before, 0);
		partial++;
		cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1, "%s",
			     err);
		cr_assert_lt(++rounds, 100000);
	}
	cr_assert_gt(partial, 10, "SO_SNDBUF did not make the writes partial (%d)", partial);
	while (g.n < N) {
		cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
		cr_assert_lt(++rounds, 100000);
	}
	cr_assert_eq(g.n, N);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(g.len[i], sizes[i], "message %u", i);
	cr_assert_eq(g.bytes, total);
	cr_assert_eq(memcmp(g.data, want, total), 0, "bytes changed on the way");
	cr_assert_eq(channel_in_pending(&r), 0);
	close(sp[0]);
	close(sp[1]);
	channel_out_fini(&q);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, a_peer_that_never_reads)
{
	static uint8_t msg[1000];
	struct channel_out q;
	struct channel_in r;
	struct got g;
	char err[128];
	uint64_t since, pending;
	int sp[2], accepted = 0, rc;

	pair(sp);
	small_sndbuf(sp[0]);
	got_init(&g, 1u << 20);
	cr_assert_eq(channel_out_init(&q, sizeof(msg), 64u << 10), 0);
	cr_assert_eq(channel_in_init(&r, sizeof(msg)), 0);
	/* Push and flush until the socket is full: flush says 1, never blocks. */
	for (;;) {
		pattern(msg, sizeof(msg), (unsigned)accepted);
		cr_assert_eq(channel_out_push(&q, msg, sizeof(msg)), 0);
		accepted++;
		rc = channel_out_flush(&q, sp[0]);
		if (rc == 1)
			break;
		cr_assert_eq(rc, 0);
		cr_assert_lt(accepted, 10000, "the socket never filled");
	}
	since = channel_out_stalled_since_ms(&q);
	cr_assert_neq(since, 0);
	sleep_ms(120);
	cr_assert_eq(channel_out_flush(&q, sp[0]), 1, "no room, no progress");
	cr_assert_eq(channel_out_stalled_since_ms(&q), since, "no byte written: the clock runs on");
	cr_assert_geq(channel_out_stalled_ms(&q), 100, "stalled %llu ms",
		      (unsigned long long)channel_out_stalled_ms(&q));
	/* Fill the queue to its bound; the refused push leaves nothing behind. */
	for (;;) {
		pattern(msg, sizeof(msg), (unsigned)accepted);
		pending = channel_out_pending(&q);
		rc = channel_out_push(&q, msg, sizeof(msg));
		if (rc == -ENOBUFS)
			break;
		cr_assert_eq(rc, 0);
		accepted++;
		cr_assert_lt(accepted, 10000);
	}
	cr_assert_eq(channel_out_pending(&q), pending, "a refused message was partly queued");
	cr_assert_gt(pending + 1004, 64u << 10, "refused although it fitted");
	cr_assert_eq(channel_out_flush(&q, sp[0]), 1);
	cr_assert_eq(channel_out_stalled_since_ms(&q), since);
	/* The peer wakes up: one read is progress and restarts the clock. */
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(channel_out_flush(&q, sp[0]), 1);
	cr_assert_gt(channel_out_stalled_since_ms(&q), since, "progress did not reset the clock");
	cr_assert_lt(channel_out_stalled_ms(&q), 100);
	/* Everything accepted arrives whole, and nothing else. */
	while ((rc = channel_out_flush(&q, sp[0])) == 1)
		cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(channel_out_stalled_since_ms(&q), 0);
	cr_assert_eq(channel_in_read(&r, sp[1], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(g.n, (size_t)accepted);
	for (int i = 0; i < accepted; i++) {
		pattern(msg, sizeof(msg), (unsigned)i);
		cr_assert_eq(g.len[i], sizeof(msg));
		cr_assert_eq(memcmp(g.data + (size_t)i * sizeof(msg), msg, sizeof(msg)), 0,
			     "message %d", i);
	}
	cr_assert_eq(channel_in_pending(&r), 0);
	close(sp[0]);
	close(sp[1]);
	channel_out_fini(&q);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, a_closed_peer_is_epipe_without_sigpipe)
{
	struct channel_out q;
	int sp[2];

	signal(SIGPIPE, SIG_DFL);
	pair(sp);
	cr_assert_eq(channel_out_init(&q, 64, 256), 0);
	close(sp[1]);
	cr_assert_eq(channel_out_push(&q, "hello", 5), 0);
	cr_assert_eq(channel_out_flush(&q, sp[0]), -EPIPE);
	cr_assert_eq(channel_out_pending(&q), 9, "the bytes stay queued; the stream is dead");
	cr_assert_eq(channel_out_flush(&q, sp[0]), -EPIPE);
	close(sp[0]);
	channel_out_fini(&q);
}

Test(channel, reassembles_a_stream_cut_at_every_byte)
{
	static const char *msgs[] = { "{\"event\":\"denial\",\"flow\":1}", "a", "", "0123456789" };
	uint8_t stream[256];
	size_t len = 0, nmsg = 0, ends[4];
	char err[128];

	for (size_t i = 0; i < 4; i++) {
		if (!msgs[i][0])
			continue;
		len = frame(stream, len, msgs[i], (uint32_t)strlen(msgs[i]));
		ends[nmsg++] = len;
	}
	/* Two writes, cut at k: what is complete after the first is delivered at once. */
	for (size_t k = 1; k < len; k++) {
		struct channel_in r;
		struct got g;
		size_t complete = 0;
		int sp[2];

		pair(sp);
		got_init(&g, 256);
		cr_assert_eq(channel_in_init(&r, 64), 0);
		write_all(sp[1], stream, k);
		cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
		while (complete < nmsg && ends[complete] <= k)
			complete++;
		cr_assert_eq(g.n, complete, "cut at %zu", k);
		cr_assert_eq(channel_in_pending(&r), k - (complete ? ends[complete - 1] : 0));
		write_all(sp[1], stream + k, len - k);
		cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
		cr_assert_eq(g.n, nmsg, "cut at %zu", k);
		cr_assert_eq(channel_in_pending(&r), 0);
		cr_assert_eq(g.bytes, len - 4 * nmsg);
		close(sp[0]);
		close(sp[1]);
		channel_in_fini(&r);
		free(g.data);
	}
	/* And one byte at a time. */
	{
		struct channel_in r;
		struct got g;
		int sp[2];

		pair(sp);
		got_init(&g, 256);
		cr_assert_eq(channel_in_init(&r, 64), 0);
		for (size_t i = 0; i < len; i++) {
			write_all(sp[1], stream + i, 1);
			cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
		}
		cr_assert_eq(g.n, nmsg);
		cr_assert_eq(memcmp(g.data, msgs[0], strlen(msgs[0])), 0);
		cr_assert_eq(g.len[2], 10);
		cr_assert_eq(memcmp(g.data + g.bytes - 10, "0123456789", 10), 0);
		close(sp[0]);
		close(sp[1]);
		channel_in_fini(&r);
		free(g.data);
	}
}

Test(channel, the_largest_message_fits_and_one_more_byte_does_not)
{
	static uint8_t stream[2 * (4 + 1000)];
	static uint8_t body[1001];
	struct channel_in r;
	struct got g;
	char err[128] = "";
	size_t len;
	int sp[2];

	pair(sp);
	got_init(&g, 4096);
	cr_assert_eq(channel_in_init(&r, 1000), 0);
	pattern(body, sizeof(body), 3);
	len = frame(stream, 0, body, 1000);
	write_all(sp[1], stream, len);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.len[0], 1000);
	/* Over the limit: refused on the header alone, before the body is sent. */
	{
		uint32_t l = 1001;

		write_all(sp[1], &l, 4);
	}
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "1001 bytes"), "%s", err);
	cr_assert_eq(g.n, 1);
	close(sp[0]);
	close(sp[1]);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, a_zero_length_is_a_framing_error)
{
	uint8_t stream[64];
	uint32_t zero = 0;
	struct channel_in r;
	struct got g;
	char err[128] = "";
	size_t len;
	int sp[2];

	pair(sp);
	got_init(&g, 256);
	cr_assert_eq(channel_in_init(&r, 64), 0);
	len = frame(stream, 0, "ok", 2);
	memcpy(stream + len, &zero, 4);
	len += 4;
	len = frame(stream, len, "never", 5);
	write_all(sp[1], stream, len);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "0 bytes"), "%s", err);
	cr_assert_eq(g.n, 1, "what came before is delivered, nothing after");
	close(sp[0]);
	close(sp[1]);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, a_failing_callback_stops_reading)
{
	uint8_t stream[64];
	struct channel_in r;
	struct got g;
	char err[128] = "";
	size_t len = 0;
	int sp[2];

	pair(sp);
	got_init(&g, 256);
	g.fail_at = 1;
	cr_assert_eq(channel_in_init(&r, 64), 0);
	len = frame(stream, len, "one", 3);
	len = frame(stream, len, "two", 3);
	len = frame(stream, len, "three", 5);
	write_all(sp[1], stream, len);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), -EPROTO);
	cr_assert_eq(g.n, 1);
	cr_assert_not_null(strstr(err, "rejected"), "%s", err);
	close(sp[0]);
	close(sp[1]);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, end_of_file)
{
	uint8_t stream[64];
	struct channel_in r;
	struct got g;
	char err[128];
	size_t len;
	int sp[2];

	/* At a message boundary. */
	pair(sp);
	got_init(&g, 256);
	cr_assert_eq(channel_in_init(&r, 64), 0);
	len = frame(stream, 0, "last", 4);
	write_all(sp[1], stream, len);
	close(sp[1]);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.n, 1, "the message before EOF is delivered");
	cr_assert_eq(channel_in_pending(&r), 0);
	close(sp[0]);
	channel_in_fini(&r);
	/* In the middle of one: still 0, and the reader says what was cut. */
	pair(sp);
	cr_assert_eq(channel_in_init(&r, 64), 0);
	write_all(sp[1], stream, len - 1);
	close(sp[1]);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(channel_in_pending(&r), len - 1);
	close(sp[0]);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, many_messages_in_one_read)
{
	enum { N = 3000 };
	static uint8_t stream[N * 32];
	struct channel_in r;
	struct got g;
	char err[128], m[32];
	size_t len = 0;
	int sp[2], v = 1 << 20;

	pair(sp);
	/* Room for all of it in the socket at once (capped by wmem_max: checked below). */
	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	got_init(&g, sizeof(stream));
	cr_assert_eq(channel_in_init(&r, 64), 0);
	for (int i = 0; i < N; i++) {
		int n = snprintf(m, sizeof(m), "{\"flow\":%d}", i);

		len = frame(stream, len, m, (uint32_t)n);
	}
	cr_assert_lt(len, CHANNEL_READ_BUDGET);
	write_all(sp[1], stream, len);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
	cr_assert_eq(g.n, N, "one call delivered %zu of %d", g.n, N);
	cr_assert_eq(memcmp(g.data, "{\"flow\":0}", 10), 0);
	cr_assert_eq(memcmp(g.data + g.bytes - 13, "{\"flow\":2999}", 13), 0);
	close(sp[0]);
	close(sp[1]);
	channel_in_fini(&r);
	free(g.data);
}

Test(channel, one_call_reads_at_most_the_budget)
{
	static uint8_t frame_buf[4 + 1020];
	struct channel_in r;
	struct got g;
	char err[128];
	size_t queued = 0, first;
	uint32_t l = 1020;
	int sp[2], v = 4 << 20;

	pair(sp);
	/* More than the budget waiting in the socket before the call. */
	if (setsockopt(sp[1], SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
		setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	memcpy(frame_buf, &l, 4);
	memset(frame_buf + 4, 'b', 1020);
	while (queued < 4 * (size_t)CHANNEL_READ_BUDGET) {
		ssize_t n = send(sp[1], frame_buf, sizeof(frame_buf), MSG_DONTWAIT);

		if (n < 0)
			break;
		cr_assert_eq(n, (ssize_t)sizeof(frame_buf), "a partial frame");
		queued += (size_t)n;
	}
	if (queued < CHANNEL_READ_BUDGET + sizeof(frame_buf))
		cr_skip_test("the socket buffers only %zu bytes (wmem_max; not root?)", queued);
	got_init(&g, queued);
	cr_assert_eq(channel_in_init(&r, 2048), 0);
	cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
	first = g.bytes + g.n * 4 + channel_in_pending(&r);
	cr_assert_gt(first, 0);
	cr_assert_leq(first, CHANNEL_READ_BUDGET, "one call read %zu of %zu bytes", first, queued);
	/* The rest comes with later calls. */
	for (int calls = 0; g.n * sizeof(frame_buf) < queued; calls++) {
		cr_assert_eq(channel_in_read(&r, sp[0], collect, &g, err, sizeof(err)), 1);
		cr_assert_lt(calls, 64);
	}
	cr_assert_eq(g.n * sizeof(frame_buf), queued);
	cr_assert_eq(channel_in_pending(&r), 0);
	close(sp[0]);
	close(sp[1]);
	channel_in_fini(&r);
	free(g.data);
}
