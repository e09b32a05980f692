/* SPDX-License-Identifier: MIT */
/*
 * hook.h - the --on-violation program, run by a runner forked at start
 */
#ifndef MOAT_HOOK_H
#define MOAT_HOOK_H

#include "supervisor/proc.h"

/* The hook must not keep a dead sandbox's supervisor alive (DESIGN §9). */
#define HOOK_TIMEOUT_MS 5000

/**
 * struct hook_info - what the program is told, as MOAT_VIOLATION_* variables
 * @reason:	MOAT_VIOLATION_REASON ("policy_terminate", "ring_corrupt", ...)
 * @rule:	MOAT_VIOLATION_RULE (-1: none)
 * @flow:	MOAT_VIOLATION_FLOW
 * @detail:	MOAT_VIOLATION_DETAIL (already escaped: printable bytes only)
 * @destination: MOAT_VIOLATION_DESTINATION ("203.0.113.10:443", "[::1]:80" or "")
 * @process:	MOAT_VIOLATION_PROCESS (who reported it)
 * @vm_pid:	MOAT_VIOLATION_VM_PID
 */
struct hook_info {
	char reason[32];
	int rule;
	unsigned flow;
	char detail[640];
	char destination[80];
	char process[32];
	int vm_pid;
};

/**
 * struct hook - the runner
 * @runner:	the forked runner process (empty without --on-violation)
 * @fd:		write end of its pipe, or -1
 */
struct hook {
	struct proc runner;
	int fd;
};

int hook_start(struct hook *h, const char *program);
void hook_run(struct hook *h, const struct hook_info *info);
void hook_fini(struct hook *h);

#endif /* MOAT_HOOK_H */
