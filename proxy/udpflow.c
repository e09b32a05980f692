/* SPDX-License-Identifier: MIT */
/*
 * udpflow.c - the proxy's UDP flows
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. The netstack hands every guest datagram to us as
 * DGRAM(src = guest, dst = remote); the ones for the DNS address's port 53
 * go to the forwarder (dnsfwd.c) instead. A flow is the pair (guest
 * address and port, remote address and port); the first datagram of a
 * flow is decided by the policy (with the pinned DNS names), checked
 * against the limits (the region header's max_udp_flows and the policy's
 * max_udp_flows and connection rate), and then gets its own connected
 * socket, so only the remote's answers come back and the kernel picks a
 * random source port. Later datagrams of the flow are sent without
 * another decision; a denied flow is remembered (bounded) so that its
 * datagrams are dropped and counted without an event each, and decided
 * anew after a policy reload.
 *
 * Answers are received straight into the p2s ring as DGRAM(src = the
 * remote as the guest addressed it, dst = the guest); when the ring is
 * full the socket stops being read until the netstack frees space (the
 * kernel's buffer then drops, as UDP may). The gateway address means the
 * host: such flows are sent to 127.0.0.1 / ::1, answers still come from
 * the gateway address. Flows expire after the header's udp_idle_timeout_s
 * without traffic either way.
 *
 * ICMP errors: each flow's socket has IP_RECVERR (IPV6_RECVERR), so a port,
 * host or network unreachable the remote's side sends lands in its error
 * queue; libuv reports it as a failed receive, and drain_errors() reads the
 * queue empty and hands each error to the netstack as UNREACH, which sends
 * the guest the same ICMP error from the remote (a connected UDP socket in
 * the guest then fails with ECONNREFUSED, as on a real network).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <time.h> /* linux/errqueue.h needs struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"

#define UDP_BUCKETS	   1024
#define UDP_DENIED_MAX	   1024 /* remembered denied flows */
#define UDP_IDLE_DEFAULT_S 60

struct udp_flow {
	struct proxy *px;
	struct flow_endpoint guest, remote;
	struct udp_flow *hnext;
	struct list_head all;
	struct relay_waiter waiter;
	uv_udp_t sock;
	bool denied, sock_open, receiving, closed;
	int rule; /* the rule that allowed it (-1: default) */
	uint64_t last_ms, generation;
	uint64_t born_ms, tx_bytes, rx_bytes; /* for the API's GET /flows */
};

struct udp_state {
	struct udp_flow *hash[UDP_BUCKETS];
	struct list_head all, denied;
	uint64_t active, n_denied;
};

static uint32_t key_hash(const struct flow_endpoint *a, const struct flow_endpoint *b)
{
	uint32_t h = 2166136261u;
	const struct flow_endpoint *e[2] = { a, b };

	for (int k = 0; k < 2; k++) {
		h = (h ^ e[k]->family) * 16777619u;
		h = (h ^ (e[k]->port & 0xff)) * 16777619u;
		h = (h ^ (e[k]->port >> 8)) * 16777619u;
		for (int i = 0; i < (e[k]->family == 4 ? 4 : 16); i++)
			h = (h ^ e[k]->addr[i]) * 16777619u;
	}
	return h & (UDP_BUCKETS - 1);
}

static bool ep_equal(const struct flow_endpoint *a, const struct flow_endpoint *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16);
}

