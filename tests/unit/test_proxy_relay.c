/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_relay.c - the proxy in-process, with the test playing the
 * netstack and the supervisor: message validation, violations, TCP
 * connect/relay/credits/half-close/reset, denials and their events,
 * terminate rules, UDP flows, the DNS forwarder against a fake upstream.
 * Everything on 127.0.0.1; no root needed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/dnsmsg.h"
#include "proxy/proxy_internal.h"
#include "shm/flow.h"
#include "shm/region.h"
#include "shm/ring.h"

static struct proxy px;
static struct region region;
static struct ring s2p, p2s; /* our (the netstack's) side: producer, consumer */
static int efd_sup, efd_ns, efd_px, ctl[2];
static _Alignas(8) uint8_t rbuf[FLOW_RECORD_MAX];
static uint32_t mbox_seq;

static const char POLICY_FMT[] =
	"{\"default_egress\":\"allow\",\"default_ingress\":\"allow\",\"rules\":["
	"{\"direction\":\"egress\",\"destination\":{\"cidr\":\"127.0.0.2/32\"},\"action\":\"deny\"},"
	"{\"direction\":\"egress\",\"destination\":{\"cidr\":\"127.0.0.3/32\"},"
	"\"action\":\"deny\",\"terminate\":true},"
	"{\"direction\":\"egress\",\"destination\":{\"domain\":\"blocked.test\"},\"action\":\"deny\"},"
	"{\"direction\":\"egress\",\"destination\":{\"domain_suffix\":\"pinned.test\"},\"protocols\":[\"tcp\"],"
	"\"ports\":[{\"start\":1,\"end\":65535}],\"action\":\"allow\"},"
	"{\"direction\":\"egress\",\"destination\":{\"cidr\":\"127.0.0.4/32\"},\"action\":\"deny\"}"
	"]%s}";

static void send_doc(const char *doc)
{
	uint32_t len = (uint32_t)strlen(doc);

	cr_assert_eq(write(ctl[0], &len, 4), 4);
	cr_assert_eq(write(ctl[0], doc, len), (ssize_t)len);
}

static void send_policy(const char *extra, int generation)
{
	char pol[4096], doc[8192];

	snprintf(pol, sizeof(pol), POLICY_FMT, extra ? extra : "");
	snprintf(doc, sizeof(doc), "{\"policy\":%s,\"generation\":%d,\"nameservers\":[]}", pol,
		 generation);
	send_doc(doc);
}

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void spin(void)
{
	uv_run(&px.loop, UV_RUN_NOWAIT);
	usleep(100);
}

static void run_ms(int ms)
{
	long end = now_ms() + ms;

	while (now_ms() < end)
		spin();
}

/* A proxy with the test policy plus @extra (e.g. ",\"dns\":{...}"). */
static void start(const char *extra)
{
	struct moat_shm_header h = { 0 };
	struct region_config cfg = { .frame_ring_bytes = 1 << 16, .flow_ring_bytes = 1 << 20 };
	long end;

	h.guest_ip4[0] = 10, h.guest_ip4[2] = 2, h.guest_ip4[3] = 15;
	h.gateway_ip4[0] = 10, h.gateway_ip4[2] = 2, h.gateway_ip4[3] = 2;
	h.dns_ip4[0] = 10, h.dns_ip4[2] = 2, h.dns_ip4[3] = 3;
	h.connect_timeout_ms = 1500;
	h.max_tcp_connections = 128; /* more than the DNS streams (dns_streams_are_bounded) */
	h.max_udp_flows = 4;
	h.udp_idle_timeout_s = 60;
	h.tcp_idle_timeout_s = MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S;
	h.log_level = 1;
	cr_assert_eq(region_create(&cfg, &h, &region), 0);
	efd_sup = eventfd(0, EFD_NONBLOCK);
	efd_ns = eventfd(0, EFD_NONBLOCK);
	efd_px = eventfd(0, EFD_NONBLOCK);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ctl), 0);
	memset(&px, 0, sizeof(px));
	px.region = region;
	px.efd_self = efd_px;
	px.efd_netstack = efd_ns;
	px.efd_supervisor = efd_sup;
	px.control_fd = ctl[1];
	cr_assert_eq(uv_loop_init(&px.loop), 0);
	cr_assert_eq(relay_init(&px), 0);
	ring_attach(&s2p, region.part[MOAT_PART_RING_S2P],
		    region_ring_capacity(&region, MOAT_PART_RING_S2P), efd_px, -1, NULL);
	ring_attach(&p2s, region.part[MOAT_PART_RING_P2S],
		    region_ring_capacity(&region, MOAT_PART_RING_P2S), -1, efd_px, NULL);
	mbox_seq = 0;
	send_policy(extra, 1);
	end = now_ms() + 2000;
	while (!px.policy && now_ms() < end)
		spin();
	cr_assert_not_null(px.policy, "the proxy took no policy");
}

static void stop(void)
{
	relay_fini(&px);
	uv_loop_close(&px.loop);
	region_unmap(&region);
	close(efd_sup);
	close(efd_ns);
	close(efd_px);
	close(ctl[0]);
	close(ctl[1]);
}

static void push(uint32_t type, const void *msg, uint32_t len)
{
	cr_assert_eq(ring_push(&s2p, type, msg, len), 0);
	ring_flush(&s2p);
}

static void pushv(uint32_t type, const void *hdr, uint32_t hlen, const void *data, uint32_t dlen)
{
	struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)data, dlen } };

	cr_assert_eq(ring_pushv(&s2p, type, iov, 2), 0);
	ring_flush(&s2p);
}

/* Next p2s record of @type (others are skipped into *skipped if given), or -1 on timeout. */
static int expect(uint32_t type, int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	for (;;) {
		uint32_t t;
		int n = ring_pop(&p2s, &t, rbuf, sizeof(rbuf));

		if (n >= 0) {
			ring_release(&p2s);
			if (t == type)
				return n;
			continue;
		}
		cr_assert_eq(n, -EAGAIN);
		if (now_ms() > end)
			return -1;
		spin();
	}
}

static struct flow_endpoint ep4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
	struct flow_endpoint e = { .family = 4, .port = port };

	e.addr[0] = a, e.addr[1] = b, e.addr[2] = c, e.addr[3] = d;
	return e;
}

static struct flow_endpoint guest_ep(uint16_t port)
{
	return ep4(10, 0, 2, 15, port);
}

static int tcp_listener(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int accept_wait(int lfd)
{
	long end = now_ms() + 3000;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

		if (fd >= 0)
			return fd;
		cr_assert(now_ms() < end, "no connection arrived");
		spin();
	}
}

static uint32_t connect_flow(uint32_t id, struct flow_endpoint dst)
{
	struct flow_connect c = { .id = id, .src = guest_ep((uint16_t)(40000 + id)), .dst = dst };
	struct flow_connect_result r;
	int n;

	push(FLOW_CONNECT, &c, sizeof(c));
	n = expect(FLOW_CONNECT_RESULT, 3000);
	cr_assert_eq(n, (int)sizeof(r), "no CONNECT_RESULT");
	memcpy(&r, rbuf, sizeof(r));
	cr_assert_eq(r.id, id);
	return r.result;
}

