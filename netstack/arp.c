/* SPDX-License-Identifier: MIT */
/*
 * arp.c - ARP replies for the gateway and DNS addresses, and the one request
 * the netstack makes
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack, called by guestif.c for ARP frames that passed
 * frame_check() (Ethernet/IPv4 ARP, complete) and anti-spoofing. The guest
 * reaches every address through the gateway, so the netstack answers
 * requests for exactly two addresses, the gateway's and the DNS server's,
 * both with the gateway MAC from the header. Everything else - requests for
 * other addresses, the guest's probes and announcements, replies - is
 * ignored. The netstack learns the guest's MAC from its first frame and
 * asks for it only when it must send before the guest spoke
 * (guestif.c's mac_unknown(), through arp_build()). lwIP's own ARP is
 * compiled out.
 */
#include <string.h>

#include "netstack/frame.h"
#include "netstack/stack.h"

/**
 * arp_build() - an Ethernet/IPv4 ARP message from the gateway
 * @ns:		netstack (the gateway's MAC is the sender's)
 * @a:		28 bytes to fill
 * @op:		1 request, 2 reply
 * @spa:	sender protocol address (4 bytes)
 * @tha:	target MAC (6 bytes; zeros in a request)
 * @tpa:	target protocol address (4 bytes)
 */
void arp_build(const struct netstack *ns, uint8_t a[28], uint16_t op, const void *spa,
	       const uint8_t *tha, const void *tpa)
{
	wr16(a, 1);
	wr16(a + 2, ETHTYPE_IP4);
	a[4] = 6;
	a[5] = 4;
	wr16(a + 6, op);
	memcpy(a + 8, ns->cfg.gw_mac, 6);
	memcpy(a + 14, spa, 4);
	memcpy(a + 18, tha, 6);
	memcpy(a + 24, tpa, 4);
}

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
	arp_build(ns, r, 2, a + 24 /* the address asked for */, a + 8 /* the asker */, a + 14);
	if (guestif_send_frame(ns, a + 8, ETHTYPE_ARP, r, sizeof(r)) == 0)
		cnt_add(&ns->cnt->arp_replies, 1);
}
