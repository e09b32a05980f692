/* SPDX-License-Identifier: MIT */
/*
 * test_netstack_flows.c - the netstack's TCP/UDP/ICMP flows, in process
 *
 * The test is both the guest (it builds frames and runs a small TCP peer)
 * and the proxy (it reads and writes flow messages), around a real
 * netstack (lwIP included) over real rings. Each Criterion test runs in its
 * own process, so each gets a fresh lwIP.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "netstack_harness.h"

static uint8_t fbuf[70000], rbuf[70000], mbuf[FLOW_RECORD_MAX];

/* ---- a small guest TCP peer -------------------------------------------- */

struct gtcp {
	uint32_t dst;
	uint16_t sport, dport;
	uint32_t snd_nxt, snd_una, rcv_nxt;
	uint32_t peer_wnd; /* bytes, scale applied */
	uint8_t peer_scale;
	uint8_t *rx; /* bytes received in order */
	size_t rxlen, rxcap;
	bool got_fin, got_rst, got_synack;
	uint32_t id; /* flow id seen by the proxy */
	unsigned acks_sent;
};

static bool g_try_send(struct gtcp *c, uint8_t flags, const void *data, size_t len)
{
	size_t n = nh_tcp4(fbuf, NH_GUEST_IP, c->sport, c->dst, c->dport, c->snd_nxt, c->rcv_nxt,
			   flags, 0xffff, NULL, 0, data, len);

	if (!nh_guest_try_send(fbuf, n))
		return false;
	c->snd_nxt += (uint32_t)len + ((flags & 0x01) ? 1 : 0);
	return true;
}

static void g_send(struct gtcp *c, uint8_t flags, const void *data, size_t len)
{
	cr_assert(g_try_send(c, flags, data, len), "g2s full");
}

static void g_syn(struct gtcp *c)
{
	/* MSS 1460, SACK permitted, window scale 7 */
	static const uint8_t opts[] = { 2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0 };
	size_t n = nh_tcp4(fbuf, NH_GUEST_IP, c->sport, c->dst, c->dport, c->snd_nxt - 1, 0, 0x02,
			   0xffff, opts, sizeof(opts), NULL, 0);

	nh_guest_send(fbuf, n);
}

/* Read every frame the netstack sent; feed the TCP ones for @c. Returns frames read. */
static int g_drain(struct gtcp *c, bool ack)
{
	int frames = 0, n;
	bool need_ack = false;

	while ((n = nh_guest_recv(rbuf, sizeof(rbuf))) >= 0) {
		struct nh_pkt p;

		frames++;
		if (!c || !nh_parse4(rbuf, (size_t)n, &p) || p.proto != 6 || p.dport != c->sport)
			continue;
		cr_assert(p.csum_ok, "bad checksum on a segment to the guest");
		cr_assert(!memcmp(p.dst_mac, nh_guest_mac, 6));
		if (p.flags & 0x04) {
			c->got_rst = true;
			continue;
		}
		if ((p.flags & 0x12) == 0x12) {
			c->got_synack = true;
			c->rcv_nxt = p.seq + 1;
			c->snd_una = p.ack;
			need_ack = true;
			continue;
		}
		if (p.flags & 0x10) {
			if ((int32_t)(p.ack - c->snd_una) > 0)
				c->snd_una = p.ack;
			c->peer_wnd = (uint32_t)p.win << 7;
		}
		if (p.seq == c->rcv_nxt && p.dlen) {
			if (c->rxlen + p.dlen > c->rxcap) {
				c->rxcap = (c->rxlen + p.dlen) * 2;
				c->rx = realloc(c->rx, c->rxcap);
			}
			memcpy(c->rx + c->rxlen, p.data, p.dlen);
			c->rxlen += p.dlen;
			c->rcv_nxt += (uint32_t)p.dlen;
			need_ack = true;
		} else if (p.dlen) {
			need_ack = true; /* out of order or duplicate: dup ACK */
		}
		if ((p.flags & 0x01) && p.seq + p.dlen == c->rcv_nxt && !c->got_fin) {
			c->got_fin = true;
			c->rcv_nxt++;
			need_ack = true;
		}
	}
	if (c && ack && need_ack) {
		g_send(c, 0x10, NULL, 0);
		c->acks_sent++;
	}
	return frames;
}

/* Collect one message of @want type from s2p (skipping none); its length or -1. */
static int p_expect(uint32_t want, void *out, size_t size)
{
	uint32_t type;
	int n = nh_proxy_recv(&type, mbuf, sizeof(mbuf));

	if (n < 0)
		return -1;
	cr_assert_eq(type, want, "proxy got message type %u, want %u", type, want);
	if (out)
		memcpy(out, mbuf, (size_t)n < size ? (size_t)n : size);
	return n;
}

static void conn_result(uint32_t id, uint32_t result)
{
	struct flow_connect_result r = { .id = id, .result = result };

	nh_proxy_send(FLOW_CONNECT_RESULT, &r, sizeof(r));
}

/* SYN, CONNECT, result ok, SYN-ACK, ACK, first CREDIT. Returns the credit. */
static uint32_t g_connect(struct gtcp *c, uint16_t sport, uint16_t dport)
{
	struct flow_connect fc;
	struct flow_credit cr;

	memset(c, 0, sizeof(*c));
	c->dst = NH_REMOTE_IP;
	c->sport = sport;
	c->dport = dport;
	c->snd_nxt = 1001;
	g_syn(c);
	nh_poll();
	cr_assert_eq(g_drain(c, false), 0, "the SYN must be held, not answered");
	cr_assert_gt(p_expect(FLOW_CONNECT, &fc, sizeof(fc)), 0, "no CONNECT");
	cr_assert_eq(fc.src.family, 4);
	cr_assert_eq(fc.src.port, sport);
	cr_assert_eq(fc.dst.port, dport);
	cr_assert_eq(nh_get32(fc.dst.addr), NH_REMOTE_IP);
	cr_assert_eq(nh_get32(fc.src.addr), NH_GUEST_IP);
	cr_assert(fc.id && fc.id < FLOW_ID_INGRESS);
	c->id = fc.id;
	conn_result(c->id, MOAT_CONN_OK);
	nh_poll();
	g_drain(c, true);
	cr_assert(c->got_synack, "no SYN-ACK after CONNECT_RESULT ok");
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CREDIT, &cr, sizeof(cr)), 0, "no initial CREDIT");
	cr_assert_eq(cr.id, c->id);
	cr_assert_gt(cr.bytes, 60000);
	return cr.bytes;
}

