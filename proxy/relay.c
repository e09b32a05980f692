/* SPDX-License-Identifier: MIT */
/*
 * relay.c - the proxy's core: the flow rings, message validation, dispatch,
 * policy decisions and violations
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy, on the libuv loop. The netstack (less trusted: it
 * parses the guest's packets) talks to us only through the s2p ring; we
 * answer on p2s (shm/flow.h).
 *
 * Consuming s2p. Our eventfd wakes the loop; everything else happens in
 * one uv_prepare callback, which runs right before the loop would block:
 * pop a bounded batch of records (each copied out of the ring by
 * ring_pop() before it is looked at), validate each one completely
 * (flowmsg_check(): known type, exact size for fixed-size records, data
 * sizes within FLOW_DATA_MAX, valid families and ports, ids in the right
 * half of the space) and hand it to tcpflow.c, udpflow.c, dnsfwd.c or ping.c. A
 * malformed record or a corrupt ring is a fatal violation (mailbox, then
 * nothing more is processed); a record for an unknown flow id is ignored
 * (it may have crossed a CLOSE). Then the same callback lets tcpflow.c issue
 * the socket writes and CREDITs of the batch, publishes p2s once
 * (ring_flush(): one wake for the whole iteration), hands s2p space back,
 * and either arms the ring's sleep flag or keeps an idle handle running so
 * the loop comes straight back.
 *
 * Producing p2s. Socket data goes straight into the ring: a reader's alloc
 * callback reserves a DATA/DGRAM record (relay_reserve()), the kernel
 * copies into it, the read callback commits it. Small control records
 * (CONNECT_RESULT, SHUT_WR, CLOSE, ...) go through relay_send(); when the
 * ring is full they wait, in order, in a backlog, and while the backlog is
 * not empty nothing is reserved, so no record overtakes another. A reader
 * that found no room registers as a waiter (relay_wait()) and stops; when
 * the netstack frees space it writes our eventfd (ring_wait_space()), the
 * backlog drains and the waiters resume. The backlog is two fixed pools
 * (pool.c): control records, sized so that a netstack that reads p2s never
 * fills it (full = it stopped reading: a violation), and datagrams, which
 * are dropped beyond it (UDP is lossy anyway). DATA never waits there:
 * its producers reserve ring space or wait.
 *
 * Decisions. relay_decide() asks the policy about a flow, with the DNS
 * names pinned for its destination; relay_denied() acts on a denial: a
 * "terminate" rule is reported to the supervisor first of all (the VM is
 * to die within milliseconds), then the counters and an event.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"
#include "shm/flowmsg.h"
#include "shm/mailbox.h"

#define DRAIN_RECORDS 4096	 /* s2p records per loop iteration */
#define DRAIN_BYTES   (8u << 20) /* s2p bytes per loop iteration */
#define TICK_MS	      1000

/*
 * A p2s record waiting for ring space. Control records (everything but
 * DGRAM and ECHO_REPLY) come from the p2s_control pool, whose objects hold
 * the biggest of them; datagrams from the p2s_dgram pool, whose objects
 * hold a whole record.
 */
struct backlog_rec {
	struct list_head node;
	uint32_t type, len;
	_Alignas(8) uint8_t data[];
};

#define BACKLOG_CONTROL_MAX 64	/* bytes: the biggest control record (static asserts below) */
#define BACKLOG_DGRAMS	    256 /* datagrams that may wait; beyond, they are dropped */
/*
 * Control records a flow can have waiting at once: CONNECT_RESULT or
 * ACCEPTED, SHUT_WR, CLOSE, and one CREDIT (tcpflow.c sends no CREDIT while
 * records wait, relay_backlogged()). More than this many per flow the table
 * holds means the netstack stopped reading p2s: a violation.
 */
#define BACKLOG_PER_FLOW    4
#define BACKLOG_SPARE	    256

_Static_assert(sizeof(struct flow_connect_result) <= BACKLOG_CONTROL_MAX &&
		       sizeof(struct flow_connect) <= BACKLOG_CONTROL_MAX &&
		       sizeof(struct flow_credit) <= BACKLOG_CONTROL_MAX &&
		       sizeof(struct flow_shut) <= BACKLOG_CONTROL_MAX &&
		       sizeof(struct flow_close) <= BACKLOG_CONTROL_MAX,
	       "p2s_control objects hold every control record");

/* One record copied out of s2p at a time. */
static _Alignas(8) uint8_t rec_buf[FLOW_RECORD_MAX];

