/* SPDX-License-Identifier: MIT */
/*
 * tcpflow.c - the proxy's TCP flows: connect, relay with credits, half-close,
 * resets, published ports
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. A guest connection arrives as CONNECT from the
 * netstack, which holds the guest's SYN until we answer (DESIGN §5,
 * "connect before accept"). We decide it with the policy (the names the
 * DNS forwarder pinned for the destination included), check the limits,
 * and only then dial: the gateway address means the host, so we dial
 * 127.0.0.1 (then ::1) at the same port, the policy having decided on the
 * original address (group "host"); TCP to the DNS address's port 53 is the
 * forwarder's (dnsfwd.c) and opens no socket. The connect's outcome
 * becomes CONNECT_RESULT: ok, refused (ECONNREFUSED), unreachable
 * (EHOSTUNREACH, ENETUNREACH, ...), timeout (our timer of the header's
 * connect_timeout_ms), denied or limit.
 *
 * Relaying follows shm/flow.h's credits:
 *  - world -> guest: we read from the socket only while we hold credit
 *    from the netstack, at most FLOW_DATA_MAX per DATA record, straight
 *    into the p2s ring (relay_reserve()); no credit, no reading
 *    (uv_read_stop), so the upstream's TCP window closes instead of our
 *    memory filling. A full ring or an ingress byte limit also stops the
 *    reading until space or tokens return.
 *  - guest -> world: DATA records of one loop iteration are gathered per
 *    flow and written with one uv_write(); when a write completes its
 *    bytes are owed back as CREDIT, sent (coalesced) at the end of the
 *    iteration, unless an egress byte limit shapes them.
 *  - SHUT_WR from the netstack becomes uv_shutdown() after the queued
 *    writes; EOF from the upstream becomes SHUT_WR toward the netstack.
 *    When both directions are finished we send CLOSE(reset=0).
 *  - An upstream reset (or any read/write error) becomes CLOSE(reset=1);
 *    CLOSE(reset=1) from the netstack closes the socket with SO_LINGER 0
 *    so the server sees a reset; CLOSE(reset=0) from the netstack writes
 *    what is queued, shuts down and closes.
 * After CLOSE either way the id is dead: messages for it are ignored.
 *
 * The netstack is less trusted: DATA before the connection is accepted or
 * after SHUT_WR, a CONNECT for an id in use, more unacknowledged data than
 * any window allows, or credit beyond any send buffer are violations.
 *
 * Published ports (ingress): a listener per published port; an accepted
 * client is decided with direction ingress and the guest port, then
 * announced with ACCEPTED (ids with FLOW_ID_INGRESS); the netstack
 * connects to the guest and answers CONNECT_RESULT; then the relay is the
 * same as above.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"

#define TCP_BUCKETS		4096
#define TCP_MAX_UNACKED		(16ull << 20)	/* guest bytes not yet credited back, per flow */
#define TCP_MAX_BUFFERED	(512ull << 20)	/* the same, all flows together */
#define TCP_MAX_CREDIT		(1ull << 30)	/* credit the netstack may grant */
#define TCP_CONNECT_TIMEOUT_MS	10000		/* if the header says 0 */
#define TCP_DRAIN_MAX_MS	60000		/* graceful close of a flow the netstack closed */
#define TCP_DNS_IDLE_MS		60000		/* DNS over TCP connections */
#define TCP_WB_MIN		65536
#define TCP_DNS_OUTQ_MAX	64		/* DNS answers queued toward a guest that does not read
						 * (dnsfwd.c lets a stream have 64 queries unanswered) */
#define TCP_ACCEPT_BACKOFF_MS	100		/* a published listener's pause after an accept error */

enum tcp_st {
	ST_CONNECTING,		/* egress: dialing the upstream */
	ST_ACCEPTING,		/* ingress: waiting for the netstack's CONNECT_RESULT */
	ST_OPEN,
	ST_DRAINING,		/* id dead; writing what is queued, then FIN, then close */
	ST_CLOSED,		/* handles closing; freed when the last one is closed */
};

enum stop_why { WHY_CREDIT, WHY_RING, WHY_SHAPE };

struct tcp_wreq {
	uv_write_t req;
	struct tcp_flow *f;
	uint32_t len, cap;
	uint8_t data[];
};

struct outbuf {
	struct list_head node;
	uint32_t len, off;
	uint8_t data[];
};

struct tcp_flow {
	struct proxy *px;
	uint32_t id;
	enum tcp_st st;
	enum stop_why why;
	bool dns, hashed, active, reading, eof_up, shut_guest, shut_started, shut_done;
	bool to_host, tried_other, sock_open, timer_open, finishing;
	bool reset_pending;	/* DNS stream: tcpflow_flush() resets it, not *_stream_output() */
	uint8_t dial_family;
	struct tcp_flow *hnext;
	struct list_head all, dirty, shaped;
	struct relay_waiter waiter;
	uv_tcp_t sock;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_shutdown_t sreq;
	struct flow_endpoint src, dst;
	uint64_t credit, owed, unacked;
	struct tcp_wreq *wb;
	uint32_t writes;
	uint64_t last_ms, deadline_ms;
	struct dns_stream *ds;
	struct list_head outq;
	uint32_t outq_n;	/* buffers in outq, at most TCP_DNS_OUTQ_MAX */
	int handles;
};

/*
 * A published port. After an accept error the listening socket is closed
 * and made again TCP_ACCEPT_BACKOFF_MS later: libuv offers no way to pause
 * a listener, and on EMFILE without its reserve fd (which it cannot reopen
 * under our seccomp filter) it would call on_listen() again at once, for
 * ever. A connection we could not take (no memory) stays with libuv, which
 * stops polling until retry accepts it.
 */
struct tcp_listener {
	uv_tcp_t sock;
	uv_timer_t retry;
	struct proxy *px;
	struct policy_publish pub;
	struct sockaddr_storage ss;	/* where we listen */
	struct list_head node;
	bool sock_open;			/* @sock initialised and not closed */
	bool held;			/* libuv holds a connection for us */
	bool closing;			/* tcpflow_fini(): free once @handles is 0 */
	int handles;
};

