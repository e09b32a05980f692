/* SPDX-License-Identifier: MIT */
/*
 * test_policy_tls.c - unit tests for the policy's "tls" and "secrets" sections
 *
 * Theory of Operation
 * -------------------
 * Exercises policy/tls.c and the parts of parse.c and emit.c that read and
 * write the two sections, through the public header only: good documents
 * and their defaults, the round trip through policy_to_json(), what
 * policy_equal() tells apart, every schema error with the field path in
 * its message, policy_tls_intercepts() (exact, suffix, bypass, case), the
 * hosts a secret may go to, and policy_secrets_resolve() from the
 * environment and from files -- with a distinctive value that no message
 * and no serialized policy may ever contain.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/policy.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static char errbuf[1024];

static struct policy *parse_ok(const char *json)
{
	struct policy *p = NULL;
	int rc = policy_parse(json, strlen(json), "policy.json", NULL, &p, errbuf, sizeof(errbuf));

	cr_assert_eq(rc, 0, "parse failed: %s\n%s", errbuf, json);
	cr_assert_not_null(p);
	return p;
}

/* Parsing must fail with one line naming the file, containing every needle given. */
static void parse_fail(const char *json, const char *n1, const char *n2)
{
	struct policy *p = (struct policy *)1;
	int rc = policy_parse(json, strlen(json), "policy.json", NULL, &p, errbuf, sizeof(errbuf));

	cr_assert_eq(rc, -1, "parse should fail: %.300s", json);
	cr_assert_null(p, "out must be NULL on failure");
	cr_assert(!strncmp(errbuf, "policy.json: ", 13), "error must name the file: %s", errbuf);
	cr_assert(!strchr(errbuf, '\n'), "error must be one line: %s", errbuf);
	if (n1)
		cr_assert(strstr(errbuf, n1), "error '%s' lacks '%s'", errbuf, n1);
	if (n2)
		cr_assert(strstr(errbuf, n2), "error '%s' lacks '%s'", errbuf, n2);
}

#define HEAD	  "{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", "
/* A document with the given sections after the defaults. */
#define DOC(rest) HEAD rest "}"
/* A tls section intercepting openai.com and below, and api.github.com. */
#define TLS_OK                                                            \
	"\"tls\": {\"intercept\": [{\"domain_suffix\": \"openai.com\"}, " \
	"{\"domain\": \"api.github.com\"}], \"bypass\": [{\"domain\": \"pinned.openai.com\"}]}"
/* One secret for api.openai.com; @fields are extra keys. */
#define SECRET(ph, fields)                                                 \
	"{\"placeholder\": \"" ph "\", \"value_env\": \"MOAT_TEST_ENV\", " \
	"\"hosts\": [{\"domain\": \"api.openai.com\"}]" fields "}"

/* The brief's example, in full. */
static const char example[] = HEAD
	"\"tls\": {"
	"  \"intercept\": [ { \"domain_suffix\": \"openai.com\" }, { \"domain\": \"api.github.com\" } ],"
	"  \"bypass\":    [ { \"domain\": \"pinned.example.com\" } ],"
	"  \"ca\": { \"cert\": \"/etc/moat/ca.pem\", \"key\": \"/etc/moat/ca.key\" },"
	"  \"upstream_ca\": \"/etc/ssl/certs/ca-certificates.crt\""
	"},"
	"\"secrets\": ["
	"  { \"placeholder\": \"MOAT_SECRET_OPENAI\", \"value_env\": \"OPENAI_API_KEY\","
	"    \"hosts\": [ { \"domain\": \"api.openai.com\" } ], \"on_violation\": \"terminate\" },"
	"  { \"placeholder\": \"MOAT_SECRET_GITHUB\", \"value_file\": \"/run/secrets/gh\","
	"    \"hosts\": [ { \"domain\": \"API.GitHub.com.\" } ], \"on_violation\": \"block_and_log\" },"
	"  { \"placeholder\": \"moat-$ecret-3\", \"value_env\": \"X3\","
	"    \"hosts\": [ { \"domain_suffix\": \".openai.com\" } ] }"
	"]}";

/* A value no message, no serialized policy and no log line may ever contain. */
#define SECRET_VALUE "sk-TOPSECRET-6f1c2e9a-do-not-print"

static void assert_no_value(const char *text)
{
	cr_assert_null(strstr(text, SECRET_VALUE), "the value leaked: %s", text);
	cr_assert_null(strstr(text, "TOPSECRET"), "part of the value leaked: %s", text);
}

/* ------------------------------------------------------------------ */
/* Good documents                                                      */
/* ------------------------------------------------------------------ */

