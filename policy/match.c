/* SPDX-License-Identifier: MIT */
/*
 * match.c - deciding flows and DNS queries against a parsed policy
 *
 * Theory of Operation
 * -------------------
 * The proxy calls policy_decide() for every outbound connect, UDP flow and
 * inbound publish, and policy_decide_dns() for every DNS query, so nothing
 * here allocates, blocks or logs: a decision is a walk over the ordered
 * rules, first match wins, else the direction's default (DESIGN §8).
 *
 * A rule matches a flow when, in this order, its direction, protocols,
 * ports and destination all admit it; policy_rule_check() says which test
 * failed, so that policy_explain() (explain.c) reports the very reason the
 * decision was made and can never disagree with it.
 *
 * Addresses are compared after folding IPv4-mapped IPv6 (::ffff:a.b.c.d)
 * to IPv4, both for groups and for CIDRs (parse.c folds CIDRs the same
 * way), so a guest cannot dodge a v4 rule by writing its destination as v6.
 * The unspecified address (0.0.0.0/8, ::) means "this host" to a kernel and
 * is never a real destination: only the destination "any" matches it.
 *
 * Everything here trusts the struct policy (built by parse.c) and nothing
 * else: flows come from the proxy, which got them from the guest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "policy/policy_int.h"

static const char *const group_names[] = {
	[POLICY_GROUP_UNSPECIFIED] = "unspecified", [POLICY_GROUP_HOST] = "host",
	[POLICY_GROUP_METADATA] = "metadata",	    [POLICY_GROUP_LOOPBACK] = "loopback",
	[POLICY_GROUP_PRIVATE] = "private",	    [POLICY_GROUP_LINK_LOCAL] = "link_local",
	[POLICY_GROUP_MULTICAST] = "multicast",	    [POLICY_GROUP_PUBLIC] = "public",
};

/**
 * policy_group_name() - the schema's name of a group
 * @g:	a group
 *
 * Return: "public", "link_local", ... ("unspecified" for the unspecified
 * address, which no rule can name), or "?" for a value out of range.
 */
const char *policy_group_name(enum policy_group g)
{
	if ((unsigned int)g >= sizeof(group_names) / sizeof(group_names[0]))
		return "?";
	return group_names[g];
}

/**
 * policy_proto_name() - the schema's name of a protocol
 * @proto:	POLICY_PROTO_TCP, _UDP or _ICMP
 *
 * Return: "tcp", "udp", "icmp", or "?" for anything else.
 */
const char *policy_proto_name(enum policy_proto proto)
{
	switch (proto) {
	case POLICY_PROTO_TCP:
		return "tcp";
	case POLICY_PROTO_UDP:
		return "udp";
	case POLICY_PROTO_ICMP:
		return "icmp";
	}
	return "?";
}

/**
 * policy_addr_parse() - parse a numeric IPv4 or IPv6 address
 * @s:		"192.0.2.1" or "2001:db8::1" (no brackets, port, prefix or zone)
 * @out:	filled on success; left zeroed on failure
 *
 * IPv4-mapped IPv6 is kept as written; matching folds it to IPv4.
 *
 * Return: 0, or -EINVAL if @s is not an address.
 */
int policy_addr_parse(const char *s, struct policy_addr *out)
{
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->addr) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

/**
 * policy_addr_format() - write an address as text
 * @a:		the address
 * @buf:	output, at least INET6_ADDRSTRLEN bytes to never truncate
 * @len:	size of @buf
 *
 * An address of neither family is written as "unspecified".
 *
 * Return: the length written, or -ENOSPC if @buf is too small.
 */
int policy_addr_format(const struct policy_addr *a, char *buf, size_t len)
{
	if (!buf || !len)
		return -ENOSPC;
	if (a && (a->family == AF_INET || a->family == AF_INET6)) {
		if (!inet_ntop(a->family, a->addr, buf, (socklen_t)(len > 256 ? 256 : len)))
			return -ENOSPC;
		return (int)strlen(buf);
	}
	if (len < sizeof("unspecified"))
		return -ENOSPC;
	memcpy(buf, "unspecified", sizeof("unspecified"));
	return (int)sizeof("unspecified") - 1;
}

static bool is_v4_mapped(const uint8_t *a)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return !memcmp(a, prefix, sizeof(prefix));
}

