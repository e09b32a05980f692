/* SPDX-License-Identifier: MIT */
/*
 * sniff.c - the host name a TCP client names in its first bytes
 *
 * Theory of Operation
 * -------------------
 * Pure code (no I/O, no allocation), fuzzed (tests/fuzz/fuzz_sniff.c). The
 * proxy holds a guest's first bytes on a connection that a domain rule
 * decided (or when deny rules on names exist) and asks this file which name
 * the client means (tcpflow.c, docs/policy.md "Host names on connections"):
 *
 *  - TLS: one or more handshake records (content type 22) carrying a
 *    ClientHello; its server_name extension's host_name (RFC 6066 3). The
 *    handshake may span records and arrive in pieces: SNIFF_MORE until the
 *    whole ClientHello is there. Every length is checked against the one
 *    that contains it; a second server_name extension, a name that is not a
 *    DNS name, or a record that is not a handshake is malformed: SNIFF_NONE.
 *  - HTTP/1.x: a request line whose method is a token followed by a space,
 *    then headers up to the empty line; the one Host header's value without
 *    its port. Two Host headers are malformed (request smuggling): NONE.
 *  - Anything else (SSH, SMTP's client side, a binary protocol): NONE at
 *    once, from the first bytes that cannot start either.
 *
 * Only the first SNIFF_MAX_BYTES count: a ClientHello or request head that
 * needs more is NONE. Names come back lowercased, without a trailing dot.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "proxy/sniff.h"

#define TLS_HANDSHAKE	    22
#define TLS_CLIENT_HELLO    1
#define TLS_EXT_SERVER_NAME 0
#define TLS_RECORD_MAX	    (16384 + 2048)
#define TLS_HELLO_MAX	    SNIFF_MAX_BYTES

static int get16(const uint8_t *p)
{
	return (int)p[0] << 8 | p[1];
}

/*
 * Copy a DNS name (letters, digits, '-', '_', '.'), lowercased. Return: 0, or
 * -1 for anything else, an IPv4 literal included.
 */
static int take_name(const uint8_t *s, size_t n, char name[SNIFF_NAME_MAX + 1])
{
	bool letter = false;

	if (n && s[n - 1] == '.')
		n--;
	if (!n || n > SNIFF_NAME_MAX || s[0] == '.')
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_' || c == '.'))
			return -1;
		if (c == '.' && i && name[i - 1] == '.')
			return -1;
		name[i] = (char)c;
		letter |= !(c >= '0' && c <= '9') && c != '.';
	}
	name[n] = '\0';
	return letter ? 0 : -1; /* an IPv4 literal names no DNS name */
}

/* The server_name extension's body. Return: SNIFF_NAME or SNIFF_NONE. */
static enum sniff_result tls_server_name(const uint8_t *p, size_t n, char name[SNIFF_NAME_MAX + 1])
{
	size_t list, off = 2;

	if (n < 2)
		return SNIFF_NONE;
	list = (size_t)get16(p);
	if (list + 2 != n)
		return SNIFF_NONE;
	while (off + 3 <= n) {
		uint8_t type = p[off];
		size_t len = (size_t)get16(p + off + 1);

		off += 3;
		if (len > n - off)
			return SNIFF_NONE;
		if (type == 0) /* host_name; at most one of each type (RFC 6066) */
			return take_name(p + off, len, name) < 0 ? SNIFF_NONE : SNIFF_NAME;
		off += len;
	}
	return SNIFF_NONE;
}

/* A whole ClientHello body (after its 4-byte header). */
static enum sniff_result tls_hello(const uint8_t *p, size_t n, char name[SNIFF_NAME_MAX + 1])
{
	size_t off = 2 + 32, l, end;
	enum sniff_result r = SNIFF_NONE;
	bool seen = false;

	if (n < off + 1)
		return SNIFF_NONE;
	l = p[off]; /* session id */
	if (l > 32 || (off += 1 + l) + 2 > n)
		return SNIFF_NONE;
	l = (size_t)get16(p + off); /* cipher suites */
	if (l < 2 || (l & 1) || (off += 2 + l) + 1 > n)
		return SNIFF_NONE;
	l = p[off]; /* compression methods */
	if (l < 1 || (off += 1 + l) > n)
		return SNIFF_NONE;
	if (off == n)
		return SNIFF_NONE; /* no extensions: no SNI */
	if (off + 2 > n)
		return SNIFF_NONE;
	l = (size_t)get16(p + off);
	off += 2;
	if (l != n - off)
		return SNIFF_NONE;
	end = n;
	while (off + 4 <= end) {
		int type = get16(p + off);
		size_t len = (size_t)get16(p + off + 2);

		off += 4;
		if (len > end - off)
			return SNIFF_NONE;
		if (type == TLS_EXT_SERVER_NAME) {
			if (seen)
				return SNIFF_NONE; /* a repeated extension is malformed */
			seen = true;
			r = tls_server_name(p + off, len, name);
			if (r != SNIFF_NAME)
				return SNIFF_NONE;
		}
		off += len;
	}
	return off == end ? r : SNIFF_NONE;
}

/* Gather the handshake bytes of the leading records into @hs; then the ClientHello. */
static enum sniff_result tls(const uint8_t *buf, size_t len, char name[SNIFF_NAME_MAX + 1])
{
	static _Thread_local uint8_t hs[TLS_HELLO_MAX];
	size_t off = 0, have = 0, need;

