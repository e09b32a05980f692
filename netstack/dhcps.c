/* SPDX-License-Identifier: MIT */
/*
 * dhcps.c - the DHCPv4 server for the guest
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. lwIP has no DHCP server, so the netstack answers
 * the guest's DHCP itself, slirp-style: there is exactly one lease, the
 * guest address from the region header, with the gateway as router and
 * server id, the DNS address, the subnet mask and the interface MTU. The
 * input path (guestif.c -> dgram.c) hands over UDP datagrams to port 67 that are
 * broadcast or addressed to the gateway.
 *
 *   DISCOVER -> OFFER        REQUEST for the guest address -> ACK
 *   REQUEST for anything else, or with a bad server id -> NAK (or silence
 *   when the client picked another server)    INFORM -> ACK without lease
 *   DECLINE, RELEASE -> nothing (the address is fixed)
 *
 * Parsing (dhcps_parse) trusts nothing: the fixed part must be complete,
 * the options must be a well-formed TLV list ending in END within the
 * message, the few options used must have their exact lengths, and option
 * overload (52) is refused rather than followed, so there is nothing to
 * loop on. A malformed message is counted as MOAT_DROP_DHCP and dropped.
 */
#include <errno.h>
#include <string.h>

#include "lwip/ip4_addr.h"
#include "netstack/dhcps.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

#define OPT_PAD	      0
#define OPT_MASK      1
#define OPT_ROUTER    3
#define OPT_DNS	      6
#define OPT_MTU	      26
#define OPT_BCAST     28
#define OPT_REQ_IP    50
#define OPT_LEASE     51
#define OPT_OVERLOAD  52
#define OPT_TYPE      53
#define OPT_SERVER_ID 54
#define OPT_T1	      58
#define OPT_T2	      59
#define OPT_END	      255

static const uint8_t magic[4] = { 99, 130, 83, 99 };

/**
 * dhcps_parse() - parse a client message
 * @d:		the UDP payload (a private copy)
 * @len:	its length
 * @m:		filled in
 *
 * Return: 0 for a client message to act on, 1 for a well-formed message
 * that is not a client request (ignored), -EINVAL if malformed.
 */
int dhcps_parse(const uint8_t *d, size_t len, struct dhcps_msg *m)
{
	size_t i = DHCPS_FIXED_LEN;
	bool seen_type = false;

	memset(m, 0, sizeof(*m));
	if (len < DHCPS_FIXED_LEN + 1 || len > DHCPS_MAX_MSG)
		return -EINVAL;
	if (memcmp(d + 236, magic, 4))
		return -EINVAL;
	if (d[1] != 1 || d[2] != 6) /* Ethernet, 6-byte addresses */
		return -EINVAL;
	memcpy(m->xid, d + 4, 4);
	m->flags = rd16(d + 10);
	memcpy(m->ciaddr, d + 12, 4);
	memcpy(m->giaddr, d + 24, 4);
	memcpy(m->chaddr, d + 28, 6);
	for (;;) {
		uint8_t code, olen;
		const uint8_t *v;

		if (i >= len)
			return -EINVAL; /* no END option */
		code = d[i];
		if (code == OPT_PAD) {
			i++;
			continue;
		}
		if (code == OPT_END)
			break;
		if (i + 2 > len)
			return -EINVAL;
		olen = d[i + 1];
		if (i + 2 + olen > len)
			return -EINVAL; /* option runs past the message */
		v = d + i + 2;
		switch (code) {
		case OPT_TYPE:
			if (olen != 1 || seen_type || v[0] < DHCPS_DISCOVER || v[0] > DHCPS_INFORM)
				return -EINVAL;
			m->type = v[0];
			seen_type = true;
			break;
		case OPT_REQ_IP:
			if (olen != 4)
				return -EINVAL;
			memcpy(m->req_ip, v, 4);
			m->has_req_ip = true;
			break;
		case OPT_SERVER_ID:
			if (olen != 4)
				return -EINVAL;
			memcpy(m->server_id, v, 4);
			m->has_server_id = true;
			break;
		case OPT_OVERLOAD:
			return -EINVAL; /* options in sname/file: not followed */
		default:
			break;
		}
		i += 2 + (size_t)olen;
	}
	if (!seen_type)
		return -EINVAL;
	if (d[0] != 1) /* BOOTREPLY from the guest: not ours to answer */
		return 1;
	return 0;
}

/**
 * dhcps_decide() - which reply a client message gets
 * @l:	the lease
 * @m:	the parsed message
 *
 * Return: DHCPS_OFFER, DHCPS_ACK, DHCPS_NAK, or 0 for no reply.
 */
int dhcps_decide(const struct dhcps_lease *l, const struct dhcps_msg *m)
{
	const uint8_t *want;

	switch (m->type) {
	case DHCPS_DISCOVER:
		return DHCPS_OFFER;
	case DHCPS_REQUEST:
		if (m->has_server_id && memcmp(m->server_id, l->server, 4))
			return 0; /* the client chose another server */
		want = m->has_req_ip ? m->req_ip : m->ciaddr;
		return memcmp(want, l->ip, 4) ? DHCPS_NAK : DHCPS_ACK;
	case DHCPS_INFORM:
		return DHCPS_ACK;
	default:
		return 0;
	}
}

static uint8_t *opt(uint8_t *o, uint8_t code, const void *v, uint8_t len)
{
	o[0] = code;
	o[1] = len;
	memcpy(o + 2, v, len);
	return o + 2 + len;
}

