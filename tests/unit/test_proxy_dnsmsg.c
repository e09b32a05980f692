/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_dnsmsg.c - the proxy's DNS message parser and builder (proxy/dnsmsg.c)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proxy/dnsmsg.h"

/* A tiny message builder. */
struct msg {
	uint8_t b[4096];
	size_t n;
};

static void u8(struct msg *m, uint8_t v)
{
	m->b[m->n++] = v;
}

static void u16(struct msg *m, uint16_t v)
{
	u8(m, (uint8_t)(v >> 8));
	u8(m, (uint8_t)v);
}

static void u32(struct msg *m, uint32_t v)
{
	u16(m, (uint16_t)(v >> 16));
	u16(m, (uint16_t)v);
}

static void name(struct msg *m, const char *dotted)
{
	while (*dotted) {
		const char *dot = strchr(dotted, '.');
		size_t l = dot ? (size_t)(dot - dotted) : strlen(dotted);

		u8(m, (uint8_t)l);
		memcpy(m->b + m->n, dotted, l);
		m->n += l;
		dotted += l + (dot ? 1 : 0);
	}
	u8(m, 0);
}

static void header(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
		   uint16_t ns, uint16_t ar)
{
	m->n = 0;
	u16(m, id);
	u16(m, flags);
	u16(m, qd);
	u16(m, an);
	u16(m, ns);
	u16(m, ar);
}

static void question(struct msg *m, const char *n, uint16_t type)
{
	name(m, n);
	u16(m, type);
	u16(m, 1);
}

static void rr_a(struct msg *m, uint16_t name_ptr, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c,
		 uint8_t d)
{
	u16(m, 0xc000 | name_ptr);
	u16(m, DNSMSG_TYPE_A);
	u16(m, 1);
	u32(m, ttl);
	u16(m, 4);
	u8(m, a);
	u8(m, b);
	u8(m, c);
	u8(m, d);
}

static void make_query(struct msg *m, const char *n, uint16_t type, struct dnsmsg_query *q)
{
	header(m, 0x1234, DNSMSG_FLAG_RD, 1, 0, 0, 0);
	question(m, n, type);
	cr_assert_eq(dnsmsg_parse_query(m->b, m->n, q), 0);
}

Test(dns, query_basic)
{
	struct msg m;
	struct dnsmsg_query q;

	header(&m, 0xbeef, DNSMSG_FLAG_RD, 1, 0, 0, 0);
	question(&m, "WWW.Example.COM", DNSMSG_TYPE_AAAA);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	cr_assert_str_eq(q.q.name, "www.example.com");
	cr_assert_eq(q.q.qtype, DNSMSG_TYPE_AAAA);
	cr_assert_eq(q.id, 0xbeef);
	cr_assert_eq(q.udp_size, 512);
	cr_assert_not(q.edns);
	cr_assert_eq(q.q.end, m.n);
}

Test(dns, query_edns_size)
{
	struct msg m;
	struct dnsmsg_query q;

	header(&m, 1, 0, 1, 0, 0, 1);
	question(&m, "a.b", DNSMSG_TYPE_A);
	u8(&m, 0); /* root */
	u16(&m, DNSMSG_TYPE_OPT);
	u16(&m, 1232); /* UDP size */
	u32(&m, 0);
	u16(&m, 0);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	cr_assert(q.edns);
	cr_assert_eq(q.udp_size, 1232);

	/* A tiny EDNS size is raised to 512. */
	m.b[m.n - 8] = 0;
	m.b[m.n - 7] = 100;
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	cr_assert_eq(q.udp_size, 512);
}

