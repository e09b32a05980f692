/* SPDX-License-Identifier: MIT */
/*
 * vhost.h - the moat-vhost role: a vhost-user net backend for one VMM at a
 * time (docs/frontends.md, "vhost-user")
 */
#ifndef MOAT_VHOST_H
#define MOAT_VHOST_H

#include <sys/types.h>

int vhost_main(pid_t supervisor);

#endif /* MOAT_VHOST_H */