Test(tls, example_parses_with_its_accessors)
{
	struct policy *p = parse_ok(example);
	bool is_file = true;

	cr_assert(policy_has_tls(p));
	cr_assert(policy_tls_has_ca(p));
	cr_assert_str_eq(policy_tls_ca_cert(p), "/etc/moat/ca.pem");
	cr_assert_str_eq(policy_tls_ca_key(p), "/etc/moat/ca.key");
	cr_assert_str_eq(policy_tls_upstream_ca(p), "/etc/ssl/certs/ca-certificates.crt");
	cr_assert_eq(policy_secret_count(p), 3);
	cr_assert_str_eq(policy_secret_placeholder(p, 0), "MOAT_SECRET_OPENAI");
	cr_assert_str_eq(policy_secret_placeholder(p, 2), "moat-$ecret-3");
	cr_assert_null(policy_secret_placeholder(p, 3));
	cr_assert_eq(policy_secret_on_violation(p, 0), POLICY_SECRET_TERMINATE);
	cr_assert_eq(policy_secret_on_violation(p, 1), POLICY_SECRET_BLOCK_AND_LOG);
	cr_assert_eq(policy_secret_on_violation(p, 2), POLICY_SECRET_BLOCK, "the default");
	cr_assert_eq(policy_secret_on_violation(p, 99), POLICY_SECRET_BLOCK);
	cr_assert_str_eq(policy_secret_source(p, 0, &is_file), "OPENAI_API_KEY");
	cr_assert_not(is_file);
	cr_assert_str_eq(policy_secret_source(p, 1, &is_file), "/run/secrets/gh");
	cr_assert(is_file);
	cr_assert_str_eq(policy_secret_source(p, 2, NULL), "X3");
	cr_assert_null(policy_secret_source(p, 3, &is_file));
	cr_assert_eq(policy_secret_find(p, "MOAT_SECRET_GITHUB"), 1);
	cr_assert_eq(policy_secret_find(p, "moat_secret_github"), -1, "case-sensitive");
	cr_assert_eq(policy_secret_find(p, NULL), -1);
	cr_assert_str_eq(policy_secret_violation_name(POLICY_SECRET_BLOCK), "block");
	cr_assert_str_eq(policy_secret_violation_name(POLICY_SECRET_BLOCK_AND_LOG),
			 "block_and_log");
	cr_assert_str_eq(policy_secret_violation_name(POLICY_SECRET_TERMINATE), "terminate");
	cr_assert_str_eq(policy_secret_violation_name((enum policy_secret_violation)7), "?");
	policy_free(p);
}

Test(tls, defaults_and_absence)
{
	struct policy *p = parse_ok(DOC("\"tls\": {}")), *q;
	char *j;

	cr_assert(policy_has_tls(p), "an empty tls section is still a tls section");
	cr_assert_not(policy_tls_has_ca(p));
	cr_assert_null(policy_tls_ca_cert(p));
	cr_assert_null(policy_tls_ca_key(p));
	cr_assert_str_eq(policy_tls_upstream_ca(p), POLICY_TLS_UPSTREAM_CA_DEFAULT);
	cr_assert_eq(policy_secret_count(p), 0);
	cr_assert_not(policy_tls_intercepts(p, "api.openai.com"), "nothing is intercepted");
	j = policy_to_json(p);
	cr_assert(strstr(j, "\"intercept\": []") && strstr(j, "\"bypass\": []"), "%s", j);
	cr_assert(strstr(j, "\"upstream_ca\": \"/etc/ssl/certs/ca-certificates.crt\""), "%s", j);
	cr_assert(strstr(j, "\"secrets\": []"), "%s", j);
	cr_assert_null(strstr(j, "\"ca\""), "no ca given, none written: %s", j);
	free(j);

	/* Without the section: nothing, and nothing more in the normalized text. */
	q = parse_ok(DOC("\"rules\": []"));
	cr_assert_not(policy_has_tls(q));
	cr_assert_not(policy_tls_intercepts(q, "api.openai.com"));
	cr_assert_null(policy_tls_upstream_ca(q));
	cr_assert_eq(policy_secret_count(q), 0);
	cr_assert_not(policy_secret_host_allowed(q, 0, "api.openai.com"));
	j = policy_to_json(q);
	cr_assert_null(strstr(j, "\"tls\""), "%s", j);
	cr_assert_null(strstr(j, "\"secrets\""), "%s", j);
	free(j);
	cr_assert_not(policy_equal(p, q), "adding a tls section is a change");
	policy_free(p);
	policy_free(q);

	/* NULL policies. */
	cr_assert_not(policy_has_tls(NULL));
	cr_assert_not(policy_tls_intercepts(NULL, "a.b"));
	cr_assert_not(policy_tls_has_ca(NULL));
	cr_assert_null(policy_tls_ca_cert(NULL));
	cr_assert_eq(policy_secret_count(NULL), 0);
	cr_assert_null(policy_secret_placeholder(NULL, 0));

	/* An empty secrets list next to tls is fine. */
	p = parse_ok(DOC(TLS_OK ", \"secrets\": []"));
	cr_assert_eq(policy_secret_count(p), 0);
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */
/* ------------------------------------------------------------------ */

Test(roundtrip, tls_and_secrets_parse_back_equal)
{
	struct policy *p = parse_ok(example), *q;
	char *j1 = policy_to_json(p), *j2;

	cr_assert_not_null(j1);
	q = parse_ok(j1);
	cr_assert(policy_equal(p, q), "round trip differs:\n%s", j1);
	j2 = policy_to_json(q);
	cr_assert_str_eq(j1, j2, "serializing twice must give the same text");
	/* Normalized: names lowercase without dots at the ends, defaults written. */
	cr_assert(strstr(j1, "{\n        \"domain\": \"api.github.com\"\n      }"), "%s", j1);
	cr_assert(strstr(j1, "\"domain_suffix\": \"openai.com\""), "%s", j1);
	cr_assert(strstr(j1, "\"value_env\": \"OPENAI_API_KEY\""), "%s", j1);
	cr_assert(strstr(j1, "\"value_file\": \"/run/secrets/gh\""), "%s", j1);
	cr_assert(strstr(j1, "\"on_violation\": \"block\""), "the default is written: %s", j1);
	cr_assert(strstr(j1, "\"cert\": \"/etc/moat/ca.pem\""), "%s", j1);
	cr_assert(strstr(j1, "\n  \"tls\": {\n"), "%s", j1);
	cr_assert_null(strstr(j1, "\"value\""), "no value in the normalized policy: %s", j1);
	/* The two answer alike. */
	for (const char *const *n =
		     (const char *const[]){ "openai.com", "API.openai.com", "pinned.example.com",
					    "api.github.com", "github.com", "x.y.openai.com.",
					    "evilopenai.com", NULL };
	     *n; n++) {
		cr_assert_eq(policy_tls_intercepts(p, *n), policy_tls_intercepts(q, *n), "%s", *n);
		for (unsigned int i = 0; i < 3; i++)
			cr_assert_eq(policy_secret_host_allowed(p, i, *n),
				     policy_secret_host_allowed(q, i, *n), "%s %u", *n, i);
	}
	free(j1);
	free(j2);
	policy_free(p);
	policy_free(q);
}

Test(roundtrip, equal_sees_tls_and_secret_changes)
{
	struct policy *a = parse_ok(example), *b;
	char *j = policy_to_json(a), *s;
	static const char *const edits[][2] = {
		{ "\"intercept\": [", "\"intercept\": [{\"domain\": \"extra.example\"}, " },
		{ "\"domain\": \"api.github.com\"\n      }\n    ],\n    \"bypass\"",
		  "\"domain_suffix\": \"api.github.com\"\n      }\n    ],\n    \"bypass\"" },
		{ "\"pinned.example.com\"", "\"pinned.example.org\"" },
		{ "\"/etc/moat/ca.pem\"", "\"/etc/moat/ca2.pem\"" },
		{ "\"/etc/moat/ca.key\"", "\"/etc/moat/ca2.key\"" },
		{ "\"upstream_ca\": \"/etc/ssl/certs/ca-certificates.crt\"",
		  "\"upstream_ca\": \"/etc/ssl/other.crt\"" },
		{ "\"MOAT_SECRET_OPENAI\"", "\"MOAT_SECRET_OPENAJ\"" },
		{ "\"OPENAI_API_KEY\"", "\"OPENAI_API_KEY2\"" },
		{ "\"value_env\": \"X3\"", "\"value_file\": \"/X3\"" },
		{ "\"/run/secrets/gh\"", "\"/run/secrets/gh2\"" },
		{ "\"on_violation\": \"terminate\"", "\"on_violation\": \"block\"" },
		{ "\"domain\": \"api.openai.com\"", "\"domain\": \"v2.api.openai.com\"" },
		{ ",\n    \"ca\": {\n      \"cert\": \"/etc/moat/ca.pem\",\n      \"key\": "
		  "\"/etc/moat/ca.key\"\n    }",
		  "" },
	};

	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char *at = strstr(j, edits[i][0]);
		size_t pre;

		cr_assert_not_null(at, "%s not in %s", edits[i][0], j);
		pre = (size_t)(at - j);
		s = malloc(strlen(j) + 64);
		memcpy(s, j, pre);
		strcpy(s + pre, edits[i][1]);
		strcat(s, at + strlen(edits[i][0]));
		b = parse_ok(s);
		cr_assert_not(policy_equal(a, b), "edit %zu not detected", i);
		cr_assert_not(policy_equal(b, a), "edit %zu not detected (reversed)", i);
		policy_free(b);
		free(s);
	}
	b = parse_ok(example);
	cr_assert(policy_equal(a, b));
	policy_free(b);
	/* One secret fewer. */
	b = parse_ok(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_OPENAI", "") "]"));
	cr_assert_not(policy_equal(a, b));
	policy_free(b);
	free(j);
	policy_free(a);
}

