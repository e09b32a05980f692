/* SPDX-License-Identifier: MIT */
/*
 * udppub.c - the proxy's published UDP ports (ingress)
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. Each published UDP port (--publish H:G/udp, the
 * policy's "publish") is one unconnected socket bound to the host address
 * and port. A datagram from a host peer the port has not seen is decided
 * as ingress (the peer's address and the guest port, as for TCP), counted
 * against the UDP flow limits, and makes a peer: from then on its
 * datagrams go to the guest's port as DGRAM records, and the guest's
 * answers to the peer come back out of the same socket to the peer's
 * address, so the peer sees the port it sent to answering.
 *
 * The guest sees the real peer (address and port) when it is an IPv4
 * address it could answer; a peer on loopback or IPv6 is shown as the
 * gateway's address with a port of its own (from UDPPUB_PORT_FIRST up),
 * one per peer, so that answers find their peer. The guest's datagrams
 * toward such an address and port are recognized here first
 * (udppub_reply(), called before the egress flows look): they are part of
 * an ingress flow, not new egress.
 *
 * Datagrams are received straight into the p2s ring, as for egress flows;
 * a full ring stops the socket until the netstack frees space (the kernel
 * then drops, as UDP may). A peer idle for the header's udp_idle_timeout_s
 * (--udp-timeout) is forgotten; a reload decides every peer again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"

#define UDPPUB_PORT_FIRST  40000u /* gateway ports shown for loopback/IPv6 peers */
#define UDPPUB_PORT_COUNT  20000u
#define UDP_IDLE_DEFAULT_S 60

struct udppub_port {
	struct proxy *px;
	struct policy_publish pub;
	struct flow_endpoint guest; /* the guest's address and the published guest port */
	uv_udp_t sock;
	struct list_head node;
	struct relay_waiter waiter;
	bool open, receiving;
};

struct udppub_peer {
	struct udppub_port *port;
	struct sockaddr_storage addr; /* the peer, as the socket saw it */
	struct flow_endpoint peer;    /* the same as an endpoint */
	struct flow_endpoint shown;   /* the peer as the guest sees it */
	struct list_head node;
	int rule; /* the rule that allowed it (-1: default) */
	uint64_t last_ms, born_ms, tx_bytes, rx_bytes;
};

struct udppub_state {
	struct list_head ports, peers;
	uint32_t n_peers;
	uint16_t next_port;
};

static void port_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Take @port out of the list, forget its peers, close its socket. */
static void port_close(struct proxy *px, struct udppub_port *port);

static bool ep_equal(const struct flow_endpoint *a, const struct flow_endpoint *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16);
}

static void peer_free(struct proxy *px, struct udppub_peer *p)
{
	list_del(&p->node);
	px->udppub->n_peers--;
	CNT_SUB(px, udp_flows_active, 1);
	free(p);
}

static struct udppub_peer *peer_find(struct proxy *px, const struct udppub_port *port,
				     const struct flow_endpoint *peer)
{
	struct list_head *n;

	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = n->next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);

		if (p->port == port && ep_equal(&p->peer, peer))
			return p;
	}
	return NULL;
}

/* A gateway port no peer is shown with yet. Return: 0 if all are taken. */
static uint16_t gateway_port(struct proxy *px)
{
	struct udppub_state *st = px->udppub;

	for (uint32_t tries = 0; tries < UDPPUB_PORT_COUNT; tries++) {
		uint16_t port = (uint16_t)(UDPPUB_PORT_FIRST + st->next_port);
		struct list_head *n;
		bool used = false;

		st->next_port = (uint16_t)((st->next_port + 1) % UDPPUB_PORT_COUNT);
		for (n = st->peers.next; n != &st->peers && !used; n = n->next)
			used = list_entry(n, struct udppub_peer, node)->shown.port == port;
		if (!used)
			return port;
	}
	return 0;
}

