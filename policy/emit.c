/* SPDX-License-Identifier: MIT */
/*
 * emit.c - a policy back to JSON, and comparing two policies
 *
 * Theory of Operation
 * -------------------
 * policy_to_json() writes the normalized form of a parsed policy: every
 * default explicit (direction, protocols, ports, the dns section), names
 * lowercase, CIDRs folded, port ranges merged as {"start", "end"}. It is
 * what `moat policy check` prints and what the supervisor sends the proxy
 * over the control channel, where the proxy parses it again with
 * policy_parse(); so the text must parse back to an equal policy, which
 * policy_equal() checks (unit tests and the fuzzer hold it to that).
 *
 * A rule without a port filter is written with the full range 0..65535,
 * which parse.c reads back as "no filter" (so it still matches icmp).
 * The env (the "host" group's addresses) is not part of the document:
 * it is neither written nor compared. The tls and secrets sections are
 * written only when the file had a tls section (the output of a policy
 * without one is unchanged); a secret is written with where its value is
 * (value_env, value_file), never a value: the policy holds none.
 */
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy_int.h"

/* Add @v to @obj under @key (or to an array: push()); remember any failure in *@ok. */
static void put(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(obj, key, v) < 0)
		*ok = false;
}

static void push(json_t *arr, json_t *v, bool *ok)
{
	if (!v || json_array_append_new(arr, v) < 0)
		*ok = false;
}

static json_t *addr_string(const struct policy_addr *a, int prefix, bool with_prefix)
{
	char buf[96];
	int n = policy_addr_format(a, buf, sizeof(buf));

	if (n < 0)
		return NULL;
	if (with_prefix)
		snprintf(buf + n, sizeof(buf) - (size_t)n, "/%d", prefix);
	return json_string(buf);
}

static json_t *destination(const struct policy_rule *r, bool *ok)
{
	json_t *d;

	if (r->kind == POLICY_DEST_ANY)
		return json_string("any");
	d = json_object();
	if (!d)
		return NULL;
	switch (r->kind) {
	case POLICY_DEST_CIDR:
		put(d, "cidr", addr_string(&r->net, r->prefix, true), ok);
		break;
	case POLICY_DEST_DOMAIN:
		put(d, "domain", json_string(r->name), ok);
		break;
	case POLICY_DEST_SUFFIX:
		put(d, "domain_suffix", json_string(r->name), ok);
		break;
	case POLICY_DEST_GROUP:
		put(d, "group", json_string(policy_group_name(r->group)), ok);
		break;
	case POLICY_DEST_ANY:
		break;
	}
	return d;
}

static json_t *range(uint16_t start, uint16_t end, bool *ok)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	put(o, "start", json_integer(start), ok);
	put(o, "end", json_integer(end), ok);
	return o;
}

static json_t *rule_json(const struct policy_rule *r, bool *ok)
{
	const char *words[4];
	int nw = policy_rule_proto_words(r, words);
	json_t *o = json_object(), *pl, *ports;

	if (!o)
		return NULL;
	put(o, "direction",
	    json_string(r->directions == POLICY_EGRESS	? "egress" :
			r->directions == POLICY_INGRESS ? "ingress" :
							  "any"),
	    ok);
	put(o, "destination", destination(r, ok), ok);
	pl = json_array();
	for (int i = 0; pl && i < nw; i++)
		push(pl, json_string(words[i]), ok);
	put(o, "protocols", pl, ok);
	ports = json_array();
	if (ports && !r->n_ports)
		push(ports, range(0, 65535, ok), ok);
	for (int i = 0; ports && i < r->n_ports; i++)
		push(ports, range(r->ports[i].start, r->ports[i].end, ok), ok);
	put(o, "ports", ports, ok);
	put(o, "action", json_string(r->allow ? "allow" : "deny"), ok);
	if (!r->allow)
		put(o, "terminate", json_boolean(r->terminate), ok);
	return o;
}

