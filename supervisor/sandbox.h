/* SPDX-License-Identifier: MIT */
/*
 * sandbox.h - the supervisor's own confinement after set-up
 */
#ifndef MOAT_SANDBOX_H
#define MOAT_SANDBOX_H

#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The user the supervisor becomes when started as root without --user. */
#define SANDBOX_DEFAULT_USER "nobody"

/**
 * struct sandbox_user - whom the supervisor runs as after set-up
 * @name:	the user's name, for messages
 * @uid, @gid:	its ids (primary group)
 * @change:	false when no switch happens (not started as root, or --user root)
 */
struct sandbox_user {
	char name[64];
	uid_t uid;
	gid_t gid;
	bool change;
};

int sandbox_user_lookup(const char *name, struct sandbox_user *u, char *err, size_t errlen);
int sandbox_check_dir(const struct sandbox_user *u, const char *path, char *err, size_t errlen);
scmp_filter_ctx sandbox_filter(void);
void sandbox_enter(const struct sandbox_user *u, scmp_filter_ctx ctx);

#endif /* MOAT_SANDBOX_H */
