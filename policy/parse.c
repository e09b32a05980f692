/* SPDX-License-Identifier: MIT */
/*
 * parse.c - the policy file: strict JSON schema to struct policy
 *
 * Theory of Operation
 * -------------------
 * The supervisor parses the policy file before it forks anything and
 * refuses to start on any error; on SIGHUP it parses the new file fully
 * before swapping it in. The proxy parses the normalized text the
 * supervisor sends it (policy_to_json()) with this same code. So this is
 * the one gate every policy passes, and it fails closed: unknown keys,
 * wrong types, values out of range -- all are errors, never a silent
 * "allow". A missing default_egress or default_ingress means "deny", as
 * in microsandbox, and leaves a warning (policy_warning()) for `moat policy
 * check` and the supervisor's log.
 *
 * Name resolution happens here too, and only here: a nameserver given as a
 * host name ("dns.example:53") is resolved with getaddrinfo() while the
 * supervisor parses the file, and the normalized text carries the address;
 * the proxy (which could not resolve anything) only ever parses addresses.
 *
 * jansson does the JSON: json_loadb() with JSON_REJECT_DUPLICATES; it
 * rejects invalid UTF-8, NUL bytes and nesting deeper than 2048 levels
 * without recursing further. Files over POLICY_MAX_FILE_SIZE are refused
 * before jansson sees them. Syntax errors carry jansson's position:
 * "FILE:LINE:COL: message". jansson keeps no positions for values, so
 * schema errors name the field instead: "FILE: rules[3].ports[0].end:
 * must be an integer 0..65535". Values echoed in messages are truncated
 * and stripped of control characters: the file is not trusted to be
 * printable.
 *
 * Normalization happens here, once: names lowercased without their dots
 * at the ends, CIDRs folded (IPv4-mapped to IPv4, host bits cleared), port
 * ranges sorted and merged (the full range 0..65535 is no filter at all),
 * "icmpv4"/"icmpv6" kept as icmp of one family, and icmp dropped from the protocols of
 * a rule with a port filter (icmp has no ports to pass it). Matching
 * (match.c) and serializing (emit.c) rely on that form.
 *
 * The tls and secrets sections are parsed last, tls first: each host of a
 * secret must be intercepted in full (policy_tls_cover(), tls.c), and no
 * placeholder may be, or be part of, another. A secret's value is never
 * read here: only where it is (value_env, value_file) is recorded.
 *
 * Library code: never exits; every function returns -1 with the reason
 * in the caller's buffer and frees what it built. Reading files, the
 * default policy and freeing are in policy.c.
 */
#include <jansson.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy_int.h"

#define PATH_MAX_LEN 256 /* field paths in messages */
#define SHOW_MAX     64	 /* characters of a value echoed in a message */

struct ctx {
	const char *file;
	char *err;
	size_t errlen;
};

/* ------------------------------------------------------------------ */
/* Error messages                                                      */
/* ------------------------------------------------------------------ */

