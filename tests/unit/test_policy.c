/* SPDX-License-Identifier: MIT */
/*
 * test_policy.c - unit tests for policy/ and `moat policy`
 *
 * Theory of Operation
 * -------------------
 * Exercises the policy module through its public header only: group
 * classification at the edges of every range (IPv4, IPv6, IPv4-mapped),
 * rule matching (ports, protocols, directions, destinations, order,
 * defaults, terminate), DNS decisions, the rebind helper, the moat
 * extensions (dns, limits, publish), every class of schema error with the
 * field path in its message, hostile inputs (deep nesting, bad UTF-8,
 * duplicate keys, oversize, empty), the to_json round trip, explain's
 * first line, every file in examples/, and the `moat policy` command.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/policy.h"
#include "supervisor/policy_cmd.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static struct policy_addr A(const char *s) {
	struct policy_addr a;

	cr_assert_eq(policy_addr_parse(s, &a), 0, "bad test address %s", s);
	return a;
}

/* The slirp defaults, as `moat run` builds them: 10.0.2.2, 10.0.2.3, fd00::2. */
static struct policy_env
env_default(void)
{
	struct policy_env env = { 0 };

	env.host[0] = A("10.0.2.2");
	env.host[1] = A("10.0.2.3");
	env.host[2] = A("fd00::2");
	env.n_host = 3;
	return env;
}

static enum policy_group G(const char *s)
{
	struct policy_env env = env_default();
	struct policy_addr a = A(s);

	return policy_classify(&env, &a);
}

static char errbuf[1024];

static struct policy *parse_ok(const char *json)
{
	struct policy_env env = env_default();
	struct policy *p = NULL;
	int rc = policy_parse(json, strlen(json), "test.json", &env, &p, errbuf, sizeof(errbuf));

	cr_assert_eq(rc, 0, "parse failed: %s\n%s", errbuf, json);
	cr_assert_not_null(p);
	return p;
}

/* Parsing must fail and the message must contain every needle. */
static void parse_fail_n(const char *json, size_t len, const char *n1, const char *n2)
{
	struct policy_env env = env_default();
	struct policy *p = (struct policy *)1;
	int rc = policy_parse(json, len, "test.json", &env, &p, errbuf, sizeof(errbuf));

	cr_assert_eq(rc, -1, "parse should fail: %.200s", json);
	cr_assert_null(p, "out must be NULL on failure");
	cr_assert(!strncmp(errbuf, "test.json", 9), "error must name the file: %s", errbuf);
	cr_assert(!strchr(errbuf, '\n'), "error must be one line: %s", errbuf);
	if (n1)
		cr_assert(strstr(errbuf, n1), "error '%s' lacks '%s'", errbuf, n1);
	if (n2)
		cr_assert(strstr(errbuf, n2), "error '%s' lacks '%s'", errbuf, n2);
}

static void parse_fail(const char *json, const char *n1, const char *n2)
{
	parse_fail_n(json, strlen(json), n1, n2);
}

#define POLICY(rules) \
	"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": [" rules "]}"

static struct policy_decision decide(const struct policy *p, enum policy_direction dir,
				     const char *addr, enum policy_proto proto, uint16_t port,
				     const char *const *names)
{
	struct policy_flow f = {
		.direction = dir, .proto = proto, .dst = A(addr), .port = port, .names = names
	};

	return policy_decide(p, &f);
}

static struct policy_decision egress(const struct policy *p, const char *addr,
				     enum policy_proto proto, uint16_t port)
{
	return decide(p, POLICY_EGRESS, addr, proto, port, NULL);
}

#define expect(d, a, r, t)                                                                       \
	do {                                                                                     \
		struct policy_decision d_ = (d);                                                 \
		cr_assert_eq(d_.allow, (a), "allow: got %d want %d", d_.allow, (a));             \
		cr_assert_eq(d_.rule, (r), "rule: got %d want %d", d_.rule, (r));                \
		cr_assert_eq(d_.terminate, (t), "terminate: got %d want %d", d_.terminate, (t)); \
	} while (0)

static char *examples_dir(void)
{
	static char dir[4096];

#ifdef MOAT_SOURCE_DIR
	snprintf(dir, sizeof(dir), "%s/examples", MOAT_SOURCE_DIR);
#else
	char f[4096];

	/* __FILE__ is .../tests/unit/test_policy.c in CMake builds. */
	snprintf(f, sizeof(f), "%s", __FILE__);
	snprintf(dir, sizeof(dir), "%s/examples", dirname(dirname(dirname(f))));
#endif
	return dir;
}

