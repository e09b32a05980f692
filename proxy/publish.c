/* SPDX-License-Identifier: MIT */
/*
 * publish.c - the proxy's published TCP ports (ingress); UDP ports are udppub.c's
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. A listener per published port (the policy's
 * "publish" and --publish): an accepted client is decided with direction
 * ingress, the peer's address and the guest port, counted against the
 * limits, then announced with ACCEPTED (ids with FLOW_ID_INGRESS). The
 * netstack connects to the guest and answers CONNECT_RESULT; from then on
 * the flow is an ordinary one of tcpflow.c, relayed with credits.
 *
 * After an accept error the listening socket is closed and made again
 * PUBLISH_ACCEPT_BACKOFF_MS later: libuv offers no way to pause a
 * listener, and on EMFILE without its reserve fd (which it cannot reopen
 * under our seccomp filter) it would call on_listen() again at once, for
 * ever. A connection we could not take (no memory, a violation, no policy
 * yet) stays with libuv, which stops polling until the retry takes it.
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

#define PUBLISH_ACCEPT_BACKOFF_MS 100 /* a listener's pause after an accept error */

static uint32_t ingress_id(struct proxy *px)
{
	struct tcp_state *st = px->tcp;

	for (;;) {
		uint32_t id;

		st->next_ingress = (st->next_ingress + 1) & ~FLOW_ID_INGRESS;
		if (!st->next_ingress)
			continue;
		id = FLOW_ID_INGRESS | st->next_ingress;
		if (!tcpflow_find(px, id))
			return id;
	}
}

static void listener_pause(struct tcp_listener *l);
static void listener_closed(uv_handle_t *h);

/* Take @l out of the list and close its handles (freed once both closed). */
static void listener_close(struct tcp_listener *l)
{
	list_del(&l->node);
	l->closing = true;
	uv_close((uv_handle_t *)&l->retry, listener_closed);
	if (l->sock_open && !uv_is_closing((uv_handle_t *)&l->sock))
		uv_close((uv_handle_t *)&l->sock, listener_closed);
}
static void on_listen_retry(uv_timer_t *t);

/* Take the connection libuv holds for @l. Return: 0, or a negative errno if it must wait. */
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

	f = tcpflow_new(px, ingress_id(px));
	if (!f)
		return -ENOBUFS;
	f->st = ST_ACCEPTING;
	rc = uv_tcp_init(&px->loop, &f->sock);
	if (rc < 0) {
		tcpflow_close_handles(px, f, false);
		return rc;
	}
	f->sock.data = f;
	f->sock_open = true;
	f->handles++;
	rc = uv_accept(server, (uv_stream_t *)&f->sock);
	if (rc < 0) {
		/* libuv closed the connection and stopped polling: start again. */
		px->tcp->accept_errors++;
		log_debug("publish: accept: %s", uv_err_name(rc));
		tcpflow_close_handles(px, f, false);
		if (uv_listen(server, 128, server->connection_cb) < 0)
			listener_pause(l);
		return 0;
	}
	if (uv_tcp_getpeername(&f->sock, (struct sockaddr *)&peer, &plen) < 0) {
		tcpflow_close_handles(px, f, false);
		return 0;
	}
	relay_endpoint((struct sockaddr *)&peer, &pe);
	/* The policy sees the peer and the guest port. */
	{
		struct flow_endpoint q = pe;
		struct policy_decision d;

		q.port = l->pub.guest_port;
		f->decided = q;
		d = relay_decide(px, POLICY_INGRESS, POLICY_PROTO_TCP, &q);
		if (relay_denied(px, d, POLICY_INGRESS, POLICY_PROTO_TCP, &q, f->id)) {
			tcpflow_close_handles(px, f, true);
			return 0;
		}
		f->rule = d.rule;
	}
	/* The flow itself is in the table already: count the others. */
	v = limits_new_flow(&px->limits, true, px->tcp->count - 1, uv_now(&px->loop), &which);
	if (relay_limit(px, v, which, f->id, MOAT_P_TCP, &pe)) {
		tcpflow_close_handles(px, f, true);
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
	if (tcpflow_start_timer(px, f) < 0) {
		tcpflow_close_handles(px, f, true);
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
				 l->pub.host_port, uv_strerror(status), PUBLISH_ACCEPT_BACKOFF_MS);
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
			uv_timer_start(&l->retry, on_listen_retry, PUBLISH_ACCEPT_BACKOFF_MS, 0);
	}
}

/**
 * publish_result_input() - CONNECT_RESULT from the netstack for a published port
 * @px:	proxy
 * @r:	the validated message
 */
void publish_result_input(struct proxy *px, const struct flow_connect_result *r)
{
	struct tcp_flow *f = tcpflow_find(px, r->id);

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
		tcpflow_close_handles(px, f, true);
		return;
	}
	tcpflow_set_active(px, f);
	uv_tcp_nodelay(&f->sock, 1);
	tcpflow_start_reading(f);
}

