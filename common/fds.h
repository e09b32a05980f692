/* SPDX-License-Identifier: MIT */
/*
 * fds.h - the fixed descriptor numbers a re-executed child is handed
 *
 * As OpenBSD's privilege-separated daemons do, the supervisor puts each
 * channel at a known number before exec; a child closes everything above
 * the last one it is handed at start. Standard input and output are
 * /dev/null; standard error is a pipe the supervisor drains into its own
 * log, so a child never writes a file (RLIMIT_FSIZE is 0).
 *
 * The role is started as "moat-ROLE __ROLE SUPERVISOR_PID": the child sets
 * PR_SET_PDEATHSIG and exits at once if its parent is no longer that pid
 * (the supervisor died between fork and prctl).
 */
#ifndef MOAT_FDS_H
#define MOAT_FDS_H

enum {
	FD_REGION = 3,	   /* the memfd; closed by the child once its parts are mapped */
	FD_EFD_SUPERVISOR, /* supervisor's wake eventfd (violations, child events) */
	FD_EFD_GUEST,	   /* guest port's eventfd (s2g data, g2s space) */
	FD_EFD_NETSTACK,   /* netstack's eventfd (g2s, p2s data; s2g, s2p space) */
	FD_EFD_PROXY,	   /* proxy's eventfd (s2p data, p2s space) */
	FD_LIFELINE,	   /* read end of a pipe only the supervisor can write: POLLHUP = it died */
	FD_CONTROL,	   /* proxy only: socketpair to the supervisor (common/channel.h) */
	FD_PROXY_TLS, /* proxy only: the seqpacket channel to moat-tls (/dev/null without it) */
	FD_VHOST_LISTEN = FD_CONTROL, /* moat-vhost only: the socket bound on vhost-user:PATH */
	FD_TLS_CHANNEL = FD_CONTROL,  /* moat-tls only: the seqpacket channel to the proxy */
	FD_TLS_CONFIG = FD_PROXY_TLS, /* moat-tls only: its configuration and the secrets (a pipe) */
	FD_TLS_SUPERVISOR, /* moat-tls only: seqpacket to the supervisor: offers, files, replies */
	FD_LAST_NETSTACK = FD_LIFELINE,
	FD_LAST_PROXY = FD_PROXY_TLS,
	FD_LAST_VHOST = FD_VHOST_LISTEN,
	FD_LAST_TLS = FD_TLS_SUPERVISOR,
};

#endif /* MOAT_FDS_H */