static struct policy *load_example(const char *name)
{
	struct policy_env env = env_default();
	struct policy *p = NULL;
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", examples_dir(), name);
	cr_assert_eq(policy_load_file(path, &env, &p, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	return p;
}

/* ------------------------------------------------------------------ */
/* Addresses and groups                                                */
/* ------------------------------------------------------------------ */

Test(addr, parse_and_format)
{
	struct policy_addr a;
	char buf[64];

	cr_assert_eq(policy_addr_parse("192.0.2.1", &a), 0);
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(a.addr[0], 192);
	cr_assert_eq(a.addr[3], 1);
	cr_assert_eq(policy_addr_parse("2001:db8::1", &a), 0);
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_eq(a.addr[0], 0x20);
	cr_assert_eq(a.addr[15], 1);
	cr_assert_gt(policy_addr_format(&a, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "2001:db8::1");
	for (const char *bad[] = { "", "1.2.3", "1.2.3.4/8", "[::1]", "1.2.3.256", "::1%eth0",
				   "example.com", " 1.2.3.4", "1.2.3.4:80", NULL },
			**b = bad;
	     *b; b++)
		cr_assert_lt(policy_addr_parse(*b, &a), 0, "'%s' should not parse", *b);
	cr_assert_lt(policy_addr_parse(NULL, &a), 0);
	cr_assert_lt(policy_addr_format(&a, buf, 3), 0, "too small a buffer fails");
}

Test(addr, hostport_good)
{
	struct policy_addr a;
	uint16_t port;

	cr_assert_eq(policy_hostport_parse("1.2.3.4:53", 0, &a, &port), 0);
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(a.addr[0], 1);
	cr_assert_eq(a.addr[3], 4);
	cr_assert_eq(port, 53);
	cr_assert_eq(policy_hostport_parse("[::1]:53", 0, &a, &port), 0);
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_eq(a.addr[15], 1);
	cr_assert_eq(port, 53);
	cr_assert_eq(policy_hostport_parse("[2001:db8::1]:65535", 0, &a, &port), 0);
	cr_assert_eq(a.addr[0], 0x20);
	cr_assert_eq(port, 65535);
	cr_assert_eq(policy_hostport_parse("1.2.3.4:1", 0, &a, &port), 0);
	cr_assert_eq(port, 1);
	cr_assert_eq(policy_hostport_parse("1.2.3.4:00053", 0, &a, &port), 0);
	cr_assert_eq(port, 53);
	/* What each flag lets go. */
	cr_assert_eq(policy_hostport_parse("1.2.3.4:0", POLICY_HOSTPORT_PORT_ZERO, &a, &port), 0);
	cr_assert_eq(port, 0);
	port = 53;
	cr_assert_eq(policy_hostport_parse("1.2.3.4", POLICY_HOSTPORT_PORT_OPTIONAL, &a, &port), 1);
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(port, 53, "a missing port leaves the caller's default");
	cr_assert_eq(policy_hostport_parse("[::1]", POLICY_HOSTPORT_PORT_OPTIONAL, &a, &port), 1);
	cr_assert_eq(a.family, AF_INET6);
	/* Without a port, an unbracketed IPv6 address is just an address: ::1:53. */
	cr_assert_eq(policy_hostport_parse("::1:53", POLICY_HOSTPORT_PORT_OPTIONAL, &a, &port), 1);
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_eq(a.addr[13], 1);
	cr_assert_eq(a.addr[15], 0x53);
	cr_assert_eq(port, 53);
	cr_assert_eq(policy_hostport_parse("[::1]:5353", POLICY_HOSTPORT_PORT_OPTIONAL, &a, &port),
		     0);
	cr_assert_eq(port, 5353);
	cr_assert_eq(policy_hostport_parse(":9090", POLICY_HOSTPORT_HOST_OPTIONAL, &a, &port), 0);
	cr_assert_eq(a.family, AF_UNSPEC);
	cr_assert_eq(port, 9090);
}

/* Every string of @bad (NULL-terminated) is refused with @rc under @flags. */
static void hostport_refuses(unsigned flags, int rc, const char *const *bad)
{
	struct policy_addr a;
	uint16_t port;

	for (; *bad; bad++)
		cr_assert_eq(policy_hostport_parse(*bad, flags, &a, &port), rc,
			     "'%s' (flags %#x): expected %d", *bad, flags, rc);
}

Test(addr, hostport_bad)
{
	struct policy_addr a;
	uint16_t port;

	hostport_refuses(0, POLICY_HOSTPORT_BAD_FORM,
			 (const char *const[]){ "", "1.2.3.4", "[::1]53", "[::1]", "[::1",
						"[::1]x:53", NULL });
	hostport_refuses(POLICY_HOSTPORT_PORT_OPTIONAL, POLICY_HOSTPORT_BAD_FORM,
			 (const char *const[]){ "", "[::1]53", NULL });
	hostport_refuses(0, POLICY_HOSTPORT_BAD_PORT,
			 (const char *const[]){ "[::1]:", "1.2.3.4:", "1.2.3.4:0", "[::1]:0",
						"1.2.3.4:65536", "1.2.3.4:99999999999999999999",
						"1.2.3.4:53x", "1.2.3.4: 53", "1.2.3.4:+53",
						"1.2.3.4:-1", "[::1]:53x", "[::1]:5:3", NULL });
	hostport_refuses(POLICY_HOSTPORT_PORT_ZERO, POLICY_HOSTPORT_BAD_PORT,
			 (const char *const[]){ "1.2.3.4:65536", NULL });
	/*
	 * IPv6 with a port only in brackets, IPv4 never in them; numeric
	 * addresses only, and a numeric address has no zone (refused, as it
	 * always was).
	 */
	hostport_refuses(
		0, POLICY_HOSTPORT_BAD_HOST,
		(const char *const[]){
			":53", "::1:53", "2001:db8::1:53", "[1.2.3.4]:53", "[fe80::1%eth0]:53",
			"example.com:53", "localhost:53", "300.1.2.3:53", " 1.2.3.4:53",
			"[aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa]:53",
			NULL });
	hostport_refuses(POLICY_HOSTPORT_PORT_OPTIONAL, POLICY_HOSTPORT_BAD_HOST,
			 (const char *const[]){ "[1.2.3.4]", "fe80::1%eth0", NULL });
	hostport_refuses(POLICY_HOSTPORT_HOST_OPTIONAL, POLICY_HOSTPORT_BAD_HOST,
			 (const char *const[]){ "[]:53", NULL });
	cr_assert_eq(policy_hostport_parse(NULL, 0, &a, &port), POLICY_HOSTPORT_BAD_FORM);
}

Test(group, names)
{
	cr_assert_str_eq(policy_group_name(POLICY_GROUP_PUBLIC), "public");
	cr_assert_str_eq(policy_group_name(POLICY_GROUP_LINK_LOCAL), "link_local");
	cr_assert_str_eq(policy_group_name(POLICY_GROUP_HOST), "host");
	cr_assert_str_eq(policy_group_name(POLICY_GROUP_METADATA), "metadata");
	cr_assert_str_eq(policy_group_name(POLICY_GROUP_UNSPECIFIED), "unspecified");
	cr_assert_str_eq(policy_group_name((enum policy_group)99), "?");
	cr_assert_str_eq(policy_proto_name(POLICY_PROTO_ICMP), "icmp");
}

Test(group, unspecified)
{
	struct policy_addr none = { 0 };

	cr_assert_eq(G("0.0.0.0"), POLICY_GROUP_UNSPECIFIED);
	cr_assert_eq(G("0.255.255.255"), POLICY_GROUP_UNSPECIFIED);
	cr_assert_eq(G("::"), POLICY_GROUP_UNSPECIFIED);
	cr_assert_eq(G("::ffff:0.0.0.0"), POLICY_GROUP_UNSPECIFIED);
	cr_assert_eq(policy_classify(NULL, &none), POLICY_GROUP_UNSPECIFIED);
	cr_assert_eq(G("1.0.0.0"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("::2"), POLICY_GROUP_PUBLIC);
}

Test(group, host)
{
	struct policy_addr a = A("10.0.2.2");

	cr_assert_eq(G("10.0.2.2"), POLICY_GROUP_HOST);
	cr_assert_eq(G("10.0.2.3"), POLICY_GROUP_HOST);
	cr_assert_eq(G("::ffff:10.0.2.2"), POLICY_GROUP_HOST);
	cr_assert_eq(G("fd00::2"), POLICY_GROUP_HOST);
	cr_assert_eq(G("10.0.2.4"), POLICY_GROUP_PRIVATE);
	cr_assert_eq(G("10.0.2.1"), POLICY_GROUP_PRIVATE);
	cr_assert_eq(G("fd00::3"), POLICY_GROUP_PRIVATE);
	/* Without an env there is no host group. */
	cr_assert_eq(policy_classify(NULL, &a), POLICY_GROUP_PRIVATE);
	/* A public gateway address is host too: host comes before everything. */
	{
		struct policy_env env = { .host = { A("203.0.113.1") }, .n_host = 1 };
		struct policy_addr b = A("203.0.113.1");

		cr_assert_eq(policy_classify(&env, &b), POLICY_GROUP_HOST);
	}
}

Test(group, metadata)
{
	cr_assert_eq(G("169.254.169.254"), POLICY_GROUP_METADATA);
	cr_assert_eq(G("::ffff:169.254.169.254"), POLICY_GROUP_METADATA);
	cr_assert_eq(G("fd00:ec2::254"), POLICY_GROUP_METADATA);
	cr_assert_eq(G("169.254.169.253"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("169.254.169.255"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("fd00:ec2::253"), POLICY_GROUP_PRIVATE);
}

Test(group, loopback)
{
	cr_assert_eq(G("127.0.0.0"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("127.0.0.1"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("127.255.255.255"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("::ffff:127.0.0.1"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("::ffff:127.255.255.255"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("::1"), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(G("126.255.255.255"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("128.0.0.0"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("::ffff:126.255.255.255"), POLICY_GROUP_PUBLIC);
}

Test(group, private)
{
	static const char *const in[] = { "10.0.0.0",
					  "10.255.255.255",
					  "172.16.0.0",
					  "172.31.255.255",
					  "192.168.0.0",
					  "192.168.255.255",
					  "100.64.0.0",
					  "100.127.255.255",
					  "fc00::",
					  "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
					  "::ffff:10.0.0.0",
					  "::ffff:172.31.255.255",
					  "::ffff:192.168.0.0",
					  "::ffff:100.127.255.255",
					  NULL };
	static const char *const out[] = {
		"9.255.255.255",  "11.0.0.0",	     "172.15.255.255",
		"172.32.0.0",	  "192.167.255.255", "192.169.0.0",
		"100.63.255.255", "100.128.0.0",     "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"fe00::",	  "::ffff:11.0.0.0", NULL
	};

	for (const char *const *s = in; *s; s++)
		cr_assert_eq(G(*s), POLICY_GROUP_PRIVATE, "%s should be private", *s);
	for (const char *const *s = out; *s; s++)
		cr_assert_eq(G(*s), POLICY_GROUP_PUBLIC, "%s should be public", *s);
}

Test(group, link_local)
{
	cr_assert_eq(G("169.254.0.0"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("169.254.255.255"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("::ffff:169.254.0.1"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("fe80::"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), POLICY_GROUP_LINK_LOCAL);
	cr_assert_eq(G("169.253.255.255"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("169.255.0.0"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("fec0::"), POLICY_GROUP_PUBLIC);
}

Test(group, multicast_and_broadcast)
{
	cr_assert_eq(G("224.0.0.0"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("239.255.255.255"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("::ffff:224.0.0.251"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("255.255.255.255"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("ff00::"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("ff02::1"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), POLICY_GROUP_MULTICAST);
	cr_assert_eq(G("223.255.255.255"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("240.0.0.0"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("255.255.255.254"), POLICY_GROUP_PUBLIC);
	cr_assert_eq(G("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), POLICY_GROUP_PUBLIC);
}

Test(group, public)
{
	static const char *const pub[] = { "8.8.8.8",
					   "1.1.1.1",
					   "203.0.113.10",
					   "2001:db8::1",
					   "2606:4700:4700::1111",
					   "::ffff:8.8.8.8",
					   "64:ff9b::1",
					   NULL };

	for (const char *const *s = pub; *s; s++)
		cr_assert_eq(G(*s), POLICY_GROUP_PUBLIC, "%s should be public", *s);
}

/* ------------------------------------------------------------------ */
/* Matching                                                            */
/* ------------------------------------------------------------------ */

Test(match, port_range_edges)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": \"any\", \"protocols\": [\"tcp\"],"
		" \"ports\": [{\"start\": 1000, \"end\": 2000}], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": \"any\", \"ports\": [0, 65535],"
		" \"action\": \"allow\"}"));

	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 999), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 1000), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 1500), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 2000), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 2001), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 1000), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 0), true, 1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 65535), true, 1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 1), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 65534), false, -1, false);
	policy_free(p);
}

Test(match, ports_merge_and_bare_numbers)
{
	struct policy *p = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
		       " \"ports\": [443, 80, {\"start\": 81, \"end\": 442}, 8080, 8080],"
		       " \"action\": \"allow\"}"));
	char *j = policy_to_json(p);

	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 80), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 200), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 443), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 444), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 8080), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 79), false, -1, false);
	cr_assert(strstr(j, "\"start\": 80,\n"), "merged range 80-443: %s", j);
	cr_assert(strstr(j, "\"end\": 443\n"), "merged range 80-443: %s", j);
	cr_assert(strstr(j, "\"start\": 8080,\n"), "%s", j);
	free(j);
	policy_free(p);
}

Test(match, protocols)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"192.0.2.0/24\"},"
		" \"protocols\": [\"udp\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"198.51.100.0/24\"},"
		" \"protocols\": [\"icmpv4\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"2001:db8::/32\"},"
		" \"protocols\": [\"icmpv6\", \"tcp\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"203.0.113.0/24\"},"
		" \"protocols\": [], \"action\": \"allow\"}"));

	expect(egress(p, "192.0.2.1", POLICY_PROTO_UDP, 53), true, 0, false);
	expect(egress(p, "192.0.2.1", POLICY_PROTO_TCP, 53), false, -1, false);
	expect(egress(p, "192.0.2.1", POLICY_PROTO_ICMP, 0), false, -1, false);
	expect(egress(p, "198.51.100.7", POLICY_PROTO_ICMP, 0), true, 1, false);
	expect(egress(p, "198.51.100.7", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "2001:db8::5", POLICY_PROTO_ICMP, 0), true, 2, false);
	expect(egress(p, "2001:db8::5", POLICY_PROTO_TCP, 22), true, 2, false);
	expect(egress(p, "2001:db8::5", POLICY_PROTO_UDP, 22), false, -1, false);
	/* [] means every protocol. */
	expect(egress(p, "203.0.113.9", POLICY_PROTO_TCP, 1), true, 3, false);
	expect(egress(p, "203.0.113.9", POLICY_PROTO_UDP, 1), true, 3, false);
	expect(egress(p, "203.0.113.9", POLICY_PROTO_ICMP, 0), true, 3, false);
	policy_free(p);
}

/* microsandbox parity: icmpv4 and icmpv6 are one family each, icmp both. */
Test(match, icmp_families)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": \"any\","
		" \"protocols\": [\"icmpv4\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"2001:db8:1::/48\"},"
		" \"protocols\": [\"icmp\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"2001:db8:2::/48\"},"
		" \"protocols\": [\"icmpv6\"], \"action\": \"allow\"}"));
	char *j = policy_to_json(p);
	struct policy *q;
	char buf[2048];

	expect(egress(p, "198.51.100.7", POLICY_PROTO_ICMP, 0), true, 0, false);
	expect(egress(p, "2001:db8:9::1", POLICY_PROTO_ICMP, 0), false, -1, false);
	expect(egress(p, "::ffff:198.51.100.7", POLICY_PROTO_ICMP, 0), true, 0, false);
	expect(egress(p, "2001:db8:1::1", POLICY_PROTO_ICMP, 0), true, 1, false);
	expect(egress(p, "2001:db8:2::1", POLICY_PROTO_ICMP, 0), true, 2, false);
	cr_assert(strstr(j, "\"icmpv4\""), "%s", j);
	cr_assert(strstr(j, "\"icmpv6\""), "%s", j);
	cr_assert_eq(policy_parse(j, strlen(j), "j", NULL, &q, errbuf, sizeof(errbuf)), 0, "%s",
		     errbuf);
	cr_assert(policy_equal(p, q));
	{
		struct policy_flow f = { .direction = POLICY_EGRESS, .proto = POLICY_PROTO_ICMP };

		cr_assert_eq(policy_addr_parse("2001:db8:9::1", &f.dst), 0);
		policy_explain(p, &f, buf, sizeof(buf));
		cr_assert(strstr(buf, "protocols icmpv4"), "%s", buf);
	}
	policy_free(q);
	free(j);
	policy_free(p);
}

Test(match, icmp_and_port_filters)
{
	struct policy *p = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\", \"ports\": [80],"
		       " \"action\": \"allow\"},"
		       "{\"direction\": \"egress\", \"destination\": {\"group\": \"public\"},"
		       " \"ports\": [{\"start\": 0, \"end\": 65535}], \"action\": \"deny\"}"));

	/* A rule with ports never matches icmp (which has none)... */
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 80), true, 0, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_UDP, 80), true, 0, false);
	/* ...but the full range 0..65535 is no filter at all, so rule 1 does. */
	expect(egress(p, "8.8.8.8", POLICY_PROTO_ICMP, 0), false, 1, false);
	/* So rule 0 is written as tcp and udp only, and reads back equal. */
	{
		char *j = policy_to_json(p);
		struct policy *q = parse_ok(j);

		cr_assert(strstr(j, "\"protocols\": [\n        \"tcp\",\n        \"udp\"\n      ]"),
			  "%s", j);
		cr_assert(policy_equal(p, q));
		policy_free(q);
		free(j);
	}
	policy_free(p);
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"protocols\": [\"icmp\"], \"ports\": [80], \"action\": \"allow\"}"),
		   "rules[0].ports", "icmp has no ports");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
		       " \"protocols\": [\"tcp\", \"icmpv6\"], \"ports\": [80], \"action\": \"allow\"}"),
		"rules[0].ports", "icmp");
}

Test(match, directions)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"allow\", \"default_ingress\": \"deny\", \"rules\": ["
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"192.0.2.0/24\"},"
		" \"action\": \"deny\"},"
		"{\"direction\": \"ingress\", \"destination\": {\"cidr\": \"198.51.100.0/24\"},"
		" \"ports\": [8080], \"action\": \"allow\"},"
		"{\"direction\": \"any\", \"destination\": {\"cidr\": \"203.0.113.0/24\"},"
		" \"action\": \"deny\", \"terminate\": true}]}");

	expect(decide(p, POLICY_EGRESS, "192.0.2.1", POLICY_PROTO_TCP, 80, NULL), false, 0, false);
	expect(decide(p, POLICY_INGRESS, "192.0.2.1", POLICY_PROTO_TCP, 80, NULL), false, -1,
	       false);
	expect(decide(p, POLICY_INGRESS, "198.51.100.1", POLICY_PROTO_TCP, 8080, NULL), true, 1,
	       false);
	expect(decide(p, POLICY_INGRESS, "198.51.100.1", POLICY_PROTO_TCP, 8081, NULL), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "198.51.100.1", POLICY_PROTO_TCP, 8080, NULL), true, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "203.0.113.5", POLICY_PROTO_UDP, 9, NULL), false, 2, true);
	expect(decide(p, POLICY_INGRESS, "203.0.113.5", POLICY_PROTO_UDP, 9, NULL), false, 2, true);
	/* Invalid flows are denied. */
	expect(decide(p, (enum policy_direction)3, "8.8.8.8", POLICY_PROTO_TCP, 1, NULL), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "8.8.8.8", (enum policy_proto)3, 1, NULL), false, -1,
	       false);
	expect(policy_decide(p, NULL), false, -1, false);
	expect(policy_decide(NULL, NULL), false, -1, false);
	policy_free(p);
}

