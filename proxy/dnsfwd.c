/* SPDX-License-Identifier: MIT */
/*
 * dnsfwd.c - the proxy's DNS forwarder (the guest's 10.0.2.3:53, and port 53
 * anywhere)
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. Guest queries to the DNS address come as DGRAM
 * records (UDP) or as the byte stream of a TCP flow that tcpflow.c hands us
 * (length-prefixed messages, RFC 1035 4.2.2). So do queries to port 53 of
 * any other address (DNS interception, relay_dns_intercepts()), unless the
 * policy turns that off: they are decided exactly the same way and answered
 * from the address the guest asked, so that a guest cannot walk around the
 * DNS rules, rebind protection or pinning by naming its own resolver. For
 * each query:
 *  1. parse it with dnsmsg.c (malformed: FORMERR, other opcodes: NOTIMP,
 *     counted);
 *  2. decide its name with policy_decide_dns(); a denied name is answered
 *     NXDOMAIN here and never leaves the machine (a "terminate" rule is a
 *     violation, reported first); counted, and a "dns_denial" event;
 *  3. forward it with a fresh random id to the policy's nameservers, else
 *     the ones of the control document (the host's resolv.conf) -- or, with
 *     "intercept": "forward_to_requested", to the address the guest asked
 *     if the rules let it reach that address (else REFUSED) -- in order:
 *     UDP for UDP queries, TCP for TCP queries, a connected socket per
 *     query, policy_dns()->timeout_ms per try, the next server on a
 *     timeout or an error (ICMP unreachable, refused connect); none left
 *     or none configured: SERVFAIL;
 *  4. accept only an answer with our id and the query's question (dnsmsg.c
 *     checks the whole message; a malformed one is SERVFAIL, counted);
 *  5. rebind protection: if any address in the answer is private,
 *     loopback, link-local, metadata, the host or unspecified and no
 *     address rule of the policy allows it, the guest gets NXDOMAIN;
 *  6. pin every A/AAAA record of the question's CNAME chain with every
 *     name of the chain (pins.c), so domain rules can match later
 *     connections to those addresses;
 *  7. answer with the guest's id; a UDP answer larger than the client's
 *     size (512, or its EDNS0 size) is cut to the question with TC=1.
 * The number of queries in flight is bounded; so are the queries one TCP
 * stream may pipeline (the stream's credit is held back beyond that).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "proxy/dnsmsg.h"
#include "proxy/proxy_internal.h"

#define DNSFWD_INFLIGHT_MAX	  256 /* queries waiting for upstream */
#define DNSFWD_STREAM_PIPELINE	  8   /* per TCP stream before its credit is held */
#define DNSFWD_STREAM_MAX	  64  /* per TCP stream: beyond, SERVFAIL at once */
#define DNSFWD_TIMEOUT_DEFAULT_MS 2000
#define DNSFWD_MSG_MAX		  65535
#define DNSFWD_STREAMS_MAX	  64 /* guest DNS-over-TCP connections at once */
/* Query contexts: the ones in flight plus the ones whose handles still close. */
#define DNSFWD_CTX_MAX		  (2 * DNSFWD_INFLIGHT_MAX)

/* A guest's DNS-over-TCP connection (MOAT_POOL_DNS_STREAM). */
struct dnsfwd_stream {
	struct tcp_flow *flow;
	struct flow_endpoint server, guest; /* the address the guest connected to, and its own */
	size_t len;
	int pending;
	uint32_t held;
	bool shut;
	bool failed; /* an answer could not be queued: tcpflow.c resets the flow */
	uint8_t buf[2 + DNSFWD_MSG_MAX];
};

/* One try toward one nameserver; a retry uses the next one (handles close late). */
struct dnsfwd_conn {
	union {
		uv_handle_t h;
		uv_udp_t udp;
		uv_tcp_t tcp;
	} u;
	struct dnsfwd_ctx *c;
	uv_connect_t creq;
	uv_write_t wreq;
};