static void p_data(uint32_t id, const void *data, size_t len)
{
	struct flow_data d = { .id = id };

	nh_proxy_send2(FLOW_DATA, &d, sizeof(d), data, len);
}

static void p_credit(uint32_t id, uint32_t n)
{
	struct flow_credit c = { .id = id, .bytes = n };

	nh_proxy_send(FLOW_CREDIT, &c, sizeof(c));
}

Test(netstack_flows, connect_before_accept_and_data_both_ways)
{
	struct gtcp c;
	struct flow_data d;
	int n;

	nh_init();
	g_connect(&c, 40000, 80);
	cr_assert_eq(nh_cnt()->tcp_syns, 1);
	cr_assert_eq(nh_cnt()->tcp_flows_opened, 1);
	cr_assert_eq(nh_cnt()->tcp_flows_active, 1);

	/* guest -> proxy */
	g_send(&c, 0x18, "hello", 5);
	nh_poll();
	n = p_expect(FLOW_DATA, &d, sizeof(d));
	cr_assert_eq(n, (int)sizeof(d) + 5);
	cr_assert_eq(d.id, c.id);
	cr_assert(!memcmp(mbuf + sizeof(d), "hello", 5));
	p_credit(c.id, 5);

	/* proxy -> guest */
	p_data(c.id, "world!", 6);
	nh_poll();
	g_drain(&c, true);
	cr_assert_eq(c.rxlen, 6);
	cr_assert(!memcmp(c.rx, "world!", 6));
	cr_assert_eq(nh_cnt()->rx_bytes_tcp, 6);
	cr_assert_eq(nh_cnt()->tx_bytes_tcp, 5);
	cr_assert(!H.ns.violation);
	free(c.rx);
}

/*
 * A lone small segment (a first write under Nagle, the server silent): its
 * ACK is held at most a few milliseconds, not lwIP's 250 ms fast timer.
 */
Test(netstack_flows, a_held_ack_goes_out_within_milliseconds)
{
	struct gtcp c;
	uint32_t before, sleep_ms;

	nh_init();
	g_connect(&c, 40001, 80);
	g_drain(&c, false);
	before = c.snd_una;
	g_send(&c, 0x18, "GET ", 4);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_DATA, NULL, 0), 0);
	/* the netstack's next wake-up is the ACK timer's */
	sleep_ms = stack_prepare_sleep(&H.ns);
	stack_wake(&H.ns);
	cr_assert_leq(sleep_ms, 5, "the held ACK waits %u ms", sleep_ms);
	/* the timer fires (the sleep is a lower bound: a busy machine only adds) */
	usleep(10000);
	nh_poll();
	g_drain(&c, false);
	cr_assert_eq(c.snd_una, before + 4, "no ACK for the lone segment");
	cr_assert(!H.ns.violation);
	free(c.rx);
}

Test(netstack_flows, retransmitted_syn_is_dropped_while_pending)
{
	struct gtcp c = { .dst = NH_REMOTE_IP, .sport = 40001, .dport = 443, .snd_nxt = 5 };
	uint32_t type;

	nh_init();
	g_syn(&c);
	nh_poll();
	g_syn(&c);
	g_syn(&c);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CONNECT, NULL, 0), 0);
	cr_assert_eq(nh_proxy_recv(&type, mbuf, sizeof(mbuf)), -1, "one CONNECT only");
	cr_assert_eq(g_drain(&c, false), 0);
	cr_assert_eq(nh_cnt()->tcp_syns, 1);
}

Test(netstack_flows, refused_gets_rst_unreachable_gets_icmp)
{
	struct gtcp c = { .dst = NH_REMOTE_IP, .sport = 40002, .dport = 22, .snd_nxt = 77 };
	struct flow_connect fc;
	struct nh_pkt p;
	int n;

	nh_init();
	g_syn(&c);
	nh_poll();
	p_expect(FLOW_CONNECT, &fc, sizeof(fc));
	conn_result(fc.id, MOAT_CONN_REFUSED);
	nh_poll();
	n = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(n, 0, "no RST");
	cr_assert(nh_parse4(rbuf, (size_t)n, &p));
	cr_assert_eq(p.proto, 6);
	cr_assert(p.flags & 0x04, "not a RST");
	cr_assert_eq(p.ack, 77, "RST must acknowledge the SYN");
	cr_assert_eq(p.src, NH_REMOTE_IP);
	cr_assert_eq(p.sport, 22);
	cr_assert(p.csum_ok);

	c.sport = 40003;
	g_syn(&c);
	nh_poll();
	p_expect(FLOW_CONNECT, &fc, sizeof(fc));
	conn_result(fc.id, MOAT_CONN_UNREACHABLE);
	nh_poll();
	n = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(n, 0, "no ICMP");
	cr_assert(nh_parse4(rbuf, (size_t)n, &p));
	cr_assert_eq(p.proto, 1);
	cr_assert_eq(p.type, 3);
	cr_assert_eq(p.code, 1);
	cr_assert_eq(p.src, NH_GW_IP);
	cr_assert_eq(p.dst, NH_GUEST_IP);
	cr_assert(p.csum_ok);
	/* The quoted header is the SYN's. */
	cr_assert_eq(nh_get32(p.data + 16), NH_REMOTE_IP);

	/* A late result for a dead id is ignored. */
	conn_result(fc.id, MOAT_CONN_OK);
	nh_poll();
	cr_assert_eq(g_drain(NULL, false), 0);
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, full_table_answers_rst)
{
	struct gtcp a = { .dst = NH_REMOTE_IP, .sport = 1000, .dport = 80, .snd_nxt = 1 };
	struct gtcp b = { .dst = NH_REMOTE_IP, .sport = 1001, .dport = 80, .snd_nxt = 1 };

	nh_init_cfg(1500, 1, 1, 1u << 20);
	g_syn(&a);
	g_syn(&b);
	nh_poll();
	g_drain(&b, false);
	cr_assert(b.got_rst, "the second SYN must be reset");
	cr_assert_eq(nh_cnt()->tcp_table_full, 1);
	cr_assert_gt(p_expect(FLOW_CONNECT, NULL, 0), 0);
}