/* A peer the port has not seen: decided, counted, shown. NULL if refused. */
static struct udppub_peer *peer_new(struct udppub_port *port, const struct sockaddr *addr)
{
	struct proxy *px = port->px;
	const struct moat_shm_header *h = &px->region.hdr;
	struct flow_endpoint q;
	struct policy_decision d;
	enum limit_verdict v;
	enum limit_kind which;
	struct udppub_peer *p;
	uint64_t active = px->udppub->n_peers + (uint64_t)udpflow_active(px);

	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	relay_endpoint(addr, &p->peer);
	/* The policy sees the peer and the guest port. */
	q = p->peer;
	q.port = port->pub.guest_port;
	d = relay_decide(px, POLICY_INGRESS, POLICY_PROTO_UDP, &q);
	if (relay_denied(px, d, POLICY_INGRESS, POLICY_PROTO_UDP, &q, 0)) {
		free(p);
		return NULL;
	}
	v = limits_new_flow(&px->limits, false, active, uv_now(&px->loop), &which);
	if (active >= h->max_udp_flows || relay_limit(px, v, which, 0, MOAT_P_UDP, &p->peer)) {
		CNT_ADD(px, udp_flows_refused, 1);
		free(p);
		return NULL;
	}
	p->shown = p->peer;
	if (p->peer.family != 4 || p->peer.addr[0] == 127) {
		memset(&p->shown, 0, sizeof(p->shown));
		p->shown.family = 4;
		memcpy(p->shown.addr, h->gateway_ip4, 4);
		p->shown.port = gateway_port(px);
		if (!p->shown.port) {
			CNT_ADD(px, udp_flows_refused, 1);
			free(p);
			return NULL;
		}
	}
	memcpy(&p->addr, addr,
	       addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
					     sizeof(struct sockaddr_in));
	p->port = port;
	p->rule = d.rule;
	p->born_ms = uv_now(&px->loop);
	list_add_tail(&px->udppub->peers, &p->node);
	px->udppub->n_peers++;
	CNT_ADD(px, udp_flows_active, 1);
	CNT_ADD(px, udp_flows_opened, 1);
	return p;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct udppub_port *port = h->data;

	(void)suggested;
	relay_dgram_alloc(port->px, buf);
}

static void recv_start(struct udppub_port *port);

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		    unsigned flags)
{
	struct udppub_port *port = h->data;
	struct proxy *px = port->px;
	struct flow_endpoint from;
	struct udppub_peer *p;

	if (nread == UV_ENOBUFS) {
		uv_udp_recv_stop(&port->sock);
		port->receiving = false;
		relay_wait(px, &port->waiter);
		return;
	}
	if (nread < 0 || !addr || !buf->base || (flags & UV_UDP_PARTIAL) || px->violation ||
	    !px->policy)
		return;
	relay_endpoint(addr, &from);
	p = peer_find(px, port, &from);
	if (!p)
		p = peer_new(port, addr);
	if (!p)
		return; /* denied or refused: the reservation is not committed */
	p->last_ms = uv_now(&px->loop);
	p->rx_bytes += (uint64_t)nread;
	relay_dgram_commit(px, buf, (size_t)nread, &p->shown, &port->guest, &p->peer);
}

static void recv_start(struct udppub_port *port)
{
	if (port->open && !port->receiving &&
	    uv_udp_recv_start(&port->sock, on_alloc, on_recv) == 0)
		port->receiving = true;
}

static void waiter_resume(struct relay_waiter *w)
{
	recv_start(list_entry(w, struct udppub_port, waiter));
}

/**
 * udppub_listen() - bind a published UDP port
 * @px:		proxy
 * @pub:	host address and port, guest port (proto UDP)
 *
 * Return: 0, or a negative errno (logged; the other ports still work).
 */
