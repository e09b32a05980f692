/* SPDX-License-Identifier: MIT */
/*
 * proxy.c - the moat-proxy process: start-up, confinement, libuv loop
 *
 * Theory of Operation
 * -------------------
 * Re-executed by the supervisor as "moat-proxy __proxy PID". The proxy is
 * the policy enforcement point: every connect, datagram, DNS query and
 * publish is decided here against the policy the supervisor sent on the
 * control channel (FD_CONTROL, common/channel.h), so even a compromised
 * netstack can reach nothing the policy denies.
 *
 * Start-up, in this order: arrange to die with the supervisor (PID;
 * confine_parent_death()), close every other fd, map the header, our
 * counters and mailbox and the two flow rings and close the region's fd,
 * ignore SIGPIPE, seed jansson's hash (it would otherwise open
 * /dev/urandom on first use, after the filter is in), create the libuv
 * loop and every handle (relay_init(), and the lifeline's poll here), drop
 * capabilities, set rlimits, re-arm the parent-death signal, load the
 * seccomp allowlist (sockets yes; files, file mappings, exec and
 * credentials no). Then the loop: our eventfd wakes us for s2p records and
 * p2s space, the control socket brings configuration, and the lifeline (a
 * pipe only the supervisor can write) tells us the supervisor is gone: we
 * exit at once, with nothing to hand over.
 * The proxy keeps its network namespace: it is the process that owns the
 * real sockets.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "proxy/proxy.h"
#include "proxy/proxy_internal.h"
#include "shm/region.h"

/**
 * proxy_seccomp() - load the proxy's allowlist
 *
 * libuv's loop (epoll), sockets toward the upstream, the eventfds, the
 * lifeline and the control socket, and malloc. Checked with strace against
 * a whole test run (docs/proxy.md). Nothing that opens files, executes
 * programs, changes credentials, maps executable memory or maps a file:
 * the region's parts are mapped before, and its fd is closed.
 *
 * Context: the proxy, last step of its confinement; the unit tests apply it
 * to forked children. Irreversible.
 */