/* One query (MOAT_POOL_DNS_QUERY); its tries are @tries[0..ns-1]. */
struct dnsfwd_ctx {
	struct list_head node;
	struct proxy *px;
	struct dnsfwd_stream *stream; /* TCP origin, NULL if UDP or the stream is gone */
	bool tcp;
	struct flow_endpoint guest, server; /* UDP origin: reply dst and src */
	struct dnsmsg_query q;
	uint16_t len, up_id;
	int ns, n_ns;
	struct sockaddr_storage nsaddr[POLICY_MAX_NAMESERVERS];
	uint32_t timeout_ms;
	struct dnsfwd_conn *conn; /* the current try */
	struct dnsfwd_conn tries[POLICY_MAX_NAMESERVERS];
	bool timer_open, done;
	uv_timer_t timer;
	uint8_t lenpfx[2];
	size_t rlen;
	int handles; /* timer + connections not yet closed */
	/* last, so that query() clears only what is before them */
	uint8_t msg[DNSFWD_MSG_MAX];	  /* the query as sent upstream (our id) */
	uint8_t rbuf[2 + DNSFWD_MSG_MAX]; /* TCP answer being read */
};

struct dnsfwd {
	struct list_head queries;
	int inflight;
	uint8_t rnd[256];
	size_t rnd_left;
	uint8_t ubuf[DNSFWD_MSG_MAX + 1]; /* UDP answer buffer */
	struct dnsmsg_answer ans;
	uint8_t out[DNSFWD_MSG_MAX + 2];
};

static uint16_t random_id(struct dnsfwd *fw)
{
	uint16_t v;

	if (fw->rnd_left < 2) {
		if (getrandom(fw->rnd, sizeof(fw->rnd), 0) != (ssize_t)sizeof(fw->rnd)) {
			/* Not expected; fall back to a weaker mix rather than a fixed id. */
			for (size_t i = 0; i < sizeof(fw->rnd); i++)
				fw->rnd[i] = (uint8_t)(fw->rnd[i] * 131 + i + (uintptr_t)fw);
		}
		fw->rnd_left = sizeof(fw->rnd);
	}
	memcpy(&v, fw->rnd + sizeof(fw->rnd) - fw->rnd_left, 2);
	fw->rnd_left -= 2;
	return v;
}

/* ---- answering the guest ---------------------------------------------- */

static void stream_release(struct proxy *px, struct dnsfwd_stream *s);

static void reply_udp(struct proxy *px, const struct flow_endpoint *server,
		      const struct flow_endpoint *guest, const uint8_t *msg, size_t len)
{
	struct flow_dgram d;

	memset(&d, 0, sizeof(d));
	d.src = *server;
	d.dst = *guest;
	relay_sendv(px, FLOW_DGRAM, &d, sizeof(d), msg, (uint32_t)len);
}

static void reply_stream(struct proxy *px, struct dnsfwd_stream *s, const uint8_t *msg, size_t len)
{
	uint8_t *b = px->dns->out;

	if (!s || len > DNSFWD_MSG_MAX)
		return;
	b[0] = (uint8_t)(len >> 8);
	b[1] = (uint8_t)len;
	memmove(b + 2, msg, len);
	/*
	 * On failure tcpflow.c resets the flow at the end of this loop iteration
	 * and frees @s then (dnsfwd_stream_close()); @s stays valid until
	 * then, and we parse no further query from it.
	 */
	if (tcpdns_output(px, s->flow, b, (uint32_t)len + 2) < 0)
		s->failed = true;
}

/* Send the answer to where the query came from; @msg may point into fw->out. */
static void answer(struct proxy *px, bool tcp, struct dnsfwd_stream *s,
		   const struct flow_endpoint *server, const struct flow_endpoint *guest,
		   const uint8_t *msg, size_t len)
{
	if (!len)
		return;
	if (tcp)
		reply_stream(px, s, msg, len);
	else
		reply_udp(px, server, guest, msg, len);
}

