/* SPDX-License-Identifier: MIT */
/*
 * tls.h - the moat-tls role: TLS interception and secret injection
 * (docs/tls.md)
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <sys/types.h>

int tls_main(pid_t supervisor);

#endif /* MOAT_TLS_H */
