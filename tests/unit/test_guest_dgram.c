/* SPDX-License-Identifier: MIT */
/*
 * test_guest_dgram.c - the datagram frontend (dgram:PATH, dgram-fd:N):
 * batches both ways, learning the peer (with and without vfkit's "VFKT"),
 * strangers, a restarted peer, and a peer whose queue is full.
 */
#include "guest_harness.h"

static struct harness h;

static void teardown(void)
{
	h_teardown(&h);
}

TestSuite(guest_dgram, .fini = teardown, .timeout = 60);

/* A client socket bound at @dir/@name. */
static int client(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", h.dir, name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Like vfkit and libkrun: connect the client's socket to moat's. */
static void connect_to_moat(int fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, h.path, strlen(h.path));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
}

/* moat's queue holds few datagrams (max_dgram_qlen): let it read meanwhile. */
static void send_to_moat(int fd, const void *buf, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, h.path, strlen(h.path));
	for (int i = 0; i < 1000; i++) {
		ssize_t n = sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));

		if (n == (ssize_t)len)
			return;
		cr_assert(n < 0 && (errno == EAGAIN || errno == EISCONN), "sendto: %s",
			  strerror(errno));
		if (errno == EISCONN) {
			cr_assert_eq(send(fd, buf, len, MSG_DONTWAIT), (ssize_t)len);
			return;
		}
		loop_run_once(&h.loop, 10);
	}
	cr_assert_fail("moat does not read");
}

/* Run the loop for about @ms (a retry timer keeps it from going idle). */
static void pump_for(int ms)
{
	for (int i = 0; i < ms; i++)
		loop_run_once(&h.loop, 1);
}

static int recv_frame(int fd, uint8_t *buf, size_t len)
{
	return (int)recv(fd, buf, len, MSG_DONTWAIT);
}

Test(guest_dgram, vfkit_handshake_then_frames_both_ways)
{
	uint8_t f[1600], buf[1600];
	int c, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	c = client("vfkit.sock");
	connect_to_moat(c);
	send_to_moat(c, "VFKT", 4);
	for (uint32_t i = 0; i < 100; i++)
		send_to_moat(c, f, h_frame(f, 60 + i * 10, i));
	h_pump(&h);
	for (uint32_t i = 0; i < 100; i++) {
		n = h_pop(&h, buf, sizeof(buf));
		cr_assert(n > 0, "frame %u missing", i);
		h_check_frame(buf, (uint32_t)n, 60 + i * 10, i);
	}
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1, "VFKT must not become a frame");
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_TOO_SHORT]), 0);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), 100);

	for (uint32_t i = 0; i < 100; i++)
		cr_assert_eq(h_push(&h, f, h_frame(f, 100 + i, 1000 + i)), 0);
	h_flush(&h);
	h_pump(&h);
	for (uint32_t i = 0; i < 100; i++) {
		n = recv_frame(c, buf, sizeof(buf));
		h_check_frame(buf, (uint32_t)n, 100 + i, 1000 + i);
	}
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), 100);
	close(c);
}

Test(guest_dgram, peer_learned_from_first_frame_strangers_dropped)
{
	uint8_t f[200], buf[200];
	int a, b, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	a = client("a.sock");
	b = client("b.sock");
	send_to_moat(a, f, h_frame(f, 60, 1));
	h_pump(&h);
	send_to_moat(b, f, h_frame(f, 60, 2));	/* a stranger while a is alive */
	send_to_moat(a, f, h_frame(f, 60, 3));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 1);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 3);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_SPOOFED]), 1);

	/* Replies go to a only. */
	h_push(&h, f, h_frame(f, 70, 4));
	h_flush(&h);
	h_pump(&h);
	n = recv_frame(a, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 70, 4);
	cr_assert_eq(recv_frame(b, buf, sizeof(buf)), -1);

	/* a goes away (a restarted VMM binds elsewhere): b becomes the peer. */
	close(a);
	send_to_moat(b, f, h_frame(f, 60, 5));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 5);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 2);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1);
	h_push(&h, f, h_frame(f, 71, 6));
	h_flush(&h);
	h_pump(&h);
	n = recv_frame(b, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 71, 6);
	close(b);
}

