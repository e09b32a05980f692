/* SPDX-License-Identifier: MIT */
/*
 * test_http1.c - tls/http1.c: secret placeholders replaced in the guest's
 * HTTP/1.1 requests for the hosts they are for, a violation anywhere else,
 * and the framing followed exactly (request smuggling refused)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tls/http1.h"

#define OPENAI 7
#define GITHUB 9

static const uint8_t openai_value[] = "sk-REAL-openai-0123";
static const uint8_t github_value[] = "ghp_x+y/z= &";

static const struct http1_secret secrets[] = {
	{ "MOAT_SECRET_OPENAI", openai_value, sizeof(openai_value) - 1, OPENAI },
	{ "MOAT_SECRET_GITHUB", github_value, sizeof(github_value) - 1, GITHUB },
};

/* The hosts allowed() was last asked about, and how often. */
static char asked_host[HTTP1_HOST_MAX + 1];
static unsigned asked;

static bool allowed(void *arg, int id, const char *host)
{
	(void)arg;
	asked++;
	strcpy(asked_host, host);
	return (id == OPENAI && !strcmp(host, "api.openai.com")) ||
	       (id == GITHUB && !strcmp(host, "api.github.com"));
}

struct sink {
	uint8_t *buf;
	size_t len, cap;
	unsigned calls;
	int fail; /* nonzero: out() returns this */
};

static int sink_out(void *arg, const uint8_t *p, size_t n)
{
	struct sink *s = arg;

	cr_assert_gt(n, 0, "out() called with 0 bytes");
	if (s->fail)
		return s->fail;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
		cr_assert_not_null(s->buf);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->calls++;
	return 0;
}

static struct http1_cfg cfg_default(void)
{
	return (struct http1_cfg){
		.secrets = secrets,
		.n_secrets = 2,
		.allowed = allowed,
		.max_header_bytes = 4096,
	};
}

/* Feed @in in pieces of @step bytes; the last return. */
static ssize_t feed(struct http1 *h, const char *in, size_t len, size_t step, struct sink *s)
{
	ssize_t rc = 0;

	for (size_t o = 0; o < len; o += step) {
		size_t n = len - o < step ? len - o : step;

		rc = http1_feed(h, (const uint8_t *)in + o, n, sink_out, s);
		if (rc < 0)
			return rc;
		cr_assert_eq(rc, (ssize_t)n);
	}
	return rc;
}

/* Run @in through a fresh stream with @cfg; the output in @s, the result returned. */
static ssize_t run_cfg(const struct http1_cfg *cfg, const char *in, size_t step, struct sink *s,
		       struct http1 *h)
{
	cr_assert_eq(http1_init(h, cfg), 0);
	return feed(h, in, strlen(in), step, s);
}

static ssize_t run(const char *in, size_t step, struct sink *s, struct http1 *h)
{
	struct http1_cfg cfg = cfg_default();

	return run_cfg(&cfg, in, step, s, h);
}

static void assert_out(const struct sink *s, const char *want)
{
	cr_assert_eq(s->len, strlen(want), "output length %zu, want %zu: %.*s", s->len,
		     strlen(want), (int)s->len, s->buf ? (const char *)s->buf : "");
	cr_assert(!s->len || !memcmp(s->buf, want, s->len), "output differs: %.*s", (int)s->len,
		  (const char *)s->buf);
}

/* @in must be refused (HTTP1_ERROR), whatever the cut, and @why must contain @what. */
static void assert_error(const char *in, const char *what)
{
	for (size_t step = 1; step <= strlen(in); step += strlen(in) - 1 ? strlen(in) - 1 : 1) {
		struct sink s = { 0 };
		struct http1 h;
		const char *why;
		int id;

		cr_assert_eq(run(in, step, &s, &h), -EBADMSG, "not refused (step %zu): %s", step,
			     in);
		cr_assert_eq(http1_verdict(&h, &id, &why), HTTP1_ERROR);
		cr_assert_eq(id, -1);
		cr_assert_not_null(why);
		cr_assert(strstr(why, what), "why is \"%s\", want \"%s\"", why, what);
		http1_fini(&h);
		free(s.buf);
	}
}

static const char get_openai[] = "GET /v1/models HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "Authorization: Bearer MOAT_SECRET_OPENAI\r\n"
				 "Accept: */*\r\n"
				 "\r\n";
