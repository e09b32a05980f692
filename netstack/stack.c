/* SPDX-License-Identifier: MIT */
/*
 * stack.c - placeholder protocol layer: attaches the rings and drains them.
 * Replaced by the lwIP glue (issue 4).
 */
#include <errno.h>
#include <stdlib.h>

#include "common/fds.h"
#include "common/log.h"
#include "netstack/stack.h"
#include "shm/mailbox.h"

static uint8_t frame[65536 + 64];

int stack_init(struct netstack *ns)
{
	struct region *r = &ns->region;

	ns->cnt = r->part[MOAT_PART_CNT_NETSTACK];
	ns->mbox = r->part[MOAT_PART_MBOX_NETSTACK];
	ring_attach(&ns->g2s, r->part[MOAT_PART_RING_G2S], region_ring_capacity(r, MOAT_PART_RING_G2S),
		    -1, FD_EFD_GUEST, &ns->cnt->wakes_sent);
	ring_attach(&ns->s2g, r->part[MOAT_PART_RING_S2G], region_ring_capacity(r, MOAT_PART_RING_S2G),
		    FD_EFD_GUEST, -1, &ns->cnt->wakes_sent);
	ring_attach(&ns->s2p, r->part[MOAT_PART_RING_S2P], region_ring_capacity(r, MOAT_PART_RING_S2P),
		    FD_EFD_PROXY, -1, &ns->cnt->wakes_sent);
	ring_attach(&ns->p2s, r->part[MOAT_PART_RING_P2S], region_ring_capacity(r, MOAT_PART_RING_P2S),
		    -1, FD_EFD_PROXY, &ns->cnt->wakes_sent);
	return 0;
}

static void corrupt(struct netstack *ns, const char *which)
{
	struct mailbox_report rep = { .reason = MOAT_VIOL_RING_CORRUPT, .rule = -1, .proto = 0xff,
				      .detail = which };

	mailbox_post(ns->mbox, FD_EFD_SUPERVISOR, &rep);
	ns->violation = true;
}

void stack_poll(struct netstack *ns)
{
	uint32_t type;
	int n;

	while ((n = ring_pop(&ns->g2s, &type, frame, sizeof(frame))) >= 0 || n == -EMSGSIZE)
		;
	if (n == -EBADMSG)
		corrupt(ns, "g2s ring corrupt");
	ring_release(&ns->g2s);
	while ((n = ring_pop(&ns->p2s, &type, frame, sizeof(frame))) >= 0 || n == -EMSGSIZE)
		;
	if (n == -EBADMSG)
		corrupt(ns, "p2s ring corrupt");
	ring_release(&ns->p2s);
}

uint32_t stack_prepare_sleep(struct netstack *ns)
{
	if (!ring_prepare_sleep(&ns->g2s))
		return 0;
	if (!ring_prepare_sleep(&ns->p2s)) {
		ring_cancel_sleep(&ns->g2s);
		return 0;
	}
	return UINT32_MAX;
}

void stack_wake(struct netstack *ns)
{
	ring_cancel_sleep(&ns->g2s);
	ring_cancel_sleep(&ns->p2s);
}
