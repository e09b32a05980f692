/* SPDX-License-Identifier: MIT */
/*
 * proc.c - processes the supervisor starts, and their one lifetime
 *
 * Theory of Operation
 * -------------------
 * Every process moat starts (the netstack and the proxy, the command after
 * `--`, the --on-violation runner) is started here, and none may outlive the
 * supervisor (DESIGN §1): the roles, which exec at once, by proc_spawn()
 * (no copy of our memory), the others by proc_fork(). Both set
 * PR_SET_PDEATHSIG(SIGKILL) in the
 * child and then check that its parent is still the supervisor: a
 * supervisor that died between fork() and prctl() would otherwise leave an
 * orphan that no signal ever reaches. The two roles re-check after exec
 * against the pid on their command line and also hold a lifeline pipe
 * (common/fds.h), so losing the supervisor wakes their loops whatever
 * happened to the death signal.
 *
 * Each child is watched through a pidfd and reaped only through it
 * (waitid(P_PIDFD)): the supervisor never calls waitpid(-1), so one
 * watcher can never steal another child's exit status. proc_stop() asks
 * with SIGTERM and kills after a grace period, so a clean stop is bounded
 * even for a command that ignores SIGTERM.
 *
 * Runs in the supervisor only. Library-level: nothing here exits the
 * process, except in the child between fork() (or clone()) and its exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/confine.h"
#include "supervisor/proc.h"

/**
 * proc_init() - an empty slot: no process
 * @p:	the slot
 */
void proc_init(struct proc *p)
{
	memset(p, 0, sizeof(*p));
	p->pidfd = -1;
}

/**
 * proc_fork() - fork a child that dies with the supervisor
 * @p:		slot filled in the parent (proc_init()'d)
 * @group:	put the child in a process group of its own (the `--` command:
 *		the VM is killed as a group)
 *
 * In the child: a new process group if asked, PR_SET_PDEATHSIG(SIGKILL),
 * and an immediate _exit(127) if the parent already changed (the
 * supervisor died before the death signal was set). In the parent: the
 * group is set too (no race with the child's first signal), and a pidfd
 * opened for the loop to watch.
 *
 * Context: call only where forking is safe for what the child will do
 * (before threads exist if the child runs more than async-signal-safe code).
 * Return: 0 in the child, the child's pid in the parent, -errno on failure
 * (in the parent; a child whose pidfd cannot be opened is killed and reaped).
 */
pid_t proc_fork(struct proc *p, bool group)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (group)
			setpgid(0, 0);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		return 0;
	}
	if (group)
		setpgid(pid, pid); /* EACCES once it exec'd: then it did it itself */
	p->pid = pid;
	p->group = group;
	p->reaped = false;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0) {
		int e = errno;

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		proc_init(p);
		return -e;
	}
	return pid;
}

/* proc_spawn()'s child: what it runs, and the supervisor it must die with. */
struct spawn_arg {
	int (*fn)(void *);
	void *arg;
	pid_t parent;
};

static int spawn_child_start(void *a)
{
	const struct spawn_arg *sa = a;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != sa->parent)
		_exit(127);
	sa->fn(sa->arg);
	_exit(127);
}

/**
 * proc_spawn() - start a child that execs at once and dies with the supervisor
 * @p:		slot filled in (proc_init()'d)
 * @fn:		what the child runs: async-signal-safe calls on its own
 *		descriptors, then an exec; it never returns on success
 * @arg:	for @fn, read-only to it
 *
 * fork() without the copy: the child runs @fn on a stack of its own in our
 * memory (clone(CLONE_VM | CLONE_VFORK), as posix_spawn() does) and we wait
 * until its exec has left our memory. A fork() copied the page tables of
 * the whole supervisor, made every page we then wrote a copy-on-write fault,
 * and had the child's exec tear the copy down again: at start-up, with the
 * children exec'ing beside us on a small machine, that was on the way to
 * `ready` (docs/benchmarks.md, "Start-up"). The child sets
 * PR_SET_PDEATHSIG(SIGKILL) and exits if its parent already changed, as with
 * proc_fork(). @fn must write nothing but its own locals (our memory is its
 * memory) and may not return: if it does, or its exec fails, the child exits
 * 127, which the caller sees through the pidfd.
 *
 * Context: the supervisor's main thread (the death signal follows the
 * thread that made the child), one spawn at a time.
 * Return: the child's pid, or -errno (nothing started).
 */