static const char get_openai_out[] = "GET /v1/models HTTP/1.1\r\n"
				     "Host: api.openai.com\r\n"
				     "Authorization: Bearer sk-REAL-openai-0123\r\n"
				     "Accept: */*\r\n"
				     "\r\n";

Test(http1, a_placeholder_in_a_header_to_its_host_is_replaced)
{
	struct sink s = { 0 };
	struct http1 h;
	const char *why;

	cr_assert_eq(run(get_openai, sizeof(get_openai), &s, &h), (ssize_t)strlen(get_openai));
	assert_out(&s, get_openai_out);
	cr_assert_eq(http1_verdict(&h, NULL, &why), HTTP1_OK);
	cr_assert_null(why);
	cr_assert_str_eq(asked_host, "api.openai.com");
	cr_assert_eq(h.stats.requests, 1);
	cr_assert_eq(h.stats.rewritten, 1);
	cr_assert_eq(h.stats.substitutions, 1);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, one_byte_feeds_give_the_same_output)
{
	struct sink s = { 0 };
	struct http1 h;

	cr_assert_eq(run(get_openai, 1, &s, &h), 1);
	assert_out(&s, get_openai_out);
	cr_assert_eq(http1_verdict(&h, NULL, NULL), HTTP1_OK);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, every_occurrence_in_every_value_is_replaced)
{
	static const char in[] = "GET / HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "X-A: MOAT_SECRET_OPENAIMOAT_SECRET_OPENAI\r\n"
				 "X-B: a,MOAT_SECRET_OPENAI,b   \r\n"
				 "\r\n";
	static const char want[] = "GET / HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "X-A: sk-REAL-openai-0123sk-REAL-openai-0123\r\n"
				   "X-B: a,sk-REAL-openai-0123,b   \r\n"
				   "\r\n";
	struct sink s = { 0 };
	struct http1 h;

	run(in, 3, &s, &h);
	assert_out(&s, want);
	cr_assert_eq(h.stats.substitutions, 3);
	cr_assert_eq(h.stats.rewritten, 1);
	cr_assert_eq(asked, 1, "allowed() asked %u times for one secret in one head", asked);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, a_placeholder_in_the_query_is_replaced_percent_encoded)
{
	static const char in[] = "GET /repos?token=MOAT_SECRET_GITHUB&x=1 HTTP/1.1\r\n"
				 "Host: api.github.com\r\n"
				 "\r\n";
	static const char want[] = "GET /repos?token=ghp_x%2By%2Fz%3D%20%26&x=1 HTTP/1.1\r\n"
				   "Host: api.github.com\r\n"
				   "\r\n";
	struct sink s = { 0 };
	struct http1 h;

	run(in, 5, &s, &h);
	assert_out(&s, want);
	cr_assert_eq(h.stats.substitutions, 1);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, a_placeholder_in_the_path_is_checked_but_not_replaced)
{
	static const char in[] = "GET /MOAT_SECRET_OPENAI?MOAT_SECRET_OPENAI HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "MOAT_SECRET_OPENAI: x\r\n"
				 "\r\n";
	static const char want[] = "GET /MOAT_SECRET_OPENAI?sk-REAL-openai-0123 HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "MOAT_SECRET_OPENAI: x\r\n"
				   "\r\n";
	static const char bad[] = "GET /MOAT_SECRET_OPENAI HTTP/1.1\r\n"
				  "Host: example.com\r\n"
				  "\r\n";
	struct sink s = { 0 };
	struct http1 h;
	int id;

	run(in, 1000, &s, &h);
	assert_out(&s, want);
	http1_fini(&h);
	free(s.buf);

	s = (struct sink){ 0 };
	cr_assert_eq(run(bad, 1000, &s, &h), -EACCES,
		     "a placeholder in the path went to another host");
	cr_assert_eq(http1_verdict(&h, &id, NULL), HTTP1_VIOLATION);
	cr_assert_eq(id, OPENAI);
	cr_assert_eq(s.len, 0);
	http1_fini(&h);
}

