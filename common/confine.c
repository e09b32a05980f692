/* SPDX-License-Identifier: MIT */
/*
 * confine.c - the confinement stages of DESIGN §2
 *
 * Theory of Operation
 * -------------------
 * Called by the netstack and the proxy right after exec, in this order,
 * before they read any guest data:
 *   0. confine_parent_death(): SIGKILL when the supervisor dies, and exit
 *      now if it already has (the parent is no longer the pid the
 *      supervisor passed us). Called again after the credential changes of
 *      stages 2 and 3, since a credential change may clear the setting;
 *   1. confine_close_fds(): nothing but the fds handed over stays open;
 *   2. confine_netns(), or confine_no_network() where failing is only a
 *      warning: an empty network namespace, so even
 *      a seccomp bypass finds no network. As root a plain unshare; without
 *      privileges a user namespace first;
 *   3. confine_drop_caps(), confine_limits(): no capabilities (libcap-ng,
 *      bounding set included when we may change it), no new privileges, not
 *      dumpable, no processes, no file writes, few fds, no core dumps;
 *   4. confine_seccomp_init() / ALLOW() / ALLOW_ARG() /
 *      confine_seccomp_load(): an allowlist whose default is
 *      SCMP_ACT_KILL_PROCESS; libseccomp checks the architecture first and
 *      kills on a foreign one. ALLOW_ARG() restricts a syscall to argument
 *      values (the netstack's read/write to its own fds, the proxy's mmap to
 *      anonymous memory).
 * Any failure is fatal: a child that cannot confine itself must not run.
 *
 * Sanitizer builds (MOAT_SANITIZE) add the calls ASan/UBSan's runtime makes
 * behind the program's back (mmap for shadow memory, reading /proc/self/maps
 * on a report), unconditionally: a role's argument-restricted rule for the
 * same syscall then adds nothing. They also run LeakSanitizer's check when
 * the filter goes on rather than at exit, where it could not run. Release
 * builds never have any of this. A debug seccomp build
 * (MOAT_SECCOMP_TRAP) uses SCMP_ACT_TRAP and logs the offending syscall.
 */
#define _GNU_SOURCE
#include <cap-ng.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/log.h"

#ifdef MOAT_SANITIZE
#include <sanitizer/lsan_interface.h>
#endif

/**
 * confine_parent_death() - die with the supervisor, or now if it is gone
 * @supervisor:	the supervisor's pid, as it passed it on our command line
 *
 * Sets PR_SET_PDEATHSIG to SIGKILL, then checks that our parent is still
 * @supervisor: if the supervisor died before the prctl, we were already
 * reparented (to init or a subreaper) and no signal will ever come, so we
 * exit at once. The kernel clears the setting when the effective or
 * filesystem uid or gid changes or the permitted capabilities grow
 * (prctl(2), commit_creds()). The roles' own changes (a user namespace
 * they own, dropping capabilities) do not clear it on today's kernels, but
 * the roles call this first thing and again after their last credential
 * change anyway, before the seccomp filter (prctl and getppid are not on
 * it): one syscall keeps it true whatever set-up becomes. The signal is
 * sent when the thread that forked us ends: the supervisor must fork its
 * children from a thread that lives as long as it does (its main thread).
 *
 * Context: a role at start-up. Exits (status 1) if the parent changed.
 */
void confine_parent_death(pid_t supervisor)
{
	pid_t parent;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_PDEATHSIG)");
	parent = getppid();
	if (parent != supervisor) {
		log_error("supervisor %d is gone (parent now %d); exiting", (int)supervisor,
			  (int)parent);
		_exit(1);
	}
}

/**
 * confine_ppoll() - a confined role's sleep, with the supervisor's lifeline
 * @pfd:	what to wait for; @pfd[0] is FD_LIFELINE
 * @n:		entries in @pfd
 * @timeout:	as ppoll()'s (NULL: no timeout)
 * @sigmask:	as ppoll()'s: the signals to let in while waiting (NULL: as now)
 *
 * The lifeline is the read end of a pipe only the supervisor holds open
 * for writing: when it fires, the supervisor is gone, and so are we
 * (exit status 1, nothing to hand over).
 *
 * Context: moat-tls's and moat-vhost's loops (ppoll is on their lists).
 * Return: ppoll()'s result, or -1 if a signal came first (poll again).
 * Does not return on any other error (fatal).
 */
