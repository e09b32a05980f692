/* SPDX-License-Identifier: MIT */
/*
 * relay.h - the proxy's state and the interface between proxy.c and the
 * relay code (flows, sockets, DNS). Private to proxy/.
 */
#ifndef MOAT_RELAY_H
#define MOAT_RELAY_H

#include <stdbool.h>
#include <uv.h>

#include "shm/region.h"
#include "shm/ring.h"

struct policy;

/**
 * struct proxy - everything the proxy process owns
 * @region:	its view of the shared region
 * @loop:	the libuv loop
 * @s2p, @p2s:	flow rings (consumer, producer)
 * @cnt:	counters
 * @mbox:	violation mailbox
 * @policy:	the policy in force (replaced on reload)
 * @priv:	relay state
 */
struct proxy {
	struct region region;
	uv_loop_t loop;
	struct ring s2p, p2s;
	struct moat_proxy_counters *cnt;
	struct moat_mailbox *mbox;
	struct policy *policy;
	bool violation;
	void *priv;
};

int relay_init(struct proxy *px);
void relay_fini(struct proxy *px);

#endif /* MOAT_RELAY_H */