Test(http1, a_placeholder_in_a_field_name_to_another_host_is_a_violation)
{
	static const char in[] = "GET / HTTP/1.1\r\n"
				 "Host: example.com\r\n"
				 "X-MOAT_SECRET_GITHUB: 1\r\n"
				 "\r\n";
	struct sink s = { 0 };
	struct http1 h;
	int id;

	cr_assert_eq(run(in, 2, &s, &h), -EACCES);
	cr_assert_eq(http1_verdict(&h, &id, NULL), HTTP1_VIOLATION);
	cr_assert_eq(id, GITHUB);
	cr_assert_eq(s.len, 0);
	http1_fini(&h);
}

Test(http1, a_host_the_secret_is_not_for_is_a_violation_and_nothing_of_it_goes_out)
{
	static const char ok[] = "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n";
	static const char in[] = "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
				 "GET /b HTTP/1.1\r\n"
				 "Host: api.github.com\r\n" /* GitHub's host, OpenAI's secret */
				 "Authorization: Bearer MOAT_SECRET_OPENAI\r\n"
				 "\r\n"
				 "GET /c HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";

	for (size_t step = 1; step <= sizeof(in); step *= 3) {
		struct sink s = { 0 };
		struct http1 h;
		const char *why;
		int id;

		cr_assert_eq(run(in, step, &s, &h), -EACCES);
		cr_assert_eq(http1_verdict(&h, &id, &why), HTTP1_VIOLATION);
		cr_assert_eq(id, OPENAI);
		cr_assert_not_null(why);
		cr_assert_null(strstr(why, "sk-"), "the value in the reason");
		cr_assert_str_eq(asked_host, "api.github.com");
		assert_out(&s, ok);
		cr_assert_eq(h.stats.requests, 1);
		/* Stopped for good. */
		cr_assert_eq(http1_feed(&h, (const uint8_t *)ok, sizeof(ok) - 1, sink_out, &s),
			     -EACCES);
		assert_out(&s, ok);
		http1_fini(&h);
		free(s.buf);
	}
}

Test(http1, the_host_is_lower_cased_without_port_and_trailing_dot)
{
	static const char in[] = "GET / HTTP/1.1\r\n"
				 "Host: API.OpenAI.COM.:443 \r\n"
				 "Authorization: MOAT_SECRET_OPENAI\r\n"
				 "\r\n";
	static const char v6[] = "GET / HTTP/1.1\r\n"
				 "Host: [2001:DB8::1]:8443\r\n"
				 "X: MOAT_SECRET_OPENAI\r\n"
				 "\r\n";
	struct sink s = { 0 };
	struct http1 h;

	cr_assert_geq(run(in, 7, &s, &h), 0);
	cr_assert_str_eq(asked_host, "api.openai.com");
	cr_assert_eq(h.stats.substitutions, 1);
	http1_fini(&h);

	cr_assert_eq(run(v6, 7, &s, &h), -EACCES);
	cr_assert_str_eq(asked_host, "2001:db8::1");
	http1_fini(&h);
	free(s.buf);
}

