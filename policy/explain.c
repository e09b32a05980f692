/* SPDX-License-Identifier: MIT */
/*
 * explain.c - why a policy decides a flow or a DNS query the way it does
 *
 * Theory of Operation
 * -------------------
 * `moat policy explain` (supervisor/policy_cmd.c) prints this; tests and
 * scripts read its first line, which is machine-readable:
 *
 *	allow|deny  rule N|default  [terminate]
 *
 * e.g. "deny rule 2 terminate", "allow default". The lines after it say in
 * words what the flow is, which group its address is in, and for every
 * rule up to the deciding one why it did or did not match, then the
 * decision. The verdict comes from policy_decide()/policy_decide_dns() and
 * each rule's reason from the same policy_rule_check*() they use, so the
 * explanation cannot drift from the decision.
 *
 * The output is built snprintf-style into the caller's buffer: the return
 * value is the full length, so a caller whose buffer was too small can
 * retry with a bigger one. Names and query names may come from a guest:
 * they are printed with control and non-ASCII bytes replaced by '?'.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy_int.h"

struct sb {
	char *buf;
	size_t len;
	size_t pos; /* what the full text needs, without the NUL */
};

static void sb_printf(struct sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *s, const char *fmt, ...)
{
	bool room = s->buf && s->pos < s->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? s->buf + s->pos : NULL, room ? s->len - s->pos : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		s->pos += (size_t)n;
}

/* A name from outside, made printable and bounded. */
static const char *printable(char *buf, size_t n, const char *s)
{
	size_t o = 0;

	for (; *s && o + 1 < n; s++, o++)
		buf[o] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	buf[o] = '\0';
	return buf;
}

static const char *dir_words(unsigned int dirs)
{
	if (dirs == POLICY_EGRESS)
		return "egress";
	if (dirs == POLICY_INGRESS)
		return "ingress";
	return "egress and ingress";
}

static void describe_destination(struct sb *s, const struct policy_rule *r)
{
	char a[64];

	switch (r->kind) {
	case POLICY_DEST_ANY:
		sb_printf(s, "any address");
		break;
	case POLICY_DEST_CIDR:
		policy_addr_format(&r->net, a, sizeof(a));
		sb_printf(s, "cidr %s/%d", a, r->prefix);
		break;
	case POLICY_DEST_DOMAIN:
		sb_printf(s, "domain %s", r->name);
		break;
	case POLICY_DEST_SUFFIX:
		sb_printf(s, "domain_suffix %s", r->name);
		break;
	case POLICY_DEST_GROUP:
		sb_printf(s, "group %s", policy_group_name(r->group));
		break;
	}
}

static void describe_rule(struct sb *s, const struct policy_rule *r, int i)
{
	const char *words[4];
	int nw = policy_rule_proto_words(r, words);

	sb_printf(s, "rule %d (%s %s, destination ", i, r->allow ? "allow" : "deny",
		  dir_words(r->directions));
	describe_destination(s, r);
	if (r->protocols == POLICY_PROTO_ALL &&
	    r->icmp_families == (POLICY_ICMP_V4 | POLICY_ICMP_V6)) {
		sb_printf(s, ", all protocols");
	} else {
		sb_printf(s, ", protocols ");
		for (int k = 0; k < nw; k++)
			sb_printf(s, "%s%s", k ? "," : "", words[k]);
	}
	if (!r->n_ports)
		sb_printf(s, ", all ports");
	else
		sb_printf(s, ", ports ");
	for (int k = 0; k < r->n_ports; k++) {
		if (r->ports[k].start == r->ports[k].end)
			sb_printf(s, "%s%u", k ? "," : "", (unsigned int)r->ports[k].start);
		else
			sb_printf(s, "%s%u-%u", k ? "," : "", (unsigned int)r->ports[k].start,
				  (unsigned int)r->ports[k].end);
	}
	if (!r->allow && r->terminate)
		sb_printf(s, ", terminate");
	sb_printf(s, ")");
}

static void verdict(struct sb *s, struct policy_decision d)
{
	sb_printf(s, "%s", d.allow ? "allow" : "deny");
	if (d.rule >= 0)
		sb_printf(s, " rule %d", d.rule);
	else
		sb_printf(s, " default");
	if (d.terminate)
		sb_printf(s, " terminate");
	sb_printf(s, "\n");
}

static int finish(struct sb *s)
{
	if (s->buf && s->len && s->pos < s->len)
		s->buf[s->pos] = '\0';
	return s->pos > INT_MAX ? INT_MAX : (int)s->pos;
}

