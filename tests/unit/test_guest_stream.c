/* SPDX-License-Identifier: MIT */
/*
 * test_guest_stream.c - the stream frontend (stream:PATH, stream-fd:N):
 * framing both ways, partial reads and writes, bad length prefixes, one
 * client at a time, backpressure in both directions.
 */
#include "guest_harness.h"

static struct harness h;

static void teardown(void)
{
	h_teardown(&h);
}

TestSuite(guest_stream, .fini = teardown, .timeout = 60);

Test(guest_stream, frames_both_ways_in_batches)
{
	uint8_t f[2000], buf[2000], all[8 * 2100];
	size_t off = 0;
	int c, n;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	/* Eight frames in one write: they must all arrive, in order. */
	for (uint32_t i = 0; i < 8; i++) {
		uint32_t len = 60 + i * 200, be = htonl(len);

		memcpy(all + off, &be, 4);
		h_frame(all + off + 4, len, i);
		off += 4 + len;
	}
	h_write_all(c, all, off);
	h_pump(&h);
	for (uint32_t i = 0; i < 8; i++) {
		n = h_pop(&h, buf, sizeof(buf));
		cr_assert(n > 0, "frame %u missing", i);
		h_check_frame(buf, (uint32_t)n, 60 + i * 200, i);
	}
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), 8);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);

	/* Toward the guest: framed the same way. */
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(h_push(&h, f, h_frame(f, 100 + i, 100 + i)), 0);
	h_flush(&h);
	h_pump(&h);
	for (uint32_t i = 0; i < 5; i++) {
		uint32_t be;

		cr_assert_eq(h_read_exact(c, &be, 4), 0);
		cr_assert_eq(ntohl(be), 100 + i);
		cr_assert_eq(h_read_exact(c, buf, 100 + i), 0);
		h_check_frame(buf, 100 + i, 100 + i, 100 + i);
	}
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), 5);
	close(c);
}

Test(guest_stream, partial_reads_are_reassembled)
{
	uint8_t f[1514], wire[1518], buf[1600];
	uint32_t be = htonl(1514);
	int c, n;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_frame(f, 1514, 42);
	memcpy(wire, &be, 4);
	memcpy(wire + 4, f, 1514);
	/* 1, 2, 3 bytes of the prefix, then the rest in odd pieces. */
	for (size_t off = 0, step = 1; off < sizeof(wire); off += step, step = step * 3 + 1) {
		size_t k = off + step > sizeof(wire) ? sizeof(wire) - off : step;

		h_write_all(c, wire + off, k);
		h_pump(&h);
		if (off + k < sizeof(wire))
			cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1, "frame released early");
	}
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 1514, 42);
	close(c);
}

/* A bad prefix drops the client; the next client is served. */
static void bad_prefix(uint32_t len, unsigned nth)
{
	uint8_t f[100], buf[200];
	uint32_t be = htonl(len);
	char junk[64];
	int c, n;

	c = h_connect(h.path, SOCK_STREAM);
	h_stream_send(c, f, h_frame(f, 60, nth)); /* a good frame first */
	h_write_all(c, &be, 4);
	memset(junk, 0xab, sizeof(junk));
	h_write_all(c, junk, sizeof(junk));
	h_pump(&h);
	n = read(c, junk, sizeof(junk));
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "length %u: client not dropped", len);
	close(c);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_BAD_LENGTH]), nth, "length %u not counted", len);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), nth);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, nth);
}

Test(guest_stream, bad_length_drops_client_and_next_is_served)
{
	static const uint32_t bad[] = { 0, 13, 65536, 0x80000000u, 0xffffffffu };
	uint8_t f[100], buf[200];
	unsigned i;
	int c, n;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		bad_prefix(bad[i], i + 1);
	/* Still serving: a good client both ways. */
	c = h_connect(h.path, SOCK_STREAM);
	h_stream_send(c, f, h_frame(f, 64, 77));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 64, 77);
	h_push(&h, f, h_frame(f, 70, 78));
	h_flush(&h);
	h_pump(&h);
	{
		uint32_t be;

		cr_assert_eq(h_read_exact(c, &be, 4), 0);
		cr_assert_eq(ntohl(be), 70);
		cr_assert_eq(h_read_exact(c, buf, 70), 0);
		h_check_frame(buf, 70, 70, 78);
	}
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), i + 1);
	close(c);
}