/* ------------------------------------------------------------------ */
/* Interception and hosts                                              */
/* ------------------------------------------------------------------ */

Test(intercept, exact_suffix_bypass_and_case)
{
	struct policy *p = parse_ok(DOC(
		"\"tls\": {\"intercept\": [{\"domain_suffix\": \"Example.COM\"}, "
		"{\"domain\": \"api.github.com\"}], \"bypass\": [{\"domain\": \"pinned.example.com\"}, "
		"{\"domain_suffix\": \"cdn.example.com\"}, {\"domain\": \"api.github.com\"}]}"));
	static const struct {
		const char *sni;
		bool yes;
	} cases[] = {
		{ "example.com", true },	  { "EXAMPLE.com", true },
		{ "www.example.com", true },	  { "a.b.example.com.", true },
		{ "evilexample.com", false },	  { "example.com.evil", false },
		{ "pinned.example.com", false },  { "PINNED.Example.Com.", false },
		{ "x.pinned.example.com", true }, /* a domain bypass is that name only */
		{ "cdn.example.com", false },	  { "img.cdn.example.com", false },
		{ "api.github.com", false }, /* bypass wins over intercept */
		{ "github.com", false },	  { "", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(policy_tls_intercepts(p, cases[i].sni), cases[i].yes, "%s",
			     cases[i].sni);
	cr_assert_not(policy_tls_intercepts(p, NULL));
	policy_free(p);

	p = parse_ok(DOC("\"tls\": {\"intercept\": [{\"domain\": \"api.github.com\"}]}"));
	cr_assert(policy_tls_intercepts(p, "API.GITHUB.COM"));
	cr_assert(policy_tls_intercepts(p, "api.github.com."));
	cr_assert_not(policy_tls_intercepts(p, "x.api.github.com"), "a domain is exact");
	cr_assert_not(policy_tls_intercepts(p, "github.com"));
	policy_free(p);
}

Test(intercept, secret_hosts)
{
	struct policy *p = parse_ok(example);

	/* 0: api.openai.com only. */
	cr_assert(policy_secret_host_allowed(p, 0, "api.openai.com"));
	cr_assert(policy_secret_host_allowed(p, 0, "API.OpenAI.com."));
	cr_assert_not(policy_secret_host_allowed(p, 0, "openai.com"));
	cr_assert_not(policy_secret_host_allowed(p, 0, "x.api.openai.com"));
	cr_assert_not(policy_secret_host_allowed(p, 0, "api.github.com"));
	cr_assert_not(policy_secret_host_allowed(p, 0, "evil.example"));
	/* 1: api.github.com (written "API.GitHub.com."). */
	cr_assert(policy_secret_host_allowed(p, 1, "api.github.com"));
	cr_assert_not(policy_secret_host_allowed(p, 1, "api.openai.com"));
	/* 2: openai.com and below. */
	cr_assert(policy_secret_host_allowed(p, 2, "openai.com"));
	cr_assert(policy_secret_host_allowed(p, 2, "a.b.openai.com"));
	cr_assert_not(policy_secret_host_allowed(p, 2, "evilopenai.com"));
	cr_assert_not(policy_secret_host_allowed(p, 2, ""));
	cr_assert_not(policy_secret_host_allowed(p, 2, NULL));
	cr_assert_not(policy_secret_host_allowed(p, 3, "openai.com"), "out of range");
	policy_free(p);

	/* A secret's suffix below an intercepted suffix, next to an unrelated bypass. */
	p = parse_ok(DOC("\"tls\": {\"intercept\": [{\"domain_suffix\": \"openai.com\"}], "
			 "\"bypass\": [{\"domain\": \"pinned.example.com\"}, "
			 "{\"domain_suffix\": \"other.openai.com\"}]}, \"secrets\": ["
			 "{\"placeholder\": \"MOAT_SECRET_A\", \"value_env\": \"A\", "
			 "\"hosts\": [{\"domain_suffix\": \"api.openai.com\"}, "
			 "{\"domain\": \"openai.com\"}]}]"));
	cr_assert(policy_secret_host_allowed(p, 0, "v1.api.openai.com"));
	cr_assert(policy_secret_host_allowed(p, 0, "openai.com"));
	cr_assert_not(policy_secret_host_allowed(p, 0, "other.openai.com"));
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* Schema errors                                                       */
/* ------------------------------------------------------------------ */

Test(schema, tls_section)
{
	parse_fail(DOC("\"tls\": []"), "policy.json: tls: ", "must be an object");
	parse_fail(DOC("\"tls\": {\"intercepts\": []}"), "policy.json: tls.intercepts: ",
		   "unknown key (expected one of: intercept, bypass, ca, upstream_ca)");
	parse_fail(DOC("\"tls\": {\"intercept\": {}}"),
		   "policy.json: tls.intercept: ", "must be a list");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain\": \"a.com\"}, \"b.com\"]}"),
		   "policy.json: tls.intercept[1]: ", "must be an object");
	parse_fail(DOC("\"tls\": {\"intercept\": [{}]}"),
		   "policy.json: tls.intercept[0]: ", "must be an object {\"domain\"");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain\": \"a.com\", \"domain_suffix\": "
		       "\"a.com\"}]}"),
		   "policy.json: tls.intercept[0]: ", "exactly one of domain, domain_suffix");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"cidr\": \"10.0.0.0/8\"}]}"),
		   "policy.json: tls.intercept[0].cidr: ",
		   "unknown key (expected one of: domain, domain_suffix)");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain\": 3}]}"),
		   "policy.json: tls.intercept[0].domain: ", "must be a string");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain\": \"a.com\"}, {\"domain_suffix\": "
		       "\"*.b.com\"}]}"),
		   "policy.json: tls.intercept[1].domain_suffix: ", "wildcards are not supported");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain\": \"https://a.com/\"}]}"),
		   "tls.intercept[0].domain: \"https://a.com/\"", "just the name");
	parse_fail(DOC("\"tls\": {\"bypass\": [{\"domain\": \"\"}]}"),
		   "policy.json: tls.bypass[0].domain: ", "empty");
	parse_fail(DOC("\"tls\": {\"bypass\": 1}"), "policy.json: tls.bypass: ", "must be a list");
	parse_fail(DOC("\"tls\": {\"upstream_ca\": \"certs/ca.crt\"}"),
		   "policy.json: tls.upstream_ca: ", "\"certs/ca.crt\" is not an absolute path");
	parse_fail(DOC("\"tls\": {\"upstream_ca\": true}"),
		   "policy.json: tls.upstream_ca: ", "must be a string (an absolute path)");
	parse_fail(DOC("\"tls\": {\"upstream_ca\": \"/a\\tb\"}"),
		   "policy.json: tls.upstream_ca: ", "control character");
}

