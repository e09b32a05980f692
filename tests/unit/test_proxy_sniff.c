/* SPDX-License-Identifier: MIT */
/* test_proxy_sniff.c - proxy/sniff.c: SNI from ClientHellos, Host from HTTP requests */
#include <criterion/criterion.h>
#include <string.h>

#include "proxy/sniff.h"

/* A ClientHello with @n_ext extensions (type, body) in one or more records of @rec bytes. */
struct ext {
	int type;
	const uint8_t *body;
	size_t len;
};

static size_t put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static size_t hello(uint8_t *out, const struct ext *e, int n_ext, size_t rec)
{
	uint8_t hs[4096];
	size_t n = 4, ext_start, o = 0;

	hs[n++] = 3, hs[n++] = 3;
	memset(hs + n, 0x11, 32), n += 32;
	hs[n++] = 32, memset(hs + n, 0x22, 32), n += 32; /* session id */
	n += put16(hs + n, 4), hs[n++] = 0x13, hs[n++] = 0x01, hs[n++] = 0x13, hs[n++] = 0x02;
	hs[n++] = 1, hs[n++] = 0; /* compression: null */
	ext_start = n;
	n += 2;
	for (int i = 0; i < n_ext; i++) {
		n += put16(hs + n, (size_t)e[i].type);
		n += put16(hs + n, e[i].len);
		memcpy(hs + n, e[i].body, e[i].len);
		n += e[i].len;
	}
	put16(hs + ext_start, n - ext_start - 2);
	hs[0] = 1, hs[1] = (uint8_t)((n - 4) >> 16), put16(hs + 2, n - 4);
	for (size_t off = 0; off < n; off += rec) {
		size_t l = n - off < rec ? n - off : rec;

		out[o++] = 22, out[o++] = 3, out[o++] = 1;
		o += put16(out + o, l);
		memcpy(out + o, hs + off, l);
		o += l;
	}
	return o;
}

static size_t sni_body(uint8_t *b, const char *name)
{
	size_t l = strlen(name);

	put16(b, l + 3);
	b[2] = 0;
	put16(b + 3, l);
	memcpy(b + 5, name, l);
	return l + 5;
}

static enum sniff_result run(const uint8_t *b, size_t n, char *name)
{
	enum sniff_kind k;

	return sniff_hostname(b, n, name, &k);
}

