/* SPDX-License-Identifier: MIT */
/*
 * test_flowmsg.c - the one check of a flow record (shm/flowmsg.c), on both
 * rings: sizes, types per ring, ids per half, fields, and the copy-out
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "shm/flowmsg.h"
#include "shm/moat_shm.h"

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

static int check(enum flowmsg_dir dir, uint32_t type, const void *rec, uint32_t len)
{
	union flowmsg m;
	uint32_t hl = 0;
	const char *why = NULL;
	int rc = flowmsg_check(dir, type, rec, len, &m, &hl, &why);

	if (rc == 0) {
		cr_assert_null(why);
		cr_assert(hl > 0 && hl <= len, "header %u of %u", hl, len);
		cr_assert_eq(memcmp(&m, rec, hl), 0, "the header is copied out");
	} else {
		cr_assert_eq(rc, -EBADMSG);
		cr_assert_not_null(why, "a failure says why");
	}
	return rc;
}

static int s2p(uint32_t type, const void *rec, uint32_t len)
{
	return check(FLOWMSG_S2P, type, rec, len);
}

static int p2s(uint32_t type, const void *rec, uint32_t len)
{
	return check(FLOWMSG_P2S, type, rec, len);
}

Test(flowmsg, s2p_records)
{
	struct flow_connect c = { .id = 5, .src = guest_ep(1000), .dst = ep4(1, 2, 3, 4, 80) };
	struct flow_connect_result r = { .id = FLOW_ID_INGRESS | 1, .result = MOAT_CONN_OK };
	struct flow_credit cr = { .id = 5, .bytes = 10 };
	struct flow_close cl = { .id = 5, .reset = 1 };
	struct flow_shut sh = { .id = 5 };
	uint8_t data[sizeof(struct flow_dgram) + 10] = { 0 };
	struct flow_dgram d = { .src = guest_ep(1000), .dst = ep4(1, 2, 3, 4, 53) };
	struct flow_echo e = { .peer = ep4(1, 2, 3, 4, 0), .guest = guest_ep(0) };
	struct flow_connect bad;

	cr_assert_eq(s2p(FLOW_CONNECT, &c, sizeof(c)), 0);
	cr_assert_eq(s2p(FLOW_CONNECT, &c, sizeof(c) - 1), -EBADMSG);
	cr_assert_eq(s2p(FLOW_CONNECT, &c, sizeof(c) + 8), -EBADMSG);
	bad = c, bad.id = 0;
	cr_assert_eq(s2p(FLOW_CONNECT, &bad, sizeof(bad)), -EBADMSG);
	bad = c, bad.id = FLOW_ID_INGRESS | 3; /* not an egress id */
	cr_assert_eq(s2p(FLOW_CONNECT, &bad, sizeof(bad)), -EBADMSG);
	bad = c, bad.dst.family = 5;
	cr_assert_eq(s2p(FLOW_CONNECT, &bad, sizeof(bad)), -EBADMSG);
	bad = c, bad.dst.family = 6; /* families differ */
	cr_assert_eq(s2p(FLOW_CONNECT, &bad, sizeof(bad)), -EBADMSG);
	bad = c, bad.dst.port = 0;
	cr_assert_eq(s2p(FLOW_CONNECT, &bad, sizeof(bad)), -EBADMSG);

	cr_assert_eq(s2p(FLOW_CONNECT_RESULT, &r, sizeof(r)), 0);
	r.result = MOAT_CONN_RESULT_COUNT;
	cr_assert_eq(s2p(FLOW_CONNECT_RESULT, &r, sizeof(r)), -EBADMSG);
	r.result = 0, r.id = 7; /* results only for ingress ids */
	cr_assert_eq(s2p(FLOW_CONNECT_RESULT, &r, sizeof(r)), -EBADMSG);

	memcpy(data, &cr, 8);
	cr_assert_eq(s2p(FLOW_DATA, data, 9), 0);
	cr_assert_eq(s2p(FLOW_DATA, data, 8), -EBADMSG); /* no payload */
	cr_assert_eq(s2p(FLOW_DATA, data, 8 + FLOW_DATA_MAX + 1), -EBADMSG);
	cr_assert_eq(s2p(FLOW_CREDIT, &cr, sizeof(cr)), 0);
	cr_assert_eq(s2p(FLOW_CREDIT, &cr, 4), -EBADMSG);
	cr_assert_eq(s2p(FLOW_SHUT_WR, &sh, sizeof(sh)), 0);
	cr_assert_eq(s2p(FLOW_CLOSE, &cl, sizeof(cl)), 0);
	cl.reset = 2;
	cr_assert_eq(s2p(FLOW_CLOSE, &cl, sizeof(cl)), -EBADMSG);

	memcpy(data, &d, sizeof(d));
	cr_assert_eq(s2p(FLOW_DGRAM, data, sizeof(data)), 0);
	cr_assert_eq(s2p(FLOW_DGRAM, data, sizeof(d)), 0); /* empty datagram */
	cr_assert_eq(s2p(FLOW_DGRAM, data, sizeof(d) - 1), -EBADMSG);
	d.src.port = 0;
	memcpy(data, &d, sizeof(d));
	cr_assert_eq(s2p(FLOW_DGRAM, data, sizeof(data)), -EBADMSG);
	cr_assert_eq(s2p(FLOW_ECHO, &e, sizeof(e)), 0);
	e.guest.family = 6;
	cr_assert_eq(s2p(FLOW_ECHO, &e, sizeof(e)), -EBADMSG);

	/* p2s-only and unknown types. */
	cr_assert_eq(s2p(FLOW_ECHO_REPLY, &e, sizeof(e)), -EBADMSG);
	cr_assert_eq(s2p(FLOW_ACCEPTED, &c, sizeof(c)), -EBADMSG);
	cr_assert_eq(s2p(FLOW_MSG_END, &c, sizeof(c)), -EBADMSG);
	cr_assert_eq(s2p(1, &c, sizeof(c)), -EBADMSG);
}

