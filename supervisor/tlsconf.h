/* SPDX-License-Identifier: MIT */
/*
 * tlsconf.h - the supervisor's part of TLS interception: the secrets, read
 * once and handed to moat-tls, and --tls-ca-out (docs/tls.md)
 */
#ifndef MOAT_TLSCONF_H
#define MOAT_TLSCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/policy.h"

int tlsconf_open(const struct policy *p, const char *ca_out, char *err, size_t errlen);
int tlsconf_ca_out_fd(void);
int tlsconf_send(const struct policy *p, int fd);
void tlsconf_wipe(void);
bool tlsconf_same(const struct policy *a, const struct policy *b);
int tlsconf_prepare(const struct policy *old, const struct policy *np, char *err, size_t errlen);
void tlsconf_commit(void);
void tlsconf_discard(void);

#endif /* MOAT_TLSCONF_H */