/**
 * policy_addr_normalize() - fold an address to the form rules compare
 * @in:		the address as the caller gave it
 * @out:	IPv4-mapped IPv6 becomes IPv4, unused bytes are zero, and an
 *		unknown family becomes AF_UNSPEC (the unspecified address)
 */
void policy_addr_normalize(const struct policy_addr *in, struct policy_addr *out)
{
	struct policy_addr n = { 0 };

	if (in && in->family == AF_INET) {
		n.family = AF_INET;
		memcpy(n.addr, in->addr, 4);
	} else if (in && in->family == AF_INET6 && is_v4_mapped(in->addr)) {
		n.family = AF_INET;
		memcpy(n.addr, in->addr + 12, 4);
	} else if (in && in->family == AF_INET6) {
		n = *in;
	}
	*out = n;
}

static bool addr_equal(const struct policy_addr *a, const struct policy_addr *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && !memcmp(a->addr, b->addr, n);
}

/* Is normalized @a inside @net/@prefix (same family, normalized)? */
static bool in_prefix(const struct policy_addr *a, const struct policy_addr *net, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;

	if (a->family != net->family)
		return false;
	if (memcmp(a->addr, net->addr, (size_t)full))
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		return (a->addr[full] & mask) == (net->addr[full] & mask);
	}
	return true;
}

static bool v4_in(const uint8_t *a, uint32_t net, int prefix)
{
	uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
	uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;

	return (v & mask) == (net & mask);
}

static enum policy_group classify_v4(const uint8_t *a)
{
	if (a[0] == 169 && a[1] == 254 && a[2] == 169 && a[3] == 254)
		return POLICY_GROUP_METADATA;
	if (v4_in(a, 0x7f000000, 8))
		return POLICY_GROUP_LOOPBACK;
	if (v4_in(a, 0x0a000000, 8) || v4_in(a, 0xac100000, 12) || v4_in(a, 0xc0a80000, 16) ||
	    v4_in(a, 0x64400000, 10))
		return POLICY_GROUP_PRIVATE;
	if (v4_in(a, 0xa9fe0000, 16))
		return POLICY_GROUP_LINK_LOCAL;
	/* The limited broadcast address is no more public than multicast. */
	if (v4_in(a, 0xe0000000, 4) || v4_in(a, 0xffffffff, 32))
		return POLICY_GROUP_MULTICAST;
	return POLICY_GROUP_PUBLIC;
}

static enum policy_group classify_v6(const uint8_t *a)
{
	static const uint8_t metadata[16] = { 0xfd, 0x00, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02 };
	static const uint8_t loopback[16] = { [15] = 1 };

	if (!memcmp(a, metadata, 16))
		return POLICY_GROUP_METADATA;
	if (!memcmp(a, loopback, 16))
		return POLICY_GROUP_LOOPBACK;
	if ((a[0] & 0xfe) == 0xfc)
		return POLICY_GROUP_PRIVATE;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return POLICY_GROUP_LINK_LOCAL;
	if (a[0] == 0xff)
		return POLICY_GROUP_MULTICAST;
	return POLICY_GROUP_PUBLIC;
}

static bool is_unspecified(const struct policy_addr *n)
{
	static const uint8_t zero[16];

	if (n->family == AF_INET)
		return n->addr[0] == 0; /* 0.0.0.0/8, "this network" */
	if (n->family == AF_INET6)
		return !memcmp(n->addr, zero, 16);
	return true;
}

/**
 * policy_classify() - the group an address belongs to
 * @env:	the gateway addresses that form the "host" group (may be NULL)
 * @a:		the address; IPv4-mapped IPv6 is classified as IPv4
 *
 * Groups are disjoint and tested in DESIGN §8's order: unspecified
 * (0.0.0.0/8, ::, and any address of an unknown family), host, metadata
 * (169.254.169.254, fd00:ec2::254), loopback, private, link_local,
 * multicast (with 255.255.255.255), public.
 *
 * Context: any process; no allocation.
 * Return: the group.
 */
enum policy_group policy_classify(const struct policy_env *env, const struct policy_addr *a)
{
	struct policy_addr n;

	policy_addr_normalize(a, &n);
	if (is_unspecified(&n))
		return POLICY_GROUP_UNSPECIFIED;
	if (env) {
		int nh = env->n_host < 0 ? 0 : env->n_host > 4 ? 4 : env->n_host;

		for (int i = 0; i < nh; i++) {
			struct policy_addr h;

			policy_addr_normalize(&env->host[i], &h);
			if (h.family != AF_UNSPEC && addr_equal(&n, &h))
				return POLICY_GROUP_HOST;
		}
	}
	return n.family == AF_INET ? classify_v4(n.addr) : classify_v6(n.addr);
}