static struct udp_flow *flow_find(struct proxy *px, const struct flow_endpoint *guest,
				  const struct flow_endpoint *remote)
{
	struct udp_flow *f = px->udp->hash[key_hash(guest, remote)];

	while (f && !(ep_equal(&f->guest, guest) && ep_equal(&f->remote, remote)))
		f = f->hnext;
	return f;
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

static void flow_free(struct proxy *px, struct udp_flow *f)
{
	struct udp_state *st = px->udp;
	struct udp_flow **b = &st->hash[key_hash(&f->guest, &f->remote)];

	while (*b && *b != f)
		b = &(*b)->hnext;
	if (*b)
		*b = f->hnext;
	list_del(&f->all);
	list_del(&f->waiter.node);
	f->closed = true;
	if (f->denied) {
		st->n_denied--;
	} else {
		st->active--;
		CNT_SUB(px, udp_flows_active, 1);
	}
	if (f->sock_open)
		uv_close((uv_handle_t *)&f->sock, on_closed);
	else
		free(f);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct udp_flow *f = h->data;

	(void)suggested;
	relay_dgram_alloc(f->px, buf);
}

static void recv_stop(struct udp_flow *f)
{
	if (f->receiving) {
		uv_udp_recv_stop(&f->sock);
		f->receiving = false;
	}
}

/* The ICMP error in @ee, as the guest should get it. Return: false if none. */
static bool unreach_kind(const struct sock_extended_err *ee, uint32_t *kind)
{
	if (ee->ee_origin == SO_EE_ORIGIN_ICMP && ee->ee_type == 3) {
		switch (ee->ee_code) {
		case 3:
			*kind = FLOW_UNREACH_PORT;
			return true;
		case 0:
		case 6: /* destination network unknown */
			*kind = FLOW_UNREACH_NET;
			return true;
		case 1:
		case 7: /* destination host unknown */
			*kind = FLOW_UNREACH_HOST;
			return true;
		default:
			return false;
		}
	}
	if (ee->ee_origin == SO_EE_ORIGIN_ICMP6 && ee->ee_type == 1) {
		static const int8_t kinds6[5] = { FLOW_UNREACH_NET, -1, -1, FLOW_UNREACH_HOST,
						  FLOW_UNREACH_PORT };

		if (ee->ee_code < 5 && kinds6[ee->ee_code] >= 0) {
			*kind = (uint32_t)kinds6[ee->ee_code];
			return true;
		}
	}
	return false;
}

/*
 * Read the socket's error queue (IP_RECVERR): it must be emptied, or the
 * socket stays readable for ever. Each port, host or network unreachable
 * goes to the netstack as UNREACH, for the guest to get as ICMP.
 */
static void drain_errors(struct udp_flow *f)
{
	struct proxy *px = f->px;
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&f->sock, &fd) < 0)
		return;
	for (int i = 0; i < 16; i++) {
		union {
			char buf[CMSG_SPACE(sizeof(struct sock_extended_err) +
					    sizeof(struct sockaddr_in6))];
			struct cmsghdr align;
		} ctl;
		struct msghdr mh = { .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *c;

		if (recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			return;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			struct flow_unreach u;
			struct sock_extended_err ee;

			if (!((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
			      (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) ||
			    c->cmsg_len < CMSG_LEN(sizeof(ee)))
				continue;
			memcpy(&ee, CMSG_DATA(c), sizeof(ee));
			memset(&u, 0, sizeof(u));
			if (!unreach_kind(&ee, &u.kind))
				continue;
			u.src = f->remote;
			u.dst = f->guest;
			relay_send(px, FLOW_UNREACH, &u, sizeof(u));
			CNT_ADD(px, udp_unreachable, 1);
		}
	}
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		    unsigned flags)
{
	struct udp_flow *f = h->data;
	struct proxy *px = f->px;

	if (f->closed)
		return;
	if (nread == UV_ENOBUFS) {
		recv_stop(f);
		relay_wait(px, &f->waiter);
		return;
	}
	if (nread < 0) {
		drain_errors(f); /* an ICMP error on the connected socket */
		return;
	}
	if (!addr || !buf->base || (flags & UV_UDP_PARTIAL))
		return; /* nothing, or truncated */
	f->last_ms = uv_now(&px->loop);
	f->rx_bytes += (uint64_t)nread;
	relay_dgram_commit(px, buf, (size_t)nread, &f->remote, &f->guest, &f->remote);
}

static void recv_start(struct udp_flow *f)
{
	if (!f->receiving && !f->closed && f->sock_open &&
	    uv_udp_recv_start(&f->sock, on_alloc, on_recv) == 0)
		f->receiving = true;
}

static void waiter_resume(struct relay_waiter *w)
{
	recv_start(list_entry(w, struct udp_flow, waiter));
}

static struct udp_flow *flow_new(struct proxy *px, const struct flow_endpoint *guest,
				 const struct flow_endpoint *remote, bool denied)
{
	struct udp_state *st = px->udp;
	struct udp_flow *f = calloc(1, sizeof(*f));
	uint32_t b = key_hash(guest, remote);

	if (!f)
		return NULL;
	f->px = px;
	f->guest = *guest;
	f->remote = *remote;
	f->denied = denied;
	f->generation = px->generation;
	f->last_ms = f->born_ms = uv_now(&px->loop);
	f->rule = -1;
	f->sock.data = f;
	list_init(&f->waiter.node);
	f->waiter.resume = waiter_resume;
	f->hnext = st->hash[b];
	st->hash[b] = f;
	if (denied) {
		list_add_tail(&st->denied, &f->all);
		st->n_denied++;
	} else {
		list_add_tail(&st->all, &f->all);
		st->active++;
		CNT_ADD(px, udp_flows_active, 1);
		CNT_ADD(px, udp_flows_opened, 1);
	}
	return f;
}

/* ICMP errors for this flow into the socket's error queue (drain_errors()). */
static void recverr_on(struct udp_flow *f, int family)
{
	int one = 1;
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&f->sock, &fd) < 0)
		return;
	if (family == AF_INET6)
		setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof(one));
	else
		setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof(one));
}