struct tcp_state {
	struct tcp_flow *hash[TCP_BUCKETS];
	struct list_head all, dirty, shaped, listeners;
	uint64_t count, active;
	uint64_t buffered;		/* sum of the flows' unacked */
	uint32_t next_ingress;
	uint64_t accept_errors;		/* published listeners: failed accepts */
	uv_timer_t shape_timer;
	bool shape_armed;
};

static void flow_kill(struct proxy *px, struct tcp_flow *f, bool send_close, bool reset);
static void start_reading(struct tcp_flow *f);

/* ---- table ---------------------------------------------------------- */

static struct tcp_flow *flow_find(struct proxy *px, uint32_t id)
{
	struct tcp_flow *f = px->tcp->hash[id & (TCP_BUCKETS - 1)];

	while (f && f->id != id)
		f = f->hnext;
	return f;
}

static void flow_hash(struct proxy *px, struct tcp_flow *f)
{
	struct tcp_flow **b = &px->tcp->hash[f->id & (TCP_BUCKETS - 1)];

	f->hnext = *b;
	*b = f;
	f->hashed = true;
	px->tcp->count++;
}

static void flow_unhash(struct proxy *px, struct tcp_flow *f)
{
	struct tcp_flow **b = &px->tcp->hash[f->id & (TCP_BUCKETS - 1)];

	if (!f->hashed)
		return;
	while (*b && *b != f)
		b = &(*b)->hnext;
	if (*b)
		*b = f->hnext;
	f->hashed = false;
	px->tcp->count--;
	if (f->active) {
		f->active = false;
		px->tcp->active--;
		CNT_SUB(px, tcp_active, 1);
	}
}

static void waiter_resume(struct relay_waiter *w);

static struct tcp_flow *flow_new(struct proxy *px, uint32_t id)
{
	struct tcp_flow *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->px = px;
	f->id = id;
	list_init(&f->dirty);
	list_init(&f->shaped);
	list_init(&f->outq);
	list_init(&f->waiter.node);
	f->waiter.resume = waiter_resume;
	f->sock.data = f;
	f->timer.data = f;
	f->last_ms = uv_now(&px->loop);
	list_add_tail(&px->tcp->all, &f->all);
	flow_hash(px, f);
	return f;
}

static void unacked_sub(struct proxy *px, struct tcp_flow *f, uint64_t n)
{
	if (n > f->unacked)
		n = f->unacked;
	f->unacked -= n;
	px->tcp->buffered -= n;
}

static void mark_dirty(struct tcp_flow *f)
{
	if (!list_linked(&f->dirty))
		list_add_tail(&f->px->tcp->dirty, &f->dirty);
}

/**
 * tcpflow_active() - TCP flows counted against the connection limits
 * @px:	proxy
 *
 * Return: flows in the table (connecting, open, DNS streams).
 */
uint64_t tcpflow_active(const struct proxy *px)
{
	return px->tcp ? px->tcp->count : 0;
}

/* ---- teardown ------------------------------------------------------- */

static void maybe_free(struct tcp_flow *f)
{
	if (f->st == ST_CLOSED && f->handles == 0)
		free(f);
}

static void on_closed(uv_handle_t *h)
{
	struct tcp_flow *f = h->data;

	if (h == (uv_handle_t *)&f->sock)
		f->sock_open = false;
	else
		f->timer_open = false;
	f->handles--;
	maybe_free(f);
}

static void free_buffers(struct tcp_flow *f)
{
	free(f->wb);
	f->wb = NULL;
	while (!list_empty(&f->outq)) {
		struct outbuf *b = list_entry(f->outq.next, struct outbuf, node);

		list_del(&b->node);
		free(b);
	}
	f->outq_n = 0;
}

/* Close the flow's handles (RST if @reset) and free it once they are closed. */
static void close_handles(struct proxy *px, struct tcp_flow *f, bool reset)
{
	if (f->st == ST_CLOSED)
		return;
	flow_unhash(px, f);
	unacked_sub(px, f, f->unacked);
	f->st = ST_CLOSED;
	f->reading = false;
	list_del(&f->all);
	list_del(&f->dirty);
	list_del(&f->shaped);
	list_del(&f->waiter.node);
	if (f->ds) {
		struct dns_stream *ds = f->ds;

		f->ds = NULL;
		dnsfwd_stream_close(px, ds);
	}
	free_buffers(f);
	if (f->sock_open && !uv_is_closing((uv_handle_t *)&f->sock)) {
		if (reset) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			uv_os_fd_t fd;

			if (uv_fileno((uv_handle_t *)&f->sock, &fd) == 0)
				setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		uv_close((uv_handle_t *)&f->sock, on_closed);
	}
	if (f->timer_open && !uv_is_closing((uv_handle_t *)&f->timer))
		uv_close((uv_handle_t *)&f->timer, on_closed);
	maybe_free(f);
}

/* The flow ends: tell the netstack (CLOSE) if @send_close, close the socket. */
static void flow_kill(struct proxy *px, struct tcp_flow *f, bool send_close, bool reset)
{
	if (f->st == ST_CLOSED)
		return;
	if (send_close && f->hashed) {
		struct flow_close c = { .id = f->id, .reset = reset ? 1 : 0 };

		relay_send(px, FLOW_CLOSE, &c, sizeof(c));
	}
	close_handles(px, f, reset);
}

static void send_result(struct proxy *px, uint32_t id, uint32_t result)
{
	struct flow_connect_result r = { .id = id, .result = result };

	relay_send(px, FLOW_CONNECT_RESULT, &r, sizeof(r));
	CNT_ADD(px, tcp_connections[result], 1);
}

static void set_active(struct proxy *px, struct tcp_flow *f)
{
	f->st = ST_OPEN;
	f->active = true;
	px->tcp->active++;
	CNT_ADD(px, tcp_active, 1);
}