Test(match, first_match_wins_and_defaults)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"allow\", \"default_ingress\": \"allow\", \"rules\": ["
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.1.0.0/16\"},"
		" \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.0.0.0/8\"},"
		" \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.1.2.0/24\"},"
		" \"action\": \"allow\"}]}");

	expect(egress(p, "10.1.2.3", POLICY_PROTO_TCP, 80), false, 0, false);
	expect(egress(p, "10.2.0.1", POLICY_PROTO_TCP, 80), true, 1, false);
	expect(egress(p, "11.0.0.1", POLICY_PROTO_TCP, 80), true, -1, false);
	expect(decide(p, POLICY_INGRESS, "10.1.2.3", POLICY_PROTO_TCP, 80, NULL), true, -1, false);
	policy_free(p);
}

Test(match, terminate)
{
	struct policy *p = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"metadata\"},"
		       " \"action\": \"deny\", \"terminate\": true},"
		       "{\"direction\": \"egress\", \"destination\": {\"group\": \"loopback\"},"
		       " \"action\": \"deny\", \"terminate\": false},"
		       "{\"direction\": \"egress\", \"destination\": {\"group\": \"public\"},"
		       " \"action\": \"allow\", \"terminate\": false}"));

	expect(egress(p, "169.254.169.254", POLICY_PROTO_TCP, 80), false, 0, true);
	expect(egress(p, "fd00:ec2::254", POLICY_PROTO_TCP, 80), false, 0, true);
	expect(egress(p, "127.0.0.1", POLICY_PROTO_TCP, 80), false, 1, false);
	expect(egress(p, "8.8.4.4", POLICY_PROTO_TCP, 80), true, 2, false);
	policy_free(p);
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"action\": \"allow\", \"terminate\": true}"),
		   "rules[0].terminate", "only a deny rule");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"action\": \"deny\", \"terminate\": 1}"),
		   "rules[0].terminate", "true or false");
}

Test(match, cidr)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.1.2.3/8\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"::ffff:192.168.0.0/112\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"2001:db8::/32\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"198.51.100.7\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"::/0\"}, \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"0.0.0.0/0\"}, \"action\": \"deny\", \"terminate\": true},"
		"{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"allow\"}"));
	char *j = policy_to_json(p);

	/* Host bits are cleared; mapped CIDRs are folded to IPv4. */
	cr_assert(strstr(j, "\"10.0.0.0/8\""), "%s", j);
	cr_assert(strstr(j, "\"192.168.0.0/16\""), "%s", j);
	cr_assert(strstr(j, "\"198.51.100.7/32\""), "%s", j);
	free(j);
	expect(egress(p, "10.0.0.0", POLICY_PROTO_TCP, 1), true, 0, false);
	expect(egress(p, "10.255.255.255", POLICY_PROTO_TCP, 1), true, 0, false);
	expect(egress(p, "::ffff:10.9.9.9", POLICY_PROTO_TCP, 1), true, 0, false);
	expect(egress(p, "192.168.255.255", POLICY_PROTO_TCP, 1), true, 1, false);
	expect(egress(p, "2001:db8:ffff::1", POLICY_PROTO_TCP, 1), true, 2, false);
	expect(egress(p, "2001:db9::1", POLICY_PROTO_TCP, 1), false, 4, false);
	expect(egress(p, "198.51.100.7", POLICY_PROTO_TCP, 1), true, 3, false);
	expect(egress(p, "198.51.100.8", POLICY_PROTO_TCP, 1), false, 5, true);
	/* A v6 CIDR never matches an IPv4(-mapped) address. */
	expect(egress(p, "::ffff:8.8.8.8", POLICY_PROTO_TCP, 1), false, 5, true);
	/* The unspecified address is matched by "any" only. */
	expect(egress(p, "0.0.0.0", POLICY_PROTO_TCP, 1), true, 6, false);
	expect(egress(p, "::", POLICY_PROTO_TCP, 1), true, 6, false);
	policy_free(p);
}

Test(match, cidr_errors)
{
	static const char *const bad[][2] = {
		{ "10.0.0.0/33", "0..32" },
		{ "2001:db8::/129", "0..128" },
		{ "10.0.0.0/", "prefix" },
		{ "10.0.0.0/abc", "prefix" },
		{ "10.0.0.0/-1", "prefix" },
		{ "10.0.0/8", "not a CIDR" },
		{ "", "not a CIDR" },
		{ "/8", "not a CIDR" },
		{ "example.com/8", "not a CIDR" },
		{ "10.0.0.0/8 ", "prefix" },
	};
	char json[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(
			json, sizeof(json),
			POLICY("{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"allow\"},"
			       "{\"direction\": \"egress\", \"destination\": {\"cidr\": \"%s\"}, \"action\": \"allow\"}"),
			bad[i][0]);
		parse_fail(json, "rules[1].destination.cidr", bad[i][1]);
	}
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"cidr\": 10}, \"action\": \"allow\"}"),
		"rules[0].destination.cidr", "string");
}

Test(match, groups)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"host\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"metadata\"}, \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"loopback\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"private\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"link_local\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"multicast\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"public\"}, \"action\": \"allow\"}"));

	expect(egress(p, "10.0.2.2", POLICY_PROTO_TCP, 22), true, 0, false);
	expect(egress(p, "fd00::2", POLICY_PROTO_TCP, 22), true, 0, false);
	expect(egress(p, "169.254.169.254", POLICY_PROTO_TCP, 80), false, 1, false);
	expect(egress(p, "127.0.0.53", POLICY_PROTO_UDP, 53), true, 2, false);
	expect(egress(p, "172.20.0.1", POLICY_PROTO_TCP, 80), true, 3, false);
	expect(egress(p, "fe80::1", POLICY_PROTO_TCP, 80), true, 4, false);
	expect(egress(p, "239.1.1.1", POLICY_PROTO_UDP, 5000), true, 5, false);
	expect(egress(p, "255.255.255.255", POLICY_PROTO_UDP, 67), true, 5, false);
	expect(egress(p, "2a00:1450::1", POLICY_PROTO_TCP, 443), true, 6, false);
	/* No group matches the unspecified address. */
	expect(egress(p, "0.0.0.0", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "::", POLICY_PROTO_TCP, 80), false, -1, false);
	policy_free(p);
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"internet\"}, \"action\": \"allow\"}"),
		"rules[0].destination.group", "\"internet\" is not one of");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"unspecified\"}, \"action\": \"allow\"}"),
		"rules[0].destination.group", "is not one of");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"\"}, \"action\": \"allow\"}"),
		"rules[0].destination.group", "is not one of");
}

Test(match, domains)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"domain\": \"API.Example.COM.\"},"
		" \"protocols\": [\"tcp\"], \"ports\": [443], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \".pythonhosted.org\"},"
		" \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \"evil.test\"},"
		" \"action\": \"deny\", \"terminate\": true}"));
	const char *api[] = { "api.example.com", NULL };
	const char *api_upper_dot[] = { "API.EXAMPLE.COM.", NULL };
	const char *other[] = { "www.example.com", "example.com", NULL };
	const char *several[] = { "x.invalid", "api.example.com", NULL };
	const char *apex[] = { "pythonhosted.org", NULL };
	const char *sub[] = { "files.pythonhosted.org", NULL };
	const char *deep[] = { "a.b.c.pythonhosted.org.", NULL };
	const char *lookalike[] = { "evilpythonhosted.org", NULL };
	const char *evil[] = { "x.evil.test", NULL };
	const char *none[] = { NULL };
	char *j = policy_to_json(p);

	cr_assert(strstr(j, "\"api.example.com\""), "normalized: %s", j);
	cr_assert(strstr(j, "\"pythonhosted.org\""), "leading dot dropped: %s", j);
	free(j);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, api), true, 0,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, api_upper_dot),
	       true, 0, false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 80, api), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, other), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, several), true, 0,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, NULL), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, none), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "151.101.0.223", POLICY_PROTO_TCP, 443, apex), true, 1,
	       false);
	expect(decide(p, POLICY_EGRESS, "151.101.0.223", POLICY_PROTO_UDP, 443, sub), true, 1,
	       false);
	expect(decide(p, POLICY_EGRESS, "151.101.0.223", POLICY_PROTO_TCP, 443, deep), true, 1,
	       false);
	expect(decide(p, POLICY_EGRESS, "151.101.0.223", POLICY_PROTO_TCP, 443, lookalike), false,
	       -1, false);
	expect(decide(p, POLICY_EGRESS, "192.0.2.66", POLICY_PROTO_TCP, 443, evil), false, 2, true);
	policy_free(p);
}

Test(match, domain_errors)
{
	static const char *const bad[][2] = {
		{ "", "empty" },
		{ ".", "empty" },
		{ "a..b", "empty label" },
		{ "..example.com", "empty label" },
		{ "example.com..", "empty label" },
		{ "*.example.com", "domain_suffix" },
		{ "exa mple.com", "letters, digits" },
		{ "http://example.com", "scheme" },
		{ "example.com:443", "port" },
		{ "user@example.com", "user" },
		{ "ex\\u00e4mple.com", "letters, digits" },
	};
	char json[1024], label64[65], long_name[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(
			json, sizeof(json),
			POLICY("{\"direction\": \"egress\", \"destination\": {\"domain\": \"%s\"}, \"action\": \"allow\"}"),
			bad[i][0]);
		parse_fail(json, "rules[0].destination.domain", bad[i][1]);
	}
	memset(label64, 'a', 64);
	label64[64] = '\0';
	snprintf(
		json, sizeof(json),
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \"%s.com\"}, \"action\": \"allow\"}"),
		label64);
	parse_fail(json, "rules[0].destination.domain_suffix", "longer than 63");
	/* 63 is fine. */
	label64[63] = '\0';
	snprintf(
		json, sizeof(json),
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \"%s.com\"}, \"action\": \"allow\"}"),
		label64);
	policy_free(parse_ok(json));
	/* 253 characters is the most; 254 is too many. */
	for (int i = 0; i < 254; i++)
		long_name[i] = (i % 2) ? '.' : 'a';
	long_name[253] = '\0';
	snprintf(
		json, sizeof(json),
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain\": \"%s\"}, \"action\": \"allow\"}"),
		long_name);
	policy_free(parse_ok(json));
	long_name[253] = 'b';
	long_name[254] = '\0';
	snprintf(
		json, sizeof(json),
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain\": \"%s\"}, \"action\": \"allow\"}"),
		long_name);
	parse_fail(json, "rules[0].destination.domain", "253");
	/* Underscore labels (SRV, DKIM) are real names. */
	policy_free(parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"domain\": \"_http._tcp.example.com\"}, \"action\": \"allow\"}")));
}

/* ------------------------------------------------------------------ */
/* DNS                                                                 */
/* ------------------------------------------------------------------ */