void proxy_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	ALLOW(ctx, read);	   /* eventfd; libuv stream reads (uv__read) */
	ALLOW(ctx, write);	   /* eventfds, stderr log; libuv stream writes of one buffer */
	ALLOW(ctx, writev);	   /* libuv stream writes of several buffers (DNS over TCP) */
	ALLOW(ctx, close);	   /* closing upstream sockets */
	ALLOW(ctx, epoll_wait);	   /* libuv's poll phase */
	ALLOW(ctx, epoll_pwait);   /* the same where epoll_wait is epoll_pwait (arm64) */
	ALLOW(ctx, epoll_ctl);	   /* libuv registers fds */
	ALLOW(ctx, clock_gettime); /* libuv's loop time when the vDSO falls back */
	/* Upstream TCP/UDP/ping sockets: IPv4 and IPv6 only (no unix, no netlink, no raw packet). */
	ALLOW_ARG(ctx, socket, SCMP_A0(SCMP_CMP_EQ, AF_INET));
	ALLOW_ARG(ctx, socket, SCMP_A0(SCMP_CMP_EQ, AF_INET6));
	ALLOW(ctx, connect);	 /* upstream connects, connected UDP and ping sockets */
	ALLOW(ctx, bind);	 /* published ports */
	ALLOW(ctx, listen);	 /* published ports */
	ALLOW(ctx, accept4);	 /* published ports */
	ALLOW(ctx, getsockopt);	 /* SO_ERROR after a non-blocking connect */
	ALLOW(ctx, setsockopt);	 /* TCP_NODELAY, SO_LINGER 0 for resets, SO_REUSEADDR */
	ALLOW(ctx, getpeername); /* published ports: the client's address */
	ALLOW(ctx, sendto);	 /* ping requests, control events (send) */
	ALLOW(ctx, recvfrom);	 /* ping replies, control documents (recv) */
	ALLOW(ctx, sendmsg);	 /* libuv UDP sends */
	ALLOW(ctx, recvmsg);	 /* libuv UDP receives */
	ALLOW(ctx, shutdown);	 /* half-close toward the upstream */
	/* TLS interception: two unix stream pairs per intercepted connection, one end of
	 * each sent to moat-tls (sendmsg, SCM_RIGHTS); never a unix socket to a path. */
	ALLOW_ARG(ctx, socketpair, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	/* uv_pipe_open() of our ends reads their access mode (F_GETFL only). */
	ALLOW_ARG(ctx, fcntl, SCMP_A1(SCMP_CMP_EQ, F_GETFL));
	/* uv_poll_init() sets O_NONBLOCK with ioctl (ping sockets): only that request. */
	ALLOW_ARG(ctx, ioctl, SCMP_A1(SCMP_CMP_EQ, FIONBIO));
	ALLOW(ctx, brk); /* malloc */
	/* malloc of large blocks: anonymous memory only (no file, no memfd), never executable. */
	ALLOW_ARG(ctx, mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
		  SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
	ALLOW(ctx, munmap);    /* free of large blocks */
	ALLOW(ctx, mremap);    /* realloc of large blocks */
	ALLOW(ctx, madvise);   /* glibc malloc trimming (never seen; too cheap to die for) */
	ALLOW(ctx, futex);     /* glibc locks (single thread: never seen; likewise) */
	ALLOW(ctx, getrandom); /* DNS query ids */
	/* libuv reopens its spare descriptor ("/") after the EMFILE trick of a
	 * listener: refused, the spare stays gone and the next EMFILE reaches
	 * the published port's retry (proxy/tcpflow.c). Nothing else opens files. */
	DENY(ctx, openat, EACCES);
	confine_seccomp_load(ctx);
}

/* The lifeline fired: the supervisor is gone, so are we (nothing to hand over). */
static void on_lifeline(uv_poll_t *h, int status, int events)
{
	(void)h;
	if (status < 0)
		log_error("supervisor gone (lifeline: %s); exiting", uv_strerror(status));
	else
		log_error("supervisor gone (lifeline %s); exiting",
			  events & UV_DISCONNECT ? "hung up" : "readable");
	_exit(1);
}

/**
 * proxy_main() - entry of the moat-proxy role
 * @supervisor:	the supervisor's pid (our parent), from the command line
 *
 * Context: a freshly exec'd child of the supervisor, fds as in common/fds.h
 * (up to FD_LAST_PROXY).
 * Return: exit status. Exits 1 at once when the supervisor is gone: before
 * start-up (our parent is not @supervisor) or later (the lifeline fired).
 */
int proxy_main(pid_t supervisor)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) | REGION_PART_BIT(MOAT_PART_CNT_PROXY) |
			 REGION_PART_BIT(MOAT_PART_MBOX_PROXY) |
			 REGION_PART_BIT(MOAT_PART_RING_S2P) | REGION_PART_BIT(MOAT_PART_RING_P2S);
	static struct proxy px;
	static uv_poll_t lifeline;
	unsigned long nofile;
	int rc;

	prctl(PR_SET_NAME, "moat-proxy");
	log_init("moat-proxy", LOG_LVL_INFO);
	confine_parent_death(supervisor);
	confine_close_fds(FD_LAST_PROXY);
	/* Only the mappings stay: the fd would let us map or write any part. */
	rc = region_adopt(FD_REGION, parts, &px.region);
	if (rc < 0)
		fatalx(1, "cannot map the shared region: %s", strerror(-rc));
	log_init("moat-proxy", px.region.hdr.log_level);
	/* A write to a socket the peer reset must be EPIPE, not a fatal signal. */
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);
	px.efd_self = FD_EFD_PROXY;
	px.efd_netstack = FD_EFD_NETSTACK;
	px.efd_supervisor = FD_EFD_SUPERVISOR;
	px.control_fd = FD_CONTROL;
	if (uv_loop_init(&px.loop) < 0)
		fatalx(1, "cannot create the event loop");
	rc = relay_init(&px);
	if (rc < 0)
		fatalx(1, "cannot set up the relay: %s", strerror(-rc));
	/*
	 * Any event on the lifeline ends us. Unreferenced: it must never be what
	 * keeps uv_run() going (a stop is uv_stop() from the control channel).
	 */
	if ((rc = uv_poll_init(&px.loop, &lifeline, FD_LIFELINE)) < 0 ||
	    (rc = uv_poll_start(&lifeline, UV_READABLE | UV_DISCONNECT, on_lifeline)) < 0)
		fatalx(1, "cannot watch the lifeline: %s", uv_strerror(rc));
	uv_unref((uv_handle_t *)&lifeline);
	/* moat-tls runs (the supervisor handed us the channel): interception is on. */
	rc = tlsrelay_init(&px, px.region.hdr.flags & MOAT_HDR_F_TLS ? FD_PROXY_TLS : -1);
	if (rc < 0)
		fatalx(1, "cannot take up the channel to moat-tls: %s", strerror(-rc));
	/* A socket per TCP connection and UDP flow, DNS and ping sockets, two pipes per
	 * intercepted connection, slack. */
	nofile = (unsigned long)px.region.hdr.max_tcp_connections + px.region.hdr.max_udp_flows +
		 (px.tls ? 2 * TLSRELAY_MAX_FLOWS : 0) + 512;
	confine_drop_caps();
	confine_limits(nofile < 4096 ? 4096 : nofile);
	/* Capability changes may have cleared the parent-death signal (prctl(2)). */
	confine_parent_death(supervisor);
	proxy_seccomp();
	uv_run(&px.loop, UV_RUN_DEFAULT);
	return px.exit_status;
}