/* Both directions finished: the flow is over. */
static void maybe_done(struct proxy *px, struct tcp_flow *f)
{
	if (f->st == ST_OPEN && f->eof_up && f->shut_done && f->writes == 0 && !f->wb)
		flow_kill(px, f, true, false);
}

/* ---- shaping -------------------------------------------------------- */

static void on_shape_timer(uv_timer_t *t)
{
	struct proxy *px = t->data;
	struct tcp_state *st = px->tcp;

	st->shape_armed = false;
	while (!list_empty(&st->shaped)) {
		struct tcp_flow *f = list_entry(st->shaped.next, struct tcp_flow, shaped);

		list_del(&f->shaped);
		mark_dirty(f);
		start_reading(f);
	}
	relay_kick(px);
}

static void shape_wait(struct proxy *px, struct tcp_flow *f, bool ingress)
{
	struct tcp_state *st = px->tcp;

	if (!list_linked(&f->shaped))
		list_add_tail(&st->shaped, &f->shaped);
	if (!st->shape_armed) {
		st->shape_armed = true;
		uv_timer_start(&st->shape_timer, on_shape_timer,
			       limits_bytes_wait_ms(&px->limits, ingress, uv_now(&px->loop)), 0);
	}
}

/* ---- world -> guest ------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_flow *f = h->data;
	struct proxy *px = f->px;
	struct flow_data d = { .id = f->id };
	uint64_t want;
	uint32_t got;
	uint8_t *p;

	(void)suggested;
	buf->base = NULL;
	buf->len = 0;
	if (f->st != ST_OPEN || !f->credit) {
		f->why = WHY_CREDIT;
		return;
	}
	want = f->credit < FLOW_DATA_MAX ? f->credit : FLOW_DATA_MAX;
	want = limits_bytes_allowed(&px->limits, true, want, uv_now(&px->loop));
	if (!want) {
		f->why = WHY_SHAPE;
		return;
	}
	p = relay_reserve(px, sizeof(d), (uint32_t)want, &got);
	if (!p) {
		f->why = WHY_RING;
		return;
	}
	memcpy(p, &d, sizeof(d));
	buf->base = (char *)p + sizeof(d);
	buf->len = got;
}

static void stop_reading(struct tcp_flow *f)
{
	if (f->reading) {
		uv_read_stop((uv_stream_t *)&f->sock);
		f->reading = false;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_flow *f = s->data;
	struct proxy *px = f->px;

	(void)buf;
	if (f->st != ST_OPEN) {
		stop_reading(f);
		return;
	}
	if (nread > 0) {
		uint64_t now = uv_now(&px->loop);

		relay_commit(px, FLOW_DATA, (uint32_t)(sizeof(struct flow_data) + (size_t)nread));
		f->credit -= (uint64_t)nread;
		f->last_ms = now;
		CNT_ADD(px, upstream_rx_bytes, (uint64_t)nread);
		relay_limit(px, limits_bytes_done(&px->limits, true, (uint64_t)nread, now),
			    LIMIT_INGRESS_BYTES, f->id, MOAT_P_TCP, &f->dst);
		if (!f->credit)
			stop_reading(f);
		return;
	}
	if (nread == 0)
		return;
	stop_reading(f);
	if (nread == UV_ENOBUFS) {
		if (f->why == WHY_RING)
			relay_wait(px, &f->waiter);
		else if (f->why == WHY_SHAPE)
			shape_wait(px, f, true);
		return;
	}
	if (nread == UV_EOF) {
		struct flow_shut sh = { .id = f->id };

		f->eof_up = true;
		relay_send(px, FLOW_SHUT_WR, &sh, sizeof(sh));
		maybe_done(px, f);
		return;
	}
	/* ECONNRESET or another error: the upstream connection is gone. */
	log_debug("tcp flow %u: upstream %s", f->id, uv_err_name((int)nread));
	flow_kill(px, f, true, true);
}

static void start_reading(struct tcp_flow *f)
{
	if (f->st != ST_OPEN || f->dns || f->eof_up || !f->credit || f->reading ||
	    list_linked(&f->waiter.node) || list_linked(&f->shaped) || !f->sock_open)
		return;
	if (uv_read_start((uv_stream_t *)&f->sock, on_alloc, on_read) == 0)
		f->reading = true;
}

static void waiter_resume(struct relay_waiter *w)
{
	struct tcp_flow *f = list_entry(w, struct tcp_flow, waiter);

	start_reading(f);
}

