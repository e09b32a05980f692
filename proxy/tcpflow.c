/* SPDX-License-Identifier: MIT */
/*
 * tcpflow.c - the proxy's TCP flows: connect, relay with credits, half-close,
 * resets
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. A guest connection arrives as CONNECT from the
 * netstack, which holds the guest's SYN until we answer (DESIGN §5,
 * "connect before accept"). We decide it with the policy (the names the
 * DNS forwarder pinned for the destination included), check the limits,
 * and only then dial: the gateway address means the host, so we dial
 * 127.0.0.1 (then ::1) at the same port, the policy having decided on the
 * original address (group "host"); TCP to port 53 is the forwarder's
 * (dnsfwd.c, through tcpdns.c) and opens no socket. The connect's outcome
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
 * Host names (docs/policy.md "Host names on connections"): when
 * policy_wants_hostname() says a name rule concerns an accepted connection,
 * the guest's first bytes are held in a buffer of the sniff pool (at most
 * SNIFF_MAX_BYTES, TCP_SNIFF_TIMEOUT_MS) until sniff.c finds the TLS SNI or
 * HTTP Host, or finds there is none; relay_decide_hostname() then decides
 * again: denied is a reset with its own reason, allowed appends the held
 * bytes to the write queue and the relay goes on. Their credit is owed like
 * any other written bytes, and the upstream's bytes flow meanwhile, so a
 * server that speaks first is not held up.
 *
 * The netstack is less trusted: DATA before the connection is accepted or
 * after SHUT_WR, a CONNECT for an id in use, more unacknowledged data than
 * any window allows, or credit beyond any send buffer are violations.
 *
 * Published ports (ingress) are publish.c's: it makes the flow with
 * tcpflow_new(), and once the netstack reached the guest the relay is the
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
#include "proxy/tcpflow.h"

#define TCP_MAX_UNACKED	       FLOW_TCP_WINDOW_MAX /* guest bytes not yet credited back, per flow */
#define TCP_MAX_CREDIT	       (1ull << 30)	   /* credit the netstack may grant */
#define TCP_CONNECT_TIMEOUT_MS 10000		   /* if the header says 0 */
#define TCP_DRAIN_MAX_MS       60000 /* graceful close of a flow the netstack closed */
#define TCP_DNS_IDLE_MS	       60000 /* DNS over TCP connections */
/*
 * Chunks one flow can hold: its window's worth of full ones plus the one
 * being filled and a partial one being written (a partial chunk is written
 * only when no other write is in flight).
 */
#define TCP_WCHUNKS_PER_FLOW   ((FLOW_TCP_WINDOW_MAX + TCP_WCHUNK_BYTES - 1) / TCP_WCHUNK_BYTES + 2)
#define TCP_SNIFF_TIMEOUT_MS   3000 /* a partial ClientHello/request head, then decided without */

/* ---- table ---------------------------------------------------------- */

/**
 * tcpflow_find() - the flow with id @id
 * @px:	proxy
 * @id:	flow id
 *
 * Return: the flow, or NULL.
 */
struct tcp_flow *tcpflow_find(struct proxy *px, uint32_t id)
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

/**
 * tcpflow_new() - a new flow in the table, not yet connected to anything
 * @px:	proxy
 * @id:	its id (not in use)
 *
 * Return: the flow, or NULL without memory.
 */
struct tcp_flow *tcpflow_new(struct proxy *px, uint32_t id)
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
	f->last_ms = f->born_ms = uv_now(&px->loop);
	f->rule = -1;
	list_add_tail(&px->tcp->all, &f->all);
	flow_hash(px, f);
	return f;
}

static void unacked_sub(struct tcp_flow *f, uint64_t n)
{
	if (n > f->unacked)
		n = f->unacked;
	f->unacked -= n;
}

/**
 * tcpflow_mark_dirty() - have tcpflow_flush() look at @f at the end of this
 * loop iteration (writes, credit, a pending reset)
 * @f:	the flow
 */
void tcpflow_mark_dirty(struct tcp_flow *f)
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

/**
 * tcpflow_handle_closed() - a handle of @f's that another file owns was closed
 * @f:	the flow (freed here once it is closed and has no handle left)
 */
void tcpflow_handle_closed(struct tcp_flow *f)
{
	f->handles--;
	maybe_free(f);
}

