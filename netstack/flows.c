/* SPDX-License-Identifier: MIT */
/*
 * flows.c - the netstack's side of the flow protocol (shm/flow.h)
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. flows_emit() writes one record to s2p (a header
 * struct plus bytes taken straight from a pbuf chain); when s2p is full it
 * says so and marks s2p blocked, and the caller keeps what it owes (conn.c)
 * or drops a datagram (dgram.c, icmpgw.c).
 *
 * flows_poll() drains p2s. The proxy is less trusted than the netstack's
 * own state: every record is looked at through ring_peek(), its fixed
 * header is copied out before it is read, and it must have the exact size
 * of its type (DATA/DGRAM/ECHO_REPLY: header plus 1..FLOW_DATA_MAX bytes),
 * a type the proxy may send, ids in the right half of the id space and
 * fields in range. Anything else - or a corrupt ring - is a violation:
 * reported to the supervisor through the mailbox, and the netstack stops.
 * Payload bytes are not parsed, only copied (by tcp_write or into a pbuf),
 * so they are used in place. Messages for unknown or dead ids are ignored.
 *
 * Backpressure: a record that needs s2g room (a datagram or an echo reply
 * for the guest) waits in the ring until the guest port has drained s2g; a
 * DATA record lwIP could not take in full (its memory is exhausted) waits
 * too, with the part already written remembered, and is retried shortly.
 * Either way the proxy sees p2s fill up; nothing is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "lwip/ip_addr.h"
#include "lwip/sys.h"
#include "netstack/stack.h"
#include "shm/flowmsg.h"

#define MEM_RETRY_MS 10

/**
 * flows_endpoint() - fill a flow endpoint from an lwIP address
 * @e:		endpoint
 * @a:		address
 * @port:	port (host order)
 */
void flows_endpoint(struct flow_endpoint *e, const ip_addr_t *a, uint16_t port)
{
	memset(e, 0, sizeof(*e));
	e->port = port;
	if (IP_IS_V6(a)) {
		e->family = 6;
		memcpy(e->addr, ip_2_ip6(a)->addr, 16);
	} else {
		e->family = 4;
		memcpy(e->addr, &ip_2_ip4(a)->addr, 4);
	}
}

/**
 * flows_endpoint_addr() - an lwIP address from a flow endpoint
 * @e:	endpoint (from the proxy)
 * @a:	filled in
 *
 * Return: 0, or -EINVAL for an unknown family or an address the guest
 * could never have been talking to (unspecified, multicast source, loopback).
 */
int flows_endpoint_addr(const struct flow_endpoint *e, ip_addr_t *a)
{
	if (e->family == 4) {
		uint32_t v;

		memcpy(&v, e->addr, 4);
		ip_addr_set_ip4_u32_val(*a, v);
		return ip4_addr_isany_val(*ip_2_ip4(a)) || ip4_addr_isloopback(ip_2_ip4(a)) ?
			       -EINVAL :
			       0;
	}
	if (e->family == 6) {
		ip6_addr_t v;

		memcpy(v.addr, e->addr, 16);
		ip_addr_copy_from_ip6(*a, v);
		return ip6_addr_isany(&v) || ip6_addr_isloopback(&v) ? -EINVAL : 0;
	}
	return -EINVAL;
}

/**
 * flows_emit() - write one flow message to s2p
 * @ns:		netstack
 * @type:	enum flow_msg
 * @hdr:	the message struct
 * @hdrlen:	its size
 * @p:		pbuf chain holding payload bytes, or NULL
 * @off:	offset of the payload in @p
 * @len:	payload length (0 if none)
 *
 * Return: 0; -ENOBUFS if s2p is full (ns->s2p_blocked set); -EBADMSG if
 * s2p is corrupt (a violation was reported).
 */
int flows_emit(struct netstack *ns, uint32_t type, const void *hdr, uint32_t hdrlen, struct pbuf *p,
	       uint32_t off, uint32_t len)
{
	uint8_t *rec;
	void *r;
	int rc;

	rc = ring_reserve(&ns->s2p, hdrlen + len, &r);
	if (rc == -ENOBUFS) {
		ns->s2p_blocked = true;
		return rc;
	}
	if (rc == -EBADMSG) {
		stack_violation(ns, MOAT_VIOL_RING_CORRUPT, 0, "s2p ring corrupt");
		return rc;
	}
	if (rc < 0)
		return rc;
	rec = r;
	memcpy(rec, hdr, hdrlen);
	if (len)
		pbuf_copy_partial(p, rec + hdrlen, (u16_t)len, (u16_t)off);
	ring_commit(&ns->s2p, type, hdrlen + len);
	return 0;
}

/*
 * Room a datagram of @len bytes needs in s2g, fragments and headers
 * included; at most half the ring, so that a small ring cannot stall p2s
 * for good (the rest of such a datagram may then be lost, as UDP may).
 */
static size_t s2g_need(const struct netstack *ns, uint32_t len)
{
	uint32_t per = ns->cfg.mtu > 100 ? ns->cfg.mtu - 60 : 40;
	size_t need = len + (len / per + 1) * 128u;

	return need > ns->s2g.cap / 2 ? ns->s2g.cap / 2 : need;
}

static void bad(struct netstack *ns, uint32_t id, const char *what)
{
	log_error("bad message from the proxy: %s (flow %u)", what, id);
	stack_violation(ns, MOAT_VIOL_BAD_MESSAGE, id, what);
}

