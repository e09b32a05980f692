/* SPDX-License-Identifier: MIT */
/*
 * netstack.h - entry point of the netstack role (moat-netstack), and its
 * seccomp allowlist for the unit tests
 */
#ifndef MOAT_NETSTACK_H
#define MOAT_NETSTACK_H

#include <sys/types.h>

int netstack_main(pid_t supervisor);
void netstack_seccomp(void);

#endif