Test(flowmsg, p2s_records)
{
	struct flow_connect acc = { .id = FLOW_ID_INGRESS | 9,
				    .src = ep4(192, 0, 2, 1, 4000),
				    .dst = guest_ep(8080) };
	struct flow_connect_result r = { .id = 5, .result = MOAT_CONN_REFUSED };
	struct flow_echo e = { .peer = ep4(1, 2, 3, 4, 0), .guest = guest_ep(0) };
	struct flow_data dh = { .id = 5 };
	uint8_t data[sizeof(dh) + 3] = { 0 };
	struct flow_connect bad;

	cr_assert_eq(p2s(FLOW_ACCEPTED, &acc, sizeof(acc)), 0);
	bad = acc, bad.id = 9; /* the proxy opens ingress ids only */
	cr_assert_eq(p2s(FLOW_ACCEPTED, &bad, sizeof(bad)), -EBADMSG);
	bad = acc, bad.id = FLOW_ID_INGRESS;
	cr_assert_eq(p2s(FLOW_ACCEPTED, &bad, sizeof(bad)), -EBADMSG);
	bad = acc, bad.src.port = 0;
	cr_assert_eq(p2s(FLOW_ACCEPTED, &bad, sizeof(bad)), -EBADMSG);
	cr_assert_eq(p2s(FLOW_ACCEPTED, &acc, sizeof(acc) - 1), -EBADMSG);

	/* A result answers the netstack's (egress) CONNECT. */
	cr_assert_eq(p2s(FLOW_CONNECT_RESULT, &r, sizeof(r)), 0);
	r.id = FLOW_ID_INGRESS | 5;
	cr_assert_eq(p2s(FLOW_CONNECT_RESULT, &r, sizeof(r)), -EBADMSG);

	memcpy(data, &dh, sizeof(dh));
	cr_assert_eq(p2s(FLOW_DATA, data, sizeof(data)), 0);
	cr_assert_eq(p2s(FLOW_DATA, data, sizeof(dh)), -EBADMSG);
	cr_assert_eq(p2s(FLOW_ECHO_REPLY, &e, sizeof(e)), 0);
	e.peer.family = 0;
	cr_assert_eq(p2s(FLOW_ECHO_REPLY, &e, sizeof(e)), -EBADMSG);

	/* s2p-only types. */
	cr_assert_eq(p2s(FLOW_CONNECT, &acc, sizeof(acc)), -EBADMSG);
	cr_assert_eq(p2s(FLOW_ECHO, &e, sizeof(e)), -EBADMSG);
	cr_assert_eq(p2s(0xffffffffu, &e, sizeof(e)), -EBADMSG);
}

Test(flowmsg, every_type_has_a_name)
{
	for (uint32_t t = FLOW_CONNECT; t < FLOW_MSG_END; t++)
		cr_assert_str_neq(flowmsg_name(t), "unknown", "type %u", t);
	cr_assert_str_eq(flowmsg_name(FLOW_MSG_END), "unknown");
	cr_assert_str_eq(flowmsg_name(0), "unknown");
}

Test(flowmsg, unreach_records)
{
	struct flow_unreach u = { .src = ep4(203, 0, 113, 10, 7999), .dst = guest_ep(40000) };

	cr_assert_eq(check(FLOWMSG_P2S, FLOW_UNREACH, &u, sizeof(u)), 0);
	cr_assert_eq(check(FLOWMSG_S2P, FLOW_UNREACH, &u, sizeof(u)), -EBADMSG,
		     "only the proxy reports ICMP errors");
	cr_assert_eq(check(FLOWMSG_P2S, FLOW_UNREACH, &u, sizeof(u) - 1), -EBADMSG);
	u.kind = FLOW_UNREACH_KIND_COUNT;
	cr_assert_eq(check(FLOWMSG_P2S, FLOW_UNREACH, &u, sizeof(u)), -EBADMSG, "an unknown kind");
	u.kind = FLOW_UNREACH_NET;
	u.src.port = 0;
	cr_assert_eq(check(FLOWMSG_P2S, FLOW_UNREACH, &u, sizeof(u)), -EBADMSG, "port 0");
	u.src.port = 7999;
	u.src.family = 6;
	cr_assert_eq(check(FLOWMSG_P2S, FLOW_UNREACH, &u, sizeof(u)), -EBADMSG, "mixed families");
}
