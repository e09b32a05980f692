/* SPDX-License-Identifier: MIT */
/*
 * test_guest_dgram.c - the datagram frontend (dgram:PATH, dgram-fd:N):
 * batches both ways, learning the peer (with and without vfkit's "VFKT"),
 * strangers, a restarted peer, and a peer whose queue is full.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

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
	send_to_moat(b, f, h_frame(f, 60, 2)); /* a stranger while a is alive */
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
	send_to_moat(u, f, h_frame(f, 60, 1)); /* no address: cannot be answered */
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
	c = client("slow.sock"); /* QEMU style: sendto(), not connected */
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

/* g2s full: moat stops taking datagrams (the socket holds them), resumes. */
Test(guest_dgram, full_g2s_pauses_and_resumes)
{
	enum { N = 300, LEN = 1000 };
	uint8_t f[1100], buf[1100];
	uint32_t sent = 0, got = 0;
	int c, n, sz = 1 << 20;

	h_setup(&h, "dgram", 1500, 65536, NULL);
	c = client("c.sock");
	setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	connect_to_moat(c);
	while (sent < N && send(c, f, h_frame(f, LEN, sent), MSG_DONTWAIT) == LEN) {
		sent++;
		if (sent % 8 == 0)
			h_pump(&h);
	}
	h_pump(&h);
	cr_assert_lt(h_cnt(&h.cnt->tx_frames), sent, "g2s should have filled");
	cr_assert_eq(h_busy_turns(&h, 200), 0, "a paused dgram port must not wake the loop");
	while (got < N) {
		int k = 0;

		while (sent < N && send(c, f, h_frame(f, LEN, sent), MSG_DONTWAIT) == LEN)
			sent++;
		while ((n = h_pop(&h, buf, sizeof(buf))) > 0) {
			h_check_frame(buf, (uint32_t)n, LEN, got);
			got++;
			k++;
		}
		h_release(&h);
		h_pump(&h);
		cr_assert(k > 0 || got == N, "no progress after %u frames", got);
	}
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_RING_FULL]), 0);
	cr_assert_eq(h_violations, 0);
	close(c);
}

/* A forged g2s tail: one violation, no frame pushed, and no spin. */
Test(guest_dgram, forged_g2s_tail_is_a_violation_not_a_spin)
{
	uint8_t f[200];
	int c;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	c = client("c.sock");
	connect_to_moat(c);
	h_forge_g2s_tail(&h);
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(send(c, f, h_frame(f, 60, i), MSG_DONTWAIT), 60);
	h_pump(&h);
	cr_assert_eq(h_violations, 1, "%d violations reported", h_violations);
	cr_assert_str_eq(h_violation, "g2s ring corrupt");
	cr_assert_eq(h_busy_turns(&h, 200), 0, "the port spins on a corrupt g2s");
	cr_assert_eq(send(c, f, h_frame(f, 60, 9), MSG_DONTWAIT), 60);
	cr_assert_eq(write(h.gefd, &(uint64_t){ 1 }, 8), 8);
	cr_assert_leq(h_busy_turns(&h, 200), 1);
	cr_assert_eq(h_violations, 1);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), 0);
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_RING_FULL]), 0,
		     "a corrupt ring is not a full one: nothing is counted as a drop");
	close(c);
}

/* A peer bound at @path (a full path), created by the calling process. */
static int bind_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path,
		     strerror(errno));
	return fd;
}

/* Push one frame toward the guest and let moat send it. */
static void to_guest(uint32_t len, uint32_t seq)
{
	uint8_t f[2000];

	cr_assert_eq(h_push(&h, f, h_frame(f, len, seq)), 0);
	h_flush(&h);
	h_pump(&h);
}

/*
 * The peer process dies; another process binds the same path (it could
 * write the directory). It must not get the guest's frames: the peer was
 * (path, pid, uid), and its pid is gone.
 */