Test(dns, default_policy_allows_every_query)
{
	struct policy_env env = env_default();
	struct policy *p = policy_default(&env);

	cr_assert_not_null(p);
	expect(policy_decide_dns(p, "example.com", POLICY_PROTO_UDP), true, 0, false);
	expect(policy_decide_dns(p, "metadata.google.internal", POLICY_PROTO_UDP), true, 0, false);
	expect(policy_decide_dns(p, "", POLICY_PROTO_UDP), true, 0, false);
	expect(policy_decide_dns(p, NULL, POLICY_PROTO_UDP), true, 0, false);
	policy_free(p);
}

Test(dns, rules_in_order)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"0.0.0.0/0\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"public\"}, \"action\": \"allow\"},"
		"{\"direction\": \"ingress\", \"destination\": {\"domain\": \"in.example\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"domain\": \"api.example.com\"},"
		" \"protocols\": [\"tcp\"], \"ports\": [443], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \"blocked.example\"},"
		" \"action\": \"deny\", \"terminate\": true},"
		"{\"direction\": \"egress\", \"destination\": \"any\", \"protocols\": [\"tcp\"],"
		" \"ports\": [443], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"host\"},"
		" \"protocols\": [\"icmp\"], \"action\": \"allow\"},"
		"{\"direction\": \"any\", \"destination\": {\"domain_suffix\": \"corp.example\"}, \"action\": \"allow\"}"));

	/* cidr, public group and ingress rules never match a query. */
	expect(policy_decide_dns(p, "in.example", POLICY_PROTO_UDP), false, -1, false);
	/* A domain rule matches the query whatever its protocols and ports. */
	expect(policy_decide_dns(p, "api.example.com", POLICY_PROTO_UDP), true, 3, false);
	expect(policy_decide_dns(p, "API.EXAMPLE.COM.", POLICY_PROTO_UDP), true, 3, false);
	expect(policy_decide_dns(p, "www.api.example.com", POLICY_PROTO_UDP), false, -1, false);
	expect(policy_decide_dns(p, "blocked.example", POLICY_PROTO_UDP), false, 4, true);
	expect(policy_decide_dns(p, "x.y.blocked.example", POLICY_PROTO_UDP), false, 4, true);
	/* "any" on tcp/443 and host on icmp do not admit DNS. */
	expect(policy_decide_dns(p, "a.corp.example", POLICY_PROTO_UDP), true, 7, false);
	expect(policy_decide_dns(p, "example.org", POLICY_PROTO_UDP), false, -1, false);
	policy_free(p);
}

Test(dns, any_and_host_rules_that_admit_dns)
{
	struct policy *p1 = parse_ok(
		"{\"default_egress\": \"allow\", \"default_ingress\": \"deny\", \"rules\": ["
		"{\"direction\": \"egress\", \"destination\": \"any\", \"protocols\": [\"udp\"],"
		" \"ports\": [{\"start\": 1, \"end\": 1024}], \"action\": \"deny\"}]}");
	struct policy *p2 = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"host\"},"
		       " \"protocols\": [\"tcp\"], \"ports\": [53], \"action\": \"allow\"}"));
	struct policy *p3 = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"group\": \"host\"},"
		       " \"ports\": [54], \"action\": \"allow\"}"));

	expect(policy_decide_dns(p1, "example.com", POLICY_PROTO_UDP), false, 0, false);
	/* microsandbox parity: the rule admits DNS over tcp only */
	expect(policy_decide_dns(p2, "example.com", POLICY_PROTO_UDP), false, -1, false);
	expect(policy_decide_dns(p2, "example.com", POLICY_PROTO_TCP), true, 0, false);
	expect(policy_decide_dns(p1, "example.com", POLICY_PROTO_TCP), true, -1, false);
	expect(policy_decide_dns(p2, "example.com", (enum policy_proto)0), false, -1, false);
	expect(policy_decide_dns(p3, "example.com", POLICY_PROTO_UDP), false, -1, false);
	policy_free(p1);
	policy_free(p2);
	policy_free(p3);
}

Test(dns, rebind_helper)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"allow\","
		" \"protocols\": [\"udp\"]},"
		"{\"direction\": \"egress\", \"destination\": {\"domain\": \"internal.example\"}, \"action\": \"allow\"},"
		"{\"direction\": \"ingress\", \"destination\": {\"group\": \"loopback\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.0.0.0/8\"},"
		" \"protocols\": [\"tcp\"], \"ports\": [22], \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.0.0.0/8\"}, \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"192.168.1.0/24\"}, \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"private\"},"
		" \"protocols\": [\"tcp\"], \"ports\": [443], \"action\": \"allow\"}"));
	struct policy_addr a10 = A("10.1.2.3"), m10 = A("::ffff:10.1.2.3"), a192 = A("192.168.1.7");
	struct policy_addr a172 = A("172.16.0.1"), lo = A("127.0.0.1"), un = A("0.0.0.0");

	/* Exact protocol and port: the first matching address rule decides. */
	cr_assert(policy_address_rule_allows(p, &a10, POLICY_PROTO_TCP, 443));
	cr_assert(policy_address_rule_allows(p, &m10, POLICY_PROTO_TCP, 443));
	cr_assert_not(policy_address_rule_allows(p, &a10, POLICY_PROTO_TCP, 22));
	cr_assert(policy_address_rule_allows(p, &a10, POLICY_PROTO_UDP, 22));
	/* Wildcards: some flow to it is allowed by an address rule. */
	cr_assert(policy_address_rule_allows(p, &a10, 0, 0));
	/* The deny rule on 192.168.1.0/24 comes first. */
	cr_assert_not(policy_address_rule_allows(p, &a192, 0, 0));
	cr_assert_not(policy_address_rule_allows(p, &a192, POLICY_PROTO_TCP, 443));
	/* Group rule: only tcp/443. */
	cr_assert(policy_address_rule_allows(p, &a172, 0, 0));
	cr_assert(policy_address_rule_allows(p, &a172, POLICY_PROTO_TCP, 443));
	cr_assert_not(policy_address_rule_allows(p, &a172, POLICY_PROTO_TCP, 80));
	cr_assert_not(policy_address_rule_allows(p, &a172, POLICY_PROTO_ICMP, 0));
	/* "any" allow rules, domain rules and ingress rules do not count. */
	cr_assert_not(policy_address_rule_allows(p, &lo, 0, 0));
	cr_assert_not(policy_address_rule_allows(p, &lo, POLICY_PROTO_UDP, 53));
	cr_assert_not(policy_address_rule_allows(p, &un, 0, 0));
	cr_assert_not(policy_address_rule_allows(NULL, &a10, 0, 0));
	policy_free(p);

	/* A deny "any" that covers everything stops the walk; a partial one does not. */
	p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": \"any\", \"protocols\": [\"tcp\"],"
		" \"ports\": [25], \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"private\"}, \"action\": \"allow\"}"));
	cr_assert(policy_address_rule_allows(p, &a10, 0, 0));
	cr_assert_not(policy_address_rule_allows(p, &a10, POLICY_PROTO_TCP, 25));
	policy_free(p);
	p = parse_ok(
		"{\"default_egress\": \"allow\", \"default_ingress\": \"deny\", \"rules\": ["
		"{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"deny\"},"
		"{\"direction\": \"egress\", \"destination\": {\"group\": \"private\"}, \"action\": \"allow\"}]}");
	cr_assert_not(policy_address_rule_allows(p, &a10, 0, 0));
	policy_free(p);
	/* The default does not count. */
	p = parse_ok("{\"default_egress\": \"allow\", \"default_ingress\": \"allow\"}");
	cr_assert_not(policy_address_rule_allows(p, &a10, 0, 0));
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* The default policy and the examples                                 */
/* ------------------------------------------------------------------ */

Test(defaults, builtin_policy)
{
	struct policy_env env = env_default();
	struct policy *p = policy_default(&env), *q = parse_ok(policy_default_text());

	cr_assert_not_null(p);
	cr_assert(policy_equal(p, q));
	cr_assert_eq(policy_rule_count(p), 2);
	expect(egress(p, "10.0.2.3", POLICY_PROTO_UDP, 53), true, 0, false);
	expect(egress(p, "10.0.2.3", POLICY_PROTO_TCP, 53), true, 0, false);
	expect(egress(p, "10.0.2.2", POLICY_PROTO_UDP, 53), true, 0, false);
	expect(egress(p, "10.0.2.2", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "10.0.2.3", POLICY_PROTO_ICMP, 0), false, -1, false);
	expect(egress(p, "203.0.113.10", POLICY_PROTO_TCP, 443), true, 1, false);
	expect(egress(p, "2606:4700::1", POLICY_PROTO_UDP, 443), true, 1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_ICMP, 0), true, 1, false);
	expect(egress(p, "192.168.1.1", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "127.0.0.1", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "169.254.1.1", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "169.254.169.254", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(egress(p, "224.0.0.251", POLICY_PROTO_UDP, 5353), false, -1, false);
	expect(egress(p, "0.0.0.0", POLICY_PROTO_TCP, 80), false, -1, false);
	expect(decide(p, POLICY_INGRESS, "192.0.2.1", POLICY_PROTO_TCP, 8080, NULL), true, -1,
	       false);
	cr_assert(policy_dns(p)->rebind_protection);
	cr_assert_eq(policy_dns(p)->timeout_ms, 2000);
	cr_assert_eq(policy_dns(p)->n_nameservers, 0);
	cr_assert_not(policy_limits(p)->max_tcp_connections.set);
	cr_assert_not(policy_has_domain_rules(p));
	policy_free(p);
	policy_free(q);
}

Test(examples, all_parse)
{
	struct policy_env env = env_default();
	DIR *d = opendir(examples_dir());
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "cannot open %s", examples_dir());
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct policy *p = NULL, *q = NULL;
		char path[4400];
		char *j;

		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", examples_dir(), e->d_name);
		cr_assert_eq(policy_load_file(path, &env, &p, errbuf, sizeof(errbuf)), 0, "%s",
			     errbuf);
		j = policy_to_json(p);
		cr_assert_not_null(j);
		cr_assert_eq(policy_parse(j, strlen(j), path, &env, &q, errbuf, sizeof(errbuf)), 0,
			     "%s", errbuf);
		cr_assert(policy_equal(p, q), "%s does not round-trip", path);
		free(j);
		policy_free(p);
		policy_free(q);
		n++;
	}
	closedir(d);
	cr_assert_geq(n, 4, "expected at least 4 examples, found %d", n);
}

Test(examples, default_is_builtin)
{
	struct policy_env env = env_default();
	struct policy *p = load_example("default.json"), *q = policy_default(&env);

	cr_assert(policy_equal(p, q));
	policy_free(p);
	policy_free(q);
}

Test(examples, public_only)
{
	struct policy *p = load_example("public-only.json");

	expect(egress(p, "169.254.169.254", POLICY_PROTO_TCP, 80), false, 0, true);
	expect(egress(p, "fd00:ec2::254", POLICY_PROTO_TCP, 80), false, 0, true);
	expect(egress(p, "10.0.2.3", POLICY_PROTO_UDP, 53), true, 1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 443), true, 2, false);
	expect(egress(p, "10.0.0.1", POLICY_PROTO_TCP, 443), false, -1, false);
	expect(egress(p, "10.0.2.2", POLICY_PROTO_TCP, 22), false, -1, false);
	cr_assert(policy_limits(p)->max_tcp_connections.set);
	cr_assert_eq(policy_limits(p)->max_tcp_connections.value, 512);
	policy_free(p);
}

Test(examples, single_api)
{
	struct policy *p = load_example("single-api.json");
	const char *api[] = { "api.example.com", NULL };
	const char *other[] = { "www.example.com", NULL };

	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, api), true, 0,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 80, api), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, other), false, -1,
	       false);
	expect(decide(p, POLICY_EGRESS, "93.184.216.34", POLICY_PROTO_TCP, 443, NULL), false, -1,
	       false);
	expect(egress(p, "10.0.2.3", POLICY_PROTO_UDP, 53), true, 1, false);
	expect(policy_decide_dns(p, "api.example.com", POLICY_PROTO_UDP), true, 0, false);
	cr_assert(policy_has_domain_rules(p));
	expect(decide(p, POLICY_INGRESS, "192.0.2.1", POLICY_PROTO_TCP, 22, NULL), false, -1,
	       false);
	policy_free(p);
}

