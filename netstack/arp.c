/* SPDX-License-Identifier: MIT */
/*
 * arp.c - ARP replies for the gateway and DNS addresses
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack, called by guestif.c for ARP frames that passed
 * frame_check() (Ethernet/IPv4 ARP, complete) and anti-spoofing. The guest
 * reaches every address through the gateway, so the netstack answers
 * requests for exactly two addresses, the gateway's and the DNS server's,
 * both with the gateway MAC from the header. Everything else - requests for
 * other addresses, the guest's probes and announcements, replies - is
 * ignored; the netstack never asks (it learns the guest's MAC from its
 * first frame). lwIP's own ARP is compiled out.
 */
#include <string.h>

#include "netstack/frame.h"
#include "netstack/stack.h"

/**
 * arp_input() - answer an ARP request if it is for one of our addresses
 * @ns:		netstack
 * @frame:	the whole Ethernet frame (validated)
 * @len:	its length
 */
void arp_input(struct netstack *ns, const uint8_t *frame, size_t len)
{
	const uint8_t *a = frame + ETH_HLEN;
	uint8_t r[28];

	if (len < ETH_HLEN + 28 || rd16(a + 6) != 1)
		return;
	if (memcmp(a + 24, &ns->cfg.gw_ip4, 4) && memcmp(a + 24, &ns->cfg.dns_ip4, 4))
		return;
	/* A probe (sender 0.0.0.0) for our address still gets a reply: it is ours. */
	wr16(r, 1);
	wr16(r + 2, ETHTYPE_IP4);
	r[4] = 6;
	r[5] = 4;
	wr16(r + 6, 2);
	memcpy(r + 8, ns->cfg.gw_mac, 6);
	memcpy(r + 14, a + 24, 4); /* the address asked for */
	memcpy(r + 18, a + 8, 6);  /* the asker */
	memcpy(r + 24, a + 14, 4);
	if (guestif_send_frame(ns, a + 8, ETHTYPE_ARP, r, sizeof(r)) == 0)
		cnt_add(&ns->cnt->arp_replies, 1);
}