int confine_ppoll(struct pollfd *pfd, nfds_t n, const struct timespec *timeout,
		  const sigset_t *sigmask)
{
	int rc = ppoll(pfd, n, timeout, sigmask);

	if (rc < 0) {
		if (errno == EINTR)
			return -1;
		fatal("ppoll");
	}
	if (pfd[0].revents) {
		log_error("supervisor gone (lifeline); exiting");
		_exit(1);
	}
	return rc;
}

/**
 * confine_close_fds() - close every descriptor above @last_kept
 * @last_kept:	highest fd number to keep
 */
void confine_close_fds(int last_kept)
{
	if (syscall(SYS_close_range, (unsigned int)last_kept + 1, ~0U, 0) < 0) {
		/* Old kernels: walk the table. */
		for (int fd = last_kept + 1; fd < 65536; fd++)
			close(fd);
	}
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -EIO;
}

/**
 * confine_netns() - move into a fresh, empty network namespace
 *
 * As root this is a plain unshare(CLONE_NEWNET). Unprivileged, it first makes
 * a user namespace that maps only the current uid and gid.
 *
 * Return: 0 on success, -errno if no namespace could be made (the caller
 * logs it; the seccomp filter still forbids sockets).
 */
int confine_netns(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];

	if (unshare(CLONE_NEWNET) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
		return -errno;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	write_file("/proc/self/uid_map", map);
	write_file("/proc/self/setgroups", "deny\n");
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	write_file("/proc/self/gid_map", map);
	return 0;
}

/**
 * confine_no_network() - stage 2 for a role that never needs the network
 *
 * confine_netns(), and a warning if no namespace could be made: the role
 * goes on, since its seccomp filter still forbids sockets.
 */
void confine_no_network(void)
{
	int rc = confine_netns();

	if (rc < 0)
		log_warn("no private network namespace (%s); seccomp still forbids sockets",
			 strerror(-rc));
}

/**
 * confine_drop_caps() - drop every capability, set no_new_privs, not dumpable
 */
void confine_drop_caps(void)
{
	capng_select_t what = CAPNG_SELECT_BOTH;

	capng_get_caps_process();
	if (capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP))
		what = CAPNG_SELECT_ALL; /* bounding set too */
	capng_clear(what);
	if (capng_apply(what) < 0)
		fatalx(1, "cannot drop capabilities");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fatal("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_NO_NEW_PRIVS)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_DUMPABLE)");
}

static void set_limit(int resource, rlim_t v, const char *name)
{
	struct rlimit rl = { .rlim_cur = v, .rlim_max = v };

	if (setrlimit(resource, &rl) < 0)
		fatal("setrlimit(%s)", name);
}

/**
 * confine_limits() - tight resource limits
 * @nofile:	RLIMIT_NOFILE for the role
 *
 * RLIMIT_NPROC 0 forbids fork/clone (for our uid, once capabilities are
 * gone; the kernel never applies it to uid 0, where seccomp does the job);
 * RLIMIT_FSIZE 0 forbids growing any file; no core dumps.
 *
 * RLIMIT_FSIZE applies to every write, including those to descriptors we
 * inherited, and it is set unconditionally: the supervisor hands its
 * children /dev/null as stdin and stdout and a pipe it drains into its own
 * log as stderr (common/fds.h), so a child never writes a file, even when
 * `moat run 2>moat.log` sends the supervisor's own log to one. A role
 * started with a regular file on a descriptor dies of SIGXFSZ at its first
 * write there instead of filling a disk.
 */
void confine_limits(unsigned long nofile)
{
	set_limit(RLIMIT_NPROC, 0, "RLIMIT_NPROC");
	set_limit(RLIMIT_FSIZE, 0, "RLIMIT_FSIZE");
	set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
	set_limit(RLIMIT_NOFILE, nofile, "RLIMIT_NOFILE");
}

#ifdef MOAT_SECCOMP_TRAP
static void sigsys_handler(int sig, siginfo_t *si, void *uc)
{
	char buf[64];
	int n;

	(void)sig;
	(void)uc;
	n = snprintf(buf, sizeof(buf), "seccomp: forbidden syscall %d\n", si->si_syscall);
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nothing */
	}
	_exit(159);
}
#endif

/**
 * confine_seccomp_init() - an empty allowlist: default kill, native arch only
 *
 * Return: the filter context (fatal on failure).
 */