Test(examples, host_dev_server)
{
	struct policy *p = load_example("host-dev-server.json");

	expect(egress(p, "10.0.2.2", POLICY_PROTO_TCP, 3000), true, 1, false);
	expect(egress(p, "fd00::2", POLICY_PROTO_TCP, 3000), true, 1, false);
	expect(egress(p, "10.0.2.2", POLICY_PROTO_TCP, 3001), false, -1, false);
	expect(egress(p, "10.0.2.2", POLICY_PROTO_UDP, 3000), false, -1, false);
	expect(egress(p, "127.0.0.1", POLICY_PROTO_TCP, 3000), false, -1, false);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 3000), true, 2, false);
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* Extensions: dns, limits, publish                                    */
/* ------------------------------------------------------------------ */

Test(ext, dns_section)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		" \"dns\": {\"nameservers\": [\"192.0.2.53\", \"192.0.2.54:5353\","
		" \"[2001:db8::53]:53\", \"2001:db8::54\", \"[2001:db8::55]\"],"
		" \"rebind_protection\": false, \"timeout_ms\": 750}}");
	const struct policy_dns *d = policy_dns(p);
	char *j = policy_to_json(p);

	cr_assert_eq(d->n_nameservers, 5);
	cr_assert_eq(d->nameservers[0].addr.family, AF_INET);
	cr_assert_eq(d->nameservers[0].port, 53);
	cr_assert_eq(d->nameservers[1].port, 5353);
	cr_assert_eq(d->nameservers[1].addr.addr[3], 54);
	cr_assert_eq(d->nameservers[2].addr.family, AF_INET6);
	cr_assert_eq(d->nameservers[2].port, 53);
	cr_assert_eq(d->nameservers[3].addr.addr[15], 0x54);
	cr_assert_eq(d->nameservers[3].port, 53);
	cr_assert_eq(d->nameservers[4].addr.addr[15], 0x55);
	cr_assert_not(d->rebind_protection);
	cr_assert_eq(d->timeout_ms, 750);
	cr_assert(strstr(j, "\"192.0.2.54:5353\""), "%s", j);
	cr_assert(strstr(j, "\"[2001:db8::53]:53\""), "%s", j);
	free(j);
	policy_free(p);

	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"dns_google\"]}}",
		   "dns.nameservers[0]", "not an address");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"1.2.3.4:0\"]}}",
		   "dns.nameservers[0]", "not an address");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"1.1.1.1\", \"1.2.3.4:65536\"]}}",
		   "dns.nameservers[1]", NULL);
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"[1.2.3.4]:53\"]}}",
		   "dns.nameservers[0]", NULL);
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"0.0.0.0\"]}}",
		   "dns.nameservers[0]", "unspecified");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [53]}}",
		   "dns.nameservers[0]", "string");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"1.1.1.1\",\"1.1.1.2\",\"1.1.1.3\",\"1.1.1.4\","
		   "\"1.1.1.5\",\"1.1.1.6\",\"1.1.1.7\",\"1.1.1.8\",\"1.1.1.9\"]}}",
		   "dns.nameservers", "more than 8");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"timeout_ms\": 0}}",
		   "dns.timeout_ms", "1..60000");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"timeout_ms\": 60001}}",
		   "dns.timeout_ms", "1..60000");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"rebind_protection\": \"yes\"}}",
		   "dns.rebind_protection", "true or false");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"upstream\": []}}",
		   "dns.upstream", "unknown key");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"dns\": []}",
		   "dns", "must be an object");
}

Test(ext, limits_section)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"limits\": {"
		" \"max_tcp_connections\": 100,"
		" \"max_udp_flows\": {\"limit\": 50},"
		" \"new_connections_per_second\": {\"limit\": 20, \"on_exceed\": \"terminate\"},"
		" \"egress_bytes_per_second\": {\"limit\": 1000000000000, \"on_exceed\": \"refuse\"}}}");
	const struct policy_limits *l = policy_limits(p);

	cr_assert(l->max_tcp_connections.set);
	cr_assert_eq(l->max_tcp_connections.value, 100);
	cr_assert_eq(l->max_tcp_connections.on_exceed, POLICY_EXCEED_REFUSE);
	cr_assert(l->max_udp_flows.set);
	cr_assert_eq(l->max_udp_flows.value, 50);
	cr_assert_eq(l->max_udp_flows.on_exceed, POLICY_EXCEED_REFUSE);
	cr_assert_eq(l->new_connections_per_second.value, 20);
	cr_assert_eq(l->new_connections_per_second.on_exceed, POLICY_EXCEED_TERMINATE);
	cr_assert_eq(l->egress_bytes_per_second.value, 1000000000000ull);
	cr_assert_not(l->ingress_bytes_per_second.set);
	policy_free(p);

	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_tcp_connections\": 0}}",
		   "limits.max_tcp_connections", "at least 1");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_tcp_connections\": -5}}",
		   "limits.max_tcp_connections", "at least 1");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_udp_flows\": \"10\"}}",
		   "limits.max_udp_flows", "positive integer");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_udp_flows\": 1.5}}",
		   "limits.max_udp_flows", "positive integer");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_udp_flows\": {\"on_exceed\": \"refuse\"}}}",
		   "limits.max_udp_flows.limit", "missing");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_udp_flows\": {\"limit\": 5, \"on_exceed\": \"kill\"}}}",
		   "limits.max_udp_flows.on_exceed", "\"refuse\" or \"terminate\"");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_udp_flows\": {\"limit\": 5, \"burst\": 9}}}",
		   "limits.max_udp_flows.burst", "unknown key");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"limits\": {\"max_connections\": 5}}",
		   "limits.max_connections", "unknown key");
}

Test(ext, publish_section)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"allow\", \"publish\": ["
		" {\"host_port\": 8080, \"guest_port\": 80},"
		" {\"host_address\": \"::1\", \"host_port\": 5353, \"guest_port\": 53, \"protocol\": \"udp\"},"
		" {\"host_address\": \"0.0.0.0\", \"host_port\": 8080, \"guest_port\": 80, \"protocol\": \"udp\"}]}");
	const struct policy_publish *pb;
	char buf[64];

	cr_assert_eq(policy_publish(p, &pb), 3);
	policy_addr_format(&pb[0].host_addr, buf, sizeof(buf));
	cr_assert_str_eq(buf, "127.0.0.1");
	cr_assert_eq(pb[0].host_port, 8080);
	cr_assert_eq(pb[0].guest_port, 80);
	cr_assert_eq(pb[0].proto, POLICY_PROTO_TCP);
	cr_assert_eq(pb[1].host_addr.family, AF_INET6);
	cr_assert_eq(pb[1].proto, POLICY_PROTO_UDP);
	cr_assert_eq(pb[2].host_port, 8080);
	policy_free(p);

	p = parse_ok("{\"default_egress\": \"deny\", \"default_ingress\": \"allow\"}");
	cr_assert_eq(policy_publish(p, &pb), 0);
	cr_assert_null(pb);
	policy_free(p);

	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"guest_port\": 80}]}",
		   "publish[0].host_port", "missing");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"host_port\": 80}]}",
		   "publish[0].guest_port", "missing");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"host_port\": 0, \"guest_port\": 80}]}",
		   "publish[0].host_port", "1..65535");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"host_port\": 80, \"guest_port\": 65536}]}",
		   "publish[0].guest_port", "1..65535");
	parse_fail(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		" \"publish\": [{\"host_port\": 80, \"guest_port\": 80, \"protocol\": \"icmp\"}]}",
		"publish[0].protocol", "\"tcp\" or \"udp\"");
	parse_fail(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		" \"publish\": [{\"host_address\": \"localhost\", \"host_port\": 80, \"guest_port\": 80}]}",
		"publish[0].host_address", "IP address");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"host_port\": 80, \"guest_port\": 80},"
		   " {\"host_address\": \"127.0.0.1\", \"host_port\": 80, \"guest_port\": 81}]}",
		   "publish[1]", "publish[0]");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"publish\": [{\"host_port\": 80, \"guest_port\": 80, \"bind\": 1}]}",
		   "publish[0].bind", "unknown key");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"publish\": {}}",
		   "publish", "list");
}

/* ------------------------------------------------------------------ */
/* Schema errors                                                       */
/* ------------------------------------------------------------------ */

#define RULE_OK "{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"allow\"}"

Test(schema, top_level)
{
	parse_fail("{\"default_egress\": \"maybe\", \"default_ingress\": \"deny\"}",
		   "default_egress", "\"allow\" or \"deny\"");
	parse_fail("{\"default_egress\": true, \"default_ingress\": \"deny\"}", "default_egress",
		   "\"allow\" or \"deny\"");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rule\": []}",
		   "test.json: rule: unknown key", "rules");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": {}}",
		   "test.json: rules:", "list");
	parse_fail("[]", "test.json:", "JSON object");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": [3]}",
		   "rules[0]", "must be an object");
}

Test(schema, rule_fields)
{
	parse_fail(
		POLICY(RULE_OK
		       ", {\"direction\": \"egress\", \"destinaton\": \"any\", \"action\": \"allow\"}"),
		"test.json: rules[1].destinaton:", "unknown key");
	parse_fail(POLICY("{\"destination\": \"any\", \"action\": \"allow\"}"),
		   "rules[0].direction", "missing");
	parse_fail(POLICY("{\"direction\": \"egress\", \"action\": \"allow\"}"),
		   "rules[0].destination", "missing");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\"}"),
		   "rules[0].action", "missing");
	parse_fail(
		POLICY("{\"direction\": \"outbound\", \"destination\": \"any\", \"action\": \"allow\"}"),
		"rules[0].direction", "\"outbound\" is not \"egress\", \"ingress\" or \"any\"");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\", \"action\": \"permit\"}"),
		"rules[0].action", "\"allow\" or \"deny\"");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": \"all\", \"action\": \"allow\"}"),
		"rules[0].destination", "\"any\" or an object");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {}, \"action\": \"allow\"}"),
		"rules[0].destination", "\"any\" or an object");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": {\"cidr\": \"10.0.0.0/8\","
			  " \"group\": \"public\"}, \"action\": \"allow\"}"),
		   "rules[0].destination", "exactly one");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"host\": \"x\"}, \"action\": \"allow\"}"),
		"rules[0].destination.host", "unknown key");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\", \"protocols\": \"tcp\","
		       " \"action\": \"allow\"}"),
		"rules[0].protocols", "list");
	parse_fail(POLICY(RULE_OK "," RULE_OK
				  ", {\"direction\": \"egress\", \"destination\": \"any\","
				  " \"protocols\": [\"tcp\", \"sctp\"], \"action\": \"allow\"}"),
		   "test.json: rules[2].protocols[1]:", "\"sctp\" is not one of tcp, udp, icmp");
}

Test(schema, ports)
{
	parse_fail(POLICY(RULE_OK
			  "," RULE_OK "," RULE_OK ", {\"direction\": \"egress\","
			  " \"destination\": \"any\", \"ports\": [{\"start\": 1, \"end\": 65536}],"
			  " \"action\": \"allow\"}"),
		   "test.json: rules[3].ports[0].end: must be an integer 0..65535", NULL);
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [{\"start\": -1, \"end\": 5}], \"action\": \"allow\"}"),
		   "rules[0].ports[0].start", "0..65535");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [80, 70000], \"action\": \"allow\"}"),
		   "rules[0].ports[1]", "0..65535");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [{\"start\": 90, \"end\": 80}], \"action\": \"allow\"}"),
		   "rules[0].ports[0]", "start 90 is greater than end 80");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [{\"start\": 90}], \"action\": \"allow\"}"),
		   "rules[0].ports[0].end", "missing");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [{\"end\": 90}], \"action\": \"allow\"}"),
		   "rules[0].ports[0].start", "missing");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
		       " \"ports\": [{\"start\": 1, \"end\": 2, \"step\": 1}], \"action\": \"allow\"}"),
		"rules[0].ports[0].step", "unknown key");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [\"80\"], \"action\": \"allow\"}"),
		   "rules[0].ports[0]", "port number");
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": [80.0], \"action\": \"allow\"}"),
		   "rules[0].ports[0]", NULL);
	parse_fail(POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
			  " \"ports\": 80, \"action\": \"allow\"}"),
		   "rules[0].ports", "list");
}