static void free_buffers(struct tcp_flow *f)
{
	pool_put(&f->px->pools[MOAT_POOL_TCP_WRITE], f->wb);
	f->wb = NULL;
	pool_put(&f->px->pools[MOAT_POOL_SNIFF], f->sniff);
	f->sniff = NULL;
	f->sniffing = false;
	tcpdns_drop(f);
}

/**
 * tcpflow_close_handles() - close the flow's handles, free it once they are closed
 * @px:		proxy
 * @f:		the flow
 * @reset:	close the socket with a reset (SO_LINGER 0)
 */
void tcpflow_close_handles(struct proxy *px, struct tcp_flow *f, bool reset)
{
	if (f->st == ST_CLOSED)
		return;
	flow_unhash(px, f);
	unacked_sub(f, f->unacked);
	f->st = ST_CLOSED;
	f->reading = false;
	list_del(&f->all);
	list_del(&f->dirty);
	list_del(&f->shaped);
	list_del(&f->waiter.node);
	if (f->ds) {
		struct dnsfwd_stream *ds = f->ds;

		f->ds = NULL;
		dnsfwd_stream_close(px, ds);
	}
	free_buffers(f);
	tlsrelay_close(f);
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

/**
 * tcpflow_kill() - the flow ends: tell the netstack (CLOSE) if @send_close,
 * close the socket
 * @px:		proxy
 * @f:		the flow
 * @send_close:	send CLOSE (only if the netstack knows the id)
 * @reset:	a reset both ways (CLOSE reset=1, SO_LINGER 0) rather than a close
 */
void tcpflow_kill(struct proxy *px, struct tcp_flow *f, bool send_close, bool reset)
{
	if (f->st == ST_CLOSED)
		return;
	if (send_close && f->hashed) {
		struct flow_close c = { .id = f->id, .reset = reset ? 1 : 0 };

		relay_send(px, FLOW_CLOSE, &c, sizeof(c));
	}
	tcpflow_close_handles(px, f, reset);
}

static void send_result(struct proxy *px, uint32_t id, uint32_t result)
{
	struct flow_connect_result r = { .id = id, .result = result };

	relay_send(px, FLOW_CONNECT_RESULT, &r, sizeof(r));
	CNT_ADD(px, tcp_connections[result], 1);
}

/**
 * tcpflow_reevaluate() - a new policy is in force: decide every relayed
 * connection again and reset the ones it denies
 * @px:	proxy
 *
 * The guest gets a reset (CLOSE(reset=1) to the netstack, or CONNECT_RESULT
 * denied while the connect is pending), the server one too (SO_LINGER 0); a
 * denial event with reason "policy_reload". DNS streams are not flows the
 * rules decide (each query is). A terminate rule only cuts the connection:
 * the guest did nothing new.
 */
void tcpflow_reevaluate(struct proxy *px)
{
	struct list_head *n, *next;

	for (n = px->tcp->all.next; n != &px->tcp->all; n = next) {
		struct tcp_flow *f = list_entry(n, struct tcp_flow, all);
		bool ingress = (f->id & FLOW_ID_INGRESS) != 0;
		enum policy_direction dir = ingress ? POLICY_INGRESS : POLICY_EGRESS;
		struct policy_decision d;

		next = n->next;
		if (f->dns || !f->hashed ||
		    (f->st != ST_CONNECTING && f->st != ST_ACCEPTING && f->st != ST_OPEN))
			continue;
		d = relay_decide(px, dir, POLICY_PROTO_TCP, &f->decided);
		if (!ingress && d.allow) {
			bool mismatch;

			f->first = d;
			f->rule = d.rule;
			if (f->hostname[0])
				d = relay_decide_hostname(px, &f->decided, d, f->hostname,
							  &mismatch);
		}
		if (!relay_denied_why(px, d, dir, POLICY_PROTO_TCP, &f->decided, f->id,
				      "policy_reload", NULL))
			continue;
		log_info("tcp flow %u: denied by the new policy (rule %d): reset", f->id, d.rule);
		CNT_ADD(px, reload_cuts, 1);
		if (f->st == ST_CONNECTING) {
			send_result(px, f->id, MOAT_CONN_DENIED);
			tcpflow_close_handles(px, f, true);
		} else {
			tcpflow_kill(px, f, true, true);
		}
	}
}

/**
 * tcpflow_set_active() - the flow is open both ways: count it as active
 * @px:	proxy
 * @f:	the flow
 */
void tcpflow_set_active(struct proxy *px, struct tcp_flow *f)
{
	f->st = ST_OPEN;
	f->active = true;
	px->tcp->active++;
	CNT_ADD(px, tcp_active, 1);
}

/**
 * tcpflow_maybe_done() - end @f if both directions are finished
 * @px:	proxy
 * @f:	the flow
 *
 * An open flow is over once both directions are; one the netstack closed
 * (ST_DRAINING) once our FIN toward the server is out. An intercepted flow
 * also waits for moat-tls to have handed the server all it had for it
 * (tlsrelay_done()): the guest's last bytes may still be in moat-tls when
 * the guest's side is over.
 */
void tcpflow_maybe_done(struct proxy *px, struct tcp_flow *f)
{
	if (f->tls && !tlsrelay_done(f->tls))
		return;
	if (f->st == ST_DRAINING && f->shut_done)
		tcpflow_close_handles(px, f, false);
	else if (f->st == ST_OPEN && f->eof_up && f->shut_done && f->writes == 0 && !f->wb)
		tcpflow_kill(px, f, true, false);
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
		tcpflow_mark_dirty(f);
		tcpflow_start_reading(f);
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
		uv_read_stop(tcpflow_peer(f));
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
		if (!f->tls)
			CNT_ADD(px, upstream_rx_bytes, (uint64_t)nread);
		f->rx_bytes += (uint64_t)nread;
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
		tcpflow_maybe_done(px, f);
		return;
	}
	/* ECONNRESET or another error: the upstream connection is gone. */
	log_debug("tcp flow %u: upstream %s", f->id, uv_err_name((int)nread));
	tcpflow_kill(px, f, true, true);
}

