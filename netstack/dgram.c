/* SPDX-License-Identifier: MIT */
/*
 * dgram.c - guest UDP datagrams to and from the proxy
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. UDP does not go through lwIP's udp_input(): lwIP
 * has no wildcard port, and UDP needs no state in the netstack ("flows are
 * the proxy's business", shm/flow.h). A validated guest datagram (guestif.c
 * checked the header and the UDP length against the IP length) becomes one
 * FLOW_DGRAM record on s2p with src = the guest and dst = where it was
 * going, whatever that address is; DHCP to the server port on the gateway
 * or broadcast goes to dhcps.c instead; other broadcast and multicast
 * datagrams are dropped (NOT_FOR_US). When s2p is full the datagram is
 * dropped and counted (RING_FULL): UDP is allowed to lose, TCP never is.
 *
 * The other way, dgram_output() builds the UDP header itself and sends the
 * datagram with lwIP's ip4/ip6_output_if_src() from the remote's address,
 * so lwIP fragments datagrams larger than the MTU and computes checksums.
 */
#include <errno.h>
#include <string.h>

#include "lwip/inet_chksum.h"
#include "lwip/ip.h"
#include "lwip/ip4.h"
#include "lwip/ip6.h"
#include "lwip/prot/ip4.h"
#include "lwip/prot/ip6.h"
#include "netstack/dhcps.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

/**
 * dgram_input() - a UDP datagram from the guest
 * @ns:		netstack
 * @p:		the IP packet (payload at the IP header); not freed here
 * @v6:		IPv6 or IPv4
 * @l4_off:	offset of the UDP header
 */
void dgram_input(struct netstack *ns, struct pbuf *p, bool v6, uint16_t l4_off)
{
	struct flow_dgram d;
	ip_addr_t src, dst;
	uint8_t uh[8];
	uint16_t sport, dport, ulen;

	if (pbuf_copy_partial(p, uh, 8, l4_off) != 8) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		return;
	}
	sport = rd16(uh);
	dport = rd16(uh + 2);
	ulen = rd16(uh + 4);
	if (ulen < 8 || ulen > p->tot_len - l4_off) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		return;
	}
	if (v6) {
		const struct ip6_hdr *h = p->payload;

		ip_addr_copy_from_ip6_packed(src, h->src);
		ip_addr_copy_from_ip6_packed(dst, h->dest);
		if (ip6_addr_ismulticast(ip_2_ip6(&dst))) {
			stack_drop(ns, MOAT_DROP_NOT_FOR_US);
			return;
		}
	} else {
		const struct ip_hdr *h = p->payload;
		uint32_t a = ip4_addr_get_u32(&h->dest);

		ip_addr_copy_from_ip4(src, h->src);
		ip_addr_copy_from_ip4(dst, h->dest);
		if (dport == DHCPS_SERVER_PORT && (a == IPADDR_BROADCAST || a == ns->cfg.gw_ip4)) {
			dhcps_input(ns, p, l4_off, ulen);
			return;
		}
		if (a == IPADDR_BROADCAST || (a | ns->cfg.mask4) == IPADDR_BROADCAST ||
		    ip4_addr_ismulticast(ip_2_ip4(&dst)) || ip4_addr_isany_val(*ip_2_ip4(&src))) {
			stack_drop(ns, MOAT_DROP_NOT_FOR_US);
			return;
		}
	}
	memset(&d, 0, sizeof(d));
	flows_endpoint(&d.src, &src, sport);
	flows_endpoint(&d.dst, &dst, dport);
	if (flows_emit(ns, FLOW_DGRAM, &d, sizeof(d), p, (uint32_t)l4_off + 8, ulen - 8u) < 0)
		stack_drop(ns, MOAT_DROP_RING_FULL);
}

/**
 * dgram_output() - send a UDP datagram to the guest
 * @ns:		netstack
 * @src:	source address (the remote peer, the gateway for DHCP)
 * @sport:	source port
 * @dst:	the guest's address (or broadcast)
 * @dport:	destination port
 * @data:	payload
 * @len:	payload length
 *
 * Return: 0; -EMSGSIZE if it cannot be a UDP datagram; -ENOMEM if lwIP
 * has no memory; -EIO if the frame could not be sent (s2g full).
 */
int dgram_output(struct netstack *ns, const ip_addr_t *src, uint16_t sport, const ip_addr_t *dst,
		 uint16_t dport, const uint8_t *data, uint32_t len)
{
	uint32_t max = IP_IS_V6(dst) ? 0xffffu - 8u : 0xffffu - 8u - IP_HLEN;
	struct pbuf *p;
	uint8_t *u;
	u16_t sum;
	err_t err;

	if (len > max)
		return -EMSGSIZE;
	p = pbuf_alloc(PBUF_IP, (u16_t)(8 + len), PBUF_RAM);
	if (!p)
		return -ENOMEM;
	u = p->payload;
	wr16(u, sport);
	wr16(u + 2, dport);
	wr16(u + 4, (uint16_t)(8 + len));
	wr16(u + 6, 0);
	memcpy(u + 8, data, len);
	sum = ip_chksum_pseudo(p, IP_PROTO_UDP, p->tot_len, src, dst);
	if (sum == 0)
		sum = 0xffff;
	memcpy(u + 6, &sum, 2); /* already in network order */
	err = guestif_output_ip(ns, p, src, dst, 64, IP_PROTO_UDP);
	pbuf_free(p);
	return err == ERR_OK ? 0 : -EIO;
}