Test(schema, values_are_sanitized_in_messages)
{
	parse_fail(
		POLICY("{\"direction\": \"eg\\u001bress\", \"destination\": \"any\", \"action\": \"allow\"}"),
		"\"eg?ress\"", NULL);
	cr_assert(!strchr(errbuf, 0x1b));
}

Test(schema, too_many_rules)
{
	size_t cap = (POLICY_MAX_RULES + 2) * sizeof(RULE_OK ",") + 200, o;
	char *s = malloc(cap);

	o = (size_t)snprintf(
		s, cap,
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": [");
	for (int i = 0; i <= POLICY_MAX_RULES; i++)
		o += (size_t)snprintf(s + o, cap - o, "%s" RULE_OK, i ? "," : "");
	snprintf(s + o, cap - o, "]}");
	parse_fail(s, "rules", "more than 4096");
	free(s);
}

/* ------------------------------------------------------------------ */
/* Hostile input                                                       */
/* ------------------------------------------------------------------ */

Test(input, syntax_error_has_line_and_column)
{
	parse_fail("{\n  \"default_egress\": \"deny\",\n  \"default_ingress\": \"deny\",\n}",
		   "test.json:4:", NULL);
	cr_assert(strstr(errbuf, "test.json:4:1: "), "%s", errbuf);
	parse_fail("{\"default_egress\": \"deny\" \"x\"}", "test.json:1:", NULL);
	/* The quoted input in jansson's message stays on one printable line. */
	parse_fail("{\"default_egress\": \"de\nny\x1b\"}", "test.json:1:", NULL);
	cr_assert_null(strchr(errbuf, 0x1b));
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\"} trailing",
		   "test.json:1:", NULL);
}

Test(input, deep_nesting)
{
	size_t n = 10000, o;
	char *s = malloc(2 * n + 256);

	memset(s, '[', n);
	memset(s + n, ']', n);
	parse_fail_n(s, 2 * n, "test.json:1:", "depth");
	/* Inside a rule, too, and with objects. */
	o = (size_t)sprintf(
		s, "{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": ");
	for (size_t i = 0; i < 3000; i++, o += 5)
		memcpy(s + o, "{\"a\":", 5);
	s[o++] = '1';
	memset(s + o, '}', 3000);
	memcpy(s + o + 3000, "}", 2);
	parse_fail(s, "test.json:1:", "depth");
	free(s);
}

Test(input, invalid_utf8_and_nul)
{
	parse_fail(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"rules\": [{\"direction\": \"egr\xff\"}]}",
		"test.json:1:", NULL);
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"x\xc3\": 1}",
		   "test.json:1:", NULL);
	parse_fail_n("{\"default_egress\": \"deny\",\0 \"default_ingress\": \"deny\"}", 52,
		     "test.json:1:", NULL);
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain\": \"a\\u0000b\"}, \"action\": \"allow\"}"),
		"test.json:1:", NULL);
}

Test(input, duplicate_keys)
{
	parse_fail(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\", \"default_egress\": \"allow\"}",
		"test.json:1:", "duplicate");
	parse_fail(
		POLICY("{\"direction\": \"egress\", \"direction\": \"ingress\", \"destination\": \"any\","
		       " \"action\": \"allow\"}"),
		"duplicate", NULL);
}

Test(input, size_limit)
{
	const char *pol = "{\"default_egress\": \"deny\", \"default_ingress\": \"deny\"}";
	size_t max = POLICY_MAX_FILE_SIZE;
	char *s = malloc(max + 2);
	struct policy *p = NULL;

	/* Exactly 1 MiB (padded with spaces) is fine; one byte more is not. */
	memset(s, ' ', max + 1);
	memcpy(s, pol, strlen(pol));
	cr_assert_eq(policy_parse(s, max, "test.json", NULL, &p, errbuf, sizeof(errbuf)), 0, "%s",
		     errbuf);
	policy_free(p);
	parse_fail_n(s, max + 1, "test.json: ", "larger than 1 MiB");
	free(s);
}

Test(input, empty)
{
	parse_fail_n("", 0, "test.json: ", "empty");
	parse_fail(" \n\t\r\n", "test.json: ", "empty");
	parse_fail("[]", "test.json: ", "JSON object");
}

