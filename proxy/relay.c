/* SPDX-License-Identifier: MIT */
/*
 * relay.c - placeholder relay: reads the configuration and drains s2p.
 * Replaced by the TCP/UDP relay (issue 5).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fds.h"
#include "common/log.h"
#include "proxy/relay.h"
#include "shm/control.h"
#include "shm/flow.h"
#include "shm/mailbox.h"

static uv_poll_t efd_poll, ctl_poll;
static uint8_t rec[FLOW_RECORD_MAX];

static void drain(struct proxy *px)
{
	uint32_t type;
	int n;

	while ((n = ring_pop(&px->s2p, &type, rec, sizeof(rec))) >= 0 || n == -EMSGSIZE)
		;
	ring_release(&px->s2p);
}

static void on_efd(uv_poll_t *h, int status, int events)
{
	struct proxy *px = h->data;
	uint64_t v;

	(void)status;
	(void)events;
	if (read(FD_EFD_PROXY, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	do
		drain(px);
	while (!ring_prepare_sleep(&px->s2p));
}

static void on_ctl(uv_poll_t *h, int status, int events)
{
	char buf[4096];
	ssize_t n = read(FD_CONTROL, buf, sizeof(buf));

	(void)status;
	(void)events;
	if (n == 0) {
		uv_stop(h->loop);
		uv_poll_stop(h);
	}
}

int relay_init(struct proxy *px)
{
	struct region *r = &px->region;

	px->cnt = r->part[MOAT_PART_CNT_PROXY];
	px->mbox = r->part[MOAT_PART_MBOX_PROXY];
	ring_attach(&px->s2p, r->part[MOAT_PART_RING_S2P], region_ring_capacity(r, MOAT_PART_RING_S2P),
		    -1, FD_EFD_NETSTACK, &px->cnt->wakes_sent);
	ring_attach(&px->p2s, r->part[MOAT_PART_RING_P2S], region_ring_capacity(r, MOAT_PART_RING_P2S),
		    FD_EFD_NETSTACK, -1, &px->cnt->wakes_sent);
	efd_poll.data = px;
	ctl_poll.data = px;
	if (uv_poll_init(&px->loop, &efd_poll, FD_EFD_PROXY) < 0 ||
	    uv_poll_init(&px->loop, &ctl_poll, FD_CONTROL) < 0)
		return -1;
	uv_poll_start(&efd_poll, UV_READABLE, on_efd);
	uv_poll_start(&ctl_poll, UV_READABLE, on_ctl);
	ring_prepare_sleep(&px->s2p);
	return 0;
}

void relay_fini(struct proxy *px)
{
	(void)px;
}