static void flow_line(struct sb *s, const struct policy_flow *f)
{
	char a[64];

	policy_addr_format(&f->dst, a, sizeof(a));
	if (f->direction == POLICY_EGRESS)
		sb_printf(s, "flow: egress %s to %s", policy_proto_name(f->proto), a);
	else
		sb_printf(s, "flow: ingress %s from %s", policy_proto_name(f->proto), a);
	if (f->proto == POLICY_PROTO_ICMP)
		sb_printf(s, "\n");
	else if (f->direction == POLICY_EGRESS)
		sb_printf(s, " port %u\n", (unsigned int)f->port);
	else
		sb_printf(s, " to guest port %u\n", (unsigned int)f->port);
}

static void address_line(struct sb *s, const struct policy *p, const struct policy_flow *f,
			 enum policy_group g)
{
	struct policy_addr n;
	char a[64], b[64];

	policy_addr_format(&f->dst, a, sizeof(a));
	policy_addr_normalize(&f->dst, &n);
	if (f->dst.family == AF_INET6 && n.family == AF_INET) {
		policy_addr_format(&n, b, sizeof(b));
		sb_printf(s, "address: %s is IPv4-mapped and is matched as %s\n", a, b);
	}
	if (g == POLICY_GROUP_UNSPECIFIED)
		sb_printf(s,
			  "address: %s is unspecified (or of no known family); only destination "
			  "\"any\" matches it\n",
			  a);
	else if (g == POLICY_GROUP_HOST)
		sb_printf(s, "address: %s is in group host (one of the %d gateway addresses)\n", a,
			  p->env.n_host);
	else
		sb_printf(s, "address: %s is in group %s\n", a, policy_group_name(g));
}

static void names_line(struct sb *s, const struct policy_flow *f)
{
	char n[256];

	if (!f->names || !f->names[0]) {
		sb_printf(s, "names: none (domain and domain_suffix rules cannot match)\n");
		return;
	}
	sb_printf(s, "names:");
	for (const char *const *x = f->names; *x; x++)
		sb_printf(s, " %s", printable(n, sizeof(n), *x));
	sb_printf(s, "\n");
}

static void flow_reason(struct sb *s, const struct policy_rule *r, const struct policy_flow *f,
			enum policy_group g, enum policy_miss m)
{
	char a[64];

	switch (m) {
	case POLICY_MISS_NONE:
		if (r->kind == POLICY_DEST_ANY)
			sb_printf(s, "matches: it takes any destination");
		else if (r->kind == POLICY_DEST_GROUP)
			sb_printf(s, "matches: the address is in group %s", policy_group_name(g));
		else if (r->kind == POLICY_DEST_CIDR)
			sb_printf(s, "matches: the address is inside the cidr");
		else
			sb_printf(s, "matches: the address was resolved from a matching name");
		return;
	case POLICY_MISS_DIRECTION:
		sb_printf(s, "no match: it is for %s only", dir_words(r->directions));
		return;
	case POLICY_MISS_PROTOCOL:
		sb_printf(s, "no match: it does not cover %s%s", policy_proto_name(f->proto),
			  f->proto == POLICY_PROTO_ICMP && r->n_ports ?
				  " (a rule with ports covers only tcp and udp)" :
				  "");
		return;
	case POLICY_MISS_PORT:
		sb_printf(s, "no match: port %u is not among its ports", (unsigned int)f->port);
		return;
	case POLICY_MISS_UNSPECIFIED:
		sb_printf(s, "no match: the unspecified address matches only destination \"any\"");
		return;
	case POLICY_MISS_DESTINATION:
		break;
	case POLICY_MISS_DNS_KIND:
	case POLICY_MISS_DNS_PORTS:
		sb_printf(s, "no match");
		return;
	}
	switch (r->kind) {
	case POLICY_DEST_GROUP:
		sb_printf(s, "no match: the address is in group %s, not %s", policy_group_name(g),
			  policy_group_name(r->group));
		break;
	case POLICY_DEST_CIDR:
		policy_addr_format(&r->net, a, sizeof(a));
		sb_printf(s, "no match: the address is not inside %s/%d", a, r->prefix);
		break;
	case POLICY_DEST_DOMAIN:
		sb_printf(s, "no match: no name of the address is %s", r->name);
		break;
	case POLICY_DEST_SUFFIX:
		sb_printf(s, "no match: no name of the address is %s or ends in .%s", r->name,
			  r->name);
		break;
	case POLICY_DEST_ANY:
		sb_printf(s, "no match");
		break;
	}
}

static void decision_line(struct sb *s, const char *what, enum policy_direction dir,
			  struct policy_decision d)
{
	if (d.rule < 0)
		sb_printf(s, "%s: no rule matched, so the %s default applies: %s\n", what,
			  dir == POLICY_EGRESS ? "egress" : "ingress", d.allow ? "allow" : "deny");
	else if (d.terminate)
		sb_printf(s,
			  "%s: deny by rule %d, which terminates: the flow is a fatal "
			  "violation and the sandbox is killed\n",
			  what, d.rule);
	else
		sb_printf(s, "%s: %s by rule %d\n", what, d.allow ? "allow" : "deny", d.rule);
}