Test(input, load_file)
{
	char dir[] = "/tmp/test_policy.XXXXXX", path[128], big[128];
	struct policy *p = NULL;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/p.json", dir);
	f = fopen(path, "w");
	fputs("{\"default_egress\": \"allow\", \"default_ingress\": \"deny\"}\n", f);
	fclose(f);
	cr_assert_eq(policy_load_file(path, NULL, &p, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	expect(egress(p, "8.8.8.8", POLICY_PROTO_TCP, 1), true, -1, false);
	policy_free(p);

	snprintf(big, sizeof(big), "%s/big.json", dir);
	f = fopen(big, "w");
	for (int i = 0; i < (2 << 20) / 64; i++)
		fputs("                                                               \n", f);
	fclose(f);
	cr_assert_eq(policy_load_file(big, NULL, &p, errbuf, sizeof(errbuf)), -1);
	cr_assert(strstr(errbuf, big) && strstr(errbuf, "larger than 1 MiB"), "%s", errbuf);

	snprintf(path, sizeof(path), "%s/missing.json", dir);
	cr_assert_eq(policy_load_file(path, NULL, &p, errbuf, sizeof(errbuf)), -1);
	cr_assert_null(p);
	cr_assert(strstr(errbuf, path) && strstr(errbuf, "No such file"), "%s", errbuf);
	cr_assert_eq(policy_load_file(dir, NULL, &p, errbuf, sizeof(errbuf)), -1);
	cr_assert(strstr(errbuf, "directory"), "%s", errbuf);
	unlink(big);
	unlink(path);
	snprintf(path, sizeof(path), "%s/p.json", dir);
	unlink(path);
	rmdir(dir);
}

Test(input, null_arguments)
{
	struct policy *p = NULL;

	cr_assert_eq(policy_parse(NULL, 5, "x", NULL, &p, errbuf, sizeof(errbuf)), -1);
	cr_assert_eq(policy_parse("{}", 2, "x", NULL, NULL, errbuf, sizeof(errbuf)), -1);
	cr_assert_eq(policy_parse("[]", 2, "x", NULL, &p, NULL, 0), -1, "no err buffer is fine");
	policy_free(NULL);
	cr_assert_null(policy_to_json(NULL));
	cr_assert_eq(policy_explain(NULL, NULL, errbuf, sizeof(errbuf)), -1);
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */
/* ------------------------------------------------------------------ */

static const char rich[] =
	"{\"default_egress\": \"deny\", \"default_ingress\": \"allow\", \"rules\": ["
	"{\"direction\": \"egress\", \"destination\": {\"group\": \"metadata\"}, \"action\": \"deny\", \"terminate\": true},"
	"{\"direction\": \"any\", \"destination\": {\"cidr\": \"10.9.8.7/16\"}, \"protocols\": [\"udp\", \"tcp\"],"
	" \"ports\": [22, {\"start\": 8000, \"end\": 8999}, 23], \"action\": \"deny\"},"
	"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"::ffff:172.16.0.0/108\"}, \"action\": \"allow\"},"
	"{\"direction\": \"egress\", \"destination\": {\"domain\": \"PyPI.org.\"}, \"protocols\": [\"tcp\"], \"ports\": [443], \"action\": \"allow\"},"
	"{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \".pythonhosted.org\"}, \"action\": \"allow\"},"
	"{\"direction\": \"ingress\", \"destination\": {\"cidr\": \"2001:db8::/32\"}, \"protocols\": [\"icmpv6\"], \"action\": \"allow\"},"
	"{\"direction\": \"egress\", \"destination\": {\"group\": \"host\"}, \"protocols\": [\"udp\", \"tcp\"], \"ports\": [53], \"action\": \"allow\"},"
	"{\"direction\": \"egress\", \"destination\": {\"group\": \"public\"}, \"ports\": [{\"start\": 0, \"end\": 100}, {\"start\": 101, \"end\": 65535}], \"action\": \"allow\"},"
	"{\"direction\": \"any\", \"destination\": \"any\", \"protocols\": [\"icmp\"], \"action\": \"deny\"}"
	"],"
	"\"dns\": {\"nameservers\": [\"192.0.2.53\", \"[2001:db8::53]:5353\"], \"rebind_protection\": false, \"timeout_ms\": 1500},"
	"\"limits\": {\"max_tcp_connections\": 64, \"ingress_bytes_per_second\": {\"limit\": 1048576, \"on_exceed\": \"terminate\"}},"
	"\"publish\": [{\"host_port\": 2222, \"guest_port\": 22}, {\"host_address\": \"::\", \"host_port\": 5353, \"guest_port\": 53, \"protocol\": \"udp\"}]}";

Test(roundtrip, to_json_parses_back_equal)
{
	struct policy *p = parse_ok(rich), *q;
	char *j1 = policy_to_json(p), *j2;
	static const char *const addrs[] = { "169.254.169.254", "10.9.1.1",	     "10.8.1.1",
					     "172.16.5.5",	"::ffff:172.16.5.5", "172.32.0.1",
					     "8.8.8.8",		"2001:db8::1",	     "10.0.2.3",
					     "10.0.2.2",	"127.0.0.1",	     "0.0.0.0",
					     "fe80::1",		"ff02::fb",	     NULL };
	static const uint16_t ports[] = { 0, 22, 23, 24, 53, 443, 7999, 8000, 8999, 9000, 65535 };
	const char *names[] = { "files.pythonhosted.org", NULL };
	const char *pypi[] = { "pypi.org", NULL };

	cr_assert_not_null(j1);
	q = parse_ok(j1);
	cr_assert(policy_equal(p, q), "round trip differs:\n%s", j1);
	j2 = policy_to_json(q);
	cr_assert_str_eq(j1, j2, "serializing twice must give the same text");
	/* The two decide alike on a sample of flows. */
	for (const char *const *a = addrs; *a; a++)
		for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
			for (int proto = 1; proto <= 4; proto <<= 1)
				for (int dir = 1; dir <= 2; dir++)
					for (int k = 0; k < 3; k++) {
						const char *const *nm = k == 0 ? NULL :
									k == 1 ? names :
										 pypi;
						struct policy_decision x = decide(p, dir, *a, proto,
										  ports[i], nm);
						struct policy_decision y = decide(q, dir, *a, proto,
										  ports[i], nm);

						cr_assert(x.allow == y.allow && x.rule == y.rule &&
								  x.terminate == y.terminate,
							  "%s %u", *a, ports[i]);
					}
	for (const char *const *n =
		     (const char *const[]){ "pypi.org", "x.pythonhosted.org", "a.b", NULL };
	     *n; n++) {
		struct policy_decision x = policy_decide_dns(p, *n, POLICY_PROTO_UDP),
				       y = policy_decide_dns(q, *n, POLICY_PROTO_UDP);

		cr_assert(x.allow == y.allow && x.rule == y.rule);
	}
	/* Spot checks of the normalized text. */
	cr_assert(strstr(j1, "\"10.9.0.0/16\""), "%s", j1);
	cr_assert(strstr(j1, "\"172.16.0.0/12\""), "%s", j1);
	cr_assert(strstr(j1, "\"pypi.org\""), "%s", j1);
	cr_assert(strstr(j1, "\"direction\": \"any\""), "%s", j1);
	cr_assert(strstr(j1, "\"host_address\": \"127.0.0.1\""), "%s", j1);
	cr_assert(strstr(j1, "\"on_exceed\": \"terminate\""), "%s", j1);
	cr_assert(strstr(j1, "\"on_exceed\": \"refuse\""), "%s", j1);
	cr_assert(strstr(j1, "\n  \"rules\": [\n"), "2-space indent: %s", j1);
	cr_assert(strstr(j1, "\"icmpv6\""), "icmpv6 stays icmpv6: %s", j1);
	free(j1);
	free(j2);
	policy_free(p);
	policy_free(q);
}

Test(roundtrip, equal_detects_differences)
{
	struct policy *a = parse_ok(rich), *b;
	char *j = policy_to_json(a), *s;
	static const char *const edits[][2] = {
		{ "\"timeout_ms\": 1500", "\"timeout_ms\": 1501" },
		{ "\"host_port\": 2222", "\"host_port\": 2223" },
		{ "\"limit\": 64", "\"limit\": 65" },
		{ "\"pypi.org\"", "\"pypi.com\"" },
		{ "\"10.9.0.0/16\"", "\"10.9.0.0/17\"" },
		{ "\"default_ingress\": \"allow\"", "\"default_ingress\": \"deny\"" },
		{ "\"rebind_protection\": false", "\"rebind_protection\": true" },
	};

	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char *at = strstr(j, edits[i][0]);
		size_t pre;

		cr_assert_not_null(at, "%s not in %s", edits[i][0], j);
		pre = (size_t)(at - j);
		s = malloc(strlen(j) + 16);
		memcpy(s, j, pre);
		strcpy(s + pre, edits[i][1]);
		strcat(s, at + strlen(edits[i][0]));
		b = parse_ok(s);
		cr_assert_not(policy_equal(a, b), "edit %zu not detected", i);
		policy_free(b);
		free(s);
	}
	b = parse_ok(rich);
	cr_assert(policy_equal(a, b));
	cr_assert(policy_equal(NULL, NULL));
	cr_assert_not(policy_equal(a, NULL));
	policy_free(b);
	free(j);
	policy_free(a);
}

/* ------------------------------------------------------------------ */
/* Explain                                                             */
/* ------------------------------------------------------------------ */

static void first_line(const char *text, char *out, size_t n)
{
	size_t k = strcspn(text, "\n");

	cr_assert_lt(k, n);
	memcpy(out, text, k);
	out[k] = '\0';
}

Test(explain, first_line_is_machine_readable)
{
	struct policy *p = parse_ok(rich);
	struct policy_flow f = { .direction = POLICY_EGRESS,
				 .proto = POLICY_PROTO_TCP,
				 .dst = A("169.254.169.254"),
				 .port = 80 };
	char buf[8192], line[128];
	int n;

	n = policy_explain(p, &f, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "deny rule 0 terminate");
	cr_assert(strstr(buf, "group metadata"), "%s", buf);

	f.dst = A("8.8.8.8");
	f.port = 443;
	policy_explain(p, &f, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "allow rule 7");
	cr_assert(strstr(buf, "rule 6 "), "rules walked are listed: %s", buf);

	f.dst = A("10.9.1.1");
	f.port = 8500;
	policy_explain(p, &f, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "deny rule 1");

	f.dst = A("127.0.0.1");
	policy_explain(p, &f, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "deny default");
	cr_assert(strstr(buf, "no rule matched"), "%s", buf);

	f.direction = POLICY_INGRESS;
	policy_explain(p, &f, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "allow default");

	n = policy_explain_dns(p, "files.pythonhosted.org", POLICY_PROTO_UDP, buf, sizeof(buf));
	cr_assert_eq((size_t)n, strlen(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "allow rule 4");
	policy_explain_dns(p, "example.com", POLICY_PROTO_UDP, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "allow rule 6");
	policy_free(p);

	p = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": {\"domain\": \"bad.example\"},"
		       " \"action\": \"deny\", \"terminate\": true}"));
	policy_explain_dns(p, "bad.example", POLICY_PROTO_UDP, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "deny rule 0 terminate");
	policy_explain_dns(p, "good.example", POLICY_PROTO_UDP, buf, sizeof(buf));
	first_line(buf, line, sizeof(line));
	cr_assert_str_eq(line, "deny default");
	cr_assert(strstr(buf, "NXDOMAIN"), "%s", buf);
	policy_free(p);
}

Test(explain, agrees_with_decide_and_truncates_like_snprintf)
{
	struct policy *p = parse_ok(rich);
	struct policy_flow f = { .direction = POLICY_EGRESS,
				 .proto = POLICY_PROTO_UDP,
				 .dst = A("10.0.2.3"),
				 .port = 53 };
	char full[8192], small[16];
	int n, m;

	n = policy_explain(p, &f, full, sizeof(full));
	m = policy_explain(p, &f, small, sizeof(small));
	cr_assert_eq(n, m, "the return value is the full length");
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert(!strncmp(full, small, sizeof(small) - 1));
	cr_assert_eq(policy_explain(p, &f, NULL, 0), n);
	/* Guest-supplied names are printed safely. */
	{
		const char *names[] = { "evil\x1b[31m.example", NULL };

		f.names = names;
		policy_explain(p, &f, full, sizeof(full));
		cr_assert_null(strchr(full, 0x1b));
	}
	/* An invalid flow is denied and said to be invalid. */
	f.direction = (enum policy_direction)0;
	policy_explain(p, &f, full, sizeof(full));
	cr_assert(!strncmp(full, "deny default\n", 13), "%s", full);
	cr_assert(strstr(full, "invalid"));
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* moat policy                                                         */
/* ------------------------------------------------------------------ */

/* Run policy_cmd_main() with stdout and stderr captured. */
static int run_cli(char *out, size_t outlen, char *err, size_t errlen, int argc, char **argv)
{
	FILE *fo = tmpfile(), *fe = tmpfile();
	int so = dup(1), se = dup(2), rc;
	size_t n;

	fflush(stdout);
	fflush(stderr);
	dup2(fileno(fo), 1);
	dup2(fileno(fe), 2);
	rc = policy_cmd_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	rewind(fo);
	n = fread(out, 1, outlen - 1, fo);
	out[n] = '\0';
	rewind(fe);
	n = fread(err, 1, errlen - 1, fe);
	err[n] = '\0';
	fclose(fo);
	fclose(fe);
	return rc;
}

#define CLI(...)                                                             \
	({                                                                   \
		char *argv_[] = { __VA_ARGS__, NULL };                       \
		run_cli(out, sizeof(out), err, sizeof(err),                  \
			(int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_); \
	})

Test(cli, check)
{
	char out[65536], err[4096], path[4200];
	struct policy *p, *q;

	snprintf(path, sizeof(path), "%s/public-only.json", examples_dir());
	cr_assert_eq(CLI("policy", "check", path), 0, "%s", err);
	cr_assert_str_empty(err);
	p = parse_ok(out);
	q = load_example("public-only.json");
	cr_assert(policy_equal(p, q), "check prints the normalized policy");
	policy_free(p);
	policy_free(q);

	cr_assert_eq(CLI("policy", "check", "/nonexistent/p.json"), 2);
	cr_assert(!strncmp(err, "moat: /nonexistent/p.json: ", 27), "%s", err);
	cr_assert_eq(strchr(err, '\n') - err, (long)strlen(err) - 1, "one line: %s", err);
	cr_assert_str_empty(out);
	cr_assert_eq(CLI("policy", "check"), 2);
	cr_assert_eq(CLI("policy"), 2);
	cr_assert_eq(CLI("policy", "frobnicate"), 2);
	cr_assert_eq(CLI("policy", "--help"), 0);
	cr_assert(strstr(out, "moat policy explain"));
	cr_assert_eq(CLI("policy", "default"), 0);
	p = parse_ok(out);
	q = policy_default(NULL);
	cr_assert(policy_equal(p, q));
	policy_free(p);
	policy_free(q);
}

Test(cli, check_reports_schema_error)
{
	char out[4096], err[4096], dir[] = "/tmp/test_policy_cli.XXXXXX", path[128];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bad.json", dir);
	f = fopen(path, "w");
	fputs(POLICY("{\"direction\": \"egress\", \"destination\": \"any\", \"ports\": [{\"start\": 1,"
		     " \"end\": 99999}], \"action\": \"allow\"}"),
	      f);
	fclose(f);
	cr_assert_eq(CLI("policy", "check", path), 2);
	cr_assert(strstr(err, "moat: ") == err, "%s", err);
	cr_assert(strstr(err, "bad.json: rules[0].ports[0].end: must be an integer 0..65535\n"),
		  "%s", err);
	unlink(path);
	rmdir(dir);
}

Test(cli, explain)
{
	char out[65536], err[4096], pub[4200], api[4200], host[4200];

	snprintf(pub, sizeof(pub), "%s/public-only.json", examples_dir());
	snprintf(api, sizeof(api), "%s/single-api.json", examples_dir());
	snprintf(host, sizeof(host), "%s/host-dev-server.json", examples_dir());

	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "169.254.169.254:80/tcp"), 0, "%s",
		     err);
	cr_assert(!strncmp(out, "deny rule 0 terminate\n", 22), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst=203.0.113.10:443/tcp"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 2\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "[2001:db8::1]:443/udp"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 2\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "8.8.8.8/icmp"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 2\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "2001:db8::1/icmp"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 2\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "10.0.2.2:22"), 0, "%s", err);
	cr_assert(!strncmp(out, "deny default\n", 13), "%s", out);
	/* --subnet moves the host group. */
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "192.168.50.3:53/udp", "--subnet",
			 "192.168.50.0/24"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 1\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "10.0.2.3:53/udp", "--subnet",
			 "192.168.50.0/24"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "deny default\n", 13), "%s", out);
	/* --name for domain rules. */
	cr_assert_eq(CLI("policy", "explain", api, "--dst", "93.184.216.34:443/tcp"), 0, "%s", err);
	cr_assert(!strncmp(out, "deny default\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", api, "--dst", "93.184.216.34:443/tcp", "--name",
			 "cdn.example.net", "--name", "api.example.com"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 0\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", api, "--dns", "api.example.com"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 0\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", host, "--dst", "10.0.2.2:3000/tcp"), 0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 1\n", 13), "%s", out);
	cr_assert_eq(CLI("policy", "explain", host, "--ingress", "--dst", "192.0.2.9:8080/tcp"), 0,
		     "%s", err);
	cr_assert(!strncmp(out, "allow default\n", 14), "%s", out);

	/* Usage errors: exit 2, one line on stderr. */
	static const char *const bad_dst[] = {
		"10.0.2.2",	     "10.0.2.2:80/sctp",   "2001:db8::1:443/tcp",
		"[10.0.0.1]:80/tcp", "10.0.2.2:70000/tcp", "8.8.8.8:1/icmp",
		"[2001:db8::1/tcp",  "host:80/tcp",	   ""
	};
	for (size_t i = 0; i < sizeof(bad_dst) / sizeof(bad_dst[0]); i++) {
		cr_assert_eq(CLI("policy", "explain", pub, "--dst", (char *)bad_dst[i]), 2,
			     "--dst '%s' should fail", bad_dst[i]);
		cr_assert(!strncmp(err, "moat: ", 6), "%s", err);
	}
	cr_assert_eq(CLI("policy", "explain", pub), 2);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst"), 2);
	cr_assert(strstr(err, "needs a value"), "%s", err);
	cr_assert_eq(CLI("policy", "explain", pub, "--dst", "1.1.1.1:1", "--dns", "x"), 2);
	cr_assert_eq(CLI("policy", "explain", pub, "--dns", "x", "--name", "y"), 2);
	cr_assert_eq(CLI("policy", "explain", pub, "--dns", "x", "--subnet", "10.0.0.0/30"), 2);
	cr_assert_eq(CLI("policy", "explain", pub, "--dns", "x", "--frob"), 2);
	cr_assert_eq(CLI("policy", "explain", "/nonexistent", "--dns", "x"), 2);
}

Test(cli, explain_sni_and_host)
{
	char out[65536], err[4096], api[4200];
	char *dst[] = { "--dst", "93.184.216.34:443/tcp", "--name", "api.example.com" };

	snprintf(api, sizeof(api), "%s/single-api.json", examples_dir());
	/* the pin allows; the SNI must be the rule's name as well */
	cr_assert_eq(CLI("policy", "explain", api, dst[0], dst[1], dst[2], dst[3], "--sni",
			 "API.example.com"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "allow rule 0\n", 13), "%s", out);
	cr_assert(strstr(out, "by address: allow by rule 0"), "%s", out);
	cr_assert(strstr(out, "SNI: api.example.com matches"), "%s", out);
	cr_assert_eq(CLI("policy", "explain", api, dst[0], dst[1], dst[2], dst[3], "--sni",
			 "other.example.net"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "deny rule 0\n", 12), "%s", out);
	cr_assert(strstr(out, "reason sni_mismatch"), "%s", out);
	cr_assert_eq(CLI("policy", "explain", api, dst[0], dst[1], dst[2], dst[3], "--host",
			 "other.example.net"),
		     0, "%s", err);
	cr_assert(strstr(out, "reason host_mismatch"), "%s", out);
	/* denied by address: the name is never read */
	cr_assert_eq(CLI("policy", "explain", api, "--dst", "93.184.216.34:443/tcp", "--sni",
			 "api.example.com"),
		     0, "%s", err);
	cr_assert(!strncmp(out, "deny default\n", 13), "%s", out);
	cr_assert(strstr(out, "is not read"), "%s", out);
	/* usage */
	cr_assert_eq(CLI("policy", "explain", api, dst[0], dst[1], "--sni", "a", "--host", "b"), 2);
	cr_assert_eq(CLI("policy", "explain", api, "--dns", "x", "--sni", "a"), 2);
	cr_assert_eq(CLI("policy", "explain", api, dst[0], dst[1], "--sni", ""), 2);
	cr_assert(!strncmp(err, "moat: ", 6), "%s", err);
}

/* ---- microsandbox parity (issue 13) -------------------------------- */

Test(parity, missing_defaults_mean_deny_with_a_warning)
{
	struct policy *p = parse_ok("{\"rules\": []}");
	struct policy *q = parse_ok("{\"default_egress\": \"allow\"}");
	char *j = policy_to_json(p);

	expect(egress(p, "203.0.113.1", POLICY_PROTO_TCP, 443), false, -1, false);
	expect(decide(p, POLICY_INGRESS, "203.0.113.1", POLICY_PROTO_TCP, 22, NULL), false, -1,
	       false);
	cr_assert_not_null(policy_warning(p, 0));
	cr_assert(strstr(policy_warning(p, 0), "default_egress is missing"));
	cr_assert(strstr(policy_warning(p, 1), "default_ingress is missing"));
	cr_assert_null(policy_warning(p, 2));
	cr_assert(strstr(j, "\"default_egress\": \"deny\""), "%s", j);
	expect(egress(q, "203.0.113.1", POLICY_PROTO_TCP, 443), true, -1, false);
	cr_assert(strstr(policy_warning(q, 0), "default_ingress"));
	cr_assert_null(policy_warning(q, 1));
	free(j);
	policy_free(p);
	policy_free(q);
}

Test(parity, query_timeout_ms_intercept_and_reload)
{
	struct policy *p = parse_ok("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
				    " \"dns\": {\"query_timeout_ms\": 1500}}");
	struct policy *q = parse_ok(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		" \"dns\": {\"intercept\": \"forward_to_requested\"}, \"reload\": {\"existing\": \"keep\"}}");
	struct policy *r = parse_ok("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
				    " \"dns\": {\"intercept\": false}}");
	struct policy *back;
	char *j = policy_to_json(q);

	cr_assert_eq(policy_dns(p)->timeout_ms, 1500);
	cr_assert_eq(policy_dns(p)->intercept, POLICY_DNS_INTERCEPT_REDIRECT, "default: redirect");
	cr_assert_not(policy_reload_keeps_flows(p), "default: re-evaluate");
	cr_assert_eq(policy_dns(q)->intercept, POLICY_DNS_INTERCEPT_REQUESTED);
	cr_assert(policy_reload_keeps_flows(q));
	cr_assert_eq(policy_dns(r)->intercept, POLICY_DNS_INTERCEPT_OFF);
	cr_assert(strstr(j, "\"intercept\": \"forward_to_requested\""), "%s", j);
	cr_assert(strstr(j, "\"existing\": \"keep\""), "%s", j);
	cr_assert_eq(policy_parse(j, strlen(j), "j", NULL, &back, errbuf, sizeof(errbuf)), 0);
	cr_assert(policy_equal(q, back));
	cr_assert_not(policy_equal(p, q));
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"timeout_ms\": 5, \"query_timeout_ms\": 5}}",
		   "dns.query_timeout_ms", "not both");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"query_timeout_ms\": 0}}",
		   "dns.query_timeout_ms", NULL);
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"intercept\": \"sometimes\"}}",
		   "dns.intercept", "forward_to_requested");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"reload\": {\"existing\": \"drop\"}}",
		   "reload.existing", "keep");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"reload\": {\"other\": 1}}",
		   "reload", "unknown key");
	free(j);
	policy_free(back);
	policy_free(p);
	policy_free(q);
	policy_free(r);
}