static void local_reply(struct proxy *px, bool tcp, struct dnsfwd_stream *s,
			const struct flow_endpoint *server, const struct flow_endpoint *guest,
			const struct dnsmsg_query *q, int rcode)
{
	uint8_t b[DNSMSG_HDR_LEN + DNSMSG_WIRE_NAME_MAX + 4];
	size_t n = dnsmsg_reply(NULL, 0, q, rcode, b, sizeof(b));

	answer(px, tcp, s, server, guest, b, n);
}

/* ---- the query's life ---------------------------------------------------- */

static void ctx_free(struct dnsfwd_ctx *c)
{
	pool_put(&c->px->pools[MOAT_POOL_DNS_QUERY], c);
}

static void ctx_unref(struct dnsfwd_ctx *c)
{
	if (--c->handles == 0)
		ctx_free(c);
}

static void timer_closed(uv_handle_t *h)
{
	ctx_unref(h->data);
}

static void conn_closed(uv_handle_t *h)
{
	struct dnsfwd_conn *conn = h->data;
	struct dnsfwd_ctx *c = conn->c;

	ctx_unref(c);
}

static void close_conn(struct dnsfwd_ctx *c)
{
	struct dnsfwd_conn *conn = c->conn;

	if (conn) {
		c->conn = NULL;
		uv_close(&conn->u.h, conn_closed);
	}
}

/* The query is over (answered by the caller): release everything. */
static void ctx_done(struct dnsfwd_ctx *c)
{
	struct proxy *px = c->px;
	struct dnsfwd_stream *s = c->stream;

	if (c->done)
		return;
	c->done = true;
	c->stream = NULL;
	list_del(&c->node);
	px->dns->inflight--;
	close_conn(c);
	if (c->timer_open) {
		c->timer_open = false;
		uv_close((uv_handle_t *)&c->timer, timer_closed);
	}
	if (s) {
		s->pending--;
		stream_release(px, s);
	}
}

/* Is @conn the current try of a live query? */
static struct dnsfwd_ctx *current(struct dnsfwd_conn *conn)
{
	struct dnsfwd_ctx *c = conn->c;

	return !c->done && c->conn == conn ? c : NULL;
}

static void fail(struct dnsfwd_ctx *c, int rcode, int counter)
{
	struct proxy *px = c->px;

	CNT_ADD(px, dns_queries[counter], 1);
	if (!c->tcp || c->stream)
		local_reply(px, c->tcp, c->stream, &c->server, &c->guest, &c->q, rcode);
	ctx_done(c);
}

static bool rebinding(struct proxy *px, const struct dnsmsg_answer *a)
{
	for (int i = 0; i < a->n_addr; i++) {
		struct policy_addr pa = { .family = a->addr[i].family == 4 ? AF_INET : AF_INET6 };
		enum policy_group g;

		memcpy(pa.addr, a->addr[i].addr, a->addr[i].family == 4 ? 4 : 16);
		g = policy_classify(&px->env, &pa);
		if (g == POLICY_GROUP_PUBLIC || g == POLICY_GROUP_MULTICAST)
			continue;
		if (!policy_address_rule_allows(px->policy, &pa, 0, 0))
			return true;
	}
	return false;
}

static void pin_answer(struct proxy *px, const struct dnsmsg_answer *a)
{
	uint64_t now = uv_now(&px->loop);

	for (int i = 0; i < a->n_addr; i++) {
		if (!a->addr[i].in_chain)
			continue;
		for (int k = 0; k < a->n_chain; k++)
			pins_add(&px->pins, a->addr[i].family, a->addr[i].addr, a->chain[k],
				 a->addr[i].ttl, now);
	}
	CNT_SET(px, dns_pins, px->pins.count);
}

/*
 * An upstream answer arrived. Return: 0 handled (query done), -ESRCH not
 * ours (keep waiting).
 */
