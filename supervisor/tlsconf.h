/* SPDX-License-Identifier: MIT */
/*
 * tlsconf.h - the supervisor's part of TLS interception: the secrets and
 * files handed to moat-tls, its configurations, and --tls-ca-out
 * (docs/tls.md)
 */
#ifndef MOAT_TLSCONF_H
#define MOAT_TLSCONF_H

#include <stdbool.h>
#include <stddef.h>

#include <seccomp.h>

#include "policy/policy.h"

int tlsconf_open(const struct policy *p, const char *ca_out, char *err, size_t errlen);
int tlsconf_child_fd(void);
int tlsconf_start(const struct policy *p, int cfg_fd, char *err, size_t errlen);
bool tlsconf_running(void);
void tlsconf_wipe(void);
int tlsconf_prepare(const struct policy *old, const struct policy *np, char *err, size_t errlen);
void tlsconf_commit(void);
void tlsconf_discard(void);
void tlsconf_seccomp(scmp_filter_ctx ctx);

#endif /* MOAT_TLSCONF_H */