/**
 * policy_ports_contain() - does a rule's port filter admit @port
 * @r:		the rule
 * @port:	a port
 *
 * Return: true if the rule has no port filter or a range holds @port.
 */
bool policy_ports_contain(const struct policy_rule *r, uint16_t port)
{
	for (int i = 0; i < r->n_ports; i++)
		if (port >= r->ports[i].start && port <= r->ports[i].end)
			return true;
	return r->n_ports == 0;
}

/*
 * Do the rule's ports cover all of [lo, hi]? Ranges are sorted, disjoint and
 * never adjacent (parse.c merges them), so one range must hold it all.
 */
static bool ports_cover(const struct policy_rule *r, uint16_t lo, uint16_t hi)
{
	if (!r->n_ports)
		return true;
	for (int i = 0; i < r->n_ports; i++)
		if (r->ports[i].start <= lo && r->ports[i].end >= hi)
			return true;
	return false;
}

static bool ports_intersect(const struct policy_rule *r, uint16_t lo, uint16_t hi)
{
	if (!r->n_ports)
		return true;
	for (int i = 0; i < r->n_ports; i++)
		if (r->ports[i].start <= hi && r->ports[i].end >= lo)
			return true;
	return false;
}

static size_t name_len(const char *s)
{
	size_t n = strlen(s);

	return n && s[n - 1] == '.' ? n - 1 : n; /* an FQDN's root dot */
}

/**
 * policy_name_matches() - does a DNS name match a domain or suffix rule
 * @name:	the name as it came from DNS (any case, trailing dot allowed)
 * @rule_name:	the rule's normalized name
 * @suffix:	true for domain_suffix: the name itself or any name below it
 *
 * Return: true on a match ("evilexample.com" never matches "example.com").
 */
bool policy_name_matches(const char *name, const char *rule_name, bool suffix)
{
	size_t n, r;

	if (!name || !rule_name)
		return false;
	n = name_len(name);
	r = strlen(rule_name);
	if (n == r)
		return !strncasecmp(name, rule_name, r);
	if (!suffix || n < r + 1 || name[n - r - 1] != '.')
		return false;
	return !strncasecmp(name + n - r, rule_name, r);
}

static bool names_match(const char *const *names, const char *rule_name, bool suffix)
{
	if (!names)
		return false;
	for (; *names; names++)
		if (policy_name_matches(*names, rule_name, suffix))
			return true;
	return false;
}

/**
 * policy_flow_valid() - is a flow well-formed enough to decide
 * @f:	the flow
 *
 * Return: true if its direction and protocol are each exactly one known value.
 */
bool policy_flow_valid(const struct policy_flow *f)
{
	return f && (f->direction == POLICY_EGRESS || f->direction == POLICY_INGRESS) &&
	       (f->proto == POLICY_PROTO_TCP || f->proto == POLICY_PROTO_UDP ||
		f->proto == POLICY_PROTO_ICMP);
}

/**
 * policy_rule_check() - test one rule against one flow
 * @r:	the rule
 * @f:	a valid flow (policy_flow_valid())
 * @g:	policy_classify() of the flow's address
 *
 * The single place where a rule is matched against a flow: policy_decide()
 * and policy_explain() both call it.
 *
 * Return: POLICY_MISS_NONE on a match, else the first test that failed.
 */
enum policy_miss policy_rule_check(const struct policy_rule *r, const struct policy_flow *f,
				   enum policy_group g)
{
	struct policy_addr n;