static void dispatch(struct proxy *px, uint32_t type, const uint8_t *msg, uint32_t len)
{
	switch (type) {
	case FLOW_CONNECT: {
		struct flow_connect c;

		memcpy(&c, msg, sizeof(c));
		tcpflow_connect_input(px, &c);
		break;
	}
	case FLOW_CONNECT_RESULT: {
		struct flow_connect_result r;

		memcpy(&r, msg, sizeof(r));
		publish_result_input(px, &r);
		break;
	}
	case FLOW_DATA: {
		struct flow_data d;

		memcpy(&d, msg, sizeof(d));
		tcpflow_data_input(px, d.id, msg + sizeof(d), len - (uint32_t)sizeof(d));
		break;
	}
	case FLOW_CREDIT: {
		struct flow_credit c;

		memcpy(&c, msg, sizeof(c));
		tcpflow_credit_input(px, c.id, c.bytes);
		break;
	}
	case FLOW_SHUT_WR: {
		struct flow_shut s;

		memcpy(&s, msg, sizeof(s));
		tcpflow_shut_input(px, s.id);
		break;
	}
	case FLOW_CLOSE: {
		struct flow_close c;

		memcpy(&c, msg, sizeof(c));
		tcpflow_close_input(px, c.id, c.reset != 0);
		break;
	}
	case FLOW_DGRAM: {
		struct flow_dgram d;

		memcpy(&d, msg, sizeof(d));
		if (relay_dns_intercepts(px, &d.dst))
			dnsfwd_udp_input(px, &d, msg + sizeof(d), len - (uint32_t)sizeof(d));
		else
			udpflow_input(px, &d, msg + sizeof(d), len - (uint32_t)sizeof(d));
		break;
	}
	case FLOW_ECHO: {
		struct flow_echo e;

		memcpy(&e, msg, sizeof(e));
		ping_input(px, &e, msg + sizeof(e), len - (uint32_t)sizeof(e));
		break;
	}
	}
}

/* Pop, validate and dispatch a bounded batch of s2p records. */
static void drain(struct proxy *px)
{
	uint64_t bytes = 0;

	for (int i = 0; i < DRAIN_RECORDS && bytes < DRAIN_BYTES && !px->violation; i++) {
		uint32_t type = 0, hlen;
		union flowmsg hdr;
		const char *why = "size";
		int n = ring_pop(&px->s2p, &type, rec_buf, sizeof(rec_buf));

		if (n == -EAGAIN)
			return;
		if (n == -EBADMSG) {
			relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
					"ring s2p failed validation");
			return;
		}
		if (n == -EMSGSIZE ||
		    (n >= 0 && flowmsg_check(FLOWMSG_S2P, type, rec_buf, (uint32_t)n, &hdr, &hlen,
					     &why) < 0)) {
			char detail[96];

			CNT_ADD(px, bad_messages, 1);
			snprintf(detail, sizeof(detail),
				 "malformed s2p record type=%u (%s) len=%d: %s", type,
				 flowmsg_name(type), n, why);
			relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, 0, 0xff, NULL, detail);
			return;
		}
		bytes += (uint64_t)n;
		dispatch(px, type, rec_buf, (uint32_t)n);
	}
}

static void resume_waiters(struct proxy *px)
{
	struct list_head todo;

	list_init(&todo);
	/* Move them aside first: a resumed reader may wait again at once. */
	while (!list_empty(&px->waiters)) {
		struct list_head *n = px->waiters.next;

		list_del(n);
		list_add_tail(&todo, n);
	}
	while (!list_empty(&todo) && !px->violation) {
		struct list_head *n = todo.next;
		struct relay_waiter *w = list_entry(n, struct relay_waiter, node);

		list_del(n);
		w->resume(w);
	}
}

static struct pool *backlog_pool(struct proxy *px, uint32_t type)
{
	bool lossy = type == FLOW_DGRAM || type == FLOW_ECHO_REPLY;

	return &px->pools[lossy ? MOAT_POOL_P2S_DGRAM : MOAT_POOL_P2S_CONTROL];
}

/* Move waiting records into p2s; then let the readers go on if there is room. */
static void backlog_drain(struct proxy *px)
{
	uint64_t resume_min = FLOW_RECORD_MAX + 16;

	if (resume_min > RING_MAX_RECORD(px->p2s.cap))
		resume_min = RING_MAX_RECORD(px->p2s.cap);
	while (!list_empty(&px->backlog)) {
		struct backlog_rec *r = list_entry(px->backlog.next, struct backlog_rec, node);
		int rc = ring_push(&px->p2s, r->type, r->data, r->len);

		if (rc == -ENOBUFS) {
			if (ring_wait_space(&px->p2s, r->len))
				continue;
			px->p2s_blocked = true;
			return;
		}
		if (rc < 0 && rc != -EMSGSIZE) {
			relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
					"ring p2s failed validation");
			return;
		}
		list_del(&r->node);
		px->backlog_len--;
		pool_put(backlog_pool(px, r->type), r);
	}
	if (list_empty(&px->waiters))
		return;
	if (ring_free_bytes(&px->p2s) >= resume_min * 2 ||
	    ring_wait_space(&px->p2s, (uint32_t)resume_min))
		resume_waiters(px);
	else
		px->p2s_blocked = true;
}