Test(dns, query_rejects)
{
	struct msg m;
	struct dnsmsg_query q;

	/* Too short. */
	cr_assert_eq(dnsmsg_parse_query((const uint8_t *)"\x12\x34\x01", 3, &q), -EBADMSG);
	/* A response is not a query. */
	header(&m, 1, DNSMSG_FLAG_QR, 1, 0, 0, 0);
	question(&m, "a.b", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	/* Two questions, no question. */
	header(&m, 1, 0, 2, 0, 0, 0);
	question(&m, "a.b", 1);
	question(&m, "c.d", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	header(&m, 1, 0, 0, 0, 0, 0);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	/* Counts that promise records that are not there. */
	header(&m, 1, 0, 1, 1, 0, 0);
	question(&m, "a.b", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	header(&m, 1, 0, 1, 0, 0, 1);
	question(&m, "a.b", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	/* Trailing garbage. */
	header(&m, 1, 0, 1, 0, 0, 0);
	question(&m, "a.b", 1);
	u8(&m, 0);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
	/* Truncated question. */
	header(&m, 1, 0, 1, 0, 0, 0);
	question(&m, "a.b", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n - 1, &q), -EBADMSG);
	/* Another opcode (UPDATE = 5). */
	header(&m, 1, 5 << 11, 1, 0, 0, 0);
	question(&m, "a.b", 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EOPNOTSUPP);
	/* An additional record that is not an OPT. */
	header(&m, 1, 0, 1, 0, 0, 1);
	question(&m, "a.b", 1);
	rr_a(&m, 12, 1, 1, 2, 3, 4);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
}

Test(dns, name_limits)
{
	struct msg m;
	struct dnsmsg_query q;
	char big[400];

	/* A 63-octet label is fine, 64 is not (0x40 is a reserved label type). */
	memset(big, 'a', 63);
	big[63] = '\0';
	header(&m, 1, 0, 1, 0, 0, 0);
	question(&m, big, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	memset(big, 'a', 64);
	big[64] = '\0';
	header(&m, 1, 0, 1, 0, 0, 0);
	question(&m, big, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);

	/* 255 octets of wire name are fine, 257 are not. */
	header(&m, 1, 0, 1, 0, 0, 0);
	for (int i = 0; i < 4; i++) { /* 4 * 64 = 256 octets so far, minus one below */
		u8(&m, i == 3 ? 61 : 63);
		memset(m.b + m.n, 'x', i == 3 ? 61 : 63);
		m.n += i == 3 ? 61 : 63;
	}
	u8(&m, 0); /* 64*3 + 62 + 1 = 255 */
	u16(&m, 1);
	u16(&m, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	header(&m, 1, 0, 1, 0, 0, 0);
	for (int i = 0; i < 4; i++) {
		u8(&m, 63);
		memset(m.b + m.n, 'x', 63);
		m.n += 63;
	}
	u8(&m, 0); /* 257 */
	u16(&m, 1);
	u16(&m, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), -EBADMSG);
}

Test(dns, name_escapes)
{
	struct msg m;
	struct dnsmsg_query q;

	/* A label holding a dot must not read as two labels. */
	header(&m, 1, 0, 1, 0, 0, 0);
	u8(&m, 8);
	memcpy(m.b + m.n, "evil.com", 8);
	m.n += 8;
	u8(&m, 0);
	u16(&m, 1);
	u16(&m, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	cr_assert_str_eq(q.q.name, "evil\\046com");
	/* Root. */
	header(&m, 1, 0, 1, 0, 0, 0);
	u8(&m, 0);
	u16(&m, 2);
	u16(&m, 1);
	cr_assert_eq(dnsmsg_parse_query(m.b, m.n, &q), 0);
	cr_assert_str_eq(q.q.name, "");
}

Test(dns, compression_loops)
{
	uint8_t b[64] = { 0 };
	char out[DNSMSG_NAME_TEXT_MAX];
	size_t off;

	/* A pointer to itself. */
	b[12] = 0xc0;
	b[13] = 12;
	off = 12;
	cr_assert_eq(dnsmsg_name_read(b, 14, &off, out, sizeof(out)), -EBADMSG);
	/* Two pointers to each other. */
	b[12] = 0xc0;
	b[13] = 14;
	b[14] = 0xc0;
	b[15] = 12;
	off = 14;
	cr_assert_eq(dnsmsg_name_read(b, 16, &off, out, sizeof(out)), -EBADMSG);
	off = 12;
	cr_assert_eq(dnsmsg_name_read(b, 16, &off, out, sizeof(out)), -EBADMSG);
	/* A label then a pointer back into that label's own start. */
	b[20] = 1;
	b[21] = 'a';
	b[22] = 0xc0;
	b[23] = 20;
	off = 20;
	cr_assert_eq(dnsmsg_name_read(b, 24, &off, out, sizeof(out)), -EBADMSG);
	/* A forward pointer. */
	b[30] = 0xc0;
	b[31] = 40;
	b[40] = 0;
	off = 30;
	cr_assert_eq(dnsmsg_name_read(b, 41, &off, out, sizeof(out)), -EBADMSG);
	/* A pointer cut short. */
	b[50] = 0xc0;
	off = 50;
	cr_assert_eq(dnsmsg_name_read(b, 51, &off, out, sizeof(out)), -EBADMSG);
	/* A good backward chain: "x" -> "a" -> root. */
	b[20] = 1;
	b[21] = 'a';
	b[22] = 0;
	b[30] = 1;
	b[31] = 'x';
	b[32] = 0xc0;
	b[33] = 20;
	off = 30;
	cr_assert_eq(dnsmsg_name_read(b, 34, &off, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "x.a");
	cr_assert_eq(off, 34);
}

/* An answer to make_query(q) with a CNAME chain and addresses. */
static void make_answer(struct msg *m, uint16_t id, const char *qname)
{
	size_t cname_owner, target;

	header(m, id, DNSMSG_FLAG_QR | DNSMSG_FLAG_RD | DNSMSG_FLAG_RA, 1, 3, 0, 0);
	question(m, qname, DNSMSG_TYPE_A);
	/* qname CNAME cdn.example.net */
	cname_owner = 12;
	u16(m, 0xc000 | (uint16_t)cname_owner);
	u16(m, DNSMSG_TYPE_CNAME);
	u16(m, 1);
	u32(m, 300);
	u16(m, 17);
	target = m->n;
	name(m, "cdn.example.net");
	/* cdn.example.net A 203.0.113.7 */
	rr_a(m, (uint16_t)target, 60, 203, 0, 113, 7);
	/* unrelated.test A 10.0.0.1: not in the chain */
	name(m, "unrelated.test");
	u16(m, DNSMSG_TYPE_A);
	u16(m, 1);
	u32(m, 60);
	u16(m, 4);
	u8(m, 10);
	u8(m, 0);
	u8(m, 0);
	u8(m, 1);
}

Test(dns, answer_chain)
{
	struct msg qm, am;
	struct dnsmsg_query q;
	static struct dnsmsg_answer a;

	make_query(&qm, "www.example.com", DNSMSG_TYPE_A, &q);
	make_answer(&am, 0x4242, "www.example.com");
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 0x4242, &a), 0);
	cr_assert_eq(a.n_chain, 2);
	cr_assert_str_eq(a.chain[0], "www.example.com");
	cr_assert_str_eq(a.chain[1], "cdn.example.net");
	cr_assert_eq(a.n_addr, 2);
	cr_assert(a.addr[0].in_chain);
	cr_assert_eq(a.addr[0].addr[0], 203);
	cr_assert_eq(a.addr[0].ttl, 60);
	cr_assert_not(a.addr[1].in_chain);
	cr_assert_eq(a.addr[1].addr[0], 10);
}

Test(dns, answer_wrong_id_or_question)
{
	struct msg qm, am;
	struct dnsmsg_query q;
	static struct dnsmsg_answer a;

	make_query(&qm, "www.example.com", DNSMSG_TYPE_A, &q);
	make_answer(&am, 0x4242, "www.example.com");
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 0x4243, &a), -ESRCH);
	make_answer(&am, 0x4242, "www.example.org");
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 0x4242, &a), -ESRCH);
	/* The question's case does not matter. */
	make_answer(&am, 0x4242, "WWW.EXAMPLE.COM");
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 0x4242, &a), 0);
	/* Not a response. */
	make_answer(&am, 0x4242, "www.example.com");
	am.b[2] &= 0x7f;
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 0x4242, &a), -ESRCH);
}