	if (!(r->directions & (unsigned int)f->direction))
		return POLICY_MISS_DIRECTION;
	/* parse.c keeps icmp out of the protocols of a rule with ports. */
	if (!(r->protocols & (unsigned int)f->proto))
		return POLICY_MISS_PROTOCOL;
	if (f->proto == POLICY_PROTO_ICMP) {
		policy_addr_normalize(&f->dst, &n);
		if (!(r->icmp_families & (n.family == AF_INET6 ? POLICY_ICMP_V6 : POLICY_ICMP_V4)))
			return POLICY_MISS_PROTOCOL;
	}
	if (f->proto != POLICY_PROTO_ICMP && !policy_ports_contain(r, f->port))
		return POLICY_MISS_PORT;
	switch (r->kind) {
	case POLICY_DEST_ANY:
		return POLICY_MISS_NONE;
	case POLICY_DEST_DOMAIN:
	case POLICY_DEST_SUFFIX:
		return names_match(f->names, r->name, r->kind == POLICY_DEST_SUFFIX) ?
			       POLICY_MISS_NONE :
			       POLICY_MISS_DESTINATION;
	case POLICY_DEST_CIDR:
		if (g == POLICY_GROUP_UNSPECIFIED)
			return POLICY_MISS_UNSPECIFIED;
		policy_addr_normalize(&f->dst, &n);
		return in_prefix(&n, &r->net, r->prefix) ? POLICY_MISS_NONE :
							   POLICY_MISS_DESTINATION;
	case POLICY_DEST_GROUP:
		if (g == POLICY_GROUP_UNSPECIFIED)
			return POLICY_MISS_UNSPECIFIED;
		return r->group == g ? POLICY_MISS_NONE : POLICY_MISS_DESTINATION;
	}
	return POLICY_MISS_DESTINATION;
}

static struct policy_decision decision_of(const struct policy_rule *r, int i)
{
	struct policy_decision d = { r->allow, !r->allow && r->terminate, i };

	return d;
}

/**
 * policy_decide() - decide one flow
 * @p:	the policy
 * @f:	the flow; its names (if any) are the DNS names its address was
 *	resolved from, which domain and domain_suffix rules match
 *
 * First matching rule wins, else the default of @f's direction. A flow
 * with an unknown direction or protocol is denied (rule -1).
 *
 * Context: the proxy, per flow; no allocation.
 * Return: the decision; terminate is set when a "terminate": true rule
 * denied it (a fatal violation, DESIGN §9).
 */
struct policy_decision policy_decide(const struct policy *p, const struct policy_flow *f)
{
	struct policy_decision d = { false, false, -1 };
	enum policy_group g;

	if (!p || !policy_flow_valid(f))
		return d;
	g = policy_classify(&p->env, &f->dst);
	for (int i = 0; i < p->n_rules; i++)
		if (policy_rule_check(&p->rules[i], f, g) == POLICY_MISS_NONE)
			return decision_of(&p->rules[i], i);
	d.allow = f->direction == POLICY_EGRESS ? p->default_egress_allow :
						  p->default_ingress_allow;
	return d;
}

/* Does an "any" or host-group rule let DNS over @transport (udp or tcp) through port 53? */
static bool admits_dns(const struct policy_rule *r, enum policy_proto transport)
{
	return (r->protocols & (unsigned int)transport) && policy_ports_contain(r, 53);
}

/**
 * policy_rule_proto_words() - the schema's words for a rule's protocols
 * @r:		the rule
 * @words:	filled with up to three of "tcp", "udp", "icmp", "icmpv4", "icmpv6"
 *
 * Return: how many.
 */
int policy_rule_proto_words(const struct policy_rule *r, const char *words[4])
{
	int n = 0;

	if (r->protocols & POLICY_PROTO_TCP)
		words[n++] = "tcp";
	if (r->protocols & POLICY_PROTO_UDP)
		words[n++] = "udp";
	if (r->protocols & POLICY_PROTO_ICMP)
		words[n++] = r->icmp_families == POLICY_ICMP_V4 ? "icmpv4" :
			     r->icmp_families == POLICY_ICMP_V6 ? "icmpv6" :
								  "icmp";
	return n;
}

/**
 * policy_rule_check_dns() - test one rule against a DNS query
 * @r:		the rule
 * @qname:	the query name (any case, trailing dot allowed)
 * @transport:	POLICY_PROTO_UDP or POLICY_PROTO_TCP: how the query came
 *
 * Return: POLICY_MISS_NONE on a match, else why not.
 */
enum policy_miss policy_rule_check_dns(const struct policy_rule *r, const char *qname,
				       enum policy_proto transport)
{
	if (!(r->directions & POLICY_EGRESS))
		return POLICY_MISS_DIRECTION;
	switch (r->kind) {
	case POLICY_DEST_DOMAIN:
	case POLICY_DEST_SUFFIX:
		return policy_name_matches(qname, r->name, r->kind == POLICY_DEST_SUFFIX) ?
			       POLICY_MISS_NONE :
			       POLICY_MISS_DESTINATION;
	case POLICY_DEST_GROUP:
		if (r->group != POLICY_GROUP_HOST)
			return POLICY_MISS_DNS_KIND;
		/* fall through */
	case POLICY_DEST_ANY:
		return admits_dns(r, transport) ? POLICY_MISS_NONE : POLICY_MISS_DNS_PORTS;
	case POLICY_DEST_CIDR:
		break;
	}
	return POLICY_MISS_DNS_KIND;
}

