/* SPDX-License-Identifier: MIT */
/*
 * sandbox.c - the supervisor's own confinement after set-up
 *
 * Theory of Operation
 * -------------------
 * The supervisor parses guest framing, the netstack's s2g records, the
 * proxy's JSON and HTTP requests on the metrics port, so it is confined
 * too, once everything that needs privileges is done (the tap is open,
 * sockets are bound, files are open or prepared, the children and the
 * --on-violation runner are forked):
 *   1. started as root, it becomes --user (default "nobody": its uid, its
 *      primary group, no supplementary groups, an empty bounding set)
 *      keeping only CAP_KILL, which the termination hook needs to kill a
 *      VM owned by another user and to stop the children (which stay uid 0
 *      without capabilities); "--user root" keeps uid 0 with CAP_KILL only;
 *   2. no_new_privs and not dumpable;
 *   3. a seccomp allowlist, default kill, built by each module for the
 *      calls it makes at run time (sandbox_filter() for the loop's own,
 *      guest_seccomp(), metrics_seccomp(), proc_seccomp(), run.c's reload),
 *      synchronised to every thread (libmicrohttpd's included).
 *
 * sandbox_user_lookup() runs while options are validated, before anything
 * is forked; sandbox_check_dir() lets run.c refuse at start a file the
 * unprivileged user could not replace later.
 */
#define _GNU_SOURCE
#include <cap-ng.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/log.h"
#include "supervisor/sandbox.h"

/**
 * sandbox_user_lookup() - resolve --user before anything is forked
 * @name:	--user, or NULL for the default
 * @u:		filled in
 * @err, @errlen: one line saying what to fix
 *
 * Not started as root: no switch whatever @name says (a non-root moat
 * cannot change its uid; asking for another user is an error). As root:
 * @name, or SANDBOX_DEFAULT_USER; "root" (or any uid 0 user) keeps uid 0.
 *
 * Return: 0, or -1 with @err set.
 */
int sandbox_user_lookup(const char *name, struct sandbox_user *u, char *err, size_t errlen)
{
	const struct passwd *pw;

	memset(u, 0, sizeof(*u));
	if (geteuid() != 0) {
		pw = name ? getpwnam(name) : NULL;
		if (name && (!pw || pw->pw_uid != geteuid())) {
			snprintf(err, errlen, "--user %s: only root can change user", name);
			return -1;
		}
		snprintf(u->name, sizeof(u->name), "%s", name ? name : "(self)");
		u->uid = geteuid();
		u->gid = getegid();
		return 0;
	}
	if (!name)
		name = SANDBOX_DEFAULT_USER;
	pw = getpwnam(name);
	if (!pw) {
		snprintf(err, errlen,
			 "--user %s: no such user (the supervisor runs as it after set-up)", name);
		return -1;
	}
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	u->change = pw->pw_uid != 0;
	return 0;
}

/* May @u do @want (S_IWOTH-style bits: 2 write, 1 search) on @st? */
static bool may(const struct sandbox_user *u, const struct stat *st, unsigned want)
{
	unsigned bits;

	if (u->uid == 0)
		return true;
	if (st->st_uid == u->uid)
		bits = (st->st_mode >> 6) & 7;
	else if (st->st_gid == u->gid)
		bits = (st->st_mode >> 3) & 7;
	else
		bits = st->st_mode & 7;
	return (bits & want) == want;
}

/**
 * sandbox_check_dir() - can @u create and rename files next to @path?
 * @u:		the user the supervisor becomes
 * @path:	a file moat rewrites atomically (write PATH.tmp, rename over PATH)
 * @err, @errlen: one line saying what to fix
 *
 * Checks the mode bits of the directory holding @path (write and search)
 * and of every directory above it (search). ACLs are not read: a directory
 * they open up is refused here, which fails closed and says why.
 *
 * Return: 0, or -1 with @err set.
 */