	for (;;) {
		size_t rl;

		if (len - off < 5)
			return SNIFF_MORE;
		if (buf[off] != TLS_HANDSHAKE || buf[off + 1] != 3)
			return SNIFF_NONE;
		rl = (size_t)get16(buf + off + 3);
		if (rl == 0 || rl > TLS_RECORD_MAX)
			return SNIFF_NONE;
		if (len - off - 5 < rl) {
			/* a partial record: take what is there to see the hello's length early */
			rl = len - off - 5;
			if (have + rl > sizeof(hs))
				return SNIFF_NONE;
			memcpy(hs + have, buf + off + 5, rl);
			have += rl;
			if (have >= 4 &&
			    (hs[0] != TLS_CLIENT_HELLO ||
			     4 + ((size_t)hs[1] << 16 | (size_t)get16(hs + 2)) > sizeof(hs)))
				return SNIFF_NONE;
			return SNIFF_MORE;
		}
		if (have + rl > sizeof(hs))
			return SNIFF_NONE;
		memcpy(hs + have, buf + off + 5, rl);
		have += rl;
		off += 5 + rl;
		if (have >= 4) {
			if (hs[0] != TLS_CLIENT_HELLO)
				return SNIFF_NONE;
			need = 4 + ((size_t)hs[1] << 16 | (size_t)get16(hs + 2));
			if (need > sizeof(hs))
				return SNIFF_NONE;
			if (have >= need)
				return tls_hello(hs + 4, need - 4, name);
		}
		if (off >= SNIFF_MAX_BYTES)
			return SNIFF_NONE;
	}
}

/*
 * Could @buf (@len bytes) start an HTTP/1.x request line: a known method,
 * a space, a target, " HTTP/1."? Return: 1 yes (the line is complete), 0
 * not yet known, -1 no.
 */
static int http_request_line(const uint8_t *buf, size_t len)
{
	static const char *const methods[] = { "GET ",	   "POST ",    "HEAD ",	 "PUT ",
					       "DELETE ",  "OPTIONS ", "PATCH ", "TRACE ",
					       "CONNECT ", NULL };
	const uint8_t *eol;
	bool prefix = false;

	for (const char *const *m = methods; *m; m++) {
		size_t ml = strlen(*m), n = len < ml ? len : ml;

		if (!memcmp(buf, *m, n)) {
			prefix = true;
			if (len < ml)
				return 0;
		}
	}
	if (!prefix)
		return -1;
	eol = memchr(buf, '\n', len);
	if (!eol)
		return len < 8192 ? 0 : -1;
	if (eol - buf < 10 || eol - buf >= 8192)
		return -1;
	if (eol[-1] == '\r')
		eol--;
	return eol - buf >= 9 && !memcmp(eol - 8, "HTTP/1.", 7) && eol[-9] == ' ' ? 1 : -1;
}

/* The value of the one Host header, without its port. */
static enum sniff_result http_host(const uint8_t *buf, size_t len, char name[SNIFF_NAME_MAX + 1])
{
	const uint8_t *p = buf, *end = buf + len, *line;
	enum sniff_result r = SNIFF_NONE;
	bool seen = false;

	/* skip the request line */
	while (p < end && *p != '\n')
		p++;
	if (p == end)
		return SNIFF_MORE;
	p++;
	for (;;) {
		const uint8_t *eol = p, *v, *ve;

		while (eol < end && *eol != '\n')
			eol++;
		if (eol == end)
			return SNIFF_MORE;
		line = p;
		p = eol + 1;
		if (eol > line && eol[-1] == '\r')
			eol--;
		if (eol == line)
			return r; /* the empty line: the head is complete */
		if (eol - line < 5 || strncasecmp((const char *)line, "host:", 5))
			continue;
		if (seen)
			return SNIFF_NONE; /* two Host headers */
		seen = true;
		v = line + 5;
		ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (v < ve && *v == '[') {
			r = SNIFF_NONE; /* an IPv6 literal names no DNS name */
			continue;
		}
		for (const uint8_t *c = v; c < ve; c++)
			if (*c == ':') {
				ve = c; /* the port */
				break;
			}
		r = take_name(v, (size_t)(ve - v), name) < 0 ? SNIFF_NONE : SNIFF_NAME;
	}
}

/**
 * sniff_hostname() - which host name do a client's first bytes name
 * @buf:	the client's first bytes (at most SNIFF_MAX_BYTES are looked at)
 * @len:	how many there are so far
 * @name:	on SNIFF_NAME, the name (lowercase, no trailing dot)
 * @kind:	set to what the bytes are (TLS, HTTP, or neither/unknown yet)
 *
 * Context: any; no allocation; safe on any input.
 * Return: SNIFF_MORE (call again with more bytes), SNIFF_NAME or SNIFF_NONE.
 */
enum sniff_result sniff_hostname(const uint8_t *buf, size_t len, char name[SNIFF_NAME_MAX + 1],
				 enum sniff_kind *kind)
{
	*kind = SNIFF_KIND_NONE;
	if (len > SNIFF_MAX_BYTES)
		len = SNIFF_MAX_BYTES;
	if (!len)
		return SNIFF_MORE;
	if (buf[0] == TLS_HANDSHAKE) {
		enum sniff_result r = tls(buf, len, name);

		*kind = SNIFF_KIND_TLS;
		if (r == SNIFF_MORE && len == SNIFF_MAX_BYTES)
			return SNIFF_NONE;
		return r;
	}
	/* HTTP/1.x: METHOD SP TARGET SP HTTP/1.x */
	switch (http_request_line(buf, len)) {
	case -1:
		return SNIFF_NONE;
	case 0:
		return len == SNIFF_MAX_BYTES ? SNIFF_NONE : SNIFF_MORE;
	default:
		break;
	}
	*kind = SNIFF_KIND_HTTP;
	{
		enum sniff_result r = http_host(buf, len, name);

		if (r == SNIFF_MORE && len == SNIFF_MAX_BYTES)
			return SNIFF_NONE;
		return r;
	}
}