/**
 * policy_decide_dns() - decide a DNS query from the guest
 * @p:		the policy
 * @qname:	the query name
 * @transport:	POLICY_PROTO_UDP or POLICY_PROTO_TCP: how the guest asked
 *
 * The egress rules in order: domain and domain_suffix rules match the
 * name (whatever their protocols and ports: allowing a name to be reached
 * allows it to be resolved); "any" and {"group": "host"} rules match when
 * they admit port 53 over @transport; cidr and other group rules never match.
 * First match wins, else the egress default.
 *
 * Context: the proxy's DNS forwarder; no allocation.
 * Return: the decision. A denied query is answered NXDOMAIN.
 */
struct policy_decision policy_decide_dns(const struct policy *p, const char *qname,
					 enum policy_proto transport)
{
	struct policy_decision d = { false, false, -1 };

	if (!p || (transport != POLICY_PROTO_UDP && transport != POLICY_PROTO_TCP))
		return d;
	if (!qname)
		qname = "";
	for (int i = 0; i < p->n_rules; i++)
		if (policy_rule_check_dns(&p->rules[i], qname, transport) == POLICY_MISS_NONE)
			return decision_of(&p->rules[i], i);
	d.allow = p->default_egress_allow;
	return d;
}

/**
 * policy_address_rule_allows() - does an explicit address rule allow @a
 * @p:		the policy
 * @a:		an address a DNS answer resolved to
 * @proto:	the protocol, or 0 for "any protocol"
 * @port:	the port, or 0 for "any port"
 *
 * For rebind protection: a public name that resolves to a private,
 * loopback or link-local address is answered NXDOMAIN unless this returns
 * true. The egress rules are walked in order; domain rules and allow rules
 * with destination "any" are passed over (they allow names or everything,
 * not this address). The first cidr or group rule that matches @a and
 * could allow some flow of @proto/@port returns true; a deny rule (cidr,
 * group or "any") that matches @a and covers every flow of @proto/@port
 * returns false first. With an exact @proto and @port this is simply "the
 * first matching address rule allows". None: false.
 *
 * Context: the proxy's DNS forwarder; no allocation.
 * Return: true if an address rule allows the address.
 */
bool policy_address_rule_allows(const struct policy *p, const struct policy_addr *a,
				enum policy_proto proto, uint16_t port)
{
	unsigned int want = proto ? (unsigned int)proto & POLICY_PROTO_ALL : POLICY_PROTO_ALL;
	uint16_t lo = port ? port : 0, hi = port ? port : 65535;
	bool want_ports = want & (POLICY_PROTO_TCP | POLICY_PROTO_UDP);
	struct policy_addr n;
	enum policy_group g;

	if (!p || !a || !want)
		return false;
	g = policy_classify(&p->env, a);
	if (g == POLICY_GROUP_UNSPECIFIED)
		return false;
	policy_addr_normalize(a, &n);
	for (int i = 0; i < p->n_rules; i++) {
		const struct policy_rule *r = &p->rules[i];
		unsigned int eff = r->protocols; /* never icmp when there are ports */
		bool covers, intersects;

		if (!(r->directions & POLICY_EGRESS))
			continue;
		if (r->kind == POLICY_DEST_DOMAIN || r->kind == POLICY_DEST_SUFFIX)
			continue;
		if (r->kind == POLICY_DEST_CIDR && !in_prefix(&n, &r->net, r->prefix))
			continue;
		if (r->kind == POLICY_DEST_GROUP && r->group != g)
			continue;
		/* Rules with ports only ever match tcp/udp: icmp needs no port check. */
		covers = (eff & want) == want && (!want_ports || ports_cover(r, lo, hi));
		intersects = (eff & want) &&
			     (!(eff & want & (POLICY_PROTO_TCP | POLICY_PROTO_UDP)) ||
			      ports_intersect(r, lo, hi));
		if (!r->allow && covers)
			return false;
		if (r->allow && r->kind != POLICY_DEST_ANY && intersects)
			return true;
	}
	return false;
}