static int upstream_answer(struct dnsfwd_ctx *c, uint8_t *msg, size_t len)
{
	struct proxy *px = c->px;
	struct dnsfwd *fw = px->dns;
	struct dnsmsg_answer *a = &fw->ans;
	const struct policy_dns *pd = policy_dns(px->policy);
	int rc = dnsmsg_parse_answer(msg, len, &c->q, c->up_id, a);

	if (rc == -ESRCH)
		return -ESRCH;
	if (rc < 0) {
		log_debug("dns: malformed answer for %s (%d)", c->q.q.name, rc);
		fail(c, DNSMSG_RCODE_SERVFAIL, MOAT_DNS_UPSTREAM_BAD);
		return 0;
	}
	if (DNSMSG_RCODE(a->flags) == DNSMSG_RCODE_NOERROR && pd->rebind_protection &&
	    rebinding(px, a)) {
		log_info("dns: rebind protection: %s resolves to a non-public address",
			 c->q.q.name);
		fail(c, DNSMSG_RCODE_NXDOMAIN, MOAT_DNS_REBIND);
		return 0;
	}
	if (DNSMSG_RCODE(a->flags) == DNSMSG_RCODE_NOERROR)
		pin_answer(px, a);
	CNT_ADD(px, dns_queries[MOAT_DNS_FORWARDED], 1);
	dnsmsg_set_id(msg, len, c->q.id);
	if (!c->tcp && len > c->q.udp_size) {
		size_t n = dnsmsg_truncate(msg, len, &c->q, fw->out, sizeof(fw->out));

		CNT_ADD(px, dns_queries[MOAT_DNS_TRUNCATED], 1);
		answer(px, false, NULL, &c->server, &c->guest, fw->out, n);
	} else if (!c->tcp || c->stream) {
		answer(px, c->tcp, c->stream, &c->server, &c->guest, msg, len);
	}
	ctx_done(c);
	return 0;
}

static void try_next(struct dnsfwd_ctx *c);

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dnsfwd_conn *conn = h->data;

	(void)suggested;
	buf->base = (char *)conn->c->px->dns->ubuf;
	buf->len = sizeof(conn->c->px->dns->ubuf);
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			const struct sockaddr *addr, unsigned flags)
{
	struct dnsfwd_ctx *c = current(h->data);

	if (!c)
		return;
	if (nread < 0) {
		/* ICMP unreachable on the connected socket: this server is dead. */
		close_conn(c);
		try_next(c);
		return;
	}
	if (!addr || (flags & UV_UDP_PARTIAL))
		return;
	upstream_answer(c, (uint8_t *)buf->base, (size_t)nread);
}

static void on_tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dnsfwd_conn *conn = h->data;
	struct dnsfwd_ctx *c = conn->c;

	(void)suggested;
	buf->base = (char *)c->rbuf + c->rlen;
	buf->len = 2 + DNSFWD_MSG_MAX - c->rlen;
}

static void on_tcp_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct dnsfwd_ctx *c = current(h->data);
	size_t want;

	(void)buf;
	if (!c || nread == 0)
		return;
	if (nread < 0) {
		close_conn(c);
		try_next(c);
		return;
	}
	c->rlen += (size_t)nread;
	if (c->rlen < 2)
		return;
	want = 2 + ((size_t)c->rbuf[0] << 8 | c->rbuf[1]);
	if (c->rlen < want)
		return;
	uv_read_stop(h);
	if (upstream_answer(c, c->rbuf + 2, want - 2) == -ESRCH) {
		/* Over TCP nothing else can come: this server answered wrongly. */
		CNT_ADD(c->px, dns_queries[MOAT_DNS_UPSTREAM_BAD], 1);
		close_conn(c);
		try_next(c);
	}
}

