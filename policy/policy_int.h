/* SPDX-License-Identifier: MIT */
/*
 * policy_int.h - the policy module's private structures
 *
 * Included only by the policy module's own .c files. Everyone else sees struct policy as opaque
 * through policy/policy.h.
 */
#ifndef MOAT_POLICY_INT_H
#define MOAT_POLICY_INT_H

#include "policy/policy.h"

enum policy_dest_kind {
	POLICY_DEST_ANY,
	POLICY_DEST_CIDR,
	POLICY_DEST_DOMAIN,
	POLICY_DEST_SUFFIX,
	POLICY_DEST_GROUP,
};

#define POLICY_ICMP_V4	    1u /* "icmpv4" (or "icmp") */
#define POLICY_ICMP_V6	    2u /* "icmpv6" (or "icmp") */
#define POLICY_MAX_WARNINGS 4

struct policy_port_range {
	uint16_t start, end; /* inclusive */
};

struct policy_rule {
	unsigned int directions;    /* POLICY_EGRESS | POLICY_INGRESS bits, never 0 */
	unsigned int protocols;	    /* enum policy_proto bits, never 0; no icmp if n_ports */
	unsigned int icmp_families; /* with icmp: POLICY_ICMP_V4 | POLICY_ICMP_V6 bits */
	enum policy_dest_kind kind;
	struct policy_addr net; /* CIDR: v4-mapped folded to v4, host bits cleared */
	int prefix;
	enum policy_group group;	 /* POLICY_DEST_GROUP */
	char *name;			 /* DOMAIN/SUFFIX: lowercase, no dot at either end */
	struct policy_port_range *ports; /* sorted, disjoint, not adjacent */
	int n_ports;			 /* 0 = every port (no port filter) */
	bool allow;
	bool terminate; /* only ever set on a deny rule */
};

/* A {"domain": ...} or {"domain_suffix": ...} entry of the tls and secrets sections. */
struct policy_name {
	char *name;  /* lowercase, no dot at either end (as a rule's) */
	bool suffix; /* domain_suffix: the name and every name below it */
};

struct policy_tls {
	struct policy_name *intercept;
	int n_intercept;
	struct policy_name *bypass; /* wins over intercept */
	int n_bypass;
	char *ca_cert, *ca_key; /* both or neither (NULL: no "ca") */
	char *upstream_ca;	/* never NULL once parsed */
};

struct policy_secret {
	char *placeholder; /* 8..128 of [A-Za-z0-9_$-]; no other's substring */
	char *value_env;   /* exactly one of value_env and value_file */
	char *value_file;  /* absolute */
	struct policy_name *hosts;
	int n_hosts; /* never 0; every host fully intercepted (parse.c) */
	enum policy_secret_violation on_violation;
};

struct policy {
	bool default_egress_allow;
	bool default_ingress_allow;
	struct policy_rule *rules;
	int n_rules;
	struct policy_limits limits;
	struct policy_dns dns;
	struct policy_publish *publish;
	int n_publish;
	struct policy_env env; /* copy of the caller's, for the "host" group */
	bool reload_keep;      /* "reload": {"existing": "keep"}: a reload spares open flows */
	bool has_tls;	       /* the "tls" section was given */
	struct policy_tls tls;
	struct policy_secret *secrets; /* only with has_tls */
	int n_secrets;
	char warnings[POLICY_MAX_WARNINGS][160]; /* what parsing accepted but a reader should know */
	int n_warnings;
};

/* Why a rule did not match a flow or a query (match.c, used by explain.c). */
enum policy_miss {
	POLICY_MISS_NONE, /* it matched */
	POLICY_MISS_DIRECTION,
	POLICY_MISS_PROTOCOL,
	POLICY_MISS_PORT,
	POLICY_MISS_DESTINATION,
	POLICY_MISS_UNSPECIFIED, /* only "any" matches the unspecified address */
	POLICY_MISS_DNS_KIND,	 /* cidr and non-host group rules never match a query */
	POLICY_MISS_DNS_PORTS,	 /* an any/host rule that does not admit udp/tcp 53 */
};

void policy_addr_normalize(const struct policy_addr *in, struct policy_addr *out);
bool policy_ports_contain(const struct policy_rule *r, uint16_t port);
enum policy_miss policy_rule_check(const struct policy_rule *r, const struct policy_flow *f,
				   enum policy_group g);
enum policy_miss policy_rule_check_dns(const struct policy_rule *r, const char *qname,
				       enum policy_proto transport);
int policy_rule_proto_words(const struct policy_rule *r, const char *words[4]);
bool policy_name_matches(const char *name, const char *rule_name, bool suffix);
bool policy_flow_valid(const struct policy_flow *f);

/* Whether a secret's host is intercepted in full (tls.c, used by parse.c). */
enum policy_tls_cover {
	POLICY_TLS_COVERED,
	POLICY_TLS_NOT_INTERCEPTED, /* no intercept entry covers all of it */
	POLICY_TLS_BYPASSED,	    /* a bypass entry takes some of it */
};

bool policy_names_match(const struct policy_name *list, int n, const char *name);
enum policy_tls_cover policy_tls_cover(const struct policy_tls *t, const struct policy_name *h,
				       int *bypass);

#endif /* MOAT_POLICY_INT_H */