Test(netstack_flows, half_close_both_ways_then_close)
{
	struct gtcp c;
	struct flow_shut s;
	struct flow_close cl;

	nh_init();
	g_connect(&c, 40010, 80);
	g_send(&c, 0x11, NULL, 0); /* guest FIN */
	nh_poll();
	g_drain(&c, true);
	cr_assert_gt(p_expect(FLOW_SHUT_WR, &s, sizeof(s)), 0, "guest FIN must become SHUT_WR");
	cr_assert_eq(s.id, c.id);
	/* The proxy still sends data, then its own FIN. */
	p_data(c.id, "bye", 3);
	s.id = c.id;
	nh_proxy_send(FLOW_SHUT_WR, &s, sizeof(s));
	nh_poll();
	g_drain(&c, true);
	cr_assert_eq(c.rxlen, 3);
	cr_assert(c.got_fin, "proxy SHUT_WR must become a FIN");
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CLOSE, &cl, sizeof(cl)), 0, "no CLOSE after both FINs");
	cr_assert_eq(cl.id, c.id);
	cr_assert_eq(cl.reset, 0);
	cr_assert_eq(nh_cnt()->tcp_flows_closed, 1);
	cr_assert_eq(nh_cnt()->tcp_flows_active, 0);
	cr_assert(!H.ns.violation);
	free(c.rx);
}

Test(netstack_flows, guest_rst_and_proxy_reset)
{
	struct gtcp c, d;
	struct flow_close cl;

	nh_init();
	g_connect(&c, 40020, 80);
	g_send(&c, 0x04, NULL, 0);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CLOSE, &cl, sizeof(cl)), 0, "guest RST must become CLOSE");
	cr_assert_eq(cl.id, c.id);
	cr_assert_eq(cl.reset, 1);

	g_connect(&d, 40021, 80);
	cl.id = d.id;
	cl.reset = 1;
	nh_proxy_send(FLOW_CLOSE, &cl, sizeof(cl));
	nh_poll();
	g_drain(&d, false);
	cr_assert(d.got_rst, "proxy CLOSE reset must reset the guest");
	/* Data for the dead id afterwards is ignored, not a violation. */
	p_data(d.id, "late", 4);
	nh_poll();
	cr_assert(!H.ns.violation);
	cr_assert_eq(nh_cnt()->tcp_flows_active, 0);
}

/* Bulk both ways with flow control: every byte arrives, in order. */
Test(netstack_flows, bulk_with_credits_and_backpressure, .timeout = 60)
{
	enum { UP = 3 << 20, DOWN = 3 << 20 };
	uint8_t *up = malloc(UP), *down = malloc(DOWN), *got = malloc(UP);
	size_t up_sent = 0, down_sent = 0, got_len = 0;
	uint32_t credit;
	struct gtcp c;

	for (size_t i = 0; i < UP; i++)
		up[i] = (uint8_t)(i * 7 + (i >> 12));
	for (size_t i = 0; i < DOWN; i++)
		down[i] = (uint8_t)(i * 13 + (i >> 9));
	/* A small s2g (64 KiB) makes lwIP's output hit a full ring. */
	nh_init_cfg(1500, 16, 1, 65536);
	credit = g_connect(&c, 40030, 8080);
	c.peer_wnd = 65535;
	for (int round = 0; round < 200000 && (got_len < UP || c.rxlen < DOWN); round++) {
		uint32_t type;
		int n;

		/* guest sends within the window it was given */
		while (up_sent < UP && (uint32_t)(c.snd_nxt - c.snd_una) + 1460 <= c.peer_wnd) {
			size_t chunk = UP - up_sent < 1460 ? UP - up_sent : 1460;

			if (!g_try_send(&c, 0x10, up + up_sent, chunk))
				break;
			up_sent += chunk;
			if (round % 3 == 0)
				break;
		}
		/* proxy sends within its credit */
		if (down_sent < DOWN && credit) {
			size_t chunk = DOWN - down_sent;

			if (chunk > credit)
				chunk = credit;
			if (chunk > 20000)
				chunk = 20000;
			p_data(c.id, down + down_sent, chunk);
			down_sent += chunk;
			credit -= (uint32_t)chunk;
		}
		nh_poll();
		while ((n = nh_proxy_recv(&type, mbuf, sizeof(mbuf))) >= 0) {
			if (type == FLOW_CREDIT) {
				struct flow_credit cr;

				memcpy(&cr, mbuf, sizeof(cr));
				credit += cr.bytes;
			} else if (type == FLOW_DATA) {
				size_t dl = (size_t)n - sizeof(struct flow_data);

				cr_assert_leq(got_len + dl, UP);
				memcpy(got + got_len, mbuf + sizeof(struct flow_data), dl);
				got_len += dl;
				p_credit(c.id, (uint32_t)dl);
			}
		}
		/* the guest reads s2g only every other round: the ring fills */
		if (round % 2 == 0)
			g_drain(&c, true);
		cr_assert(!H.ns.violation);
	}
	cr_assert_eq(got_len, UP, "proxy got %zu of %d bytes", got_len, UP);
	cr_assert(!memcmp(got, up, UP), "guest->proxy bytes differ");
	cr_assert_eq(c.rxlen, DOWN, "guest got %zu of %d bytes", c.rxlen, DOWN);
	cr_assert(!memcmp(c.rx, down, DOWN), "proxy->guest bytes differ");
	free(up);
	free(down);
	free(got);
	free(c.rx);
}

