/* SPDX-License-Identifier: MIT */
/*
 * icmpgw.c - ICMP toward the guest: echo, unreachables, IPv6 ND and RA
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack; lwIP's icmp_input()/icmp6_input() never see guest
 * packets (they would answer pings to any address once everything is
 * accepted, DESIGN §6). Instead:
 *   - an echo request to the gateway or DNS address (or the gateway's IPv6
 *     addresses) is answered here (icmp_echo_replies);
 *   - an echo request to any other address becomes a FLOW_ECHO record for
 *     the proxy, which pings for real if the policy allows; its
 *     FLOW_ECHO_REPLY comes back through icmpgw_echo_reply_from_proxy() and
 *     is sent to the guest from the original destination;
 *   - a held SYN whose connect failed with `unreachable` or `timeout` gets
 *     an ICMP host (v6: address) unreachable from the gateway;
 *   - IPv6: Neighbor Solicitations for the gateway's addresses get a
 *     Neighbor Advertisement, Router Solicitations (and the guest's first
 *     frame) a Router Advertisement with the guest's /64 for SLAAC, the MTU
 *     and the on-link flag off, so every destination is reached through us.
 * Everything else the guest sends over ICMP is dropped (PROTOCOL).
 * Packets arrive validated (guestif.c) with the ICMP header present.
 */
#include <errno.h>
#include <string.h>

#include "lwip/inet_chksum.h"
#include "lwip/ip.h"
#include "lwip/ip4.h"
#include "lwip/ip6.h"
#include "lwip/prot/ip4.h"
#include "lwip/prot/ip6.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

#define ICMP4_ECHO_REPLY 0
#define ICMP4_UNREACH	 3
#define ICMP4_ECHO	 8
#define ICMP6_UNREACH	 1
#define ICMP6_ECHO	 128
#define ICMP6_ECHO_REPLY 129
#define ICMP6_RS	 133
#define ICMP6_RA	 134
#define ICMP6_NS	 135
#define ICMP6_NA	 136

/* Send a finished ICMP/ICMPv6 message (checksum field zero) and free it. */
static int send_icmp(struct netstack *ns, struct pbuf *p, const ip_addr_t *src,
		     const ip_addr_t *dst, uint8_t hops)
{
	uint8_t *h = p->payload;
	u16_t sum;
	err_t err;

	if (IP_IS_V6(dst)) {
		sum = ip6_chksum_pseudo(p, IP6_NEXTH_ICMP6, p->tot_len, ip_2_ip6(src),
					ip_2_ip6(dst));
		memcpy(h + 2, &sum, 2);
		err = guestif_output_ip(ns, p, src, dst, hops, IP6_NEXTH_ICMP6);
	} else {
		sum = inet_chksum_pbuf(p);
		memcpy(h + 2, &sum, 2);
		err = guestif_output_ip(ns, p, src, dst, hops, IP_PROTO_ICMP);
	}
	pbuf_free(p);
	return err == ERR_OK ? 0 : -EIO;
}

static struct pbuf *alloc_icmp(uint32_t len)
{
	struct pbuf *p;

	if (len > 0xffffu - IP6_HLEN)
		return NULL;
	p = pbuf_alloc(PBUF_IP, (u16_t)len, PBUF_RAM);
	if (p)
		memset(p->payload, 0, 8 < len ? 8 : len);
	return p;
}

/**
 * icmpgw_send_echo_reply() - send an echo reply to the guest
 * @ns:		netstack
 * @src:	who answers (the address the guest pinged)
 * @dst:	the guest
 * @ident:	echo identifier
 * @seq:	echo sequence number
 * @data:	the request's packet holding the payload, or NULL
 * @data_off:	offset of the payload in @data
 * @bytes:	payload bytes when @data is NULL
 * @len:	payload length
 *
 * Return: 0, -ENOMEM or -EIO.
 */
int icmpgw_send_echo_reply(struct netstack *ns, const ip_addr_t *src, const ip_addr_t *dst,
			   uint16_t ident, uint16_t seq, struct pbuf *data, uint16_t data_off,
			   const uint8_t *bytes, uint32_t len)
{
	struct pbuf *p = alloc_icmp(8 + len);
	uint8_t *h;

	if (!p)
		return -ENOMEM;
	h = p->payload;
	h[0] = IP_IS_V6(dst) ? ICMP6_ECHO_REPLY : ICMP4_ECHO_REPLY;
	wr16(h + 4, ident);
	wr16(h + 6, seq);
	if (data)
		pbuf_copy_partial(data, h + 8, (u16_t)len, data_off);
	else if (len)
		memcpy(h + 8, bytes, len);
	return send_icmp(ns, p, src, dst, 64);
}