int sandbox_check_dir(const struct sandbox_user *u, const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	unsigned want = 3;

	if (!u->change)
		return 0;
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	for (;;) {
		if (stat(dir, &st) < 0) {
			snprintf(err, errlen, "%s: %s", dir, strerror(errno));
			return -1;
		}
		if (!may(u, &st, want)) {
			snprintf(
				err, errlen,
				"%s: the directory %s is not %s by user %s, which moat runs as after "
				"set-up (choose a directory it may write, or --user)",
				path, dir, want == 3 ? "writable" : "searchable", u->name);
			return -1;
		}
		want = 1;
		slash = strrchr(dir, '/');
		if (!slash || !strcmp(dir, "/"))
			return 0;
		if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
	}
}

/**
 * sandbox_filter() - the supervisor's allowlist: its loop and its memory
 *
 * The modules add their own calls before sandbox_enter() loads it.
 *
 * Return: the filter context (fatal on failure).
 */
scmp_filter_ctx sandbox_filter(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	/* The loop (supervisor/loop.c) and its descriptors. */
	ALLOW(ctx, epoll_wait);	     /* the loop's wait */
	ALLOW(ctx, epoll_pwait);     /* the same where libc uses epoll_pwait */
	ALLOW(ctx, epoll_ctl);	     /* watches come and go (clients, children) */
	ALLOW(ctx, read);	     /* signalfd, eventfds, the children's log pipe, guest fds */
	ALLOW(ctx, write);	     /* our log, --events, eventfds, guest fds */
	ALLOW(ctx, close);	     /* clients that leave, pidfds of reaped children */
	ALLOW(ctx, clock_gettime);   /* timestamps when the vDSO falls back */
	ALLOW(ctx, clock_nanosleep); /* short sleeps while stopping (libc's nanosleep) */
	ALLOW(ctx, nanosleep);	     /* the same on older libcs */
	ALLOW(ctx, restart_syscall); /* a wait interrupted by a stopped-and-continued process */
	ALLOW(ctx, rt_sigprocmask);  /* libc's ppoll/epoll_pwait mask handling */
	ALLOW(ctx, getpid);	     /* log and event fields */
	ALLOW(ctx, gettid);	     /* abort() in libc */
	ALLOW(ctx, tgkill);	     /* abort() in libc */
	ALLOW(ctx, rt_sigaction);    /* abort() resets SIGABRT */
	/* Memory: jansson (the proxy's events, policy reloads), libmicrohttpd. */
	ALLOW(ctx, brk); /* malloc */
	/* malloc of large blocks: never executable memory */
	ALLOW_ARG(ctx, mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	ALLOW(ctx, munmap);    /* free of large blocks */
	ALLOW(ctx, mremap);    /* realloc of large blocks */
	ALLOW(ctx, madvise);   /* glibc malloc trimming */
	ALLOW(ctx, mprotect);  /* glibc malloc's per-thread arenas (libmicrohttpd's thread) */
	ALLOW(ctx, futex);     /* glibc locks between our thread and libmicrohttpd's */
	ALLOW(ctx, getrandom); /* glibc malloc's arena randomisation, jansson's seed */
	return ctx;
}

/**
 * sandbox_enter() - become @u, keep CAP_KILL, load @ctx
 * @u:		from sandbox_user_lookup()
 * @ctx:	from sandbox_filter(), with the modules' calls added; freed here
 *
 * Context: the supervisor, after set-up. Fatal on any failure: a supervisor
 * that cannot confine itself must not run the guest.
 */
void sandbox_enter(const struct sandbox_user *u, scmp_filter_ctx ctx)
{
	if (geteuid() == 0) {
		capng_clear(CAPNG_SELECT_BOTH);
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_KILL);
		if (u->change) {
			int rc = capng_change_id((int)u->uid, (int)u->gid,
						 CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);

			if (rc < 0)
				fatalx(1, "cannot become user %s (uid %u): capng_change_id %d",
				       u->name, (unsigned)u->uid, rc);
		} else if (capng_apply(CAPNG_SELECT_BOTH) < 0) {
			fatalx(1, "cannot drop the supervisor's capabilities");
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_NO_NEW_PRIVS)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_DUMPABLE)");
	/* libmicrohttpd's thread runs already: the filter goes on every thread. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0)
		fatalx(1, "seccomp: cannot synchronise the filter across threads");
	confine_seccomp_load(ctx);
}