Test(netstack_flows, udp_both_ways)
{
	struct flow_dgram d;
	struct nh_pkt p;
	size_t n;
	int m;

	nh_init();
	n = nh_udp4(fbuf, nh_guest_mac, NH_GUEST_IP, 5555, NH_REMOTE_IP, 53, "query", 5);
	nh_guest_send(fbuf, n);
	nh_poll();
	m = p_expect(FLOW_DGRAM, &d, sizeof(d));
	cr_assert_eq(m, (int)sizeof(d) + 5);
	cr_assert_eq(d.src.port, 5555);
	cr_assert_eq(d.dst.port, 53);
	cr_assert_eq(nh_get32(d.dst.addr), NH_REMOTE_IP);
	cr_assert(!memcmp(mbuf + sizeof(d), "query", 5));

	/* the answer, from the remote's address */
	struct flow_dgram r = { .src = d.dst, .dst = d.src };

	nh_proxy_send2(FLOW_DGRAM, &r, sizeof(r), "answer", 6);
	nh_poll();
	m = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(m, 0);
	cr_assert(nh_parse4(rbuf, (size_t)m, &p));
	cr_assert_eq(p.proto, 17);
	cr_assert_eq(p.src, NH_REMOTE_IP);
	cr_assert_eq(p.sport, 53);
	cr_assert_eq(p.dst, NH_GUEST_IP);
	cr_assert_eq(p.dport, 5555);
	cr_assert_eq(p.dlen, 6);
	cr_assert(p.csum_ok);

	/* a big one is fragmented toward the guest */
	static uint8_t big[20000];
	int frags = 0;

	memset(big, 0x5a, sizeof(big));
	nh_proxy_send2(FLOW_DGRAM, &r, sizeof(r), big, sizeof(big));
	nh_poll();
	while ((m = nh_guest_recv(rbuf, sizeof(rbuf))) > 0) {
		cr_assert(nh_parse4(rbuf, (size_t)m, &p));
		cr_assert(p.frag);
		cr_assert_leq(m, 1514);
		frags++;
	}
	cr_assert_eq(frags, 14);
}

Test(netstack_flows, echo_local_and_relayed)
{
	struct flow_echo e;
	struct nh_pkt p;
	size_t n;
	int m;

	nh_init();
	n = nh_echo4(fbuf, NH_GUEST_IP, NH_GW_IP, 7, 1, "abcdefgh", 8);
	nh_guest_send(fbuf, n);
	nh_poll();
	m = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(m, 0);
	cr_assert(nh_parse4(rbuf, (size_t)m, &p));
	cr_assert_eq(p.type, 0);
	cr_assert_eq(p.src, NH_GW_IP);
	cr_assert_eq(p.dlen, 8);
	cr_assert(!memcmp(p.data, "abcdefgh", 8));
	cr_assert(p.csum_ok);
	cr_assert_eq(nh_cnt()->icmp_echo_replies, 1);

	n = nh_echo4(fbuf, NH_GUEST_IP, NH_REMOTE_IP, 9, 2, "xyz", 3);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_eq(nh_guest_recv(rbuf, sizeof(rbuf)), -1, "remote echo is not answered locally");
	m = p_expect(FLOW_ECHO, &e, sizeof(e));
	cr_assert_eq(m, (int)sizeof(e) + 3);
	cr_assert_eq(e.ident, 9);
	cr_assert_eq(e.seq, 2);
	cr_assert_eq(nh_get32(e.peer.addr), NH_REMOTE_IP);
	nh_proxy_send2(FLOW_ECHO_REPLY, &e, sizeof(e), "xyz", 3);
	nh_poll();
	m = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(m, 0);
	cr_assert(nh_parse4(rbuf, (size_t)m, &p));
	cr_assert_eq(p.type, 0);
	cr_assert_eq(p.src, NH_REMOTE_IP);
	cr_assert_eq(nh_get16(p.l4 + 4), 9);
	cr_assert(p.csum_ok);
}

/* ---- malformed messages from the proxy are violations ------------------ */

static void expect_violation(uint32_t reason)
{
	nh_poll();
	cr_assert(H.ns.violation, "no violation reported");
	cr_assert_eq(H.ns.mbox->reason, reason);
	cr_assert_eq(H.ns.mbox->seq, 1);
}