/* Publish the pools' counters; give the pages of idle pools back if @trim. */
static void relay_pools_sync(struct proxy *px, bool trim)
{
	for (int i = 0; i < MOAT_POOL_COUNT; i++) {
		struct pool *p = &px->pools[i];

		if (trim)
			pool_trim(p);
		CNT_SET(px, pool_size[i], p->count);
		CNT_SET(px, pool_in_use[i], p->used);
		CNT_SET(px, pool_refused[i], p->refused);
	}
}

static void on_idle(uv_idle_t *h)
{
	(void)h; /* only keeps the loop from blocking */
}

static void on_prepare(uv_prepare_t *h)
{
	struct proxy *px = h->data;
	bool more = false;

	if (px->violation) {
		uv_idle_stop(&px->idle);
		return;
	}
	if (px->policy)
		drain(px);
	if (px->violation)
		return;
	tcpflow_flush(px);
	backlog_drain(px);
	if (px->violation)
		return;
	ring_flush(&px->p2s);
	ring_release(&px->s2p);
	if (px->p2s.corrupt) {
		relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
				"ring p2s failed validation");
		return;
	}
	if (px->policy)
		more = !ring_prepare_sleep(&px->s2p);
	if (more)
		uv_idle_start(&px->idle, on_idle);
	else
		uv_idle_stop(&px->idle);
}

static void on_efd(uv_poll_t *h, int status, int events)
{
	struct proxy *px = h->data;
	uint64_t v;

	(void)status;
	(void)events;
	if (read(px->efd_self, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("eventfd read: %s", strerror(errno));
	px->p2s_blocked = false;
	/* on_prepare() does the work before the loop sleeps again. */
}

static void on_tick(uv_timer_t *h)
{
	struct proxy *px = h->data;
	uint64_t now = uv_now(&px->loop);
	static unsigned n;

	if (px->violation)
		return;
	tcpflow_tick(px, now);
	udpflow_tick(px, now);
	udppub_tick(px, now);
	dnsfwd_tick(px, now);
	ping_tick(px, now);
	if (++n % 10 == 0)
		pins_expire(&px->pins, now);
	CNT_SET(px, dns_pins, px->pins.count);
	relay_pools_sync(px, true);
}

/**
 * relay_kick() - make the loop come back without sleeping (new work)
 * @px:	proxy
 */
void relay_kick(struct proxy *px)
{
	if (!px->violation)
		uv_idle_start(&px->idle, on_idle);
}

static void backlog_add(struct proxy *px, uint32_t type, const void *hdr, uint32_t hlen,
			const void *data, uint32_t dlen)
{
	struct pool *pool = backlog_pool(px, type);
	struct backlog_rec *r;

	if (pool == &px->pools[MOAT_POOL_P2S_CONTROL] && hlen + dlen > BACKLOG_CONTROL_MAX) {
		/* tcpflow.c never sends DATA through here; a bug, not the netstack's fault */
		log_error("p2s record type %u of %u bytes cannot wait; dropped", type, hlen + dlen);
		return;
	}
	r = pool_get(pool);
	if (!r) {
		if (pool == &px->pools[MOAT_POOL_P2S_DGRAM])
			return; /* datagrams may be lost (counted); flow control may not */
		relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
				"the netstack stopped reading p2s (control backlog full)");
		return;
	}
	r->type = type;
	r->len = hlen + dlen;
	memcpy(r->data, hdr, hlen);
	if (dlen)
		memcpy(r->data + hlen, data, dlen);
	list_add_tail(&px->backlog, &r->node);
	px->backlog_len++;
	relay_kick(px);
}

/**
 * relay_backlogged() - are records waiting for p2s space?
 * @px:	proxy
 *
 * Return: true if so; a record sent now would wait behind them.
 */
bool relay_backlogged(const struct proxy *px)
{
	return !list_empty(&px->backlog);
}

/**
 * relay_sendv() - queue one p2s record made of a header and data
 * @px:		proxy
 * @type:	record type
 * @hdr:	fixed part
 * @hlen:	its length
 * @data:	variable part, may be NULL
 * @dlen:	its length
 *
 * Goes into the ring now, or into the backlog (in order) when the ring is
 * full. It becomes visible to the netstack at the next ring_flush().
 */
void relay_sendv(struct proxy *px, uint32_t type, const void *hdr, uint32_t hlen, const void *data,
		 uint32_t dlen)
{
	void *p;
	int rc;

	if (px->violation)
		return;
	if (!list_empty(&px->backlog)) {
		backlog_add(px, type, hdr, hlen, data, dlen);
		return;
	}
	rc = ring_reserve(&px->p2s, hlen + dlen, &p);
	if (rc == -ENOBUFS) {
		backlog_add(px, type, hdr, hlen, data, dlen);
		return;
	}
	if (rc == -EMSGSIZE) {
		log_error("p2s record of %u bytes does not fit the ring; dropped", hlen + dlen);
		return;
	}
	if (rc < 0) {
		relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
				"ring p2s failed validation");
		return;
	}
	memcpy(p, hdr, hlen);
	if (dlen)
		memcpy((uint8_t *)p + hlen, data, dlen);
	ring_commit(&px->p2s, type, hlen + dlen);
}

