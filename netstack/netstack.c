/* SPDX-License-Identifier: MIT */
/*
 * netstack.c - the moat-netstack process: start-up, confinement, event loop
 *
 * Theory of Operation
 * -------------------
 * Re-executed by the supervisor as "moat-netstack __netstack PID" with the
 * region, the eventfds and the lifeline at the numbers of common/fds.h.
 * Before it reads a single guest byte it: arranges to die with the
 * supervisor (PID; confine_parent_death()), closes every other fd, maps
 * only the parts it needs (header, its counters and mailbox, the four
 * rings) and closes the region's fd, moves into an empty network
 * namespace, drops all capabilities, sets tight rlimits, re-arms the
 * parent-death signal (a credential change may clear it) and loads the
 * seccomp allowlist below. lwIP's memory is static (lwipopts.h), so nothing
 * after that needs brk or mmap.
 *
 * The loop: drain g2s (guest frames) and p2s (flow messages from the
 * proxy), run lwIP's timers, flush the rings we produce (one wake each per
 * batch), then sleep in ppoll() on our eventfd and the lifeline with the
 * timeout lwIP's next timer asks for, after telling each consumed ring that
 * we sleep. The lifeline is the read end of a pipe only the supervisor can
 * write: when it hangs up (or, against the contract, becomes readable) the
 * supervisor is gone, and we exit at once, with nothing to hand over.
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

/**
 * netstack_seccomp() - load the netstack's whole allowlist
 *
 * Anything else kills the process, which the supervisor treats as a fatal
 * violation. read and write are allowed on the fds of common/fds.h we use
 * and nothing else: not the lifeline (ppoll watches it, nothing reads it),
 * not stdin or stdout, and no descriptor a bug might leave open.
 *
 * Context: the netstack, last step of its confinement; the unit tests apply
 * it to forked children. Irreversible.
 */
void netstack_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	/* our eventfd: the count of wakes (g2s, p2s data; s2g, s2p space) */
	ALLOW_ARG(ctx, read, SCMP_A0(SCMP_CMP_EQ, FD_EFD_NETSTACK));
	/* wake the supervisor: a violation in our mailbox */
	ALLOW_ARG(ctx, write, SCMP_A0(SCMP_CMP_EQ, FD_EFD_SUPERVISOR));
	/* wake the guest port: s2g data, g2s space */
	ALLOW_ARG(ctx, write, SCMP_A0(SCMP_CMP_EQ, FD_EFD_GUEST));
	/* wake the proxy: s2p data, p2s space */
	ALLOW_ARG(ctx, write, SCMP_A0(SCMP_CMP_EQ, FD_EFD_PROXY));
	/* our log: a pipe the supervisor drains (common/log.c writes with write(2)) */
	ALLOW_ARG(ctx, write, SCMP_A0(SCMP_CMP_EQ, STDERR_FILENO));
	ALLOW(ctx, ppoll); /* sleep on our eventfd and the lifeline until lwIP's next timer */
	ALLOW(ctx, clock_gettime);  /* sys_now() when the vDSO falls back to the syscall */
	ALLOW(ctx, rt_sigprocmask); /* ppoll's signal mask handling in libc */
	confine_seccomp_load(ctx);
}

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* The lifeline fired: the supervisor is gone, so are we (nothing to hand over). */
static void __attribute__((noreturn)) supervisor_gone(short revents)
{
	log_error("supervisor gone (lifeline %s); exiting", revents & POLLHUP ? "hung up" :
							    revents & POLLIN  ? "readable" :
										"broken");
	_exit(1);
}