Test(netstack_flows, bad_message_size_is_a_violation)
{
	struct flow_credit c = { .id = 1, .bytes = 1 };

	nh_init();
	nh_proxy_send(FLOW_CREDIT, &c, sizeof(c) - 1);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, unknown_type_is_a_violation)
{
	uint32_t x = 1;

	nh_init();
	nh_proxy_send(999, &x, sizeof(x));
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, connect_from_proxy_is_a_violation)
{
	struct flow_connect fc = { .id = 5 };

	nh_init();
	nh_proxy_send(FLOW_CONNECT, &fc, sizeof(fc));
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, data_beyond_credit_is_a_violation)
{
	static uint8_t big[65536];
	struct gtcp c;
	uint32_t credit;

	nh_init();
	credit = g_connect(&c, 40040, 80);
	while (credit >= sizeof(big)) {
		p_data(c.id, big, sizeof(big));
		credit -= sizeof(big);
		nh_poll();
		cr_assert(!H.ns.violation);
	}
	p_data(c.id, big, credit + 1);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, credit_for_unsent_bytes_is_a_violation)
{
	struct gtcp c;

	nh_init();
	g_connect(&c, 40041, 80);
	p_credit(c.id, 1);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, bad_result_value_is_a_violation)
{
	nh_init();
	conn_result(3, MOAT_CONN_RESULT_COUNT);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

Test(netstack_flows, messages_for_unknown_ids_are_ignored)
{
	struct flow_shut s = { .id = 12345 };
	struct flow_close cl = { .id = 777, .reset = 1 };

	nh_init();
	conn_result(4242, MOAT_CONN_OK);
	p_data(4243, "x", 1);
	nh_proxy_send(FLOW_SHUT_WR, &s, sizeof(s));
	nh_proxy_send(FLOW_CLOSE, &cl, sizeof(cl));
	p_credit(99, 10);
	nh_poll();
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, corrupt_p2s_is_a_violation)
{
	struct moat_ring_ctl *ctl;

	nh_init();
	ctl = H.ns.region.part[MOAT_PART_RING_P2S];
	ctl->head = ctl->tail + (1ull << 40); /* more than the capacity */
	expect_violation(MOAT_VIOL_RING_CORRUPT);
}

Test(netstack_flows, dgram_to_another_address_is_a_violation)
{
	struct flow_dgram r;

	nh_init();
	memset(&r, 0, sizeof(r));
	r.src.family = r.dst.family = 4;
	r.src.port = 53;
	r.dst.port = 5555;
	nh_put32(r.src.addr, NH_REMOTE_IP);
	nh_put32(r.dst.addr, 0x0a000209u); /* not the guest */
	nh_proxy_send2(FLOW_DGRAM, &r, sizeof(r), "x", 1);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

/* ---- ingress: published ports ------------------------------------------ */

static void accepted(uint32_t id, uint32_t src_ip, uint16_t sport, uint16_t gport)
{
	struct flow_connect a;

	memset(&a, 0, sizeof(a));
	a.id = id;
	a.src.family = a.dst.family = 4;
	nh_put32(a.src.addr, src_ip);
	a.src.port = sport;
	nh_put32(a.dst.addr, NH_GUEST_IP);
	a.dst.port = gport;
	nh_proxy_send(FLOW_ACCEPTED, &a, sizeof(a));
}

/* The SYN the netstack sends into the guest. */
static void expect_syn(struct nh_pkt *p, uint16_t gport)
{
	int n = nh_guest_recv(rbuf, sizeof(rbuf));

	cr_assert_gt(n, 0, "no SYN toward the guest");
	cr_assert(nh_parse4(rbuf, (size_t)n, p));
	cr_assert_eq(p->proto, 6);
	cr_assert_eq(p->flags & 0x12, 0x02);
	cr_assert_eq(p->dst, NH_GUEST_IP);
	cr_assert_eq(p->dport, gport);
	cr_assert(p->csum_ok);
}

Test(netstack_flows, ingress_connects_into_the_guest)
{
	const uint32_t id = FLOW_ID_INGRESS | 7;
	struct flow_connect_result r;
	struct flow_credit cr;
	struct flow_data d;
	struct gtcp g;
	struct nh_pkt p;
	size_t n;

	nh_init();
	/* The guest has spoken (its MAC is known): the SYN goes out at once. */
	n = nh_echo4(fbuf, NH_GUEST_IP, NH_GW_IP, 1, 1, "x", 1);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(nh_guest_recv(rbuf, sizeof(rbuf)), 0);
	accepted(id, NH_REMOTE_IP, 5555, 8080);
	nh_poll();
	expect_syn(&p, 8080);
	cr_assert_eq(p.src, NH_REMOTE_IP, "the client's address is kept");
	cr_assert_neq(p.sport, 0, "a local port of lwIP's own (not the host client's 5555)");
	/* The guest accepts: SYN-ACK. */
	memset(&g, 0, sizeof(g));
	g.dst = p.src;
	g.sport = 8080;
	g.dport = p.sport;
	g.rcv_nxt = p.seq + 1;
	g.snd_nxt = 50000;
	n = nh_tcp4(fbuf, NH_GUEST_IP, 8080, p.src, p.sport, 49999, g.rcv_nxt, 0x12, 0xffff,
		    (const uint8_t[]){ 2, 4, 0x05, 0xb4 }, 4, NULL, 0);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CONNECT_RESULT, &r, sizeof(r)), 0, "no CONNECT_RESULT");
	cr_assert_eq(r.id, id);
	cr_assert_eq(r.result, MOAT_CONN_OK);
	cr_assert_gt(p_expect(FLOW_CREDIT, &cr, sizeof(cr)), 0, "no CREDIT after ok");
	g_drain(&g, false);
	/* data both ways */
	g_send(&g, 0x18, "from guest", 10);
	nh_poll();
	cr_assert_eq(p_expect(FLOW_DATA, &d, sizeof(d)), (int)sizeof(d) + 10);
	cr_assert_eq(d.id, id);
	p_data(id, "from host", 9);
	nh_poll();
	g_drain(&g, true);
	cr_assert_eq(g.rxlen, 9);
	cr_assert(!H.ns.violation);
	free(g.rx);
}