static void on_tcp_write(uv_write_t *req, int status)
{
	struct dnsfwd_ctx *c = current(req->data);

	if (!c || status == 0)
		return;
	close_conn(c);
	try_next(c);
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
	struct dnsfwd_conn *conn = req->data;
	struct dnsfwd_ctx *c = current(conn);
	uv_buf_t b[2];

	if (!c)
		return;
	if (status < 0) {
		close_conn(c);
		try_next(c);
		return;
	}
	c->lenpfx[0] = (uint8_t)(c->len >> 8);
	c->lenpfx[1] = (uint8_t)c->len;
	b[0] = uv_buf_init((char *)c->lenpfx, 2);
	b[1] = uv_buf_init((char *)c->msg, c->len);
	conn->wreq.data = conn;
	if (uv_write(&conn->wreq, (uv_stream_t *)&conn->u.tcp, b, 2, on_tcp_write) < 0 ||
	    uv_read_start((uv_stream_t *)&conn->u.tcp, on_tcp_alloc, on_tcp_read) < 0) {
		close_conn(c);
		try_next(c);
	}
}

static void on_timeout(uv_timer_t *t)
{
	struct dnsfwd_ctx *c = t->data;

	if (c->done)
		return;
	close_conn(c);
	try_next(c);
}

/* Start try number c->ns - 1, toward @sa. Return: 0 or a libuv error (conn closed). */
static int start_try(struct dnsfwd_ctx *c, const struct sockaddr *sa)
{
	struct proxy *px = c->px;
	struct dnsfwd_conn *conn = &c->tries[c->ns - 1];
	int rc;

	memset(conn, 0, sizeof(*conn));
	conn->c = c;
	rc = c->tcp ? uv_tcp_init(&px->loop, &conn->u.tcp) : uv_udp_init(&px->loop, &conn->u.udp);
	if (rc < 0)
		return rc;
	conn->u.h.data = conn;
	c->conn = conn;
	c->handles++;
	if (c->tcp) {
		conn->creq.data = conn;
		rc = uv_tcp_connect(&conn->creq, &conn->u.tcp, sa, on_tcp_connect);
	} else {
		rc = uv_udp_connect(&conn->u.udp, sa);
		if (rc == 0) {
			uv_buf_t b = uv_buf_init((char *)c->msg, c->len);

			rc = uv_udp_try_send(&conn->u.udp, &b, 1, NULL);
			if (rc >= 0)
				rc = uv_udp_recv_start(&conn->u.udp, on_udp_alloc, on_udp_recv);
		}
	}
	if (rc < 0)
		close_conn(c);
	return rc < 0 ? rc : 0;
}

/* Send the query to the next nameserver, or give up with SERVFAIL. */
static void try_next(struct dnsfwd_ctx *c)
{
	while (!c->done) {
		int rc;

		if (c->ns >= c->n_ns) {
			fail(c, DNSMSG_RCODE_SERVFAIL, MOAT_DNS_SERVFAIL);
			return;
		}
		c->up_id = random_id(c->px->dns);
		dnsmsg_set_id(c->msg, c->len, c->up_id);
		c->rlen = 0;
		rc = start_try(c, (const struct sockaddr *)&c->nsaddr[c->ns++]);
		if (rc < 0) {
			log_debug("dns: nameserver %d: %s", c->ns - 1, uv_strerror(rc));
			continue;
		}
		uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
		return;
	}
}

/*
 * "intercept": "forward_to_requested": the query goes to the resolver the
 * guest asked, so that address must be one the rules let it reach (as an
 * ordinary udp/tcp flow to port 53). Return: true if so; else the guest got
 * REFUSED and the denial is counted and reported.
 */
static bool requested_allowed(struct proxy *px, bool tcp, struct dnsfwd_stream *s,
			      const struct flow_endpoint *server, const struct flow_endpoint *guest,
			      const struct dnsmsg_query *q)
{
	enum policy_proto proto = tcp ? POLICY_PROTO_TCP : POLICY_PROTO_UDP;
	struct policy_decision d = relay_decide(px, POLICY_EGRESS, proto, server);

	if (!relay_denied(px, d, POLICY_EGRESS, proto, server, 0))
		return true;
	CNT_ADD(px, dns_queries[MOAT_DNS_DENIED], 1);
	local_reply(px, tcp, s, server, guest, q, DNSMSG_RCODE_REFUSED);
	return false;
}