static json_t *dns_json(const struct policy_dns *d, bool *ok)
{
	json_t *o = json_object(), *ns = json_array();

	if (!o) {
		json_decref(ns);
		return NULL;
	}
	for (int i = 0; ns && i < d->n_nameservers; i++) {
		char a[INET6_ADDRSTRLEN], buf[sizeof(a) + 16];

		if (policy_addr_format(&d->nameservers[i].addr, a, sizeof(a)) < 0) {
			*ok = false;
			continue;
		}
		snprintf(buf, sizeof(buf),
			 d->nameservers[i].addr.family == AF_INET6 ? "[%s]:%u" : "%s:%u", a,
			 (unsigned int)d->nameservers[i].port);
		push(ns, json_string(buf), ok);
	}
	put(o, "nameservers", ns, ok);
	put(o, "rebind_protection", json_boolean(d->rebind_protection), ok);
	put(o, "timeout_ms", json_integer(d->timeout_ms), ok);
	if (d->intercept == POLICY_DNS_INTERCEPT_OFF)
		put(o, "intercept", json_false(), ok);
	else
		put(o, "intercept",
		    json_string(d->intercept == POLICY_DNS_INTERCEPT_REQUESTED ?
					"forward_to_requested" :
					"redirect"),
		    ok);
	return o;
}

static json_t *limits_json(const struct policy_limits *l, bool *ok)
{
	const struct {
		const char *key;
		const struct policy_limit *lim;
	} all[] = {
		{ "max_tcp_connections", &l->max_tcp_connections },
		{ "max_udp_flows", &l->max_udp_flows },
		{ "new_connections_per_second", &l->new_connections_per_second },
		{ "egress_bytes_per_second", &l->egress_bytes_per_second },
		{ "ingress_bytes_per_second", &l->ingress_bytes_per_second },
	};
	json_t *o = json_object();

	for (size_t i = 0; o && i < sizeof(all) / sizeof(all[0]); i++) {
		json_t *x;

		if (!all[i].lim->set)
			continue;
		x = json_object();
		if (x) {
			put(x, "limit", json_integer((json_int_t)all[i].lim->value), ok);
			put(x, "on_exceed",
			    json_string(all[i].lim->on_exceed == POLICY_EXCEED_TERMINATE ?
						"terminate" :
						"refuse"),
			    ok);
		}
		put(o, all[i].key, x, ok);
	}
	return o;
}

static json_t *publish_json(const struct policy *p, bool *ok)
{
	json_t *a = json_array();

	for (int i = 0; a && i < p->n_publish; i++) {
		const struct policy_publish *pb = &p->publish[i];
		json_t *o = json_object();

		if (o) {
			put(o, "host_address", addr_string(&pb->host_addr, 0, false), ok);
			put(o, "host_port", json_integer(pb->host_port), ok);
			put(o, "guest_port", json_integer(pb->guest_port), ok);
			put(o, "protocol", json_string(policy_proto_name(pb->proto)), ok);
		}
		push(a, o, ok);
	}
	return a;
}

static json_t *names_json(const struct policy_name *list, int n, bool *ok)
{
	json_t *a = json_array();

	for (int i = 0; a && i < n; i++) {
		json_t *o = json_object();

		if (o)
			put(o, list[i].suffix ? "domain_suffix" : "domain",
			    json_string(list[i].name), ok);
		push(a, o, ok);
	}
	return a;
}

static json_t *tls_json(const struct policy_tls *t, bool *ok)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	put(o, "intercept", names_json(t->intercept, t->n_intercept, ok), ok);
	put(o, "bypass", names_json(t->bypass, t->n_bypass, ok), ok);
	if (t->ca_cert) {
		json_t *ca = json_object();

		if (ca) {
			put(ca, "cert", json_string(t->ca_cert), ok);
			put(ca, "key", json_string(t->ca_key), ok);
		}
		put(o, "ca", ca, ok);
	}
	put(o, "upstream_ca", json_string(t->upstream_ca), ok);
	return o;
}