/* The flow, its address, its names and the rules walked up to the deciding one. */
static void walk_rules(struct sb *s, const struct policy *p, const struct policy_flow *f)
{
	enum policy_group g = policy_classify(&p->env, &f->dst);

	flow_line(s, f);
	address_line(s, p, f, g);
	names_line(s, f);
	for (int i = 0; i < p->n_rules; i++) {
		enum policy_miss m = policy_rule_check(&p->rules[i], f, g);

		describe_rule(s, &p->rules[i], i);
		sb_printf(s, ": ");
		flow_reason(s, &p->rules[i], f, g, m);
		sb_printf(s, "\n");
		if (m == POLICY_MISS_NONE)
			break;
	}
}

/* The verdict line, then the walk; false for an invalid flow (nothing more to say). */
static bool begin(struct sb *s, const struct policy *p, const struct policy_flow *f,
		  struct policy_decision d)
{
	verdict(s, d);
	if (!policy_flow_valid(f)) {
		sb_printf(s, "flow: invalid (unknown direction or protocol), so denied\n");
		return false;
	}
	walk_rules(s, p, f);
	return true;
}

/**
 * policy_explain() - explain the decision on one flow
 * @p:		the policy
 * @f:		the flow, as for policy_decide()
 * @buf:	output (may be NULL if @len is 0); always NUL-terminated if @len
 * @len:	size of @buf
 *
 * First line: "allow" or "deny", then "rule N" or "default", then
 * "terminate" if the match is a fatal violation. Then the flow, its
 * address's group, its names, one line per rule walked, and the decision.
 *
 * Return: the length of the full text (as snprintf: compare with @len to
 * detect truncation), or -1 if @p is NULL.
 */
int policy_explain(const struct policy *p, const struct policy_flow *f, char *buf, size_t len)
{
	struct sb s = { buf, len, 0 };
	struct policy_decision d;

	if (!p)
		return -1;
	if (buf && len)
		buf[0] = '\0';
	d = policy_decide(p, f);
	if (begin(&s, p, f, d))
		decision_line(&s, "decision", f->direction, d);
	return finish(&s);
}

/**
 * policy_explain_hostname() - explain the decision on a TCP connection whose
 * client names a host (TLS SNI or HTTP Host)
 * @p:		the policy
 * @f:		the connection (egress, TCP), as for policy_decide()
 * @hostname:	the name the client sends (lowercase, as the proxy reads it)
 * @tls:	true for a TLS SNI, false for an HTTP Host header
 * @buf:	output (may be NULL if @len is 0); always NUL-terminated if @len
 * @len:	size of @buf
 *
 * What the proxy does (proxy/tcpflow.c): decide by address and pin, then,
 * where policy_wants_hostname() says a name rule concerns the connection,
 * read the name and decide again with policy_decide_hostname(). Same first
 * line as policy_explain() (the final decision), then the walk by address,
 * the first decision, what the name changes, and the decision.
 *
 * Return: the length of the full text, or -1 if @p is NULL.
 */
int policy_explain_hostname(const struct policy *p, const struct policy_flow *f,
			    const char *hostname, bool tls, char *buf, size_t len)
{
	const char *what = tls ? "SNI" : "Host";
	struct sb s = { buf, len, 0 };
	struct policy_decision first, d;
	bool wants, mismatch = false;
	char h[256];

	if (!p)
		return -1;
	if (buf && len)
		buf[0] = '\0';
	first = policy_decide(p, f);
	wants = policy_flow_valid(f) && f->direction == POLICY_EGRESS &&
		f->proto == POLICY_PROTO_TCP && policy_wants_hostname(p, first);
	d = wants ? policy_decide_hostname(p, f, first, hostname, &mismatch) : first;
	if (!begin(&s, p, f, d))
		return finish(&s);
	decision_line(&s, "by address", f->direction, first);
	printable(h, sizeof(h), hostname ? hostname : "");
	if (!wants) {
		sb_printf(&s, "%s: %s is not read: %s\n", what, h,
			  !first.allow ? "the connection is refused before the client speaks" :
			  f->proto != POLICY_PROTO_TCP || f->direction != POLICY_EGRESS ?
					 "only egress TCP connections are read" :
					 "no name rule concerns this connection");
	} else if (mismatch) {
		const struct policy_rule *r = &p->rules[first.rule];
		bool suffix = r->kind == POLICY_DEST_SUFFIX;

		sb_printf(&s,
			  "%s: rule %d allows %s%s%s only, and %s is not %s: the connection is "
			  "reset (reason %s)\n",
			  what, first.rule, r->name, suffix ? " and names ending in ." : "",
			  suffix ? r->name : "", h, suffix ? "one" : "it",
			  tls ? "sni_mismatch" : "host_mismatch");
	} else if (!d.allow) {
		sb_printf(&s,
			  "%s: %s matches rule %d, a deny rule on names: the connection is reset "
			  "(reason %s)\n",
			  what, h, d.rule, tls ? "sni_denied" : "host_denied");
	} else {
		bool named = first.rule >= 0 && (p->rules[first.rule].kind == POLICY_DEST_DOMAIN ||
						 p->rules[first.rule].kind == POLICY_DEST_SUFFIX);

		sb_printf(&s, "%s: %s matches %sno deny rule on names: the bytes are relayed\n",
			  what, h, named ? "the allowing rule's name and " : "");
	}
	decision_line(&s, "decision", f->direction, d);
	return finish(&s);
}