Test(http1, bad_hosts_are_refused)
{
	assert_error("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "host");
	assert_error("GET / HTTP/1.1\r\nHost: a.com:80x\r\n\r\n", "port");
	assert_error("GET / HTTP/1.1\r\nHost: a.com:123456\r\n\r\n", "port");
	assert_error("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "IPv6");
	assert_error("GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n", "IPv6");
	assert_error("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", "port");
	assert_error("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", "host");
}

Test(http1, the_host_is_required_on_http11_and_only_once)
{
	assert_error("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "no Host");
	assert_error("GET / HTTP/1.1\r\nHost: a.com\r\nHost: a.com\r\n\r\n", "more than one Host");
	assert_error("GET / HTTP/1.1\r\nHost: a.com\r\nhost: b.com\r\n\r\n", "more than one Host");
}

Test(http1, http10_without_host_passes_but_its_placeholders_have_no_host)
{
	static const char in[] = "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";
	static const char bad[] = "GET / HTTP/1.0\r\nX: MOAT_SECRET_OPENAI\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;

	run(in, 1, &s, &h);
	assert_out(&s, in);
	http1_fini(&h);
	free(s.buf);

	s = (struct sink){ 0 };
	cr_assert_eq(run(bad, 1, &s, &h), -EACCES);
	cr_assert_str_eq(asked_host, "");
	cr_assert_eq(s.len, 0);
	http1_fini(&h);
}

Test(http1, pipelined_requests_with_bodies_are_framed_exactly)
{
	static const char in[] = "GET /one HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "Authorization: Bearer MOAT_SECRET_OPENAI\r\n"
				 "\r\n"
				 "POST /two HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "Content-Length: 40\r\n"
				 "Expect: 100-continue\r\n"
				 "\r\n"
				 "{\"k\":\"MOAT_SECRET_OPENAI\"}\r\n\r\nGET / HTTP" /* untouched */
				 "POST /three HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "Transfer-Encoding: gzip, Chunked\r\n"
				 "X-Key: MOAT_SECRET_OPENAI\r\n"
				 "\r\n"
				 "5;name=value;q=\"a \\\" b\"\r\nhello\r\n"
				 "19 ; ext\r\nMOAT_SECRET_OPENAI\r\n\r\nGET\r\n"
				 "0000;last\r\n"
				 "Trailer-A: MOAT_SECRET_OPENAI\r\n"
				 "Trailer-B:\r\n"
				 "\r\n"
				 "GET /four?MOAT_SECRET_OPENAI HTTP/1.1\r\n"
				 "Host: api.openai.com\r\n"
				 "\r\n";
	static const char want[] = "GET /one HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "Authorization: Bearer sk-REAL-openai-0123\r\n"
				   "\r\n"
				   "POST /two HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "Content-Length: 40\r\n"
				   "Expect: 100-continue\r\n"
				   "\r\n"
				   "{\"k\":\"MOAT_SECRET_OPENAI\"}\r\n\r\nGET / HTTP"
				   "POST /three HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "Transfer-Encoding: gzip, Chunked\r\n"
				   "X-Key: sk-REAL-openai-0123\r\n"
				   "\r\n"
				   "5;name=value;q=\"a \\\" b\"\r\nhello\r\n"
				   "19 ; ext\r\nMOAT_SECRET_OPENAI\r\n\r\nGET\r\n"
				   "0000;last\r\n"
				   "Trailer-A: MOAT_SECRET_OPENAI\r\n"
				   "Trailer-B:\r\n"
				   "\r\n"
				   "GET /four?sk-REAL-openai-0123 HTTP/1.1\r\n"
				   "Host: api.openai.com\r\n"
				   "\r\n";

	for (size_t step = 1; step <= sizeof(in); step++) {
		struct sink s = { 0 };
		struct http1 h;

		cr_assert_geq(run(in, step, &s, &h), 0, "step %zu", step);
		assert_out(&s, want);
		cr_assert_eq(http1_verdict(&h, NULL, NULL), HTTP1_OK);
		cr_assert_eq(h.stats.requests, 4, "step %zu: %lu requests", step,
			     (unsigned long)h.stats.requests);
		cr_assert_eq(h.stats.rewritten, 3);
		cr_assert_eq(h.stats.substitutions, 3);
		http1_fini(&h);
		free(s.buf);
	}
}

Test(http1, requests_without_placeholders_pass_byte_for_byte_in_one_call_each)
{
	static const char in[] = "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"
				 "POST /x HTTP/1.1\r\nHost: example.com\r\ncontent-length: 3\r\n"
				 "Content-Length: 003\r\n\r\nabc"
				 "GET http://Example.com:80/p?q=1 HTTP/1.1\r\nHost: example.com\r\n"
				 "X-Odd: \x80\xff\t!~\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;

	cr_assert_eq(run(in, sizeof(in), &s, &h), (ssize_t)strlen(in));
	assert_out(&s, in);
	cr_assert_eq(s.calls, 4, "%u out() calls", s.calls);
	cr_assert_eq(h.stats.requests, 3);
	cr_assert_eq(h.stats.rewritten, 0);
	cr_assert_eq(h.stats.substitutions, 0);
	cr_assert_eq(asked, 0, "allowed() asked without a placeholder");
	http1_fini(&h);
	free(s.buf);
}

Test(http1, empty_lines_before_a_request_are_dropped)
{
	static const char in[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET / HTTP/1.1\r\n"
				 "Host: a\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;

	run(in, 1, &s, &h);
	assert_out(&s, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
	http1_fini(&h);
	free(s.buf);
}

Test(http1, content_length_and_transfer_encoding_is_refused)
{
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n",
		     "Content-Length and Transfer-Encoding");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		     "Content-Length: 0\r\n\r\n",
		     "Content-Length and Transfer-Encoding");
}

Test(http1, differing_content_lengths_are_refused)
{
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		     "differing Content-Length");
}

Test(http1, bad_content_lengths_are_refused)
{
	static const char *const bad[] = { "",	   "5, 5",
					   "+5",   "-1",
					   "0x10", "1 2",
					   "5a",   "1234567890123456789" /* 19 digits */ };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char in[256];

		snprintf(in, sizeof(in), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
			 bad[i]);
		assert_error(in, "Content-Length");
	}
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", "look-alike");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\ntransfer_encoding: chunked\r\n\r\n",
		     "look-alike");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", "field name");
}

