/* SPDX-License-Identifier: MIT */
/*
 * policy.h - moat's network policy: parse a JSON policy file, decide flows
 *
 * The one public header of the policy module (DESIGN §8). The supervisor
 * parses the file (and refuses to start on any error), the proxy decides
 * every flow and DNS query with it, `moat policy` explains it. A built
 * struct policy is immutable: a reload builds a new one and swaps it.
 *
 * Deciding (policy_decide*, policy_address_rule_allows, policy_classify)
 * never allocates, never blocks and may run in any process. Parsing and
 * serializing allocate (jansson) and never exit: they return -1 with a
 * reason in the caller's buffer, or NULL.
 *
 * The "tls" and "secrets" sections are read here too, for moat-tls (the
 * process that intercepts TLS) and the supervisor: which names are
 * intercepted, which secrets may be injected toward which names. Parsing
 * never reads a secret's value: policy_secrets_resolve() does, once, when
 * the supervisor asks, into memory the caller owns.
 *
 * The full schema and semantics are in docs/policy.md.
 */
#ifndef MOAT_POLICY_H
#define MOAT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest policy file accepted, checked before parsing. */
#define POLICY_MAX_FILE_SIZE   (1u << 20)
/* Bounds on what one policy may hold. */
#define POLICY_MAX_RULES       4096
#define POLICY_MAX_PORT_RANGES 1024 /* per rule */
#define POLICY_MAX_PUBLISH     64
#define POLICY_MAX_NAMESERVERS 8

/* Bounds of the tls and secrets sections. */
#define POLICY_MAX_TLS_NAMES	      256 /* per list: tls.intercept, tls.bypass */
#define POLICY_MAX_SECRETS	      64
#define POLICY_MAX_SECRET_HOSTS	      64   /* per secret */
#define POLICY_MAX_PATH		      4095 /* bytes of a path in the tls and secrets sections */
/* A secret's placeholder: this many characters of [A-Za-z0-9_$-]. */
#define POLICY_SECRET_PLACEHOLDER_MIN 8
#define POLICY_SECRET_PLACEHOLDER_MAX 128
/* Largest value_file, and so largest value, in bytes. */
#define POLICY_SECRET_VALUE_MAX	      (64u * 1024)

#define POLICY_TLS_UPSTREAM_CA_DEFAULT "/etc/ssl/certs/ca-certificates.crt"

enum policy_direction { POLICY_EGRESS = 1, POLICY_INGRESS = 2 };
enum policy_proto { POLICY_PROTO_TCP = 1, POLICY_PROTO_UDP = 2, POLICY_PROTO_ICMP = 4 };
#define POLICY_PROTO_ALL (POLICY_PROTO_TCP | POLICY_PROTO_UDP | POLICY_PROTO_ICMP)

enum policy_group {
	POLICY_GROUP_UNSPECIFIED,
	POLICY_GROUP_HOST,
	POLICY_GROUP_METADATA,
	POLICY_GROUP_LOOPBACK,
	POLICY_GROUP_PRIVATE,
	POLICY_GROUP_LINK_LOCAL,
	POLICY_GROUP_MULTICAST,
	POLICY_GROUP_PUBLIC,
};

enum policy_on_exceed { POLICY_EXCEED_REFUSE, POLICY_EXCEED_TERMINATE };

/* What moat-tls does when a secret's placeholder goes to a host the secret does not allow. */
enum policy_secret_violation {
	POLICY_SECRET_BLOCK,	     /* "block" (the default) */
	POLICY_SECRET_BLOCK_AND_LOG, /* "block_and_log" */
	POLICY_SECRET_TERMINATE,     /* "terminate": a fatal violation */
};

struct policy; /* opaque, immutable once built */

/* An address: family AF_INET (addr[0..3] used) or AF_INET6 (16 bytes). */
struct policy_addr {
	int family;
	uint8_t addr[16];
};

/* What the proxy asks about one flow. */
struct policy_flow {
	enum policy_direction direction;
	enum policy_proto proto;
	struct policy_addr
		dst;   /* egress: destination; ingress: the host-side peer (may be unspecified) */
	uint16_t port; /* egress: destination port; ingress: guest port; 0 for icmp */
	const char *const *
		names; /* DNS names this dst was resolved from (pinned), NULL-terminated, may be NULL */
};

struct policy_decision {
	bool allow;
	bool terminate; /* deny by a "terminate": true rule: a fatal violation */
	int rule;	/* 0-based index in rules[], or -1 for the direction's default */
};

struct policy_limit {
	uint64_t value;
	enum policy_on_exceed on_exceed;
	bool set;
};

struct policy_limits {
	struct policy_limit max_tcp_connections, max_udp_flows, new_connections_per_second,
		egress_bytes_per_second, ingress_bytes_per_second;
};

/* What happens to guest DNS queries sent to an address other than moat's DNS address. */
enum policy_dns_intercept {
	POLICY_DNS_INTERCEPT_REDIRECT,	/* decided like any query, sent to moat's nameservers */
	POLICY_DNS_INTERCEPT_REQUESTED, /* decided like any query, sent to the address asked */
	POLICY_DNS_INTERCEPT_OFF,	/* ordinary flows, decided by the rules (no pins) */
};

struct policy_dns {
	struct {
		struct policy_addr addr;
		uint16_t port;
	} nameservers[POLICY_MAX_NAMESERVERS];
	int n_nameservers;	/* 0 = use the host's /etc/resolv.conf (read by the supervisor) */
	bool rebind_protection; /* default true */
	uint32_t timeout_ms;	/* per upstream try, default 2000 ("query_timeout_ms" too) */
	enum policy_dns_intercept intercept; /* default redirect */
};

