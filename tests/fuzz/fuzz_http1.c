/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http1.c - libFuzzer harness for the request-stream rewriter
 * (tls/http1.c). The first byte chooses the configuration (which hosts
 * allowed() approves: all, none, or one per secret; tunnels; secrets or
 * none; the head limit), the next four seed the cuts; the rest is the
 * guest's stream. It is fed once whole and once cut at random places (and
 * byte by byte when short): the output, the verdict, its reason and the
 * counters must be the same (the rewriter's promise that only the bytes
 * count, not the cuts). With allowed() saying no to everything, no
 * secret's value, plain or percent-encoded, may come out unless the guest
 * wrote it itself.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Short placeholders, one the prefix of another, so that the fuzzer finds them. */
static const uint8_t value1[] = "\x80V1+/ =\x81";
static const uint8_t value2[] = "\x80V2\x81";
static const char value1_enc[] = "%80V1%2B%2F%20%3D%81";
static const char value2_enc[] = "%80V2%81";
static const struct http1_secret secrets[] = {
	{ "$S", value1, sizeof(value1) - 1, 1 },
	{ "$SS", value2, sizeof(value2) - 1, 2 },
};

enum { ALLOW_ALL, ALLOW_NONE, ALLOW_HOST };

static bool allowed(void *arg, int id, const char *host)
{
	switch (*(const int *)arg) {
	case ALLOW_ALL:
		return true;
	case ALLOW_NONE:
		return false;
	default:
		return (id == 1 && !strcmp(host, "a")) || (id == 2 && !strcmp(host, "b"));
	}
}

struct sink {
	uint8_t *buf;
	size_t len, cap;
};

static int sink_out(void *arg, const uint8_t *p, size_t n)
{
	struct sink *s = arg;

	if (!n)
		__builtin_trap(); /* never called with nothing */
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
		if (!s->buf)
			abort();
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

struct result {
	struct sink out;
	ssize_t rc;
	enum http1_verdict verdict;
	int id;
	const char *why;
	struct http1_stats stats;
};

static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Feed @in in pieces: all at once (@seed 0), 1 byte (@seed 1), random cuts. */
static void run(const struct http1_cfg *cfg, const uint8_t *in, size_t len, uint32_t seed,
		struct result *r)
{
	struct http1 h;
	size_t o = 0;

	memset(r, 0, sizeof(*r));
	if (http1_init(&h, cfg))
		__builtin_trap();
	r->rc = 0;
	while (o < len) {
		size_t n = len - o;

		if (seed == 1)
			n = 1;
		else if (seed)
			n = next_rand(&seed) % (next_rand(&seed) % 4 ? 16 : 2048) + 1;
		if (n > len - o)
			n = len - o;
		r->rc = http1_feed(&h, in + o, n, sink_out, &r->out);
		if (r->rc < 0)
			break;
		if (r->rc != (ssize_t)n)
			__builtin_trap(); /* a feed that went on consumes everything */
		o += n;
	}
	if (r->rc >= 0)
		r->rc = (ssize_t)o; /* compared as the whole's single return */
	r->verdict = http1_verdict(&h, &r->id, &r->why);
	if ((r->rc < 0) != (r->verdict != HTTP1_OK) || (r->verdict == HTTP1_OK && r->why))
		__builtin_trap();
	if (r->verdict != HTTP1_OK &&
	    http1_feed(&h, (const uint8_t *)"\r\n", 2, sink_out, &r->out) != r->rc)
		__builtin_trap(); /* stopped for good */
	r->stats = h.stats;
	http1_fini(&h);
}

static bool same(const struct result *a, const struct result *b)
{
	return a->out.len == b->out.len &&
	       (!a->out.len || !memcmp(a->out.buf, b->out.buf, a->out.len)) && a->rc == b->rc &&
	       a->verdict == b->verdict && a->id == b->id && a->why == b->why &&
	       !memcmp(&a->stats, &b->stats, sizeof(a->stats));
}

static bool leaked(const struct result *r, const uint8_t *in, size_t len, const void *v, size_t n)
{
	return r->out.len && memmem(r->out.buf, r->out.len, v, n) && !memmem(in, len, v, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[] = { HTTP1_HEAD_MIN, 256, 4096, 0 };
	struct http1_cfg cfg = { 0 };
	struct result whole, cut, bytes;
	uint32_t seed;
	int mode;

	if (size < 5)
		return 0;
	mode = data[0] % 3;
	cfg.secrets = secrets;
	cfg.n_secrets = data[0] & 0x08 ? 0 : 2;
	cfg.allowed = allowed;
	cfg.arg = &mode;
	cfg.tunnel_upgrades = data[0] & 0x04;
	cfg.max_header_bytes = limits[(data[0] >> 4) & 3];
	seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
	       (uint32_t)data[4] << 24;
	seed |= 2; /* neither whole nor byte by byte */
	data += 5;
	size -= 5;

	run(&cfg, data, size, 0, &whole);
	run(&cfg, data, size, seed, &cut);
	if (!same(&whole, &cut))
		__builtin_trap();
	if (size <= 4096) {
		run(&cfg, data, size, 1, &bytes);
		if (!same(&whole, &bytes))
			__builtin_trap();
		free(bytes.out.buf);
	}
	if (whole.verdict == HTTP1_OK && whole.rc != (ssize_t)size)
		__builtin_trap();
	if (whole.verdict == HTTP1_VIOLATION &&
	    ((whole.id != 1 && whole.id != 2) || mode == ALLOW_ALL || !cfg.n_secrets))
		__builtin_trap();
	if ((mode == ALLOW_NONE || !cfg.n_secrets) &&
	    (whole.stats.substitutions || leaked(&whole, data, size, value1, sizeof(value1) - 1) ||
	     leaked(&whole, data, size, value2, sizeof(value2) - 1) ||
	     leaked(&whole, data, size, value1_enc, strlen(value1_enc)) ||
	     leaked(&whole, data, size, value2_enc, strlen(value2_enc))))
		__builtin_trap();
	if (whole.stats.rewritten > whole.stats.requests ||
	    whole.stats.substitutions < whole.stats.rewritten || whole.stats.tunnels > 1)
		__builtin_trap();
	free(whole.out.buf);
	free(cut.out.buf);
	return 0;
}
