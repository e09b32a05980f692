/* SPDX-License-Identifier: MIT */
/*
 * vhost.c - the moat-vhost role: a confined vhost-user net backend
 *
 * Theory of Operation
 * -------------------
 * With `--guest vhost-user:PATH` the supervisor listens on PATH and starts
 * this role beside the netstack and the proxy, handing it the listening
 * socket, the region and the two frame-ring eventfds (common/fds.h). It
 * maps only the header, the guest counters, g2s and s2g (region_adopt()),
 * and confines itself before the first VMM connects: an empty network
 * namespace, no capabilities, no processes, RLIMIT_NOFILE VHOST_FD_MAX and
 * the allowlist in vhost_seccomp(), which names the descriptors it may
 * read, write and receive on and lets mmap make only shared read-write
 * mappings (guest memory), never executable ones.
 *
 * One VMM at a time, as with `stream:` and `shm:`: while one is connected
 * the listener is not polled, and a second waits in the backlog. When the
 * VMM goes (EOF, or dropped for breaking the protocol) its memory is
 * unmapped and its descriptors closed (vhostuser_reset()); the rings keep
 * their positions, and the next VMM starts from nothing.
 *
 * The loop: poll the lifeline, our eventfd (s2g has data, g2s has room),
 * the connection (or the listener) and the two kick eventfds; run the
 * protocol, then transmit and receive one batch each, and poll without
 * sleeping while a batch was used up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "vhost/vhost.h"
#include "vhost/vhost_int.h"

static volatile sig_atomic_t vhost_stop;

static void vhost_on_term(int sig)
{
	(void)sig;
	vhost_stop = 1;
}

/* The calls moat-vhost makes once it serves VMMs, each with its reason. */
static void vhost_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();
	static const int reads[] = { FD_EFD_GUEST, VHOST_FD_KICK0, VHOST_FD_KICK1 };
	static const int writes[] = { FD_EFD_NETSTACK, STDERR_FILENO, VHOST_FD_CONN, VHOST_FD_CALL0,
				      VHOST_FD_CALL1 };
	static const int slots[] = { VHOST_FD_CONN, VHOST_FD_KICK0, VHOST_FD_KICK1, VHOST_FD_CALL0,
				     VHOST_FD_CALL1 };

	/* our eventfd (ring wakes) and the driver's kicks */
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		ALLOW_ARG(ctx, read, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)reads[i]));
	/* the netstack's eventfd, our log, replies to the VMM, interrupts to the driver */
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
		ALLOW_ARG(ctx, write, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)writes[i]));
	/* a received descriptor moved to its fixed number */
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		ALLOW_ARG(ctx, dup3, SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)slots[i]));
	/* the next VMM, on the socket the supervisor bound */
	ALLOW_ARG(ctx, accept4, SCMP_A0(SCMP_CMP_EQ, FD_VHOST_LISTEN));
	/* messages and their descriptors (SCM_RIGHTS), from the VMM only */
	ALLOW_ARG(ctx, recvmsg, SCMP_A0(SCMP_CMP_EQ, VHOST_FD_CONN));
	/* guest memory: shared and read-write, never executable or private */
	ALLOW_ARG(ctx, mmap, SCMP_A2(SCMP_CMP_EQ, PROT_READ | PROT_WRITE),
		  SCMP_A3(SCMP_CMP_EQ, MAP_SHARED));
	ALLOW(ctx, munmap); /* a memory table replaced, a VMM gone */
	ALLOW(ctx, close);  /* descriptors the VMM sent, a VMM gone */
	/* is a memory region's file long enough? (glibc's fstat is newfstatat) */
	ALLOW(ctx, fstat);
	ALLOW_ARG(ctx, newfstatat, SCMP_A3(SCMP_CMP_EQ, AT_EMPTY_PATH));
	ALLOW(ctx, ppoll);	    /* the loop's wait; the rest of a message */
	ALLOW(ctx, clock_gettime);  /* the vDSO's fallback */
	ALLOW(ctx, rt_sigprocmask); /* ppoll's mask handling in libc */
	confine_seccomp_load(ctx);
}