/**
 * relay_send() - queue one fixed-size p2s record
 * @px:		proxy
 * @type:	record type
 * @msg:	payload
 * @len:	its length
 */
void relay_send(struct proxy *px, uint32_t type, const void *msg, uint32_t len)
{
	relay_sendv(px, type, msg, len, NULL, 0);
}

/**
 * relay_dgram_alloc() - libuv's receive buffer for a datagram: room in p2s
 * behind a DGRAM header, for a whole datagram or none
 * @px:		proxy
 * @buf:	set to the room, or to none (libuv then reports UV_ENOBUFS:
 *		stop reading and relay_wait())
 */
void relay_dgram_alloc(struct proxy *px, uv_buf_t *buf)
{
	uint32_t got;
	uint8_t *p = relay_reserve(px, sizeof(struct flow_dgram), FLOW_DATA_MAX, &got);

	buf->base = NULL;
	buf->len = 0;
	if (!p || got < FLOW_DATA_MAX)
		return; /* a datagram must fit whole */
	buf->base = (char *)p + sizeof(struct flow_dgram);
	buf->len = got;
}

/**
 * relay_dgram_commit() - a datagram received into relay_dgram_alloc()'s room
 * goes to the netstack, counted and charged to the ingress byte limit
 * @px:		proxy
 * @buf:	the room it was read into
 * @n:		its length
 * @src:	who it is from, as the guest sees it
 * @dst:	the guest's end
 * @peer:	the remote, for a limit's event
 */
void relay_dgram_commit(struct proxy *px, const uv_buf_t *buf, size_t n,
			const struct flow_endpoint *src, const struct flow_endpoint *dst,
			const struct flow_endpoint *peer)
{
	struct flow_dgram d;

	memset(&d, 0, sizeof(d));
	d.src = *src;
	d.dst = *dst;
	memcpy(buf->base - sizeof(d), &d, sizeof(d));
	relay_commit(px, FLOW_DGRAM, (uint32_t)(sizeof(d) + n));
	CNT_ADD(px, upstream_rx_bytes, (uint64_t)n);
	relay_limit(px, limits_bytes_done(&px->limits, true, (uint64_t)n, uv_now(&px->loop)),
		    LIMIT_INGRESS_BYTES, 0, MOAT_P_UDP, peer);
}

/**
 * relay_reserve() - room for a DATA/DGRAM record to be read straight into
 * @px:		proxy
 * @hlen:	header bytes the caller writes first
 * @want:	data bytes wanted
 * @got:	set to the data bytes granted (may be less than @want)
 *
 * Follow with relay_commit() (or nothing, to give the room up). Nothing
 * else may be pushed in between.
 *
 * Return: where the header goes (data follows it), or NULL when the ring
 * is full or records are waiting: then call relay_wait().
 */
void *relay_reserve(struct proxy *px, uint32_t hlen, uint32_t want, uint32_t *got)
{
	uint32_t n = want;

	if (px->violation || !list_empty(&px->backlog))
		return NULL;
	for (;;) {
		void *p;
		int rc = ring_reserve(&px->p2s, hlen + n, &p);

		if (rc == 0) {
			*got = n;
			return p;
		}
		if (rc == -EBADMSG) {
			relay_violation(px, MOAT_VIOL_RING_CORRUPT, -1, 0, 0xff, NULL,
					"ring p2s failed validation");
			return NULL;
		}
		if (n <= 2048)
			return NULL;
		n /= 2;
	}
}

