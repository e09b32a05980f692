/* SPDX-License-Identifier: MIT */
/*
 * ping.c - the proxy's ICMP echo (ping) relay
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. The netstack answers pings to the gateway and DNS
 * addresses itself; echo requests to anything else arrive as ECHO(peer,
 * guest, ident, seq, payload). They are decided by the policy (protocol
 * icmp, no port, the pinned DNS names) once per (peer, guest ident)
 * "session", which gets its own unprivileged ping socket
 * (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), or ICMPv6), connected to the
 * peer. The kernel rewrites the echo identifier to the socket's own and
 * matches replies by it; we map replies back to the guest's identifier.
 *
 * Ping sockets need the proxy's group in net.ipv4.ping_group_range (a
 * per-network-namespace sysctl, "1 0" = nobody by default). Without it
 * socket() fails with EACCES: logged once, echoes are dropped.
 *
 * Sessions are bounded (ICMP_SESSIONS_MAX, the oldest is recycled) and
 * expire after ICMP_IDLE_MS; denied sessions are remembered the same way,
 * so a denied ping floods neither the events nor the policy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"

#define ICMP_SESSIONS_MAX 64
#define ICMP_IDLE_MS	  30000
#define ICMP_HDR	  8

struct echo_session {
	struct list_head node;
	struct proxy *px;
	struct flow_endpoint peer, guest;
	uint16_t ident;
	bool denied, nosock, polling;
	int fd;
	uv_poll_t poll;
	uint64_t last_ms, generation;
};

struct icmp_state {
	struct list_head sessions; /* oldest first */
	int count;
	bool warned;
	uint8_t buf[ICMP_HDR + FLOW_DATA_MAX];
};

static void session_closed(uv_handle_t *h)
{
	struct echo_session *s = h->data;

	close(s->fd);
	free(s);
}

static void session_free(struct proxy *px, struct echo_session *s)
{
	list_del(&s->node);
	px->icmp->count--;
	if (s->polling)
		uv_close((uv_handle_t *)&s->poll, session_closed);
	else
		free(s);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct echo_session *s = h->data;
	struct proxy *px = s->px;
	uint8_t *b = px->icmp->buf;

	(void)events;
	if (status < 0 || px->violation)
		return;
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(s->fd, b, ICMP_HDR + FLOW_DATA_MAX, MSG_DONTWAIT);
		struct flow_echo e;
		uint8_t reply = s->peer.family == 4 ? 0 : 129;

		if (n < 0)
			return; /* EAGAIN, or an ICMP error queued on the socket */
		if (n < ICMP_HDR || b[0] != reply || b[1] != 0)
			continue;
		memset(&e, 0, sizeof(e));
		e.peer = s->peer;
		e.guest = s->guest;
		e.ident = s->ident;
		e.seq = (uint16_t)(b[6] << 8 | b[7]);
		relay_sendv(px, FLOW_ECHO_REPLY, &e, sizeof(e), b + ICMP_HDR,
			    (uint32_t)n - ICMP_HDR);
		s->last_ms = uv_now(&px->loop);
		CNT_ADD(px, icmp_echo_replies, 1);
	}
}

static bool same_addr(const struct flow_endpoint *a, const struct flow_endpoint *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16);
}

static struct echo_session *find(struct proxy *px, const struct flow_echo *e)
{
	struct list_head *n;

	for (n = px->icmp->sessions.next; n != &px->icmp->sessions; n = n->next) {
		struct echo_session *s = list_entry(n, struct echo_session, node);

		if (s->ident == e->ident && same_addr(&s->peer, &e->peer) &&
		    same_addr(&s->guest, &e->guest))
			return s;
	}
	return NULL;
}