static bool is_gateway4(struct netstack *ns, uint32_t a)
{
	return a == ns->cfg.gw_ip4 || a == ns->cfg.dns_ip4;
}

static bool is_gateway6(struct netstack *ns, const ip6_addr_t *a)
{
	return !memcmp(a->addr, ns->cfg.gw_ip6, 16) ||
	       ip6_addr_cmp(a, netif_ip6_addr(&ns->netif, 0));
}

/* Relay an echo request to the proxy; the payload follows the ICMP header. */
static void relay_echo(struct netstack *ns, struct pbuf *p, const ip_addr_t *src,
		       const ip_addr_t *dst, uint16_t ident, uint16_t seq, uint16_t data_off)
{
	struct flow_echo e;

	memset(&e, 0, sizeof(e));
	flows_endpoint(&e.peer, dst, 0);
	flows_endpoint(&e.guest, src, 0);
	e.ident = ident;
	e.seq = seq;
	if (flows_emit(ns, FLOW_ECHO, &e, sizeof(e), p, data_off, p->tot_len - data_off) < 0)
		stack_drop(ns, MOAT_DROP_RING_FULL);
	else
		cnt_add(&ns->cnt->icmp_echo_relayed, 1);
}

/**
 * icmpgw_input4() - an ICMPv4 message from the guest
 * @ns:	netstack
 * @p:	the IPv4 packet (validated, reassembled); not freed here
 */
void icmpgw_input4(struct netstack *ns, struct pbuf *p)
{
	const struct ip_hdr *iph = p->payload;
	uint32_t d = ip4_addr_get_u32(&iph->dest);
	ip_addr_t src, dst;
	uint8_t h[8];

	if (pbuf_copy_partial(p, h, 8, IP_HLEN) != 8) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		return;
	}
	if (h[0] != ICMP4_ECHO || h[1] != 0) {
		stack_drop(ns, MOAT_DROP_PROTOCOL);
		return;
	}
	if (d == IPADDR_BROADCAST || (d | ns->cfg.mask4) == IPADDR_BROADCAST ||
	    ip4_addr_ismulticast(&iph->dest)) {
		stack_drop(ns, MOAT_DROP_NOT_FOR_US);
		return;
	}
	ip_addr_copy_from_ip4(src, iph->src);
	ip_addr_copy_from_ip4(dst, iph->dest);
	if (is_gateway4(ns, d)) {
		if (!icmpgw_send_echo_reply(ns, &dst, &src, rd16(h + 4), rd16(h + 6), p,
					    IP_HLEN + 8, NULL, p->tot_len - IP_HLEN - 8u))
			cnt_add(&ns->cnt->icmp_echo_replies, 1);
		return;
	}
	relay_echo(ns, p, &src, &dst, rd16(h + 4), rd16(h + 6), IP_HLEN + 8);
}

/* Neighbor Advertisement for @target, to @to (or all nodes). */
static void send_na(struct netstack *ns, const ip6_addr_t *target, const ip_addr_t *to,
		    bool solicited)
{
	struct pbuf *p = alloc_icmp(32);
	ip_addr_t src;
	uint8_t *h;

	if (!p)
		return;
	h = p->payload;
	h[0] = ICMP6_NA;
	h[4] = 0x80 | (solicited ? 0x40 : 0) | 0x20; /* router, solicited, override */
	memcpy(h + 8, target->addr, 16);
	h[24] = 2; /* target link-layer address */
	h[25] = 1;
	memcpy(h + 26, ns->cfg.gw_mac, 6);
	ip_addr_copy_from_ip6(src, *target);
	send_icmp(ns, p, &src, to, 255);
}

/**
 * router_advert() - send a Router Advertisement to all nodes
 * @ns:	netstack
 */
static void router_advert(struct netstack *ns)
{
	struct pbuf *p = alloc_icmp(16 + 8 + 8 + 32);
	ip_addr_t src, dst;
	uint8_t *h, *o;

	if (!p)
		return;
	h = p->payload;
	h[0] = ICMP6_RA;
	h[4] = 64;	   /* current hop limit */
	h[5] = 0;	   /* no DHCPv6 */
	wr16(h + 6, 1800); /* router lifetime */
	o = h + 16;
	o[0] = 1; /* source link-layer address */
	o[1] = 1;
	memcpy(o + 2, ns->cfg.gw_mac, 6);
	o += 8;
	o[0] = 5; /* MTU */
	o[1] = 1;
	wr32(o + 4, ns->cfg.mtu);
	o += 8;
	o[0] = 3; /* prefix information */
	o[1] = 4;
	o[2] = 64;
	o[3] = 0x40; /* autonomous; not on-link: all via us */
	wr32(o + 4, 86400);
	wr32(o + 8, 14400);
	memcpy(o + 16, ns->cfg.guest_ip6, 8);
	ip_addr_copy_from_ip6(src, *netif_ip6_addr(&ns->netif, 0));
	IP_ADDR6(&dst, PP_HTONL(0xff020000UL), 0, 0, PP_HTONL(1));
	send_icmp(ns, p, &src, &dst, 255);
}