/* Map our parts of the region, attach the rings, then confine ourselves. */
static void vhost_start(struct vhost *v, pid_t supervisor)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) | REGION_PART_BIT(MOAT_PART_CNT_GUEST) |
			 REGION_PART_BIT(MOAT_PART_RING_G2S) | REGION_PART_BIT(MOAT_PART_RING_S2G);
	struct sigaction sa = { .sa_handler = vhost_on_term };
	struct region *r = &v->region;
	int rc;

	prctl(PR_SET_NAME, "moat-vhost");
	log_init("moat-vhost", LOG_LVL_INFO);
	confine_parent_death(supervisor);
	confine_close_fds(FD_LAST_VHOST);
	rc = region_adopt(FD_REGION, parts, r);
	if (rc < 0)
		fatalx(1, "cannot map the shared region: %s", strerror(-rc));
	log_init("moat-vhost", r->hdr.log_level);
	/* What the netstack and the proxy do not need from the supervisor's set. */
	close(FD_EFD_SUPERVISOR);
	close(FD_EFD_PROXY);

	v->cnt = r->part[MOAT_PART_CNT_GUEST];
	v->max_frame = r->hdr.mtu + 14;
	v->offloads = r->hdr.guest_offloads;
	v->lfd = FD_VHOST_LISTEN;
	v->cfd = -1;
	v->q[0].kick = v->q[0].call = v->q[1].kick = v->q[1].call = -1;
	vhostuser_reset(v);
	ring_attach(&v->g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), FD_EFD_NETSTACK, FD_EFD_GUEST,
		    &v->cnt->wakes_sent);
	ring_attach(&v->s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), FD_EFD_GUEST, FD_EFD_NETSTACK,
		    &v->cnt->wakes_sent);
	if ((uint32_t)sizeof(struct moat_vnet_hdr) + MOAT_FRAME_MAX_GSO >
	    RING_MAX_RECORD(v->g2s.cap))
		fatalx(1, "a g2s ring of %llu bytes cannot hold a 64 KiB segment",
		       (unsigned long long)v->g2s.cap);

	confine_no_network();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	confine_drop_caps();
	confine_limits(VHOST_FD_MAX);
	confine_parent_death(supervisor);
	vhost_seccomp();
}

/* The VMM left or broke the protocol: forget it, listen for the next. */
static void vhost_vmm_gone(struct vhost *v, const char *why)
{
	if (v->drop)
		vhost_count(&v->cnt->vring_bad_messages, 1);
	close(v->cfd);
	v->cfd = -1;
	v->drop = false;
	vhostuser_reset(v);
	vhost_count(&v->cnt->clients_dropped, 1);
	log_info("vhost-user: the VMM %s; waiting for the next", why);
}

static void vhost_accept(struct vhost *v)
{
	int fd = accept4(v->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("vhost-user: accept: %s", strerror(errno));
		return;
	}
	if (dup3(fd, VHOST_FD_CONN, O_CLOEXEC) < 0) {
		log_warn("vhost-user: cannot keep the connection: %s", strerror(errno));
		close(fd);
		return;
	}
	close(fd);
	v->cfd = VHOST_FD_CONN;
	vhostuser_reset(v);
	vhost_count(&v->cnt->clients_accepted, 1);
	log_info("vhost-user: VMM connected");
}

static void vhost_drain(int fd)
{
	uint64_t n;

	if (fd >= 0 && read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug("vhost-user: eventfd %d: %s", fd, strerror(errno));
}

/* Serve VMMs until a stop or the supervisor's end. */
static void vhost_run(struct vhost *v)
{
	while (!vhost_stop) {
		bool more = false;
		struct pollfd pfd[5];
		struct timespec zero = { 0, 0 };
		int rc;

		if (v->cfd >= 0) {
			more |= vhostnet_tx(v);
			more |= vhostnet_rx(v);
			if (v->drop)
				vhost_vmm_gone(v, "broke the protocol or a queue and was dropped");
		} else {
			vhostnet_discard(v);
		}
		pfd[0] = (struct pollfd){ .fd = FD_LIFELINE, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = FD_EFD_GUEST, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = v->cfd >= 0 ? v->cfd : v->lfd, .events = POLLIN };
		pfd[3] = (struct pollfd){ .fd = v->cfd >= 0 ? v->q[0].kick : -1, .events = POLLIN };
		pfd[4] = (struct pollfd){ .fd = v->cfd >= 0 ? v->q[1].kick : -1, .events = POLLIN };
		if (confine_ppoll(pfd, 5, more ? &zero : NULL, NULL) < 0)
			continue;
		if (pfd[1].revents) {
			vhost_drain(FD_EFD_GUEST);
			v->waiting_g2s = false; /* room may have come: transmit tries again */
		}
		if (pfd[3].revents)
			vhost_drain(pfd[3].fd);
		if (pfd[4].revents)
			vhost_drain(pfd[4].fd);
		if (!pfd[2].revents)
			continue;
		if (v->cfd < 0) {
			vhost_accept(v);
			continue;
		}
		rc = vhostuser_input(v);
		if (rc == 1)
			vhost_vmm_gone(v, "closed the connection");
		else if (rc < 0)
			vhost_vmm_gone(v, "broke the protocol and was dropped");
	}
}

/**
 * vhost_main() - entry of the moat-vhost role
 * @supervisor:	the supervisor's pid (our parent), from the command line
 *
 * Context: a freshly exec'd child of the supervisor, fds as in common/fds.h
 * (up to FD_LAST_VHOST).
 * Return: exit status (0 on a requested stop). Exits 1 when the supervisor
 * is gone or a frame ring is corrupt.
 */
int vhost_main(pid_t supervisor)
{
	static struct vhost v;

	vhost_start(&v, supervisor);
	vhost_run(&v);
	ring_flush(&v.g2s);
	return 0;
}