/* Make @l's socket, bind it to @l->ss and listen. Return: 0 or a libuv error. */
static int listener_listen(struct tcp_listener *l)
{
	int rc = uv_tcp_init(&l->px->loop, &l->sock);

	if (rc < 0)
		return rc;
	l->sock.data = l;
	l->sock_open = true;
	l->handles++;
	rc = uv_tcp_bind(&l->sock, (struct sockaddr *)&l->ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->sock, 128, on_listen);
	return rc;
}

/* Listen again after a pause; on failure pause and try again. */
static void listener_open(struct tcp_listener *l)
{
	int rc = listener_listen(l);

	if (rc < 0 && !l->sock_open) {
		uv_timer_start(&l->retry, on_listen_retry, PUBLISH_ACCEPT_BACKOFF_MS, 0);
	} else if (rc < 0) {
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
		uv_timer_start(&l->retry, on_listen_retry, PUBLISH_ACCEPT_BACKOFF_MS, 0);
}

/* Close the listening socket; listener_closed() arms the retry timer. */
static void listener_pause(struct tcp_listener *l)
{
	l->held = false; /* libuv drops a held connection with the socket */
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
 * publish_listen() - listen on a published port (UDP: udppub_listen())
 * @px:		proxy
 * @pub:	host address and port, guest port
 *
 * An accept error later does not end the listener: it pauses for
 * PUBLISH_ACCEPT_BACKOFF_MS, listens again and is counted (publish_accept_errors()).
 *
 * Return: 0, or a negative errno (logged; the other ports still work).
 */
int publish_listen(struct proxy *px, const struct policy_publish *pub)
{
	struct tcp_listener *l;
	struct flow_endpoint ep = { .port = pub->host_port };
	char a[64];
	int rc;

	if (pub->proto != POLICY_PROTO_TCP)
		return udppub_listen(px, pub);
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
	rc = listener_listen(l);
	if (rc < 0) {
		/* Not retried: a port in use is a configuration error. Nothing stays. */
		log_error("publish: cannot listen on %s: %s", a, uv_strerror(rc));
		listener_close(l);
		return rc;
	}
	log_info("published %s -> guest port %u", a, pub->guest_port);
	return 0;
}

/**
 * publish_accept_errors() - failed accepts on the published ports so far
 * @px:	proxy
 *
 * Return: the count (each one paused its listener, none ended it).
 */
uint64_t publish_accept_errors(const struct proxy *px)
{
	return px->tcp ? px->tcp->accept_errors : 0;
}

/**
 * publish_fini() - close every published listener (freed once closed)
 * @px:	proxy
 */
void publish_fini(struct proxy *px)
{
	struct tcp_state *st = px->tcp;

	while (!list_empty(&st->listeners))
		listener_close(list_entry(st->listeners.next, struct tcp_listener, node));
}

static bool same_port(const struct policy_publish *a, const struct policy_publish *b)
{
	return a->proto == b->proto && a->host_port == b->host_port &&
	       a->host_addr.family == b->host_addr.family &&
	       !memcmp(a->host_addr.addr, b->host_addr.addr,
		       a->host_addr.family == AF_INET6 ? 16 : 4);
}

/**
 * publish_find() - whether a port is published
 * @px:		proxy
 * @pub:	protocol, host address and host port (the guest port is not compared)
 *
 * Return: the published entry, or NULL.
 */
const struct policy_publish *publish_find(struct proxy *px, const struct policy_publish *pub)
{
	struct list_head *n;

	if (pub->proto != POLICY_PROTO_TCP)
		return udppub_find(px, pub);
	for (n = px->tcp->listeners.next; n != &px->tcp->listeners; n = n->next) {
		struct tcp_listener *l = list_entry(n, struct tcp_listener, node);

		if (same_port(&l->pub, pub))
			return &l->pub;
	}
	return NULL;
}

/**
 * publish_remove() - stop publishing a port
 * @px:		proxy
 * @pub:	protocol, host address and host port
 *
 * Connections already accepted carry on; UDP peers are forgotten.
 * Return: 0, or -ENOENT if the port is not published.
 */
int publish_remove(struct proxy *px, const struct policy_publish *pub)
{
	struct list_head *n;

	if (pub->proto != POLICY_PROTO_TCP)
		return udppub_remove(px, pub);
	for (n = px->tcp->listeners.next; n != &px->tcp->listeners; n = n->next) {
		struct tcp_listener *l = list_entry(n, struct tcp_listener, node);

		if (same_port(&l->pub, pub)) {
			log_info("publish: host port %u/tcp no longer published", pub->host_port);
			listener_close(l);
			return 0;
		}
	}
	return -ENOENT;
}

/**
 * publish_list() - every published port, TCP then UDP
 * @px:		proxy
 * @fn:		called once per port
 * @arg:	for @fn
 */
void publish_list(struct proxy *px, void (*fn)(void *arg, const struct policy_publish *pub),
		  void *arg)
{
	struct list_head *n;

	for (n = px->tcp->listeners.next; n != &px->tcp->listeners; n = n->next)
		fn(arg, &list_entry(n, struct tcp_listener, node)->pub);
	udppub_list_ports(px, fn, arg);
}