Test(http1, the_longest_content_length_is_followed)
{
	static const char in[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999"
				 "\r\n\r\nGET / HTTP/1.1\r\nX: \0\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;

	/* The NUL is body. */
	cr_assert_eq(http1_init(&h, &(struct http1_cfg){ 0 }), 0);
	cr_assert_geq(feed(&h, in, sizeof(in) - 1, 10, &s), 0);
	cr_assert_eq(s.len, sizeof(in) - 1);
	cr_assert_eq(h.stats.requests, 1);
	cr_assert_eq(http1_verdict(&h, NULL, NULL), HTTP1_OK);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, transfer_codings_that_do_not_end_in_chunked_are_refused)
{
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
		     "does not end in chunked");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
		     "not the last");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n",
		     "not the last");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n",
		     "bad Transfer-Encoding");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
		     "bad Transfer-Encoding");
	assert_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
		     "bad Transfer-Encoding");
	assert_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0");
}

#define CHUNKED_HEAD "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

Test(http1, bad_chunks_are_refused)
{
	assert_error(CHUNKED_HEAD "zz\r\n", "bad chunk size");
	assert_error(CHUNKED_HEAD "\r\n", "bad chunk size");
	assert_error(CHUNKED_HEAD "-5\r\n", "bad chunk size");
	assert_error(CHUNKED_HEAD "5x\r\n", "bad chunk size");
	assert_error(CHUNKED_HEAD "5 \r\n", "bad chunk extension");
	assert_error(CHUNKED_HEAD "5\n", "bad chunk size");
	assert_error(CHUNKED_HEAD "5;a\nb\r\n", "bad chunk extension");
	assert_error(CHUNKED_HEAD "5\rx", "not ended by CRLF");
	assert_error(CHUNKED_HEAD "5\r\nhelloX", "not followed by CRLF");
	assert_error(CHUNKED_HEAD "5\r\nhello\rX", "not followed by CRLF");
	assert_error(CHUNKED_HEAD "0\r\n X: y\r\n\r\n", "obs-fold");
	assert_error(CHUNKED_HEAD "0\r\nX y\r\n\r\n", "trailer field name");
	assert_error(CHUNKED_HEAD "0\r\nX: \001\r\n\r\n", "trailer field value");
	assert_error(CHUNKED_HEAD "0\r\nX: y\n\r\n", "trailer field value");
	assert_error(CHUNKED_HEAD "0\r\n\rX", "trailers not ended");
}

Test(http1, huge_chunk_sizes_are_refused_not_wrapped)
{
	assert_error(CHUNKED_HEAD "FFFFFFFFFFFFFFFFF\r\n", "too large"); /* 17 digits */
	assert_error(CHUNKED_HEAD "10000000000000001\r\n", "too large"); /* 2^64 + 1 */
	assert_error(CHUNKED_HEAD "1000000000000000\r\n", "too large");	 /* 2^60 */
	assert_error(CHUNKED_HEAD "00000000000000000000000000000001x\r\n", "bad chunk size");
}

Test(http1, chunk_lines_and_trailers_are_bounded)
{
	char in[8192];
	int n = snprintf(in, sizeof(in), "%s5;", CHUNKED_HEAD);

	memset(in + n, 'a', HTTP1_CHUNK_LINE_MAX);
	strcpy(in + n + HTTP1_CHUNK_LINE_MAX, "\r\n");
	assert_error(in, "chunk-size line too long");

	n = snprintf(in, sizeof(in), "%s0\r\nX: ", CHUNKED_HEAD);
	memset(in + n, 'a', 4096);
	strcpy(in + n + 4096, "\r\n\r\n");
	assert_error(in, "trailers too long");
}