int udppub_listen(struct proxy *px, const struct policy_publish *pub)
{
	struct udppub_port *port = calloc(1, sizeof(*port));
	struct flow_endpoint ep = { .port = pub->host_port };
	const struct moat_shm_header *h = &px->region.hdr;
	struct sockaddr_storage ss;
	char a[64];
	int rc;

	if (!port)
		return -ENOMEM;
	ep.family = pub->host_addr.family == AF_INET6 ? 6 : 4;
	memcpy(ep.addr, pub->host_addr.addr, ep.family == 4 ? 4 : 16);
	relay_sockaddr(px, &ep, false, &ss);
	relay_format_ep(&ep, a, sizeof(a));
	port->px = px;
	port->pub = *pub;
	port->guest.family = 4;
	memcpy(port->guest.addr, h->guest_ip4, 4);
	port->guest.port = pub->guest_port;
	list_init(&port->waiter.node);
	port->waiter.resume = waiter_resume;
	rc = uv_udp_init(&px->loop, &port->sock);
	if (rc < 0) {
		free(port);
		return rc;
	}
	port->sock.data = port;
	port->open = true;
	list_add_tail(&px->udppub->ports, &port->node);
	/* No SO_REUSEADDR: a port another socket has must fail, not be shared. */
	rc = uv_udp_bind(&port->sock, (const struct sockaddr *)&ss, 0);
	if (rc < 0) {
		log_error("publish: cannot bind %s/udp: %s", a, uv_strerror(rc));
		port_close(px, port);
		return rc;
	}
	recv_start(port);
	log_info("published %s/udp -> guest port %u", a, pub->guest_port);
	return 0;
}

/**
 * udppub_reply() - a guest datagram that answers a published port's peer
 * @px:		proxy
 * @d:		addresses (validated)
 * @data:	payload
 * @len:	its length
 *
 * Return: true if @d belongs to a peer (sent, or dropped when the socket's
 * buffer is full, as UDP may); false if it is egress for udpflow.c.
 */
bool udppub_reply(struct proxy *px, const struct flow_dgram *d, const uint8_t *data, uint32_t len)
{
	struct list_head *n;

	if (!px->udppub)
		return false;
	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = n->next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);
		uv_buf_t b;

		if (!ep_equal(&p->shown, &d->dst) || !ep_equal(&p->port->guest, &d->src))
			continue;
		b = uv_buf_init((char *)data, len);
		if (uv_udp_try_send(&p->port->sock, &b, 1, (const struct sockaddr *)&p->addr) >=
		    0) {
			CNT_ADD(px, upstream_tx_bytes, len);
			p->tx_bytes += len;
		}
		p->last_ms = uv_now(&px->loop);
		relay_limit(px, limits_bytes_done(&px->limits, false, len, p->last_ms),
			    LIMIT_EGRESS_BYTES, 0, MOAT_P_UDP, &p->peer);
		return true;
	}
	return false;
}

/**
 * udppub_tick() - forget peers idle longer than the UDP idle timeout
 * @px:		proxy
 * @now_ms:	current time
 */
void udppub_tick(struct proxy *px, uint64_t now_ms)
{
	uint64_t idle_ms = (uint64_t)(px->region.hdr.udp_idle_timeout_s ?
					      px->region.hdr.udp_idle_timeout_s :
					      UDP_IDLE_DEFAULT_S) *
			   1000;
	struct list_head *n, *next;

	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);

		next = n->next;
		if (now_ms - p->last_ms >= idle_ms)
			peer_free(px, p);
	}
}

/**
 * udppub_reevaluate() - a new policy is in force: decide every peer again
 * @px:	proxy
 *
 * A peer the new policy denies is forgotten (a denial event with reason
 * "policy_reload"); its next datagram is decided as a new peer.
 */
void udppub_reevaluate(struct proxy *px)
{
	struct list_head *n, *next;

	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);
		struct flow_endpoint q = p->peer;
		struct policy_decision d;

		next = n->next;
		q.port = p->port->pub.guest_port;
		d = relay_decide(px, POLICY_INGRESS, POLICY_PROTO_UDP, &q);
		if (!relay_denied_why(px, d, POLICY_INGRESS, POLICY_PROTO_UDP, &q, 0,
				      "policy_reload", NULL))
			continue;
		CNT_ADD(px, reload_cuts, 1);
		peer_free(px, p);
	}
}

