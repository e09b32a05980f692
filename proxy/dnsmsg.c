/* SPDX-License-Identifier: MIT */
/*
 * dnsmsg.c - DNS message parsing and building (RFC 1035, RFC 6891's OPT)
 *
 * Theory of Operation
 * -------------------
 * Used by the proxy's forwarder (dnsfwd.c) on queries from the guest and on
 * answers from upstream nameservers, both untrusted, and by a libFuzzer
 * harness (tests/fuzz/fuzz_dns.c). It is pure code: it reads a message that
 * the caller already copied into its own buffer, writes into buffers the
 * caller gives, and never allocates.
 *
 * Every read goes through bounds checks against the message length. Names
 * are read with loop-proof decompression: each compression pointer must
 * point strictly before the previous one (and the first one before the
 * name's start), so a chain of pointers always ends; labels are at most 63
 * octets, a name at most 255 octets in wire form, and the reserved label
 * types (0x40, 0x80) are refused. A query must hold exactly one question
 * and nothing but an optional OPT in the additional section; an answer must
 * carry the question we asked and the id we chose; every record in every
 * section must fit, and no byte may follow the last one.
 *
 * Names are handed out in text form for the policy (lower case, no
 * trailing dot, bytes other than [a-z0-9-_*] as \DDD, so a label holding a
 * dot can never look like two labels), and kept in lower-cased wire form
 * for comparisons.
 */
#include <errno.h>
#include <string.h>

#include "proxy/dnsmsg.h"

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/*
 * Read the (possibly compressed) name at *off into lower-cased wire form.
 * On success *off is just past the name as it sits at *off.
 */
static int name_wire(const uint8_t *msg, size_t len, size_t *off, uint8_t *wire, size_t *wlen)
{
	/* cppcheck-suppress duplicateAssignExpression ; both start at the name, only pos moves on */
	size_t pos = *off, limit = *off, w = 0, after = 0;
	bool jumped = false;

	for (;;) {
		uint8_t c;

		if (pos >= len)
			return -EBADMSG;
		c = msg[pos];
		if (c == 0) {
			if (w + 1 > DNSMSG_WIRE_NAME_MAX)
				return -EBADMSG;
			wire[w++] = 0;
			*off = jumped ? after : pos + 1;
			*wlen = w;
			return 0;
		}
		if ((c & 0xc0) == 0xc0) {
			size_t ptr;

			if (pos + 1 >= len)
				return -EBADMSG;
			ptr = (size_t)(c & 0x3f) << 8 | msg[pos + 1];
			/* Strictly backward from the last jump: no loops. */
			if (ptr >= limit)
				return -EBADMSG;
			if (!jumped)
				after = pos + 2;
			jumped = true;
			limit = ptr;
			pos = ptr;
			continue;
		}
		if (c & 0xc0)
			return -EBADMSG; /* 0x40, 0x80: reserved / extended */
		if (pos + 1 + c > len || w + 1 + c + 1 > DNSMSG_WIRE_NAME_MAX)
			return -EBADMSG;
		wire[w++] = c;
		for (size_t i = 0; i < c; i++)
			wire[w++] = lower(msg[pos + 1 + i]);
		pos += 1 + (size_t)c;
	}
}

/* Text form of a wire name (uncompressed, well-formed). */
static int wire_text(const uint8_t *wire, size_t wlen, char *out, size_t outsz)
{
	size_t i = 0, o = 0;

	while (i < wlen && wire[i]) {
		size_t n = wire[i++];

		if (i + n > wlen)
			return -EBADMSG;
		if (o && o + 1 < outsz)
			out[o++] = '.';
		for (size_t k = 0; k < n; k++, i++) {
			uint8_t c = wire[i];

			if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			    c == '_' || c == '*') {
				if (o + 1 >= outsz)
					return -ENAMETOOLONG;
				out[o++] = (char)c;
			} else {
				if (o + 4 >= outsz)
					return -ENAMETOOLONG;
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			}
		}
	}
	if (outsz == 0)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

/**
 * dnsmsg_name_read() - read a possibly compressed name in text form
 * @msg:	the whole message (compression pointers are offsets into it)
 * @len:	its length
 * @off:	where the name starts; advanced past it on success
 * @out:	text form (see the Theory of Operation)
 * @outsz:	size of @out (DNSMSG_NAME_TEXT_MAX always suffices)
 *
 * Return: 0, -EBADMSG for a malformed name, -ENAMETOOLONG if @out is small.
 */
int dnsmsg_name_read(const uint8_t *msg, size_t len, size_t *off, char *out, size_t outsz)
{
	uint8_t wire[DNSMSG_WIRE_NAME_MAX];
	size_t wlen, o = *off;
	int rc = name_wire(msg, len, &o, wire, &wlen);

	if (rc)
		return rc;
	rc = wire_text(wire, wlen, out, outsz);
	if (rc)
		return rc;
	*off = o;
	return 0;
}

