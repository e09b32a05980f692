/* SPDX-License-Identifier: MIT */
/*
 * http1.c - secrets into plaintext HTTP/1.1 requests, and nowhere else
 *
 * Theory of Operation
 * -------------------
 * moat-tls terminates the guest's TLS for the hosts a policy intercepts and
 * hands the plaintext the guest sends, as it comes, to http1_feed(); what
 * comes out of the out() callback is what goes on to the server. The guest
 * knows its secrets only by placeholders (MOAT_SECRET_OPENAI); in a request
 * whose host allowed() approves for a secret, the placeholder is replaced
 * by the secret's value. Everything the guest sends is hostile. Pure code:
 * no I/O, no logging (a value is only ever written to out()), one
 * allocation (the head buffer, in http1_init()); fuzzed by
 * tests/fuzz/fuzz_http1.c.
 *
 * A stream is a sequence of requests (RFC 9112). Each request head
 * (request line, field lines, empty line) is gathered in the buffer, whole,
 * up to max_header_bytes: a longer head is refused. Once complete it is
 * checked, in this order:
 *
 *  - syntax: method a token, one SP, a request-target of visible ASCII, one
 *    SP, HTTP/1.0 to HTTP/1.9 (1.1's rules for all but 1.0); field names
 *    tokens with the colon right after them; values of HTAB, SP, VCHAR and
 *    obs-text. Every line must end in CRLF: a bare LF or a bare CR is
 *    refused, not tolerated (RFC 9112 2.2 lets a recipient accept a bare
 *    LF; an intermediary that accepts what the server does not, or the
 *    other way round, is how requests are smuggled, and real clients send
 *    CRLF). obs-fold, whitespace before the first field, NUL and other
 *    controls are refused. Empty lines before a request line (RFC 9112 2.2)
 *    are dropped, counted against max_header_bytes.
 *  - the host: exactly one Host on HTTP/1.1 (none, or two even if equal, is
 *    refused); its value lower-cased, port and trailing dot dropped, an IPv6
 *    literal taken out of its brackets. An absolute-form request-target's
 *    authority must name the same host (the server would go by it, RFC 9112
 *    3.2.2), and has no userinfo; "*" only with OPTIONS.
 *  - the framing (RFC 9112 6): Transfer-Encoding, a list of tokens whose
 *    last, and only last, is chunked; anything else is refused, so is
 *    Transfer-Encoding on HTTP/1.0 and together with Content-Length.
 *    Content-Length is 1 to 18 digits (below HTTP1_BODY_MAX); several equal
 *    ones pass, differing ones are refused. Field names that differ from
 *    these two only by '_' for '-' are refused too (some servers fold
 *    them). Neither: no body.
 *  - placeholders: every placeholder anywhere in the head (request line,
 *    field names, values, Host) makes allowed(secret, host) be asked; one
 *    "no" is HTTP1_VIOLATION for that secret and none of the head goes out.
 *    The Host is only what the guest wrote: the caller's allowed() also
 *    holds it against the name the connection goes to (its SNI), or a
 *    guest could name a secret's host on a connection to another one.
 *  - CONNECT and Upgrade (a websocket): what follows is not HTTP/1.1, and
 *    no placeholder in it could be checked. With no secret configured, or
 *    cfg->tunnel_upgrades, the head goes on (substituted as any other) and
 *    every later byte passes untouched; otherwise such a request is
 *    refused (HTTP1_ERROR) before anything of it goes out.
 *  - TRACE: the server answers with the request it received, so a TRACE
 *    whose head holds a placeholder (that would be substituted) is refused
 *    (HTTP1_ERROR): the value would come back to the guest.
 *
 * Then the head goes out, rewritten: placeholders are replaced in the field
 * values (not the Host's, which is the host decided on, and not the field
 * names) and in the query (after the first '?' of an origin- or
 * absolute-form target), percent-encoded there: every byte of the value
 * but ALPHA DIGIT - . _ ~ as %XX, so that the server's decoding of the
 * query gives back the value. Each placeholder found is replaced once,
 * scanning left to right (overlapping placeholders: the one that starts
 * first, of those the longest). Nothing else changes: a head without
 * placeholders goes out byte for byte, in one out() call.
 *
 * Bodies pass through as they come, never buffered, never rewritten and not
 * inspected: a placeholder in a body (or in a trailer, or after a tunnel)
 * is neither replaced nor a violation. That is a known limit, and safe for
 * the value: it goes only where this file puts it, never into a body. Their
 * framing is followed exactly, so that the next pipelined request's head
 * is found where the server will find it: Content-Length bytes; or chunks,
 * each a size line (hex digits below HTTP1_BODY_MAX, then nothing, or
 * BWS ';' and extensions of field-value bytes, then CRLF; at most
 * HTTP1_CHUNK_LINE_MAX bytes), the data and CRLF, the last chunk then
 * trailer fields (checked as field lines, at most max_header_bytes in all)
 * and the empty line.
 *
 * The first problem stops the stream for good: http1_verdict() says which
 * and why (a static string), and the caller ends the connection (with a
 * 403 for a violation, if it likes). What went out before stays out: body
 * bytes before the offending byte, earlier requests. The output and the
 * verdict are a function of the byte stream alone, not of how it was cut
 * into feeds (the fuzzer's differential check); only the cuts between
 * out() calls differ.
 *
 * Cost: each head byte is copied once, scanned for line ends once, parsed
 * once, and searched once per secret (memmem, linear) for the check and
 * once more per secret present for the rewrite.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls/http1.h"

/* What the next byte is. */
enum {
	ST_HEAD,	  /* part of a request head: gathered in buf */
	ST_BODY,	  /* Content-Length body: remain bytes left */
	ST_CHUNK_SIZE0,	  /* a chunk-size line's first hex digit */
	ST_CHUNK_SIZE,	  /* more hex digits, or what ends them */
	ST_CHUNK_BWS,	  /* whitespace after the size: ';' must follow */
	ST_CHUNK_EXT,	  /* chunk extensions, up to CR */
	ST_CHUNK_LF,	  /* the LF ending a chunk-size line */
	ST_CHUNK_DATA,	  /* remain bytes of chunk data */
	ST_CHUNK_DATA_CR, /* the CR after the data */
	ST_CHUNK_DATA_LF, /* the LF after the data */
	ST_TRAILER,	  /* a trailer line's first byte (CR: the empty line) */
	ST_TRAILER_NAME,  /* a trailer field's name, up to ':' */
	ST_TRAILER_VALUE, /* a trailer field's value, up to CR */
	ST_TRAILER_LF,	  /* the LF ending a trailer field line */
	ST_END_LF,	  /* the LF of the empty line that ends the trailers */
	ST_TUNNEL,	  /* after CONNECT or Upgrade: everything, untouched */
	ST_STOPPED,	  /* a verdict other than HTTP1_OK */
};