static void port_close(struct proxy *px, struct udppub_port *port)
{
	struct list_head *n, *next;

	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);

		next = n->next;
		if (p->port == port)
			peer_free(px, p);
	}
	list_del(&port->node);
	list_del(&port->waiter.node);
	uv_close((uv_handle_t *)&port->sock, port_closed);
}

static bool same_port(const struct policy_publish *a, const struct policy_publish *b)
{
	return a->host_port == b->host_port && a->host_addr.family == b->host_addr.family &&
	       !memcmp(a->host_addr.addr, b->host_addr.addr,
		       a->host_addr.family == AF_INET6 ? 16 : 4);
}

/**
 * udppub_find() - a published UDP port
 * @px:		proxy
 * @pub:	host address and port
 *
 * Return: its entry, or NULL.
 */
const struct policy_publish *udppub_find(struct proxy *px, const struct policy_publish *pub)
{
	struct list_head *n;

	for (n = px->udppub->ports.next; n != &px->udppub->ports; n = n->next) {
		struct udppub_port *port = list_entry(n, struct udppub_port, node);

		if (same_port(&port->pub, pub))
			return &port->pub;
	}
	return NULL;
}

/**
 * udppub_remove() - stop publishing a UDP port (its peers are forgotten)
 * @px:		proxy
 * @pub:	host address and port
 *
 * Return: 0, or -ENOENT.
 */
int udppub_remove(struct proxy *px, const struct policy_publish *pub)
{
	struct list_head *n;

	for (n = px->udppub->ports.next; n != &px->udppub->ports; n = n->next) {
		struct udppub_port *port = list_entry(n, struct udppub_port, node);

		if (same_port(&port->pub, pub)) {
			log_info("publish: host port %u/udp no longer published", pub->host_port);
			port_close(px, port);
			return 0;
		}
	}
	return -ENOENT;
}

/**
 * udppub_list_ports() - every published UDP port
 * @px:		proxy
 * @fn:		called once per port
 * @arg:	for @fn
 */
void udppub_list_ports(struct proxy *px, void (*fn)(void *arg, const struct policy_publish *pub),
		       void *arg)
{
	struct list_head *n;

	for (n = px->udppub->ports.next; n != &px->udppub->ports; n = n->next)
		fn(arg, &list_entry(n, struct udppub_port, node)->pub);
}

/**
 * udppub_init() - no published UDP ports yet
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int udppub_init(struct proxy *px)
{
	struct udppub_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	list_init(&st->ports);
	list_init(&st->peers);
	px->udppub = st;
	return 0;
}

/**
 * udppub_fini() - close every published UDP port, forget every peer
 * @px:	proxy
 */
void udppub_fini(struct proxy *px)
{
	struct udppub_state *st = px->udppub;

	if (!st)
		return;
	while (!list_empty(&st->peers))
		peer_free(px, list_entry(st->peers.next, struct udppub_peer, node));
	while (!list_empty(&st->ports))
		port_close(px, list_entry(st->ports.next, struct udppub_port, node));
	free(st);
	px->udppub = NULL;
}

/**
 * udppub_list() - every peer of the published UDP ports, for the control API
 * @px:		proxy
 * @fn:		called once per peer (src = the peer as the guest sees it)
 * @arg:	for @fn
 */
void udppub_list(struct proxy *px, relay_flow_fn fn, void *arg)
{
	struct list_head *n;

	for (n = px->udppub->peers.next; n != &px->udppub->peers; n = n->next) {
		struct udppub_peer *p = list_entry(n, struct udppub_peer, node);
		struct relay_flow_info fi = {
			.proto = POLICY_PROTO_UDP,
			.ingress = true,
			.src = &p->shown,
			.dst = &p->port->guest,
			.state = "open",
			.rule = p->rule,
			.tx = p->tx_bytes,
			.rx = p->rx_bytes,
			.born_ms = p->born_ms,
		};

		fn(arg, &fi);
	}
}