/**
 * dnsmsg_name_equal() - compare two names in text form, ignoring case
 * @a, @b:	names as dnsmsg_name_read() writes them
 *
 * Return: true if equal.
 */
bool dnsmsg_name_equal(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (lower((uint8_t)*a) != lower((uint8_t)*b))
			return false;
	return *a == *b;
}

/* Skip one resource record; fill type/class/ttl/rdata position. */
struct rr {
	uint8_t owner[DNSMSG_WIRE_NAME_MAX];
	size_t owner_len;
	uint16_t type, class;
	uint32_t ttl;
	size_t rdata, rdlen;
};

static int read_rr(const uint8_t *msg, size_t len, size_t *off, struct rr *rr)
{
	size_t o = *off;
	int rc = name_wire(msg, len, &o, rr->owner, &rr->owner_len);

	if (rc)
		return rc;
	if (o + 10 > len)
		return -EBADMSG;
	rr->type = get16(msg + o);
	rr->class = get16(msg + o + 2);
	rr->ttl = get32(msg + o + 4);
	rr->rdlen = get16(msg + o + 8);
	rr->rdata = o + 10;
	if (rr->rdata + rr->rdlen > len)
		return -EBADMSG;
	*off = rr->rdata + rr->rdlen;
	return 0;
}

static int read_question(const uint8_t *msg, size_t len, size_t off, struct dnsmsg_question *q)
{
	int rc = name_wire(msg, len, &off, q->wire, &q->wire_len);

	if (rc)
		return rc;
	if (off + 4 > len)
		return -EBADMSG;
	q->qtype = get16(msg + off);
	q->qclass = get16(msg + off + 2);
	q->end = off + 4;
	return wire_text(q->wire, q->wire_len, q->name, sizeof(q->name)) ? -EBADMSG : 0;
}

/**
 * dnsmsg_parse_query() - parse and check a client's query
 * @msg:	the query (UDP payload, or a TCP message without its length)
 * @len:	its length
 * @out:	what the forwarder needs
 *
 * A query has QR clear, exactly one question, empty answer and authority
 * sections, and in the additional section at most one OPT (whose class is
 * the client's UDP size) and nothing else; no byte follows.
 *
 * Return: 0; -EBADMSG if malformed (answer FORMERR when at least the
 * header is there); -EOPNOTSUPP for an opcode other than QUERY (answer
 * NOTIMP).
 */
int dnsmsg_parse_query(const uint8_t *msg, size_t len, struct dnsmsg_query *out)
{
	uint16_t qd, an, ns, ar;
	size_t off;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len < DNSMSG_HDR_LEN || len > DNSMSG_UDP_MAX)
		return -EBADMSG;
	out->id = get16(msg);
	out->flags = get16(msg + 2);
	qd = get16(msg + 4);
	an = get16(msg + 6);
	ns = get16(msg + 8);
	ar = get16(msg + 10);
	out->udp_size = DNSMSG_UDP_MIN;
	if (out->flags & DNSMSG_FLAG_QR)
		return -EBADMSG;
	if (DNSMSG_OPCODE(out->flags) != 0)
		return -EOPNOTSUPP;
	if (qd != 1 || an != 0 || ns != 0 || ar > 1)
		return -EBADMSG;
	rc = read_question(msg, len, DNSMSG_HDR_LEN, &out->q);
	if (rc)
		return rc;
	off = out->q.end;
	if (ar) {
		struct rr rr;

		rc = read_rr(msg, len, &off, &rr);
		if (rc)
			return rc;
		/* RFC 6891 6.1.1: the OPT's owner is the root. */
		if (rr.type != DNSMSG_TYPE_OPT || rr.owner_len != 1)
			return -EBADMSG;
		out->edns = true;
		out->udp_size = rr.class < DNSMSG_UDP_MIN ? DNSMSG_UDP_MIN : rr.class;
	}
	if (off != len)
		return -EBADMSG;
	return 0;
}

static bool wire_equal(const uint8_t *a, const uint8_t *b)
{
	/* Both are well-formed lower-cased wire names. */
	size_t i = 0;

	for (;;) {
		if (a[i] != b[i])
			return false;
		if (a[i] == 0)
			return true;
		if (memcmp(a + i + 1, b + i + 1, a[i]))
			return false;
		i += 1 + (size_t)a[i];
	}
}