Test(schema, tls_ca)
{
	char *s, *path;

	parse_fail(DOC("\"tls\": {\"ca\": \"/etc/moat/ca.pem\"}"),
		   "policy.json: tls.ca: ", "must be an object");
	parse_fail(DOC("\"tls\": {\"ca\": {\"cert\": \"/c.pem\"}}"),
		   "policy.json: tls.ca.key: ", "missing (ca needs both cert and key)");
	parse_fail(DOC("\"tls\": {\"ca\": {\"key\": \"/c.key\"}}"),
		   "policy.json: tls.ca.cert: ", "missing (ca needs both cert and key)");
	parse_fail(DOC("\"tls\": {\"ca\": {}}"), "policy.json: tls.ca.cert: ", "missing");
	parse_fail(DOC("\"tls\": {\"ca\": {\"cert\": \"c.pem\", \"key\": \"/c.key\"}}"),
		   "policy.json: tls.ca.cert: ", "not an absolute path");
	parse_fail(DOC("\"tls\": {\"ca\": {\"cert\": \"/c.pem\", \"key\": \"./c.key\"}}"),
		   "policy.json: tls.ca.key: ", "not an absolute path");
	parse_fail(DOC("\"tls\": {\"ca\": {\"cert\": \"/c.pem\", \"key\": \"/c.key\", \"pass\": "
		       "\"x\"}}"),
		   "policy.json: tls.ca.pass: ", "unknown key (expected one of: cert, key)");
	/* A path of POLICY_MAX_PATH bytes is fine, one more is not. */
	path = malloc(POLICY_MAX_PATH + 2);
	s = malloc(POLICY_MAX_PATH + 256);
	memset(path, 'a', POLICY_MAX_PATH + 1);
	path[0] = '/';
	path[POLICY_MAX_PATH] = '\0';
	snprintf(s, POLICY_MAX_PATH + 256, DOC("\"tls\": {\"upstream_ca\": \"%s\"}"), path);
	policy_free(parse_ok(s));
	path[POLICY_MAX_PATH] = 'a';
	path[POLICY_MAX_PATH + 1] = '\0';
	snprintf(s, POLICY_MAX_PATH + 256, DOC("\"tls\": {\"upstream_ca\": \"%s\"}"), path);
	parse_fail(s, "policy.json: tls.upstream_ca: ", "is longer than 4095 bytes");
	free(s);
	free(path);
}