Test(guest_dgram, rebinding_a_dead_peers_path_gets_nothing)
{
	char path[128];
	uint8_t f[200], buf[200];
	int go[2], b, n, status;
	pid_t pid;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	snprintf(path, sizeof(path), "%s/vmm.sock", h.dir);
	cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int a = socket(AF_UNIX, SOCK_DGRAM, 0);
		char x;

		close(go[1]);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", path);
		if (a < 0 || bind(a, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(1);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", h.path);
		h_frame(f, 60, 1);
		if (sendto(a, f, 60, 0, (struct sockaddr *)&sa, sizeof(sa)) != 60)
			_exit(2);
		if (read(go[0], &x, 1) < 0) /* until the parent says die */
			_exit(3);
		_exit(0); /* the socket file stays behind */
	}
	close(go[0]);
	for (int i = 0; i < 200 && h_cnt(&h.cnt->tx_frames) == 0; i++)
		loop_run_once(&h.loop, 10);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 1);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
	close(go[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	h_pump(&h);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1, "the peer's exit was not noticed");

	/* An impostor takes the path over and only listens. */
	cr_assert_eq(unlink(path), 0);
	b = bind_at(path);
	for (uint32_t i = 0; i < 5; i++)
		to_guest(70, 10 + i);
	cr_assert_eq(recv(b, buf, sizeof(buf), MSG_DONTWAIT), -1, "the impostor got a frame");
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), 0);

	/* Speaking up, it is a restarted VMM of the same user: it attaches. */
	send_to_moat(b, f, h_frame(f, 60, 2));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 2);
	to_guest(71, 20);
	n = (int)recv(b, buf, sizeof(buf), MSG_DONTWAIT);
	h_check_frame(buf, (uint32_t)n, 71, 20);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 2);
	close(b);
}

/* The peer lives, but its socket at the path was replaced: not the peer. */
Test(guest_dgram, replaced_socket_at_the_peers_path_gets_nothing)
{
	char path[128];
	uint8_t f[200], buf[200];
	int a, b, n;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	snprintf(path, sizeof(path), "%s/vmm.sock", h.dir);
	a = bind_at(path);
	send_to_moat(a, f, h_frame(f, 60, 1));
	h_pump(&h);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), 60);
	to_guest(70, 2);
	n = (int)recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	h_check_frame(buf, (uint32_t)n, 70, 2);
	close(a);
	cr_assert_eq(unlink(path), 0);
	b = bind_at(path);
	to_guest(70, 3);
	cr_assert_eq(recv(b, buf, sizeof(buf), MSG_DONTWAIT), -1, "a re-bound path got a frame");
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1);
	close(b);
}

/*
 * Same path, other credentials, while the peer lives: a second process
 * sending through the peer's socket (it inherited it) is not the peer.
 */
Test(guest_dgram, same_path_other_credentials_dropped)
{
	char path[128];
	uint8_t f[200], buf[200];
	int a, n, status;
	pid_t pid;

	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	snprintf(path, sizeof(path), "%s/vmm.sock", h.dir);
	a = bind_at(path);
	connect_to_moat(a);
	send_to_moat(a, f, h_frame(f, 60, 1));
	h_pump(&h);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		for (uint32_t i = 0; i < 3; i++)
			if (send(a, f, h_frame(f, 60, 100 + i), 0) != 60)
				_exit(1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	send_to_moat(a, f, h_frame(f, 60, 2));
	h_pump(&h);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 1);
	n = h_pop(&h, buf, sizeof(buf));
	h_check_frame(buf, (uint32_t)n, 60, 2);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1, "a frame from another pid was taken");
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_SPOOFED]), 3);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
	to_guest(70, 3);
	n = (int)recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	h_check_frame(buf, (uint32_t)n, 70, 3);
	close(a);
}

/*
 * After the peer has gone, only a process of the first peer's uid may
 * attach: another user binding a path of its own is dropped as spoofed.
 */
Test(guest_dgram, only_the_first_peers_uid_may_attach_later)
{
	char path[128], other[128];
	uint8_t f[200], buf[200];
	int a, status;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("needs root to send as another uid");
	h_setup(&h, "dgram", 1500, 1 << 20, NULL);
	snprintf(path, sizeof(path), "%s/vmm.sock", h.dir);
	snprintf(other, sizeof(other), "%s/other.sock", h.dir);
	cr_assert_eq(chmod(h.dir, 0777), 0);
	cr_assert_eq(chmod(h.path, 0777), 0);
	a = bind_at(path);
	send_to_moat(a, f, h_frame(f, 60, 1));
	h_pump(&h);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), 60);
	close(a); /* gone: the socket no longer serves the path */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(1);
		s = socket(AF_UNIX, SOCK_DGRAM, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", other);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(2);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", h.path);
		h_frame(f, 60, 2);
		if (sendto(s, f, 60, 0, (struct sockaddr *)&sa, sizeof(sa)) != 60)
			_exit(3);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	h_pump(&h);
	cr_assert_eq(h_pop(&h, buf, sizeof(buf)), -1, "another uid attached");
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_SPOOFED]), 1);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);
}