/* A query the rules deny: NXDOMAIN, a dns_denial event, maybe a violation. */
static void query_denied(struct proxy *px, bool tcp, struct dnsfwd_stream *s,
			 const struct flow_endpoint *server, const struct flow_endpoint *guest,
			 const struct dnsmsg_query *q, struct policy_decision d)
{
	enum policy_proto proto = tcp ? POLICY_PROTO_TCP : POLICY_PROTO_UDP;
	struct flow_endpoint dst = *server;

	dst.port = 53;
	if (d.terminate)
		relay_violation(px, MOAT_VIOL_POLICY_TERMINATE, d.rule, 0,
				tcp ? MOAT_P_TCP : MOAT_P_UDP, &dst,
				"a terminate rule matched a DNS query");
	CNT_ADD(px, dns_queries[MOAT_DNS_DENIED], 1);
	control_event_denial(px, "dns_denial", POLICY_EGRESS, proto, NULL, q->q.name, d.rule,
			     d.terminate, 0, NULL);
	log_debug("dns: denied %s rule=%d", q->q.name, d.rule);
	local_reply(px, tcp, s, server, guest, q, DNSMSG_RCODE_NXDOMAIN);
}

/*
 * Where @c goes: the resolver the guest asked (forward_to_requested), the
 * policy's nameservers, or the host's.
 */
static void choose_nameservers(struct proxy *px, struct dnsfwd_ctx *c, const struct policy_dns *pd)
{
	if (!relay_is_dns(px, &c->server) && pd->intercept == POLICY_DNS_INTERCEPT_REQUESTED) {
		/* the resolver the guest asked (the gateway means the host, as for any flow) */
		relay_sockaddr(px, &c->server, relay_is_host(px, &c->server), &c->nsaddr[0]);
		c->n_ns = 1;
	} else if (pd->n_nameservers) {
		for (int i = 0; i < pd->n_nameservers && i < POLICY_MAX_NAMESERVERS; i++) {
			struct flow_endpoint ep = { .port = pd->nameservers[i].port };

			ep.family = pd->nameservers[i].addr.family == AF_INET6 ? 6 : 4;
			memcpy(ep.addr, pd->nameservers[i].addr.addr, ep.family == 4 ? 4 : 16);
			relay_sockaddr(px, &ep, false, &c->nsaddr[c->n_ns++]);
		}
	} else {
		memcpy(c->nsaddr, px->nameservers,
		       sizeof(c->nsaddr[0]) * (size_t)px->n_nameservers);
		c->n_ns = px->n_nameservers;
	}
}