Test(schema, tls_list_bounds)
{
	size_t cap = 64 + (POLICY_MAX_TLS_NAMES + 1) * 40;
	char *s = malloc(cap);
	size_t o = (size_t)snprintf(s, cap, HEAD "\"tls\": {\"intercept\": [");

	for (int i = 0; i < POLICY_MAX_TLS_NAMES; i++)
		o += (size_t)snprintf(s + o, cap - o, "%s{\"domain\": \"h%d.example\"}",
				      i ? ", " : "", i);
	strcpy(s + o, "]}}");
	policy_free(parse_ok(s));
	snprintf(s + o, cap - o, ", {\"domain\": \"one-more.example\"}]}}");
	parse_fail(s, "policy.json: tls.intercept: ", "more than 256 entries");
	free(s);
}

Test(schema, secrets_need_tls)
{
	parse_fail(DOC("\"secrets\": [" SECRET("MOAT_SECRET_A", "") "]"),
		   "policy.json: secrets: ", "needs a tls section");
	parse_fail(DOC("\"secrets\": []"), "policy.json: secrets: ", "needs a tls section");
	parse_fail(DOC(TLS_OK ", \"secrets\": {}"),
		   "policy.json: secrets: ", "must be a list of secrets");
	parse_fail(DOC(TLS_OK ", \"secrets\": [3]"),
		   "policy.json: secrets[0]: ", "must be an object");
}

Test(schema, secret_fields)
{
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_A", ", \"value\": \"x\"") "]"),
		   "policy.json: secrets[0].value: ",
		   "unknown key (expected one of: placeholder, value_env, value_file, hosts, "
		   "on_violation)");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"value_env\": \"A\", \"hosts\": [{\"domain\": "
			      "\"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].placeholder: ", "missing");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("SHORT", "") "]"),
		   "policy.json: secrets[0].placeholder: ", "\"SHORT\": must be 8..128 characters");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT SECRET", "") "]"),
		   "policy.json: secrets[0].placeholder: ", "letters, digits, '_', '$' and '-'");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT.SECRET", "") "]"),
		   "policy.json: secrets[0].placeholder: ", "must be 8..128");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": 12345678, \"value_env\": \"A\", "
			      "\"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].placeholder: must be 8..128", NULL);
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\", \"value_file\": \"/a\", "
			      "\"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0]: ", "give value_env or value_file, not both");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0]: ", "needs value_env");
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"1ABC\", \"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].value_env: ", "\"1ABC\": must be an environment");
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"A-B\", \"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].value_env: ", "environment variable's name");
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"\", \"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].value_env: ", "environment variable's name");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": [], \"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].value_env: must be", NULL);
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_file\": \"key.txt\", \"hosts\": [{\"domain\": "
			      "\"api.openai.com\"}]}]"),
		   "policy.json: secrets[0].value_file: ", "\"key.txt\" is not an absolute path");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\"}]"),
		   "policy.json: secrets[0].hosts: ", "missing");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\", \"hosts\": []}]"),
		   "policy.json: secrets[0].hosts: ", "must name at least one host");
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"A\", \"hosts\": {\"domain\": \"api.openai.com\"}}]"),
		   "policy.json: secrets[0].hosts: ", "must be a list");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\", \"hosts\": [{\"domain\": \"api.openai.com\"}, "
			      "{\"group\": \"public\"}]}]"),
		   "policy.json: secrets[0].hosts[1].group: ", "unknown key");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_A",
							", \"on_violation\": \"kill\"") "]"),
		   "policy.json: secrets[0].on_violation: ",
		   "\"kill\" is not \"block\", \"block_and_log\" or \"terminate\"");
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [" SECRET("MOAT_SECRET_A", ", \"on_violation\": true") "]"),
		   "policy.json: secrets[0].on_violation: ", "must be");
}