/* A host name as nameserver is resolved while parsing (localhost: /etc/hosts, no traffic). */
Test(parity, nameserver_host_names)
{
	struct policy *p = parse_ok(
		"{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		" \"dns\": {\"nameservers\": [\"localhost:5353\", \"localhost\"]}}");
	const struct policy_dns *d = policy_dns(p);
	char *j = policy_to_json(p);

	cr_assert_eq(d->n_nameservers, 2);
	cr_assert_eq(policy_classify(NULL, &d->nameservers[0].addr), POLICY_GROUP_LOOPBACK);
	cr_assert_eq(d->nameservers[0].port, 5353);
	cr_assert_eq(d->nameservers[1].port, 53);
	cr_assert_null(strstr(j, "localhost"), "the normalized text carries addresses: %s", j);
	free(j);
	policy_free(p);
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"localhost:0\"]}}",
		   "dns.nameservers[0]", "not an address");
	parse_fail("{\"default_egress\": \"deny\", \"default_ingress\": \"deny\","
		   " \"dns\": {\"nameservers\": [\"-bad.example\"]}}",
		   "dns.nameservers[0]", "not an address");
}

Test(parity, dns_explain_names_the_transport)
{
	struct policy *p = parse_ok(
		POLICY("{\"direction\": \"egress\", \"destination\": \"any\","
		       " \"protocols\": [\"udp\"], \"ports\": [53], \"action\": \"allow\"}"));
	char buf[2048];

	policy_explain_dns(p, "example.com", POLICY_PROTO_TCP, buf, sizeof(buf));
	cr_assert(strstr(buf, "over tcp"), "%s", buf);
	cr_assert(strstr(buf, "does not admit DNS over tcp"), "%s", buf);
	cr_assert(strstr(buf, "deny"), "%s", buf);
	policy_explain_dns(p, "example.com", POLICY_PROTO_UDP, buf, sizeof(buf));
	cr_assert(strstr(buf, "admits DNS (udp port 53)"), "%s", buf);
	policy_free(p);
}

Test(hostname, sni_and_host_refine_domain_rules)
{
	struct policy *p = parse_ok(POLICY(
		"{\"direction\": \"egress\", \"destination\": {\"domain_suffix\": \"cdn.example\"},"
		" \"protocols\": [\"tcp\"], \"action\": \"allow\"},"
		"{\"direction\": \"egress\", \"destination\": {\"cidr\": \"192.0.2.0/24\"},"
		" \"action\": \"allow\"}"));
	struct policy *q = parse_ok(
		"{\"default_egress\": \"allow\", \"default_ingress\": \"deny\", \"rules\": ["
		"{\"direction\": \"egress\", \"destination\": {\"domain\": \"evil.example\"},"
		" \"action\": \"deny\", \"terminate\": true}]}");
	const char *pinned[] = { "a.cdn.example", NULL };
	struct policy_flow f = {
		.direction = POLICY_EGRESS, .proto = POLICY_PROTO_TCP, .port = 443, .names = pinned
	};
	struct policy_decision first, d;
	bool mm;

	cr_assert_eq(policy_addr_parse("203.0.113.5", &f.dst), 0);
	first = policy_decide(p, &f);
	expect(first, true, 0, false);
	cr_assert(policy_wants_hostname(p, first), "allowed by a domain rule");
	d = policy_decide_hostname(p, &f, first, "b.cdn.example", &mm);
	expect(d, true, 0, false);
	cr_assert_not(mm);
	d = policy_decide_hostname(p, &f, first, "other.example", &mm);
	expect(d, false, 0, false);
	cr_assert(mm, "an SNI that is not the rule's name takes the allow back");
	d = policy_decide_hostname(p, &f, first, NULL, &mm);
	expect(d, true, 0, false);
	cr_assert_not(mm, "no name: the pin alone");
	/* an address rule's allow needs no name, and p has no deny rules on names */
	f.names = NULL;
	cr_assert_eq(policy_addr_parse("192.0.2.9", &f.dst), 0);
	first = policy_decide(p, &f);
	expect(first, true, 1, false);
	cr_assert_not(policy_wants_hostname(p, first));
	/* deny rules on names apply to the name alone, on any address */
	cr_assert_eq(policy_addr_parse("198.51.100.1", &f.dst), 0);
	first = policy_decide(q, &f);
	expect(first, true, -1, false);
	cr_assert(policy_wants_hostname(q, first), "q denies a name");
	d = policy_decide_hostname(q, &f, first, "evil.example", &mm);
	expect(d, false, 0, true);
	cr_assert_not(mm);
	expect(policy_decide_hostname(q, &f, first, "good.example", &mm), true, -1, false);
	cr_assert_not(policy_wants_hostname(q, d), "denied flows are never sniffed");
	policy_free(p);
	policy_free(q);
}

Test(policy, publish_specs)
{
	struct policy_publish p;
	char err[160], a[64];

	cr_assert_eq(policy_publish_parse("8080:80", true, &p, err, sizeof(err)), 0);
	policy_addr_format(&p.host_addr, a, sizeof(a));
	cr_assert_str_eq(a, "127.0.0.1");
	cr_assert_eq(p.host_port, 8080);
	cr_assert_eq(p.guest_port, 80);
	cr_assert_eq(p.proto, POLICY_PROTO_TCP);
	cr_assert_eq(policy_publish_parse("[::1]:5353:53/udp", true, &p, err, sizeof(err)), 0);
	policy_addr_format(&p.host_addr, a, sizeof(a));
	cr_assert_str_eq(a, "::1");
	cr_assert_eq(p.proto, POLICY_PROTO_UDP);
	cr_assert_eq(p.guest_port, 53);
	cr_assert_eq(policy_publish_parse("10.0.0.1:8080/tcp", false, &p, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(p.host_port, 8080);
	cr_assert_eq(p.guest_port, 0);
	cr_assert_eq(policy_publish_parse("8080", true, &p, err, sizeof(err)), -EINVAL);
	cr_assert_eq(policy_publish_parse("8080:0", true, &p, err, sizeof(err)), -EINVAL);
	cr_assert_eq(policy_publish_parse("70000:80", true, &p, err, sizeof(err)), -EINVAL);
	cr_assert_eq(policy_publish_parse("8080:80/sctp", true, &p, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "sctp"), "%s", err);
	cr_assert_eq(policy_publish_parse("999.1.1.1:80:80", true, &p, err, sizeof(err)), -EINVAL);
	cr_assert_eq(policy_publish_parse("", false, &p, err, sizeof(err)), -EINVAL);
}