#define CL_DIGITS   18 /* 10^18 - 1 < HTTP1_BODY_MAX */
#define PORT_DIGITS 5

typedef int (*out_fn)(void *arg, const uint8_t *buf, size_t len);

/* What the check of a head found, offsets into buf. */
struct head {
	size_t target, target_end;	 /* the request-target */
	size_t query;			 /* after its '?'; target_end if none (or not looked at) */
	size_t authority, authority_end; /* absolute-form */
	size_t fields;			 /* the first field line */
	size_t host, host_end;		 /* the Host field's value, trimmed */
	unsigned hosts;
	int minor; /* HTTP/1.minor */
	bool connect, absolute, upgrade, trace;
	bool cl, te, chunked; /* chunked: the last coding so far was chunked */
	uint64_t length;      /* Content-Length */
};

/* Where the rewrite of a head stands. */
struct emitter {
	struct http1 *h;
	out_fn out;
	void *arg;
	size_t run; /* buf from here on is not out yet */
	uint64_t subs;
	const unsigned *present; /* secrets whose placeholders the head holds */
	unsigned np;
};

static int stop(struct http1 *h, enum http1_verdict v, int err, const char *why)
{
	if (h->verdict == HTTP1_OK) {
		h->verdict = v;
		h->err = err;
		h->why = why;
	}
	h->state = ST_STOPPED;
	return h->err;
}

static int bad(struct http1 *h, const char *why)
{
	return stop(h, HTTP1_ERROR, -EBADMSG, why);
}