/* Where each value is, never a value: the policy holds none. */
static json_t *secrets_json(const struct policy *p, bool *ok)
{
	json_t *a = json_array();

	for (int i = 0; a && i < p->n_secrets; i++) {
		const struct policy_secret *s = &p->secrets[i];
		json_t *o = json_object();

		if (o) {
			put(o, "placeholder", json_string(s->placeholder), ok);
			if (s->value_file)
				put(o, "value_file", json_string(s->value_file), ok);
			else
				put(o, "value_env", json_string(s->value_env), ok);
			put(o, "hosts", names_json(s->hosts, s->n_hosts, ok), ok);
			put(o, "on_violation",
			    json_string(policy_secret_violation_name(s->on_violation)), ok);
		}
		push(a, o, ok);
	}
	return a;
}

/**
 * policy_to_json() - the normalized policy as JSON text
 * @p:	the policy
 *
 * Pretty-printed with a 2-space indent, keys in schema order, no trailing
 * newline. policy_parse() of the text gives a policy that policy_equal()s
 * @p.
 *
 * Return: a malloc'd string the caller frees, or NULL if out of memory.
 */
char *policy_to_json(const struct policy *p)
{
	json_t *root, *rules;
	bool ok = true;
	char *text;

	if (!p)
		return NULL;
	root = json_object();
	if (!root)
		return NULL;
	put(root, "default_egress", json_string(p->default_egress_allow ? "allow" : "deny"), &ok);
	put(root, "default_ingress", json_string(p->default_ingress_allow ? "allow" : "deny"), &ok);
	rules = json_array();
	for (int i = 0; rules && i < p->n_rules; i++)
		push(rules, rule_json(&p->rules[i], &ok), &ok);
	put(root, "rules", rules, &ok);
	put(root, "dns", dns_json(&p->dns, &ok), &ok);
	put(root, "limits", limits_json(&p->limits, &ok), &ok);
	put(root, "publish", publish_json(p, &ok), &ok);
	{
		json_t *rl = json_object();

		put(rl, "existing", json_string(p->reload_keep ? "keep" : "reevaluate"), &ok);
		put(root, "reload", rl, &ok);
	}
	if (p->has_tls) {
		put(root, "tls", tls_json(&p->tls, &ok), &ok);
		put(root, "secrets", secrets_json(p, &ok), &ok);
	}
	text = ok ? json_dumps(root, JSON_INDENT(2)) : NULL;
	json_decref(root);
	return text;
}

static bool addr_same(const struct policy_addr *a, const struct policy_addr *b)
{
	if (a->family != b->family)
		return false;
	return !memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

static bool rule_equal(const struct policy_rule *a, const struct policy_rule *b)
{
	if (a->directions != b->directions || a->protocols != b->protocols ||
	    a->icmp_families != b->icmp_families || a->kind != b->kind || a->allow != b->allow ||
	    a->terminate != b->terminate || a->n_ports != b->n_ports)
		return false;
	for (int i = 0; i < a->n_ports; i++)
		if (a->ports[i].start != b->ports[i].start || a->ports[i].end != b->ports[i].end)
			return false;
	switch (a->kind) {
	case POLICY_DEST_ANY:
		return true;
	case POLICY_DEST_CIDR:
		return a->prefix == b->prefix && addr_same(&a->net, &b->net);
	case POLICY_DEST_DOMAIN:
	case POLICY_DEST_SUFFIX:
		return !strcmp(a->name, b->name);
	case POLICY_DEST_GROUP:
		return a->group == b->group;
	}
	return false;
}

static bool str_equal(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

static bool names_equal(const struct policy_name *a, int na, const struct policy_name *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i].suffix != b[i].suffix || strcmp(a[i].name, b[i].name))
			return false;
	return true;
}