Test(dns, answer_malformed)
{
	struct msg qm, am;
	struct dnsmsg_query q;
	static struct dnsmsg_answer a;

	make_query(&qm, "www.example.com", DNSMSG_TYPE_A, &q);
	make_answer(&am, 7, "www.example.com");
	/* Every truncation fails cleanly. */
	for (size_t n = 0; n < am.n; n++)
		cr_assert_lt(dnsmsg_parse_answer(am.b, n, &q, 7, &a), 0, "length %zu", n);
	/* More records promised than present. */
	am.b[7] = 4;
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 7, &a), -EBADMSG);
	/* Fewer promised: trailing bytes. */
	am.b[7] = 2;
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 7, &a), -EBADMSG);
	am.b[7] = 3;
	/* An A record with a wrong rdlength. */
	make_answer(&am, 7, "www.example.com");
	am.b[am.n - 5] = 5;
	cr_assert_lt(dnsmsg_parse_answer(am.b, am.n, &q, 7, &a), 0);
	/* NOERROR without a question is malformed; SERVFAIL without one is fine. */
	header(&am, 7, DNSMSG_FLAG_QR, 0, 0, 0, 0);
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 7, &a), -EBADMSG);
	header(&am, 7, DNSMSG_FLAG_QR | DNSMSG_RCODE_SERVFAIL, 0, 0, 0, 0);
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 7, &a), 0);
}

