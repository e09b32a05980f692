/* SPDX-License-Identifier: MIT */
/*
 * test_guest_seccomp.c - guest_seccomp() allows everything the guest port
 * does at run time. Each frontend runs in a child confined to the loop's
 * wait and guest_seccomp()'s list (default kill) and serves clients that
 * connect, move frames both ways, leave and are replaced; at the end the
 * port is closed (its socket unlinked) under the filter. A call missing
 * from the list kills the child with SIGSYS.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <seccomp.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "common/confine.h"
#include "guest_harness.h"

static struct harness h;

static void teardown(void)
{
	h.g = NULL; /* the child's; the parent only holds the directory */
	h_teardown(&h);
}

TestSuite(guest_seccomp, .fini = teardown, .timeout = 60);

static void on_stop(struct loop_watch *w, uint32_t events)
{
	(void)w;
	(void)events;
	h.loop.stop = 1;
}

/*
 * Fork the confined port for --guest @kind:@h.path. It echoes every g2s
 * frame back through s2g until the caller closes @ctl_w, then closes the
 * port and exits 0.
 * Return: its pid, once the filter is on.
 */
static pid_t confined_port(const char *kind, const char *pcap, int *ctl_w)
{
	int ctl[2], ready[2];
	pid_t pid;
	char x;

	cr_assert_eq(pipe2(ctl, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct loop_watch wstop = { .fd = ctl[0], .cb = on_stop };
		scmp_filter_ctx ctx;
		uint8_t buf[2000];
		char spec[256];

		close(ctl[1]);
		close(ready[0]);
		h_region(&h, 1500, 1 << 20);
		snprintf(spec, sizeof(spec), "%s:%s", kind, h.path);
		h_start(&h, spec, pcap);
		if (loop_add(&h.loop, &wstop, EPOLLIN) < 0)
			_exit(10);
		ctx = confine_seccomp_init();
		ALLOW(ctx, epoll_wait); /* the loop's wait (sandbox_filter() has it) */
		ALLOW(ctx, epoll_pwait);
		guest_seccomp(ctx, h.g);
		confine_seccomp_load(ctx);
		if (write(ready[1], "r", 1) != 1)
			_exit(11);
		while (!h.loop.stop) {
			uint32_t type;
			int n;

			loop_run_once(&h.loop, 100);
			while ((n = ring_pop(&h.g2s, &type, buf, sizeof(buf))) > 0)
				if (ring_push(&h.s2g, MOAT_REC_FRAME, buf, (uint32_t)n) < 0)
					break;
			ring_release(&h.g2s);
			ring_flush(&h.s2g);
		}
		guest_close(h.g); /* unlinks the socket, under the filter */
		_exit(0);
	}
	close(ctl[0]);
	close(ready[1]);
	cr_assert_eq(read(ready[0], &x, 1), 1, "the confined port did not start");
	close(ready[0]);
	*ctl_w = ctl[1];
	return pid;
}

/* Stop the child and insist it ended normally, not by SIGSYS. */
static void finish(pid_t pid, int ctl_w)
{
	int status;

	close(ctl_w);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(!WIFSIGNALED(status), "the confined port was killed by signal %d%s",
		  WTERMSIG(status),
		  WTERMSIG(status) == SIGSYS ? " (a call guest_seccomp() does not allow)" : "");
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
	cr_assert(access(h.path, F_OK) < 0, "the socket was not unlinked at close");
}

static void stream_echo(int c, uint32_t seq)
{
	uint8_t f[200], buf[200];
	uint32_t be;

	h_stream_send(c, f, h_frame(f, 100, seq));
	cr_assert_eq(h_read_exact(c, &be, 4), 0, "no echo for frame %u", seq);
	cr_assert_eq(ntohl(be), 100);
	cr_assert_eq(h_read_exact(c, buf, 100), 0);
	h_check_frame(buf, 100, 100, seq);
}

/* stream: frames both ways with --pcap, a bad prefix, a reconnecting VMM. */
Test(guest_seccomp, stream_with_pcap_and_reconnects)
{
	char pcap[160];
	uint32_t bad = htonl(3);
	pid_t pid;
	int ctl, c;

	memset(&h, 0, sizeof(h));
	h_dir(&h);
	snprintf(pcap, sizeof(pcap), "%s/g.pcap", h.dir);
	pid = confined_port("stream", pcap, &ctl);
	c = h_connect(h.path, SOCK_STREAM);
	for (uint32_t i = 0; i < 20; i++)
		stream_echo(c, i);
	close(c);
	c = h_connect(h.path, SOCK_STREAM); /* accept4 under the filter */
	stream_echo(c, 100);
	h_write_all(c, &bad, 4); /* dropped for a bad prefix */
	close(c);
	c = h_connect(h.path, SOCK_STREAM);
	stream_echo(c, 200);
	close(c);
	finish(pid, ctl);
}

/* A bound client socket; @connected: connect()ed to moat, as vfkit does. */
static int dgram_client(const char *name, bool connected)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", h.dir, name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", h.path);
	if (connected)
		cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* QEMU's way: sendto() on an unconnected socket. */
