/* SPDX-License-Identifier: MIT */
/*
 * fds.h - the fixed descriptor numbers a re-executed child is handed
 *
 * As OpenBSD's privilege-separated daemons do, the supervisor puts each
 * channel at a known number before exec; a child closes everything above
 * FD_LAST at start.
 */
#ifndef MOAT_FDS_H
#define MOAT_FDS_H

enum {
	FD_REGION = 3,		/* the memfd */
	FD_EFD_SUPERVISOR,	/* supervisor's wake eventfd (violations, child events) */
	FD_EFD_GUEST,		/* guest port's eventfd (s2g data, g2s space) */
	FD_EFD_NETSTACK,	/* netstack's eventfd (g2s, p2s data; s2g, s2p space) */
	FD_EFD_PROXY,		/* proxy's eventfd (s2p data, p2s space) */
	FD_CONTROL,		/* proxy only: socketpair to the supervisor (config, reloads) */
	FD_LAST = FD_CONTROL
};

#endif /* MOAT_FDS_H */
