/* SPDX-License-Identifier: MIT */
/*
 * hook.c - the --on-violation program, run by a runner forked at start
 *
 * Theory of Operation
 * -------------------
 * The supervisor confines itself after set-up (no fork, no exec in its
 * seccomp allowlist), yet on a fatal violation it must run the operator's
 * --on-violation program. So hook_start() forks a runner at set-up,
 * before the supervisor drops its privileges: the runner keeps moat's
 * original credentials, which is what the program had when moat ran it
 * directly.
 *
 * The runner sleeps in read() on a pipe. hook_run() writes one struct
 * hook_info (smaller than PIPE_BUF: one atomic write) and waits up to
 * HOOK_TIMEOUT_MS for the program; the runner builds the environment
 * (moat's own plus the MOAT_VIOLATION_* variables) and execs /bin/sh -c
 * PROGRAM. EOF on the pipe (a clean stop, or the supervisor died) makes
 * the runner exit without running anything; PR_SET_PDEATHSIG (proc_fork())
 * ends it, and the program, if the supervisor dies first.
 *
 * Runs in the supervisor; the runner is its child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/hook.h"

extern char **environ;

#define HOOK_ENV_MAX 1024 /* of moat's own environment variables */

/* "NAME=value" into @buf, returned for envp. */
static char *env_entry(char *buf, size_t len, const char *name, const char *value)
{
	snprintf(buf, len, "%s=%s", name, value);
	return buf;
}

static void __attribute__((noreturn)) runner(int fd, const char *program)
{
	/* Static, not malloc'd: the runner may be forked after libmicrohttpd's
	 * thread started, and a forked child of a threaded process must not
	 * allocate. Variables past HOOK_ENV_MAX of moat's own are not passed. */
	static char vars[7][720];
	static char *envp[HOOK_ENV_MAX + 8];
	struct hook_info info = { .rule = -1 };
	char num[3][16];
	size_t have = 0, n_env = 0;
	sigset_t none;

	prctl(PR_SET_NAME, "moat-hook");
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	while (have < sizeof(info)) {
		ssize_t n = read(fd, (char *)&info + have, sizeof(info) - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0); /* a clean stop, or the supervisor is gone */
		have += (size_t)n;
	}
	close(fd);
	/* The record came from our parent, but terminate every string anyway. */
	info.reason[sizeof(info.reason) - 1] = '\0';
	info.detail[sizeof(info.detail) - 1] = '\0';
	info.destination[sizeof(info.destination) - 1] = '\0';
	info.process[sizeof(info.process) - 1] = '\0';
	snprintf(num[0], sizeof(num[0]), "%d", info.rule);
	snprintf(num[1], sizeof(num[1]), "%u", info.flow);
	snprintf(num[2], sizeof(num[2]), "%d", info.vm_pid);

	while (environ && environ[n_env] && n_env < HOOK_ENV_MAX) {
		envp[n_env] = environ[n_env];
		n_env++;
	}
	envp[n_env++] = env_entry(vars[0], sizeof(vars[0]), "MOAT_VIOLATION_REASON", info.reason);
	envp[n_env++] = env_entry(vars[1], sizeof(vars[1]), "MOAT_VIOLATION_RULE", num[0]);
	envp[n_env++] = env_entry(vars[2], sizeof(vars[2]), "MOAT_VIOLATION_FLOW", num[1]);
	envp[n_env++] = env_entry(vars[3], sizeof(vars[3]), "MOAT_VIOLATION_DETAIL", info.detail);
	envp[n_env++] = env_entry(vars[4], sizeof(vars[4]), "MOAT_VIOLATION_DESTINATION",
				  info.destination);
	envp[n_env++] = env_entry(vars[5], sizeof(vars[5]), "MOAT_VIOLATION_PROCESS", info.process);
	envp[n_env++] = env_entry(vars[6], sizeof(vars[6]), "MOAT_VIOLATION_VM_PID", num[2]);
	envp[n_env] = NULL;
	{
		char *argv[] = { "sh", "-c", (char *)program, NULL };

		execve("/bin/sh", argv, envp);
	}
	fprintf(stderr, "moat: --on-violation: cannot run /bin/sh: %s\n", strerror(errno));
	_exit(127);
}

/**
 * hook_start() - fork the runner for --on-violation
 * @h:		the hook (filled in)
 * @program:	the --on-violation program, or NULL (then nothing is forked)
 *
 * Context: the supervisor, before its privileges are dropped (the runner
 * allocates nothing, so libmicrohttpd's thread may exist already).
 * Return: 0, or -errno.
 */
int hook_start(struct hook *h, const char *program)
{
	int p[2];
	pid_t pid;

	proc_init(&h->runner);
	h->fd = -1;
	if (!program)
		return 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = proc_fork(&h->runner, false);
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return (int)pid;
	}
	if (pid == 0) {
		/* Only the pipe and stdio: nothing of the supervisor's (the lifeline's
		 * write end above all, which must die with the supervisor). */
		if (dup2(p[0], 3) < 0)
			_exit(127);
		syscall(SYS_close_range, 4U, ~0U, 0);
		runner(3, program);
	}
	close(p[0]);
	h->fd = p[1];
	return 0;
}

/**
 * hook_run() - run the program with @info and wait for it, bounded
 * @h:		the hook (nothing happens without a runner)
 * @info:	what happened
 */
void hook_run(struct hook *h, const struct hook_info *info)
{
	ssize_t n;

	if (h->fd < 0)
		return;
	n = write(h->fd, info, sizeof(*info));
	close(h->fd);
	h->fd = -1;
	if (n != (ssize_t)sizeof(*info)) {
		log_error("--on-violation: cannot reach the runner: %s",
			  n < 0 ? strerror(errno) : "short write");
		return;
	}
	if (proc_wait(&h->runner, HOOK_TIMEOUT_MS) == 0)
		log_warn("--on-violation program still running after %d s; it ends with moat",
			 HOOK_TIMEOUT_MS / 1000);
}

/**
 * hook_fini() - a clean stop: the runner exits without running anything
 * @h:	the hook
 */
void hook_fini(struct hook *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	if (h->runner.pid > 0)
		proc_stop(&h->runner, 1000);
	proc_close(&h->runner);
}