Test(sniff, client_hello_sni_whole_split_and_in_pieces)
{
	uint8_t sni[300], buf[8192];
	static const uint8_t alpn[] = { 0, 9, 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
	struct ext e[2] = { { 16, alpn, sizeof(alpn) }, { 0, sni, 0 } };
	char name[SNIFF_NAME_MAX + 1];
	enum sniff_kind kind;
	size_t n;

	e[1].len = sni_body(sni, "API.Example.COM");
	n = hello(buf, e, 2, 16384);
	cr_assert_eq(sniff_hostname(buf, n, name, &kind), SNIFF_NAME);
	cr_assert_eq(kind, SNIFF_KIND_TLS);
	cr_assert_str_eq(name, "api.example.com");
	/* Every prefix is MORE: a ClientHello arriving in pieces. */
	for (size_t i = 1; i < n; i++)
		cr_assert_eq(run(buf, i, name), SNIFF_MORE, "prefix %zu", i);
	/* Split across records of 7 bytes. */
	n = hello(buf, e, 2, 7);
	cr_assert_eq(run(buf, n, name), SNIFF_NAME);
	cr_assert_str_eq(name, "api.example.com");
	for (size_t i = 1; i < n; i++)
		cr_assert_eq(run(buf, i, name), SNIFF_MORE, "split prefix %zu", i);
}

Test(sniff, client_hello_without_sni_or_malformed)
{
	uint8_t sni[300], buf[8192];
	struct ext e[2] = { { 0, sni, 0 }, { 0, sni, 0 } };
	char name[SNIFF_NAME_MAX + 1];
	size_t n;

	n = hello(buf, e, 0, 16384);
	cr_assert_eq(run(buf, n, name), SNIFF_NONE, "no extensions: no SNI");
	e[0].len = e[1].len = sni_body(sni, "a.example");
	n = hello(buf, e, 2, 16384);
	cr_assert_eq(run(buf, n, name), SNIFF_NONE, "a repeated server_name is malformed");
	e[0].len = sni_body(sni, "bad name.example");
	n = hello(buf, e, 1, 16384);
	cr_assert_eq(run(buf, n, name), SNIFF_NONE, "not a DNS name");
	e[0].len = sni_body(sni, "a.example");
	n = hello(buf, e, 1, 16384);
	buf[5 + 4 + 2 + 32] = 33; /* session id longer than 32 */
	cr_assert_eq(run(buf, n, name), SNIFF_NONE);
	n = hello(buf, e, 1, 16384);
	buf[5] = 2; /* ServerHello */
	cr_assert_eq(run(buf, n, name), SNIFF_NONE);
	n = hello(buf, e, 1, 16384);
	buf[0] = 23; /* application data */
	cr_assert_eq(run(buf, n, name), SNIFF_NONE);
	n = hello(buf, e, 1, 16384);
	buf[n - 1 - strlen("a.example") - 2] = 0xff; /* the name's length beyond the extension */
	cr_assert_eq(run(buf, n, name), SNIFF_NONE);
	/* A hello that claims more than SNIFF_MAX_BYTES. */
	n = hello(buf, e, 1, 16384);
	buf[6] = 0x01;
	cr_assert_eq(run(buf, n, name), SNIFF_NONE);
}

Test(sniff, http_host)
{
	static const char *const ok[] = {
		"GET / HTTP/1.1\r\nHost: www.Example.org\r\nAccept: */*\r\n\r\n",
		"POST /x HTTP/1.0\r\nuser-agent: t\r\nhost:www.example.org:8080\r\n\r\nbody",
		"HEAD / HTTP/1.1\nHOST: \twww.example.org.  \n\n",
	};
	char name[SNIFF_NAME_MAX + 1];
	enum sniff_kind kind;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		size_t n = strlen(ok[i]);

		cr_assert_eq(sniff_hostname((const uint8_t *)ok[i], n, name, &kind), SNIFF_NAME,
			     "%s", ok[i]);
		cr_assert_eq(kind, SNIFF_KIND_HTTP);
		cr_assert_str_eq(name, "www.example.org");
		for (size_t k = 1; k < n && ok[i][k - 1] != '\n'; k++)
			cr_assert_eq(run((const uint8_t *)ok[i], k, name), SNIFF_MORE, "%zu", k);
	}
	cr_assert_eq(run((const uint8_t *)"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 37, name),
		     SNIFF_NONE, "two Host headers");
	cr_assert_eq(run((const uint8_t *)"GET / HTTP/1.1\r\nAccept: x\r\n\r\n", 29, name),
		     SNIFF_NONE, "no Host");
	cr_assert_eq(run((const uint8_t *)"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 34, name),
		     SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"GET / HTTP/1.1\r\nHost: a", 23, name), SNIFF_MORE);
	cr_assert_eq(run((const uint8_t *)"GET / HTTP/1.1\r\nHost: 203.0.113.10:8080\r\n\r\n", 43,
			 name),
		     SNIFF_NONE, "an address names no name");
}

Test(sniff, other_protocols_are_none_at_once)
{
	char name[SNIFF_NAME_MAX + 1];

	cr_assert_eq(run((const uint8_t *)"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 32, name),
		     SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"S", 1, name), SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"EHLO x\r\n", 8, name), SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"\x00\x01\x02", 3, name), SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"GE", 2, name), SNIFF_MORE, "could still be GET");
	cr_assert_eq(run((const uint8_t *)"GET /x FTP/1\r\n", 14, name), SNIFF_NONE);
	cr_assert_eq(run((const uint8_t *)"", 0, name), SNIFF_MORE);
}

Test(sniff, oversized)
{
	static uint8_t big[SNIFF_MAX_BYTES + 100];
	char name[SNIFF_NAME_MAX + 1];

	memcpy(big, "GET / HTTP/1.1\r\n", 16);
	memset(big + 16, 'a', sizeof(big) - 16);
	cr_assert_eq(run(big, sizeof(big), name), SNIFF_NONE, "a head beyond the limit");
}