/* ---- guest -> world ------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
	struct tcp_wreq *wb = req->data;
	struct tcp_flow *f = wb->f;
	struct proxy *px = f->px;
	uint32_t n = wb->len;

	free(wb);
	if (f->st == ST_CLOSED)
		return;
	f->writes--;
	if (status < 0) {
		log_debug("tcp flow %u: write %s", f->id, uv_err_name(status));
		if (f->st == ST_DRAINING)
			close_handles(px, f, true);
		else
			flow_kill(px, f, true, true);
		return;
	}
	CNT_ADD(px, upstream_tx_bytes, n);
	f->owed += n;
	f->last_ms = uv_now(&px->loop);
	mark_dirty(f);
	maybe_done(px, f);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct tcp_flow *f = req->data;
	struct proxy *px = f->px;

	(void)status;
	if (f->st == ST_CLOSED)
		return;
	f->shut_done = true;
	if (f->st == ST_DRAINING) {
		close_handles(px, f, false);
		return;
	}
	maybe_done(px, f);
}

static void credit_return(struct proxy *px, struct tcp_flow *f)
{
	uint64_t now = uv_now(&px->loop), n;
	struct flow_credit c = { .id = f->id };

	if (!f->hashed) {
		f->owed = 0;
		return;
	}
	n = limits_bytes_allowed(&px->limits, false, f->owed, now);
	if (!n) {
		shape_wait(px, f, false);
		return;
	}
	if (n > UINT32_MAX)
		n = UINT32_MAX;
	c.bytes = (uint32_t)n;
	relay_send(px, FLOW_CREDIT, &c, sizeof(c));
	f->owed -= n;
	unacked_sub(px, f, n);
	relay_limit(px, limits_bytes_done(&px->limits, false, n, now), LIMIT_EGRESS_BYTES, f->id,
		    MOAT_P_TCP, &f->dst);
	if (f->owed)
		shape_wait(px, f, false);
}

static void flush_flow(struct proxy *px, struct tcp_flow *f)
{
	bool sock_ok = !f->dns && (f->st == ST_OPEN || f->st == ST_DRAINING) && f->sock_open;

	if (f->st == ST_CLOSED)
		return;
	if (f->reset_pending) {
		/* tcpflow_stream_output() failed: dnsfwd.c is no longer inside the stream. */
		flow_kill(px, f, true, true);
		return;
	}
	if (f->wb && sock_ok) {
		struct tcp_wreq *wb = f->wb;
		uv_buf_t b = uv_buf_init((char *)wb->data, wb->len);
		int rc;

		f->wb = NULL;
		wb->f = f;
		wb->req.data = wb;
		rc = uv_write(&wb->req, (uv_stream_t *)&f->sock, &b, 1, on_write);
		if (rc < 0) {
			free(wb);
			flow_kill(px, f, true, true);
			return;
		}
		f->writes++;
	}
	if (f->owed)
		credit_return(px, f);
	if (f->shut_guest && !f->shut_started && !f->wb && sock_ok) {
		int rc;

		f->shut_started = true;
		f->sreq.data = f;
		rc = uv_shutdown(&f->sreq, (uv_stream_t *)&f->sock, on_shutdown);
		if (rc < 0)
			on_shutdown(&f->sreq, rc);
	}
}

/**
 * tcpflow_flush() - once per loop iteration: write what arrived, return credit,
 * shut down what the guest shut
 * @px:	proxy
 */
void tcpflow_flush(struct proxy *px)
{
	struct tcp_state *st = px->tcp;

	while (!list_empty(&st->dirty) && !px->violation) {
		struct tcp_flow *f = list_entry(st->dirty.next, struct tcp_flow, dirty);

		list_del(&f->dirty);
		flush_flow(px, f);
	}
}

static int append_data(struct tcp_flow *f, const uint8_t *data, uint32_t len)
{
	struct tcp_wreq *wb = f->wb;

	if (!wb || wb->cap - wb->len < len) {
		uint32_t have = wb ? wb->len : 0, cap = wb ? wb->cap : 0;
		uint32_t ncap = cap ? cap : TCP_WB_MIN;
		struct tcp_wreq *nw;

		while (ncap - have < len)
			ncap *= 2;
		nw = realloc(wb, sizeof(*nw) + ncap);
		if (!nw)
			return -ENOMEM;
		if (!wb)
			nw->len = 0;
		nw->cap = ncap;
		f->wb = wb = nw;
	}
	memcpy(wb->data + wb->len, data, len);
	wb->len += len;
	return 0;
}

/**
 * tcpflow_data_input() - DATA from the netstack: bytes the guest sent
 * @px:		proxy
 * @id:		flow id
 * @data:	payload (1..FLOW_DATA_MAX bytes)
 * @len:	its length
 */
void tcpflow_data_input(struct proxy *px, uint32_t id, const uint8_t *data, uint32_t len)
{
	struct tcp_flow *f = flow_find(px, id);

	if (!f)
		return;
	if (f->st != ST_OPEN || f->shut_guest) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, id, MOAT_P_TCP, &f->dst,
				f->st != ST_OPEN ? "DATA before the connection was accepted" :
						   "DATA after SHUT_WR");
		return;
	}
	f->unacked += len;
	px->tcp->buffered += len;
	if (f->unacked > TCP_MAX_UNACKED || px->tcp->buffered > TCP_MAX_BUFFERED) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, id, MOAT_P_TCP, &f->dst,
				"DATA beyond any window (flow control overrun)");
		return;
	}
	f->last_ms = uv_now(&px->loop);
	if (f->dns) {
		if (f->ds)
			dnsfwd_stream_input(px, f->ds, data, len);
		return;
	}
	if (append_data(f, data, len) < 0) {
		flow_kill(px, f, true, true);
		return;
	}
	mark_dirty(f);
}

/**
 * tcpflow_credit_input() - CREDIT from the netstack: we may send @bytes more
 * @px:		proxy
 * @id:		flow id
 * @bytes:	credit
 */
void tcpflow_credit_input(struct proxy *px, uint32_t id, uint32_t bytes)
{
	struct tcp_flow *f = flow_find(px, id);

	if (!f)
		return;
	f->credit += bytes;
	if (f->credit > TCP_MAX_CREDIT) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, id, MOAT_P_TCP, &f->dst,
				"CREDIT beyond any send buffer");
		return;
	}
	if (f->dns) {
		(void)tcpflow_stream_output(px, f, NULL, 0);	/* only sends what is queued */
		return;
	}
	start_reading(f);
}

/**
 * tcpflow_shut_input() - SHUT_WR from the netstack: the guest sent FIN
 * @px:	proxy
 * @id:	flow id
 */
void tcpflow_shut_input(struct proxy *px, uint32_t id)
{
	struct tcp_flow *f = flow_find(px, id);

	if (!f || f->shut_guest)
		return;
	if (f->st != ST_OPEN) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, id, MOAT_P_TCP, &f->dst,
				"SHUT_WR before the connection was accepted");
		return;
	}
	f->shut_guest = true;
	if (f->dns) {
		if (f->ds)
			dnsfwd_stream_shut(px, f->ds);
		return;
	}
	mark_dirty(f);
}

/**
 * tcpflow_close_input() - CLOSE from the netstack
 * @px:		proxy
 * @id:		flow id
 * @reset:	abort (the guest sent RST): the server sees a reset too
 */
