/* SPDX-License-Identifier: MIT */
/*
 * fuzz_policy.c - libFuzzer harness for the policy parser
 *
 * Theory of Operation
 * -------------------
 * Feeds each input to policy_parse(). Whatever it is, the parser must
 * return cleanly (ASan/UBSan catch the rest). When it parses, the harness
 * also decides a fixed set of flows and DNS queries, explains them, and
 * checks the serializer's promise: policy_to_json() must parse back to a
 * policy_equal() one that decides alike, and serializing that gives the
 * same text. Any broken promise is an abort(), which libFuzzer reports.
 *
 * The tls and secrets sections are held to the same promise: both
 * policies intercept the same names, name the same secrets and allow them
 * the same hosts. A policy whose secrets all come from the environment is
 * also resolved (getenv() only: a value_file could name anything on the
 * fuzzing machine), and a failure must say why, on one line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const addrs[] = {
	"0.0.0.0",	   "10.0.2.2",	    "10.0.2.3",	    "10.1.2.3",	   "127.0.0.1",
	"169.254.169.254", "172.16.0.1",    "192.168.1.1",  "100.64.0.1",  "224.0.0.1",
	"255.255.255.255", "8.8.8.8",	    "203.0.113.10", "::",	   "::1",
	"fd00::2",	   "fe80::1",	    "ff02::1",	    "2001:db8::1", "::ffff:10.0.2.2",
	"::ffff:8.8.8.8",  "fd00:ec2::254",
};
static const uint16_t ports[] = { 0, 1, 22, 53, 80, 443, 3000, 8080, 65535 };
static const char *const qnames[] = { "",	  "example.com", "API.Example.com.",
				      "a.b.c.d",  "pypi.org",	 "files.pythonhosted.org",
				      "localhost" };
static const char *const names1[] = { "example.com", "www.example.com", NULL };
static const char *const names2[] = { "pypi.org", NULL };

static const char *const snis[] = { "",
				    "example.com",
				    "API.Example.com.",
				    "openai.com",
				    "api.openai.com",
				    "pinned.example.com",
				    "a.b.c.d",
				    "x.api.github.com",
				    "localhost",
				    "evilexample.com",
				    "sub.openai.com.com" };

static struct policy_secret_value values[POLICY_MAX_SECRETS];

static bool same(struct policy_decision a, struct policy_decision b)
{
	return a.allow == b.allow && a.terminate == b.terminate && a.rule == b.rule;
}

static bool same_str(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

static void exercise_tls(const struct policy *p, const struct policy *q)
{
	unsigned int n = policy_secret_count(p);
	bool env_only = true;
	char err[512];

	if (policy_has_tls(p) != policy_has_tls(q) || n != policy_secret_count(q) ||
	    policy_tls_has_ca(p) != policy_tls_has_ca(q) ||
	    !same_str(policy_tls_ca_cert(p), policy_tls_ca_cert(q)) ||
	    !same_str(policy_tls_ca_key(p), policy_tls_ca_key(q)) ||
	    !same_str(policy_tls_upstream_ca(p), policy_tls_upstream_ca(q)))
		abort();
	if (n > POLICY_MAX_SECRETS || (n && !policy_has_tls(p)) ||
	    (policy_has_tls(p) && !policy_tls_upstream_ca(p)))
		abort();
	for (size_t i = 0; i < sizeof(snis) / sizeof(snis[0]); i++) {
		bool in = policy_tls_intercepts(p, snis[i]);

		if (in != policy_tls_intercepts(q, snis[i]))
			abort();
		for (unsigned int k = 0; k <= n; k++) {
			bool ok = policy_secret_host_allowed(p, k, snis[i]);

			/* A secret only ever goes where moat-tls intercepts. */
			if (ok != policy_secret_host_allowed(q, k, snis[i]) || (ok && !in))
				abort();
		}
	}
	for (unsigned int k = 0; k < n; k++) {
		const char *ph = policy_secret_placeholder(p, k);
		bool fp, fq;

		if (!ph || !same_str(ph, policy_secret_placeholder(q, k)) ||
		    policy_secret_find(p, ph) != (int)k ||
		    policy_secret_on_violation(p, k) != policy_secret_on_violation(q, k) ||
		    !same_str(policy_secret_source(p, k, &fp), policy_secret_source(q, k, &fq)) ||
		    fp != fq)
			abort();
		/* No placeholder is, or is part of, another. */
		for (unsigned int m = 0; m < k; m++)
			if (strstr(ph, policy_secret_placeholder(p, m)) ||
			    strstr(policy_secret_placeholder(p, m), ph))
				abort();
		if (fp)
			env_only = false;
	}
	if (policy_secret_placeholder(p, n) || policy_secret_source(p, n, NULL))
		abort();
	if (n && env_only) {
		int rc = policy_secrets_resolve(p, values, POLICY_MAX_SECRETS, err, sizeof(err));

		if (rc < 0 && (!err[0] || strchr(err, '\n')))
			abort();
		if (rc >= 0 && (unsigned int)rc != n)
			abort();
		policy_secrets_wipe(values, n);
	}
}