Test(dns, answer_cname_loop)
{
	struct msg qm, am;
	struct dnsmsg_query q;
	static struct dnsmsg_answer a;

	make_query(&qm, "a.test", DNSMSG_TYPE_A, &q);
	header(&am, 9, DNSMSG_FLAG_QR, 1, 2, 0, 0);
	question(&am, "a.test", DNSMSG_TYPE_A);
	/* a.test CNAME b.test; b.test CNAME a.test */
	name(&am, "a.test");
	u16(&am, DNSMSG_TYPE_CNAME);
	u16(&am, 1);
	u32(&am, 1);
	u16(&am, 8);
	name(&am, "b.test");
	name(&am, "b.test");
	u16(&am, DNSMSG_TYPE_CNAME);
	u16(&am, 1);
	u32(&am, 1);
	u16(&am, 8);
	name(&am, "a.test");
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 9, &a), 0);
	cr_assert_eq(a.n_chain, 2);
	cr_assert_eq(a.n_addr, 0);
}

Test(dns, answer_too_many_addresses)
{
	struct msg qm;
	static struct msg am;
	struct dnsmsg_query q;
	static struct dnsmsg_answer a;

	make_query(&qm, "x.t", DNSMSG_TYPE_A, &q);
	header(&am, 3, DNSMSG_FLAG_QR, 1, DNSMSG_ADDRS_MAX + 1, 0, 0);
	question(&am, "x.t", DNSMSG_TYPE_A);
	for (int i = 0; i <= DNSMSG_ADDRS_MAX; i++)
		rr_a(&am, 12, 1, 203, 0, 113, (uint8_t)i);
	cr_assert_eq(dnsmsg_parse_answer(am.b, am.n, &q, 3, &a), -E2BIG);
}

Test(dns, replies)
{
	struct msg qm, am;
	struct dnsmsg_query q;
	uint8_t out[600];
	size_t n;

	make_query(&qm, "denied.example", DNSMSG_TYPE_A, &q);
	n = dnsmsg_reply(qm.b, qm.n, &q, DNSMSG_RCODE_NXDOMAIN, out, sizeof(out));
	cr_assert_eq(n, qm.n);
	cr_assert_eq(out[0], 0x12);
	cr_assert_eq(out[1], 0x34);
	cr_assert(out[2] & 0x80); /* QR */
	cr_assert_eq(out[3] & 0xf, DNSMSG_RCODE_NXDOMAIN);
	cr_assert_eq(memcmp(out + 12, qm.b + 12, qm.n - 12), 0);

	/* FORMERR keeps the id; never answers an answer or a runt. */
	n = dnsmsg_formerr(qm.b, qm.n, out, sizeof(out));
	cr_assert_eq(n, DNSMSG_HDR_LEN);
	cr_assert_eq(out[3] & 0xf, DNSMSG_RCODE_FORMERR);
	cr_assert_eq(dnsmsg_formerr(qm.b, 5, out, sizeof(out)), 0);
	make_answer(&am, 1, "a.b");
	cr_assert_eq(dnsmsg_formerr(am.b, am.n, out, sizeof(out)), 0);

	/* Truncation keeps header and question, sets TC, drops records. */
	make_answer(&am, 0x1234, "denied.example");
	n = dnsmsg_truncate(am.b, am.n, &q, out, sizeof(out));
	cr_assert_eq(n, qm.n);
	cr_assert(out[2] & (DNSMSG_FLAG_TC >> 8));
	cr_assert_eq(out[7], 0);
}