static bool tls_equal(const struct policy *a, const struct policy *b)
{
	if (a->has_tls != b->has_tls || a->n_secrets != b->n_secrets)
		return false;
	if (!a->has_tls)
		return true;
	if (!names_equal(a->tls.intercept, a->tls.n_intercept, b->tls.intercept,
			 b->tls.n_intercept) ||
	    !names_equal(a->tls.bypass, a->tls.n_bypass, b->tls.bypass, b->tls.n_bypass) ||
	    !str_equal(a->tls.ca_cert, b->tls.ca_cert) ||
	    !str_equal(a->tls.ca_key, b->tls.ca_key) ||
	    !str_equal(a->tls.upstream_ca, b->tls.upstream_ca))
		return false;
	for (int i = 0; i < a->n_secrets; i++) {
		const struct policy_secret *x = &a->secrets[i], *y = &b->secrets[i];

		if (strcmp(x->placeholder, y->placeholder) ||
		    !str_equal(x->value_env, y->value_env) ||
		    !str_equal(x->value_file, y->value_file) ||
		    x->on_violation != y->on_violation ||
		    !names_equal(x->hosts, x->n_hosts, y->hosts, y->n_hosts))
			return false;
	}
	return true;
}

static bool limit_equal(const struct policy_limit *a, const struct policy_limit *b)
{
	if (a->set != b->set)
		return false;
	return !a->set || (a->value == b->value && a->on_exceed == b->on_exceed);
}

/**
 * policy_equal() - do two policies say the same thing
 * @a:	a policy
 * @b:	another
 *
 * Compares the documents in normalized form: defaults, rules in order,
 * dns, limits, publish, reload, tls and secrets (in order; where each
 * value is, as the policy holds no value). Not the env.
 *
 * Return: true if they are equal (two NULLs are equal).
 */
bool policy_equal(const struct policy *a, const struct policy *b)
{
	const struct policy_limits *la, *lb;

	if (!a || !b)
		return a == b;
	if (a->default_egress_allow != b->default_egress_allow ||
	    a->default_ingress_allow != b->default_ingress_allow || a->n_rules != b->n_rules ||
	    a->n_publish != b->n_publish || a->reload_keep != b->reload_keep || !tls_equal(a, b))
		return false;
	for (int i = 0; i < a->n_rules; i++)
		if (!rule_equal(&a->rules[i], &b->rules[i]))
			return false;
	la = &a->limits;
	lb = &b->limits;
	if (!limit_equal(&la->max_tcp_connections, &lb->max_tcp_connections) ||
	    !limit_equal(&la->max_udp_flows, &lb->max_udp_flows) ||
	    !limit_equal(&la->new_connections_per_second, &lb->new_connections_per_second) ||
	    !limit_equal(&la->egress_bytes_per_second, &lb->egress_bytes_per_second) ||
	    !limit_equal(&la->ingress_bytes_per_second, &lb->ingress_bytes_per_second))
		return false;
	if (a->dns.n_nameservers != b->dns.n_nameservers ||
	    a->dns.rebind_protection != b->dns.rebind_protection ||
	    a->dns.timeout_ms != b->dns.timeout_ms || a->dns.intercept != b->dns.intercept)
		return false;
	for (int i = 0; i < a->dns.n_nameservers; i++)
		if (a->dns.nameservers[i].port != b->dns.nameservers[i].port ||
		    !addr_same(&a->dns.nameservers[i].addr, &b->dns.nameservers[i].addr))
			return false;
	for (int i = 0; i < a->n_publish; i++) {
		const struct policy_publish *x = &a->publish[i], *y = &b->publish[i];

		if (x->host_port != y->host_port || x->guest_port != y->guest_port ||
		    x->proto != y->proto || !addr_same(&x->host_addr, &y->host_addr))
			return false;
	}
	return true;
}