static void exercise(const struct policy *p, const struct policy *q)
{
	char buf[512];

	for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++) {
		struct policy_flow f = { 0 };

		policy_addr_parse(addrs[a], &f.dst);
		policy_address_rule_allows(p, &f.dst, 0, 0);
		policy_address_rule_allows(p, &f.dst, POLICY_PROTO_TCP, 443);
		for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
			f.port = ports[i];
			for (int proto = 1; proto <= 4; proto <<= 1) {
				f.proto = (enum policy_proto)proto;
				for (int dir = 1; dir <= 2; dir++) {
					f.direction = (enum policy_direction)dir;
					f.names = (i & 1) ? names1 : (i & 2) ? names2 : NULL;
					if (!same(policy_decide(p, &f), policy_decide(q, &f)))
						abort();
				}
			}
		}
		f.direction = POLICY_EGRESS;
		f.proto = POLICY_PROTO_TCP;
		f.port = 443;
		if (policy_explain(p, &f, buf, sizeof(buf)) < 0)
			abort();
	}
	for (size_t i = 0; i < sizeof(qnames) / sizeof(qnames[0]); i++) {
		if (!same(policy_decide_dns(p, qnames[i], POLICY_PROTO_UDP),
			  policy_decide_dns(q, qnames[i], POLICY_PROTO_UDP)))
			abort();
		if (policy_explain_dns(p, qnames[i], POLICY_PROTO_UDP, buf, sizeof(buf)) < 0)
			abort();
	}
	exercise_tls(p, q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_env env = { .n_host = 3 };
	struct policy *p = NULL, *q = NULL;
	char err[512], *j1, *j2;

	policy_addr_parse("10.0.2.2", &env.host[0]);
	policy_addr_parse("10.0.2.3", &env.host[1]);
	policy_addr_parse("fd00::2", &env.host[2]);
	if (policy_parse((const char *)data, size, "fuzz", &env, &p, err, sizeof(err)) < 0) {
		if (!err[0] || p)
			abort(); /* a failure always says why */
		return 0;
	}
	j1 = policy_to_json(p);
	if (!j1)
		abort();
	if (policy_parse(j1, strlen(j1), "fuzz-normalized", &env, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "normalized policy does not parse: %s\n%s\n", err, j1);
		abort();
	}
	if (!policy_equal(p, q)) {
		fprintf(stderr, "normalized policy differs:\n%s\n", j1);
		abort();
	}
	j2 = policy_to_json(q);
	if (!j2 || strcmp(j1, j2))
		abort();
	exercise(p, q);
	free(j1);
	free(j2);
	policy_free(p);
	policy_free(q);
	return 0;
}
