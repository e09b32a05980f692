/* SPDX-License-Identifier: MIT */
/*
 * netstack.c - the moat-netstack process: start-up, confinement, event loop
 *
 * Theory of Operation
 * -------------------
 * Re-executed by the supervisor as "moat-netstack __netstack" with the
 * region and eventfds at the numbers of common/fds.h. Before it reads a
 * single guest byte it: closes every other fd, maps only the parts it needs
 * (header, its counters and mailbox, the four rings), moves into an empty
 * network namespace, drops all capabilities, sets tight rlimits, and loads
 * the seccomp allowlist below. lwIP's memory is static (lwipopts.h), so
 * nothing after that needs brk or mmap.
 *
 * The loop: drain g2s (guest frames) and p2s (flow messages from the
 * proxy), run lwIP's timers, flush the rings we produce (one wake each per
 * batch), then sleep in ppoll() on our one eventfd with the timeout lwIP's
 * next timer asks for, after telling each consumed ring that we sleep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "netstack/netstack.h"
#include "netstack/stack.h"
#include "shm/region.h"

/*
 * The netstack's whole allowlist. Anything else kills the process, which
 * the supervisor treats as a fatal violation.
 */
static void netstack_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	ALLOW(ctx, read);		/* our eventfd */
	ALLOW(ctx, write);		/* peers' eventfds, the supervisor's eventfd, stderr log */
	ALLOW(ctx, ppoll);		/* sleep on our eventfd until lwIP's next timer */
	ALLOW(ctx, clock_gettime);	/* sys_now() when the vDSO falls back to the syscall */
	ALLOW(ctx, rt_sigprocmask);	/* ppoll's signal mask handling in libc */
	confine_seccomp_load(ctx);
}

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/**
 * netstack_main() - entry of the moat-netstack role
 *
 * Context: a freshly exec'd child of the supervisor.
 * Return: exit status (0 on a requested stop).
 */
int netstack_main(void)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) |
			 REGION_PART_BIT(MOAT_PART_CNT_NETSTACK) |
			 REGION_PART_BIT(MOAT_PART_MBOX_NETSTACK) |
			 REGION_PART_BIT(MOAT_PART_RING_G2S) | REGION_PART_BIT(MOAT_PART_RING_S2G) |
			 REGION_PART_BIT(MOAT_PART_RING_S2P) | REGION_PART_BIT(MOAT_PART_RING_P2S);
	struct sigaction sa = { .sa_handler = on_term };
	const struct stack_fds fds = {
		.supervisor = FD_EFD_SUPERVISOR, .guest = FD_EFD_GUEST, .proxy = FD_EFD_PROXY,
	};
	static struct netstack ns;
	int rc;

	prctl(PR_SET_NAME, "moat-netstack");
	log_init("moat-netstack", LOG_LVL_INFO);
	confine_close_fds(FD_EFD_PROXY);
	rc = region_map(FD_REGION, parts, &ns.region);
	if (rc < 0)
		fatalx(1, "cannot map the shared region: %s", strerror(-rc));
	log_init("moat-netstack", ns.region.hdr.log_level);

	rc = confine_netns();
	if (rc < 0)
		log_warn("no private network namespace (%s); seccomp still forbids sockets",
			 strerror(-rc));
	/* Everything that allocates happens before the filter goes on. */
	if (stack_init(&ns, &fds) < 0)
		fatalx(1, "cannot initialise the TCP/IP stack");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	confine_drop_caps();
	confine_limits(FD_EFD_PROXY + 1);
	netstack_seccomp();

#ifdef MOAT_TEST_TRIGGERS
	if (ns.region.hdr.flags & MOAT_HDR_F_TEST_TRIGGERS) {
		/* Test builds only: prove the filter bites. This must kill us with SIGSYS. */
		log_warn("test trigger: calling socket()");
		(void)socket(AF_INET, SOCK_STREAM, 0);
		log_error("test trigger: socket() returned; the filter did not bite");
		return 1;
	}
#endif

	while (!stop_requested) {
		struct pollfd pfd = { .fd = FD_EFD_NETSTACK, .events = POLLIN };
		struct timespec ts, *tsp = NULL;
		uint32_t sleep_ms;

		stack_poll(&ns);
		if (ns.violation)
			break;
		sleep_ms = stack_prepare_sleep(&ns);
		if (sleep_ms == 0)
			continue;
		if (sleep_ms != UINT32_MAX) {
			ts.tv_sec = sleep_ms / 1000;
			ts.tv_nsec = (long)(sleep_ms % 1000) * 1000000L;
			tsp = &ts;
		}
		rc = ppoll(&pfd, 1, tsp, NULL);
		stack_wake(&ns);
		if (rc > 0) {
			uint64_t v;

			if (read(FD_EFD_NETSTACK, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
	}
	if (!ns.violation) {
		/* A requested stop: reset the guest's open connections (the RSTs go out
		 * through s2g; the supervisor passes them on before it closes the port). */
		uint32_t n = conn_reset_all(&ns);

		ring_flush(&ns.s2g);
		log_debug("stopping: reset %u open connections", n);
	}
	if (ns.violation) {
		/* Reported through the mailbox; wait for the supervisor to end us. */
		while (!stop_requested)
			ppoll(NULL, 0, NULL, NULL);
	}
	return 0;
}