/**
 * tcpflow_start_reading() - read the upstream socket (while credit lasts)
 * @f:	the flow
 */
void tcpflow_start_reading(struct tcp_flow *f)
{
	if (f->st != ST_OPEN || f->dns || f->eof_up || !f->credit || f->reading ||
	    list_linked(&f->waiter.node) || list_linked(&f->shaped) || !f->sock_open)
		return;
	if (uv_read_start(tcpflow_peer(f), on_alloc, on_read) == 0)
		f->reading = true;
}

/* p2s has room again: read on, return the credit that waited, send DNS answers. */
static void waiter_resume(struct relay_waiter *w)
{
	struct tcp_flow *f = list_entry(w, struct tcp_flow, waiter);

	if (f->owed)
		tcpflow_mark_dirty(f);
	if (f->dns)
		(void)tcpdns_output(f->px, f, NULL, 0);
	else
		tcpflow_start_reading(f);
}

/* ---- guest -> world ------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
	struct tcp_wchunk *wb = req->data;
	struct tcp_flow *f = wb->f;
	struct proxy *px = f->px;
	uint32_t n = wb->len;

	pool_put(&px->pools[MOAT_POOL_TCP_WRITE], wb);
	if (f->st == ST_CLOSED)
		return;
	f->writes--;
	if (status < 0) {
		log_debug("tcp flow %u: write %s", f->id, uv_err_name(status));
		if (f->st == ST_DRAINING)
			tcpflow_close_handles(px, f, true);
		else
			tcpflow_kill(px, f, true, true);
		return;
	}
	if (!f->tls) /* intercepted: the splice counts the server socket's bytes */
		CNT_ADD(px, upstream_tx_bytes, n);
	f->tx_bytes += n;
	f->owed += n;
	f->last_ms = uv_now(&px->loop);
	tcpflow_mark_dirty(f);
	tcpflow_maybe_done(px, f);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct tcp_flow *f = req->data;
	struct proxy *px = f->px;

	(void)status;
	if (f->st == ST_CLOSED)
		return;
	f->shut_done = true;
	tcpflow_maybe_done(px, f);
}