Test(netstack_flows, ingress_refused_by_the_guest)
{
	const uint32_t id = FLOW_ID_INGRESS | 9;
	struct flow_connect_result r;
	struct nh_pkt p;
	size_t n;

	nh_init();
	accepted(id, 0x7f000001, 6000, 9090); /* from host loopback: shown as the gateway */
	nh_poll();
	/* The guest never spoke: the netstack asks for its MAC first. */
	n = (size_t)nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_eq(n, 42, "no ARP request for the guest");
	cr_assert_eq(nh_get16(rbuf + 12), 0x0806);
	cr_assert_eq(nh_get16(rbuf + 20), 1);
	cr_assert_eq(nh_get32(rbuf + 38), NH_GUEST_IP);
	memcpy(fbuf, rbuf + 6, 6);
	memcpy(fbuf + 6, nh_guest_mac, 6);
	memcpy(fbuf + 12, rbuf + 12, 30);
	nh_put16(fbuf + 20, 2);
	memcpy(fbuf + 22, nh_guest_mac, 6);
	nh_put32(fbuf + 28, NH_GUEST_IP);
	memcpy(fbuf + 32, rbuf + 22, 10);
	nh_guest_send(fbuf, 42); /* the ARP reply */
	nh_poll();
	expect_syn(&p, 9090);
	cr_assert_eq(p.src, NH_GW_IP);
	n = nh_tcp4(fbuf, NH_GUEST_IP, 9090, p.src, p.sport, 0, p.seq + 1, 0x14, 0, NULL, 0, NULL,
		    0);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CONNECT_RESULT, &r, sizeof(r)), 0);
	cr_assert_eq(r.id, id);
	cr_assert_eq(r.result, MOAT_CONN_REFUSED);
	/* the id is dead: a second ACCEPTED with it is fine */
	accepted(id, NH_REMOTE_IP, 6001, 9090);
	nh_poll();
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, ingress_id_reuse_while_live_is_a_violation)
{
	nh_init();
	accepted(FLOW_ID_INGRESS | 3, NH_REMOTE_IP, 1, 80);
	accepted(FLOW_ID_INGRESS | 3, NH_REMOTE_IP, 2, 80);
	expect_violation(MOAT_VIOL_BAD_MESSAGE);
}

/* ---- IPv6 --------------------------------------------------------------- */

static const uint8_t g6[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34 };
static const uint8_t r6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10 };

static size_t tcp6(uint8_t *f, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		   uint8_t flags, const void *data, size_t dlen)
{
	uint8_t *ip = f + 14, *t = f + 54, ph[40];
	size_t l4 = 20 + dlen;

	memcpy(f, nh_gw_mac, 6);
	memcpy(f + 6, nh_guest_mac, 6);
	nh_put16(f + 12, 0x86dd);
	memset(ip, 0, 40);
	ip[0] = 0x60;
	nh_put16(ip + 4, (uint16_t)l4);
	ip[6] = 6;
	ip[7] = 64;
	memcpy(ip + 8, g6, 16);
	memcpy(ip + 24, r6, 16);
	memset(t, 0, 20);
	nh_put16(t, sport);
	nh_put16(t + 2, dport);
	nh_put32(t + 4, seq);
	nh_put32(t + 8, ack);
	t[12] = 0x50;
	t[13] = flags;
	nh_put16(t + 14, 0xffff);
	if (dlen)
		memcpy(t + 20, data, dlen);
	memcpy(ph, g6, 16);
	memcpy(ph + 16, r6, 16);
	nh_put32(ph + 32, (uint32_t)l4);
	memset(ph + 36, 0, 3);
	ph[39] = 6;
	nh_put16(t + 16, nh_fold(nh_sum(t, l4, nh_sum(ph, 40, 0))));
	return 54 + l4;
}

/* Next IPv6 TCP segment to the guest: its TCP header, or NULL. */
static const uint8_t *recv_tcp6(void)
{
	int n;

	while ((n = nh_guest_recv_any(rbuf, sizeof(rbuf))) > 0)
		if (nh_get16(rbuf + 12) == 0x86dd && rbuf[20] == 6 && n >= 74)
			return rbuf + 54;
	return NULL;
}

Test(netstack_flows, ipv6_tcp)
{
	struct flow_connect fc;
	struct flow_data d;
	const uint8_t *t;
	uint32_t srv_seq;
	size_t n;

	nh_init();
	n = tcp6(fbuf, 41000, 443, 100, 0, 0x02, NULL, 0);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CONNECT, &fc, sizeof(fc)), 0);
	cr_assert_eq(fc.src.family, 6);
	cr_assert(!memcmp(fc.src.addr, g6, 16));
	cr_assert(!memcmp(fc.dst.addr, r6, 16));
	conn_result(fc.id, MOAT_CONN_OK);
	nh_poll();
	t = recv_tcp6();
	cr_assert(t, "no SYN-ACK over IPv6");
	cr_assert_eq(t[13] & 0x12, 0x12);
	cr_assert(!memcmp(rbuf + 14 + 8, r6, 16), "SYN-ACK from the original destination");
	srv_seq = nh_get32(t + 4);
	n = tcp6(fbuf, 41000, 443, 101, srv_seq + 1, 0x10, NULL, 0);
	nh_guest_send(fbuf, n);
	n = tcp6(fbuf, 41000, 443, 101, srv_seq + 1, 0x18, "v6 data", 7);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CREDIT, NULL, 0), 0);
	cr_assert_eq(p_expect(FLOW_DATA, &d, sizeof(d)), (int)sizeof(d) + 7);
	cr_assert_eq(d.id, fc.id);
	cr_assert(!memcmp(mbuf + sizeof(d), "v6 data", 7));
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, guest_gives_up_while_pending)
{
	struct gtcp c = { .dst = NH_REMOTE_IP, .sport = 40100, .dport = 80, .snd_nxt = 9 };
	struct flow_connect fc;
	struct flow_close cl;
	size_t n;

	nh_init();
	g_syn(&c);
	nh_poll();
	p_expect(FLOW_CONNECT, &fc, sizeof(fc));
	n = nh_tcp4(fbuf, NH_GUEST_IP, c.sport, c.dst, c.dport, 9, 0, 0x04, 0, NULL, 0, NULL, 0);
	nh_guest_send(fbuf, n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_CLOSE, &cl, sizeof(cl)), 0,
		     "the proxy must hear the guest gave up");
	cr_assert_eq(cl.id, fc.id);
	cr_assert_eq(cl.reset, 1);
	/* the result arriving afterwards is for a dead id */
	conn_result(fc.id, MOAT_CONN_OK);
	nh_poll();
	cr_assert_eq(g_drain(&c, false), 0);
	cr_assert(!H.ns.violation);
}

/* ---- lwIP memory exhausted: the proxy is paused, nothing is lost ---------- */