static void query(struct proxy *px, bool tcp, struct dnsfwd_stream *s,
		  const struct flow_endpoint *server, const struct flow_endpoint *guest,
		  const uint8_t *msg, size_t len)
{
	struct dnsfwd *fw = px->dns;
	struct dnsmsg_query q;
	const struct policy_dns *pd;
	struct policy_decision d;
	struct dnsfwd_ctx *c;
	int rc = dnsmsg_parse_query(msg, len, &q);

	if (rc < 0) {
		uint8_t b[DNSMSG_HDR_LEN];

		CNT_ADD(px, dns_queries[MOAT_DNS_FORMERR], 1);
		answer(px, tcp, s, server, guest, b, dnsmsg_formerr(msg, len, b, sizeof(b)));
		return;
	}
	if (!relay_is_dns(px, server))
		CNT_ADD(px, dns_intercepted, 1);
	d = policy_decide_dns(px->policy, q.q.name, tcp ? POLICY_PROTO_TCP : POLICY_PROTO_UDP);
	if (!d.allow) {
		query_denied(px, tcp, s, server, guest, &q, d);
		return;
	}
	pd = policy_dns(px->policy);
	if (!relay_is_dns(px, server) && pd->intercept == POLICY_DNS_INTERCEPT_REQUESTED &&
	    !requested_allowed(px, tcp, s, server, guest, &q))
		return;
	if (fw->inflight >= DNSFWD_INFLIGHT_MAX || (s && s->pending >= DNSFWD_STREAM_MAX)) {
		CNT_ADD(px, dns_queries[MOAT_DNS_SERVFAIL], 1);
		local_reply(px, tcp, s, server, guest, &q, DNSMSG_RCODE_SERVFAIL);
		return;
	}
	c = pool_get(&px->pools[MOAT_POOL_DNS_QUERY]);
	if (!c || len > sizeof(c->msg)) {
		pool_put(&px->pools[MOAT_POOL_DNS_QUERY], c);
		CNT_ADD(px, dns_queries[MOAT_DNS_SERVFAIL], 1);
		local_reply(px, tcp, s, server, guest, &q, DNSMSG_RCODE_SERVFAIL);
		return;
	}
	/* everything but the buffers, which are written before they are read */
	memset(c, 0, offsetof(struct dnsfwd_ctx, msg));
	c->px = px;
	c->tcp = tcp;
	c->stream = s;
	c->server = *server;
	c->guest = *guest;
	c->q = q;
	memcpy(c->msg, msg, len);
	c->len = (uint16_t)len;
	c->timeout_ms = pd->timeout_ms ? pd->timeout_ms : DNSFWD_TIMEOUT_DEFAULT_MS;
	choose_nameservers(px, c, pd);
	uv_timer_init(&px->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = true;
	c->handles = 1;
	list_add_tail(&fw->queries, &c->node);
	fw->inflight++;
	if (s)
		s->pending++;
	try_next(c);
}

/**
 * dnsfwd_udp_input() - a UDP query from the guest to the DNS address
 * @px:		proxy
 * @d:		addresses (dst is the DNS address, port 53)
 * @data:	the DNS message
 * @len:	its length
 */
void dnsfwd_udp_input(struct proxy *px, const struct flow_dgram *d, const uint8_t *data,
		      uint32_t len)
{
	query(px, false, NULL, &d->dst, &d->src, data, len);
}

/* ---- DNS over TCP from the guest --------------------------------------- */

/**
 * dnsfwd_stream_open() - a guest TCP connection to port 53 (the DNS address, or
 * any address under DNS interception)
 * @px:		proxy
 * @f:		its TCP flow (tcpflow.c)
 * @server:	the address the guest connected to
 * @guest:	the guest's end
 *
 * Return: the stream (closed with dnsfwd_stream_close() or freed by
 * itself after tcpdns_finish()), NULL when DNSFWD_STREAMS_MAX are
 * open (the dns_stream pool refuses, counted).
 */
struct dnsfwd_stream *dnsfwd_stream_open(struct proxy *px, struct tcp_flow *f,
					 const struct flow_endpoint *server,
					 const struct flow_endpoint *guest)
{
	struct dnsfwd_stream *s = pool_get(&px->pools[MOAT_POOL_DNS_STREAM]);

	if (!s)
		return NULL;
	memset(s, 0, offsetof(struct dnsfwd_stream, buf));
	s->flow = f;
	s->server = *server;
	s->guest = *guest;
	return s;
}

static void stream_free(struct proxy *px, struct dnsfwd_stream *s)
{
	struct list_head *n;

	/*
	 * Queries still in flight answer nobody. At shutdown relay_fini()
	 * runs dnsfwd_fini() (which abandons every query) before tcpflow_fini()
	 * closes the streams: then there is no query left to detach.
	 */
	for (n = px->dns ? px->dns->queries.next : NULL; n && n != &px->dns->queries; n = n->next) {
		struct dnsfwd_ctx *c = list_entry(n, struct dnsfwd_ctx, node);

		if (c->stream == s)
			c->stream = NULL;
	}
	pool_put(&px->pools[MOAT_POOL_DNS_STREAM], s);
}

/* A query of @s finished: return held credit, finish after SHUT_WR. */
static void stream_release(struct proxy *px, struct dnsfwd_stream *s)
{
	if (s->held && s->pending < DNSFWD_STREAM_PIPELINE) {
		tcpdns_credit(px, s->flow, s->held);
		s->held = 0;
	}
	if (s->shut && s->pending == 0) {
		struct tcp_flow *f = s->flow;

		stream_free(px, s);
		tcpdns_finish(px, f);
	}
}

/**
 * dnsfwd_stream_input() - bytes of a guest's DNS-over-TCP stream
 * @px:		proxy
 * @s:		the stream
 * @data:	bytes
 * @len:	their length
 *
 * Queries answered at once (denied, malformed, over a limit) are answered
 * from inside this loop. If an answer cannot be queued the flow is reset
 * by tcpflow.c after we return (tcpdns_output()); @s is still ours until
 * then, and the rest of @data is dropped.
 */
void dnsfwd_stream_input(struct proxy *px, struct dnsfwd_stream *s, const uint8_t *data,
			 uint32_t len)
{
	while (len && !s->failed) {
		size_t room = 2 + DNSFWD_MSG_MAX - s->len, n = len < room ? len : room;

		memcpy(s->buf + s->len, data, n);
		s->len += n;
		data += n;
		len -= (uint32_t)n;
		if (s->pending < DNSFWD_STREAM_PIPELINE)
			tcpdns_credit(px, s->flow, (uint32_t)n);
		else
			s->held += (uint32_t)n;
		while (!s->failed) {
			size_t need;

			if (s->len < 2)
				break;
			need = 2 + ((size_t)s->buf[0] << 8 | s->buf[1]);
			if (s->len < need)
				break;
			query(px, true, s, &s->server, &s->guest, s->buf + 2, need - 2);
			memmove(s->buf, s->buf + need, s->len - need);
			s->len -= need;
		}
	}
}

/**
 * dnsfwd_stream_shut() - the guest shut its side of a DNS stream
 * @px:	proxy
 * @s:	the stream
 *
 * Once every query is answered the stream frees itself and tcpflow.c closes
 * the flow after the answers.
 */
void dnsfwd_stream_shut(struct proxy *px, struct dnsfwd_stream *s)
{
	s->shut = true;
	stream_release(px, s);
}

/**
 * dnsfwd_stream_close() - the TCP flow of a stream is gone
 * @px:	proxy
 * @s:	the stream (freed)
 */
void dnsfwd_stream_close(struct proxy *px, struct dnsfwd_stream *s)
{
	stream_free(px, s);
}

/**
 * dnsfwd_tick() - nothing periodic yet (timeouts are per query)
 * @px:		proxy
 * @now_ms:	current time
 */
void dnsfwd_tick(struct proxy *px, uint64_t now_ms)
{
	(void)px;
	(void)now_ms;
}

/**
 * dnsfwd_init() - forwarder state
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int dnsfwd_init(struct proxy *px)
{
	struct dnsfwd *fw = calloc(1, sizeof(*fw));
	int rc;

	if (!fw)
		return -ENOMEM;
	list_init(&fw->queries);
	px->dns = fw;
	rc = pool_init(&px->pools[MOAT_POOL_DNS_QUERY], "dns_query", sizeof(struct dnsfwd_ctx),
		       DNSFWD_CTX_MAX);
	if (rc == 0)
		rc = pool_init(&px->pools[MOAT_POOL_DNS_STREAM], "dns_stream",
			       sizeof(struct dnsfwd_stream), DNSFWD_STREAMS_MAX);
	return rc;
}

/**
 * dnsfwd_fini() - abandon every query, free the state
 * @px:	proxy
 */
void dnsfwd_fini(struct proxy *px)
{
	struct dnsfwd *fw = px->dns;

	if (!fw)
		return;
	while (!list_empty(&fw->queries)) {
		struct dnsfwd_ctx *c = list_entry(fw->queries.next, struct dnsfwd_ctx, node);

		c->stream = NULL;
		ctx_done(c);
	}
	uv_run(&px->loop, UV_RUN_NOWAIT);
	free(fw);
	px->dns = NULL;
}
