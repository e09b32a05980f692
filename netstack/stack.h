/* SPDX-License-Identifier: MIT */
/*
 * stack.h - the netstack's state and the interface between its loop
 * (netstack.c) and the protocol code (lwIP glue, DHCP, TCP/UDP flows).
 * Private to netstack/.
 */
#ifndef MOAT_STACK_H
#define MOAT_STACK_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/region.h"
#include "shm/ring.h"

/**
 * struct netstack - everything the netstack process owns
 * @region:	its view of the shared region
 * @g2s, @s2g:	frame rings (consumer, producer)
 * @s2p, @p2s:	flow rings (producer, consumer)
 * @cnt:	its counter block
 * @mbox:	its violation mailbox
 * @violation:	set once a violation was reported; the loop stops
 * @priv:	protocol state (stack.c)
 */
struct netstack {
	struct region region;
	struct ring g2s, s2g, s2p, p2s;
	struct moat_netstack_counters *cnt;
	struct moat_mailbox *mbox;
	bool violation;
	void *priv;
};

int stack_init(struct netstack *ns);
void stack_poll(struct netstack *ns);
uint32_t stack_prepare_sleep(struct netstack *ns);
void stack_wake(struct netstack *ns);

#endif /* MOAT_STACK_H */
