/* SPDX-License-Identifier: MIT */
/*
 * test_proc.c - supervisor/proc.c and supervisor/hook.c: one lifetime
 *
 * The races issue 11 names, each with a test: a reaper that steals another
 * child's exit (the supervisor reaps only through pidfds), a clean stop
 * that waits forever for a child ignoring SIGTERM, a child that outlives
 * its parent; and the --on-violation runner's two endings.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervisor/hook.h"
#include "supervisor/proc.h"

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Is @pid a live process (not a zombie, not gone)? */
static bool alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool live = false;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		live = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	}
	fclose(f);
	return live;
}

Test(proc, reap_takes_only_its_own_child)
{
	struct proc p;
	pid_t other, pid;
	int status = 0;

	other = fork();
	cr_assert(other >= 0);
	if (other == 0)
		_exit(7);
	proc_init(&p);
	pid = proc_fork(&p, false);
	cr_assert(pid >= 0);
	if (pid == 0)
		_exit(3);
	cr_assert_eq(proc_wait(&p, 5000), 1);
	cr_assert_eq(p.si.si_pid, pid);
	cr_assert_eq(p.si.si_code, CLD_EXITED);
	cr_assert_eq(p.si.si_status, 3);
	/* The other child's exit is still there for its own watcher. */
	cr_assert_eq(waitpid(other, &status, 0), other);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 7);
	/* Reaped: never signalled again (its pid may be someone else's now). */
	cr_assert_eq(proc_signal(&p, SIGKILL), -ESRCH);
	proc_close(&p);
}