static int add_addr(struct dnsmsg_answer *out, const uint8_t *msg, const struct rr *rr)
{
	struct dnsmsg_addr_rr *a;

	if (rr->type == DNSMSG_TYPE_A ? rr->rdlen != 4 : rr->rdlen != 16)
		return -EBADMSG;
	if (out->n_addr >= DNSMSG_ADDRS_MAX)
		return -E2BIG;
	a = &out->addr[out->n_addr++];
	memset(a, 0, sizeof(*a));
	a->family = rr->type == DNSMSG_TYPE_A ? 4 : 6;
	memcpy(a->addr, msg + rr->rdata, rr->rdlen);
	a->ttl = rr->ttl > 0x7fffffffu ? 0 : rr->ttl;
	return 0;
}

/* Follow the question's CNAME chain through the answer-section records. */
static int follow_chain(struct dnsmsg_answer *out, const uint8_t *qwire, int n_rr)
{
	const uint8_t *seen[DNSMSG_CHAIN_MAX + 1];
	const uint8_t *cur = qwire;

	seen[0] = qwire;
	out->n_chain = 1;
	for (;;) {
		const uint8_t *next = NULL;

		for (int i = 0; i < n_rr; i++) {
			struct dnsmsg_rr_scratch *r = &out->rr[i];

			if (!wire_equal(r->owner, cur))
				continue;
			if (r->addr_idx >= 0)
				out->addr[r->addr_idx].in_chain = true;
			else if (r->type == DNSMSG_TYPE_CNAME && !next)
				next = r->target;
		}
		if (!next || out->n_chain > DNSMSG_CHAIN_MAX)
			return 0;
		/* A loop ends the chain: it leads nowhere new. */
		for (int k = 0; k < out->n_chain; k++)
			if (wire_equal(next, seen[k]))
				return 0;
		if (wire_text(next, DNSMSG_WIRE_NAME_MAX, out->chain[out->n_chain],
			      sizeof(out->chain[0])))
			return -EBADMSG;
		seen[out->n_chain++] = next;
		cur = next;
	}
}

/**
 * dnsmsg_parse_answer() - parse and check an upstream answer to our query
 * @msg:	the answer
 * @len:	its length
 * @query:	the query it must answer (its question)
 * @id:		the id we sent upstream
 * @out:	rcode/flags, the CNAME chain, the address records
 *
 * Return: 0; -ESRCH if it answers another query (wrong id, not a
 * response, another question: ignore it and keep waiting); -EBADMSG if it
 * is malformed; -E2BIG if it holds more records than we inspect (both:
 * answer SERVFAIL).
 */
int dnsmsg_parse_answer(const uint8_t *msg, size_t len, const struct dnsmsg_query *query,
			uint16_t id, struct dnsmsg_answer *out)
{
	uint16_t qd, count[3];
	size_t off = DNSMSG_HDR_LEN;
	int n_rr = 0, rc;

	out->n_chain = 0;
	out->n_addr = 0;
	if (len < DNSMSG_HDR_LEN)
		return -EBADMSG;
	out->flags = get16(msg + 2);
	if (get16(msg) != id || !(out->flags & DNSMSG_FLAG_QR) || DNSMSG_OPCODE(out->flags) != 0)
		return -ESRCH;
	qd = get16(msg + 4);
	count[0] = get16(msg + 6);
	count[1] = get16(msg + 8);
	count[2] = get16(msg + 10);
	if (qd > 1)
		return -EBADMSG;
	if (qd == 1) {
		struct dnsmsg_question q;

		rc = read_question(msg, len, off, &q);
		if (rc)
			return rc;
		if (!wire_equal(q.wire, query->q.wire) || q.qtype != query->q.qtype ||
		    q.qclass != query->q.qclass)
			return -ESRCH;
		off = q.end;
	} else if (DNSMSG_RCODE(out->flags) == DNSMSG_RCODE_NOERROR || count[0]) {
		/* Only an error answer may leave the question out. */
		return -EBADMSG;
	}
	memcpy(out->chain[0], query->q.name, sizeof(out->chain[0]));
	for (int s = 0; s < 3; s++) {
		for (unsigned i = 0; i < count[s]; i++) {
			struct rr rr;

			rc = read_rr(msg, len, &off, &rr);
			if (rc)
				return rc;
			if (s == 1)
				continue;
			if (rr.type == DNSMSG_TYPE_A || rr.type == DNSMSG_TYPE_AAAA) {
				if (rr.class != 1)
					continue;
				rc = add_addr(out, msg, &rr);
				if (rc)
					return rc;
			}
			if (s != 0)
				continue;
			if (n_rr >= DNSMSG_ANSWER_RRS_MAX)
				return -E2BIG;
			{
				struct dnsmsg_rr_scratch *r = &out->rr[n_rr++];

				memcpy(r->owner, rr.owner, rr.owner_len);
				r->type = rr.type;
				r->addr_idx = -1;
				if ((rr.type == DNSMSG_TYPE_A || rr.type == DNSMSG_TYPE_AAAA) &&
				    rr.class == 1)
					r->addr_idx = (int16_t)(out->n_addr - 1);
				if (rr.type == DNSMSG_TYPE_CNAME) {
					size_t t = rr.rdata, tlen;

					rc = name_wire(msg, len, &t, r->target, &tlen);
					if (rc || t != rr.rdata + rr.rdlen)
						return -EBADMSG;
				}
			}
		}
	}
	if (off != len)
		return -EBADMSG;
	if (qd == 0) {
		out->n_chain = 1;
		return 0;
	}
	return follow_chain(out, query->q.wire, n_rr);
}