static void g_drain_all(struct gtcp *cs, int n, bool ack)
{
	int k;

	while ((k = nh_guest_recv(rbuf, sizeof(rbuf))) >= 0) {
		struct nh_pkt p;

		if (!nh_parse4(rbuf, (size_t)k, &p) || p.proto != 6)
			continue;
		for (int i = 0; i < n; i++) {
			struct gtcp *c = &cs[i];

			if (p.dport != c->sport)
				continue;
			if (p.flags & 0x10)
				c->snd_una = p.ack;
			if (p.seq == c->rcv_nxt && p.dlen) {
				if (c->rxlen + p.dlen > c->rxcap) {
					c->rxcap = (c->rxlen + p.dlen) * 2;
					c->rx = realloc(c->rx, c->rxcap);
				}
				memcpy(c->rx + c->rxlen, p.data, p.dlen);
				c->rxlen += p.dlen;
				c->rcv_nxt += (uint32_t)p.dlen;
			}
		}
	}
	for (int i = 0; ack && i < n; i++)
		g_send(&cs[i], 0x10, NULL, 0);
}

Test(netstack_flows, lwip_memory_exhaustion_pauses_the_proxy, .timeout = 120)
{
	enum { N = 64 };
	static struct gtcp cs[N];
	/* cppcheck-suppress unassignedVariable ; static, zero at start, counted up below */
	static uint32_t credit[N], sent[N];
	static uint8_t chunk[65536];
	bool paused = false;
	uint64_t total = 0, want = 0;

	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 31);
	/* 64 flows: a 32 MiB arena; 64 x 384 KiB of unacknowledged data does not fit. */
	nh_init_cfg(1500, N, 1, 8u << 20);
	for (int i = 0; i < N; i++) {
		credit[i] = g_connect(&cs[i], (uint16_t)(42000 + i), 80);
		want += credit[i];
	}
	/* The proxy spends every credit; the guest reads but never acknowledges. */
	for (int round = 0; round < 1000; round++) {
		bool any = false;

		for (int i = 0; i < N; i++) {
			uint32_t n = credit[i] - sent[i];

			if (!n)
				continue;
			if (n > sizeof(chunk))
				n = sizeof(chunk);
			if (ring_free_bytes(&H.p2s) < n + 4096)
				break;
			p_data(cs[i].id, chunk, n);
			sent[i] += n;
			any = true;
		}
		nh_poll();
		g_drain_all(cs, N, false);
		cr_assert(!H.ns.violation);
		paused |= H.ns.p2s_paused;
		if (!any && ring_used_bytes(H.p2s.ctl, H.p2s.cap) == 0)
			break;
		if (paused)
			break;
	}
	cr_assert(paused, "lwIP never ran out of memory; the test proves nothing");
	cr_assert_gt(nh_cnt()->lwip_mem_errors + H.ns.mem_errs, 0);
	/* Now the guest acknowledges: memory comes back, p2s resumes, all bytes arrive. */
	for (int round = 0; round < 20000; round++) {
		for (int i = 0; i < N; i++) {
			uint32_t n = credit[i] - sent[i];

			if (n > sizeof(chunk))
				n = sizeof(chunk);
			if (n && ring_free_bytes(&H.p2s) >= n + 4096) {
				p_data(cs[i].id, chunk, n);
				sent[i] += n;
			}
		}
		nh_poll();
		g_drain_all(cs, N, true);
		cr_assert(!H.ns.violation);
		total = 0;
		for (int i = 0; i < N; i++)
			total += cs[i].rxlen;
		if (total == want)
			break;
		if (H.ns.p2s_paused)
			usleep(2000); /* the netstack retries after 10 ms */
	}
	cr_assert_eq(total, want, "the guest got %llu of %llu bytes", (unsigned long long)total,
		     (unsigned long long)want);
	for (int i = 0; i < N; i++) {
		for (uint32_t off = 0; off < cs[i].rxlen; off += sizeof(chunk)) {
			uint32_t n = cs[i].rxlen - off < sizeof(chunk) ? cs[i].rxlen - off :
									 sizeof(chunk);

			cr_assert(!memcmp(cs[i].rx + off, chunk, n), "flow %d: bytes differ at %u",
				  i, off);
		}
		free(cs[i].rx);
	}
}

/* ---- segmentation offloads (MOAT_REC_FRAME_VNET) ------------------------- */

static void vnet_hdr(struct moat_vnet_hdr *vh, uint8_t flags, uint8_t gso, uint16_t gso_size)
{
	memset(vh, 0, sizeof(*vh));
	vh->flags = flags;
	vh->gso_type = gso;
	vh->hdr_len = htole16(54);
	vh->gso_size = htole16(gso_size);
	vh->csum_start = htole16(34);
	vh->csum_offset = htole16(16);
}