void tcpflow_close_input(struct proxy *px, uint32_t id, bool reset)
{
	struct tcp_flow *f = flow_find(px, id);

	if (!f)
		return;
	flow_unhash(px, f);
	if (reset || f->dns || f->st != ST_OPEN || !f->sock_open) {
		close_handles(px, f, reset);
		return;
	}
	/* Orderly: write what is queued, FIN, close (bounded by the tick). */
	stop_reading(f);
	list_del(&f->waiter.node);
	list_del(&f->shaped);
	f->st = ST_DRAINING;
	f->deadline_ms = uv_now(&px->loop) + TCP_DRAIN_MAX_MS;
	if (f->shut_done) {
		close_handles(px, f, false);
		return;
	}
	f->shut_guest = true;
	mark_dirty(f);
}

/* ---- connecting ----------------------------------------------------- */

static uint32_t conn_result(int status)
{
	switch (status) {
	case 0:
		return MOAT_CONN_OK;
	case UV_ECONNREFUSED:
		return MOAT_CONN_REFUSED;
	case UV_ETIMEDOUT:
		return MOAT_CONN_TIMEOUT;
	default:
		return MOAT_CONN_UNREACHABLE;
	}
}

static void dial(struct proxy *px, struct tcp_flow *f);

static void on_retry_closed(uv_handle_t *h)
{
	struct tcp_flow *f = h->data;

	f->sock_open = false;
	f->handles--;
	if (f->st != ST_CONNECTING) {
		maybe_free(f);
		return;
	}
	dial(f->px, f);
}

static void connect_done(struct proxy *px, struct tcp_flow *f, int status)
{
	if (status == 0) {
		uv_timer_stop(&f->timer);
		set_active(px, f);
		uv_tcp_nodelay(&f->sock, 1);
		send_result(px, f->id, MOAT_CONN_OK);
		log_debug("tcp flow %u: connected", f->id);
		start_reading(f);
		return;
	}
	if (status == UV_ECANCELED)
		return;
	if (f->to_host && !f->tried_other) {
		/* The host: 127.0.0.1 refused, try ::1 (or the other way round). */
		f->tried_other = true;
		f->dial_family = f->dial_family == 4 ? 6 : 4;
		uv_close((uv_handle_t *)&f->sock, on_retry_closed);
		return;
	}
	log_debug("tcp flow %u: connect failed: %s", f->id, uv_err_name(status));
	send_result(px, f->id, conn_result(status));
	close_handles(px, f, false);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct tcp_flow *f = req->data;

	if (f->st != ST_CONNECTING)
		return;
	connect_done(f->px, f, status);
}

static void dial(struct proxy *px, struct tcp_flow *f)
{
	struct sockaddr_storage ss;
	struct flow_endpoint ep = f->dst;
	int rc;

	ep.family = f->dial_family;
	relay_sockaddr(px, &ep, f->to_host, &ss);
	rc = uv_tcp_init(&px->loop, &f->sock);
	if (rc < 0) {
		send_result(px, f->id, MOAT_CONN_UNREACHABLE);
		close_handles(px, f, false);
		return;
	}
	f->sock.data = f;
	f->sock_open = true;
	f->handles++;
	f->creq.data = f;
	rc = uv_tcp_connect(&f->creq, &f->sock, (struct sockaddr *)&ss, on_connect);
	if (rc < 0)
		connect_done(px, f, rc);
}

static void on_conn_timer(uv_timer_t *t)
{
	struct tcp_flow *f = t->data;
	struct proxy *px = f->px;

	if (f->st == ST_CONNECTING) {
		log_debug("tcp flow %u: connect timed out", f->id);
		send_result(px, f->id, MOAT_CONN_TIMEOUT);
		close_handles(px, f, false);
	} else if (f->st == ST_ACCEPTING) {
		/* The netstack never answered ACCEPTED: give up on both sides. */
		flow_kill(px, f, true, true);
	}
}

static int start_timer(struct proxy *px, struct tcp_flow *f)
{
	uint32_t ms = px->region.hdr.connect_timeout_ms ? px->region.hdr.connect_timeout_ms :
							   TCP_CONNECT_TIMEOUT_MS;

	if (uv_timer_init(&px->loop, &f->timer) < 0)
		return -1;
	f->timer.data = f;
	f->timer_open = true;
	f->handles++;
	uv_timer_start(&f->timer, on_conn_timer, ms, 0);
	return 0;
}

/**
 * tcpflow_connect_input() - CONNECT from the netstack: decide and dial
 * @px:	proxy
 * @c:	the validated message
 *
 * A terminate rule reaches the mailbox before anything else happens.
 */