Test(http1, a_head_longer_than_the_limit_is_refused)
{
	char in[8192];
	int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: ");

	memset(in + n, 'a', 4096);
	strcpy(in + n + 4096, "\r\n\r\n");
	assert_error(in, "too long");

	/* Without any line end. */
	memset(in, 'G', 5000);
	in[5000] = '\0';
	assert_error(in, "too long");

	/* Nor do empty lines before it go on for ever. */
	for (n = 0; n < 4100; n += 2)
		memcpy(in + n, "\r\n", 2);
	in[n] = '\0';
	assert_error(in, "too long");
}

Test(http1, a_head_of_exactly_the_limit_passes)
{
	struct http1_cfg cfg = cfg_default();
	char in[4097];
	struct sink s = { 0 };
	struct http1 h;
	int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: ");

	memset(in + n, 'a', 4096 - (size_t)n - 4);
	strcpy(in + 4096 - 4, "\r\n\r\n");
	cr_assert_eq(run_cfg(&cfg, in, 100, &s, &h), 96);
	cr_assert_eq(s.len, 4096);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, nul_and_control_bytes_in_the_head_are_refused)
{
	static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;
	const char *why;

	cr_assert_eq(http1_init(&h, &(struct http1_cfg){ 0 }), 0);
	cr_assert_eq(feed(&h, nul, sizeof(nul) - 1, 1, &s), -EBADMSG);
	cr_assert_eq(http1_verdict(&h, NULL, &why), HTTP1_ERROR);
	cr_assert_str_eq(why, "NUL in a field value");
	cr_assert_eq(s.len, 0);
	http1_fini(&h);

	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\001b\r\n\r\n", "bad byte");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\177\r\n\r\n", "bad byte");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bad byte");
}

Test(http1, bare_lf_and_obs_fold_are_refused)
{
	assert_error("GET / HTTP/1.1\nHost: a\r\n\r\n", "CRLF");
	assert_error("GET / HTTP/1.1\r\nHost: a\n\n", "CRLF");
	assert_error("\n", "CRLF");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "obs-fold");
	assert_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obs-fold");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\n:x\r\n\r\n", "field name");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", "field name");
	assert_error("GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", "field name");
}