Test(schema, secret_hosts_must_be_intercepted)
{
	/* Not intercepted at all. */
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET(
			   "MOAT_SECRET_A",
			   "") ", "
			       "{\"placeholder\": \"MOAT_SECRET_B\", \"value_env\": \"B\", "
			       "\"hosts\": [{\"domain\": \"api.github.com\"}, "
			       "{\"domain\": \"evil.example\"}]}]"),
		   "policy.json: secrets[1].hosts[1]: secret MOAT_SECRET_B: domain "
		   "\"evil.example\" is not intercepted",
		   "could never be injected");
	/* Bypassed (bypass wins). */
	parse_fail(
		DOC(TLS_OK
		    ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		    "\"value_env\": \"A\", \"hosts\": [{\"domain\": \"PINNED.openai.com\"}]}]"),
		"policy.json: secrets[0].hosts[0]: secret MOAT_SECRET_A: domain "
		"\"pinned.openai.com\" is bypassed by tls.bypass[0] (domain \"pinned.openai.com\")",
		"could never be injected");
	/* A suffix is covered only by a suffix: one intercepted domain below it is not enough. */
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"A\", \"hosts\": [{\"domain_suffix\": \"github.com\"}]}]"),
		   "secrets[0].hosts[0]: secret MOAT_SECRET_A: domain_suffix \"github.com\" is not "
		   "intercepted",
		   "every name below it");
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\", \"hosts\": [{\"domain_suffix\": "
			      "\"api.github.com\"}]}]"),
		   "secrets[0].hosts[0]: ", "is not intercepted");
	/* A suffix above the intercepted one is not covered either. */
	parse_fail(DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
			      "\"value_env\": \"A\", \"hosts\": [{\"domain_suffix\": \"com\"}]}]"),
		   "secrets[0].hosts[0]: ", "is not intercepted");
	/* A suffix with a bypassed name below it, or under a bypassed suffix. */
	parse_fail(DOC(TLS_OK
		       ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_A\", "
		       "\"value_env\": \"A\", \"hosts\": [{\"domain_suffix\": \"openai.com\"}]}]"),
		   "secrets[0].hosts[0]: secret MOAT_SECRET_A: domain_suffix \"openai.com\" covers "
		   "names that tls.bypass[0] (domain \"pinned.openai.com\") exempts",
		   "must be intercepted in full");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain_suffix\": \"openai.com\"}], "
		       "\"bypass\": [{\"domain_suffix\": \"x.openai.com\"}]}, \"secrets\": ["
		       "{\"placeholder\": \"MOAT_SECRET_A\", \"value_env\": \"A\", "
		       "\"hosts\": [{\"domain_suffix\": \"y.x.openai.com\"}]}]"),
		   "secrets[0].hosts[0]: ",
		   "covers names that tls.bypass[0] (domain_suffix \"x.openai.com\") exempts");
	parse_fail(DOC("\"tls\": {\"intercept\": [{\"domain_suffix\": \"openai.com\"}], "
		       "\"bypass\": [{\"domain_suffix\": \"x.openai.com\"}]}, \"secrets\": ["
		       "{\"placeholder\": \"MOAT_SECRET_A\", \"value_env\": \"A\", "
		       "\"hosts\": [{\"domain\": \"a.x.openai.com\"}]}]"),
		   "secrets[0].hosts[0]: ", "is bypassed by tls.bypass[0]");
	/* With no intercept list at all. */
	parse_fail(DOC("\"tls\": {}, \"secrets\": [" SECRET("MOAT_SECRET_A", "") "]"),
		   "secrets[0].hosts[0]: secret MOAT_SECRET_A: domain \"api.openai.com\"",
		   "is not intercepted");
}

Test(schema, placeholders_unique_and_not_nested)
{
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_A",
							"") ", " SECRET("MOAT_SECRET_A", "") "]"),
		   "policy.json: secrets[1].placeholder: ", "is secrets[0]'s placeholder too");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_AB",
							"") ", " SECRET("MOAT_SECRET_A", "") "]"),
		   "policy.json: secrets[1].placeholder: \"MOAT_SECRET_A\" is part of secrets[0]'s "
		   "placeholder \"MOAT_SECRET_AB\"",
		   "ambiguous");
	parse_fail(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_A", "") ", " SECRET(
			   "MOAT_SECRET_B", "") ", " SECRET("xMOAT_SECRET_Bx", "") "]"),
		   "policy.json: secrets[2].placeholder: \"xMOAT_SECRET_Bx\" contains secrets[1]'s "
		   "placeholder \"MOAT_SECRET_B\"",
		   "ambiguous");
	/* Case differs: two placeholders. */
	policy_free(parse_ok(DOC(TLS_OK ", \"secrets\": [" SECRET("MOAT_SECRET_A", "") ", " SECRET(
		"moat_secret_a", "") "]")));
}

Test(schema, secrets_bound)
{
	size_t cap = 256 + (POLICY_MAX_SECRETS + 1) * 160;
	char *s = malloc(cap);
	size_t o = (size_t)snprintf(s, cap, HEAD TLS_OK ", \"secrets\": [");

	for (int i = 0; i < POLICY_MAX_SECRETS; i++)
		o += (size_t)snprintf(
			s + o, cap - o,
			"%s{\"placeholder\": \"MOAT_S_%03d_X\", \"value_env\": \"A\", "
			"\"hosts\": [{\"domain\": \"api.openai.com\"}]}",
			i ? ", " : "", i);
	strcpy(s + o, "]}");
	{
		struct policy *p = parse_ok(s);

		cr_assert_eq(policy_secret_count(p), POLICY_MAX_SECRETS);
		policy_free(p);
	}
	snprintf(s + o, cap - o,
		 ", {\"placeholder\": \"MOAT_S_999_X\", \"value_env\": \"A\", "
		 "\"hosts\": [{\"domain\": \"api.openai.com\"}]}]}");
	parse_fail(s, "policy.json: secrets: ", "more than 64 secrets");
	free(s);
}