/**
 * icmpgw_input6() - an ICMPv6 message from the guest
 * @ns:		netstack
 * @p:		the IPv6 packet (validated, reassembled); not freed here
 * @l4_off:	offset of the ICMPv6 header
 */
void icmpgw_input6(struct netstack *ns, struct pbuf *p, uint16_t l4_off)
{
	const struct ip6_hdr *ip6h = p->payload;
	uint16_t len = (uint16_t)(p->tot_len - l4_off);
	ip_addr_t src, dst;
	uint8_t h[24];

	memset(h, 0, sizeof(h));
	pbuf_copy_partial(p, h, len < sizeof(h) ? len : sizeof(h), l4_off);
	ip_addr_copy_from_ip6_packed(src, ip6h->src);
	ip_addr_copy_from_ip6_packed(dst, ip6h->dest);
	switch (h[0]) {
	case ICMP6_ECHO:
		if (len < 8 || h[1]) {
			stack_drop(ns, MOAT_DROP_MALFORMED);
			return;
		}
		if (ip6_addr_ismulticast(ip_2_ip6(&dst))) {
			stack_drop(ns, MOAT_DROP_NOT_FOR_US);
			return;
		}
		if (is_gateway6(ns, ip_2_ip6(&dst))) {
			if (!icmpgw_send_echo_reply(ns, &dst, &src, rd16(h + 4), rd16(h + 6), p,
						    (uint16_t)(l4_off + 8), NULL, len - 8u))
				cnt_add(&ns->cnt->icmp_echo_replies, 1);
			return;
		}
		relay_echo(ns, p, &src, &dst, rd16(h + 4), rd16(h + 6), (uint16_t)(l4_off + 8));
		return;
	case ICMP6_RS:
		if (IP6H_HOPLIM(ip6h) != 255 || len < 8) {
			stack_drop(ns, MOAT_DROP_MALFORMED);
			return;
		}
		router_advert(ns);
		return;
	case ICMP6_NS: {
		ip6_addr_t target;

		if (IP6H_HOPLIM(ip6h) != 255 || len < 24 || h[1]) {
			stack_drop(ns, MOAT_DROP_MALFORMED);
			return;
		}
		memcpy(target.addr, h + 8, 16);
		if (!is_gateway6(ns, &target))
			return; /* DAD for the guest's own address, or not ours */
		if (ip6_addr_isany(ip_2_ip6(&src))) {
			ip_addr_t all;

			IP_ADDR6(&all, PP_HTONL(0xff020000UL), 0, 0, PP_HTONL(1));
			send_na(ns, &target, &all, false);
		} else {
			send_na(ns, &target, &src, true);
		}
		return;
	}
	case ICMP6_NA:
	case ICMP6_RA:
	case 130:
	case 131:
	case 132:
	case 143:	/* MLD */
		return; /* the guest's own announcements */
	default:
		stack_drop(ns, MOAT_DROP_PROTOCOL);
		return;
	}
}

/**
 * icmpgw_guest_seen() - the guest's first frame: advertise the IPv6 router
 * @ns:	netstack
 *
 * A guest whose Router Solicitations went out before moat attached would
 * otherwise wait for its next one.
 */
void icmpgw_guest_seen(struct netstack *ns)
{
	router_advert(ns);
}

/**
 * icmpgw_echo_reply_from_proxy() - FLOW_ECHO_REPLY: the remote answered
 * @ns:		netstack
 * @e:		the message (validated sizes; addresses checked here)
 * @data:	payload
 * @len:	payload length
 *
 * Return: 0 (sent or dropped like a lost ping), -EINVAL for impossible
 * addresses (a violation).
 */
int icmpgw_echo_reply_from_proxy(struct netstack *ns, const struct flow_echo *e,
				 const uint8_t *data, uint32_t len)
{
	ip_addr_t peer, guest;

	if (flows_endpoint_addr(&e->peer, &peer) < 0 ||
	    flows_endpoint_addr(&e->guest, &guest) < 0 || IP_GET_TYPE(&peer) != IP_GET_TYPE(&guest))
		return -EINVAL;
	if (IP_IS_V4(&guest) && ip4_addr_get_u32(ip_2_ip4(&guest)) != ns->cfg.guest_ip4)
		return -EINVAL;
	if (IP_IS_V6(&guest) && ip6_addr_ismulticast(ip_2_ip6(&guest)))
		return -EINVAL;
	if (len > (IP_IS_V6(&guest) ? 0xffffu - 8u : 0xffffu - 8u - IP_HLEN))
		return 0;
	icmpgw_send_echo_reply(ns, &peer, &guest, e->ident, e->seq, NULL, 0, data, len);
	return 0;
}