Test(guest_stream, oversize_frame_skipped_connection_kept)
{
	uint8_t f[3000], buf[3000];
	int c, n;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_stream_send(c, f, h_frame(f, 1515, 1)); /* MTU + 15: one too long */
	h_stream_send(c, f, h_frame(f, 2500, 2));
	h_stream_send(c, f, h_frame(f, 1514, 3)); /* the largest that fits */
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 1514, 3);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_TOO_LONG]), 2);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 0);
	close(c);
}

Test(guest_stream, one_client_at_a_time)
{
	uint8_t f[100], buf[200];
	int a, b, n;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	a = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	b = h_connect(h.path, SOCK_STREAM); /* waits in the backlog */
	h_stream_send(b, f, h_frame(f, 60, 2));
	h_stream_send(a, f, h_frame(f, 60, 1));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 1);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1, "second client served while the first is on");
	close(a);
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 2);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 2);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1);
	close(b);
}

Test(guest_stream, frames_without_a_client_are_not_delivered_later)
{
	uint8_t f[100], buf[200];
	uint32_t be;
	int c;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	h_push(&h, f, h_frame(f, 60, 1));
	h_flush(&h);
	h_pump(&h);
	c = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	h_push(&h, f, h_frame(f, 61, 2));
	h_flush(&h);
	h_pump(&h);
	cr_assert_eq(h_read_exact(c, &be, 4), 0);
	cr_assert_eq(ntohl(be), 61, "stale frame delivered to a new client");
	cr_assert_eq(h_read_exact(c, buf, 61), 0);
	h_check_frame(buf, 61, 61, 2);
	close(c);
}

/*
 * Toward a slow guest: tiny socket buffers force short writes that cut
 * frames in the middle; every frame must still arrive whole and in order.
 */
Test(guest_stream, short_writes_lose_nothing)
{
	enum { N = 3000 };
	uint8_t f[1514];
	char spec[32];
	int sp[2], sz = 4096;
	uint32_t pushed = 0, got = 0;

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	snprintf(spec, sizeof(spec), "stream-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	fcntl(sp[1], F_SETFL, O_NONBLOCK);
	{
		static uint8_t acc[1 << 16];
		size_t have = 0;

		while (got < N) {
			ssize_t n;
			size_t used = 0;

			/* Keep s2g topped up, as a busy netstack would. */
			while (pushed < N &&
			       h_push(&h, f, h_frame(f, 60 + (pushed * 37) % 1455, pushed)) == 0)
				pushed++;
			h_flush(&h);
			loop_run_once(&h.loop, 10);
			/* Read an odd-sized piece, then let moat write again. */
			n = read(sp[1], acc + have,
				 3001 < sizeof(acc) - have ? 3001 : sizeof(acc) - have);
			if (n > 0)
				have += (size_t)n;
			for (;;) {
				uint32_t be, len;

				if (have - used < 4)
					break;
				memcpy(&be, acc + used, 4);
				len = ntohl(be);
				if (have - used < 4 + len)
					break;
				h_check_frame(acc + used + 4, len, 60 + (got * 37) % 1455, got);
				got++;
				used += 4 + len;
			}
			memmove(acc, acc + used, have - used);
			have -= used;
		}
	}
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), N);
	close(sp[1]);
}

/* g2s full: reading pauses, nothing is dropped, and resumes on space. */
Test(guest_stream, full_g2s_pauses_and_resumes)
{
	enum { N = 1000, LEN = 1000 };
	static uint8_t wire[N * (LEN + 4)];
	uint8_t buf[1100];
	size_t off = 0;
	uint32_t got = 0;
	int c, n;

	h_setup(&h, "stream", 1500, 65536, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	for (uint32_t i = 0; i < N; i++) {
		uint32_t be = htonl(LEN);

		memcpy(wire + i * (LEN + 4), &be, 4);
		h_frame(wire + i * (LEN + 4) + 4, LEN, i);
	}
	/* 1 MB toward a 64 KiB ring nobody drains: moat must stop reading. */
	for (int i = 0; i < 50; i++) {
		ssize_t k = send(c, wire + off, sizeof(wire) - off, MSG_DONTWAIT);

		if (k > 0)
			off += (size_t)k;
		h_pump(&h);
	}
	cr_assert_lt(h_cnt(&h.cnt->tx_frames), N, "ring should have filled");
	cr_assert_gt(h_cnt(&h.cnt->tx_frames), 30, "ring should have been filled");
	cr_assert_lt(off, sizeof(wire), "the socket buffer should have filled too");
	while (got < N) {
		int k = 0;

		if (off < sizeof(wire)) {
			ssize_t w = send(c, wire + off, sizeof(wire) - off, MSG_DONTWAIT);

			if (w > 0)
				off += (size_t)w;
		}
		while ((n = h_pop(&h, buf, sizeof(buf))) > 0) {
			h_check_frame(buf, (uint32_t)n, LEN, got);
			got++;
			k++;
		}
		h_release(&h);
		h_pump(&h);
		cr_assert(k > 0 || got == N || off < sizeof(wire), "no progress after %u frames",
			  got);
	}
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_RING_FULL]), 0);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), N);
	close(c);
}