/**
 * policy_has_domain_rules() - does any rule name a domain
 * @p:	the policy
 *
 * Return: true if some rule has a domain or domain_suffix destination
 * (the proxy can skip pinning DNS answers otherwise).
 */
bool policy_has_domain_rules(const struct policy *p)
{
	for (int i = 0; p && i < p->n_rules; i++)
		if (p->rules[i].kind == POLICY_DEST_DOMAIN ||
		    p->rules[i].kind == POLICY_DEST_SUFFIX)
			return true;
	return false;
}

static bool is_name_rule(const struct policy_rule *r)
{
	return r->kind == POLICY_DEST_DOMAIN || r->kind == POLICY_DEST_SUFFIX;
}

/**
 * policy_wants_hostname() - must the proxy read the host name a connection's
 * client names (TLS SNI, HTTP Host) before it relays the client's bytes
 * @p:	the policy
 * @d:	the connection's decision (policy_decide())
 *
 * Return: true for an allowed connection that a domain or domain_suffix
 * rule allowed, or any allowed connection when some egress rule denies a
 * name; false otherwise (nothing to check: the bytes go straight through).
 */
bool policy_wants_hostname(const struct policy *p, struct policy_decision d)
{
	if (!p || !d.allow)
		return false;
	if (d.rule >= 0 && d.rule < p->n_rules && is_name_rule(&p->rules[d.rule]))
		return true;
	for (int i = 0; i < p->n_rules; i++)
		if (!p->rules[i].allow && is_name_rule(&p->rules[i]) &&
		    (p->rules[i].directions & POLICY_EGRESS))
			return true;
	return false;
}

/**
 * policy_decide_hostname() - decide a connection again with the host name its
 * client named
 * @p:		the policy
 * @f:		the connection as policy_decide() saw it
 * @first:	policy_decide()'s decision (an allow)
 * @hostname:	the SNI or Host name (lowercase), or NULL if the client named none
 * @mismatch:	set when the allow of a domain rule is taken back because the
 *		name is not that rule's
 *
 * Without a name the first decision stands (pin alone). With one: an allow
 * by a domain or domain_suffix rule needs the name to match that rule too
 * (the pin says the address was resolved from an allowed name; the name says
 * which site the client wants: names on a shared address share no pass); and
 * the flow decided as if its address had been resolved from this name alone
 * must not end on a deny rule that names a domain, so deny rules on names
 * apply to the name even on an address that was never resolved.
 *
 * Return: the decision (terminate set by a terminate deny rule on the name).
 */
struct policy_decision policy_decide_hostname(const struct policy *p, const struct policy_flow *f,
					      struct policy_decision first, const char *hostname,
					      bool *mismatch)
{
	const char *names[2] = { hostname, NULL };
	struct policy_flow g = *f;
	struct policy_decision d;

	*mismatch = false;
	if (!p || !first.allow || !hostname || !*hostname)
		return first;
	if (first.rule >= 0 && first.rule < p->n_rules && is_name_rule(&p->rules[first.rule])) {
		const struct policy_rule *r = &p->rules[first.rule];

		if (!policy_name_matches(hostname, r->name, r->kind == POLICY_DEST_SUFFIX)) {
			struct policy_decision no = { false, false, first.rule };

			*mismatch = true;
			return no;
		}
	}
	g.names = names;
	d = policy_decide(p, &g);
	if (!d.allow && d.rule >= 0 && is_name_rule(&p->rules[d.rule]))
		return d;
	return first;
}

/**
 * policy_reload_keeps_flows() - does a reload to this policy spare open flows
 * @p:	the new policy
 *
 * Return: true for "reload": {"existing": "keep"}; false (the default): open
 * TCP connections and UDP flows are decided again and the denied ones cut.
 */
bool policy_reload_keeps_flows(const struct policy *p)
{
	return p && p->reload_keep;
}

/**
 * policy_warning() - one thing parsing accepted that a reader should know
 * @p:	the policy
 * @i:	0, 1, ...
 *
 * Return: the sentence, or NULL past the last one.
 */
const char *policy_warning(const struct policy *p, int i)
{
	return p && i >= 0 && i < p->n_warnings ? p->warnings[i] : NULL;
}

/**
 * policy_rule_count() - the number of rules
 * @p:	the policy
 *
 * Return: the length of rules[] (0 for NULL).
 */
int policy_rule_count(const struct policy *p)
{
	return p ? p->n_rules : 0;
}