/* ------------------------------------------------------------------ */
/* Resolving values                                                    */
/* ------------------------------------------------------------------ */

static struct policy_secret_value *values(unsigned int n)
{
	struct policy_secret_value *v = calloc(n, sizeof(*v));

	cr_assert_not_null(v);
	return v;
}

/* A policy with one secret read from @source (value_env NAME or value_file PATH). */
static struct policy *one_secret(const char *key, const char *source)
{
	char doc[1024];

	snprintf(doc, sizeof(doc),
		 DOC(TLS_OK ", \"secrets\": [{\"placeholder\": \"MOAT_SECRET_T\", \"%s\": \"%s\", "
			    "\"hosts\": [{\"domain\": \"api.openai.com\"}]}]"),
		 key, source);
	return parse_ok(doc);
}

/* policy_secrets_resolve() must fail, naming secret and source, never the value. */
static void resolve_fail(const struct policy *p, const char *source, const char *why)
{
	struct policy_secret_value *v = values(4);
	char *j;

	cr_assert_eq(policy_secrets_resolve(p, v, 4, errbuf, sizeof(errbuf)), -1);
	cr_assert(strstr(errbuf, "secrets[0] (MOAT_SECRET_T): "), "names the secret: %s", errbuf);
	cr_assert(strstr(errbuf, source), "names the source %s: %s", source, errbuf);
	cr_assert(strstr(errbuf, why), "error '%s' lacks '%s'", errbuf, why);
	cr_assert(!strchr(errbuf, '\n'), "one line: %s", errbuf);
	assert_no_value(errbuf);
	for (size_t i = 0; i < sizeof(v[0].value); i++)
		cr_assert_eq(v[0].value[i], 0, "a failed entry is wiped (byte %zu)", i);
	cr_assert_eq(v[0].len, 0);
	j = policy_to_json(p);
	assert_no_value(j);
	free(j);
	free(v);
}

Test(resolve, from_the_environment)
{
	struct policy *p = one_secret("value_env", "MOAT_TEST_SECRET_ENV");
	struct policy_secret_value *v = values(1);
	char *j;

	setenv("MOAT_TEST_SECRET_ENV", SECRET_VALUE, 1);
	cr_assert_eq(policy_secrets_resolve(p, v, 1, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_str_eq(v[0].value, SECRET_VALUE);
	cr_assert_eq(v[0].len, strlen(SECRET_VALUE));
	j = policy_to_json(p);
	assert_no_value(j);
	free(j);
	policy_secrets_wipe(v, 1);
	cr_assert_eq(v[0].len, 0);
	cr_assert_eq(v[0].value[0], 0);

	/* Too little room, or none. */
	cr_assert_eq(policy_secrets_resolve(p, v, 0, errbuf, sizeof(errbuf)), -1);
	cr_assert(strstr(errbuf, "1 secrets but room for 0"), "%s", errbuf);
	cr_assert_eq(policy_secrets_resolve(p, NULL, 5, errbuf, sizeof(errbuf)), -1);
	cr_assert_eq(policy_secrets_resolve(NULL, v, 1, errbuf, sizeof(errbuf)), -1);

	/* A value with a line break inside, then an empty one, then none. */
	setenv("MOAT_TEST_SECRET_ENV", SECRET_VALUE "\n", 1);
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "holds a line break");
	setenv("MOAT_TEST_SECRET_ENV", SECRET_VALUE "\rX", 1);
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "holds a line break");
	setenv("MOAT_TEST_SECRET_ENV", SECRET_VALUE "\x1b[0m", 1);
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "holds a control character");
	setenv("MOAT_TEST_SECRET_ENV", SECRET_VALUE "\x7f", 1);
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "holds a control character");
	/* Tabs, spaces and bytes above 0x7f are header field value bytes. */
	setenv("MOAT_TEST_SECRET_ENV", "Bearer\t" SECRET_VALUE " \xc3\xa9", 1);
	cr_assert_eq(policy_secrets_resolve(p, v, 1, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_str_eq(v[0].value, "Bearer\t" SECRET_VALUE " \xc3\xa9");
	setenv("MOAT_TEST_SECRET_ENV", "", 1);
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "is empty");
	unsetenv("MOAT_TEST_SECRET_ENV");
	resolve_fail(p, "value_env MOAT_TEST_SECRET_ENV", "is not set");
	free(v);
	policy_free(p);

	/* No secrets: nothing to read, nothing needed. */
	p = parse_ok(DOC(TLS_OK));
	cr_assert_eq(policy_secrets_resolve(p, NULL, 0, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	policy_free(p);
}

static void write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, n), (ssize_t)n);
	close(fd);
}