/* The next event the proxy sent to the "supervisor", or NULL. */
static char *read_event(int timeout_ms)
{
	static char buf[4096];
	long end = now_ms() + timeout_ms;
	uint32_t len;

	while (now_ms() < end) {
		ssize_t n = recv(ctl[0], &len, 4, MSG_DONTWAIT | MSG_PEEK);

		if (n == 4) {
			cr_assert_lt(len, sizeof(buf));
			recv(ctl[0], &len, 4, 0);
			cr_assert_eq(recv(ctl[0], buf, len, MSG_WAITALL), (ssize_t)len);
			buf[len] = '\0';
			return buf;
		}
		spin();
	}
	return NULL;
}

static bool violation_posted(uint32_t *reason, int32_t *rule)
{
	struct moat_mailbox *mb = region.part[MOAT_PART_MBOX_PROXY];
	uint32_t seq = __atomic_load_n(&mb->seq, __ATOMIC_ACQUIRE);

	if (seq == mbox_seq)
		return false;
	mbox_seq = seq;
	*reason = mb->reason;
	*rule = mb->rule;
	return true;
}

static struct moat_proxy_counters *cnt(void)
{
	return region.part[MOAT_PART_CNT_PROXY];
}

/* ---- validation (the checks themselves: test_flowmsg.c) ------------ */

Test(relay, malformed_record_is_a_violation)
{
	struct flow_credit cr = { .id = 5, .bytes = 1 };
	uint32_t reason;
	int32_t rule;

	start(NULL);
	push(FLOW_CREDIT, &cr, 7); /* wrong size */
	run_ms(50);
	cr_assert(violation_posted(&reason, &rule));
	cr_assert_eq(reason, MOAT_VIOL_BAD_MESSAGE);
	cr_assert(px.violation);
	cr_assert_eq(cnt()->bad_messages, 1);
	/* Nothing more is processed. */
	push(FLOW_CREDIT, &cr, sizeof(cr));
	run_ms(20);
	cr_assert_eq(ring_used_bytes(s2p.ctl, s2p.cap) > 0, true);
	stop();
}

Test(relay, corrupt_ring_is_a_violation)
{
	struct moat_ring_ctl *c;
	uint32_t reason;
	int32_t rule;
	uint64_t one = 1;

	start(NULL);
	c = region.part[MOAT_PART_RING_S2P];
	__atomic_store_n(&c->head, c->tail + s2p.cap * 2, __ATOMIC_RELEASE);
	cr_assert_eq(write(efd_px, &one, 8), 8);
	run_ms(50);
	cr_assert(violation_posted(&reason, &rule));
	cr_assert_eq(reason, MOAT_VIOL_RING_CORRUPT);
	stop();
}

Test(relay, unknown_ids_are_ignored)
{
	struct flow_credit cr = { .id = 77, .bytes = 100 };
	struct flow_close cl = { .id = 78, .reset = 1 };
	struct flow_shut sh = { .id = 79 };
	uint8_t d[16] = { 80, 0, 0, 0, 0, 0, 0, 0, 'x' };
	uint32_t reason;
	int32_t rule;

	start(NULL);
	push(FLOW_CREDIT, &cr, sizeof(cr));
	push(FLOW_CLOSE, &cl, sizeof(cl));
	push(FLOW_SHUT_WR, &sh, sizeof(sh));
	push(FLOW_DATA, d, 9);
	run_ms(50);
	cr_assert_not(violation_posted(&reason, &rule));
	cr_assert_eq(expect(FLOW_CLOSE, 10), -1);
	stop();
}

/* ---- TCP ---------------------------------------------------------- */