static int open_socket(struct proxy *px, struct echo_session *s)
{
	struct sockaddr_storage ss;
	struct flow_endpoint ep = s->peer;
	int fam = s->peer.family == 4 ? AF_INET : AF_INET6;
	int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			fam == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
	socklen_t len;
	int rc;

	if (fd < 0) {
		rc = -errno; /* before log_warn() can change it */
		if (!px->icmp->warned) {
			log_warn("icmp: no ping socket (%s); is our group in "
				 "net.ipv4.ping_group_range? Echo requests are dropped",
				 strerror(-rc));
			px->icmp->warned = true;
		}
		return rc;
	}
	ep.port = 0;
	len = (socklen_t)relay_sockaddr(px, &ep, false, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	/* libuv returns its error (a negative errno); it does not set errno. */
	rc = uv_poll_init(&px->loop, &s->poll, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	s->fd = fd;
	s->poll.data = s;
	s->polling = true;
	uv_poll_start(&s->poll, UV_READABLE, on_readable);
	return 0;
}

/**
 * ping_input() - an echo request from the guest
 * @px:		proxy
 * @e:		addresses, identifier and sequence (validated)
 * @data:	payload
 * @len:	its length
 */
void ping_input(struct proxy *px, const struct flow_echo *e, const uint8_t *data, uint32_t len)
{
	struct icmp_state *st = px->icmp;
	struct echo_session *s = find(px, e);
	uint8_t *b = st->buf;

	if (s && s->denied && s->generation != px->generation) {
		session_free(px, s);
		s = NULL;
	}
	if (!s) {
		struct policy_decision d = relay_decide(px, POLICY_EGRESS, POLICY_PROTO_ICMP,
							&e->peer);
		bool denied = relay_denied(px, d, POLICY_EGRESS, POLICY_PROTO_ICMP, &e->peer, 0);

		if (st->count >= ICMP_SESSIONS_MAX)
			session_free(px, list_entry(st->sessions.next, struct echo_session, node));
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		s->px = px;
		s->peer = e->peer;
		s->guest = e->guest;
		s->ident = e->ident;
		s->denied = denied;
		s->generation = px->generation;
		s->fd = -1;
		list_add_tail(&st->sessions, &s->node);
		st->count++;
		if (!denied && open_socket(px, s) < 0)
			s->nosock = true; /* drop for a while, do not retry each echo */
	} else if (s->denied) {
		CNT_ADD(px, denials_egress[MOAT_P_ICMP], 1);
	}
	s->last_ms = uv_now(&px->loop);
	if (s->denied || s->nosock || !s->polling)
		return;
	b[0] = e->peer.family == 4 ? 8 : 128; /* echo request */
	b[1] = 0;
	memset(b + 2, 0, 4); /* checksum and identifier: the kernel's */
	b[6] = (uint8_t)(e->seq >> 8);
	b[7] = (uint8_t)e->seq;
	memcpy(b + ICMP_HDR, data, len);
	if (send(s->fd, b, ICMP_HDR + len, MSG_DONTWAIT) < 0) {
		log_debug("icmp: send: %s", strerror(errno));
		return;
	}
	CNT_ADD(px, icmp_echo_sent, 1);
}

/**
 * ping_tick() - expire idle sessions
 * @px:		proxy
 * @now_ms:	current time
 */
void ping_tick(struct proxy *px, uint64_t now_ms)
{
	struct list_head *n, *nx;

	for (n = px->icmp->sessions.next; n != &px->icmp->sessions; n = nx) {
		struct echo_session *s = list_entry(n, struct echo_session, node);

		nx = n->next;
		if (now_ms - s->last_ms >= ICMP_IDLE_MS)
			session_free(px, s);
	}
}

/**
 * ping_init() - echo state
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int ping_init(struct proxy *px)
{
	struct icmp_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	list_init(&st->sessions);
	px->icmp = st;
	return 0;
}

/**
 * ping_fini() - close every session, free the state
 * @px:	proxy
 */
void ping_fini(struct proxy *px)
{
	struct icmp_state *st = px->icmp;

	if (!st)
		return;
	while (!list_empty(&st->sessions))
		session_free(px, list_entry(st->sessions.next, struct echo_session, node));
	uv_run(&px->loop, UV_RUN_NOWAIT);
	free(st);
	px->icmp = NULL;
}