static int emit(struct http1 *h, out_fn out, void *arg, const uint8_t *p, size_t n)
{
	int rc;

	if (!n)
		return 0;
	rc = out(arg, p, n);
	if (rc < 0)
		return stop(h, HTTP1_ERROR, rc, "output failed");
	return 0;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(uint8_t c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* tchar (RFC 9110 5.6.2) */
static bool is_tchar(uint8_t c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	return is_digit(c) || is_alpha(c) || (c && memchr(extra, c, sizeof(extra) - 1));
}

/* A field value's bytes: HTAB, SP, VCHAR, obs-text. */
static bool is_vbyte(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static int hex_value(uint8_t c)
{
	if (is_digit(c))
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

static char lower(uint8_t c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

/* Is the field name @p, @n bytes, @name (lower case)? */
static bool name_is(const uint8_t *p, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp((const char *)p, name, n);
}

/* Does @p, @n bytes, read @name (lower case) with '_' for some '-'? */
static bool name_like(const uint8_t *p, size_t n, const char *name)
{
	if (n != strlen(name))
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(p[i]) != name[i] && !(p[i] == '_' && name[i] == '-'))
			return false;
	return true;
}

/*
 * The host of a Host value or an authority, @n bytes at @s, into @host:
 * lower-cased, without port and trailing dot; an IPv6 literal without its
 * brackets. Return: NULL, or why not.
 */
static const char *host_norm(const uint8_t *s, size_t n, char host[HTTP1_HOST_MAX + 1])
{
	size_t i = 0, o = 0;

	if (n && s[0] == '[') {
		const uint8_t *rb = memchr(s, ']', n);
		bool colon = false;
		size_t end;

		if (!rb)
			return "bad IPv6 literal in the host";
		end = (size_t)(rb - s);
		if (end - 1 > HTTP1_HOST_MAX)
			return "host too long";
		for (i = 1; i < end; i++) {
			if (s[i] == ':')
				colon = true;
			else if (hex_value(s[i]) < 0 && s[i] != '.')
				return "bad IPv6 literal in the host";
			host[o++] = lower(s[i]);
		}
		if (!colon)
			return "bad IPv6 literal in the host";
		i = end + 1;
	} else {
		for (; i < n && s[i] != ':'; i++) {
			if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-' && s[i] != '.' &&
			    s[i] != '_')
				return "bad host";
			if (o == HTTP1_HOST_MAX)
				return "host too long";
			host[o++] = lower(s[i]);
		}
		if (o && host[o - 1] == '.')
			o--;
		if (i && !o)
			return "bad host";
	}
	if (i < n) {
		if (s[i] != ':' || n - i - 1 > PORT_DIGITS)
			return "bad port in the host";
		for (i++; i < n; i++)
			if (!is_digit(s[i]))
				return "bad port in the host";
	}
	host[o] = '\0';
	return NULL;
}

/*
 * Take head bytes from @p, @n of them, into the buffer, up to the end of the
 * head. Return: bytes taken; *done once the head is complete; on a problem
 * the stream is stopped.
 */
static size_t head_take(struct http1 *h, const uint8_t *p, size_t n, bool *done)
{
	size_t used = 0;

	*done = false;
	while (used < n) {
		const uint8_t *lf = memchr(p + used, '\n', n - used);
		size_t take = lf ? (size_t)(lf - (p + used)) + 1 : n - used;
		size_t ll;

		if (take > h->cfg.max_header_bytes - h->skipped - h->len) {
			bad(h, "request head too long");
			return used;
		}
		memcpy(h->buf + h->len, p + used, take);
		h->len += take;
		used += take;
		if (!lf)
			break;
		ll = h->len - h->line; /* the line just ended, LF included */
		if (ll < 2 || h->buf[h->len - 2] != '\r') {
			bad(h, "line not ended by CRLF");
			return used;
		}
		if (ll == 2 && h->line == 0) {
			h->skipped += 2; /* an empty line before the request line */
			h->len = 0;
		} else if (ll == 2) {
			*done = true;
			break;
		} else {
			h->line = h->len;
		}
	}
	return used;
}

/* The line that starts at @s: its CR's offset (every line in buf has one). */
static size_t line_end(const struct http1 *h, size_t s)
{
	const uint8_t *lf = memchr(h->buf + s, '\n', h->len - s);

	return lf ? (size_t)(lf - h->buf) - 1 : h->len;
}

static const char *check_target(const uint8_t *b, struct head *hd, bool options)
{
	size_t t = hd->target, z = hd->target_end, i;
	const uint8_t *q;

	hd->query = z;
	if (hd->connect)
		return NULL; /* authority-form: a tunnel, or refused */
	if (b[t] == '/') {
		q = memchr(b + t, '?', z - t);
		if (q)
			hd->query = (size_t)(q - b) + 1;
		return NULL;
	}
	if (z - t == 1 && b[t] == '*')
		return options ? NULL : "asterisk-form request-target without OPTIONS";
	/* absolute-form: scheme "://" authority [path-abempty] ["?" query] */
	if (!is_alpha(b[t]))
		return "bad request-target";
	for (i = t + 1; i < z && b[i] != ':'; i++)
		if (!is_alpha(b[i]) && !is_digit(b[i]) && b[i] != '+' && b[i] != '-' && b[i] != '.')
			return "bad request-target";
	if (z - i < 3 || memcmp(b + i, "://", 3))
		return "bad request-target";
	hd->absolute = true;
	hd->authority = i + 3;
	for (i = hd->authority; i < z && b[i] != '/' && b[i] != '?' && b[i] != '#'; i++)
		if (b[i] == '@')
			return "userinfo in the request-target";
	hd->authority_end = i;
	q = memchr(b + i, '?', z - i);
	if (q)
		hd->query = (size_t)(q - b) + 1;
	return NULL;
}

static const char *check_request_line(const struct http1 *h, struct head *hd)
{
	const uint8_t *b = h->buf;
	size_t e = line_end(h, 0), i = 0, t;
	bool options;

	while (i < e && is_tchar(b[i]))
		i++;
	if (!i || i == e || b[i] != ' ')
		return "bad method";
	hd->connect = i == 7 && !memcmp(b, "CONNECT", 7);
	hd->trace = i == 5 && !memcmp(b, "TRACE", 5);
	options = i == 7 && !memcmp(b, "OPTIONS", 7);
	t = ++i;
	while (i < e && b[i] > 0x20 && b[i] < 0x7f)
		i++;
	if (i == t || i == e || b[i] != ' ')
		return "bad request-target";
	hd->target = t;
	hd->target_end = i++;
	if (e - i != 8 || memcmp(b + i, "HTTP/1.", 7) || !is_digit(b[i + 7]))
		return "not HTTP/1.x";
	hd->minor = b[i + 7] - '0';
	hd->fields = e + 2;
	return check_target(b, hd, options);
}

/*
 * A field line [@s, @e): its name ends at *@n (the colon), its value is
 * [*@v, *@ve), OWS trimmed. Only after check_field() passed it.
 */
static void field_split(const uint8_t *b, size_t s, size_t e, size_t *n, size_t *v, size_t *ve)
{
	const uint8_t *colon = memchr(b + s, ':', e - s);

	*n = colon ? (size_t)(colon - b) : e;
	*v = *n < e ? *n + 1 : e;
	while (*v < e && is_ows(b[*v]))
		(*v)++;
	*ve = e;
	while (*ve > *v && is_ows(b[*ve - 1]))
		(*ve)--;
}

static const char *check_length(const uint8_t *b, size_t v, size_t ve, struct head *hd)
{
	uint64_t x = 0;

	if (v == ve || ve - v > CL_DIGITS)
		return "bad Content-Length";
	for (size_t i = v; i < ve; i++) {
		if (!is_digit(b[i]))
			return "bad Content-Length";
		x = x * 10 + (uint64_t)(b[i] - '0');
	}
	if (hd->cl && x != hd->length)
		return "differing Content-Length values";
	hd->cl = true;
	hd->length = x;
	return NULL;
}

static const char *check_coding(const uint8_t *b, size_t v, size_t ve, struct head *hd)
{
	size_t p = v;

	hd->te = true;
	for (;;) {
		size_t start;

		while (p < ve && is_ows(b[p]))
			p++;
		start = p;
		while (p < ve && is_tchar(b[p]))
			p++;
		if (p == start)
			return "bad Transfer-Encoding";
		if (hd->chunked)
			return "chunked is not the last transfer coding";
		hd->chunked = p - start == 7 && !strncasecmp((const char *)b + start, "chunked", 7);
		while (p < ve && is_ows(b[p]))
			p++;
		if (p == ve)
			return NULL;
		if (b[p] != ',')
			return "bad Transfer-Encoding";
		p++;
	}
}

static const char *check_field(const uint8_t *b, size_t s, size_t e, struct head *hd)
{
	size_t n = s, v, ve;

	while (n < e && is_tchar(b[n]))
		n++;
	if (n == s && is_ows(b[s]))
		return "obs-fold or whitespace before a field line";
	if (n == s || n == e || b[n] != ':')
		return "bad field name";
	for (size_t i = n + 1; i < e; i++)
		if (!is_vbyte(b[i]))
			return b[i] ? "bad byte in a field value" : "NUL in a field value";
	field_split(b, s, e, &n, &v, &ve);
	if (name_is(b + s, n - s, "host")) {
		if (++hd->hosts > 1)
			return "more than one Host";
		hd->host = v;
		hd->host_end = ve;
	} else if (name_is(b + s, n - s, "content-length")) {
		return check_length(b, v, ve, hd);
	} else if (name_is(b + s, n - s, "transfer-encoding")) {
		return check_coding(b, v, ve, hd);
	} else if (name_is(b + s, n - s, "upgrade")) {
		hd->upgrade = true;
	} else if (name_like(b + s, n - s, "content-length") ||
		   name_like(b + s, n - s, "transfer-encoding")) {
		return "look-alike of a framing field";
	}
	return NULL;
}

/* The whole head in buf, but for placeholders. Return: NULL, or why not. */
static const char *check_head(struct http1 *h, struct head *hd)
{
	const uint8_t *b = h->buf;
	const char *why;
	size_t s, e;

	why = check_request_line(h, hd);
	if (why)
		return why;
	for (s = hd->fields; (e = line_end(h, s)) > s && e < h->len; s = e + 2) {
		why = check_field(b, s, e, hd);
		if (why)
			return why;
	}
	if (e >= h->len)
		return "head without its empty line"; /* cannot be: head_take() */
	if (hd->minor >= 1 && !hd->hosts)
		return "no Host";
	if (hd->te && hd->minor == 0)
		return "Transfer-Encoding in an HTTP/1.0 request";
	if (hd->te && hd->cl)
		return "Content-Length and Transfer-Encoding";
	if (hd->te && !hd->chunked)
		return "Transfer-Encoding does not end in chunked";
	h->host[0] = '\0';
	if (hd->hosts) {
		why = host_norm(b + hd->host, hd->host_end - hd->host, h->host);
		if (why)
			return why;
	}
	if (hd->absolute) {
		char auth[HTTP1_HOST_MAX + 1];

		why = host_norm(b + hd->authority, hd->authority_end - hd->authority, auth);
		if (why)
			return why;
		if (!hd->hosts)
			memcpy(h->host, auth, sizeof(auth));
		else if (strcmp(auth, h->host))
			return "request-target's authority is not the Host";
	}
	return NULL;
}

/* Where the placeholder @ph (@n bytes) is first in buf's [@a, @z): @z if nowhere. */
static size_t find(const uint8_t *b, size_t a, size_t z, const char *ph, size_t n)
{
	const uint8_t *p = memmem(b + a, z - a, ph, n);

	return p ? (size_t)(p - b) : z;
}

/* A value, percent-encoded for a query: all but ALPHA DIGIT - . _ ~ as %XX. */
static int emit_encoded(struct emitter *em, const uint8_t *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	uint8_t tmp[192];
	size_t o = 0;
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		uint8_t c = v[i];

		if (is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			tmp[o++] = c;
		} else {
			tmp[o++] = '%';
			tmp[o++] = (uint8_t)hex[c >> 4];
			tmp[o++] = (uint8_t)hex[c & 15];
		}
		if (o > sizeof(tmp) - 3) {
			rc = emit(em->h, em->out, em->arg, tmp, o);
			o = 0;
		}
	}
	if (!rc)
		rc = emit(em->h, em->out, em->arg, tmp, o);
	explicit_bzero(tmp, sizeof(tmp)); /* it held the value */
	return rc;
}

/* Replace the placeholders in buf's [@a, @z), sending out what precedes each. */
static int subst(struct emitter *em, size_t a, size_t z, bool query)
{
	const struct http1_secret *sec = em->h->cfg.secrets;
	const uint8_t *b = em->h->buf;
	size_t next[HTTP1_MAX_SECRETS], plen[HTTP1_MAX_SECRETS];
	unsigned j;

	for (j = 0; j < em->np; j++) {
		plen[j] = strlen(sec[em->present[j]].placeholder);
		next[j] = find(b, a, z, sec[em->present[j]].placeholder, plen[j]);
	}
	for (;;) {
		const struct http1_secret *s;
		unsigned best = em->np;
		size_t at, pos;
		int rc;

		for (j = 0; j < em->np; j++)
			if (next[j] < z && (best == em->np || next[j] < next[best] ||
					    (next[j] == next[best] && plen[j] > plen[best])))
				best = j;
		if (best == em->np)
			return 0;
		s = &sec[em->present[best]];
		at = next[best];
		rc = emit(em->h, em->out, em->arg, b + em->run, at - em->run);
		if (!rc)
			rc = query ? emit_encoded(em, s->value, s->value_len) :
				     emit(em->h, em->out, em->arg, s->value, s->value_len);
		if (rc)
			return rc;
		pos = em->run = at + plen[best];
		em->subs++;
		for (j = 0; j < em->np; j++)
			if (next[j] < pos)
				next[j] = find(b, pos, z, sec[em->present[j]].placeholder, plen[j]);
	}
}

/* Send the checked head out, placeholders replaced. */
static int emit_head(struct emitter *em, const struct head *hd)
{
	const uint8_t *b = em->h->buf;
	size_t s, e, n, v, ve;
	int rc = 0;

	if (em->np && hd->query < hd->target_end)
		rc = subst(em, hd->query, hd->target_end, true);
	for (s = hd->fields; em->np && !rc && (e = line_end(em->h, s)) > s && e < em->h->len;
	     s = e + 2) {
		field_split(b, s, e, &n, &v, &ve);
		if (!name_is(b + s, n - s, "host"))
			rc = subst(em, v, ve, false);
	}
	if (rc)
		return rc;
	return emit(em->h, em->out, em->arg, b + em->run, em->h->len - em->run);
}

/* A complete head is in buf: check it, send it out, and say what follows. */
static int head_done(struct http1 *h, out_fn out, void *arg)
{
	const struct http1_cfg *cfg = &h->cfg;
	unsigned present[HTTP1_MAX_SECRETS], np = 0;
	struct head hd = { 0 };
	struct emitter em;
	const char *why;
	int rc;

	why = check_head(h, &hd);
	if (why)
		return bad(h, why);
	for (unsigned k = 0; k < cfg->n_secrets; k++) {
		const struct http1_secret *s = &cfg->secrets[k];

		if (!memmem(h->buf, h->len, s->placeholder, strlen(s->placeholder)))
			continue;
		if (!cfg->allowed(cfg->arg, s->id, h->host)) {
			h->secret_id = s->id;
			return stop(h, HTTP1_VIOLATION, -EACCES,
				    "placeholder in a request to a host its secret is not for");
		}
		present[np++] = k;
	}
	if ((hd.connect || hd.upgrade) && cfg->n_secrets && !cfg->tunnel_upgrades)
		return bad(h, "CONNECT or Upgrade with secrets configured");
	if (hd.trace && np)
		return bad(h, "TRACE with a placeholder: the server would echo the value back");

	em = (struct emitter){ .h = h, .out = out, .arg = arg, .present = present, .np = np };
	rc = emit_head(&em, &hd);
	if (rc)
		return rc;
	h->stats.requests++;
	h->stats.substitutions += em.subs;
	if (em.subs)
		h->stats.rewritten++;

	h->len = h->line = h->skipped = 0;
	h->remain = 0;
	if (hd.connect || hd.upgrade) {
		h->stats.tunnels++;
		h->state = ST_TUNNEL;
	} else if (hd.chunked) {
		h->count = 0;
		h->state = ST_CHUNK_SIZE0;
	} else if (hd.cl && hd.length) {
		h->remain = hd.length;
		h->state = ST_BODY;
	} else {
		h->state = ST_HEAD;
	}
	return 0;
}

/* One byte of a chunked body's framing. Return: NULL, or why it is wrong. */
static const char *chunk_byte(struct http1 *h, uint8_t c)
{
	int d;

	switch (h->state) {
	case ST_CHUNK_SIZE0:
	case ST_CHUNK_SIZE:
		d = hex_value(c);
		if (d >= 0) {
			if (h->remain > HTTP1_BODY_MAX >> 4)
				return "chunk size too large";
			h->remain = h->remain << 4 | (uint64_t)d;
			h->state = ST_CHUNK_SIZE;
		} else if (h->state == ST_CHUNK_SIZE0) {
			return "bad chunk size";
		} else if (c == ';') {
			h->state = ST_CHUNK_EXT;
		} else if (is_ows(c)) {
			h->state = ST_CHUNK_BWS;
		} else if (c == '\r') {
			h->state = ST_CHUNK_LF;
		} else {
			return "bad chunk size";
		}
		break;
	case ST_CHUNK_BWS:
		if (c == ';')
			h->state = ST_CHUNK_EXT;
		else if (!is_ows(c))
			return "bad chunk extension";
		break;
	case ST_CHUNK_EXT:
		if (c == '\r')
			h->state = ST_CHUNK_LF;
		else if (!is_vbyte(c))
			return "bad chunk extension";
		break;
	case ST_CHUNK_LF:
		if (c != '\n')
			return "chunk-size line not ended by CRLF";
		h->count = 0;
		h->state = h->remain ? ST_CHUNK_DATA : ST_TRAILER;
		return NULL;
	case ST_CHUNK_DATA_CR:
		if (c != '\r')
			return "chunk data not followed by CRLF";
		h->state = ST_CHUNK_DATA_LF;
		return NULL;
	case ST_CHUNK_DATA_LF:
		if (c != '\n')
			return "chunk data not followed by CRLF";
		h->count = 0;
		h->remain = 0;
		h->state = ST_CHUNK_SIZE0;
		return NULL;
	case ST_TRAILER:
		if (c == '\r')
			h->state = ST_END_LF;
		else if (is_ows(c))
			return "obs-fold in the trailers";
		else if (is_tchar(c))
			h->state = ST_TRAILER_NAME;
		else
			return "bad trailer field name";
		break;
	case ST_TRAILER_NAME:
		if (c == ':')
			h->state = ST_TRAILER_VALUE;
		else if (!is_tchar(c))
			return "bad trailer field name";
		break;
	case ST_TRAILER_VALUE:
		if (c == '\r')
			h->state = ST_TRAILER_LF;
		else if (!is_vbyte(c))
			return c ? "bad byte in a trailer field value" :
				   "NUL in a trailer field value";
		break;
	case ST_TRAILER_LF:
		if (c != '\n')
			return "trailer field line not ended by CRLF";
		h->state = ST_TRAILER;
		break;
	case ST_END_LF:
		if (c != '\n')
			return "trailers not ended by CRLF";
		h->state = ST_HEAD; /* the request is complete */
		return NULL;
	default:
		return "internal: not in a chunked body";
	}
	/* The size line and the trailer section are bounded; data is not counted. */
	if (++h->count > (h->state >= ST_TRAILER ? h->cfg.max_header_bytes : HTTP1_CHUNK_LINE_MAX))
		return h->state >= ST_TRAILER ? "trailers too long" : "chunk-size line too long";
	return NULL;
}

/**
 * http1_init() - a stream, ready for its first request
 * @h:		the state, the caller's (on its stack, in a pool)
 * @cfg:	the secrets and limits; copied, but the secrets it points to
 *		are not (they must outlive @h)
 *
 * Allocates the head buffer, cfg->max_header_bytes bytes, the only
 * allocation this file makes for @h. The secrets are checked here, so that
 * no value can break the head it goes into: see struct http1_secret.
 *
 * Return: 0; -EINVAL for a configuration outside the limits in http1.h (a
 * placeholder or value too long, empty or with bytes it may not hold, too
 * many secrets, no allowed() with secrets, max_header_bytes out of range);
 * -ENOMEM. On failure @h is a stopped stream: http1_feed() refuses it,
 * http1_fini() is harmless.
 */
int http1_init(struct http1 *h, const struct http1_cfg *cfg)
{
	size_t max = cfg->max_header_bytes ? cfg->max_header_bytes : HTTP1_HEAD_DEFAULT;

	memset(h, 0, sizeof(*h));
	h->secret_id = -1;
	stop(h, HTTP1_ERROR, -EINVAL, "not initialised");
	if (max < HTTP1_HEAD_MIN || max > HTTP1_HEAD_MAX || cfg->n_secrets > HTTP1_MAX_SECRETS)
		return -EINVAL;
	if (cfg->n_secrets && (!cfg->secrets || !cfg->allowed))
		return -EINVAL;
	for (unsigned k = 0; k < cfg->n_secrets; k++) {
		const struct http1_secret *s = &cfg->secrets[k];
		size_t n;

		if (!s->placeholder || !s->value || !s->value_len || s->value_len > HTTP1_VALUE_MAX)
			return -EINVAL;
		n = strnlen(s->placeholder, HTTP1_PLACEHOLDER_MAX + 1);
		if (!n || n > HTTP1_PLACEHOLDER_MAX)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if (s->placeholder[i] <= 0x20 || s->placeholder[i] >= 0x7f)
				return -EINVAL;
		for (size_t i = 0; i < s->value_len; i++)
			if (!is_vbyte(s->value[i]))
				return -EINVAL;
	}
	h->buf = malloc(max);
	if (!h->buf)
		return -ENOMEM;
	h->cfg = *cfg;
	h->cfg.max_header_bytes = max;
	h->verdict = HTTP1_OK;
	h->err = 0;
	h->why = NULL;
	h->state = ST_HEAD;
	return 0;
}

/**
 * http1_fini() - free a stream's head buffer
 * @h:	the state, from http1_init() (successful or not)
 *
 * The buffer is wiped first: it held the guest's requests. @h stays
 * stopped (http1_feed() refuses it); http1_verdict() still says what it
 * said.
 */
void http1_fini(struct http1 *h)
{
	if (h->buf) {
		explicit_bzero(h->buf, h->cfg.max_header_bytes);
		free(h->buf);
		h->buf = NULL;
	}
	h->state = ST_STOPPED; /* the verdict stays what it was */
	if (!h->err)
		h->err = -EINVAL;
}

/**
 * http1_feed() - the guest's next plaintext bytes, rewritten to out()
 * @h:		the stream
 * @in:		the bytes, @len of them (at most SSIZE_MAX), as they came: a
 *		request may be cut anywhere between feeds
 * @len:	how many
 * @out:	called with the bytes for the server, in order, 0 or more times
 *		per feed, never with 0 bytes; @buf is only valid during the
 *		call (it may be a secret's value: the callback copies it into
 *		the TLS stream and nowhere else). A negative return stops the
 *		stream (HTTP1_ERROR, "output failed").
 * @out_arg:	@out's first argument
 *
 * Head bytes are held until the head is complete, then go out rewritten;
 * body bytes go out by the end of the feed that brought them. What out()
 * gets, and the verdict, depend only on the bytes, not on the cuts.
 *
 * Return: @len: all consumed, still HTTP1_OK. Once stopped, a negative
 * errno, the same for every later call, which consumes nothing:
 * -EACCES (HTTP1_VIOLATION), -EBADMSG (HTTP1_ERROR: the guest broke
 * HTTP/1.1 or asked for what is refused), out()'s own negative return
 * (HTTP1_ERROR), -EINVAL (a stream that http1_init() refused, or that
 * http1_fini() ended while HTTP1_OK; or @len above SSIZE_MAX, which does
 * not stop the stream). A stopped stream cannot resume: the caller closes
 * the connection. The bytes of a stopped feed are not reported as
 * consumed, because nothing can be done with the rest.
 */
ssize_t http1_feed(struct http1 *h, const uint8_t *in, size_t len,
		   int (*out)(void *arg, const uint8_t *buf, size_t len), void *out_arg)
{
	size_t i = 0, run = 0; /* in[run, i): body bytes checked, not yet out */
	const char *why;
	bool done;
	size_t n;
	int rc;

	if (h->state == ST_STOPPED)
		return h->err;
	if (len > SSIZE_MAX)
		return -EINVAL;
	if (!len)
		return 0;
	while (i < len) {
		switch (h->state) {
		case ST_HEAD:
			rc = emit(h, out, out_arg, in + run, i - run);
			if (rc)
				return rc;
			i += head_take(h, in + i, len - i, &done);
			run = i;
			if (h->state == ST_STOPPED)
				return h->err;
			if (done) {
				rc = head_done(h, out, out_arg);
				if (rc)
					return rc;
			}
			break;
		case ST_BODY:
		case ST_CHUNK_DATA:
			n = h->remain < len - i ? (size_t)h->remain : len - i;
			i += n;
			h->remain -= n;
			if (!h->remain)
				h->state = h->state == ST_BODY ? ST_HEAD : ST_CHUNK_DATA_CR;
			break;
		case ST_TUNNEL:
			i = len;
			break;
		default:
			why = chunk_byte(h, in[i]);
			if (why) {
				rc = emit(h, out, out_arg, in + run, i - run);
				return rc ? rc : bad(h, why);
			}
			i++;
			break;
		}
	}
	rc = emit(h, out, out_arg, in + run, i - run);
	return rc ? rc : (ssize_t)len;
}

/**
 * http1_verdict() - what became of a stream
 * @h:		the stream
 * @secret_id:	if not NULL, the id of the secret whose placeholder was in a
 *		request to a host it is not for (HTTP1_VIOLATION), else -1
 * @why:	if not NULL, a static string saying what was wrong (never a
 *		value, nor anything the guest sent); NULL while HTTP1_OK
 *
 * Return: HTTP1_OK while everything passed; HTTP1_VIOLATION or
 * HTTP1_ERROR, for good, once the stream stopped.
 */
enum http1_verdict http1_verdict(const struct http1 *h, int *secret_id, const char **why)
{
	if (secret_id)
		*secret_id = h->verdict == HTTP1_VIOLATION ? h->secret_id : -1;
	if (why)
		*why = h->why;
	return h->verdict;
}