void tcpflow_connect_input(struct proxy *px, const struct flow_connect *c)
{
	struct policy_decision d;
	enum limit_verdict v;
	enum limit_kind which;
	struct tcp_flow *f;

	if (flow_find(px, c->id)) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, c->id, MOAT_P_TCP, &c->dst,
				"CONNECT for a flow id in use");
		return;
	}
	if (relay_is_dns(px, &c->dst) && c->dst.port == 53) {
		/* DNS over TCP: the forwarder decides each query. */
		v = limits_new_flow(&px->limits, true, px->tcp->count, uv_now(&px->loop), &which);
		if (relay_limit(px, v, which, c->id, MOAT_P_TCP, &c->dst)) {
			send_result(px, c->id, MOAT_CONN_LIMIT);
			return;
		}
		f = flow_new(px, c->id);
		if (!f) {
			send_result(px, c->id, MOAT_CONN_REFUSED);
			return;
		}
		f->dns = true;
		f->src = c->src;
		f->dst = c->dst;
		f->ds = dnsfwd_stream_open(px, f);
		if (!f->ds) {
			send_result(px, c->id, MOAT_CONN_REFUSED);
			close_handles(px, f, false);
			return;
		}
		set_active(px, f);
		send_result(px, c->id, MOAT_CONN_OK);
		return;
	}
	d = relay_decide(px, POLICY_EGRESS, POLICY_PROTO_TCP, &c->dst);
	if (relay_denied(px, d, POLICY_EGRESS, POLICY_PROTO_TCP, &c->dst, c->id)) {
		send_result(px, c->id, MOAT_CONN_DENIED);
		return;
	}
	v = limits_new_flow(&px->limits, true, px->tcp->count, uv_now(&px->loop), &which);
	if (relay_limit(px, v, which, c->id, MOAT_P_TCP, &c->dst)) {
		send_result(px, c->id, MOAT_CONN_LIMIT);
		return;
	}
	if (relay_is_dns(px, &c->dst)) {
		/* Nothing but the forwarder listens on the DNS address. */
		send_result(px, c->id, MOAT_CONN_REFUSED);
		return;
	}
	f = flow_new(px, c->id);
	if (!f) {
		send_result(px, c->id, MOAT_CONN_REFUSED);
		return;
	}
	f->src = c->src;
	f->dst = c->dst;
	f->st = ST_CONNECTING;
	f->to_host = relay_is_host(px, &c->dst);
	f->dial_family = c->dst.family;
	if (start_timer(px, f) < 0) {
		send_result(px, c->id, MOAT_CONN_UNREACHABLE);
		close_handles(px, f, false);
		return;
	}
	dial(px, f);
}

/* ---- published ports ------------------------------------------------ */

static uint32_t ingress_id(struct proxy *px)
{
	struct tcp_state *st = px->tcp;

	for (;;) {
		uint32_t id;

		st->next_ingress = (st->next_ingress + 1) & ~FLOW_ID_INGRESS;
		if (!st->next_ingress)
			continue;
		id = FLOW_ID_INGRESS | st->next_ingress;
		if (!flow_find(px, id))
			return id;
	}
}

static void listener_pause(struct tcp_listener *l);
static void on_listen_retry(uv_timer_t *t);

/* Take the connection libuv holds for @l. Return: 0, or -1 if it must wait. */
static int listener_take(struct tcp_listener *l)
{
	struct proxy *px = l->px;
	const struct moat_shm_header *h = &px->region.hdr;
	uv_stream_t *server = (uv_stream_t *)&l->sock;
	struct sockaddr_storage peer;
	int plen = sizeof(peer), rc;
	struct flow_endpoint pe;
	enum limit_verdict v;
	enum limit_kind which;
	struct tcp_flow *f;

	f = flow_new(px, ingress_id(px));
	if (!f)
		return -1;
	f->st = ST_ACCEPTING;
	if (uv_tcp_init(&px->loop, &f->sock) < 0) {
		close_handles(px, f, false);
		return -1;
	}
	f->sock.data = f;
	f->sock_open = true;
	f->handles++;
	rc = uv_accept(server, (uv_stream_t *)&f->sock);
	if (rc < 0) {
		/* libuv closed the connection and stopped polling: start again. */
		px->tcp->accept_errors++;
		log_debug("publish: accept: %s", uv_err_name(rc));
		close_handles(px, f, false);
		if (uv_listen(server, 128, server->connection_cb) < 0)
			listener_pause(l);
		return 0;
	}
	if (uv_tcp_getpeername(&f->sock, (struct sockaddr *)&peer, &plen) < 0) {
		close_handles(px, f, false);
		return 0;
	}
	relay_endpoint((struct sockaddr *)&peer, &pe);
	/* The policy sees the peer and the guest port. */
	{
		struct flow_endpoint q = pe;
		struct policy_decision d;

		q.port = l->pub.guest_port;
		d = relay_decide(px, POLICY_INGRESS, POLICY_PROTO_TCP, &q);
		if (relay_denied(px, d, POLICY_INGRESS, POLICY_PROTO_TCP, &q, f->id)) {
			close_handles(px, f, true);
			return 0;
		}
	}
	/* The flow itself is in the table already: count the others. */
	v = limits_new_flow(&px->limits, true, px->tcp->count - 1, uv_now(&px->loop), &which);
	if (relay_limit(px, v, which, f->id, MOAT_P_TCP, &pe)) {
		close_handles(px, f, true);
		return 0;
	}
	/*
	 * The guest sees the real peer, unless it is one the guest could not
	 * answer (loopback, IPv6 toward an IPv4 guest): then the gateway.
	 */
	f->src = pe;
	if (pe.family != 4 || pe.addr[0] == 127) {
		memset(f->src.addr, 0, sizeof(f->src.addr));
		f->src.family = 4;
		memcpy(f->src.addr, h->gateway_ip4, 4);
	}
	memset(&f->dst, 0, sizeof(f->dst));
	f->dst.family = 4;
	memcpy(f->dst.addr, h->guest_ip4, 4);
	f->dst.port = l->pub.guest_port;
	if (start_timer(px, f) < 0) {
		close_handles(px, f, true);
		return 0;
	}
	{
		struct flow_connect a = { .id = f->id, .src = f->src, .dst = f->dst };

		relay_send(px, FLOW_ACCEPTED, &a, sizeof(a));
	}
	relay_kick(px);
	return 0;
}

static void on_listen(uv_stream_t *server, int status)
{
	struct tcp_listener *l = server->data;
	struct proxy *px = l->px;

	if (status < 0) {
		/* EMFILE, ENFILE, ENOMEM, ENOBUFS...: pause, do not spin. */
		if (!px->tcp->accept_errors)
			log_warn("publish: accept on host port %u: %s; pausing %d ms",
				 l->pub.host_port, uv_strerror(status), TCP_ACCEPT_BACKOFF_MS);
		px->tcp->accept_errors++;
		listener_pause(l);
		return;
	}
	/*
	 * A connection not taken now (no memory; a violation or no policy yet)
	 * stays with libuv, which stops polling the listener: the retry timer
	 * takes it later. Returning without uv_accept() would leave the port
	 * dead for good.
	 */
	if (px->violation || !px->policy || listener_take(l) < 0) {
		l->held = true;
		if (!uv_is_active((uv_handle_t *)&l->retry))
			uv_timer_start(&l->retry, on_listen_retry, TCP_ACCEPT_BACKOFF_MS, 0);
	}
}

