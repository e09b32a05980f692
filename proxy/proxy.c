/* SPDX-License-Identifier: MIT */
/*
 * proxy.c - the moat-proxy process: start-up, confinement, libuv loop
 *
 * Theory of Operation
 * -------------------
 * Re-executed by the supervisor as "moat-proxy __proxy". The proxy is the
 * policy enforcement point: every connect, datagram, DNS query and publish
 * is decided here against the policy the supervisor sent on the control
 * channel (FD_CONTROL, shm/control.h), so even a compromised netstack can
 * reach nothing the policy denies.
 *
 * Start-up: close every other fd, map the header, our counters and mailbox
 * and the two flow rings, create the libuv loop, drop capabilities, set
 * rlimits, load the seccomp allowlist (sockets yes; files, exec and
 * credentials no). Then the loop: our eventfd wakes us for s2p records
 * (and p2s space), the control socket brings configuration.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "proxy/proxy.h"
#include "proxy/relay.h"
#include "shm/region.h"

/*
 * The proxy's allowlist. libuv's loop (epoll), its async/signal plumbing,
 * sockets toward the upstream, and malloc. Nothing that opens files,
 * executes programs or changes credentials.
 */
static void proxy_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	ALLOW(ctx, read);		/* eventfd, control socket, libuv's internal fds */
	ALLOW(ctx, write);		/* eventfds, stderr log, control socket */
	ALLOW(ctx, readv);		/* libuv stream reads */
	ALLOW(ctx, writev);		/* libuv stream writes */
	ALLOW(ctx, close);		/* closing upstream sockets */
	ALLOW(ctx, epoll_wait);		/* libuv's poll phase */
	ALLOW(ctx, epoll_pwait);	/* libuv's poll phase (newer libc) */
	ALLOW(ctx, epoll_ctl);		/* libuv registers fds */
	ALLOW(ctx, clock_gettime);	/* libuv's loop time, timers */
	ALLOW(ctx, socket);		/* upstream TCP/UDP/ping sockets */
	ALLOW(ctx, connect);		/* upstream connects */
	ALLOW(ctx, bind);		/* published ports, UDP flow sockets */
	ALLOW(ctx, listen);		/* published ports */
	ALLOW(ctx, accept4);		/* published ports */
	ALLOW(ctx, getsockopt);		/* SO_ERROR after a non-blocking connect */
	ALLOW(ctx, setsockopt);		/* TCP_NODELAY, SO_LINGER 0 for resets, buffers */
	ALLOW(ctx, getsockname);	/* libuv, published ports */
	ALLOW(ctx, getpeername);	/* libuv */
	ALLOW(ctx, sendto);		/* UDP, DNS */
	ALLOW(ctx, recvfrom);		/* UDP, DNS */
	ALLOW(ctx, sendmsg);		/* UDP, DNS, control */
	ALLOW(ctx, recvmsg);		/* UDP, DNS, control */
	ALLOW(ctx, sendmmsg);		/* batched UDP */
	ALLOW(ctx, recvmmsg);		/* batched UDP */
	ALLOW(ctx, shutdown);		/* half-close toward the upstream */
	ALLOW(ctx, ioctl);		/* FIONBIO: libuv sets sockets non-blocking */
	ALLOW(ctx, fcntl);		/* O_NONBLOCK, FD_CLOEXEC */
	ALLOW(ctx, brk);		/* malloc */
	ALLOW(ctx, mmap);		/* malloc of large blocks */
	ALLOW(ctx, munmap);		/* free of large blocks */
	ALLOW(ctx, mremap);		/* realloc of large blocks */
	ALLOW(ctx, madvise);		/* glibc malloc trimming */
	ALLOW(ctx, futex);		/* glibc locks (uncontended: single thread) */
	ALLOW(ctx, rt_sigprocmask);	/* libuv blocks signals around epoll */
	ALLOW(ctx, rt_sigaction);	/* libuv signal handles */
	ALLOW(ctx, getpid);		/* libuv */
	ALLOW(ctx, getrandom);		/* DNS ids, ISNs of the proxy's own */
	ALLOW(ctx, uname);		/* libuv version checks */
	confine_seccomp_load(ctx);
}

/**
 * proxy_main() - entry of the moat-proxy role
 *
 * Context: a freshly exec'd child of the supervisor.
 * Return: exit status.
 */
int proxy_main(void)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) |
			 REGION_PART_BIT(MOAT_PART_CNT_PROXY) |
			 REGION_PART_BIT(MOAT_PART_MBOX_PROXY) |
			 REGION_PART_BIT(MOAT_PART_RING_S2P) | REGION_PART_BIT(MOAT_PART_RING_P2S);
	struct proxy px;
	int rc;

	memset(&px, 0, sizeof(px));
	prctl(PR_SET_NAME, "moat-proxy");
	log_init("moat-proxy", LOG_LVL_INFO);
	confine_close_fds(FD_CONTROL);
	rc = region_map(FD_REGION, parts, &px.region);
	if (rc < 0)
		fatalx(1, "cannot map the shared region: %s", strerror(-rc));
	log_init("moat-proxy", px.region.hdr.log_level);
	if (uv_loop_init(&px.loop) < 0)
		fatalx(1, "cannot create the event loop");
	if (relay_init(&px) < 0)
		fatalx(1, "cannot set up the relay");
	confine_drop_caps();
	confine_limits(4096);
	proxy_seccomp();
	rc = uv_run(&px.loop, UV_RUN_DEFAULT);
	relay_fini(&px);
	return rc < 0 ? 1 : 0;
}