static void credit_return(struct proxy *px, struct tcp_flow *f)
{
	uint64_t now = uv_now(&px->loop), n;
	struct flow_credit c = { .id = f->id };

	if (!f->hashed) {
		f->owed = 0;
		return;
	}
	if (relay_backlogged(px)) {
		/* Wait behind the records already waiting: one CREDIT per flow, later. */
		relay_wait(px, &f->waiter);
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
	unacked_sub(f, n);
	relay_limit(px, limits_bytes_done(&px->limits, false, n, now), LIMIT_EGRESS_BYTES, f->id,
		    MOAT_P_TCP, &f->dst);
	if (f->owed)
		shape_wait(px, f, false);
}

/* Write @f's current chunk. Return: 0, or uv_write()'s error when the flow was killed. */
static int write_chunk(struct proxy *px, struct tcp_flow *f)
{
	struct tcp_wchunk *wb = f->wb;
	uv_buf_t b = uv_buf_init((char *)wb->data, wb->len);
	int rc;

	f->wb = NULL;
	wb->f = f;
	wb->req.data = wb;
	rc = uv_write(&wb->req, tcpflow_peer(f), &b, 1, on_write);
	if (rc < 0) {
		pool_put(&px->pools[MOAT_POOL_TCP_WRITE], wb);
		tcpflow_kill(px, f, true, true);
		return rc;
	}
	f->writes++;
	return 0;
}

static void flush_flow(struct proxy *px, struct tcp_flow *f)
{
	bool sock_ok = !f->dns && (f->st == ST_OPEN || f->st == ST_DRAINING) && f->sock_open;

	if (f->st == ST_CLOSED)
		return;
	if (f->reset_pending) {
		/* tcpdns_output() failed: dnsfwd.c is no longer inside the stream. */
		tcpflow_kill(px, f, true, true);
		return;
	}
	if (f->wb && sock_ok && !f->writes && write_chunk(px, f) < 0)
		return;
	if (f->owed)
		credit_return(px, f);
	if (f->shut_guest && !f->shut_started && !f->wb && sock_ok) {
		int rc;

		f->shut_started = true;
		f->sreq.data = f;
		rc = uv_shutdown(&f->sreq, tcpflow_peer(f), on_shutdown);
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

/*
 * Copy guest bytes into @f's chunks; a chunk that fills is written at once.
 * Return: 0, or -ENOBUFS when the write pool is empty (counted; it is sized
 * for every flow's whole window, so only a netstack beyond its window gets
 * there) or a write's negative errno when it failed and the flow was killed.
 */
static int append_data(struct proxy *px, struct tcp_flow *f, const uint8_t *data, uint32_t len)
{
	while (len) {
		struct tcp_wchunk *wb = f->wb;
		uint32_t n;

		if (!wb) {
			wb = pool_get(&px->pools[MOAT_POOL_TCP_WRITE]);
			if (!wb)
				return -ENOBUFS;
			wb->len = 0;
			f->wb = wb;
		}
		n = TCP_WCHUNK_BYTES - wb->len;
		if (n > len)
			n = len;
		memcpy(wb->data + wb->len, data, n);
		wb->len += n;
		data += n;
		len -= n;
		if (wb->len == TCP_WCHUNK_BYTES) {
			int rc = write_chunk(px, f);

			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Guest bytes toward the socket: queued for this iteration's write, or a reset. */
static void queue_upstream(struct proxy *px, struct tcp_flow *f, const uint8_t *data, uint32_t len)
{
	int rc = len ? append_data(px, f, data, len) : 0;

	if (rc == -ENOBUFS)
		log_warn("tcp flow %u: write pool empty: reset", f->id);
	if (rc < 0) {
		tcpflow_kill(px, f, true, true);
		return;
	}
	tcpflow_mark_dirty(f);
}

/* The netstack broke the flow protocol on @f: a violation (shm/flow.h). */
static void bad_message(struct proxy *px, struct tcp_flow *f, const char *why)
{
	CNT_ADD(px, bad_messages, 1);
	relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, f->id, MOAT_P_TCP, &f->dst, why);
}

/* ---- host names on connections (sniff.c, docs/policy.md) ------------- */

/*
 * The client named @name (or none): decide the connection again. Denied: a
 * reset both ways and a denial event naming the name. Allowed: the held
 * bytes go upstream and the flow relays as any other.
 */
static void sniff_done(struct proxy *px, struct tcp_flow *f, enum sniff_result r,
		       enum sniff_kind kind, const char *name)
{
	bool mismatch = false, tls = kind == SNIFF_KIND_TLS;
	struct policy_decision d;
	uint32_t held_len;
	uint8_t *held;

	f->sniffing = false;
	if (r == SNIFF_NAME && name)
		snprintf(f->hostname, sizeof(f->hostname), "%s", name);
	d = relay_decide_hostname(px, &f->decided, f->first, f->hostname[0] ? f->hostname : NULL,
				  &mismatch);
	if (relay_denied_why(px, d, POLICY_EGRESS, POLICY_PROTO_TCP, &f->decided, f->id,
			     mismatch ? (tls ? "sni_mismatch" : "host_mismatch") :
					(tls ? "sni_denied" : "host_denied"),
			     f->hostname)) {
		log_info("tcp flow %u: %s %s denied (rule %d): reset", f->id, tls ? "SNI" : "Host",
			 f->hostname, d.rule);
		CNT_ADD(px, hostname_denials, 1);
		tcpflow_kill(px, f, true, true);
		return;
	}
	if (tls && tlsrelay_wants(px, f->hostname)) {
		/* Intercepted: from now on the guest's bytes go to moat-tls. */
		stop_reading(f);
		if (tlsrelay_start(px, f, f->hostname) < 0) {
			tcpflow_kill(px, f, true, true);
			return;
		}
		tcpflow_start_reading(f);
	}
	/* the flow may be gone after queue_upstream(): nothing of it is used after */
	held = f->sniff;
	held_len = f->sniff_len;
	f->sniff = NULL;
	f->sniff_len = 0;
	queue_upstream(px, f, held, held_len);
	pool_put(&px->pools[MOAT_POOL_SNIFF], held);
}

/*
 * Guest bytes of a connection whose host name is not known yet: held (at most
 * SNIFF_MAX_BYTES) until sniff.c knows. Return: how many of @len it took;
 * the flow may be gone (f->st) or relaying (!f->sniffing) afterwards.
 */
static uint32_t sniff_input(struct proxy *px, struct tcp_flow *f, const uint8_t *data, uint32_t len)
{
	char name[SNIFF_NAME_MAX + 1];
	enum sniff_kind kind;
	enum sniff_result r;
	uint32_t n;

	if (!f->sniff) {
		f->sniff = pool_get(&px->pools[MOAT_POOL_SNIFF]);
		if (!f->sniff) {
			/* fail closed: a name rule concerns this flow */
			log_warn("tcp flow %u: sniff pool empty: reset", f->id);
			tcpflow_kill(px, f, true, true);
			return len;
		}
		f->sniff_len = 0;
		f->sniff_deadline_ms = uv_now(&px->loop) + TCP_SNIFF_TIMEOUT_MS;
	}
	n = SNIFF_MAX_BYTES - f->sniff_len;
	if (n > len)
		n = len;
	memcpy(f->sniff + f->sniff_len, data, n);
	f->sniff_len += n;
	r = sniff_hostname(f->sniff, f->sniff_len, name, &kind);
	if (r != SNIFF_MORE)
		sniff_done(px, f, r, kind, name);
	return n;
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
	struct tcp_flow *f = tcpflow_find(px, id);

	if (!f)
		return;
	if (f->st != ST_OPEN || f->shut_guest) {
		bad_message(px, f,
			    f->st != ST_OPEN ? "DATA before the connection was accepted" :
					       "DATA after SHUT_WR");
		return;
	}
	f->unacked += len;
	if (f->unacked > TCP_MAX_UNACKED) {
		bad_message(px, f, "DATA beyond any window (flow control overrun)");
		return;
	}
	f->last_ms = uv_now(&px->loop);
	if (f->dns) {
		if (f->ds)
			dnsfwd_stream_input(px, f->ds, data, len);
		return;
	}
	if (f->sniffing) {
		uint32_t used = sniff_input(px, f, data, len);

		if (f->sniffing || f->st != ST_OPEN)
			return;
		data += used;
		len -= used;
		if (!len)
			return;
	}
	queue_upstream(px, f, data, len);
}

/**
 * tcpflow_credit_input() - CREDIT from the netstack: we may send @bytes more
 * @px:		proxy
 * @id:		flow id
 * @bytes:	credit
 */
void tcpflow_credit_input(struct proxy *px, uint32_t id, uint32_t bytes)
{
	struct tcp_flow *f = tcpflow_find(px, id);

	if (!f)
		return;
	f->credit += bytes;
	if (f->credit > TCP_MAX_CREDIT) {
		bad_message(px, f, "CREDIT beyond any send buffer");
		return;
	}
	if (f->dns) {
		(void)tcpdns_output(px, f, NULL, 0); /* only sends what is queued */
		return;
	}
	tcpflow_start_reading(f);
}

/**
 * tcpflow_shut_input() - SHUT_WR from the netstack: the guest sent FIN
 * @px:	proxy
 * @id:	flow id
 */
void tcpflow_shut_input(struct proxy *px, uint32_t id)
{
	struct tcp_flow *f = tcpflow_find(px, id);

	if (!f || f->shut_guest)
		return;
	if (f->st != ST_OPEN) {
		bad_message(px, f, "SHUT_WR before the connection was accepted");
		return;
	}
	f->shut_guest = true;
	if (f->dns) {
		if (f->ds)
			dnsfwd_stream_shut(px, f->ds);
		return;
	}
	if (f->sniffing && f->sniff)
		sniff_done(px, f, SNIFF_NONE, SNIFF_KIND_NONE, NULL); /* no more is coming */
	tcpflow_mark_dirty(f);
}

/**
 * tcpflow_close_input() - CLOSE from the netstack
 * @px:		proxy
 * @id:		flow id
 * @reset:	abort (the guest sent RST): the server sees a reset too
 */
void tcpflow_close_input(struct proxy *px, uint32_t id, bool reset)
{
	struct tcp_flow *f = tcpflow_find(px, id);

	if (!f)
		return;
	flow_unhash(px, f);
	if (reset || f->dns || f->st != ST_OPEN || !f->sock_open) {
		tcpflow_close_handles(px, f, reset);
		return;
	}
	/* Orderly: write what is queued, FIN, close (bounded by the tick). */
	stop_reading(f);
	list_del(&f->waiter.node);
	list_del(&f->shaped);
	f->st = ST_DRAINING;
	f->deadline_ms = uv_now(&px->loop) + TCP_DRAIN_MAX_MS;
	if (f->shut_done) {
		tcpflow_maybe_done(px, f);
		return;
	}
	f->shut_guest = true;
	tcpflow_mark_dirty(f);
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
		tcpflow_set_active(px, f);
		uv_tcp_nodelay(&f->sock, 1);
		send_result(px, f->id, MOAT_CONN_OK);
		log_debug("tcp flow %u: connected", f->id);
		tcpflow_start_reading(f);
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
	tcpflow_close_handles(px, f, false);
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
		tcpflow_close_handles(px, f, false);
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
		tcpflow_close_handles(px, f, false);
	} else if (f->st == ST_ACCEPTING) {
		/* The netstack never answered ACCEPTED: give up on both sides. */
		tcpflow_kill(px, f, true, true);
	}
}

/**
 * tcpflow_start_timer() - arm the flow's connect (or accept) timer
 * @px:	proxy
 * @f:	the flow
 *
 * Return: 0, or a negative libuv error.
 */
int tcpflow_start_timer(struct proxy *px, struct tcp_flow *f)
{
	uint32_t ms = px->region.hdr.connect_timeout_ms ? px->region.hdr.connect_timeout_ms :
							  TCP_CONNECT_TIMEOUT_MS;
	int rc = uv_timer_init(&px->loop, &f->timer);

	if (rc < 0)
		return rc;
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
	bool sniff;
	enum limit_verdict v;
	enum limit_kind which;
	struct tcp_flow *f;

	if (tcpflow_find(px, c->id)) {
		CNT_ADD(px, bad_messages, 1);
		relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, c->id, MOAT_P_TCP, &c->dst,
				"CONNECT for a flow id in use");
		return;
	}
	if (relay_dns_intercepts(px, &c->dst)) {
		/* DNS over TCP (to any address, unless interception is off): the forwarder decides each query. */
		v = limits_new_flow(&px->limits, true, px->tcp->count, uv_now(&px->loop), &which);
		if (relay_limit(px, v, which, c->id, MOAT_P_TCP, &c->dst)) {
			send_result(px, c->id, MOAT_CONN_LIMIT);
			return;
		}
		f = tcpflow_new(px, c->id);
		if (!f) {
			send_result(px, c->id, MOAT_CONN_REFUSED);
			return;
		}
		f->dns = true;
		f->src = c->src;
		f->dst = c->dst;
		f->ds = dnsfwd_stream_open(px, f, &c->dst, &c->src);
		if (!f->ds) {
			send_result(px, c->id, MOAT_CONN_REFUSED);
			tcpflow_close_handles(px, f, false);
			return;
		}
		tcpflow_set_active(px, f);
		send_result(px, c->id, MOAT_CONN_OK);
		return;
	}
	d = relay_decide(px, POLICY_EGRESS, POLICY_PROTO_TCP, &c->dst);
	if (relay_denied(px, d, POLICY_EGRESS, POLICY_PROTO_TCP, &c->dst, c->id)) {
		send_result(px, c->id, MOAT_CONN_DENIED);
		return;
	}
	/* An intercepted name is known from the ClientHello only: read it first. */
	sniff = policy_wants_hostname(px->policy, d) || (px->tls && policy_has_tls(px->policy));
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
	f = tcpflow_new(px, c->id);
	if (!f) {
		send_result(px, c->id, MOAT_CONN_REFUSED);
		return;
	}
	f->src = c->src;
	f->dst = c->dst;
	f->decided = c->dst;
	f->first = d;
	f->rule = d.rule;
	f->sniffing = sniff;
	f->st = ST_CONNECTING;
	f->to_host = relay_is_host(px, &c->dst);
	f->dial_family = c->dst.family;
	if (tcpflow_start_timer(px, f) < 0) {
		send_result(px, c->id, MOAT_CONN_UNREACHABLE);
		tcpflow_close_handles(px, f, false);
		return;
	}
	dial(px, f);
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
		if (f->st == ST_OPEN && f->sniffing && f->sniff && now_ms >= f->sniff_deadline_ms) {
			log_debug("tcp flow %u: no complete ClientHello/request head in time",
				  f->id);
			sniff_done(px, f, SNIFF_NONE, SNIFF_KIND_NONE, NULL);
			continue;
		}
		if (f->st == ST_DRAINING && now_ms >= f->deadline_ms)
			tcpflow_close_handles(px, f, true);
		else if (f->st == ST_OPEN && now_ms - f->last_ms > lim && f->writes == 0)
			tcpflow_kill(px, f, true, true);
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
	int rc;

	if (!st)
		return -ENOMEM;
	list_init(&st->all);
	list_init(&st->dirty);
	list_init(&st->shaped);
	list_init(&st->listeners);
	uv_timer_init(&px->loop, &st->shape_timer);
	st->shape_timer.data = px;
	px->tcp = st;
	rc = pool_init(&px->pools[MOAT_POOL_TCP_WRITE], "tcp_write", sizeof(struct tcp_wchunk),
		       (px->region.hdr.max_tcp_connections + 1) * TCP_WCHUNKS_PER_FLOW);
	if (rc == 0)
		rc = tcpdns_init(px);
	if (rc == 0)
		rc = pool_init(&px->pools[MOAT_POOL_SNIFF], "sniff", SNIFF_MAX_BYTES,
			       px->region.hdr.max_tcp_connections + 1);
	return rc;
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
		tcpflow_close_handles(px, list_entry(st->all.next, struct tcp_flow, all), false);
	publish_fini(px);
	uv_close((uv_handle_t *)&st->shape_timer, nothing_closed);
	uv_run(&px->loop, UV_RUN_NOWAIT);
	free(st);
	px->tcp = NULL;
}

/**
 * tcpflow_list() - every relayed TCP connection, for the control API
 * @px:		proxy
 * @fn:		called once per connection (DNS-over-TCP streams are not listed)
 * @arg:	for @fn
 */
void tcpflow_list(struct proxy *px, relay_flow_fn fn, void *arg)
{
	static const char *const states[] = { [ST_CONNECTING] = "connecting",
					      [ST_ACCEPTING] = "connecting",
					      [ST_OPEN] = "open",
					      [ST_DRAINING] = "closing",
					      [ST_CLOSED] = "closing" };
	struct list_head *n;

	for (n = px->tcp->all.next; n != &px->tcp->all; n = n->next) {
		struct tcp_flow *f = list_entry(n, struct tcp_flow, all);
		struct relay_flow_info fi = {
			.proto = POLICY_PROTO_TCP,
			.ingress = (f->id & FLOW_ID_INGRESS) != 0,
			.src = &f->src,
			.dst = &f->dst,
			.state = states[f->st],
			.rule = f->rule,
			.tx = f->tx_bytes,
			.rx = f->rx_bytes,
			.born_ms = f->born_ms,
		};

		if (!f->dns && f->st != ST_CLOSED)
			fn(arg, &fi);
	}
}