Test(proc, reap_of_a_running_child_returns_zero)
{
	struct proc p;
	pid_t pid;

	proc_init(&p);
	pid = proc_fork(&p, false);
	cr_assert(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	cr_assert_eq(proc_reap(&p), 0);
	cr_assert_eq(proc_wait(&p, 50), 0);
	cr_assert_eq(proc_signal(&p, SIGKILL), 0);
	cr_assert_eq(proc_wait(&p, 5000), 1);
	cr_assert_eq(p.si.si_code, CLD_KILLED);
	proc_close(&p);
}

Test(proc, stop_is_bounded_for_a_child_ignoring_sigterm)
{
	struct proc p;
	int ready[2];
	char c;
	pid_t pid;
	long t0, took;

	cr_assert_eq(pipe(ready), 0);
	proc_init(&p);
	pid = proc_fork(&p, true);
	cr_assert(pid >= 0);
	if (pid == 0) {
		signal(SIGTERM, SIG_IGN);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	cr_assert_eq(read(ready[0], &c, 1), 1);
	t0 = now_ms();
	proc_stop(&p, 300);
	took = now_ms() - t0;
	cr_assert(p.reaped, "the child was not reaped");
	cr_assert_eq(p.si.si_code, CLD_KILLED);
	cr_assert_eq(p.si.si_status, SIGKILL);
	/* Bounded: the grace period, then SIGKILL; not forever. */
	cr_assert(took >= 250 && took < 5000, "stop took %ld ms", took);
	cr_assert(!alive(pid));
	proc_close(&p);
}

Test(proc, stop_of_a_cooperative_child_needs_no_kill)
{
	struct proc p;
	pid_t pid;

	proc_init(&p);
	pid = proc_fork(&p, false);
	cr_assert(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	proc_stop(&p, 5000);
	cr_assert(p.reaped);
	cr_assert_eq(p.si.si_code, CLD_KILLED);
	cr_assert_eq(p.si.si_status, SIGTERM);
	proc_close(&p);
}

Test(proc, a_group_is_signalled_whole)
{
	struct proc p;
	int fds[2];
	pid_t pid, grandchild = 0;

	cr_assert_eq(pipe(fds), 0);
	proc_init(&p);
	pid = proc_fork(&p, true);
	cr_assert(pid >= 0);
	if (pid == 0) {
		pid_t g = fork();

		if (g == 0) {
			for (;;)
				pause();
		}
		if (write(fds[1], &g, sizeof(g)) != sizeof(g))
			_exit(1);
		for (;;)
			pause();
	}
	cr_assert_eq(read(fds[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	cr_assert_eq(getpgid(grandchild), pid);
	cr_assert_eq(proc_signal(&p, SIGKILL), 0);
	cr_assert_eq(proc_wait(&p, 5000), 1);
	for (int i = 0; i < 100 && alive(grandchild); i++)
		usleep(10000);
	cr_assert(!alive(grandchild), "the command's own child survived the group kill");
	proc_close(&p);
}

/*
 * The child of a supervisor that dies is killed: the test process is a
 * subreaper, so the orphan is reparented to it and its death can be seen.
 */
Test(proc, a_child_does_not_outlive_its_parent)
{
	int fds[2];
	pid_t middle, orphan = 0;
	long t0;

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(fds), 0);
	middle = fork();
	cr_assert(middle >= 0);
	if (middle == 0) {
		struct proc p;
		pid_t pid;

		proc_init(&p);
		pid = proc_fork(&p, false);
		if (pid == 0) {
			for (;;)
				pause();
		}
		if (write(fds[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		_exit(0); /* the "supervisor" dies; its child must follow */
	}
	cr_assert_eq(read(fds[0], &orphan, sizeof(orphan)), sizeof(orphan));
	cr_assert(orphan > 0);
	waitpid(middle, NULL, 0);
	t0 = now_ms();
	while (alive(orphan) && now_ms() - t0 < 1000)
		usleep(5000);
	cr_assert(!alive(orphan), "the child outlived its parent by 1 s");
	waitpid(orphan, NULL, 0);
}

static char *slurp(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

Test(hook, the_runner_runs_the_program_with_the_violation)
{
	char dir[] = "/tmp/moat-test-hook.XXXXXX", out[128], prog[256];
	struct hook h;
	struct hook_info info = { .rule = 2, .flow = 77, .vm_pid = 1234 };
	const char *text;

	cr_assert(mkdtemp(dir));
	snprintf(out, sizeof(out), "%s/env", dir);
	snprintf(prog, sizeof(prog), "env | grep ^MOAT_VIOLATION_ | sort > %s", out);
	cr_assert_eq(hook_start(&h, prog), 0);
	cr_assert(h.runner.pid > 0 && alive(h.runner.pid));
	snprintf(info.reason, sizeof(info.reason), "policy_terminate");
	snprintf(info.detail, sizeof(info.detail), "rule 2 matched");
	snprintf(info.destination, sizeof(info.destination), "203.0.113.10:443");
	snprintf(info.process, sizeof(info.process), "moat-proxy");
	hook_run(&h, &info);
	cr_assert(h.runner.reaped, "hook_run returned before the program ended");
	text = slurp(out);
	cr_assert(text, "the program did not run");
	cr_assert(strstr(text, "MOAT_VIOLATION_REASON=policy_terminate\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_RULE=2\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_FLOW=77\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_DETAIL=rule 2 matched\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_DESTINATION=203.0.113.10:443\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_PROCESS=moat-proxy\n"), "%s", text);
	cr_assert(strstr(text, "MOAT_VIOLATION_VM_PID=1234\n"), "%s", text);
	hook_fini(&h);
	unlink(out);
	rmdir(dir);
}

Test(hook, a_clean_stop_runs_nothing)
{
	char dir[] = "/tmp/moat-test-hook.XXXXXX", out[128], prog[256];
	struct hook h;
	pid_t runner;

	cr_assert(mkdtemp(dir));
	snprintf(out, sizeof(out), "%s/ran", dir);
	snprintf(prog, sizeof(prog), "touch %s", out);
	cr_assert_eq(hook_start(&h, prog), 0);
	runner = h.runner.pid;
	hook_fini(&h);
	cr_assert(!alive(runner));
	cr_assert_eq(access(out, F_OK), -1, "the program ran at a clean stop");
	rmdir(dir);
}

Test(hook, no_program_no_runner)
{
	struct hook h;
	struct hook_info info = { 0 };

	cr_assert_eq(hook_start(&h, NULL), 0);
	cr_assert_eq(h.runner.pid, 0);
	hook_run(&h, &info); /* nothing to do, nothing to wait for */
	hook_fini(&h);
}