static uint8_t *opt32(uint8_t *o, uint8_t code, uint32_t v)
{
	uint8_t b[4];

	wr32(b, v);
	return opt(o, code, b, 4);
}

/**
 * dhcps_build() - write a reply
 * @l:		the lease
 * @m:		the client's message
 * @type:	DHCPS_OFFER, DHCPS_ACK or DHCPS_NAK
 * @out:	buffer for the UDP payload
 * @outsz:	its size, at least DHCPS_REPLY_MAX
 *
 * Return: payload length, or 0 if @outsz is too small.
 */
size_t dhcps_build(const struct dhcps_lease *l, const struct dhcps_msg *m, int type, uint8_t *out,
		   size_t outsz)
{
	bool inform = m->type == DHCPS_INFORM;
	uint8_t t = (uint8_t)type, *o, bcast[4];
	size_t len;

	if (outsz < DHCPS_REPLY_MAX)
		return 0;
	memset(out, 0, DHCPS_REPLY_MAX);
	out[0] = 2; /* BOOTREPLY */
	out[1] = 1;
	out[2] = 6;
	memcpy(out + 4, m->xid, 4);
	wr16(out + 10, m->flags);
	if (type != DHCPS_NAK) {
		memcpy(out + 12, m->ciaddr, 4);
		if (!inform)
			memcpy(out + 16, l->ip, 4);
	}
	memcpy(out + 24, m->giaddr, 4);
	memcpy(out + 28, m->chaddr, 6);
	memcpy(out + 236, magic, 4);
	o = out + DHCPS_FIXED_LEN;
	o = opt(o, OPT_TYPE, &t, 1);
	o = opt(o, OPT_SERVER_ID, l->server, 4);
	if (type != DHCPS_NAK) {
		uint8_t mtu[2];

		if (!inform) {
			o = opt32(o, OPT_LEASE, l->lease_s);
			o = opt32(o, OPT_T1, l->lease_s / 2);
			o = opt32(o, OPT_T2, l->lease_s / 8 * 7);
		}
		o = opt(o, OPT_MASK, l->mask, 4);
		o = opt(o, OPT_ROUTER, l->router, 4);
		o = opt(o, OPT_DNS, l->dns, 4);
		for (int i = 0; i < 4; i++)
			bcast[i] = (uint8_t)(l->ip[i] | (uint8_t)~l->mask[i]);
		o = opt(o, OPT_BCAST, bcast, 4);
		wr16(mtu, l->mtu);
		o = opt(o, OPT_MTU, mtu, 2);
	}
	*o++ = OPT_END;
	len = (size_t)(o - out);
	return len < 300 ? 300 : len; /* BOOTP's minimum message size */
}

/**
 * dhcps_input() - answer a DHCP message from the guest
 * @ns:		netstack
 * @p:		the IPv4 packet (payload at the IP header; not freed here)
 * @udp_off:	offset of the UDP header in @p
 * @udp_len:	UDP length (header included), validated
 */
void dhcps_input(struct netstack *ns, struct pbuf *p, uint16_t udp_off, uint16_t udp_len)
{
	static uint8_t msg[DHCPS_MAX_MSG], reply[DHCPS_REPLY_MAX];
	struct dhcps_lease l;
	struct dhcps_msg m;
	ip_addr_t src, dst;
	size_t n, rlen;
	int rc, type;

	n = (size_t)udp_len - 8;
	if (n > sizeof(msg)) {
		stack_drop(ns, MOAT_DROP_DHCP);
		return;
	}
	if (pbuf_copy_partial(p, msg, (u16_t)n, (u16_t)(udp_off + 8)) != n) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		return;
	}
	rc = dhcps_parse(msg, n, &m);
	if (rc < 0) {
		stack_drop(ns, MOAT_DROP_DHCP);
		return;
	}
	if (rc > 0)
		return;
	memset(&l, 0, sizeof(l));
	memcpy(l.ip, &ns->cfg.guest_ip4, 4);
	memcpy(l.mask, &ns->cfg.mask4, 4);
	memcpy(l.router, &ns->cfg.gw_ip4, 4);
	memcpy(l.dns, &ns->cfg.dns_ip4, 4);
	memcpy(l.server, &ns->cfg.gw_ip4, 4);
	l.lease_s = 86400;
	l.mtu = (uint16_t)ns->cfg.mtu;
	type = dhcps_decide(&l, &m);
	if (!type)
		return;
	rlen = dhcps_build(&l, &m, type, reply, sizeof(reply));
	if (!rlen)
		return;
	ip_addr_set_ip4_u32_val(src, ns->cfg.gw_ip4);
	if (type == DHCPS_NAK || (m.flags & 0x8000))
		ip_addr_set_ip4_u32_val(dst, IPADDR_BROADCAST);
	else if (rd32(m.ciaddr)) {
		uint32_t ci;

		memcpy(&ci, m.ciaddr, 4);
		ip_addr_set_ip4_u32_val(dst, ci);
	} else
		ip_addr_set_ip4_u32_val(dst, ns->cfg.guest_ip4);
	if (dgram_output(ns, &src, DHCPS_SERVER_PORT, &dst, DHCPS_CLIENT_PORT, reply,
			 (uint32_t)rlen) < 0)
		return;
	if (type == DHCPS_OFFER)
		cnt_add(&ns->cnt->dhcp_offers, 1);
	else if (type == DHCPS_ACK)
		cnt_add(&ns->cnt->dhcp_acks, 1);
	else
		cnt_add(&ns->cnt->dhcp_naks, 1);
}
