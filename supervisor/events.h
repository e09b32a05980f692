/* SPDX-License-Identifier: MIT */
/*
 * events.h - the structured event stream (--events PATH|-): JSON lines
 */
#ifndef MOAT_EVENTS_H
#define MOAT_EVENTS_H

#include <stdbool.h>

#include "shm/moat_shm.h"

int events_open(const char *path, char *err, size_t errlen);
void events_close(void);
void events_start(int netstack_pid, int proxy_pid);
void events_stop(int status);
void events_violation(const char *reason, const char *who, const struct moat_mailbox *m,
		      long kill_us);
void events_child_exit(const char *who, int status, int signal);
void events_reload(const char *path, bool ok, const char *err);
int events_from_proxy(const char *json, size_t len);

#endif /* MOAT_EVENTS_H */