/* The folded, uncomplemented pseudo-header sum a partial checksum holds. */
static uint16_t partial_sum4(const uint8_t *ip, size_t tcp_len)
{
	uint32_t sum = nh_pseudo4(nh_get32(ip + 12), nh_get32(ip + 16), 6, tcp_len);

	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

Test(netstack_flows, segments_both_ways_with_offloads)
{
	static uint8_t up[20000], down[60000];
	struct moat_vnet_hdr vh;
	struct flow_data d;
	size_t n, got = 0, segs = 0, rx = 0;
	uint32_t type;
	struct gtcp c;
	int len;

	for (size_t i = 0; i < sizeof(up); i++)
		up[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(down); i++)
		down[i] = (uint8_t)(i * 13);
	nh_offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6;
	nh_init();
	nh_offloads = 0;
	g_connect(&c, 40000, 80);

	/* Guest -> proxy: one 20000-byte segment, as a tap with TSO hands it over. */
	n = nh_tcp4(fbuf, NH_GUEST_IP, c.sport, c.dst, c.dport, c.snd_nxt, c.rcv_nxt, 0x18, 0xffff,
		    NULL, 0, up, sizeof(up));
	vnet_hdr(&vh, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 1460);
	cr_assert(nh_guest_send_vnet(&vh, fbuf, n));
	c.snd_nxt += sizeof(up);
	nh_poll();
	while (got < sizeof(up) && (len = p_expect(FLOW_DATA, &d, sizeof(d))) > 0) {
		size_t k = (size_t)len - sizeof(d);

		cr_assert_leq(got + k, sizeof(up));
		cr_assert(!memcmp(mbuf + sizeof(d), up + got, k), "bytes differ at %zu", got);
		got += k;
	}
	cr_assert_eq(got, sizeof(up), "the proxy got %zu of %zu bytes", got, sizeof(up));
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_BAD_OFFLOAD], 0);

	/* Proxy -> guest: segments longer than the MTU, for the guest's side to cut. */
	for (size_t off = 0; off < sizeof(down); off += 15000)
		p_data(c.id, down + off, 15000);
	nh_poll();
	while ((len = nh_guest_recv_rec(rbuf, sizeof(rbuf), &type)) > 0) {
		const uint8_t *fr = rbuf;
		struct nh_pkt p;

		if (type == MOAT_REC_FRAME_VNET) {
			memcpy(&vh, rbuf, sizeof(vh));
			fr = rbuf + sizeof(vh);
			len -= (int)sizeof(vh);
			cr_assert_gt(len, 1514, "a vnet record for a frame that fits the MTU");
			cr_assert_eq(vh.flags, MOAT_VNET_F_NEEDS_CSUM);
			cr_assert_eq(vh.gso_type, MOAT_VNET_GSO_TCPV4);
			cr_assert_eq(le16toh(vh.gso_size), 1460);
			cr_assert_eq(le16toh(vh.hdr_len), 54);
			cr_assert_eq(le16toh(vh.csum_start), 34);
			cr_assert_eq(le16toh(vh.csum_offset), 16);
			cr_assert_eq(nh_get16(fr + 34 + 16),
				     partial_sum4(fr + 14, (size_t)len - 34),
				     "the TCP checksum field is not the pseudo-header sum");
			segs++;
		} else {
			cr_assert_eq(type, MOAT_REC_FRAME);
			cr_assert_leq(len, 1514);
		}
		if (!nh_parse4(fr, (size_t)len, &p) || p.proto != 6 || !p.dlen)
			continue;
		cr_assert_eq(p.seq, c.rcv_nxt + rx, "segments out of order");
		cr_assert(!memcmp(p.data, down + rx, p.dlen), "bytes differ at %zu", rx);
		rx += p.dlen;
	}
	cr_assert_gt(segs, 0, "no segment longer than the MTU went to the guest");
	cr_assert_eq(rx, sizeof(down), "the guest got %zu of %zu bytes", rx, sizeof(down));

	/* Impossible metadata on the same flow: counted, not taken. */
	vnet_hdr(&vh, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 0);
	cr_assert(nh_guest_send_vnet(&vh, fbuf, n));
	nh_poll();
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_BAD_OFFLOAD], 1);
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, vnet_records_without_offloads_are_dropped)
{
	struct moat_vnet_hdr vh;
	size_t n = nh_udp4(fbuf, nh_guest_mac, NH_GUEST_IP, 1234, NH_REMOTE_IP, 53, "x", 1);

	nh_init(); /* no offloads negotiated */
	memset(&vh, 0, sizeof(vh));
	cr_assert(nh_guest_send_vnet(&vh, fbuf, n));
	nh_poll();
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_MALFORMED], 1);
	cr_assert(!H.ns.violation);
}

Test(netstack_flows, unreach_becomes_the_guests_icmp_error)
{
	struct flow_unreach u;
	struct nh_pkt p;
	int n;

	nh_init();
	/* The guest's datagram first (the netstack learns its MAC from it). */
	n = (int)nh_udp4(fbuf, nh_guest_mac, NH_GUEST_IP, 40000, NH_REMOTE_IP, 7999, "?", 1);
	nh_guest_send(fbuf, (size_t)n);
	nh_poll();
	cr_assert_gt(p_expect(FLOW_DGRAM, NULL, 0), 0);
	while (nh_guest_recv_any(rbuf, sizeof(rbuf)) >= 0)
		; /* the router advertisement the first frame brings */
	memset(&u, 0, sizeof(u));
	u.src.family = u.dst.family = 4;
	nh_put32(u.src.addr, NH_REMOTE_IP);
	u.src.port = 7999;
	nh_put32(u.dst.addr, NH_GUEST_IP);
	u.dst.port = 40000;
	u.kind = FLOW_UNREACH_PORT;
	nh_proxy_send(FLOW_UNREACH, &u, sizeof(u));
	nh_poll();
	cr_assert(!H.ns.violation);
	n = nh_guest_recv(rbuf, sizeof(rbuf));
	cr_assert_gt(n, 0, "no ICMP error for the guest");
	cr_assert(nh_parse4(rbuf, (size_t)n, &p));
	cr_assert_eq(p.proto, 1);
	cr_assert_eq(p.src, NH_REMOTE_IP, "the error comes from the remote");
	cr_assert_eq(p.type, 3);
	cr_assert_eq(p.code, 3, "port unreachable");
	cr_assert(p.csum_ok);
	/* The quote: guest -> remote, UDP 40000 -> 7999. */
	cr_assert_eq(nh_get32(p.l4 + 8 + 12), NH_GUEST_IP);
	cr_assert_eq(nh_get32(p.l4 + 8 + 16), NH_REMOTE_IP);
	cr_assert_eq(p.l4[8 + 9], 17);
	cr_assert_eq(nh_get16(p.l4 + 8 + 20), 40000);
	cr_assert_eq(nh_get16(p.l4 + 8 + 22), 7999);

	/* Not for the guest's address: a violation. */
	nh_put32(u.dst.addr, NH_REMOTE_IP);
	nh_proxy_send(FLOW_UNREACH, &u, sizeof(u));
	nh_poll();
	cr_assert(H.ns.violation);
}