/**
 * tcpflow_result_input() - CONNECT_RESULT from the netstack for a published port
 * @px:	proxy
 * @r:	the validated message
 */
void tcpflow_result_input(struct proxy *px, const struct flow_connect_result *r)
{
	struct tcp_flow *f = flow_find(px, r->id);

	if (!f)
		return;
	if (f->st != ST_ACCEPTING) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, r->id, MOAT_P_TCP, &f->dst,
				"CONNECT_RESULT for a flow not waiting for one");
		return;
	}
	if (f->timer_open)
		uv_timer_stop(&f->timer);
	if (r->result != MOAT_CONN_OK) {
		/* The guest refused: so do we, with a reset. */
		close_handles(px, f, true);
		return;
	}
	set_active(px, f);
	uv_tcp_nodelay(&f->sock, 1);
	start_reading(f);
}

/* Bind and listen on @l->ss; on failure pause and try again. */
static void listener_open(struct tcp_listener *l)
{
	struct proxy *px = l->px;
	int rc = uv_tcp_init(&px->loop, &l->sock);

	if (rc < 0) {
		uv_timer_start(&l->retry, on_listen_retry, TCP_ACCEPT_BACKOFF_MS, 0);
		return;
	}
	l->sock.data = l;
	l->sock_open = true;
	l->handles++;
	rc = uv_tcp_bind(&l->sock, (struct sockaddr *)&l->ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->sock, 128, on_listen);
	if (rc < 0) {
		log_debug("publish: host port %u: listen again: %s", l->pub.host_port,
			  uv_err_name(rc));
		listener_pause(l);
	}
}

static void listener_closed(uv_handle_t *h)
{
	struct tcp_listener *l = h->data;

	if (h == (uv_handle_t *)&l->sock)
		l->sock_open = false;
	if (--l->handles == 0 && l->closing) {
		free(l);
		return;
	}
	if (h == (uv_handle_t *)&l->sock && !l->closing)
		uv_timer_start(&l->retry, on_listen_retry, TCP_ACCEPT_BACKOFF_MS, 0);
}

/* Close the listening socket; listener_closed() arms the retry timer. */
static void listener_pause(struct tcp_listener *l)
{
	l->held = false;	/* libuv drops a held connection with the socket */
	if (l->sock_open && !uv_is_closing((uv_handle_t *)&l->sock))
		uv_close((uv_handle_t *)&l->sock, listener_closed);
}

static void on_listen_retry(uv_timer_t *t)
{
	struct tcp_listener *l = t->data;

	if (!l->sock_open) {
		listener_open(l);
	} else if (l->held) {
		l->held = false;
		on_listen((uv_stream_t *)&l->sock, 0);
	}
}

/**
 * tcpflow_publish() - listen on a published TCP port
 * @px:		proxy
 * @pub:	host address and port, guest port
 *
 * An accept error later does not end the listener: it pauses for
 * TCP_ACCEPT_BACKOFF_MS, listens again and is counted (tcpflow_accept_errors()).
 *
 * Return: 0, or a negative errno (logged; the other ports still work).
 */
