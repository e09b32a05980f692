/* SPDX-License-Identifier: MIT */
/*
 * confine.h - self-confinement stages shared by the netstack and the proxy
 */
#ifndef MOAT_CONFINE_H
#define MOAT_CONFINE_H

#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

void confine_parent_death(pid_t supervisor);
int confine_ppoll(struct pollfd *pfd, nfds_t n, const struct timespec *timeout,
		  const sigset_t *sigmask);
void confine_close_fds(int last_kept);
int confine_netns(void);
void confine_no_network(void);
void confine_drop_caps(void);
void confine_limits(unsigned long nofile);
scmp_filter_ctx confine_seccomp_init(void);
void confine_seccomp_load(scmp_filter_ctx ctx);

/*
 * ALLOW(ctx, name) - add one syscall to an allowlist. Keep one comment per
 * call at the call site saying why the role needs it.
 */
#define ALLOW(ctx, name) confine_allow((ctx), SCMP_SYS(name), #name)
void confine_allow(scmp_filter_ctx ctx, int nr, const char *name);

/*
 * ALLOW_ARG(ctx, name, cmp...) - add one syscall allowed only when every
 * argument condition holds (SCMP_A0(...), SCMP_A1(...), ...: one rule, the
 * conditions ANDed). Several calls for the same syscall are ORed: one rule
 * per allowed value.
 */
#define ALLOW_ARG(ctx, name, ...)                                                \
	confine_allow_arg((ctx), SCMP_SYS(name), #name,                          \
			  sizeof((const struct scmp_arg_cmp[]){ __VA_ARGS__ }) / \
				  sizeof(struct scmp_arg_cmp),                   \
			  (const struct scmp_arg_cmp[]){ __VA_ARGS__ })
void confine_allow_arg(scmp_filter_ctx ctx, int nr, const char *name, unsigned int n,
		       const struct scmp_arg_cmp *cmp);

/*
 * DENY(ctx, name, err) - make one syscall fail with errno @err instead of
 * killing: for calls a library makes that the role can do without
 * (OpenSSH's sandbox does the same). One comment at the call site says who
 * makes the call and why failing it is safe.
 */
#define DENY(ctx, name, err) confine_deny((ctx), SCMP_SYS(name), #name, (err))
void confine_deny(scmp_filter_ctx ctx, int nr, const char *name, int err);

#endif /* MOAT_CONFINE_H */