static ssize_t send_to_port(int fd, const void *buf, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", h.path);
	return sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa));
}

static void dgram_echo(int c, uint32_t seq)
{
	struct pollfd pfd = { .fd = c, .events = POLLIN };
	uint8_t f[200], buf[200];
	int n;

	cr_assert_eq(send(c, f, h_frame(f, 90, seq), 0), 90);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "no echo for frame %u", seq);
	n = (int)recv(c, buf, sizeof(buf), 0);
	h_check_frame(buf, (uint32_t)n, 90, seq);
}

/*
 * dgram: the peer learned with its credentials (pidfd, lstat), a stranger
 * (the liveness probe: socket, connect), a peer whose queue is full (the
 * retry timer), the peer's process exiting, and a new peer.
 */
Test(guest_seccomp, dgram_peers_strangers_and_a_full_queue)
{
	uint8_t f[200], buf[200];
	int ctl, a, s, c, status;
	pid_t pid, vmm;

	memset(&h, 0, sizeof(h));
	h_dir(&h);
	pid = confined_port("dgram", NULL, &ctl);
	/* The first peer is another process, so that its exit ends it. */
	vmm = fork();
	cr_assert_geq(vmm, 0);
	if (vmm == 0) {
		unsigned got = 0;

		a = dgram_client("vmm.sock", false);
		if (send_to_port(a, "VFKT", 4) != 4)
			_exit(1);
		for (uint32_t i = 0; i < 10; i++) {
			struct pollfd pfd = { .fd = a, .events = POLLIN };

			if (send_to_port(a, f, h_frame(f, 90, i)) != 90 ||
			    poll(&pfd, 1, 5000) != 1 || recv(a, buf, sizeof(buf), 0) != 90)
				_exit(2);
		}
		/*
		 * Not reading for a while: our queue (net.unix.max_dgram_qlen for
		 * a sender that did not connect) refuses moat's echoes, and moat
		 * retries from its timer until we read them all.
		 */
		for (uint32_t i = 0; i < 30; i++) {
			if (send_to_port(a, f, h_frame(f, 200, i)) != 200)
				_exit(3);
			usleep(2000);
		}
		usleep(100000);
		for (int tries = 0; got < 30 && tries < 5000; tries++) {
			if (recv(a, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				got++;
			else
				usleep(1000);
		}
		_exit(got == 30 ? 0 : 4);
	}
	usleep(50000);
	s = dgram_client("stranger.sock", true); /* dropped while the peer lives */
	cr_assert_eq(send(s, f, h_frame(f, 60, 7), 0), 60);
	cr_assert_eq(waitpid(vmm, &status, 0), vmm);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "stand-in VMM status %d", status);
	close(s);
	usleep(50000); /* the peer's pidfd fires */
	c = dgram_client("next.sock", true);
	for (uint32_t i = 0; i < 10; i++)
		dgram_echo(c, 100 + i);
	close(c);
	finish(pid, ctl);
}

/* shm: the hello with its descriptors, a VMM leaving, the next one. */
Test(guest_seccomp, shm_hello_and_a_second_vmm)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MOAT_SHM_NFDS)];
		struct cmsghdr align;
	} u;
	struct moat_shm_hello hello;
	pid_t pid;
	int ctl;

	memset(&h, 0, sizeof(h));
	h_dir(&h);
	pid = confined_port("shm", NULL, &ctl);
	for (int i = 0; i < 2; i++) {
		struct iovec iov = { &hello, sizeof(hello) };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf) };
		struct pollfd pfd;
		int c = h_connect(h.path, SOCK_STREAM);

		pfd = (struct pollfd){ .fd = c, .events = POLLIN };
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "VMM %d got no hello", i);
		cr_assert_eq(recvmsg(c, &mh, MSG_CMSG_CLOEXEC), (ssize_t)sizeof(hello));
		cr_assert_eq(hello.magic, MOAT_SHM_HELLO_MAGIC);
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			for (unsigned k = 0; k < MOAT_SHM_NFDS; k++)
				close(((int *)CMSG_DATA(cm))[k]);
		cr_assert_eq(write(c, "ignored", 7), 7);
		close(c);
	}
	usleep(50000);
	finish(pid, ctl);
}