struct policy_publish {
	struct policy_addr host_addr;
	uint16_t host_port, guest_port;
	enum policy_proto proto;
};

/* The gateway addresses that make up the "host" group are supplied by the caller (they depend on --subnet). */
struct policy_env {
	struct policy_addr host[4];
	int n_host;
};

/* Building and freeing (parse.c, policy.c). Errors: "FILE:LINE:COL: msg" or "FILE: PATH: msg". */
int policy_parse(const char *text, size_t len, const char *filename, const struct policy_env *env,
		 struct policy **out, char *err, size_t errlen);
int policy_load_file(const char *path, const struct policy_env *env, struct policy **out, char *err,
		     size_t errlen);
struct policy *policy_default(const struct policy_env *env);
const char *policy_default_text(void);
void policy_free(struct policy *p);

/* Deciding (match.c): no allocation. */
struct policy_decision policy_decide(const struct policy *p, const struct policy_flow *f);
struct policy_decision policy_decide_dns(const struct policy *p, const char *qname,
					 enum policy_proto transport);
bool policy_address_rule_allows(const struct policy *p, const struct policy_addr *a,
				enum policy_proto proto, uint16_t port);
enum policy_group policy_classify(const struct policy_env *env, const struct policy_addr *a);
const char *policy_group_name(enum policy_group g);
const char *policy_proto_name(enum policy_proto proto);
bool policy_has_domain_rules(const struct policy *p);
bool policy_reload_keeps_flows(const struct policy *p);
bool policy_wants_hostname(const struct policy *p, struct policy_decision d);
struct policy_decision policy_decide_hostname(const struct policy *p, const struct policy_flow *f,
					      struct policy_decision first, const char *hostname,
					      bool *mismatch);
const char *policy_warning(const struct policy *p, int i);
int policy_rule_count(const struct policy *p);

/* Addresses (match.c) and addresses with a port (addr.c). */
int policy_addr_parse(const char *s, struct policy_addr *out);
int policy_addr_format(const struct policy_addr *a, char *buf, size_t len);

/* What policy_hostport_parse() lets go besides "ADDR:PORT" and "[V6]:PORT". */
#define POLICY_HOSTPORT_PORT_OPTIONAL 0x1u /* "ADDR", "V6", "[V6]": returns 1 */
#define POLICY_HOSTPORT_PORT_ZERO     0x2u /* port 0 */
#define POLICY_HOSTPORT_HOST_OPTIONAL 0x4u /* ":PORT": AF_UNSPEC */
/* Why policy_hostport_parse() refused, so that each caller keeps its own words. */
#define POLICY_HOSTPORT_BAD_FORM      (-1)
#define POLICY_HOSTPORT_BAD_HOST      (-2)
#define POLICY_HOSTPORT_BAD_PORT      (-3)
int policy_hostport_parse(const char *s, unsigned flags, struct policy_addr *addr, uint16_t *port);
int policy_publish_parse(const char *s, bool guest, struct policy_publish *out, char *err,
			 size_t errlen);

/* The rest of the document (policy.c): valid as long as the policy. */
const struct policy_limits *policy_limits(const struct policy *p);
const struct policy_dns *policy_dns(const struct policy *p);
int policy_publish(const struct policy *p, const struct policy_publish **out);

/*
 * One secret's value, filled by policy_secrets_resolve() in memory the caller
 * owns (64 KiB each: allocate them, do not put them on a stack). @value is
 * NUL-terminated, never empty, and holds no control character but tab (so
 * no NUL, CR or LF). Wipe with policy_secrets_wipe().
 */
struct policy_secret_value {
	size_t len;
	char value[POLICY_SECRET_VALUE_MAX + 1];
};

/*
 * The "tls" and "secrets" sections (tls.c): no allocation, valid as long as
 * the policy. A secret is named by its index (0-based, as in error paths):
 * the supervisor and moat-tls parse the same normalized text, so an index
 * names the same secret in both; across a reload, its placeholder does.
 */
bool policy_has_tls(const struct policy *p);
bool policy_tls_intercepts(const struct policy *p, const char *sni);
bool policy_tls_has_ca(const struct policy *p);
const char *policy_tls_ca_cert(const struct policy *p);
const char *policy_tls_ca_key(const struct policy *p);
const char *policy_tls_upstream_ca(const struct policy *p);
unsigned int policy_secret_count(const struct policy *p);
int policy_secret_find(const struct policy *p, const char *placeholder);
const char *policy_secret_placeholder(const struct policy *p, unsigned int secret);
enum policy_secret_violation policy_secret_on_violation(const struct policy *p,
							unsigned int secret);
const char *policy_secret_violation_name(enum policy_secret_violation v);
const char *policy_secret_source(const struct policy *p, unsigned int secret, bool *is_file);
bool policy_secret_host_allowed(const struct policy *p, unsigned int secret, const char *host);
/* Reading the values (tls.c): at the supervisor's start, never while parsing. */
int policy_secrets_resolve(const struct policy *p, struct policy_secret_value *out,
			   unsigned int max, char *err, size_t errlen);
void policy_secrets_wipe(struct policy_secret_value *v, unsigned int n);

/* Serializing and comparing (emit.c). */
char *policy_to_json(const struct policy *p);
bool policy_equal(const struct policy *a, const struct policy *b);

/* Explaining (explain.c): snprintf-like, first line machine-readable. */
int policy_explain(const struct policy *p, const struct policy_flow *f, char *buf, size_t len);
int policy_explain_dns(const struct policy *p, const char *qname, enum policy_proto transport,
		       char *buf, size_t len);
int policy_explain_hostname(const struct policy *p, const struct policy_flow *f,
			    const char *hostname, bool tls, char *buf, size_t len);

#endif /* MOAT_POLICY_H */