enum { DISP_DONE, DISP_WAIT, DISP_BAD };

/* s2g has no room for a frame of @len payload bytes: wait until it has. */
static int s2g_wait(struct netstack *ns, uint32_t len)
{
	ns->p2s_paused = true;
	ns->p2s_need_s2g = (uint32_t)s2g_need(ns, len);
	return DISP_WAIT;
}

/* A DGRAM for the guest: to the guest's own address (v4) or not multicast (v6). */
static int dgram_dispatch(struct netstack *ns, const struct flow_dgram *m, const uint8_t *data,
			  uint32_t len)
{
	ip_addr_t src, dst;

	if (flows_endpoint_addr(&m->src, &src) < 0 || flows_endpoint_addr(&m->dst, &dst) < 0 ||
	    (m->dst.family == 4 && ip4_addr_get_u32(ip_2_ip4(&dst)) != ns->cfg.guest_ip4) ||
	    (m->dst.family == 6 && ip6_addr_ismulticast(ip_2_ip6(&dst))))
		return bad(ns, 0, "DGRAM addresses"), DISP_BAD;
	if (!guestif_s2g_room(ns, s2g_need(ns, len)))
		return s2g_wait(ns, len);
	dgram_output(ns, &src, m->src.port, &dst, m->dst.port, data, len);
	return DISP_DONE;
}

static int dispatch(struct netstack *ns, uint32_t type, const uint8_t *rec, uint32_t n)
{
	union flowmsg m;
	uint32_t hl, len;
	const char *why;

	if (flowmsg_check(FLOWMSG_P2S, type, rec, n, &m, &hl, &why) < 0) {
		char what[48];

		snprintf(what, sizeof(what), "%s %s", flowmsg_name(type), why);
		return bad(ns, 0, what), DISP_BAD;
	}
	rec += hl;
	len = n - hl;
	switch (type) {
	case FLOW_CONNECT_RESULT:
		connopen_result(ns, &m.result);
		return DISP_DONE;
	case FLOW_DATA: {
		uint32_t taken;
		int rc;

		if (ns->p2s_skip >= len)
			return bad(ns, m.data.id, "DATA field"), DISP_BAD;
		rc = conn_data(ns, m.data.id, rec + ns->p2s_skip, len - ns->p2s_skip, &taken);
		if (rc == -EINVAL)
			return bad(ns, m.data.id, "DATA beyond the credit given"), DISP_BAD;
		if (rc == -EAGAIN) {
			ns->p2s_skip += taken;
			ns->p2s_paused = true;
			ns->p2s_retry_ms = sys_now() + MEM_RETRY_MS;
			return DISP_WAIT;
		}
		return DISP_DONE;
	}
	case FLOW_CREDIT:
		if (!m.credit.bytes || conn_credit(ns, &m.credit) < 0)
			return bad(ns, m.credit.id, "CREDIT for bytes never sent"), DISP_BAD;
		return DISP_DONE;
	case FLOW_SHUT_WR:
		if (conn_shut(ns, m.shut.id) < 0)
			return bad(ns, m.shut.id, "SHUT_WR before the connection"), DISP_BAD;
		return DISP_DONE;
	case FLOW_CLOSE:
		conn_close(ns, &m.close);
		return DISP_DONE;
	case FLOW_DGRAM:
		return dgram_dispatch(ns, &m.dgram, rec, len);
	case FLOW_UNREACH:
		if (!guestif_s2g_room(ns, 128))
			return s2g_wait(ns, 64);
		if (icmpgw_dgram_unreachable(ns, &m.unreach) < 0)
			return bad(ns, 0, "UNREACH addresses"), DISP_BAD;
		return DISP_DONE;
	case FLOW_ECHO_REPLY:
		if (!guestif_s2g_room(ns, s2g_need(ns, len)))
			return s2g_wait(ns, len);
		if (icmpgw_echo_reply_from_proxy(ns, &m.echo, rec, len) < 0)
			return bad(ns, 0, "ECHO_REPLY addresses"), DISP_BAD;
		return DISP_DONE;
	default: /* FLOW_ACCEPTED: flowmsg_check() lets no other type through */
		if (connopen_accepted(ns, &m.connect) < 0)
			return bad(ns, m.connect.id, "ACCEPTED for a live id"), DISP_BAD;
		return DISP_DONE;
	}
}

/**
 * flows_poll() - handle messages from the proxy
 * @ns:		netstack
 * @budget:	at most this many; ns->more is set if some are left
 */
void flows_poll(struct netstack *ns, unsigned budget)
{
	if (ns->p2s_paused) {
		if (ns->p2s_need_s2g && !guestif_s2g_room(ns, ns->p2s_need_s2g))
			return;
		if (!ns->p2s_need_s2g && (int32_t)(sys_now() - ns->p2s_retry_ms) < 0)
			return;
		ns->p2s_paused = false;
		ns->p2s_need_s2g = 0;
	}
	while (budget-- && !ns->violation) {
		const uint8_t *rec;
		uint32_t type;
		int n, rc;

		n = ring_peek(&ns->p2s, &type, &rec);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			stack_violation(ns, MOAT_VIOL_RING_CORRUPT, 0, "p2s ring corrupt");
			return;
		}
		rc = dispatch(ns, type, rec, (uint32_t)n);
		if (rc != DISP_DONE)
			return;
		ns->p2s_skip = 0;
		ring_consume(&ns->p2s);
	}
	ns->more = true;
}