/* Map the region, build the stack, then confine ourselves for good. */
static void start(struct netstack *ns, pid_t supervisor)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) |
			 REGION_PART_BIT(MOAT_PART_CNT_NETSTACK) |
			 REGION_PART_BIT(MOAT_PART_MBOX_NETSTACK) |
			 REGION_PART_BIT(MOAT_PART_RING_G2S) | REGION_PART_BIT(MOAT_PART_RING_S2G) |
			 REGION_PART_BIT(MOAT_PART_RING_S2P) | REGION_PART_BIT(MOAT_PART_RING_P2S);
	struct sigaction sa = { .sa_handler = on_term };
	const struct stack_fds fds = {
		.supervisor = FD_EFD_SUPERVISOR,
		.guest = FD_EFD_GUEST,
		.proxy = FD_EFD_PROXY,
	};
	int rc;

	prctl(PR_SET_NAME, "moat-netstack");
	log_init("moat-netstack", LOG_LVL_INFO);
	confine_parent_death(supervisor);
	confine_close_fds(FD_LAST_NETSTACK);
	/* Only the mappings stay: the fd would let us map or write any part. */
	rc = region_adopt(FD_REGION, parts, &ns->region);
	if (rc < 0)
		fatalx(1, "cannot map the shared region: %s", strerror(-rc));
	log_init("moat-netstack", ns->region.hdr.log_level);

	rc = confine_netns();
	if (rc < 0)
		log_warn("no private network namespace (%s); seccomp still forbids sockets",
			 strerror(-rc));
	/* Everything that allocates happens before the filter goes on. */
	if (stack_init(ns, &fds) < 0)
		fatalx(1, "cannot initialise the TCP/IP stack");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	confine_drop_caps();
	confine_limits(FD_LAST_NETSTACK + 1);
	/* Credential changes (the user namespace, capabilities) may clear it (prctl(2)). */
	confine_parent_death(supervisor);
	netstack_seccomp();
}

/* Move frames and flow records until a stop, a violation or a broken eventfd. */
static void run(struct netstack *ns)
{
	while (!stop_requested) {
		struct pollfd pfd[2] = {
			{ .fd = FD_EFD_NETSTACK, .events = POLLIN },
			{ .fd = FD_LIFELINE, .events = POLLIN },
		};
		struct timespec ts, *tsp = NULL;
		uint32_t sleep_ms;
		int rc;

		stack_poll(ns);
		if (ns->violation)
			return;
		sleep_ms = stack_prepare_sleep(ns);
		if (sleep_ms == 0)
			continue;
		if (sleep_ms != UINT32_MAX) {
			ts.tv_sec = sleep_ms / 1000;
			ts.tv_nsec = (long)(sleep_ms % 1000) * 1000000L;
			tsp = &ts;
		}
		rc = ppoll(pfd, 2, tsp, NULL);
		if (rc > 0 && pfd[1].revents)
			supervisor_gone(pfd[1].revents);
		stack_wake(ns);
		if (rc > 0 && pfd[0].revents) {
			uint64_t v;

			if (read(FD_EFD_NETSTACK, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return;
		}
	}
}

/**
 * netstack_main() - entry of the moat-netstack role
 * @supervisor:	the supervisor's pid (our parent), from the command line
 *
 * Context: a freshly exec'd child of the supervisor, fds as in common/fds.h
 * (up to FD_LAST_NETSTACK).
 * Return: exit status (0 on a requested stop). Exits 1 at once when the
 * supervisor is gone: before start-up (our parent is not @supervisor) or
 * later (the lifeline fired).
 */
int netstack_main(pid_t supervisor)
{
	static struct netstack ns;

	start(&ns, supervisor);
#ifdef MOAT_TEST_TRIGGERS
	if (ns.region.hdr.flags & MOAT_HDR_F_TEST_TRIGGERS) {
		/* Test builds only: prove the filter bites. This must kill us with SIGSYS. */
		log_warn("test trigger: calling socket()");
		(void)socket(AF_INET, SOCK_STREAM, 0);
		log_error("test trigger: socket() returned; the filter did not bite");
		return 1;
	}
#endif
	run(&ns);
	if (!ns.violation) {
		/* A requested stop: reset the guest's open connections (the RSTs go out
		 * through s2g; the supervisor passes them on before it closes the port). */
		uint32_t n = conn_reset_all(&ns);

		ring_flush(&ns.s2g);
		log_debug("stopping: reset %u open connections", n);
		return 0;
	}
	/* Reported through the mailbox; wait for the supervisor to end us. */
	while (!stop_requested) {
		struct pollfd life = { .fd = FD_LIFELINE, .events = POLLIN };

		if (ppoll(&life, 1, NULL, NULL) > 0 && life.revents)
			supervisor_gone(life.revents);
	}
	return 0;
}