Test(guest_stream, stream_fd_peer_leaving_stops_moat)
{
	char spec[32];
	int sp[2];

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	snprintf(spec, sizeof(spec), "stream-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
	close(sp[1]);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 1);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1);
}

/*
 * stream-fd: has nobody to take over after a bad length prefix: moat stops
 * as a runtime error (guest_failed(): exit 1), unlike a peer that leaves.
 */
Test(guest_stream, stream_fd_bad_length_is_a_runtime_error)
{
	uint8_t f[100], buf[200];
	uint32_t be = htonl(13);
	char spec[32];
	int sp[2], n;

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	snprintf(spec, sizeof(spec), "stream-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	h_stream_send(sp[1], f, h_frame(f, 60, 1));
	h_write_all(sp[1], &be, 4);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 1, "a bad length from stream-fd: must stop moat");
	cr_assert(guest_failed(h.g), "and the stop must be an error, not a clean exit");
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_BAD_LENGTH]), 1);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 1);
	close(sp[1]);
}

Test(guest_stream, stream_fd_peer_leaving_is_not_a_failure)
{
	char spec[32];
	int sp[2];

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	snprintf(spec, sizeof(spec), "stream-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	close(sp[1]);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 1);
	cr_assert_not(guest_failed(h.g));
}

/* A bad length on stream:PATH only drops that client: not a failure. */
Test(guest_stream, stream_path_bad_length_is_not_a_failure)
{
	uint32_t be = htonl(0);
	int c;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_write_all(c, &be, 4);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 0);
	cr_assert_not(guest_failed(h.g));
	close(c);
}

/*
 * A hostile netstack writes a g2s tail ahead of our head: the first push
 * that sees it reports "g2s ring corrupt" once, reading stops, and the
 * port goes idle instead of spinning on the unread bytes.
 */
Test(guest_stream, forged_g2s_tail_is_a_violation_not_a_spin)
{
	uint8_t f[200], buf[200];
	int c;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_stream_send(c, f, h_frame(f, 60, 1));
	h_pump(&h);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), 60);
	h_release(&h);
	h_pump(&h);
	h_forge_g2s_tail(&h);
	for (uint32_t i = 0; i < 20; i++)
		h_stream_send(c, f, h_frame(f, 60, 2 + i));
	h_pump(&h);
	cr_assert_eq(h_violations, 1, "%d violations reported", h_violations);
	cr_assert_str_eq(h_violation, "g2s ring corrupt");
	cr_assert_eq(h_busy_turns(&h, 200), 0, "the port spins on a corrupt g2s");
	/* More bytes, even a new wake from the netstack: still once, still idle. */
	h_stream_send(c, f, h_frame(f, 60, 99));
	cr_assert_eq(write(h.gefd, &(uint64_t){ 1 }, 8), 8);
	cr_assert_leq(h_busy_turns(&h, 200), 1);
	cr_assert_eq(h_violations, 1);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), 1, "nothing may be written to a corrupt ring");
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_RING_FULL]), 0);
	close(c);
}

/* The same for s2g: a forged head is reported once and output stops. */
Test(guest_stream, forged_s2g_head_is_a_violation_not_a_spin)
{
	int c;

	h_setup(&h, "stream", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	h_forge_s2g_head(&h);
	h_pump(&h);
	cr_assert_eq(h_violations, 1);
	cr_assert_str_eq(h_violation, "s2g ring corrupt");
	cr_assert_eq(write(h.gefd, &(uint64_t){ 1 }, 8), 8);
	cr_assert_leq(h_busy_turns(&h, 200), 1);
	cr_assert_eq(h_violations, 1);
	close(c);
}