/* Copy @s for a message: printable ASCII only, at most SHOW_MAX characters. */
static const char *show(char *buf, size_t n, const char *s)
{
	size_t i = 0, o = 0;

	for (; s[i] && o + 4 < n && i < SHOW_MAX; i++, o++)
		buf[o] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] && o + 4 < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static int schema_err(struct ctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int schema_err(struct ctx *c, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!c->err || !c->errlen)
		return -1;
	n = snprintf(c->err, c->errlen, "%s: %s%s", c->file, path, *path ? ": " : "");
	if (n < 0 || (size_t)n >= c->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* A path too long for its buffer (never, with the schema's depth) ends in "...". */
static void path_truncated(char *buf, int n)
{
	if (n < 0 || n >= PATH_MAX_LEN)
		memcpy(buf + PATH_MAX_LEN - 4, "...", 4);
}

static void path_key(char *buf, const char *parent, const char *key)
{
	char k[SHOW_MAX + 8];

	path_truncated(buf, snprintf(buf, PATH_MAX_LEN, "%s%s%s", parent, *parent ? "." : "",
				     show(k, sizeof(k), key)));
}

static void path_index(char *buf, const char *parent, size_t i)
{
	path_truncated(buf, snprintf(buf, PATH_MAX_LEN, "%s[%zu]", parent, i));
}

/* @words (NULL-terminated) as "a, b, c" in @buf (@n bytes, cut short if need be). */
static const char *join_words(char *buf, size_t n, const char *const *words)
{
	size_t o = 0;

	buf[0] = '\0';
	for (const char *const *w = words; *w && o < n; w++)
		o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", *w);
	return buf;
}

/* Every key of @obj must be in @allowed (NULL-terminated). */
static int check_keys(struct ctx *c, json_t *obj, const char *path, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		char p[PATH_MAX_LEN], list[256];
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			if (!strcmp(key, *a))
				ok = true;
		if (ok)
			continue;
		path_key(p, path, key);
		return schema_err(c, p, "unknown key (expected one of: %s)",
				  join_words(list, sizeof(list), allowed));
	}
	return 0;
}

/* @j must be an object (else "must be @must") with no key outside @allowed. */
static int check_object(struct ctx *c, json_t *j, const char *path, const char *const *allowed,
			const char *must)
{
	if (!json_is_object(j))
		return schema_err(c, path, "must be %s", must);
	return check_keys(c, j, path, allowed);
}

/*
 * An object of one member, its key one of @keys and its value a string
 * (else "must be @must", or "must have exactly one of ..." for more than
 * one): its key, its value in *@val and the value's path in @p
 * (PATH_MAX_LEN); NULL if it is not.
 */
static const char *get_one_of(struct ctx *c, json_t *j, const char *path, const char *const *keys,
			      const char *must, json_t **val, char *p)
{
	char list[256];
	const char *key;

	if (!json_is_object(j) || json_object_size(j) != 1) {
		if (json_is_object(j) && json_object_size(j) > 1)
			schema_err(c, path, "must have exactly one of %s",
				   join_words(list, sizeof(list), keys));
		else
			schema_err(c, path, "must be %s", must);
		return NULL;
	}
	if (check_keys(c, j, path, keys) < 0)
		return NULL;
	key = json_object_iter_key(json_object_iter(j));
	*val = json_object_iter_value(json_object_iter(j));
	path_key(p, path, key);
	if (!json_is_string(*val)) {
		schema_err(c, p, "must be a string");
		return NULL;
	}
	return key;
}

/* ------------------------------------------------------------------ */
/* Scalars                                                             */
/* ------------------------------------------------------------------ */

static int get_int(struct ctx *c, json_t *j, const char *path, json_int_t min, json_int_t max,
		   json_int_t *out)
{
	*out = 0; /* gcc -O3 cannot see that callers stop on an error */
	if (!json_is_integer(j) || json_integer_value(j) < min || json_integer_value(j) > max) {
		if (max == INT64_MAX)
			return schema_err(c, path, "must be an integer of at least %lld",
					  (long long)min);
		return schema_err(c, path, "must be an integer %lld..%lld", (long long)min,
				  (long long)max);
	}
	*out = json_integer_value(j);
	return 0;
}

/*
 * The member @key of @obj (at @path), which must be there: else NULL and
 * "missing (@missing)". Its path is left in @p (PATH_MAX_LEN).
 */
static json_t *get_required(struct ctx *c, json_t *obj, const char *path, const char *key,
			    const char *missing, char *p)
{
	json_t *x = json_object_get(obj, key);

	path_key(p, path, key);
	if (!x)
		schema_err(c, p, "missing (%s)", missing);
	return x;
}

/* The integer member @key of @obj, which must be there (get_required()). */
static int get_required_int(struct ctx *c, json_t *obj, const char *path, const char *key,
			    json_int_t min, json_int_t max, const char *missing, json_int_t *out)
{
	char p[PATH_MAX_LEN];
	json_t *x = get_required(c, obj, path, key, missing, p);

	*out = 0;
	return x ? get_int(c, x, p, min, max, out) : -1;
}

static int get_bool(struct ctx *c, json_t *j, const char *path, bool *out)
{
	if (!json_is_boolean(j))
		return schema_err(c, path, "must be true or false");
	*out = json_is_true(j);
	return 0;
}

/* A string that must be one of @words (NULL-terminated): its index. */
static int get_word(struct ctx *c, json_t *j, const char *path, const char *const *words,
		    const char *expect)
{
	char v[SHOW_MAX + 8];

	if (!json_is_string(j))
		return schema_err(c, path, "must be %s", expect);
	for (int i = 0; words[i]; i++)
		if (!strcmp(json_string_value(j), words[i]))
			return i;
	return schema_err(c, path, "\"%s\" is not %s", show(v, sizeof(v), json_string_value(j)),
			  expect);
}

/* The member @key of @obj, if there, one of @words (get_word()): its index, or @absent. */
static int get_optional_word(struct ctx *c, json_t *obj, const char *path, const char *key,
			     const char *const *words, const char *expect, int absent)
{
	char p[PATH_MAX_LEN];
	json_t *x = json_object_get(obj, key);

	if (!x)
		return absent;
	path_key(p, path, key);
	return get_word(c, x, p, words, expect);
}

static int get_action(struct ctx *c, json_t *j, const char *path, bool *allow)
{
	static const char *const words[] = { "allow", "deny", NULL };
	int i = get_word(c, j, path, words, "\"allow\" or \"deny\"");

	if (i < 0)
		return -1;
	*allow = i == 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lists                                                               */
/* ------------------------------------------------------------------ */

/* What a bounded list of the schema holds, and what its messages call it. */
struct list_schema {
	const char *not_list; /* "must be NOT_LIST": the reason when it is no list */
	const char *items;    /* "more than MAX ITEMS" */
	int max;
	size_t size; /* of one item */
	/* Parse @j (at @path) into @item; @arg is parse_list()'s. */
	int (*parse_item)(struct ctx *c, json_t *j, const char *path, void *item, void *arg);
};

/*
 * A list of at most @s->max items into a new array (*@items, NULL for []),
 * each parsed by @s->parse_item with @arg. *@n_items counts the items
 * begun, so that policy_free() frees what was built when one fails.
 */
static int parse_list(struct ctx *c, json_t *j, const char *path, const struct list_schema *s,
		      void *arg, void **items, int *n_items)
{
	size_t i, n;
	json_t *v;

	if (!json_is_array(j))
		return schema_err(c, path, "must be %s", s->not_list);
	n = json_array_size(j);
	if (n > (size_t)s->max)
		return schema_err(c, path, "more than %d %s", s->max, s->items);
	if (!n)
		return 0;
	*items = calloc(n, s->size);
	if (!*items)
		return schema_err(c, path, "out of memory");
	json_array_foreach(j, i, v)
	{
		char p[PATH_MAX_LEN];

		*n_items = (int)i + 1;
		path_index(p, path, i);
		if (s->parse_item(c, v, p, (char *)*items + i * s->size, arg) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Destinations                                                        */
/* ------------------------------------------------------------------ */

/*
 * "addr/prefix" or a bare address (a /32 or /128). IPv4-mapped IPv6 with a
 * prefix of 96 or more is folded to IPv4; host bits are cleared
 * (10.1.2.3/8 is 10.0.0.0/8).
 */
static const char *parse_cidr(const char *s, struct policy_addr *net, int *prefix)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	int max, pre;

	if (alen >= sizeof(buf))
		return "is not a CIDR like 10.0.0.0/8 or 2001:db8::/32";
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (policy_addr_parse(buf, net) < 0)
		return "is not a CIDR like 10.0.0.0/8 or 2001:db8::/32";
	max = net->family == AF_INET ? 32 : 128;
	pre = max;
	if (slash) {
		const char *d = slash + 1;

		if (!*d || strlen(d) > 3)
			return net->family == AF_INET ? "has a bad prefix length (must be 0..32)" :
							"has a bad prefix length (must be 0..128)";
		pre = 0;
		for (; *d; d++) {
			if (*d < '0' || *d > '9')
				return net->family == AF_INET ?
					       "has a bad prefix length (must be 0..32)" :
					       "has a bad prefix length (must be 0..128)";
			pre = pre * 10 + (*d - '0');
		}
		if (pre > max)
			return net->family == AF_INET ? "has a bad prefix length (must be 0..32)" :
							"has a bad prefix length (must be 0..128)";
	}
	if (net->family == AF_INET6 && pre >= 96) {
		struct policy_addr n4;

		policy_addr_normalize(net, &n4);
		if (n4.family == AF_INET) {
			*net = n4;
			pre -= 96;
		}
	}
	/* Clear the host bits. */
	for (int bit = pre; bit < (net->family == AF_INET ? 32 : 128); bit++)
		net->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	if (net->family == AF_INET)
		memset(net->addr + 4, 0, 12);
	*prefix = pre;
	return NULL;
}

/*
 * A DNS name: one dot at either end is dropped (".example.com" reads
 * naturally as a suffix, "example.com." is an FQDN), lowercased; labels of
 * letters, digits, '-' and '_', 1..63 characters; at most 253 in all.
 */
static const char *parse_name(const char *s, char **out)
{
	size_t n = strlen(s), label = 0;
	char *name;

	if (strchr(s, '*'))
		return "is not a domain name (wildcards are not supported: use domain_suffix)";
	if (strpbrk(s, ":/@?#"))
		return "is not a domain name (no scheme, port, path or user: just the name)";
	if (n && s[0] == '.')
		s++, n--;
	if (n && s[n - 1] == '.')
		n--;
	if (!n)
		return "is not a domain name (it is empty)";
	if (n > 253)
		return "is not a domain name (longer than 253 characters)";
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (!label)
				return "is not a domain name (empty label)";
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return "is not a domain name (a label may hold letters, digits, '-' and '_')";
		if (++label > 63)
			return "is not a domain name (a label is longer than 63 characters)";
	}
	if (!label)
		return "is not a domain name (empty label)";
	name = malloc(n + 1);
	if (!name)
		return "out of memory";
	for (size_t i = 0; i < n; i++)
		name[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
	name[n] = '\0';
	*out = name;
	return NULL;
}

static int parse_destination(struct ctx *c, json_t *j, const char *path, struct policy_rule *r)
{
	static const char *const groups[] = { [POLICY_GROUP_UNSPECIFIED] = "",
					      [POLICY_GROUP_HOST] = "host",
					      [POLICY_GROUP_METADATA] = "metadata",
					      [POLICY_GROUP_LOOPBACK] = "loopback",
					      [POLICY_GROUP_PRIVATE] = "private",
					      [POLICY_GROUP_LINK_LOCAL] = "link_local",
					      [POLICY_GROUP_MULTICAST] = "multicast",
					      [POLICY_GROUP_PUBLIC] = "public",
					      NULL };
	static const char *const keys[] = { "cidr", "domain", "domain_suffix", "group", NULL };
	const char *key, *why;
	char p[PATH_MAX_LEN], v[SHOW_MAX + 8];
	json_t *val;
	int g;

	if (json_is_string(j) && !strcmp(json_string_value(j), "any")) {
		r->kind = POLICY_DEST_ANY;
		return 0;
	}
	key = get_one_of(c, j, path, keys,
			 "\"any\" or an object with one of cidr, domain, domain_suffix, group",
			 &val, p);
	if (!key)
		return -1;
	if (!strcmp(key, "group")) {
		g = get_word(c, val, p, groups + 1,
			     "one of public, private, loopback, link_local, "
			     "metadata, multicast, host");
		if (g < 0)
			return -1;
		r->kind = POLICY_DEST_GROUP;
		r->group = (enum policy_group)(g + 1);
		return 0;
	}
	if (!strcmp(key, "cidr")) {
		why = parse_cidr(json_string_value(val), &r->net, &r->prefix);
		r->kind = POLICY_DEST_CIDR;
	} else {
		why = parse_name(json_string_value(val), &r->name);
		r->kind = strcmp(key, "domain") ? POLICY_DEST_SUFFIX : POLICY_DEST_DOMAIN;
	}
	if (why)
		return schema_err(c, p, "\"%s\" %s", show(v, sizeof(v), json_string_value(val)),
				  why);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Protocols and ports                                                 */
/* ------------------------------------------------------------------ */

/* "icmp" is both families, "icmpv4" and "icmpv6" one each (as in microsandbox). */
static int parse_protocols(struct ctx *c, json_t *j, const char *path, unsigned int *protos,
			   unsigned int *icmp_families, bool *named_icmp)
{
	static const char *const words[] = { "tcp", "udp", "icmp", "icmpv4", "icmpv6", NULL };
	static const unsigned int bits[] = { POLICY_PROTO_TCP, POLICY_PROTO_UDP, POLICY_PROTO_ICMP,
					     POLICY_PROTO_ICMP, POLICY_PROTO_ICMP };
	static const unsigned int fams[] = { 0, 0, POLICY_ICMP_V4 | POLICY_ICMP_V6, POLICY_ICMP_V4,
					     POLICY_ICMP_V6 };
	size_t i;
	json_t *v;

	*protos = 0;
	*icmp_families = 0;
	*named_icmp = false;
	if (!json_is_array(j))
		return schema_err(c, path, "must be a list of protocols (tcp, udp, icmp)");
	json_array_foreach(j, i, v)
	{
		char p[PATH_MAX_LEN];
		int w;

		path_index(p, path, i);
		w = get_word(c, v, p, words, "one of tcp, udp, icmp, icmpv4, icmpv6");
		if (w < 0)
			return -1;
		*protos |= bits[w];
		*icmp_families |= fams[w];
		if (bits[w] == POLICY_PROTO_ICMP)
			*named_icmp = true;
	}
	if (!*protos) {
		*protos = POLICY_PROTO_ALL; /* [] = every protocol */
		*icmp_families = POLICY_ICMP_V4 | POLICY_ICMP_V6;
	}
	return 0;
}

static int port_cmp(const void *a, const void *b)
{
	const struct policy_port_range *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* One of a rule's "ports": a number or a {"start", "end"} range (@item). */
static int parse_port_range(struct ctx *c, json_t *j, const char *path, void *item, void *arg)
{
	static const char *const keys[] = { "start", "end", NULL };
	struct policy_port_range *pr = item;
	json_int_t s, e;

	(void)arg;
	if (json_is_integer(j)) {
		if (get_int(c, j, path, 0, 65535, &s) < 0)
			return -1;
		e = s;
	} else if (json_is_object(j)) {
		if (check_keys(c, j, path, keys) < 0)
			return -1;
		if (get_required_int(c, j, path, "start", 0, 65535, "a range needs start and end",
				     &s) < 0 ||
		    get_required_int(c, j, path, "end", 0, 65535, "a range needs start and end",
				     &e) < 0)
			return -1;
		if (s > e)
			return schema_err(c, path, "start %lld is greater than end %lld",
					  (long long)s, (long long)e);
	} else {
		return schema_err(c, path, "must be a port number or {\"start\", \"end\"}");
	}
	pr->start = (uint16_t)s;
	pr->end = (uint16_t)e;
	return 0;
}

static int parse_ports(struct ctx *c, json_t *j, const char *path, struct policy_rule *r)
{
	static const struct list_schema ports = { "a list of ports or {\"start\", \"end\"} ranges",
						  "port ranges", POLICY_MAX_PORT_RANGES,
						  sizeof(*r->ports), parse_port_range };
	struct policy_port_range *pr;
	size_t i, n;
	int m;

	if (parse_list(c, j, path, &ports, NULL, (void **)&r->ports, &r->n_ports) < 0)
		return -1;
	pr = r->ports;
	n = (size_t)r->n_ports;
	if (!n)
		return 0; /* [] = every port */
	/* Sort and merge overlapping or adjacent ranges. */
	qsort(pr, n, sizeof(*pr), port_cmp);
	m = 0;
	for (i = 1; i < n; i++) {
		if ((int)pr[i].start <= (int)pr[m].end + 1) {
			if (pr[i].end > pr[m].end)
				pr[m].end = pr[i].end;
		} else {
			pr[++m] = pr[i];
		}
	}
	r->n_ports = m + 1;
	if (r->n_ports == 1 && pr[0].start == 0 && pr[0].end == 65535) {
		free(pr); /* every port: no filter */
		r->ports = NULL;
		r->n_ports = 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Rules                                                               */
/* ------------------------------------------------------------------ */

/* One of "rules": @item is its struct policy_rule. */
static int parse_rule(struct ctx *c, json_t *j, const char *path, void *item, void *arg)
{
	static const char *const keys[] = { "direction", "destination", "protocols", "ports",
					    "action",	 "terminate",	NULL };
	static const char *const dirs[] = { "egress", "ingress", "any", NULL };
	static const unsigned int dir_bits[] = { POLICY_EGRESS, POLICY_INGRESS,
						 POLICY_EGRESS | POLICY_INGRESS };
	struct policy_rule *r = item;
	char p[PATH_MAX_LEN];
	bool named_icmp = false;
	json_t *v;
	int d;

	(void)arg;

	r->protocols = POLICY_PROTO_ALL;
	r->icmp_families = POLICY_ICMP_V4 | POLICY_ICMP_V6;
	if (check_object(c, j, path, keys, "an object (a rule)") < 0)
		return -1;

	v = get_required(c, j, path, "direction", "\"egress\", \"ingress\" or \"any\"", p);
	if (!v)
		return -1;
	d = get_word(c, v, p, dirs, "\"egress\", \"ingress\" or \"any\"");
	if (d < 0)
		return -1;
	r->directions = dir_bits[d];

	v = get_required(c, j, path, "destination",
			 "\"any\", {\"cidr\": ...}, {\"domain\": ...}, "
			 "{\"domain_suffix\": ...} or {\"group\": ...}",
			 p);
	if (!v)
		return -1;
	if (parse_destination(c, v, p, r) < 0)
		return -1;

	path_key(p, path, "protocols");
	v = json_object_get(j, "protocols");
	if (v && parse_protocols(c, v, p, &r->protocols, &r->icmp_families, &named_icmp) < 0)
		return -1;

	path_key(p, path, "ports");
	v = json_object_get(j, "ports");
	if (v && parse_ports(c, v, p, r) < 0)
		return -1;
	if (named_icmp && r->n_ports)
		return schema_err(c, p,
				  "icmp has no ports: put icmp in a rule of its own, "
				  "without ports");
	/* A rule with ports can only match tcp and udp: say so in its protocols. */
	if (r->n_ports)
		r->protocols &= ~(unsigned int)POLICY_PROTO_ICMP;
	if (!(r->protocols & POLICY_PROTO_ICMP))
		r->icmp_families = 0;

	v = get_required(c, j, path, "action", "\"allow\" or \"deny\"", p);
	if (!v)
		return -1;
	if (get_action(c, v, p, &r->allow) < 0)
		return -1;

	path_key(p, path, "terminate");
	v = json_object_get(j, "terminate");
	if (v) {
		if (get_bool(c, v, p, &r->terminate) < 0)
			return -1;
		if (r->terminate && r->allow)
			return schema_err(c, p, "only a deny rule can terminate");
	}
	return 0;
}

static int parse_rules(struct ctx *c, json_t *j, struct policy *pol)
{
	static const struct list_schema rules = { "a list of rules", "rules", POLICY_MAX_RULES,
						  sizeof(*pol->rules), parse_rule };

	return parse_list(c, j, "rules", &rules, NULL, (void **)&pol->rules, &pol->n_rules);
}

/* ------------------------------------------------------------------ */
/* dns, limits, publish                                                */
/* ------------------------------------------------------------------ */

/* Is @s (of @n bytes) a host name: letters, digits, '-' and '.', not all digits and dots? */
static bool is_hostname(const char *s, size_t n)
{
	bool letter = false;

	if (!n || n > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
			letter = true;
		else if (!(ch >= '0' && ch <= '9') && ch != '-' && ch != '.')
			return false;
	}
	return letter;
}

/*
 * A nameserver given as "NAME" or "NAME:PORT": resolve NAME now (the first
 * address getaddrinfo() gives). Return: 0, 1 if @s is not of that form, or
 * -1 with the error set.
 */
static int resolve_nameserver(struct ctx *c, const char *path, const char *s, struct policy_addr *a,
			      uint16_t *port)
{
	const char *colon = strchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM }, *res = NULL;
	char host[254], v[SHOW_MAX + 8];
	int rc;

	if (!is_hostname(s, n))
		return 1;
	if (colon) {
		char *end;
		unsigned long pn = strtoul(colon + 1, &end, 10);

		if (!colon[1] || *end || colon[1] < '0' || colon[1] > '9' || pn < 1 || pn > 65535)
			return 1;
		*port = (uint16_t)pn;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 || !res)
		return schema_err(c, path, "cannot resolve the host name \"%s\": %s",
				  show(v, sizeof(v), host), rc ? gai_strerror(rc) : "no address");
	memset(a, 0, sizeof(*a));
	if (res->ai_family == AF_INET6) {
		a->family = AF_INET6;
		memcpy(a->addr, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr, 16);
	} else {
		a->family = AF_INET;
		memcpy(a->addr, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, 4);
	}
	freeaddrinfo(res);
	return 0;
}

/* dns.nameservers: addresses, address:port, [v6]:port, or host names resolved now. */
static int parse_nameservers(struct ctx *c, json_t *ns, struct policy_dns *dns)
{
	char p[PATH_MAX_LEN], v[SHOW_MAX + 8];
	json_t *x;
	size_t i;
	int rc;

	if (!json_is_array(ns))
		return schema_err(c, "dns.nameservers", "must be a list of addresses");
	if (json_array_size(ns) > POLICY_MAX_NAMESERVERS)
		return schema_err(c, "dns.nameservers", "more than %d nameservers",
				  POLICY_MAX_NAMESERVERS);
	json_array_foreach(ns, i, x)
	{
		struct policy_addr *a = &dns->nameservers[i].addr;

		path_index(p, "dns.nameservers", i);
		if (!json_is_string(x))
			return schema_err(c, p,
					  "must be a string like \"192.0.2.53\", "
					  "\"192.0.2.53:5353\" or \"[2001:db8::53]:53\"");
		/* "192.0.2.1", "2001:db8::1", "[2001:db8::1]" alone are port 53. */
		dns->nameservers[i].port = 53;
		rc = policy_hostport_parse(json_string_value(x), POLICY_HOSTPORT_PORT_OPTIONAL, a,
					   &dns->nameservers[i].port) < 0 ?
			     resolve_nameserver(c, p, json_string_value(x), a,
						&dns->nameservers[i].port) :
			     0;
		if (rc < 0)
			return -1;
		if (rc > 0)
			return schema_err(
				c, p,
				"\"%s\" is not an address like \"192.0.2.53\", "
				"\"192.0.2.53:5353\", \"[2001:db8::53]:53\" or a host name",
				show(v, sizeof(v), json_string_value(x)));
		if (policy_classify(NULL, a) == POLICY_GROUP_UNSPECIFIED)
			return schema_err(c, p, "\"%s\" is the unspecified address",
					  show(v, sizeof(v), json_string_value(x)));
		dns->n_nameservers = (int)i + 1;
	}
	return 0;
}

static int parse_dns(struct ctx *c, json_t *j, struct policy_dns *dns)
{
	static const char *const keys[] = { "nameservers",	"rebind_protection", "timeout_ms",
					    "query_timeout_ms", "intercept",	     NULL };
	static const char *const intercepts[] = { "redirect", "forward_to_requested", NULL };
	json_int_t t;
	json_t *ns, *x;

	if (check_object(c, j, "dns", keys, "an object") < 0)
		return -1;
	ns = json_object_get(j, "nameservers");
	if (ns && parse_nameservers(c, ns, dns) < 0)
		return -1;
	x = json_object_get(j, "rebind_protection");
	if (x && get_bool(c, x, "dns.rebind_protection", &dns->rebind_protection) < 0)
		return -1;
	x = json_object_get(j, "timeout_ms");
	if (x && json_object_get(j, "query_timeout_ms"))
		return schema_err(c, "dns.query_timeout_ms",
				  "give timeout_ms or query_timeout_ms (microsandbox's name), "
				  "not both");
	if (!x)
		x = json_object_get(j, "query_timeout_ms");
	if (x) {
		if (get_int(c, x,
			    json_object_get(j, "timeout_ms") ? "dns.timeout_ms" :
							       "dns.query_timeout_ms",
			    1, 60000, &t) < 0)
			return -1;
		dns->timeout_ms = (uint32_t)t;
	}
	x = json_object_get(j, "intercept");
	if (json_is_false(x)) {
		dns->intercept = POLICY_DNS_INTERCEPT_OFF;
	} else if (json_is_true(x)) {
		dns->intercept = POLICY_DNS_INTERCEPT_REDIRECT;
	} else if (x) {
		int w = get_word(c, x, "dns.intercept", intercepts,
				 "\"redirect\", \"forward_to_requested\" or false");

		if (w < 0)
			return -1;
		dns->intercept = w == 0 ? POLICY_DNS_INTERCEPT_REDIRECT :
					  POLICY_DNS_INTERCEPT_REQUESTED;
	}
	return 0;
}

static int parse_limit(struct ctx *c, json_t *j, const char *path, struct policy_limit *l)
{
	static const char *const keys[] = { "limit", "on_exceed", NULL };
	static const char *const words[] = { "refuse", "terminate", NULL };
	json_int_t v;
	int w;

	l->on_exceed = POLICY_EXCEED_REFUSE;
	if (json_is_object(j)) {
		if (check_keys(c, j, path, keys) < 0)
			return -1;
		if (get_required_int(c, j, path, "limit", 1, INT64_MAX, "a positive integer", &v) <
		    0)
			return -1;
		w = get_optional_word(c, j, path, "on_exceed", words, "\"refuse\" or \"terminate\"",
				      0);
		if (w < 0)
			return -1;
		l->on_exceed = w ? POLICY_EXCEED_TERMINATE : POLICY_EXCEED_REFUSE;
	} else if (json_is_integer(j)) {
		if (get_int(c, j, path, 1, INT64_MAX, &v) < 0)
			return -1;
	} else {
		return schema_err(c, path,
				  "must be a positive integer or {\"limit\": N, "
				  "\"on_exceed\": \"refuse\" | \"terminate\"}");
	}
	l->value = (uint64_t)v;
	l->set = true;
	return 0;
}

static int parse_limits(struct ctx *c, json_t *j, struct policy_limits *lim)
{
	static const char *const keys[] = { "max_tcp_connections",	  "max_udp_flows",
					    "new_connections_per_second", "egress_bytes_per_second",
					    "ingress_bytes_per_second",	  NULL };
	struct policy_limit *slots[] = { &lim->max_tcp_connections, &lim->max_udp_flows,
					 &lim->new_connections_per_second,
					 &lim->egress_bytes_per_second,
					 &lim->ingress_bytes_per_second };

	if (check_object(c, j, "limits", keys, "an object") < 0)
		return -1;
	for (int i = 0; keys[i]; i++) {
		json_t *x = json_object_get(j, keys[i]);
		char p[PATH_MAX_LEN];

		path_key(p, "limits", keys[i]);
		if (x && parse_limit(c, x, p, slots[i]) < 0)
			return -1;
	}
	return 0;
}

/* One of "publish" (@arg, the policy): @item is its struct policy_publish. */
static int parse_published(struct ctx *c, json_t *j, const char *path, void *item, void *arg)
{
	static const char *const keys[] = { "host_address", "host_port", "guest_port", "protocol",
					    NULL };
	static const char *const protos[] = { "tcp", "udp", NULL };
	const struct policy *pol = arg;
	struct policy_publish *pb = item;
	size_t i = (size_t)(pb - pol->publish);
	char p[PATH_MAX_LEN], s[SHOW_MAX + 8];
	json_int_t port;
	json_t *x;
	int w;

	if (check_object(c, j, path, keys, "an object") < 0)
		return -1;
	path_key(p, path, "host_address");
	x = json_object_get(j, "host_address");
	if (!x) {
		policy_addr_parse("127.0.0.1", &pb->host_addr);
	} else if (!json_is_string(x) ||
		   policy_addr_parse(json_string_value(x), &pb->host_addr) < 0) {
		return schema_err(c, p, "%s%s%s must be an IP address like \"127.0.0.1\"",
				  json_is_string(x) ? "\"" : "",
				  json_is_string(x) ? show(s, sizeof(s), json_string_value(x)) : "",
				  json_is_string(x) ? "\"" : "");
	}
	if (get_required_int(c, j, path, "host_port", 1, 65535, "1..65535", &port) < 0)
		return -1;
	pb->host_port = (uint16_t)port;
	if (get_required_int(c, j, path, "guest_port", 1, 65535, "1..65535", &port) < 0)
		return -1;
	pb->guest_port = (uint16_t)port;
	w = get_optional_word(c, j, path, "protocol", protos, "\"tcp\" or \"udp\"", 0);
	if (w < 0)
		return -1;
	pb->proto = w ? POLICY_PROTO_UDP : POLICY_PROTO_TCP;
	for (size_t k = 0; k < i; k++) {
		const struct policy_publish *o = &pol->publish[k];

		if (o->proto == pb->proto && o->host_port == pb->host_port &&
		    o->host_addr.family == pb->host_addr.family &&
		    !memcmp(o->host_addr.addr, pb->host_addr.addr, 16))
			return schema_err(c, path,
					  "publishes the same host address and port as "
					  "publish[%zu]",
					  k);
	}
	return 0;
}

static int parse_publish(struct ctx *c, json_t *j, struct policy *pol)
{
	static const struct list_schema publish = { "a list", "published ports", POLICY_MAX_PUBLISH,
						    sizeof(*pol->publish), parse_published };

	return parse_list(c, j, "publish", &publish, pol, (void **)&pol->publish, &pol->n_publish);
}

/* ------------------------------------------------------------------ */
/* tls, secrets                                                        */
/* ------------------------------------------------------------------ */

/* A {"domain": NAME} or {"domain_suffix": NAME}: tls.intercept, tls.bypass, secrets[].hosts. */
static int parse_tls_name(struct ctx *c, json_t *j, const char *path, void *item, void *arg)
{
	static const char *const keys[] = { "domain", "domain_suffix", NULL };
	struct policy_name *out = item;
	char p[PATH_MAX_LEN], v[SHOW_MAX + 8];
	const char *key, *why;
	json_t *val;

	(void)arg;
	key = get_one_of(c, j, path, keys,
			 "an object {\"domain\": ...} or {\"domain_suffix\": ...}", &val, p);
	if (!key)
		return -1;
	why = parse_name(json_string_value(val), &out->name);
	if (why)
		return schema_err(c, p, "\"%s\" %s", show(v, sizeof(v), json_string_value(val)),
				  why);
	out->suffix = strcmp(key, "domain") != 0;
	return 0;
}

static int parse_tls_names(struct ctx *c, json_t *j, const char *path, int max,
			   struct policy_name **list, int *n_list)
{
	const struct list_schema names = { "a list of {\"domain\": ...} or {\"domain_suffix\": ...}",
					   "entries", max, sizeof(**list), parse_tls_name };

	return parse_list(c, j, path, &names, NULL, (void **)list, n_list);
}

/* An absolute path, kept as written: the policy module never opens it. */
static int parse_path(struct ctx *c, json_t *j, const char *path, char **out)
{
	char v[SHOW_MAX + 8];
	const char *s;
	size_t n;

	if (!json_is_string(j))
		return schema_err(c, path, "must be a string (an absolute path)");
	s = json_string_value(j);
	n = strlen(s);
	if (s[0] != '/')
		return schema_err(c, path, "\"%s\" is not an absolute path", show(v, sizeof(v), s));
	if (n > POLICY_MAX_PATH)
		return schema_err(c, path, "is longer than %d bytes", POLICY_MAX_PATH);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return schema_err(c, path, "\"%s\" holds a control character",
					  show(v, sizeof(v), s));
	*out = strdup(s);
	if (!*out)
		return schema_err(c, path, "out of memory");
	return 0;
}

static int parse_tls_ca(struct ctx *c, json_t *j, struct policy_tls *t)
{
	static const char *const keys[] = { "cert", "key", NULL };
	char p[PATH_MAX_LEN];
	json_t *x;

	if (check_object(c, j, "tls.ca", keys, "an object {\"cert\": PATH, \"key\": PATH}") < 0)
		return -1;
	x = get_required(c, j, "tls.ca", "cert", "ca needs both cert and key", p);
	if (!x || parse_path(c, x, p, &t->ca_cert) < 0)
		return -1;
	x = get_required(c, j, "tls.ca", "key", "ca needs both cert and key", p);
	return x ? parse_path(c, x, p, &t->ca_key) : -1;
}

static int parse_tls(struct ctx *c, json_t *j, struct policy *pol)
{
	static const char *const keys[] = { "intercept", "bypass", "ca", "upstream_ca", NULL };
	struct policy_tls *t = &pol->tls;
	json_t *x;

	if (check_object(c, j, "tls", keys, "an object") < 0)
		return -1;
	pol->has_tls = true;
	x = json_object_get(j, "intercept");
	if (x && parse_tls_names(c, x, "tls.intercept", POLICY_MAX_TLS_NAMES, &t->intercept,
				 &t->n_intercept) < 0)
		return -1;
	x = json_object_get(j, "bypass");
	if (x &&
	    parse_tls_names(c, x, "tls.bypass", POLICY_MAX_TLS_NAMES, &t->bypass, &t->n_bypass) < 0)
		return -1;
	x = json_object_get(j, "ca");
	if (x && parse_tls_ca(c, x, t) < 0)
		return -1;
	x = json_object_get(j, "upstream_ca");
	if (x)
		return parse_path(c, x, "tls.upstream_ca", &t->upstream_ca);
	t->upstream_ca = strdup(POLICY_TLS_UPSTREAM_CA_DEFAULT);
	if (!t->upstream_ca)
		return schema_err(c, "tls.upstream_ca", "out of memory");
	return 0;
}

static bool is_placeholder(const char *s)
{
	size_t n = strlen(s);

	if (n < POLICY_SECRET_PLACEHOLDER_MIN || n > POLICY_SECRET_PLACEHOLDER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '$' || s[i] == '-'))
			return false;
	return true;
}

/* An environment variable's name as a shell would take it: [A-Za-z_][A-Za-z0-9_]*. */
static bool is_env_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 255 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* Every name a secret's host covers must be intercepted, or the value could never go there. */
static int check_secret_hosts(struct ctx *c, const char *path, const struct policy *pol,
			      const struct policy_secret *s)
{
	for (int i = 0; i < s->n_hosts; i++) {
		const struct policy_name *h = &s->hosts[i];
		const char *kind = h->suffix ? "domain_suffix" : "domain";
		char p[PATH_MAX_LEN];
		int b = -1;

		path_index(p, path, (size_t)i);
		switch (policy_tls_cover(&pol->tls, h, &b)) {
		case POLICY_TLS_COVERED:
			break;
		case POLICY_TLS_NOT_INTERCEPTED:
			return schema_err(c, p,
					  "secret %s: %s \"%s\" is not intercepted (no "
					  "tls.intercept entry covers %s), so the secret could "
					  "never be injected there",
					  s->placeholder, kind, h->name,
					  h->suffix ? "it and every name below it" : "it");
		case POLICY_TLS_BYPASSED:
			if (!h->suffix)
				return schema_err(c, p,
						  "secret %s: domain \"%s\" is bypassed by "
						  "tls.bypass[%d] (%s \"%s\"), so the secret could "
						  "never be injected there",
						  s->placeholder, h->name, b,
						  pol->tls.bypass[b].suffix ? "domain_suffix" :
									      "domain",
						  pol->tls.bypass[b].name);
			return schema_err(
				c, p,
				"secret %s: domain_suffix \"%s\" covers names that "
				"tls.bypass[%d] (%s \"%s\") exempts from interception: a "
				"secret's hosts must be intercepted in full (name them with "
				"domain or a narrower domain_suffix)",
				s->placeholder, h->name, b,
				pol->tls.bypass[b].suffix ? "domain_suffix" : "domain",
				pol->tls.bypass[b].name);
		}
	}
	return 0;
}

/*
 * No placeholder may be another's, or a part of another's: which one would
 * be substituted? @a is secrets[@i]'s, checked against those before it.
 */
static int check_placeholder(struct ctx *c, const char *path, const struct policy *pol, int i,
			     const char *a)
{
	for (int k = 0; k < i; k++) {
		const char *b = pol->secrets[k].placeholder; /* set: secrets[k] parsed */

		if (!strcmp(a, b))
			return schema_err(c, path,
					  "\"%s\" is secrets[%d]'s placeholder too (placeholders "
					  "must be unique)",
					  a, k);
		if (strstr(b, a))
			return schema_err(c, path,
					  "\"%s\" is part of secrets[%d]'s placeholder \"%s\": "
					  "substitution would be ambiguous",
					  a, k, b);
		if (strstr(a, b))
			return schema_err(c, path,
					  "\"%s\" contains secrets[%d]'s placeholder \"%s\": "
					  "substitution would be ambiguous",
					  a, k, b);
	}
	return 0;
}

/* One of "secrets" (@arg, the policy): @item is its struct policy_secret. */
static int parse_secret(struct ctx *c, json_t *j, const char *path, void *item, void *arg)
{
	static const char *const keys[] = { "placeholder", "value_env",	   "value_file",
					    "hosts",	   "on_violation", NULL };
	static const char *const words[] = { "block", "block_and_log", "terminate", NULL };
	const struct policy *pol = arg;
	struct policy_secret *s = item;
	char p[PATH_MAX_LEN], v[SHOW_MAX + 8];
	json_t *x, *env, *file;
	int w;

	if (check_object(c, j, path, keys, "an object (a secret)") < 0)
		return -1;

	x = get_required(c, j, path, "placeholder",
			 "8..128 characters of letters, digits, '_', '$' and '-'", p);
	if (!x)
		return -1;
	if (!json_is_string(x) || !is_placeholder(json_string_value(x)))
		return schema_err(c, p,
				  "%s%s%smust be 8..128 characters of letters, digits, '_', '$' "
				  "and '-'",
				  json_is_string(x) ? "\"" : "",
				  json_is_string(x) ? show(v, sizeof(v), json_string_value(x)) : "",
				  json_is_string(x) ? "\": " : "");
	if (check_placeholder(c, p, pol, (int)(s - pol->secrets), json_string_value(x)) < 0)
		return -1;
	s->placeholder = strdup(json_string_value(x));
	if (!s->placeholder)
		return schema_err(c, p, "out of memory");

	env = json_object_get(j, "value_env");
	file = json_object_get(j, "value_file");
	if (env && file)
		return schema_err(c, path, "give value_env or value_file, not both");
	if (!env && !file)
		return schema_err(c, path,
				  "needs value_env (an environment variable's name) or "
				  "value_file (an absolute path)");
	if (env) {
		path_key(p, path, "value_env");
		if (!json_is_string(env) || !is_env_name(json_string_value(env)))
			return schema_err(
				c, p,
				"%s%s%smust be an environment variable's name (letters, digits "
				"and '_', not starting with a digit)",
				json_is_string(env) ? "\"" : "",
				json_is_string(env) ? show(v, sizeof(v), json_string_value(env)) :
						      "",
				json_is_string(env) ? "\": " : "");
		s->value_env = strdup(json_string_value(env));
		if (!s->value_env)
			return schema_err(c, p, "out of memory");
	} else {
		path_key(p, path, "value_file");
		if (parse_path(c, file, p, &s->value_file) < 0)
			return -1;
	}

	x = get_required(c, j, path, "hosts",
			 "the names the secret may be sent to: "
			 "{\"domain\": ...} or {\"domain_suffix\": ...}",
			 p);
	if (!x || parse_tls_names(c, x, p, POLICY_MAX_SECRET_HOSTS, &s->hosts, &s->n_hosts) < 0)
		return -1;
	if (!s->n_hosts)
		return schema_err(c, p, "must name at least one host");
	if (check_secret_hosts(c, p, pol, s) < 0)
		return -1;

	w = get_optional_word(c, j, path, "on_violation", words,
			      "\"block\", \"block_and_log\" or \"terminate\"", POLICY_SECRET_BLOCK);
	if (w < 0)
		return -1;
	s->on_violation = (enum policy_secret_violation)w;
	return 0;
}

static int parse_secrets(struct ctx *c, json_t *j, struct policy *pol)
{
	static const struct list_schema secrets = { "a list of secrets", "secrets",
						    POLICY_MAX_SECRETS, sizeof(*pol->secrets),
						    parse_secret };

	if (!pol->has_tls)
		return schema_err(c, "secrets",
				  "needs a tls section (a secret is injected only into "
				  "connections moat-tls intercepts)");
	return parse_list(c, j, "secrets", &secrets, pol, (void **)&pol->secrets, &pol->n_secrets);
}

/* ------------------------------------------------------------------ */
/* The document                                                        */
/* ------------------------------------------------------------------ */

static void add_warning(struct policy *pol, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void add_warning(struct policy *pol, const char *fmt, ...)
{
	va_list ap;

	if (pol->n_warnings >= POLICY_MAX_WARNINGS)
		return;
	va_start(ap, fmt);
	vsnprintf(pol->warnings[pol->n_warnings++], sizeof(pol->warnings[0]), fmt, ap);
	va_end(ap);
}

/* default_egress/default_ingress: "allow" or "deny"; missing = deny, with a warning. */
static int parse_default(struct ctx *c, json_t *root, const char *key, bool *allow)
{
	json_t *v = json_object_get(root, key);

	*allow = false;
	if (v)
		return get_action(c, v, key, allow);
	return 1;
}

static int parse_reload(struct ctx *c, json_t *j, struct policy *pol)
{
	static const char *const keys[] = { "existing", NULL };
	static const char *const words[] = { "reevaluate", "keep", NULL };
	int w;

	if (check_object(c, j, "reload", keys, "an object like {\"existing\": \"keep\"}") < 0)
		return -1;
	w = get_optional_word(c, j, "reload", "existing", words, "\"reevaluate\" or \"keep\"", 0);
	if (w < 0)
		return -1;
	pol->reload_keep = w == 1;
	return 0;
}

static int parse_document(struct ctx *c, json_t *root, struct policy *pol)
{
	static const char *const keys[] = {
		"default_egress", "default_ingress", "rules", "dns",	 "limits",
		"publish",	  "reload",	     "tls",   "secrets", NULL
	};
	json_t *v;
	int rc;

	if (!json_is_object(root))
		return schema_err(c, "", "the policy must be a JSON object, not a list");
	if (check_keys(c, root, "", keys) < 0)
		return -1;
	rc = parse_default(c, root, "default_egress", &pol->default_egress_allow);
	if (rc < 0)
		return -1;
	if (rc > 0)
		add_warning(pol, "default_egress is missing: egress no rule matches is denied");
	rc = parse_default(c, root, "default_ingress", &pol->default_ingress_allow);
	if (rc < 0)
		return -1;
	if (rc > 0)
		add_warning(pol, "default_ingress is missing: ingress no rule matches is denied");
	v = json_object_get(root, "reload");
	if (v && parse_reload(c, v, pol) < 0)
		return -1;
	v = json_object_get(root, "rules");
	if (v && parse_rules(c, v, pol) < 0)
		return -1;
	v = json_object_get(root, "dns");
	if (v && parse_dns(c, v, &pol->dns) < 0)
		return -1;
	v = json_object_get(root, "limits");
	if (v && parse_limits(c, v, &pol->limits) < 0)
		return -1;
	v = json_object_get(root, "publish");
	if (v && parse_publish(c, v, pol) < 0)
		return -1;
	/* tls first: every host of a secret is checked against it. */
	v = json_object_get(root, "tls");
	if (v && parse_tls(c, v, pol) < 0)
		return -1;
	v = json_object_get(root, "secrets");
	if (v && parse_secrets(c, v, pol) < 0)
		return -1;
	return 0;
}

static bool all_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

/**
 * policy_parse() - parse and validate a policy
 * @text:	the JSON text (need not be NUL-terminated)
 * @len:	its length in bytes
 * @filename:	the name used in error messages (NULL: "policy")
 * @env:	the "host" group's addresses, copied into the policy (may be NULL)
 * @out:	on success, the new policy (free with policy_free())
 * @err:	on failure, one line: "FILE:LINE:COL: message" for a JSON syntax
 *		error, "FILE: PATH: message" for a schema error (may be NULL)
 * @errlen:	size of @err
 *
 * Return: 0, or -1 with @err filled and *@out NULL.
 */
int policy_parse(const char *text, size_t len, const char *filename, const struct policy_env *env,
		 struct policy **out, char *err, size_t errlen)
{
	struct ctx c = { filename ? filename : "policy", err, errlen };
	struct policy *pol;
	json_error_t je;
	json_t *root;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return schema_err(&c, "", "internal error: no place for the result");
	*out = NULL;
	if (!text && len)
		return schema_err(&c, "", "internal error: no text");
	if (len > POLICY_MAX_FILE_SIZE)
		return schema_err(&c, "",
				  "the file is larger than 1 MiB (%zu bytes); "
				  "a policy is a few kilobytes",
				  len);
	if (!len || all_space(text, len))
		return schema_err(&c, "",
				  "the file is empty; a policy is a JSON object "
				  "(at least {\"default_egress\": ..., \"default_ingress\": ...})");
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		char why[sizeof(je.text)];

		/* jansson quotes the input near the error: keep it printable, one line. */
		for (size_t i = 0; i < sizeof(why); i++) {
			why[i] = (je.text[i] >= 0x20 && je.text[i] < 0x7f) || !je.text[i] ?
					 je.text[i] :
					 '?';
			if (!je.text[i])
				break;
		}
		why[sizeof(why) - 1] = '\0';
		if (err && errlen)
			snprintf(err, errlen, "%s:%d:%d: %s", c.file, je.line, je.column, why);
		return -1;
	}
	pol = calloc(1, sizeof(*pol));
	if (!pol) {
		json_decref(root);
		return schema_err(&c, "", "out of memory");
	}
	pol->dns.rebind_protection = true;
	pol->dns.timeout_ms = 2000;
	if (env) {
		pol->env = *env;
		if (pol->env.n_host < 0)
			pol->env.n_host = 0;
		if (pol->env.n_host > 4)
			pol->env.n_host = 4;
	}
	if (parse_document(&c, root, pol) < 0) {
		json_decref(root);
		policy_free(pol);
		return -1;
	}
	json_decref(root);
	*out = pol;
	return 0;
}