/**
 * relay_commit() - finish the record of the last relay_reserve()
 * @px:		proxy
 * @type:	record type
 * @len:	header plus data bytes actually written
 */
void relay_commit(struct proxy *px, uint32_t type, uint32_t len)
{
	ring_commit(&px->p2s, type, len);
}

/**
 * relay_wait() - wait for p2s space; @w->resume is called when it may be there
 * @px:	proxy
 * @w:	the waiter (not already waiting)
 */
void relay_wait(struct proxy *px, struct relay_waiter *w)
{
	if (list_linked(&w->node))
		return;
	list_add_tail(&px->waiters, &w->node);
	relay_kick(px);
}

/**
 * relay_violation() - report a fatal violation and stop processing
 * @px:		proxy
 * @reason:	enum moat_violation
 * @rule:	policy rule index or -1
 * @flow:	flow id or 0
 * @proto:	enum moat_proto_idx or 0xff
 * @dst:	destination, may be NULL
 * @detail:	words for the event and the log
 *
 * The mailbox comes first: the supervisor kills the VM as soon as it sees
 * it. Then the proxy stops consuming s2p and producing p2s; it keeps
 * running until the supervisor stops it.
 */
void relay_violation(struct proxy *px, uint32_t reason, int rule, uint32_t flow, uint8_t proto,
		     const struct flow_endpoint *dst, const char *detail)
{
	struct mailbox_report rep = {
		.reason = reason, .rule = rule, .flow = flow, .proto = proto, .detail = detail
	};

	if (px->violation)
		return;
	if (dst) {
		rep.dst_family = dst->family;
		rep.dst_port = dst->port;
		memcpy(rep.dst_addr, dst->addr, sizeof(rep.dst_addr));
	}
	mailbox_post(px->mbox, px->efd_supervisor, &rep);
	px->violation = true;
	uv_poll_stop(&px->efd_poll);
	uv_idle_stop(&px->idle);
	log_error("violation reported: reason=%u rule=%d flow=%u %s", reason, rule, flow,
		  detail ? detail : "");
}

static void ep_to_addr(const struct flow_endpoint *ep, struct policy_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = ep->family == 4 ? AF_INET : AF_INET6;
	memcpy(a->addr, ep->addr, ep->family == 4 ? 4 : 16);
}

/* The policy's view of a flow to @dst, with the names pinned for it (egress). */
static void flow_of(struct proxy *px, enum policy_direction dir, enum policy_proto proto,
		    const struct flow_endpoint *dst, const char *names[PINS_LOOKUP_MAX + 1],
		    struct policy_flow *f)
{
	int n = 0;

	memset(f, 0, sizeof(*f));
	f->direction = dir;
	f->proto = proto;
	ep_to_addr(dst, &f->dst);
	f->port = proto == POLICY_PROTO_ICMP ? 0 : dst->port;
	if (dir == POLICY_EGRESS)
		n = pins_lookup(&px->pins, dst->family, dst->addr, uv_now(&px->loop), names,
				PINS_LOOKUP_MAX);
	names[n] = NULL;
	f->names = n ? names : NULL;
}

/**
 * relay_decide() - decide a flow with the names pinned for its address
 * @px:		proxy
 * @dir:	POLICY_EGRESS or POLICY_INGRESS
 * @proto:	POLICY_PROTO_*
 * @dst:	egress: destination (port = destination port); ingress: the
 *		host-side peer with port = the guest port
 *
 * Return: the policy's decision.
 */
struct policy_decision relay_decide(struct proxy *px, enum policy_direction dir,
				    enum policy_proto proto, const struct flow_endpoint *dst)
{
	const char *names[PINS_LOOKUP_MAX + 1];
	struct policy_flow f;

	struct policy_decision d;

	flow_of(px, dir, proto, dst, names, &f);
	d = policy_decide(px->policy, &f);
	/* QUIC to a name moat-tls intercepts: denied, so that the client falls back
	 * to TLS over TCP, where the secrets are checked (docs/tls.md). */
	if (d.allow && px->tls && proto == POLICY_PROTO_UDP && dir == POLICY_EGRESS &&
	    f.port == 443 && f.names) {
		for (int i = 0; f.names[i]; i++) {
			if (policy_tls_intercepts(px->policy, f.names[i])) {
				d.allow = false;
				d.rule = -1;
				break;
			}
		}
	}
	return d;
}