Test(relay, tcp_relay_credits_half_close)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;
	struct flow_data dh = { .id = 1 };
	struct flow_credit cr = { .id = 1 };
	struct flow_shut sh = { .id = 1 };
	char buf[70000], msg[] = "hello server";
	uint64_t got = 0, credited = 0;
	long end;
	int n;

	start(NULL);
	cr_assert_eq(connect_flow(1, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	cr_assert_eq(cnt()->tcp_connections[MOAT_CONN_OK], 1);
	cr_assert_eq(cnt()->tcp_active, 1);

	/* guest -> server, and the credit comes back */
	pushv(FLOW_DATA, &dh, sizeof(dh), msg, sizeof(msg));
	end = now_ms() + 2000;
	while (credited < sizeof(msg) && now_ms() < end) {
		n = expect(FLOW_CREDIT, 50);
		if (n == sizeof(cr)) {
			memcpy(&cr, rbuf, sizeof(cr));
			cr_assert_eq(cr.id, 1);
			credited += cr.bytes;
		}
	}
	cr_assert_eq(credited, sizeof(msg));
	n = (int)recv(sfd, buf, sizeof(buf), 0);
	cr_assert_eq(n, (int)sizeof(msg));
	cr_assert_str_eq(buf, msg);

	/* server -> guest only within credit */
	memset(buf, 'z', sizeof(buf));
	cr_assert_eq(send(sfd, buf, 50000, 0), 50000);
	run_ms(30);
	cr_assert_eq(expect(FLOW_DATA, 20), -1, "data without credit");
	cr.id = 1;
	cr.bytes = 1000;
	push(FLOW_CREDIT, &cr, sizeof(cr));
	end = now_ms() + 2000;
	while (now_ms() < end && got < 1000) {
		n = expect(FLOW_DATA, 20);
		if (n > 0)
			got += (uint64_t)n - sizeof(dh);
	}
	cr_assert_eq(got, 1000);
	run_ms(30);
	cr_assert_eq(expect(FLOW_DATA, 20), -1, "more data than credit");
	cr.bytes = 100000;
	push(FLOW_CREDIT, &cr, sizeof(cr));
	end = now_ms() + 2000;
	while (now_ms() < end && got < 50000) {
		n = expect(FLOW_DATA, 20);
		if (n > 0) {
			cr_assert_leq(n - (int)sizeof(dh), FLOW_DATA_MAX);
			got += (uint64_t)n - sizeof(dh);
		}
	}
	cr_assert_eq(got, 50000);
	cr_assert_eq(cnt()->upstream_rx_bytes, 50000);

	/* half-close: the guest shuts, the server sees EOF, answers, closes */
	push(FLOW_SHUT_WR, &sh, sizeof(sh));
	end = now_ms() + 2000;
	for (;;) {
		n = (int)recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			break;
		cr_assert(now_ms() < end, "no EOF at the server");
		spin();
	}
	cr_assert_eq(send(sfd, "bye", 3, 0), 3);
	close(sfd);
	cr_assert_gt(expect(FLOW_DATA, 2000), 0);
	cr_assert_eq(memcmp(rbuf + sizeof(dh), "bye", 3), 0);
	cr_assert_eq(expect(FLOW_SHUT_WR, 2000), (int)sizeof(sh));
	cr_assert_eq(expect(FLOW_CLOSE, 2000), (int)sizeof(struct flow_close));
	cr_assert_eq(((struct flow_close *)rbuf)->reset, 0);
	run_ms(20);
	cr_assert_eq(cnt()->tcp_active, 0);
	close(lfd);
	stop();
}

Test(relay, tcp_refused_and_gateway_means_host)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;

	close(lfd); /* nothing listens on port now */
	start(NULL);
	cr_assert_eq(connect_flow(2, ep4(127, 0, 0, 1, port)), MOAT_CONN_REFUSED);
	lfd = tcp_listener(&port);
	/* 10.0.2.2 is the host: dialled as 127.0.0.1 */
	cr_assert_eq(connect_flow(3, ep4(10, 0, 2, 2, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	close(sfd);
	close(lfd);
	stop();
}

Test(relay, tcp_upstream_reset_and_guest_reset)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;
	struct linger lg = { 1, 0 };
	struct flow_close cl = { .id = 5, .reset = 1 };
	struct flow_credit cr = { .id = 4, .bytes = 1000 };
	char b[8];
	long end;
	int n;

	start(NULL);
	cr_assert_eq(connect_flow(4, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	push(FLOW_CREDIT, &cr, sizeof(cr));
	sfd = accept_wait(lfd);
	setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(sfd); /* RST */
	cr_assert_eq(expect(FLOW_CLOSE, 2000), (int)sizeof(cl));
	cr_assert_eq(((struct flow_close *)rbuf)->reset, 1);

	/* The guest resets: the server sees ECONNRESET. */
	cr_assert_eq(connect_flow(5, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	push(FLOW_CLOSE, &cl, sizeof(cl));
	end = now_ms() + 2000;
	for (;;) {
		n = (int)recv(sfd, b, sizeof(b), MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN)
			break;
		cr_assert_neq(n, 0, "orderly EOF instead of a reset");
		cr_assert(now_ms() < end, "no reset at the server");
		spin();
	}
	cr_assert_eq(errno, ECONNRESET);
	close(sfd);
	close(lfd);
	stop();
}

Test(relay, tcp_denied_with_event)
{
	char *ev;
	uint32_t reason;
	int32_t rule;

	start(NULL);
	cr_assert_eq(connect_flow(6, ep4(127, 0, 0, 2, 80)), MOAT_CONN_DENIED);
	cr_assert_eq(cnt()->tcp_connections[MOAT_CONN_DENIED], 1);
	cr_assert_eq(cnt()->denials_egress[MOAT_P_TCP], 1);
	ev = read_event(1000);
	cr_assert_not_null(ev);
	cr_assert_str_eq(ev, "{\"event\":\"denial\",\"direction\":\"egress\",\"protocol\":\"tcp\","
			     "\"dst\":\"127.0.0.2\",\"dst_port\":80,\"rule\":0,\"flow\":6}");
	cr_assert_not(violation_posted(&reason, &rule));
	stop();
}

Test(relay, tcp_terminate_rule_posts_violation)
{
	uint32_t reason;
	int32_t rule;
	struct flow_connect c = { .id = 7, .src = guest_ep(1234), .dst = ep4(127, 0, 0, 3, 80) };

	start(NULL);
	push(FLOW_CONNECT, &c, sizeof(c));
	run_ms(30);
	cr_assert(violation_posted(&reason, &rule));
	cr_assert_eq(reason, MOAT_VIOL_POLICY_TERMINATE);
	cr_assert_eq(rule, 1);
	{
		struct moat_mailbox *mb = region.part[MOAT_PART_MBOX_PROXY];

		cr_assert_eq(mb->flow, 7);
		cr_assert_eq(mb->dst_port, 80);
		cr_assert_eq(mb->dst_addr[3], 3);
	}
	stop();
}

Test(relay, tcp_policy_reload_applies_to_new_connections)
{
	uint16_t port;
	int lfd = tcp_listener(&port);
	char doc[512];

	start(NULL);
	cr_assert_eq(connect_flow(8, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	snprintf(doc, sizeof(doc),
		 "{\"policy\":{\"default_egress\":\"deny\",\"default_ingress\":\"allow\","
		 "\"rules\":[]},\"generation\":2}");
	send_doc(doc);
	run_ms(50);
	cr_assert_eq(px.generation, 2);
	cr_assert_eq(cnt()->policy_generation, 2);
	cr_assert_eq(connect_flow(9, ep4(127, 0, 0, 1, port)), MOAT_CONN_DENIED);
	/* A broken document changes nothing. */
	send_doc("{\"policy\":{\"default_egress\":\"maybe\"},\"generation\":3}");
	send_doc("{\"policy\":{},\"generation\":4,\"bogus\":1}");
	run_ms(50);
	cr_assert_eq(px.generation, 2);
	cr_assert_eq(connect_flow(10, ep4(127, 0, 0, 1, port)), MOAT_CONN_DENIED);
	close(lfd);
	stop();
}

Test(relay, tcp_limit_refuses)
{
	uint16_t port;
	int lfd = tcp_listener(&port);
	char *ev;

	start(",\"limits\":{\"max_tcp_connections\":{\"limit\":2,\"on_exceed\":\"refuse\"}}");
	cr_assert_eq(connect_flow(11, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	cr_assert_eq(connect_flow(12, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	cr_assert_eq(connect_flow(13, ep4(127, 0, 0, 1, port)), MOAT_CONN_LIMIT);
	cr_assert_eq(cnt()->limit_exceeded, 1);
	ev = read_event(1000);
	cr_assert_not_null(ev);
	cr_assert(strstr(ev, "\"event\":\"limit\"") && strstr(ev, "max_tcp_connections"), "%s", ev);
	close(lfd);
	stop();
}

/* ---- UDP ---------------------------------------------------------- */

static int udp_server(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int udp_recv_wait(int fd, void *buf, size_t len, struct sockaddr_in *from)
{
	long end = now_ms() + 2000;
	socklen_t fl = sizeof(*from);

	for (;;) {
		int n = (int)recvfrom(fd, buf, len, 0, (struct sockaddr *)from, &fl);

		if (n >= 0)
			return n;
		if (now_ms() > end)
			return -1;
		spin();
	}
}

Test(relay, udp_flow_echo_deny_and_cap)
{
	uint16_t port;
	int sfd = udp_server(&port);
	struct flow_dgram d = { .src = guest_ep(5000), .dst = ep4(127, 0, 0, 1, port) };
	struct sockaddr_in from;
	char buf[100];
	int n;

	start(NULL);
	pushv(FLOW_DGRAM, &d, sizeof(d), "ping", 4);
	n = udp_recv_wait(sfd, buf, sizeof(buf), &from);
	cr_assert_eq(n, 4);
	cr_assert_eq(sendto(sfd, "pong!", 5, 0, (struct sockaddr *)&from, sizeof(from)), 5);
	n = expect(FLOW_DGRAM, 2000);
	cr_assert_eq(n, (int)sizeof(d) + 5);
	{
		struct flow_dgram r;

		memcpy(&r, rbuf, sizeof(r));
		cr_assert_eq(r.src.port, port); /* from the remote */
		cr_assert_eq(r.dst.port, 5000); /* to the guest */
		cr_assert_eq(memcmp(rbuf + sizeof(r), "pong!", 5), 0);
	}
	cr_assert_eq(cnt()->udp_flows_opened, 1);
	/* Same flow: no new socket. */
	pushv(FLOW_DGRAM, &d, sizeof(d), "again", 5);
	cr_assert_eq(udp_recv_wait(sfd, buf, sizeof(buf), &from), 5);
	cr_assert_eq(cnt()->udp_flows_opened, 1);

	/* Denied destination: dropped and counted, one event. */
	d.dst = ep4(127, 0, 0, 2, 9);
	pushv(FLOW_DGRAM, &d, sizeof(d), "x", 1);
	pushv(FLOW_DGRAM, &d, sizeof(d), "x", 1);
	run_ms(30);
	cr_assert_eq(cnt()->denials_egress[MOAT_P_UDP], 2);
	cr_assert_not_null(read_event(500));
	cr_assert_null(read_event(50));

	/* The header caps flows at 4. */
	for (int i = 0; i < 6; i++) {
		d.src = guest_ep((uint16_t)(6000 + i));
		d.dst = ep4(127, 0, 0, 1, port);
		pushv(FLOW_DGRAM, &d, sizeof(d), "y", 1);
	}
	run_ms(50);
	cr_assert_eq(cnt()->udp_flows_active, 4);
	cr_assert_eq(cnt()->udp_flows_refused, 3);
	close(sfd);
	stop();
}

/* ---- DNS ---------------------------------------------------------- */

static size_t build_query(uint8_t *b, uint16_t id, const char *name, uint16_t type)
{
	size_t n = 12;

	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8), b[1] = (uint8_t)id;
	b[2] = 1; /* RD */
	b[5] = 1; /* one question */
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		b[n++] = (uint8_t)l;
		memcpy(b + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	b[n++] = 0;
	b[n++] = 0, b[n++] = (uint8_t)type;
	b[n++] = 0, b[n++] = 1;
	return n;
}

/* Answer query @q (length @qn) with one A record a.b.c.d. */
static size_t build_answer(uint8_t *b, const uint8_t *q, size_t qn, uint8_t a, uint8_t bb,
			   uint8_t c, uint8_t d)
{
	memcpy(b, q, qn);
	b[2] |= 0x80;
	b[3] = 0x80;
	b[7] = 1;
	b[qn++] = 0xc0, b[qn++] = 12;
	b[qn++] = 0, b[qn++] = 1, b[qn++] = 0, b[qn++] = 1;
	b[qn++] = 0, b[qn++] = 0, b[qn++] = 0, b[qn++] = 60;
	b[qn++] = 0, b[qn++] = 4;
	b[qn++] = a, b[qn++] = bb, b[qn++] = c, b[qn++] = d;
	return qn;
}

/* A UDP query for @name to @dst; the answer must come back from @dst. */
static int dns_roundtrip_to(int ufd, struct flow_endpoint dst, const char *name, uint8_t *ans,
			    bool upstream_answers, const uint8_t addr[4])
{
	struct flow_dgram d = { .src = guest_ep(5353), .dst = dst };
	uint8_t q[512], up[512], a[512];
	struct sockaddr_in from;
	size_t qn = build_query(q, 0xabcd, name, 1);
	int n;

	pushv(FLOW_DGRAM, &d, sizeof(d), q, (uint32_t)qn);
	if (upstream_answers) {
		n = udp_recv_wait(ufd, up, sizeof(up), &from);
		cr_assert_eq(n, (int)qn, "the query did not reach upstream");
		cr_assert_eq(memcmp(up + 2, q + 2, qn - 2), 0);
		n = (int)build_answer(a, up, qn, addr[0], addr[1], addr[2], addr[3]);
		cr_assert_eq(sendto(ufd, a, (size_t)n, 0, (struct sockaddr *)&from, sizeof(from)),
			     n);
	}
	n = expect(FLOW_DGRAM, 3000);
	cr_assert_gt(n, (int)sizeof(d));
	{
		struct flow_dgram r;

		memcpy(&r, rbuf, sizeof(r));
		cr_assert_eq(r.src.port, dst.port);
		cr_assert_eq(memcmp(r.src.addr, dst.addr, 4), 0,
			     "the answer is not from %u.%u.%u.%u", dst.addr[0], dst.addr[1],
			     dst.addr[2], dst.addr[3]);
		cr_assert_eq(r.dst.port, 5353);
	}
	memcpy(ans, rbuf + sizeof(d), (size_t)n - sizeof(d));
	cr_assert_eq(ans[0], 0xab);
	cr_assert_eq(ans[1], 0xcd);
	return n - (int)sizeof(d);
}

static int dns_roundtrip(int ufd, const char *name, uint8_t *ans, bool upstream_answers,
			 const uint8_t addr[4])
{
	return dns_roundtrip_to(ufd, ep4(10, 0, 2, 3, 53), name, ans, upstream_answers, addr);
}

Test(relay, dns_forward_deny_rebind_pin)
{
	uint16_t port;
	int ufd = udp_server(&port);
	char extra[128];
	uint8_t ans[512], up[512];
	struct sockaddr_in from;
	static const uint8_t pub[4] = { 203, 0, 113, 9 }, priv[4] = { 10, 1, 2, 3 },
			     p4[4] = { 127, 0, 0, 4 };
	const char *names[4];
	int n;

	snprintf(extra, sizeof(extra),
		 ",\"dns\":{\"nameservers\":[\"127.0.0.1:%u\"],\"timeout_ms\":500}", port);
	start(extra);

	/* Allowed: forwarded, answered, pinned. */
	n = dns_roundtrip(ufd, "www.Example.test", ans, true, pub);
	cr_assert_gt(n, 12);
	cr_assert_eq(ans[3] & 0xf, 0);
	cr_assert_eq(ans[7], 1);
	cr_assert_eq(pins_lookup(&px.pins, 4, pub, uv_now(&px.loop), names, 4), 1);
	cr_assert_str_eq(names[0], "www.example.test");
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_FORWARDED], 1);

	/* Denied: NXDOMAIN, never upstream, an event. */
	n = dns_roundtrip(ufd, "blocked.test", ans, false, NULL);
	cr_assert_gt(n, 12);
	cr_assert_eq(ans[3] & 0xf, 3);
	run_ms(50);
	cr_assert_eq(recvfrom(ufd, up, sizeof(up), MSG_DONTWAIT, NULL, NULL), -1);
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_DENIED], 1);
	{
		char *ev = read_event(500);

		cr_assert_not_null(ev);
		cr_assert(strstr(ev, "\"event\":\"dns_denial\"") && strstr(ev, "\"name\":\"blocked."
									       "test\""),
			  "%s", ev);
	}

	/* Rebind: a private answer becomes NXDOMAIN. */
	n = dns_roundtrip(ufd, "evil.test", ans, true, priv);
	cr_assert_gt(n, 12);
	cr_assert_eq(ans[3] & 0xf, 3);
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_REBIND], 1);

	/* A domain_suffix rule allows a connection only through a pinned name. */
	cr_assert_eq(connect_flow(20, ep4(127, 0, 0, 4, 9)), MOAT_CONN_DENIED);
	pins_add(&px.pins, 4, p4, "a.pinned.test", 60, uv_now(&px.loop));
	cr_assert_neq(connect_flow(21, ep4(127, 0, 0, 4, 9)), MOAT_CONN_DENIED);

	/* Malformed query: FORMERR. */
	{
		struct flow_dgram d = { .src = guest_ep(5353), .dst = ep4(10, 0, 2, 3, 53) };
		uint8_t q[20] = { 0x11, 0x22, 1, 0, 0, 2 };

		pushv(FLOW_DGRAM, &d, sizeof(d), q, sizeof(q));
		n = expect(FLOW_DGRAM, 1000);
		cr_assert_eq(n, (int)sizeof(d) + 12);
		cr_assert_eq(rbuf[sizeof(d) + 3] & 0xf, 1);
		cr_assert_eq(cnt()->dns_queries[MOAT_DNS_FORMERR], 1);
	}

	/* An answer with the wrong id is ignored; upstream silence is SERVFAIL. */
	{
		struct flow_dgram d = { .src = guest_ep(5353), .dst = ep4(10, 0, 2, 3, 53) };
		uint8_t q[512], a[512];
		size_t qn = build_query(q, 0xabcd, "slow.test", 1);

		pushv(FLOW_DGRAM, &d, sizeof(d), q, (uint32_t)qn);
		n = udp_recv_wait(ufd, up, sizeof(up), &from);
		cr_assert_eq(n, (int)qn);
		up[0] ^= 0xff;
		n = (int)build_answer(a, up, qn, 1, 2, 3, 4);
		sendto(ufd, a, (size_t)n, 0, (struct sockaddr *)&from, sizeof(from));
		n = expect(FLOW_DGRAM, 2000);
		cr_assert_gt(n, (int)sizeof(d) + 3);
		cr_assert_eq(rbuf[sizeof(d) + 3] & 0xf, 2, "expected SERVFAIL after the timeout");
		cr_assert_eq(cnt()->dns_queries[MOAT_DNS_SERVFAIL], 1);
	}
	close(ufd);
	stop();
}

Test(relay, dns_failover_and_truncation)
{
	uint16_t dead, port;
	int d0 = udp_server(&dead), ufd = udp_server(&port);
	char extra[160];
	uint8_t q[512], up[1400], a[1400];
	struct sockaddr_in from;
	struct flow_dgram d = { .src = guest_ep(5353), .dst = ep4(10, 0, 2, 3, 53) };
	size_t qn;
	int n;

	close(d0); /* ICMP port unreachable from the first server */
	snprintf(extra, sizeof(extra),
		 ",\"dns\":{\"nameservers\":[\"127.0.0.1:%u\",\"127.0.0.1:%u\"],\"timeout_ms\":"
		 "500}",
		 dead, port);
	start(extra);
	qn = build_query(q, 0xabcd, "big.test", 1);
	pushv(FLOW_DGRAM, &d, sizeof(d), q, (uint32_t)qn);
	n = udp_recv_wait(ufd, up, sizeof(up), &from);
	cr_assert_eq(n, (int)qn, "no failover to the second server");
	/* 60 A records: more than 512 bytes. */
	memcpy(a, up, qn);
	a[2] |= 0x80;
	a[3] = 0x80;
	a[7] = 60;
	n = (int)qn;
	for (int i = 0; i < 60; i++) {
		uint8_t rr[16] = {
			0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, (uint8_t)i
		};

		memcpy(a + n, rr, 16);
		n += 16;
	}
	sendto(ufd, a, (size_t)n, 0, (struct sockaddr *)&from, sizeof(from));
	n = expect(FLOW_DGRAM, 2000);
	cr_assert_eq(n, (int)(sizeof(d) + qn), "not truncated to the question");
	cr_assert(rbuf[sizeof(d) + 2] & 0x02, "TC not set");
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_TRUNCATED], 1);
	close(ufd);
	stop();
}

Test(relay, dns_over_tcp)
{
	uint16_t port;
	int ufd = udp_server(&port), lfd, sfd;
	char extra[128];
	struct flow_data dh = { .id = 30 };
	struct flow_credit cr = { .id = 30, .bytes = 4096 };
	struct flow_shut sh = { .id = 30 };
	uint8_t q[512], m[514], up[600], a[600];
	size_t qn;
	uint16_t tport;
	long end;
	int n;

	close(ufd);
	lfd = tcp_listener(&tport);
	snprintf(extra, sizeof(extra),
		 ",\"dns\":{\"nameservers\":[\"127.0.0.1:%u\"],\"timeout_ms\":1000}", tport);
	start(extra);
	cr_assert_eq(connect_flow(30, ep4(10, 0, 2, 3, 53)), MOAT_CONN_OK);
	push(FLOW_CREDIT, &cr, sizeof(cr));
	qn = build_query(q, 0xabcd, "tcp.test", 1);
	m[0] = 0, m[1] = (uint8_t)qn;
	memcpy(m + 2, q, qn);
	pushv(FLOW_DATA, &dh, sizeof(dh), m, (uint32_t)qn + 2);
	/* The forwarder asks upstream over TCP. */
	sfd = accept_wait(lfd);
	end = now_ms() + 2000;
	n = 0;
	while (n < (int)qn + 2 && now_ms() < end) {
		int k = (int)recv(sfd, up + n, sizeof(up) - (size_t)n, MSG_DONTWAIT);

		if (k > 0)
			n += k;
		spin();
	}
	cr_assert_eq(n, (int)qn + 2);
	n = (int)build_answer(a + 2, up + 2, qn, 203, 0, 113, 50);
	a[0] = 0, a[1] = (uint8_t)n;
	cr_assert_eq(send(sfd, a, (size_t)n + 2, 0), n + 2);
	n = expect(FLOW_DATA, 2000);
	cr_assert_eq(n, (int)sizeof(dh) + (int)a[1] + 2);
	cr_assert_eq(rbuf[sizeof(dh) + 2], 0xab);
	/* The guest shuts: SHUT_WR and CLOSE come back. */
	push(FLOW_SHUT_WR, &sh, sizeof(sh));
	cr_assert_eq(expect(FLOW_SHUT_WR, 1000), (int)sizeof(sh));
	cr_assert_eq(expect(FLOW_CLOSE, 1000), (int)sizeof(struct flow_close));
	close(sfd);
	close(lfd);
	stop();
}

/*
 * A guest that pipelines queries and never reads the answers: the queue of
 * answers toward it is bounded, and the answer that does not fit resets the
 * flow. The answers are local (denied names), so they are queued from inside
 * dnsfwd_stream_input(), which goes on parsing the same DATA record: the
 * reset must not free the stream under it (under ASan a use-after-free).
 */
Test(relay, dns_over_tcp_unread_answers_reset_the_flow)
{
	struct flow_data dh = { .id = 31 };
	struct flow_close c;
	static uint8_t m[64 * 80];
	size_t n = 0;
	uint8_t q[512];
	int k;

	start(NULL);
	cr_assert_eq(connect_flow(31, ep4(10, 0, 2, 3, 53)), MOAT_CONN_OK);
	/* No CREDIT: nothing can be sent; 80 queries, more than the queue holds. */
	for (int i = 0; i < 80; i++) {
		size_t qn = build_query(q, (uint16_t)i, "blocked.test", 1);

		m[n++] = 0, m[n++] = (uint8_t)qn;
		memcpy(m + n, q, qn);
		n += qn;
	}
	pushv(FLOW_DATA, &dh, sizeof(dh), m, (uint32_t)n);
	k = expect(FLOW_CLOSE, 2000);
	cr_assert_eq(k, (int)sizeof(c), "the flow was not closed");
	memcpy(&c, rbuf, sizeof(c));
	cr_assert_eq(c.id, 31);
	cr_assert_eq(c.reset, 1);
	cr_assert_geq(cnt()->dns_queries[MOAT_DNS_DENIED], 64);
	/* The id is dead; the proxy still serves DNS over TCP. */
	push(FLOW_CREDIT, &(struct flow_credit){ .id = 31, .bytes = 4096 },
	     sizeof(struct flow_credit));
	cr_assert_eq(connect_flow(32, ep4(10, 0, 2, 3, 53)), MOAT_CONN_OK);
	push(FLOW_CREDIT, &(struct flow_credit){ .id = 32, .bytes = 4096 },
	     sizeof(struct flow_credit));
	dh.id = 32;
	pushv(FLOW_DATA, &dh, sizeof(dh), m, 2 + m[1]);
	k = expect(FLOW_DATA, 2000);
	cr_assert_gt(k, (int)sizeof(dh) + 2 + 12, "no answer on a new stream");
	cr_assert_eq(rbuf[sizeof(dh) + 2 + 3] & 0xf, 3, "expected NXDOMAIN");
	stop();
}

/* ---- published ports ---------------------------------------------- */

static uint16_t free_port(void)
{
	uint16_t port;
	int fd = tcp_listener(&port);

	close(fd);
	return port;
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
	return fd;
}

/*
 * Accept fails with EMFILE: the listener pauses instead of spinning, counts
 * it, and serves the next client once descriptors are free again. libuv's
 * reserve fd is closed first: in the confined proxy it cannot reopen it
 * (openat is forbidden), so this is the proxy after its first EMFILE.
 * Before the fix the proxy spun in uv_run() for ever (the timeout fails it).
 */
Test(relay, publish_survives_accept_errors, .timeout = 30)
{
	struct policy_publish pub = { .host_addr = { .family = AF_INET },
				      .guest_port = 8080,
				      .proto = POLICY_PROTO_TCP };
	struct rlimit old, low;
	struct flow_connect a;
	struct flow_connect_result r;
	int fill[64], nfill = 0, c1, c2, n;
	long end;

	pub.host_addr.addr[0] = 127, pub.host_addr.addr[3] = 1;
	pub.host_port = free_port();
	start(NULL);
	cr_assert_eq(publish_listen(&px, &pub), 0);
	if (px.loop.emfile_fd >= 0) {
		close(px.loop.emfile_fd);
		px.loop.emfile_fd = -1;
	}
	c1 = connect_to(pub.host_port);
	/* Every descriptor in use: the next accept4() fails with EMFILE. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)c1 + 32;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (nfill < 64) {
		int fd = dup(0);

		if (fd < 0)
			break;
		fill[nfill++] = fd;
	}
	cr_assert_lt(nfill, 64, "the lower limit did not take");
	run_ms(400);
	cr_assert_geq(publish_accept_errors(&px), 1, "no accept error was seen");
	cr_assert_eq(expect(FLOW_ACCEPTED, 10), -1, "accepted without a descriptor?");
	/* Descriptors again: a new client is accepted and relayed. */
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	close(c1);
	run_ms(300); /* the listener listens again after its pause */
	c2 = connect_to(pub.host_port);
	n = expect(FLOW_ACCEPTED, 3000);
	cr_assert_eq(n, (int)sizeof(a), "the listener stopped accepting");
	memcpy(&a, rbuf, sizeof(a));
	cr_assert(a.id & FLOW_ID_INGRESS);
	cr_assert_eq(a.dst.port, 8080);
	r.id = a.id;
	r.result = MOAT_CONN_OK;
	push(FLOW_CONNECT_RESULT, &r, sizeof(r));
	push(FLOW_CREDIT, &(struct flow_credit){ .id = a.id, .bytes = 4096 },
	     sizeof(struct flow_credit));
	end = now_ms() + 2000;
	while (send(c2, "hello", 5, MSG_DONTWAIT) != 5 && now_ms() < end)
		spin();
	n = expect(FLOW_DATA, 3000);
	cr_assert_eq(n, (int)sizeof(struct flow_data) + 5, "nothing relayed");
	cr_assert_eq(((struct flow_data *)rbuf)->id, a.id);
	cr_assert_eq(memcmp(rbuf + sizeof(struct flow_data), "hello", 5), 0);
	close(c2);
	stop();
}

/*
 * A client the proxy cannot take at once (here: no policy in force; in
 * production: no memory for the flow) is held, not lost, and the listener
 * goes on: before the fix libuv kept it and stopped polling for good.
 */
Test(relay, publish_holds_a_client_it_cannot_take_yet, .timeout = 30)
{
	struct policy_publish pub = { .host_addr = { .family = AF_INET },
				      .guest_port = 8081,
				      .proto = POLICY_PROTO_TCP };
	struct flow_connect a;
	struct policy *pol;
	int c1, c2;

	pub.host_addr.addr[0] = 127, pub.host_addr.addr[3] = 1;
	pub.host_port = free_port();
	start(NULL);
	cr_assert_eq(publish_listen(&px, &pub), 0);
	pol = px.policy;
	px.policy = NULL;
	c1 = connect_to(pub.host_port);
	run_ms(250);
	cr_assert_eq(expect(FLOW_ACCEPTED, 10), -1);
	px.policy = pol;
	cr_assert_eq(expect(FLOW_ACCEPTED, 2000), (int)sizeof(a), "the held client was lost");
	c2 = connect_to(pub.host_port);
	cr_assert_eq(expect(FLOW_ACCEPTED, 2000), (int)sizeof(a), "the listener stopped accepting");
	close(c1);
	close(c2);
	stop();
}

/* ---- backpressure ------------------------------------------------- */

Test(relay, full_ring_stops_reading_and_resumes)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;
	struct flow_credit cr = { .id = 40, .bytes = 32u << 20 };
	const size_t total = 32u << 20; /* 32 rings: more than socket buffers hold */
	uint8_t *src = malloc(total);
	size_t sent = 0, got = 0;
	uint64_t used;
	long end;

	for (size_t i = 0; i < total; i++)
		src[i] = (uint8_t)(i * 7 + i / 4096);
	start(NULL);
	cr_assert_eq(connect_flow(40, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	push(FLOW_CREDIT, &cr, sizeof(cr));
	/* Feed the server side without consuming p2s: the proxy must stop at a full ring. */
	end = now_ms() + 1500;
	while (now_ms() < end) {
		ssize_t n = send(sfd, src + sent, total - sent, MSG_DONTWAIT);

		if (n > 0)
			sent += (size_t)n;
		spin();
	}
	used = ring_used_bytes(p2s.ctl, p2s.cap);
	cr_assert_gt(used, p2s.cap / 2, "the ring never filled (%llu used)",
		     (unsigned long long)used);
	cr_assert_lt(sent, total, "the server could send everything: nothing pushed back");
	/* Now drain as the netstack would; everything arrives, in order. */
	end = now_ms() + 10000;
	while (got < total && now_ms() < end) {
		uint32_t t;
		int n = ring_pop(&p2s, &t, rbuf, sizeof(rbuf));

		if (n < 0) {
			ring_release(&p2s);
			if (sent < total) {
				ssize_t k = send(sfd, src + sent, total - sent, MSG_DONTWAIT);

				if (k > 0)
					sent += (size_t)k;
			}
			spin();
			continue;
		}
		if (t != FLOW_DATA)
			continue;
		cr_assert_eq(((struct flow_data *)rbuf)->id, 40);
		cr_assert_eq(memcmp(rbuf + sizeof(struct flow_data), src + got,
				    (size_t)n - sizeof(struct flow_data)),
			     0, "data differs at %zu", got);
		got += (size_t)n - sizeof(struct flow_data);
	}
	cr_assert_eq(got, total);
	free(src);
	close(sfd);
	close(lfd);
	stop();
}

Test(relay, data_beyond_any_window_is_a_violation)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;
	struct flow_data dh = { .id = 41 };
	static uint8_t chunk[FLOW_DATA_MAX];
	uint32_t reason = 0;
	int32_t rule;
	long end;
	size_t pushed = 0;

	start(NULL);
	cr_assert_eq(connect_flow(41, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd); /* never reads: writes stall, credit stops coming back */
	end = now_ms() + 10000;
	while (!violation_posted(&reason, &rule) && now_ms() < end) {
		struct iovec iov[2] = { { &dh, sizeof(dh) }, { chunk, sizeof(chunk) } };

		if (pushed < (64u << 20) && ring_pushv(&s2p, FLOW_DATA, iov, 2) == 0) {
			ring_flush(&s2p);
			pushed += sizeof(chunk);
			continue;
		}
		spin();
	}
	cr_assert_eq(reason, MOAT_VIOL_BAD_MESSAGE, "no violation after %zu bytes without credit",
		     pushed);
	cr_assert_geq(pushed, FLOW_TCP_WINDOW_MAX);
	/* the write pool was never the limit: the window was */
	cr_assert_eq(px.pools[MOAT_POOL_TCP_WRITE].refused, 0);
	close(sfd);
	close(lfd);
	stop();
}

/* ---- fixed pools ------------------------------------------------------ */

/*
 * A netstack that sends CONNECTs and never reads p2s: the answers wait in
 * the control backlog, which is a fixed pool; when it is empty the proxy
 * reports a violation instead of growing.
 */
Test(relay, p2s_control_backlog_is_bounded, .timeout = 60)
{
	struct pool *pool;
	uint32_t reason = 0, id = 1000;
	int32_t rule;
	long end;

	start(NULL);
	pool = &px.pools[MOAT_POOL_P2S_CONTROL];
	end = now_ms() + 30000;
	while (!violation_posted(&reason, &rule) && now_ms() < end) {
		struct flow_connect c = { .id = id,
					  .src = guest_ep(40000),
					  .dst = ep4(127, 0, 0, 2, 80) };

		if (ring_push(&s2p, FLOW_CONNECT, &c, sizeof(c)) == 0) {
			ring_flush(&s2p);
			id++;
			continue;
		}
		spin();
	}
	cr_assert_eq(reason, MOAT_VIOL_RING_CORRUPT, "no violation after %u CONNECTs", id - 1000);
	cr_assert_eq(pool->used, pool->count, "the backlog did not fill its pool");
	cr_assert_eq(pool->refused, 1);
	cr_assert_eq(px.backlog_len, pool->count);
	cr_assert_lt(pool->count, 4096, "the bound is %u records", pool->count);
	stop();
}

/*
 * Guest DNS-over-TCP connections come from a fixed pool: the one beyond it
 * is refused (counted), and a closed one makes room again.
 */
Test(relay, dns_streams_are_bounded)
{
	uint32_t n, i;
	struct flow_close cl = { .reset = 1 };

	start(NULL);
	n = px.pools[MOAT_POOL_DNS_STREAM].count;
	cr_assert_gt(n, 0);
	for (i = 0; i < n; i++)
		cr_assert_eq(connect_flow(100 + i, ep4(10, 0, 2, 3, 53)), MOAT_CONN_OK);
	cr_assert_eq(connect_flow(100 + n, ep4(10, 0, 2, 3, 53)), MOAT_CONN_REFUSED);
	run_ms(1100); /* the counters follow the pools once a second */
	cr_assert_eq(cnt()->pool_refused[MOAT_POOL_DNS_STREAM], 1);
	cr_assert_eq(cnt()->pool_in_use[MOAT_POOL_DNS_STREAM], n);
	cr_assert_eq(cnt()->pool_size[MOAT_POOL_DNS_STREAM], n);
	cl.id = 100;
	push(FLOW_CLOSE, &cl, sizeof(cl));
	run_ms(20);
	cr_assert_eq(connect_flow(100 + n + 1, ep4(10, 0, 2, 3, 53)), MOAT_CONN_OK);
	stop();
}

/*
 * Guest bytes to a host socket go through write chunks from the tcp_write
 * pool; once the flows are gone and a tick has passed the pool's pages are
 * given back (pool_trim()).
 */
Test(relay, tcp_write_pool_is_used_and_trimmed, .timeout = 30)
{
	uint16_t port;
	int lfd = tcp_listener(&port), sfd;
	struct flow_data dh = { .id = 50 };
	struct flow_close cl = { .id = 50, .reset = 0 };
	static uint8_t chunk[FLOW_DATA_MAX];
	struct pool *pool;
	size_t got = 0, total = 4 * sizeof(chunk);
	long end;

	start(NULL);
	pool = &px.pools[MOAT_POOL_TCP_WRITE];
	cr_assert_eq(connect_flow(50, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 7);
	for (int k = 0; k < 4; k++)
		pushv(FLOW_DATA, &dh, sizeof(dh), chunk, sizeof(chunk));
	end = now_ms() + 5000;
	while (got < total && now_ms() < end) {
		uint8_t b[65536];
		ssize_t n = recv(sfd, b, sizeof(b), MSG_DONTWAIT);

		if (n > 0) {
			for (ssize_t j = 0; j < n; j++)
				cr_assert_eq(b[j],
					     (uint8_t)(((got + (size_t)j) % sizeof(chunk)) * 7));
			got += (size_t)n;
			continue;
		}
		spin();
	}
	cr_assert_eq(got, total);
	cr_assert_geq(pool->peak, 1);
	cr_assert_gt(pool->fresh, 0);
	push(FLOW_CLOSE, &cl, sizeof(cl));
	run_ms(2200); /* two ticks */
	cr_assert_eq(pool->used, 0);
	cr_assert_eq(pool->fresh, 0, "the pool's pages were not given back");
	cr_assert_eq(pool->refused, 0);
	close(sfd);
	close(lfd);
	stop();
}

/* ---- DNS interception ------------------------------------------------- */

/* A UDP socket on @ip:53 (root may bind port 53 on any loopback address). */
static int udp_server_53(uint8_t last)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(53),
				  .sin_addr.s_addr = htonl(0x7f000000u | last) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Queries to any resolver go to the forwarder: decided by the DNS rules,
 * sent to moat's nameservers, pinned, and answered from the address asked.
 */
Test(relay, dns_interception_redirects_any_resolver)
{
	uint16_t port;
	int ufd = udp_server(&port);
	char extra[128];
	uint8_t ans[512], up[512];
	static const uint8_t pub[4] = { 203, 0, 113, 77 };
	const char *names[4];
	int n;

	snprintf(extra, sizeof(extra),
		 ",\"dns\":{\"nameservers\":[\"127.0.0.1:%u\"],\"timeout_ms\":500}", port);
	start(extra);
	/* A denied name asked of 198.51.100.53: NXDOMAIN from there, nothing upstream. */
	n = dns_roundtrip_to(ufd, ep4(198, 51, 100, 53, 53), "blocked.test", ans, false, NULL);
	cr_assert_gt(n, 12);
	cr_assert_eq(ans[3] & 0xf, 3, "expected NXDOMAIN");
	run_ms(50);
	cr_assert_eq(recvfrom(ufd, up, sizeof(up), MSG_DONTWAIT, NULL, NULL), -1);
	/* An allowed name: forwarded to our nameserver, pinned, answered from the address asked. */
	n = dns_roundtrip_to(ufd, ep4(198, 51, 100, 53, 53), "cdn.example.test", ans, true, pub);
	cr_assert_eq(ans[3] & 0xf, 0);
	cr_assert_eq(pins_lookup(&px.pins, 4, pub, uv_now(&px.loop), names, 4), 1);
	cr_assert_str_eq(names[0], "cdn.example.test");
	cr_assert_eq(cnt()->dns_intercepted, 2);
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_DENIED], 1);
	cr_assert_eq(cnt()->dns_queries[MOAT_DNS_FORWARDED], 1);
	cr_assert_eq(cnt()->udp_flows_opened, 0, "no UDP flow was opened for port 53");
	close(ufd);
	stop();
}

/* DNS over TCP to any address: the forwarder answers; nothing is dialled. */
Test(relay, dns_interception_over_tcp)
{
	struct flow_data dh = { .id = 60 };
	uint8_t q[512], m[514];
	size_t qn;
	int k;

	start(NULL);
	cr_assert_eq(connect_flow(60, ep4(198, 51, 100, 53, 53)), MOAT_CONN_OK);
	push(FLOW_CREDIT, &(struct flow_credit){ .id = 60, .bytes = 4096 },
	     sizeof(struct flow_credit));
	qn = build_query(q, 0x4242, "blocked.test", 1);
	m[0] = 0, m[1] = (uint8_t)qn;
	memcpy(m + 2, q, qn);
	pushv(FLOW_DATA, &dh, sizeof(dh), m, (uint32_t)qn + 2);
	k = expect(FLOW_DATA, 2000);
	cr_assert_gt(k, (int)sizeof(dh) + 2 + 12);
	cr_assert_eq(rbuf[sizeof(dh) + 2], 0x42);
	cr_assert_eq(rbuf[sizeof(dh) + 2 + 3] & 0xf, 3, "expected NXDOMAIN");
	cr_assert_eq(cnt()->dns_intercepted, 1);
	stop();
}

/*
 * "forward_to_requested": the query goes to the resolver the guest asked,
 * if the rules let the guest reach it; a denied resolver gets REFUSED.
 */
Test(relay, dns_interception_forward_to_requested)
{
	int sfd = udp_server_53(5);
	uint8_t ans[512];
	static const uint8_t pub[4] = { 203, 0, 113, 78 };
	int n;

	if (sfd < 0)
		cr_skip_test("cannot bind 127.0.0.5:53 (not root?)");
	start(",\"dns\":{\"intercept\":\"forward_to_requested\",\"timeout_ms\":500}");
	n = dns_roundtrip_to(sfd, ep4(127, 0, 0, 5, 53), "svc.example.test", ans, true, pub);
	cr_assert_eq(ans[3] & 0xf, 0);
	cr_assert_gt(n, 12);
	/* 127.0.0.2 is denied by the rules: REFUSED, a denial. */
	n = dns_roundtrip_to(sfd, ep4(127, 0, 0, 2, 53), "svc.example.test", ans, false, NULL);
	cr_assert_eq(ans[3] & 0xf, 5, "expected REFUSED");
	cr_assert_eq(cnt()->denials_egress[MOAT_P_UDP], 1);
	close(sfd);
	stop();
}

/* "intercept": false: port 53 elsewhere is an ordinary UDP flow, decided by the rules. */
Test(relay, dns_interception_off)
{
	int sfd = udp_server_53(6);
	struct flow_dgram d = { .src = guest_ep(5354), .dst = ep4(127, 0, 0, 6, 53) };
	struct sockaddr_in from;
	uint8_t q[512], up[512];
	size_t qn = build_query(q, 0x7777, "blocked.test", 1);

	if (sfd < 0)
		cr_skip_test("cannot bind 127.0.0.6:53 (not root?)");
	start(",\"dns\":{\"intercept\":false}");
	pushv(FLOW_DGRAM, &d, sizeof(d), q, (uint32_t)qn);
	cr_assert_eq(udp_recv_wait(sfd, up, sizeof(up), &from), (int)qn);
	cr_assert_eq(memcmp(up, q, qn), 0, "the query went as the guest sent it, id and all");
	cr_assert_eq(cnt()->dns_intercepted, 0);
	cr_assert_eq(cnt()->udp_flows_opened, 1);
	close(sfd);
	stop();
}

/* ---- reload ------------------------------------------------------------ */

/* The next CLOSE for @id (other records skipped), or -1. */
static int expect_close(uint32_t id, int timeout_ms, struct flow_close *c)
{
	long end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		int n = expect(FLOW_CLOSE, (int)(end - now_ms()));

		if (n < 0)
			return -1;
		memcpy(c, rbuf, sizeof(*c));
		if (c->id == id)
			return n;
	}
	return -1;
}

/*
 * A reload decides open flows again: a TCP connection the new policy denies
 * is reset both ways, a UDP flow is closed, each with a "policy_reload"
 * denial event; "reload": {"existing": "keep"} spares them.
 */
Test(relay, reload_cuts_what_the_new_policy_denies, .timeout = 30)
{
	uint16_t port, uport;
	int lfd = tcp_listener(&port), sfd, ufd = udp_server(&uport);
	struct flow_dgram d = { .src = guest_ep(5100), .dst = ep4(127, 0, 0, 1, 0) };
	struct flow_close c;
	struct sockaddr_in from;
	char buf[64], *ev;
	bool saw_reload_event = false;
	long end;

	start(NULL);
	d.dst.port = uport;
	cr_assert_eq(connect_flow(70, ep4(127, 0, 0, 1, port)), MOAT_CONN_OK);
	sfd = accept_wait(lfd);
	pushv(FLOW_DGRAM, &d, sizeof(d), "ping", 4);
	cr_assert_eq(udp_recv_wait(ufd, buf, sizeof(buf), &from), 4);
	cr_assert_eq(cnt()->udp_flows_active, 1);
	/* A reload that keeps open flows: nothing happens. */
	send_doc("{\"policy\":{\"default_egress\":\"deny\",\"default_ingress\":\"allow\","
		 "\"rules\":[],\"reload\":{\"existing\":\"keep\"}},\"generation\":2}");
	run_ms(100);
	cr_assert_eq(px.generation, 2);
	cr_assert_eq(cnt()->reload_cuts, 0);
	cr_assert_eq(cnt()->udp_flows_active, 1);
	/* The same policy re-evaluating: both are cut. */
	send_doc("{\"policy\":{\"default_egress\":\"deny\",\"default_ingress\":\"allow\","
		 "\"rules\":[]},\"generation\":3}");
	cr_assert_gt(expect_close(70, 1000, &c), 0, "no CLOSE for the denied connection");
	cr_assert_eq(c.reset, 1);
	end = now_ms() + 2000;
	for (;;) {
		ssize_t n = recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == ECONNRESET)
			break;
		cr_assert(n < 0 && errno == EAGAIN && now_ms() < end,
			  "the server did not see a reset (n=%zd errno=%d)", n, errno);
		spin();
	}
	cr_assert_eq(cnt()->reload_cuts, 2);
	cr_assert_eq(cnt()->udp_flows_active, 0);
	cr_assert_eq(cnt()->tcp_active, 0);
	while ((ev = read_event(300)))
		if (strstr(ev, "\"reason\":\"policy_reload\"") &&
		    strstr(ev, "\"protocol\":\"tcp\""))
			saw_reload_event = true;
	cr_assert(saw_reload_event, "no denial event with reason policy_reload");
	/* The guest's next datagram is a new flow, denied. */
	pushv(FLOW_DGRAM, &d, sizeof(d), "ping", 4);
	run_ms(100);
	cr_assert_eq(recvfrom(ufd, buf, sizeof(buf), MSG_DONTWAIT, NULL, NULL), -1);
	close(sfd);
	close(lfd);
	close(ufd);
	stop();
}