Test(http1, bad_request_lines_are_refused)
{
	assert_error("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "request-target");
	assert_error("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "HTTP/1.x");
	assert_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.x");
	assert_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.x");
	assert_error("GET / http/1.1\r\nHost: a\r\n\r\n", "HTTP/1.x");
	assert_error("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "method");
	assert_error("GET\r\nHost: a\r\n\r\n", "method");
	assert_error("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", "request-target");
	assert_error("GET * HTTP/1.1\r\nHost: a\r\n\r\n", "asterisk");
	assert_error("GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", "authority is not the Host");
	assert_error("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", "userinfo");
	assert_error("GET a.com/ HTTP/1.1\r\nHost: a\r\n\r\n", "request-target");
}

Test(http1, an_absolute_form_target_gives_the_host_its_query_is_replaced)
{
	static const char in[] =
		"GET https://API.openai.com:443/v1?k=MOAT_SECRET_OPENAI HTTP/1.1\r\n"
		"Host: api.openai.com\r\n\r\n";
	static const char want[] = "GET https://API.openai.com:443/v1?k=sk-REAL-openai-0123 "
				   "HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	static const char v10[] = "GET http://api.github.com?MOAT_SECRET_OPENAI HTTP/1.0\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;
	int id;

	run(in, 4, &s, &h);
	assert_out(&s, want);
	http1_fini(&h);
	free(s.buf);

	s = (struct sink){ 0 };
	cr_assert_eq(run(v10, 4, &s, &h), -EACCES);
	cr_assert_str_eq(asked_host, "api.github.com");
	cr_assert_eq(http1_verdict(&h, &id, NULL), HTTP1_VIOLATION);
	cr_assert_eq(id, OPENAI);
	http1_fini(&h);
}

Test(http1, overlapping_placeholders_take_the_first_then_longest)
{
	static const uint8_t v1[] = "ONE", v2[] = "TWO";
	static const struct http1_secret sec[] = {
		{ "MOAT_A", v1, 3, OPENAI },
		{ "MOAT_AB", v2, 3, OPENAI },
	};
	static const char in[] = "GET / HTTP/1.1\r\nHost: api.openai.com\r\n"
				 "X: MOAT_ABMOAT_AMOAT_MOAT_AB\r\n\r\n";
	struct http1_cfg cfg = { .secrets = sec, .n_secrets = 2, .allowed = allowed };
	struct sink s = { 0 };
	struct http1 h;

	run_cfg(&cfg, in, 1, &s, &h);
	assert_out(&s, "GET / HTTP/1.1\r\nHost: api.openai.com\r\nX: TWOONEMOAT_TWO\r\n\r\n");
	cr_assert_eq(h.stats.substitutions, 3);
	cr_assert_eq(asked, 2);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, upgrades_are_refused_while_secrets_are_configured)
{
	assert_error("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\n\r\n",
		     "Upgrade");
	assert_error("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "CONNECT");
}

Test(http1, a_trace_with_a_placeholder_is_refused_one_without_passes)
{
	static const char plain[] = "TRACE / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	struct sink s = { 0 };
	struct http1 h;

	assert_error("TRACE / HTTP/1.1\r\nHost: api.openai.com\r\n"
		     "Authorization: Bearer MOAT_SECRET_OPENAI\r\n\r\n",
		     "TRACE");
	cr_assert_geq(run(plain, 3, &s, &h), 0);
	assert_out(&s, plain);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, after_an_allowed_upgrade_everything_passes_untouched)
{
	static const char in[] = "GET /ws HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
				 "Authorization: MOAT_SECRET_OPENAI\r\n\r\n"
				 "\x81\x05MOAT_SECRET_OPENAI\0\n\r GET / HTTP/1.1\r\n\r\n";
	static const char want[] =
		"GET /ws HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
		"Authorization: sk-REAL-openai-0123\r\n\r\n"
		"\x81\x05MOAT_SECRET_OPENAI\0\n\r GET / HTTP/1.1\r\n\r\n";
	struct http1_cfg cfg = cfg_default();
	struct sink s = { 0 };
	struct http1 h;

	cfg.tunnel_upgrades = true;
	cr_assert_eq(http1_init(&h, &cfg), 0);
	cr_assert_geq(feed(&h, in, sizeof(in) - 1, 9, &s), 0);
	cr_assert_eq(s.len, sizeof(want) - 1);
	cr_assert(!memcmp(s.buf, want, s.len));
	cr_assert_eq(h.stats.tunnels, 1);
	cr_assert_eq(h.stats.substitutions, 1);
	http1_fini(&h);
	free(s.buf);

	/* Without secrets, a CONNECT tunnels. */
	s = (struct sink){ 0 };
	cr_assert_eq(http1_init(&h, &(struct http1_cfg){ 0 }), 0);
	cr_assert_geq(feed(&h, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01", 42, 5,
			   &s),
		      0);
	cr_assert_eq(s.len, 42);
	cr_assert_eq(h.stats.tunnels, 1);
	http1_fini(&h);
	free(s.buf);
}

Test(http1, a_failing_output_stops_the_stream)
{
	struct sink s = { .fail = -EPIPE };
	struct http1 h;
	const char *why;

	cr_assert_eq(run(get_openai, 10, &s, &h), -EPIPE);
	cr_assert_eq(http1_verdict(&h, NULL, &why), HTTP1_ERROR);
	cr_assert_str_eq(why, "output failed");
	s.fail = 0;
	cr_assert_eq(http1_feed(&h, (const uint8_t *)"x", 1, sink_out, &s), -EPIPE);
	cr_assert_eq(s.len, 0);
	http1_fini(&h);
}

Test(http1, body_bytes_before_a_framing_error_still_go_out)
{
	static const char in[] = CHUNKED_HEAD "3\r\nabc\r\n3\r\nabcX";
	struct sink s = { 0 };
	struct http1 h;

	cr_assert_eq(run(in, sizeof(in), &s, &h), -EBADMSG);
	assert_out(&s, CHUNKED_HEAD "3\r\nabc\r\n3\r\nabc");
	http1_fini(&h);
	free(s.buf);
}

static int init_one(const char *placeholder, const char *value, size_t value_len, size_t max)
{
	const struct http1_secret sec = { placeholder, (const uint8_t *)value, value_len, 1 };
	const struct http1_cfg cfg = {
		.secrets = &sec, .n_secrets = 1, .allowed = allowed, .max_header_bytes = max
	};
	struct http1 h;
	int rc = http1_init(&h, &cfg);

	if (rc)
		cr_assert_eq(http1_feed(&h, (const uint8_t *)"x", 1, sink_out, NULL), -EINVAL,
			     "a refused stream took bytes");
	http1_fini(&h);
	return rc;
}

Test(http1, bad_configurations_are_refused)
{
	struct http1_secret many[HTTP1_MAX_SECRETS + 1];
	struct http1_cfg cfg = { .secrets = many, .n_secrets = 1 };
	struct http1 h;
	char long_ph[HTTP1_PLACEHOLDER_MAX + 2];

	cr_assert_eq(init_one("MOAT_X", "v", 1, 0), 0);
	cr_assert_eq(init_one("MOAT_X", "a\r\nX-Injected: 1", 16, 0), -EINVAL, "a value with CRLF");
	cr_assert_eq(init_one("MOAT_X", "a\0b", 3, 0), -EINVAL, "a value with NUL");
	cr_assert_eq(init_one("MOAT_X", "v", 0, 0), -EINVAL, "an empty value");
	cr_assert_eq(init_one("", "v", 1, 0), -EINVAL, "an empty placeholder");
	cr_assert_eq(init_one("MOAT X", "v", 1, 0), -EINVAL, "a placeholder with a space");
	memset(long_ph, 'P', sizeof(long_ph) - 1);
	long_ph[sizeof(long_ph) - 1] = '\0';
	cr_assert_eq(init_one(long_ph, "v", 1, 0), -EINVAL, "a placeholder too long");
	long_ph[sizeof(long_ph) - 2] = '\0';
	cr_assert_eq(init_one(long_ph, "v", 1, 0), 0, "the longest placeholder");
	cr_assert_eq(init_one("MOAT_X", "v", 1, HTTP1_HEAD_MIN - 1), -EINVAL, "a limit too small");
	cr_assert_eq(init_one("MOAT_X", "v", 1, HTTP1_HEAD_MAX + 1), -EINVAL, "a limit too large");

	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		many[i] = (struct http1_secret){ "MOAT_X", (const uint8_t *)"v", 1, (int)i };
	cr_assert_eq(http1_init(&h, &cfg), -EINVAL, "secrets without allowed()");
	http1_fini(&h);
	cfg.allowed = allowed;
	cfg.n_secrets = HTTP1_MAX_SECRETS + 1;
	cr_assert_eq(http1_init(&h, &cfg), -EINVAL, "too many secrets");
	http1_fini(&h);
	cfg.n_secrets = HTTP1_MAX_SECRETS;
	cr_assert_eq(http1_init(&h, &cfg), 0, "as many secrets as there may be");
	http1_fini(&h);
	cr_assert_eq(http1_feed(&h, (const uint8_t *)"x", 1, sink_out, NULL), -EINVAL,
		     "fed after fini");
}

Test(http1, many_placeholders_in_a_large_head_are_linear)
{
	struct http1_cfg cfg = cfg_default();
	static char in[HTTP1_HEAD_DEFAULT];
	struct sink s = { 0 };
	struct http1 h;
	size_t n, count = 0;

	cfg.max_header_bytes = 0; /* the default, 64 KiB */
	n = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: api.openai.com\r\nX: ");
	while (n + 18 + 4 < sizeof(in)) {
		memcpy(in + n, "MOAT_SECRET_OPENAI", 18);
		n += 18;
		count++;
	}
	memcpy(in + n, "\r\n\r\n", 4);
	n += 4;
	cr_assert_eq(http1_init(&h, &cfg), 0);
	cr_assert_eq(feed(&h, in, n, n, &s), (ssize_t)n);
	cr_assert_eq(h.stats.substitutions, count);
	cr_assert_eq(s.len, n + count * (sizeof(openai_value) - 1 - 18));
	http1_fini(&h);
	free(s.buf);
}