/**
 * relay_decide_hostname() - decide an allowed egress TCP connection again with
 * the host name its client named (policy_decide_hostname())
 * @px:		proxy
 * @dst:	its destination
 * @first:	relay_decide()'s decision for it
 * @hostname:	the TLS SNI or HTTP Host, NULL if none
 * @mismatch:	set when a domain rule's allow was taken back for the name
 *
 * Return: the decision.
 */
struct policy_decision relay_decide_hostname(struct proxy *px, const struct flow_endpoint *dst,
					     struct policy_decision first, const char *hostname,
					     bool *mismatch)
{
	const char *names[PINS_LOOKUP_MAX + 1];
	struct policy_flow f;

	flow_of(px, POLICY_EGRESS, POLICY_PROTO_TCP, dst, names, &f);
	return policy_decide_hostname(px->policy, &f, first, hostname, mismatch);
}

static uint8_t proto_idx(enum policy_proto proto)
{
	return proto == POLICY_PROTO_TCP ? MOAT_P_TCP :
	       proto == POLICY_PROTO_UDP ? MOAT_P_UDP :
					   MOAT_P_ICMP;
}

/**
 * relay_denied() - act on a decision: nothing if allowed; else report
 * @px:		proxy
 * @d:		the decision
 * @dir:	direction
 * @proto:	protocol
 * @dst:	as for relay_decide()
 * @flow:	flow id or 0
 *
 * A terminate rule goes to the mailbox before anything else.
 *
 * Return: true if the flow is denied (the caller refuses it).
 */
bool relay_denied(struct proxy *px, struct policy_decision d, enum policy_direction dir,
		  enum policy_proto proto, const struct flow_endpoint *dst, uint32_t flow)
{
	return relay_denied_why(px, d, dir, proto, dst, flow, NULL, NULL);
}

/**
 * relay_denied_why() - relay_denied() with a reason for the event
 * @px:		proxy
 * @d:		the decision
 * @dir:	direction
 * @proto:	protocol
 * @dst:	the endpoint decided on
 * @flow:	flow id or 0
 * @reason:	NULL (a new flow) or why an open flow was decided again:
 *		"policy_reload" (a terminate rule then only cuts the flow: the
 *		guest did nothing new), "sni_mismatch", "host_mismatch" (a
 *		domain rule's allow taken back for the name the client sent),
 *		"sni_denied", "host_denied" (a deny rule on that name)
 * @name:	the name the client sent, for the event, or NULL
 *
 * Return: true if denied.
 */
bool relay_denied_why(struct proxy *px, struct policy_decision d, enum policy_direction dir,
		      enum policy_proto proto, const struct flow_endpoint *dst, uint32_t flow,
		      const char *reason, const char *name)
{
	uint8_t pi = proto_idx(proto);
	bool reload = reason && !strcmp(reason, "policy_reload");

	if (d.allow)
		return false;
	if (d.terminate && !reload)
		relay_violation(px, MOAT_VIOL_POLICY_TERMINATE, d.rule, flow, pi, dst,
				"a terminate rule matched");
	if (dir == POLICY_EGRESS)
		CNT_ADD(px, denials_egress[pi], 1);
	else
		CNT_ADD(px, denials_ingress[pi], 1);
	control_event_denial(px, "denial", dir, proto, dst, name, d.rule, d.terminate && !reload,
			     flow, reason);
	if (log_current_level >= LOG_LVL_DEBUG) {
		char a[64];

		relay_format_ep(dst, a, sizeof(a));
		log_debug("denied %s %s %s rule=%d flow=%u",
			  dir == POLICY_EGRESS ? "egress" : "ingress", policy_proto_name(proto), a,
			  d.rule, flow);
	}
	return true;
}

/**
 * relay_limit() - act on a limit verdict
 * @px:		proxy
 * @v:		verdict from limits_new_flow()/limits_bytes_done()
 * @which:	the limit
 * @flow:	flow id or 0
 * @proto:	enum moat_proto_idx
 * @dst:	destination, may be NULL
 *
 * Return: true if the limit was exceeded (refused or terminated).
 */
bool relay_limit(struct proxy *px, enum limit_verdict v, enum limit_kind which, uint32_t flow,
		 uint8_t proto, const struct flow_endpoint *dst)
{
	char detail[64];

	if (v == LIMIT_OK)
		return false;
	if (v == LIMIT_TERMINATE) {
		snprintf(detail, sizeof(detail), "limit %s exceeded", limits_name(which));
		relay_violation(px, MOAT_VIOL_LIMIT, -1, flow, proto, dst, detail);
	}
	CNT_ADD(px, limit_exceeded, 1);
	control_event_limit(px, limits_name(which), v == LIMIT_TERMINATE, flow, proto, dst);
	return true;
}

