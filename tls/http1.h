/* SPDX-License-Identifier: MIT */
/*
 * http1.h - the guest's plaintext HTTP/1.1 requests, with secret placeholders
 * replaced by their values for the hosts the secrets are for (see http1.c)
 *
 * Context: moat-tls, between the guest's TLS and the server's. Pure code: no
 * I/O, one allocation (http1_init()), no logging.
 */
#ifndef MOAT_TLS_HTTP1_H
#define MOAT_TLS_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP1_MAX_SECRETS     64u	 /* secrets in one configuration */
#define HTTP1_PLACEHOLDER_MAX 128u	 /* bytes in one placeholder */
#define HTTP1_VALUE_MAX	      8192u	 /* bytes in one secret's value */
#define HTTP1_HEAD_DEFAULT    65536u	 /* max_header_bytes when 0 is given */
#define HTTP1_HEAD_MIN	      64u	 /* the smallest max_header_bytes */
#define HTTP1_HEAD_MAX	      (1u << 20) /* the largest max_header_bytes */
#define HTTP1_HOST_MAX	      255u	 /* bytes in a Host header's host */
#define HTTP1_CHUNK_LINE_MAX  4096u	 /* a chunk-size line, extensions and CRLF included */
#define HTTP1_BODY_MAX	      ((1ull << 60) - 1) /* the largest Content-Length or chunk */

/**
 * struct http1_secret - one secret the guest names by its placeholder
 * @placeholder:	what the guest writes: a NUL-terminated string of 1 to
 *			HTTP1_PLACEHOLDER_MAX visible ASCII bytes (0x21-0x7e)
 * @value:		what the server gets instead: @value_len bytes (1 to
 *			HTTP1_VALUE_MAX) a header field value may hold (HTAB, SP,
 *			0x21-0x7e, 0x80-0xff: never CR, LF, NUL or another control)
 * @value_len:		bytes in @value
 * @id:			the caller's name for it: what allowed() and
 *			http1_verdict() say
 */
struct http1_secret {
	const char *placeholder;
	const uint8_t *value;
	size_t value_len;
	int id;
};

/**
 * struct http1_cfg - what an http1 stream substitutes, and where
 * @secrets:		@n_secrets secrets (at most HTTP1_MAX_SECRETS); the
 *			array, its strings and values are the caller's and must
 *			outlive every stream initialised with them
 * @n_secrets:		how many
 * @allowed:		may secret @secret_id be sent to @host? @host is the
 *			request's Host header, lower-cased, without its port or
 *			a trailing dot, an IPv6 literal without its brackets; ""
 *			for an HTTP/1.0 request without Host. The Host header
 *			is the guest's word: the callback must also hold @host
 *			against the name the connection really goes to (its
 *			SNI, the upstream the proxy opened), or a guest could
 *			name an allowed host on a connection to another one.
 *			Called at most once per secret per request, only for
 *			secrets whose placeholder the request head contains.
 *			Needed when @n_secrets > 0.
 * @arg:		@allowed's first argument
 * @max_header_bytes:	the longest request head (request line, fields, the
 *			empty line and any empty lines before the request line)
 *			and, separately, the longest trailer section of a chunked
 *			body; 0: HTTP1_HEAD_DEFAULT; otherwise HTTP1_HEAD_MIN to
 *			HTTP1_HEAD_MAX
 * @tunnel_upgrades:	what follows a CONNECT or Upgrade request when secrets
 *			are configured: false (the safe default) refuses such a
 *			request (HTTP1_ERROR); true lets its head through
 *			(substituted as any other) and then every later byte
 *			untouched and unchecked, as it does when @n_secrets is 0
 */
struct http1_cfg {
	const struct http1_secret *secrets;
	unsigned n_secrets;
	bool (*allowed)(void *arg, int secret_id, const char *host);
	void *arg;
	size_t max_header_bytes;
	bool tunnel_upgrades;
};

/* What became of a stream: http1_verdict(). Anything but OK is final. */
enum http1_verdict {
	HTTP1_OK,	 /* everything so far passed */
	HTTP1_VIOLATION, /* a placeholder in a request to a host its secret is not for */
	HTTP1_ERROR,	 /* malformed or refused HTTP/1.1, or out() failed */
};

/**
 * struct http1_stats - counters for metrics (read them, never write them)
 * @requests:		request heads passed on
 * @rewritten:		of those, heads in which a placeholder was replaced
 * @substitutions:	placeholders replaced, in all heads
 * @tunnels:		CONNECT or Upgrade requests after which the rest was
 *			passed untouched (0 or 1)
 */
struct http1_stats {
	uint64_t requests;
	uint64_t rewritten;
	uint64_t substitutions;
	uint64_t tunnels;
};

/**
 * struct http1 - one guest-to-server byte stream (one TLS connection)
 * @stats:	the counters; everything else is private to http1.c
 */
struct http1 {
	struct http1_cfg cfg;
	uint8_t *buf;	 /* the request head being gathered: cfg.max_header_bytes */
	size_t len;	 /* bytes in @buf */
	size_t line;	 /* where the line being gathered starts in @buf */
	size_t skipped;	 /* empty lines dropped before this request line */
	unsigned state;	 /* what the next byte is (http1.c's enum) */
	uint64_t remain; /* body bytes left: Content-Length or this chunk; a chunk's size */
	size_t count;	 /* bytes of this chunk-size line, or of this trailer section */
	enum http1_verdict verdict;
	int secret_id; /* HTTP1_VIOLATION: whose placeholder */
	int err;       /* what http1_feed() returns once stopped */
	const char *why;
	char host[HTTP1_HOST_MAX + 1]; /* this request's, for allowed() */
	struct http1_stats stats;
};

int http1_init(struct http1 *h, const struct http1_cfg *cfg);
void http1_fini(struct http1 *h);
ssize_t http1_feed(struct http1 *h, const uint8_t *in, size_t len,
		   int (*out)(void *arg, const uint8_t *buf, size_t len), void *out_arg);
enum http1_verdict http1_verdict(const struct http1 *h, int *secret_id, const char **why);

#endif /* MOAT_TLS_HTTP1_H */