Test(resolve, from_a_file)
{
	char dir[] = "/tmp/test_policy_tls.XXXXXX", path[128], fifo[128], missing[128];
	struct policy_secret_value *v = values(2);
	struct policy *p;
	char *big;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	p = one_secret("value_file", path);

	/* One trailing newline is stripped, "\n" or "\r\n". */
	write_file(path, SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1);
	cr_assert_eq(policy_secrets_resolve(p, v, 2, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_str_eq(v[0].value, SECRET_VALUE);
	cr_assert_eq(v[0].len, strlen(SECRET_VALUE));
	write_file(path, SECRET_VALUE "\r\n", strlen(SECRET_VALUE) + 2);
	cr_assert_eq(policy_secrets_resolve(p, v, 2, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_str_eq(v[0].value, SECRET_VALUE);
	write_file(path, SECRET_VALUE, strlen(SECRET_VALUE));
	cr_assert_eq(policy_secrets_resolve(p, v, 2, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_str_eq(v[0].value, SECRET_VALUE, "no newline is fine too");
	/* Only one. */
	write_file(path, SECRET_VALUE "\n\n", strlen(SECRET_VALUE) + 2);
	resolve_fail(p, path, "holds a line break");
	write_file(path, SECRET_VALUE "\nline two\n", strlen(SECRET_VALUE) + 10);
	resolve_fail(p, path, "holds a line break");
	write_file(path, SECRET_VALUE "\0x", strlen(SECRET_VALUE) + 2);
	resolve_fail(p, path, "holds a NUL byte");
	/* Empty, or only the newline. */
	write_file(path, "", 0);
	resolve_fail(p, path, "is empty");
	write_file(path, "\n", 1);
	resolve_fail(p, path, "is empty");

	/* Exactly 64 KiB is the largest; 64 KiB and a newline is already too big. */
	big = malloc(POLICY_SECRET_VALUE_MAX + 2);
	memset(big, 'k', POLICY_SECRET_VALUE_MAX + 1);
	memcpy(big, SECRET_VALUE, strlen(SECRET_VALUE));
	write_file(path, big, POLICY_SECRET_VALUE_MAX);
	cr_assert_eq(policy_secrets_resolve(p, v, 2, errbuf, sizeof(errbuf)), 1, "%s", errbuf);
	cr_assert_eq(v[0].len, POLICY_SECRET_VALUE_MAX);
	cr_assert_eq(v[0].value[POLICY_SECRET_VALUE_MAX], '\0');
	big[POLICY_SECRET_VALUE_MAX] = '\n';
	write_file(path, big, POLICY_SECRET_VALUE_MAX + 1);
	resolve_fail(p, path, "is larger than 64 KiB");
	free(big);

	/* Missing, a directory, a FIFO (refused without waiting for a writer). */
	policy_free(p);
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	p = one_secret("value_file", missing);
	resolve_fail(p, missing, "No such file or directory");
	policy_free(p);
	p = one_secret("value_file", dir);
	resolve_fail(p, dir, "is not a regular file");
	policy_free(p);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	p = one_secret("value_file", fifo);
	resolve_fail(p, fifo, "is not a regular file");
	policy_free(p);

	free(v);
	unlink(fifo);
	unlink(path);
	rmdir(dir);
}

Test(resolve, a_failure_wipes_what_was_read)
{
	char dir[] = "/tmp/test_policy_tls.XXXXXX", path[128], doc[1024];
	struct policy_secret_value *v = values(3);
	struct policy *p;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	write_file(path, SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1);
	setenv("MOAT_TEST_SECRET_B", "second-" SECRET_VALUE, 1);
	unsetenv("MOAT_TEST_SECRET_C");
	snprintf(doc, sizeof(doc),
		 DOC(TLS_OK
		     ", \"secrets\": ["
		     "{\"placeholder\": \"MOAT_SECRET_1\", \"value_file\": \"%s\", "
		     "\"hosts\": [{\"domain\": \"api.openai.com\"}]}, "
		     "{\"placeholder\": \"MOAT_SECRET_2\", \"value_env\": \"MOAT_TEST_SECRET_B\", "
		     "\"hosts\": [{\"domain\": \"api.github.com\"}]}, "
		     "{\"placeholder\": \"MOAT_SECRET_3\", \"value_env\": \"MOAT_TEST_SECRET_C\", "
		     "\"hosts\": [{\"domain\": \"api.github.com\"}]}]"),
		 path);
	p = parse_ok(doc);
	cr_assert_eq(policy_secrets_resolve(p, v, 3, errbuf, sizeof(errbuf)), -1);
	cr_assert_str_eq(errbuf,
			 "secrets[2] (MOAT_SECRET_3): value_env MOAT_TEST_SECRET_C: is not set");
	for (unsigned int i = 0; i < 3; i++) {
		cr_assert_eq(v[i].len, 0, "entry %u wiped", i);
		for (size_t k = 0; k < 64; k++)
			cr_assert_eq(v[i].value[k], 0, "entry %u wiped", i);
	}
	/* With the third set, all three are read, in order. */
	setenv("MOAT_TEST_SECRET_C", "third", 1);
	cr_assert_eq(policy_secrets_resolve(p, v, 3, errbuf, sizeof(errbuf)), 3, "%s", errbuf);
	cr_assert_str_eq(v[0].value, SECRET_VALUE);
	cr_assert_str_eq(v[1].value, "second-" SECRET_VALUE);
	cr_assert_str_eq(v[2].value, "third");
	policy_secrets_wipe(v, 3);
	policy_secrets_wipe(NULL, 3);
	unsetenv("MOAT_TEST_SECRET_B");
	unsetenv("MOAT_TEST_SECRET_C");
	free(v);
	policy_free(p);
	unlink(path);
	rmdir(dir);
}