/**
 * relay_is_host() - is @ep the gateway address ("the host")
 * @px:	proxy
 * @ep:	endpoint
 *
 * Return: true for the gateway's IPv4 or IPv6 address.
 */
bool relay_is_host(const struct proxy *px, const struct flow_endpoint *ep)
{
	static const uint8_t zero[16];
	const struct moat_shm_header *h = &px->region.hdr;

	if (ep->family == 4)
		return !memcmp(ep->addr, h->gateway_ip4, 4);
	return memcmp(h->gateway_ip6, zero, 16) && !memcmp(ep->addr, h->gateway_ip6, 16);
}

/**
 * relay_is_dns() - is @ep the DNS address (the forwarder)
 * @px:	proxy
 * @ep:	endpoint
 *
 * Return: true for the header's dns_ip4.
 */
bool relay_is_dns(const struct proxy *px, const struct flow_endpoint *ep)
{
	return ep->family == 4 && !memcmp(ep->addr, px->region.hdr.dns_ip4, 4);
}

/**
 * relay_dns_intercepts() - is a guest flow to @dst DNS for the forwarder
 * @px:		proxy
 * @dst:	the destination the guest chose
 *
 * Port 53 of the DNS address always is; port 53 of any other address too,
 * unless the policy says "dns": {"intercept": false} (docs/policy.md, "DNS
 * interception").
 *
 * Return: true if the flow's queries go to dnsfwd.c.
 */
bool relay_dns_intercepts(const struct proxy *px, const struct flow_endpoint *dst)
{
	if (dst->port != 53)
		return false;
	if (relay_is_dns(px, dst))
		return true;
	return px->policy && policy_dns(px->policy)->intercept != POLICY_DNS_INTERCEPT_OFF;
}

/**
 * relay_sockaddr() - the socket address to reach @ep at
 * @px:		proxy
 * @ep:		endpoint (address and port)
 * @to_host:	dial host loopback instead (127.0.0.1 for family 4, ::1 for 6)
 * @ss:		filled
 *
 * Return: the sockaddr's length.
 */
int relay_sockaddr(const struct proxy *px, const struct flow_endpoint *ep, bool to_host,
		   struct sockaddr_storage *ss)
{
	(void)px;
	memset(ss, 0, sizeof(*ss));
	if (ep->family == 4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
		if (to_host)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else
			memcpy(&sin->sin_addr, ep->addr, 4);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(ep->port);
		if (to_host)
			sin6->sin6_addr = in6addr_loopback;
		else
			memcpy(&sin6->sin6_addr, ep->addr, 16);
		return sizeof(*sin6);
	}
}

/**
 * relay_endpoint() - a flow endpoint from a socket address
 * @sa:	AF_INET or AF_INET6 address (v4-mapped v6 becomes family 4)
 * @ep:	filled (zeroed for another family)
 */