static void dns_reason(struct sb *s, const struct policy_rule *r, enum policy_miss m,
		       enum policy_proto transport)
{
	const char *t = transport == POLICY_PROTO_TCP ? "tcp" : "udp";

	switch (m) {
	case POLICY_MISS_NONE:
		if (r->kind == POLICY_DEST_DOMAIN)
			sb_printf(s, "matches: the name is %s", r->name);
		else if (r->kind == POLICY_DEST_SUFFIX)
			sb_printf(s, "matches: the name is %s or ends in .%s", r->name, r->name);
		else
			sb_printf(s, "matches: it admits DNS (%s port 53)", t);
		return;
	case POLICY_MISS_DIRECTION:
		sb_printf(s, "no match: it is for ingress only");
		return;
	case POLICY_MISS_DESTINATION:
		if (r->kind == POLICY_DEST_DOMAIN)
			sb_printf(s, "no match: the name is not %s", r->name);
		else
			sb_printf(s, "no match: the name is not %s and does not end in .%s",
				  r->name, r->name);
		return;
	case POLICY_MISS_DNS_KIND:
		sb_printf(s, "no match: only domain, domain_suffix, \"any\" and group host rules "
			     "decide DNS queries");
		return;
	case POLICY_MISS_DNS_PORTS:
		sb_printf(s, "no match: it does not admit DNS over %s (%s port 53)", t, t);
		return;
	case POLICY_MISS_PROTOCOL:
	case POLICY_MISS_PORT:
	case POLICY_MISS_UNSPECIFIED:
		break;
	}
	sb_printf(s, "no match");
}

/**
 * policy_explain_dns() - explain the decision on one DNS query
 * @p:		the policy
 * @qname:	the query name
 * @transport:	POLICY_PROTO_UDP or POLICY_PROTO_TCP
 * @buf:	output (may be NULL if @len is 0); always NUL-terminated if @len
 * @len:	size of @buf
 *
 * Same first line as policy_explain(); then the query, one line per rule
 * walked, and the decision (a denied query is answered NXDOMAIN).
 *
 * Return: the length of the full text, or -1 if @p is NULL.
 */
int policy_explain_dns(const struct policy *p, const char *qname, enum policy_proto transport,
		       char *buf, size_t len)
{
	struct sb s = { buf, len, 0 };
	struct policy_decision d;
	char q[256];

	if (!p)
		return -1;
	if (buf && len)
		buf[0] = '\0';
	if (!qname)
		qname = "";
	d = policy_decide_dns(p, qname, transport);
	verdict(&s, d);
	sb_printf(&s, "query: DNS name %s over %s (decided by the egress rules)\n",
		  *qname ? printable(q, sizeof(q), qname) : "(root)",
		  transport == POLICY_PROTO_TCP ? "tcp" : "udp");
	for (int i = 0; i < p->n_rules; i++) {
		enum policy_miss m = policy_rule_check_dns(&p->rules[i], qname, transport);

		describe_rule(&s, &p->rules[i], i);
		sb_printf(&s, ": ");
		dns_reason(&s, &p->rules[i], m, transport);
		sb_printf(&s, "\n");
		if (m == POLICY_MISS_NONE)
			break;
	}
	if (d.rule < 0)
		sb_printf(&s, "decision: no rule matched, so the egress default applies: %s%s\n",
			  d.allow ? "allow" : "deny",
			  d.allow ? " (the query is forwarded)" : " (the guest gets NXDOMAIN)");
	else if (d.terminate)
		sb_printf(&s,
			  "decision: deny by rule %d, which terminates: the query is a fatal "
			  "violation and the sandbox is killed\n",
			  d.rule);
	else
		sb_printf(&s, "decision: %s by rule %d%s\n", d.allow ? "allow" : "deny", d.rule,
			  d.allow ? " (the query is forwarded)" : " (the guest gets NXDOMAIN)");
	return finish(&s);
}