static int open_socket(struct proxy *px, struct udp_flow *f)
{
	struct sockaddr_storage ss;
	int rc;

	relay_sockaddr(px, &f->remote, relay_is_host(px, &f->remote), &ss);
	rc = uv_udp_init(&px->loop, &f->sock);
	if (rc < 0)
		return rc;
	f->sock.data = f;
	f->sock_open = true;
	rc = uv_udp_connect(&f->sock, (struct sockaddr *)&ss);
	if (rc < 0)
		return rc;
	recverr_on(f, ss.ss_family);
	recv_start(f);
	return 0;
}

/**
 * udpflow_input() - a datagram from the guest (not for the DNS forwarder)
 * @px:		proxy
 * @d:		addresses (validated)
 * @data:	payload
 * @len:	its length
 */
void udpflow_input(struct proxy *px, const struct flow_dgram *d, const uint8_t *data, uint32_t len)
{
	struct udp_state *st = px->udp;
	struct udp_flow *f;
	uint64_t now = uv_now(&px->loop);
	uv_buf_t b;
	int rc;

	if (udppub_reply(px, d, data, len))
		return; /* an answer to a published port's peer */
	if (relay_is_dns(px, &d->dst))
		return; /* only port 53 listens there */
	f = flow_find(px, &d->src, &d->dst);
	if (f && f->denied && f->generation != px->generation) {
		flow_free(px, f); /* decided under an older policy: decide again */
		f = NULL;
	}
	if (!f) {
		struct policy_decision dec = relay_decide(px, POLICY_EGRESS, POLICY_PROTO_UDP,
							  &d->dst);
		enum limit_kind which;

		if (relay_denied(px, dec, POLICY_EGRESS, POLICY_PROTO_UDP, &d->dst, 0)) {
			if (st->n_denied >= UDP_DENIED_MAX)
				flow_free(px, list_entry(st->denied.next, struct udp_flow, all));
			flow_new(px, &d->src, &d->dst, true);
			return;
		}
		enum limit_verdict v = limits_new_flow(&px->limits, false, st->active, now, &which);

		if (relay_limit(px, v, which, 0, MOAT_P_UDP, &d->dst)) {
			CNT_ADD(px, udp_flows_refused, 1);
			return;
		}
		f = flow_new(px, &d->src, &d->dst, false);
		if (!f)
			return;
		f->rule = dec.rule;
		rc = open_socket(px, f);
		if (rc < 0) {
			log_debug("udp: cannot open a flow socket: %s", uv_strerror(rc));
			flow_free(px, f);
			return;
		}
	}
	if (f->denied) {
		CNT_ADD(px, denials_egress[MOAT_P_UDP], 1);
		f->last_ms = now;
		return;
	}
	f->last_ms = now;
	if (limits_bytes_allowed(&px->limits, false, len, now) < len)
		return; /* shaped: a datagram cannot wait, it is dropped */
	b = uv_buf_init((char *)data, len);
	rc = uv_udp_try_send(&f->sock, &b, 1, NULL);
	if (rc < 0) {
		log_debug("udp: send: %s", uv_strerror(rc));
		return;
	}
	CNT_ADD(px, upstream_tx_bytes, len);
	f->tx_bytes += len;
	relay_limit(px, limits_bytes_done(&px->limits, false, len, now), LIMIT_EGRESS_BYTES, 0,
		    MOAT_P_UDP, &d->dst);
}