static size_t header_and_question(const struct dnsmsg_query *q, uint16_t id, uint16_t flags,
				  uint8_t *out, size_t outsz)
{
	size_t n = DNSMSG_HDR_LEN + q->q.wire_len + 4;

	if (n > outsz)
		return 0;
	memset(out, 0, DNSMSG_HDR_LEN);
	put16(out, id);
	put16(out + 2, flags);
	put16(out + 4, 1);
	memcpy(out + DNSMSG_HDR_LEN, q->q.wire, q->q.wire_len);
	put16(out + DNSMSG_HDR_LEN + q->q.wire_len, q->q.qtype);
	put16(out + DNSMSG_HDR_LEN + q->q.wire_len + 2, q->q.qclass);
	return n;
}

/**
 * dnsmsg_reply() - build an answer without records (NXDOMAIN, SERVFAIL, ...)
 * @query:	the client's query (unused beyond what @q holds)
 * @qlen:	its length
 * @q:		the parsed query
 * @rcode:	enum dnsmsg_rcode
 * @out:	where the answer goes
 * @outsz:	its size
 *
 * The question is written uncompressed; RD is copied, RA is set.
 *
 * Return: the answer's length, 0 if @out is too small.
 */
size_t dnsmsg_reply(const uint8_t *query, size_t qlen, const struct dnsmsg_query *q, int rcode,
		    uint8_t *out, size_t outsz)
{
	uint16_t flags = DNSMSG_FLAG_QR | DNSMSG_FLAG_RA | (q->flags & DNSMSG_FLAG_RD) |
			 (uint16_t)(rcode & 0xf);

	(void)query;
	(void)qlen;
	return header_and_question(q, q->id, flags, out, outsz);
}

/**
 * dnsmsg_formerr() - answer a query that could not be parsed
 * @query:	the client's bytes
 * @qlen:	their length
 * @out:	where the answer goes
 * @outsz:	its size (>= DNSMSG_HDR_LEN)
 *
 * A bare header: the client's id and opcode, QR, RD copied, rcode FORMERR
 * (NOTIMP for an opcode other than QUERY), all counts zero.
 *
 * Return: the answer's length, 0 if there is nothing to answer (shorter
 * than a header, or itself a response: never answer an answer).
 */
size_t dnsmsg_formerr(const uint8_t *query, size_t qlen, uint8_t *out, size_t outsz)
{
	uint16_t f;

	if (qlen < DNSMSG_HDR_LEN || outsz < DNSMSG_HDR_LEN)
		return 0;
	f = get16(query + 2);
	if (f & DNSMSG_FLAG_QR)
		return 0;
	memset(out, 0, DNSMSG_HDR_LEN);
	out[0] = query[0];
	out[1] = query[1];
	put16(out + 2, (uint16_t)(DNSMSG_FLAG_QR | (f & 0x7800) | (f & DNSMSG_FLAG_RD) |
				  (DNSMSG_OPCODE(f) ? DNSMSG_RCODE_NOTIMP : DNSMSG_RCODE_FORMERR)));
	return DNSMSG_HDR_LEN;
}

/**
 * dnsmsg_truncate() - cut an answer down to what fits a small UDP client
 * @answer:	the full answer (already checked by dnsmsg_parse_answer())
 * @alen:	its length
 * @q:		the client's query
 * @out:	where the truncated answer goes
 * @outsz:	its size
 *
 * RFC 2181 9: keep the header and question, drop every record and set TC,
 * so the client retries over TCP.
 *
 * Return: the new length, 0 if @out is too small.
 */
size_t dnsmsg_truncate(const uint8_t *answer, size_t alen, const struct dnsmsg_query *q,
		       uint8_t *out, size_t outsz)
{
	if (alen < DNSMSG_HDR_LEN)
		return 0;
	return header_and_question(q, get16(answer), (uint16_t)(get16(answer + 2) | DNSMSG_FLAG_TC),
				   out, outsz);
}

/**
 * dnsmsg_set_id() - rewrite a message's id
 * @msg:	the message
 * @len:	its length (nothing happens below DNSMSG_HDR_LEN)
 * @id:		the new id
 */
void dnsmsg_set_id(uint8_t *msg, size_t len, uint16_t id)
{
	if (len >= DNSMSG_HDR_LEN)
		put16(msg, id);
}
