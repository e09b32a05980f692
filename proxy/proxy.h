/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - entry point of the proxy role (moat-proxy), and its seccomp
 * allowlist for the unit tests
 */
#ifndef MOAT_PROXY_H
#define MOAT_PROXY_H

#include <sys/types.h>

int proxy_main(pid_t supervisor);
void proxy_seccomp(void);

#endif