Test(guest_dgram, unbound_sender_and_bad_sizes_dropped)
{
	uint8_t f[2000], buf[2000];
	int u, c, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	u = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	send_to_moat(u, f, h_frame(f, 60, 1));	/* no address: cannot be answered */
	c = client("c.sock");
	send_to_moat(c, f, h_frame(f, 13, 2));
	send_to_moat(c, f, h_frame(f, 1515, 3));
	send_to_moat(c, f, h_frame(f, 14, 4));
	send_to_moat(c, f, h_frame(f, 1514, 5));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 14, 4);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 1514, 5);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_SPOOFED]), 1);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_TOO_SHORT]), 1);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_TOO_LONG]), 1);
	close(u);
	close(c);
}

Test(guest_dgram, no_peer_yet_frames_discarded)
{
	uint8_t f[200], buf[200];
	int c, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	h_push(&h, f, h_frame(f, 60, 1));
	h_flush(&h);
	h_pump(&h);
	c = client("c.sock");
	send_to_moat(c, f, h_frame(f, 60, 2));
	h_pump(&h);
	h_push(&h, f, h_frame(f, 61, 3));
	h_flush(&h);
	h_pump(&h);
	n = recv_frame(c, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 61, 3);
	cr_assert_eq(recv_frame(c, buf, sizeof(buf)), -1);
	close(c);
}

/*
 * The peer does not read for a while: its queue fills, moat retries from
 * its timer, and once the peer reads every frame arrives in order.
 */
Test(guest_dgram, full_peer_queue_loses_nothing)
{
	enum { N = 3000 };
	uint8_t f[1600], buf[1600];
	uint32_t pushed = 0, got = 0;
	int c, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	c = client("slow.sock");	/* QEMU style: sendto(), not connected */
	send_to_moat(c, "VFKT", 4);
	h_pump(&h);
	while (pushed < N && h_push(&h, f, h_frame(f, 60 + pushed % 1400, pushed)) == 0)
		pushed++;
	h_flush(&h);
	pump_for(20);
	cr_assert_lt(h_cnt(&h.cnt->rx_frames), N, "the peer's queue should have filled");
	while (got < N) {
		int k = 0;

		while ((n = recv_frame(c, buf, sizeof(buf))) > 0) {
			h_check_frame(buf, (uint32_t)n, 60 + got % 1400, got);
			got++;
			k++;
		}
		while (pushed < N && h_push(&h, f, h_frame(f, 60 + pushed % 1400, pushed)) == 0)
			pushed++;
		h_flush(&h);
		pump_for(5);
		cr_assert(k > 0 || got == N || h_cnt(&h.cnt->rx_frames) > got, "stuck at %u", got);
	}
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), N);
	close(c);
}

Test(guest_dgram, socketpair_fd_batches_and_peer_close_stops)
{
	uint8_t f[200], buf[200];
	char spec[32];
	int sp[2], n;

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp), 0);
	snprintf(spec, sizeof(spec), "dgram-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	for (uint32_t i = 0; i < 200; i++)
		cr_assert_eq(send(sp[1], f, h_frame(f, 60 + i % 100, i), 0), 60 + i % 100);
	h_pump(&h);
	for (uint32_t i = 0; i < 200; i++) {
		n = h_pop(&h, buf, sizeof(buf));
		h_check_frame(buf, (uint32_t)n, 60 + i % 100, i);
	}
	for (uint32_t i = 0; i < 10; i++)
		h_push(&h, f, h_frame(f, 80, 500 + i));
	h_flush(&h);
	h_pump(&h);
	for (uint32_t i = 0; i < 10; i++) {
		n = recv_frame(sp[1], buf, sizeof(buf));
		h_check_frame(buf, (uint32_t)n, 80, 500 + i);
	}
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
	close(sp[1]);
	h_push(&h, f, h_frame(f, 80, 600));
	h_flush(&h);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 1, "a closed dgram-fd peer must stop moat");
}

Test(guest_dgram, seqpacket_fd_works_and_eof_stops)
{
	uint8_t f[200], buf[200];
	char spec[32];
	int sp[2], n;

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	snprintf(spec, sizeof(spec), "dgram-fd:%d", sp[0]);
	h_start(&h, spec, NULL);
	send(sp[1], f, h_frame(f, 64, 9), 0);
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 64, 9);
	close(sp[1]);
	h_pump(&h);
	cr_assert_eq(h.loop.stop, 1);
}