scmp_filter_ctx confine_seccomp_init(void)
{
	scmp_filter_ctx ctx;

#ifdef MOAT_SECCOMP_TRAP
	struct sigaction sa = { .sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO };

	sigaction(SIGSYS, &sa, NULL);
	ctx = seccomp_init(SCMP_ACT_TRAP);
#else
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
#endif
	if (!ctx)
		fatalx(1, "seccomp_init failed");
	/* A foreign architecture (x32, i386 syscalls on x86_64) is killed. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
		fatalx(1, "seccomp: cannot set bad-arch action");
	/* Everybody: return from signal handlers, and die. */
	ALLOW(ctx, rt_sigreturn); /* signal handlers return through it */
	ALLOW(ctx, exit_group);	  /* normal termination */
	ALLOW(ctx, exit);	  /* a thread's end (libc may use it) */
#ifdef MOAT_SANITIZE
	/* ASan/UBSan runtime only: shadow memory, reports, symbolization. */
	ALLOW(ctx, mmap);
	ALLOW(ctx, munmap);
	ALLOW(ctx, mprotect);
	ALLOW(ctx, madvise);
	ALLOW(ctx, openat);
	ALLOW(ctx, read);
	ALLOW(ctx, close);
	ALLOW(ctx, getpid);
	ALLOW(ctx, gettid);
	ALLOW(ctx, sched_yield);
	ALLOW(ctx, sigaltstack);
	ALLOW(ctx, rt_sigaction);
	ALLOW(ctx, rt_sigprocmask);
	ALLOW(ctx, prctl);
	ALLOW(ctx, readlink);
	ALLOW(ctx, futex);
	ALLOW(ctx, write);
	ALLOW(ctx, fstat);
	ALLOW(ctx, newfstatat);
	ALLOW(ctx, getrlimit);
	ALLOW(ctx, prlimit64);
	ALLOW(ctx, brk);
	ALLOW(ctx, kill);
	ALLOW(ctx, tgkill);
#endif
	return ctx;
}

/**
 * confine_allow() - allow one syscall, unconditionally
 * @ctx:	filter
 * @nr:		syscall number (SCMP_SYS)
 * @name:	for the error message
 */
void confine_allow(scmp_filter_ctx ctx, int nr, const char *name)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);

	/* -EEXIST: already allowed (sanitizer extras); fine. */
	if (rc < 0 && rc != -EEXIST)
		fatalx(1, "seccomp: cannot allow %s: %s", name, strerror(-rc));
}

/**
 * confine_allow_arg() - allow one syscall when its arguments match
 * @ctx:	filter
 * @nr:		syscall number (SCMP_SYS)
 * @name:	for the error message
 * @n:		number of conditions in @cmp (1..6)
 * @cmp:	argument conditions, all of which must hold (SCMP_A0() ...)
 *
 * One rule; add one per allowed value to allow several (rules are ORed).
 * Next to an unconditional rule for the same syscall (sanitizer builds,
 * confine_seccomp_init()) the condition adds nothing, and libseccomp may
 * say so with -EEXIST: that is fine, the syscall stays allowed as before.
 */
void confine_allow_arg(scmp_filter_ctx ctx, int nr, const char *name, unsigned int n,
		       const struct scmp_arg_cmp *cmp)
{
	int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);

	if (rc < 0 && rc != -EEXIST)
		fatalx(1, "seccomp: cannot allow %s with %u argument conditions: %s", name, n,
		       strerror(-rc));
}

/**
 * confine_deny() - make one syscall fail with an errno instead of killing
 * @ctx:	filter
 * @nr:		syscall number (SCMP_SYS)
 * @name:	for the error message
 * @err:	the errno the call returns
 *
 * Sanitizer builds may allow the call already (their runtime needs it):
 * then the allow stays.
 */
void confine_deny(scmp_filter_ctx ctx, int nr, const char *name, int err)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)err), nr, 0);

	if (rc < 0 && rc != -EEXIST)
		fatalx(1, "seccomp: cannot deny %s: %s", name, strerror(-rc));
}

/**
 * confine_seccomp_load() - install the filter and free the context
 * @ctx:	filter from confine_seccomp_init()
 */
void confine_seccomp_load(scmp_filter_ctx ctx)
{
	int rc;

#ifdef MOAT_SANITIZE
	/*
	 * LeakSanitizer's check at exit stops the world with clone and ptrace,
	 * which no allowlist has: a clean exit would die of SIGSYS. Check now,
	 * while we still may; LSan then skips the check at exit (what leaks
	 * later goes unreported).
	 */
	__lsan_do_leak_check();
#endif
	rc = seccomp_load(ctx);

	seccomp_release(ctx);
	if (rc < 0)
		fatalx(1, "seccomp_load: %s", strerror(-rc));
}