int tcpflow_publish(struct proxy *px, const struct policy_publish *pub)
{
	struct tcp_listener *l;
	struct flow_endpoint ep = { .port = pub->host_port };
	char a[64];
	int rc;

	if (pub->proto != POLICY_PROTO_TCP) {
		log_warn("publish: UDP ports are not supported yet (host port %u)", pub->host_port);
		return -EOPNOTSUPP;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	ep.family = pub->host_addr.family == AF_INET6 ? 6 : 4;
	memcpy(ep.addr, pub->host_addr.addr, ep.family == 4 ? 4 : 16);
	relay_sockaddr(px, &ep, false, &l->ss);
	relay_format_ep(&ep, a, sizeof(a));
	l->px = px;
	l->pub = *pub;
	rc = uv_timer_init(&px->loop, &l->retry);
	if (rc < 0) {
		free(l);
		return rc;
	}
	l->retry.data = l;
	l->handles = 1;
	list_add_tail(&px->tcp->listeners, &l->node);
	rc = uv_tcp_init(&px->loop, &l->sock);
	if (rc < 0)
		goto out;
	l->sock.data = l;
	l->sock_open = true;
	l->handles++;
	rc = uv_tcp_bind(&l->sock, (struct sockaddr *)&l->ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->sock, 128, on_listen);
out:
	if (rc < 0) {
		/* Not retried: a port in use at start-up is a configuration error. */
		log_error("publish: cannot listen on %s: %s", a, uv_strerror(rc));
		return rc;
	}
	log_info("published %s -> guest port %u", a, pub->guest_port);
	return 0;
}

/**
 * tcpflow_accept_errors() - failed accepts on the published ports so far
 * @px:	proxy
 *
 * Return: the count (each one paused its listener, none ended it).
 */
uint64_t tcpflow_accept_errors(const struct proxy *px)
{
	return px->tcp ? px->tcp->accept_errors : 0;
}

/* ---- DNS over TCP (dnsfwd.c's side) ---------------------------------- */

/* Queue a copy of @data on @f's outq (bounded). Return: 0, -ENOBUFS or -ENOMEM. */
static int outq_push(struct tcp_flow *f, const void *data, uint32_t len)
{
	struct outbuf *b;

	if (f->outq_n >= TCP_DNS_OUTQ_MAX)
		return -ENOBUFS;
	b = malloc(sizeof(*b) + len);
	if (!b)
		return -ENOMEM;
	b->len = len;
	b->off = 0;
	memcpy(b->data, data, len);
	/*
	 * Freed when sent, or by free_buffers(). gcc 12's -fanalyzer reports
	 * a leak of b here: a false positive, it loses the pointer stored
	 * through head->prev->next in list_add_tail().
	 */
	list_add_tail(&f->outq, &b->node);
	f->outq_n++;
	return 0;
}

/**
 * tcpflow_stream_output() - queue bytes toward the guest on a DNS stream and
 * send what the credit allows
 * @px:		proxy
 * @f:		the DNS flow
 * @data:	bytes (NULL: only send what is queued)
 * @len:	their length
 *
 * A guest that does not read its answers may have at most TCP_DNS_OUTQ_MAX
 * of them queued. When that bound or the memory runs out the flow is reset,
 * but not here: the caller is inside its stream (dnsfwd_stream_input()
 * parsing further queries), and closing the flow frees the stream. The
 * reset happens in tcpflow_flush(), later in the same loop iteration, which
 * then frees the stream through dnsfwd_stream_close(); until then the
 * stream and the flow stay valid and further output is refused.
 *
 * Return: 0, -ENOBUFS (queue full), -ENOMEM, or -EPIPE (the flow is not
 * open or is being reset).
 */
int tcpflow_stream_output(struct proxy *px, struct tcp_flow *f, const void *data, uint32_t len)
{
	if (f->st != ST_OPEN || f->reset_pending)
		return -EPIPE;
	if (data && len) {
		int rc = outq_push(f, data, len);

		if (rc < 0) {
			log_debug("tcp flow %u: DNS answer not queued (%s): reset", f->id,
				  strerror(-rc));
			f->reset_pending = true;
			mark_dirty(f);
			return rc;
		}
	}
	while (!list_empty(&f->outq) && f->credit) {
		struct outbuf *b = list_entry(f->outq.next, struct outbuf, node);
		uint64_t n = b->len - b->off;
		struct flow_data d = { .id = f->id };

		if (n > f->credit)
			n = f->credit;
		if (n > FLOW_DATA_MAX)
			n = FLOW_DATA_MAX;
		relay_sendv(px, FLOW_DATA, &d, sizeof(d), b->data + b->off, (uint32_t)n);
		f->credit -= n;
		b->off += (uint32_t)n;
		if (b->off == b->len) {
			list_del(&b->node);
			free(b);
			f->outq_n--;
		}
	}
	if (f->finishing && list_empty(&f->outq)) {
		struct flow_shut sh = { .id = f->id };

		/* Safe to close here: tcpflow_stream_finish() detached the stream. */
		relay_send(px, FLOW_SHUT_WR, &sh, sizeof(sh));
		flow_kill(px, f, true, false);
	}
	return 0;
}

/**
 * tcpflow_stream_credit() - a DNS stream consumed @bytes of the guest's data
 * @px:		proxy
 * @f:		the DNS flow
 * @bytes:	bytes to credit back to the netstack
 */
void tcpflow_stream_credit(struct proxy *px, struct tcp_flow *f, uint32_t bytes)
{
	(void)px;
	if (f->st != ST_OPEN || f->reset_pending)
		return;
	f->owed += bytes;
	mark_dirty(f);
}

/**
 * tcpflow_stream_finish() - a DNS stream is done (the guest shut its side and
 * every answer is queued): FIN and CLOSE once the answers are out
 * @px:	proxy
 * @f:	the DNS flow; the stream must not be used by tcpflow.c afterwards
 */
void tcpflow_stream_finish(struct proxy *px, struct tcp_flow *f)
{
	f->ds = NULL;
	f->finishing = true;
	(void)tcpflow_stream_output(px, f, NULL, 0);
}

/* ---- periodic ------------------------------------------------------- */

/**
 * tcpflow_tick() - reap idle flows and flows that will not finish closing
 * @px:		proxy
 * @now_ms:	current time
 */
void tcpflow_tick(struct proxy *px, uint64_t now_ms)
{
	struct tcp_state *st = px->tcp;
	uint32_t idle_s = px->region.hdr.tcp_idle_timeout_s;
	uint64_t idle_ms = (uint64_t)(idle_s ? idle_s : MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S) * 1000;
	struct list_head *n, *nx;

	for (n = st->all.next; n != &st->all; n = nx) {
		struct tcp_flow *f = list_entry(n, struct tcp_flow, all);
		uint64_t lim = f->dns ? TCP_DNS_IDLE_MS : idle_ms;

		nx = n->next;
		if (f->st == ST_DRAINING && now_ms >= f->deadline_ms)
			close_handles(px, f, true);
		else if (f->st == ST_OPEN && now_ms - f->last_ms > lim && f->writes == 0)
			flow_kill(px, f, true, true);
	}
}

/**
 * tcpflow_init() - TCP state
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int tcpflow_init(struct proxy *px)
{
	struct tcp_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	list_init(&st->all);
	list_init(&st->dirty);
	list_init(&st->shaped);
	list_init(&st->listeners);
	uv_timer_init(&px->loop, &st->shape_timer);
	st->shape_timer.data = px;
	px->tcp = st;
	return 0;
}

static void nothing_closed(uv_handle_t *h)
{
	(void)h;
}

/**
 * tcpflow_fini() - close every flow and listener, free the state
 * @px:	proxy
 */
void tcpflow_fini(struct proxy *px)
{
	struct tcp_state *st = px->tcp;

	if (!st)
		return;
	while (!list_empty(&st->all))
		close_handles(px, list_entry(st->all.next, struct tcp_flow, all), false);
	while (!list_empty(&st->listeners)) {
		struct tcp_listener *l = list_entry(st->listeners.next, struct tcp_listener, node);

		list_del(&l->node);
		l->closing = true;
		uv_close((uv_handle_t *)&l->retry, listener_closed);
		if (l->sock_open && !uv_is_closing((uv_handle_t *)&l->sock))
			uv_close((uv_handle_t *)&l->sock, listener_closed);
	}
	uv_close((uv_handle_t *)&st->shape_timer, nothing_closed);
	uv_run(&px->loop, UV_RUN_NOWAIT);
	free(st);
	px->tcp = NULL;
}
