/* SPDX-License-Identifier: MIT */
/*
 * tlsmsg.c - the records between moat-proxy and moat-tls, built and checked
 *
 * Theory of Operation
 * -------------------
 * Each side trusts the other no more than the guest: the proxy because
 * moat-tls parses the guest's TLS and every server's, moat-tls because a
 * compromised proxy should gain nothing over it. So a record is checked as
 * hostile input before it is used: the datagram is exactly the header and
 * the length it says, the type is one the sender may send, and the payload
 * has the size its type requires (an SNI of 1..253 bytes of
 * [A-Za-z0-9._-], the names sniff.c passes on; two u32 in range for the
 * outcome records). Values inside
 * a well-formed record (a flow id nobody opened, a secret index beyond the
 * policy's) are the receiver's to judge; the descriptors that come with
 * OPEN are the receiver's to count. Integers are little-endian.
 */
#include <errno.h>
#include <string.h>

#include "tls/tlsmsg.h"

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static int sni_ok(const uint8_t *p, uint32_t n)
{
	if (n < 1 || n > TLSMSG_SNI_MAX)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		/* what sniff.c takes from a ClientHello; moat-tls refuses what no
		 * certificate can name ('_') with FAIL NAME, not as a broken record */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/**
 * tlsmsg_check() - check one record and copy out its fields
 * @buf:	the datagram
 * @len:	its length
 * @from_proxy:	1 if the proxy sent it (moat-tls checking), 0 if moat-tls did
 * @m:		filled on success (@m->payload points into @buf)
 *
 * Return: 0, or -EBADMSG (the sender broke the protocol).
 */
int tlsmsg_check(const uint8_t *buf, size_t len, int from_proxy, struct tlsmsg *m)
{
	uint32_t t;

	memset(m, 0, sizeof(*m));
	if (len < TLSMSG_HDR || len > TLSMSG_MAX)
		return -EBADMSG;
	m->flow = rd32(buf);
	m->type = t = rd32(buf + 4);
	m->len = rd32(buf + 8);
	m->payload = buf + TLSMSG_HDR;
	if (m->len != len - TLSMSG_HDR)
		return -EBADMSG;
	if (from_proxy != (t < TLSMSG_OPENED))
		return -EBADMSG;
	switch (t) {
	case TLSMSG_OPEN:
		return sni_ok(m->payload, m->len) ? 0 : -EBADMSG;
	case TLSMSG_OPENED:
	case TLSMSG_FAIL:
	case TLSMSG_SECRET:
		if (m->len != 8)
			return -EBADMSG;
		m->a = rd32(m->payload);
		m->b = rd32(m->payload + 4);
		if (t == TLSMSG_OPENED && (m->a || m->b))
			return -EBADMSG;
		if (t == TLSMSG_FAIL && (m->a > 1 || m->b >= TLSMSG_R_COUNT))
			return -EBADMSG;
		if (t == TLSMSG_SECRET && m->b > TLSMSG_SECRET_VIOLATION)
			return -EBADMSG;
		return 0;
	}
	return -EBADMSG;
}

/**
 * tlsmsg_build() - write a record with a byte payload
 * @buf:	at least TLSMSG_HDR + @len bytes
 * @flow:	the connection
 * @type:	enum tlsmsg_type
 * @payload:	@len bytes (may be NULL when @len is 0)
 * @len:	at most TLSMSG_SNI_MAX
 *
 * Return: the record's length.
 */
size_t tlsmsg_build(uint8_t *buf, uint32_t flow, uint32_t type, const void *payload, uint32_t len)
{
	wr32(buf, flow);
	wr32(buf + 4, type);
	wr32(buf + 8, len);
	if (len)
		memcpy(buf + TLSMSG_HDR, payload, len);
	return TLSMSG_HDR + len;
}

/**
 * tlsmsg_build2() - write a record whose payload is two u32
 * @buf:	at least TLSMSG_HDR + 8 bytes
 * @flow:	the connection
 * @type:	TLSMSG_OPENED, TLSMSG_FAIL or TLSMSG_SECRET
 * @a, @b:	the two values
 *
 * Return: the record's length.
 */
size_t tlsmsg_build2(uint8_t *buf, uint32_t flow, uint32_t type, uint32_t a, uint32_t b)
{
	uint8_t p[8];

	wr32(p, a);
	wr32(p + 4, b);
	return tlsmsg_build(buf, flow, type, p, sizeof(p));
}

/**
 * tlsmsg_reason_name() - the word for a FAIL reason (events, metric labels)
 * @r:	enum tlsmsg_reason
 *
 * Return: a static string; "unknown" out of range.
 */
const char *tlsmsg_reason_name(uint32_t r)
{
	static const char *const names[TLSMSG_R_COUNT] = {
		[TLSMSG_R_HANDSHAKE] = "handshake", [TLSMSG_R_VERIFY] = "verify",
		[TLSMSG_R_NAME] = "name",	    [TLSMSG_R_HTTP] = "http",
		[TLSMSG_R_TOO_MANY] = "too_many",   [TLSMSG_R_IO] = "io",
		[TLSMSG_R_RELOAD] = "reload",
	};

	return r < TLSMSG_R_COUNT ? names[r] : "unknown";
}
