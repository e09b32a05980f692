/* SPDX-License-Identifier: MIT */
/*
 * proc.h - processes the supervisor starts, and their one lifetime
 */
#ifndef MOAT_PROC_H
#define MOAT_PROC_H

#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

/*
 * A child that ignores SIGTERM is killed this long after it was asked to
 * stop: long enough for a VMM to flush its disks, short enough that an
 * orchestrator's stop is not held up by a wedged guest.
 */
#define PROC_STOP_GRACE_MS 5000

/**
 * struct proc - one child process of the supervisor
 * @pid:	its pid (0: none)
 * @pidfd:	pidfd_open() of it, or -1; readable once it exited
 * @group:	@pid leads its own process group; signals go to the whole group
 * @reaped:	its exit was collected (@si holds it); @pid must not be signalled
 * @si:		the exit, from waitid()
 */
struct proc {
	pid_t pid;
	int pidfd;
	bool group;
	bool reaped;
	siginfo_t si;
};

void proc_init(struct proc *p);
pid_t proc_fork(struct proc *p, bool group);
pid_t proc_spawn(struct proc *p, int (*fn)(void *), void *arg);
int proc_reap(struct proc *p);
int proc_signal(struct proc *p, int sig);
int proc_wait(struct proc *p, int timeout_ms);
void proc_stop(struct proc *p, int grace_ms);
void proc_close(struct proc *p);
void proc_seccomp(scmp_filter_ctx ctx);

#endif /* MOAT_PROC_H */