static void expire(struct proxy *px, struct list_head *list, uint64_t now_ms, uint64_t idle_ms)
{
	struct list_head *n, *nx;

	for (n = list->next; n != list; n = nx) {
		struct udp_flow *f = list_entry(n, struct udp_flow, all);

		nx = n->next;
		if (now_ms - f->last_ms >= idle_ms)
			flow_free(px, f);
	}
}

/**
 * udpflow_active() - egress UDP flows open now
 * @px:	proxy
 *
 * Return: the count (published ports' peers count against the same limit).
 */
uint64_t udpflow_active(const struct proxy *px)
{
	return px->udp ? px->udp->active : 0;
}

/**
 * udpflow_tick() - expire idle flows
 * @px:		proxy
 * @now_ms:	current time
 */
void udpflow_tick(struct proxy *px, uint64_t now_ms)
{
	uint64_t idle_ms = (uint64_t)(px->region.hdr.udp_idle_timeout_s ?
					      px->region.hdr.udp_idle_timeout_s :
					      UDP_IDLE_DEFAULT_S) *
			   1000;

	expire(px, &px->udp->all, now_ms, idle_ms);
	expire(px, &px->udp->denied, now_ms, idle_ms);
}

/**
 * udpflow_reevaluate() - a new policy is in force: decide every open UDP
 * flow again and close the ones it denies
 * @px:	proxy
 *
 * A closed flow's socket is gone (answers to it are lost, as after its
 * idle timeout); the guest's next datagram is a new flow, decided (and
 * remembered as denied) under the new policy. A denial event with reason
 * "policy_reload" for each. Remembered denials are decided again at their
 * next datagram already (their generation is old).
 */
void udpflow_reevaluate(struct proxy *px)
{
	struct list_head *n, *next;

	for (n = px->udp->all.next; n != &px->udp->all; n = next) {
		struct udp_flow *f = list_entry(n, struct udp_flow, all);
		struct policy_decision d;

		next = n->next;
		d = relay_decide(px, POLICY_EGRESS, POLICY_PROTO_UDP, &f->remote);
		if (!relay_denied_why(px, d, POLICY_EGRESS, POLICY_PROTO_UDP, &f->remote, 0,
				      "policy_reload", NULL))
			continue;
		CNT_ADD(px, reload_cuts, 1);
		flow_free(px, f);
	}
}

/**
 * udpflow_init() - UDP state
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int udpflow_init(struct proxy *px)
{
	struct udp_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	list_init(&st->all);
	list_init(&st->denied);
	px->udp = st;
	return 0;
}

/**
 * udpflow_fini() - close every flow, free the state
 * @px:	proxy
 */
void udpflow_fini(struct proxy *px)
{
	struct udp_state *st = px->udp;

	if (!st)
		return;
	while (!list_empty(&st->all))
		flow_free(px, list_entry(st->all.next, struct udp_flow, all));
	while (!list_empty(&st->denied))
		flow_free(px, list_entry(st->denied.next, struct udp_flow, all));
	uv_run(&px->loop, UV_RUN_NOWAIT);
	free(st);
	px->udp = NULL;
}

/**
 * udpflow_list() - every open egress UDP flow, for the control API
 * @px:		proxy
 * @fn:		called once per flow (remembered denials are not listed)
 * @arg:	for @fn
 */
void udpflow_list(struct proxy *px, relay_flow_fn fn, void *arg)
{
	struct list_head *n;

	for (n = px->udp->all.next; n != &px->udp->all; n = n->next) {
		struct udp_flow *f = list_entry(n, struct udp_flow, all);
		struct relay_flow_info fi = {
			.proto = POLICY_PROTO_UDP,
			.src = &f->guest,
			.dst = &f->remote,
			.state = "open",
			.rule = f->rule,
			.tx = f->tx_bytes,
			.rx = f->rx_bytes,
			.born_ms = f->born_ms,
		};

		fn(arg, &fi);
	}
}