pid_t proc_spawn(struct proc *p, int (*fn)(void *), void *arg)
{
	/* Only used until the child's exec; CLONE_VFORK keeps spawns one at a time. */
	static char stack[64 * 1024] __attribute__((aligned(16)));
	struct spawn_arg sa = { .fn = fn, .arg = arg, .parent = getpid() };
	int pidfd = -1;
	pid_t pid = clone(spawn_child_start, stack + sizeof(stack),
			  CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &sa, &pidfd);

	if (pid < 0)
		return -errno;
	p->pid = pid;
	p->group = false;
	p->reaped = false;
	p->pidfd = pidfd;
	return pid;
}

/**
 * proc_reap() - collect the child's exit if it has happened
 * @p:	the child
 *
 * Only this child's exit is collected (waitid on its pidfd), never another's.
 *
 * Return: 1 if it exited (now or before; @p->si says how), 0 if it is still
 * running, -errno on failure (-ECHILD: no such child).
 */
int proc_reap(struct proc *p)
{
	siginfo_t si;

	if (p->reaped)
		return 1;
	if (p->pidfd < 0)
		return -ECHILD;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0)
		return -errno;
	if (si.si_pid == 0)
		return 0;
	p->si = si;
	p->reaped = true;
	return 1;
}

/**
 * proc_signal() - send @sig to the child (its whole group if it leads one)
 * @p:		the child
 * @sig:	signal
 *
 * A reaped child is never signalled: its pid (and group id) may belong to
 * someone else by now. A group is signalled with kill(-pgid), which reaches
 * the processes the command started too.
 *
 * Return: 0, or -errno (-ESRCH: already gone).
 */
int proc_signal(struct proc *p, int sig)
{
	if (p->pid <= 0 || p->reaped)
		return -ESRCH;
	if (p->group) {
		if (kill(-p->pid, sig) == 0)
			return 0;
		if (errno != ESRCH)
			return -errno;
		/* The group is empty but the leader is a zombie: nothing to do. */
		return -ESRCH;
	}
	if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/**
 * proc_wait() - wait up to @timeout_ms for the child to exit, and reap it
 * @p:		the child
 * @timeout_ms:	bound (0: just look; negative: no bound)
 *
 * Return: 1 if it exited and was reaped, 0 on timeout, -errno on failure.
 */
int proc_wait(struct proc *p, int timeout_ms)
{
	long deadline = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
		long left = timeout_ms < 0 ? -1 : deadline - now_ms();
		int rc = proc_reap(p);

		if (rc != 0)
			return rc;
		if (timeout_ms >= 0 && left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
	}
}

/**
 * proc_stop() - ask the child to stop, kill it if it does not, reap it
 * @p:		the child (nothing happens for an empty or reaped slot)
 * @grace_ms:	how long SIGTERM gets before SIGKILL
 *
 * Bounded: returns within about @grace_ms plus the time the kernel takes to
 * deliver SIGKILL, whatever the child does with SIGTERM.
 */
void proc_stop(struct proc *p, int grace_ms)
{
	if (p->pid <= 0 || p->reaped)
		return;
	proc_signal(p, SIGTERM);
	if (proc_wait(p, grace_ms) != 0)
		return;
	proc_signal(p, SIGKILL);
	/* SIGKILL cannot be caught; a child stuck in the kernel still ends. */
	proc_wait(p, -1);
}

/**
 * proc_close() - close the pidfd; the slot stays readable
 * @p:	the child
 */
void proc_close(struct proc *p)
{
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
}

/**
 * proc_seccomp() - the calls this file makes once the supervisor is confined
 * @ctx:	the supervisor's filter (supervisor/sandbox.c)
 */
void proc_seccomp(scmp_filter_ctx ctx)
{
	ALLOW(ctx, waitid);	       /* proc_reap(): one child's exit, through its pidfd */
	ALLOW(ctx, pidfd_send_signal); /* proc_signal(): a role, the --on-violation runner */
	ALLOW(ctx, kill);	       /* proc_signal(): the `--` command's process group */
	ALLOW(ctx, poll);	       /* proc_wait(): a pidfd with a timeout */
	ALLOW(ctx, ppoll);	       /* the same where libc's poll() is ppoll() */
}