void relay_endpoint(const struct sockaddr *sa, struct flow_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		ep->family = 4;
		ep->port = ntohs(sin->sin_port);
		memcpy(ep->addr, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		ep->port = ntohs(sin6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			ep->family = 4;
			memcpy(ep->addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			ep->family = 6;
			memcpy(ep->addr, &sin6->sin6_addr, 16);
		}
	}
}

/**
 * relay_format_ep() - "a.b.c.d:port" or "[v6]:port"
 * @ep:		endpoint
 * @buf:	output
 * @len:	its size (64 suffices)
 *
 * Return: snprintf's result.
 */
int relay_format_ep(const struct flow_endpoint *ep, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(ep->family == 4 ? AF_INET : AF_INET6, ep->addr, a, sizeof(a));
	return snprintf(buf, len, ep->family == 4 ? "%s:%u" : "[%s]:%u", a, ep->port);
}

/**
 * relay_policy_changed() - a new policy is in force
 * @px:	proxy
 */
void relay_policy_changed(struct proxy *px)
{
	limits_configure(&px->limits, policy_limits(px->policy), uv_now(&px->loop));
	CNT_SET(px, policy_generation, px->generation);
	relay_kick(px);
}

/**
 * relay_init() - attach the rings and start every part of the proxy
 * @px:	proxy with region, loop and the four fds set
 *
 * Return: 0 or a negative errno.
 */
int relay_init(struct proxy *px)
{
	struct region *r = &px->region;
	const struct moat_shm_header *h = &r->hdr;
	int rc;

	px->cnt = r->part[MOAT_PART_CNT_PROXY];
	px->mbox = r->part[MOAT_PART_MBOX_PROXY];
	ring_attach(&px->s2p, r->part[MOAT_PART_RING_S2P],
		    region_ring_capacity(r, MOAT_PART_RING_S2P), -1, px->efd_netstack,
		    &px->cnt->wakes_sent);
	ring_attach(&px->p2s, r->part[MOAT_PART_RING_P2S],
		    region_ring_capacity(r, MOAT_PART_RING_P2S), px->efd_netstack, -1,
		    &px->cnt->wakes_sent);
	list_init(&px->backlog);
	list_init(&px->waiters);
	memset(&px->env, 0, sizeof(px->env));
	px->env.host[0].family = AF_INET;
	memcpy(px->env.host[0].addr, h->gateway_ip4, 4);
	px->env.host[1].family = AF_INET;
	memcpy(px->env.host[1].addr, h->dns_ip4, 4);
	px->env.host[2].family = AF_INET6;
	memcpy(px->env.host[2].addr, h->gateway_ip6, 16);
	px->env.n_host = 3;
	limits_init(&px->limits, h->max_tcp_connections, h->max_udp_flows);
	rc = pins_init(&px->pins, PINS_DEFAULT_MAX);
	if (rc < 0)
		return rc;
	if ((rc = pool_init(&px->pools[MOAT_POOL_P2S_CONTROL], "p2s_control",
			    sizeof(struct backlog_rec) + BACKLOG_CONTROL_MAX,
			    BACKLOG_PER_FLOW * (h->max_tcp_connections + 1) + BACKLOG_SPARE)) < 0 ||
	    (rc = pool_init(&px->pools[MOAT_POOL_P2S_DGRAM], "p2s_dgram",
			    sizeof(struct backlog_rec) + FLOW_RECORD_MAX, BACKLOG_DGRAMS)) < 0)
		return rc;
	px->efd_poll.data = px->prepare.data = px->idle.data = px->tick.data = px;
	if ((rc = uv_poll_init(&px->loop, &px->efd_poll, px->efd_self)) < 0 ||
	    (rc = uv_prepare_init(&px->loop, &px->prepare)) < 0 ||
	    (rc = uv_idle_init(&px->loop, &px->idle)) < 0 ||
	    (rc = uv_timer_init(&px->loop, &px->tick)) < 0)
		return rc;
	/*
	 * libuv opens /dev/null the first time a stream handle is made (its
	 * reserve fd for EMFILE, loop->emfile_fd). Make one now, before the
	 * seccomp filter forbids openat.
	 */
	{
		static uv_tcp_t dummy;

		if ((rc = uv_tcp_init(&px->loop, &dummy)) < 0)
			return rc;
		uv_close((uv_handle_t *)&dummy, NULL);
	}
	if ((rc = tcpflow_init(px)) < 0 || (rc = udpflow_init(px)) < 0 ||
	    (rc = udppub_init(px)) < 0 || (rc = dnsfwd_init(px)) < 0 || (rc = ping_init(px)) < 0 ||
	    (rc = control_init(px)) < 0)
		return rc;
	uv_poll_start(&px->efd_poll, UV_READABLE, on_efd);
	uv_prepare_start(&px->prepare, on_prepare);
	uv_timer_start(&px->tick, on_tick, TICK_MS, TICK_MS);
	relay_pools_sync(px, false);
	return 0;
}

static void close_cb(uv_handle_t *h)
{
	(void)h;
}

/**
 * relay_fini() - close everything (unit tests; the process itself just exits)
 * @px:	proxy
 *
 * Each part closes its handles and runs the loop once for their close
 * callbacks before it frees its state.
 */
void relay_fini(struct proxy *px)
{
	px->violation = true; /* nothing is produced anymore */
	uv_close((uv_handle_t *)&px->efd_poll, close_cb);
	uv_close((uv_handle_t *)&px->prepare, close_cb);
	uv_close((uv_handle_t *)&px->idle, close_cb);
	uv_close((uv_handle_t *)&px->tick, close_cb);
	control_fini(px);
	ping_fini(px);
	dnsfwd_fini(px);
	udppub_fini(px);
	udpflow_fini(px);
	tcpflow_fini(px);
	uv_run(&px->loop, UV_RUN_NOWAIT);
	while (!list_empty(&px->backlog)) {
		struct backlog_rec *r = list_entry(px->backlog.next, struct backlog_rec, node);

		list_del(&r->node);
		pool_put(backlog_pool(px, r->type), r);
	}
	px->backlog_len = 0;
	for (int i = 0; i < MOAT_POOL_COUNT; i++)
		pool_fini(&px->pools[i]);
	pins_fini(&px->pins);
	if (px->policy)
		policy_free(px->policy);
	px->policy = NULL;
}