/**
 * icmpgw_unreachable() - tell the guest its connection attempt cannot succeed
 * @ns:		netstack
 * @orig:	the held packet (payload at the IP header); not freed here
 * @v6:		its family
 */
void icmpgw_unreachable(struct netstack *ns, struct pbuf *orig, bool v6)
{
	uint32_t quote = v6 ? orig->tot_len : IP_HLEN + 8u;
	struct pbuf *p;
	ip_addr_t src, dst;
	uint8_t *h;

	if (v6) {
		const struct ip6_hdr *ip6h = orig->payload;

		if (quote > 1280 - IP6_HLEN - 8)
			quote = 1280 - IP6_HLEN - 8;
		ip_addr_copy_from_ip6_packed(dst, ip6h->src);
		ip_addr_copy_from_ip6(src, *netif_ip6_addr(&ns->netif, 1));
	} else {
		const struct ip_hdr *iph = orig->payload;

		ip_addr_copy_from_ip4(dst, iph->src);
		ip_addr_set_ip4_u32_val(src, ns->cfg.gw_ip4);
	}
	if (quote > orig->tot_len)
		quote = orig->tot_len;
	p = alloc_icmp(8 + quote);
	if (!p)
		return;
	h = p->payload;
	h[0] = v6 ? ICMP6_UNREACH : ICMP4_UNREACH;
	h[1] = v6 ? 3 : 1; /* address / host unreachable */
	pbuf_copy_partial(orig, h + 8, (u16_t)quote, 0);
	send_icmp(ns, p, &src, &dst, 64);
}

/**
 * icmpgw_dgram_unreachable() - the ICMP error a host sent for a guest's UDP
 * flow, as the guest would have got it on a real network
 * @ns:	netstack
 * @m:	the flow (src = the remote, dst = the guest; validated) and the kind
 *
 * The error comes from the remote's address and quotes a datagram of the
 * flow (an IP header and the UDP header, guest to remote), which is what
 * the guest's kernel matches to its socket: a connected socket then fails
 * with ECONNREFUSED (port) or EHOSTUNREACH / ENETUNREACH.
 *
 * Return: 0, or -EINVAL if the flow is not the guest's.
 */
int icmpgw_dgram_unreachable(struct netstack *ns, const struct flow_unreach *m)
{
	static const uint8_t code4[FLOW_UNREACH_KIND_COUNT] = { 3, 1, 0 };
	static const uint8_t code6[FLOW_UNREACH_KIND_COUNT] = { 4, 3, 0 };
	bool v6 = m->src.family == 6;
	uint16_t ihl = v6 ? IP6_HLEN : IP_HLEN;
	ip_addr_t remote, guest;
	struct pbuf *p;
	uint8_t *h, *q;
	u16_t sum;

	if (flows_endpoint_addr(&m->src, &remote) < 0 || flows_endpoint_addr(&m->dst, &guest) < 0)
		return -EINVAL;
	if (v6 ? ip6_addr_ismulticast(ip_2_ip6(&guest)) :
		 ip4_addr_get_u32(ip_2_ip4(&guest)) != ns->cfg.guest_ip4)
		return -EINVAL;
	p = alloc_icmp(8u + ihl + 8u);
	if (!p)
		return 0;
	h = p->payload;
	h[0] = v6 ? ICMP6_UNREACH : ICMP4_UNREACH;
	h[1] = v6 ? code6[m->kind] : code4[m->kind];
	q = h + 8;
	memset(q, 0, ihl + 8u);
	if (v6) {
		q[0] = 0x60;
		wr16(q + 4, 8);
		q[6] = IPPROTO_UDP_;
		q[7] = 64;
		memcpy(q + 8, m->dst.addr, 16);
		memcpy(q + 24, m->src.addr, 16);
	} else {
		q[0] = 0x45;
		wr16(q + 2, IP_HLEN + 8);
		q[8] = 64;
		q[9] = IPPROTO_UDP_;
		memcpy(q + 12, m->dst.addr, 4);
		memcpy(q + 16, m->src.addr, 4);
		sum = inet_chksum(q, IP_HLEN); /* in network order, as stored */
		memcpy(q + 10, &sum, 2);
	}
	wr16(q + ihl, m->dst.port);
	wr16(q + ihl + 2, m->src.port);
	wr16(q + ihl + 4, 8);
	send_icmp(ns, p, &remote, &guest, 64);
	return 0;
}
