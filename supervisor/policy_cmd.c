/* SPDX-License-Identifier: MIT */
/*
 * policy_cmd.c - `moat policy`: check a policy file, explain a decision
 *
 * Theory of Operation
 * -------------------
 * An offline tool in the supervisor's binary (DESIGN §8, §11); it starts
 * no process, opens no socket and touches no sandbox:
 *
 *   moat policy check FILE
 *	parse and validate FILE with the same code `moat run` uses; print
 *	the normalized policy (policy_to_json()) on stdout; exit 0.
 *   moat policy explain FILE --dst ADDR:PORT/PROTO [--name NAME]...
 *			      [--ingress] [--sni NAME | --host NAME] [--subnet CIDR]
 *   moat policy explain FILE --dns NAME[/udp|/tcp] [--subnet CIDR]
 *	print policy_explain()'s text (policy_explain_hostname()'s with
 *	--sni/--host: the connection's client sends that name): a machine-readable first line
 *	("deny rule 2 terminate"), then the reasons; exit 0 whatever the
 *	decision.
 *   moat policy default
 *	print the built-in default policy, normalized.
 *
 * Any usage or policy error is one line on stderr prefixed "moat: ", and
 * exit status 2 (a configuration error, as for `moat run`). The "host"
 * group is what `moat run` would use with the same --subnet: the gateway
 * (.2) and DNS (.3) addresses of the subnet (10.0.2.0/24 by default) and
 * the IPv6 gateway fd00::2. Called from main(); returns the exit status
 * and never calls exit().
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy.h"
#include "supervisor/policy_cmd.h"

#define EXIT_OK	   0
#define EXIT_USAGE 2
#define MAX_NAMES  16

static const char usage_text[] =
	"usage: moat policy check FILE\n"
	"       moat policy explain FILE --dst ADDR:PORT/PROTO [--name NAME]... [--ingress]\n"
	"                           [--sni NAME | --host NAME]\n"
	"                           [--subnet CIDR]\n"
	"       moat policy explain FILE --dns NAME[/udp|/tcp] [--subnet CIDR]\n"
	"       moat policy default\n"
	"  check     validate FILE and print it normalized\n"
	"  explain   print which rule decides an egress flow (or, with --ingress, an\n"
	"            inbound one from ADDR to guest port PORT) or a DNS query, and why;\n"
	"            the first line reads: allow|deny rule N|default [terminate]\n"
	"  --dst     203.0.113.10:443/tcp, [2001:db8::1]:443/tcp, 192.0.2.1/icmp\n"
	"            (PROTO tcp, udp or icmp; tcp if left out; icmp takes no port)\n"
	"  --name    pretend ADDR was resolved from NAME (repeatable), for domain rules\n"
	"  --sni     the connection's TLS ClientHello names NAME (--host: its HTTP Host)\n"
	"  --subnet  the guest network, as for moat run (default 10.0.2.0/24); its .2\n"
	"            and .3 addresses and fd00::2 form the \"host\" group\n"
	"  default   print the built-in default policy\n";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("moat: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* The "host" group for a guest subnet, as `moat run` builds it. */
static int env_from_subnet(const char *s, struct policy_env *env)
{
	char buf[64], *slash, *end;
	unsigned long prefix;
	struct in_addr a;
	uint32_t net;

	if (!s)
		s = "10.0.2.0/24";
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	prefix = strtoul(slash + 1, &end, 10);
	if (end == slash + 1 || *end || prefix < 8 || prefix > 28)
		return -1;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	net = ntohl(a.s_addr) & (~0u << (32 - prefix));
	memset(env, 0, sizeof(*env));
	for (int i = 0; i < 2; i++) {
		uint32_t v = htonl(net | (uint32_t)(2 + i));

		env->host[i].family = AF_INET;
		memcpy(env->host[i].addr, &v, 4);
	}
	env->host[2].family = AF_INET6;
	env->host[2].addr[0] = 0xfd;
	env->host[2].addr[15] = 2;
	env->n_host = 3;
	return 0;
}

/*
 * ADDR:PORT/PROTO, [V6]:PORT/PROTO, ADDR/icmp, [V6]/icmp, V6/icmp; without
 * "/PROTO" the protocol is tcp.
 */
static int parse_dst(const char *s, struct policy_flow *f)
{
	char buf[128], *proto;
	int rc;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	proto = strrchr(buf, '/');
	f->proto = POLICY_PROTO_TCP;
	if (proto) {
		*proto++ = '\0';
		if (!strcmp(proto, "tcp"))
			f->proto = POLICY_PROTO_TCP;
		else if (!strcmp(proto, "udp"))
			f->proto = POLICY_PROTO_UDP;
		else if (!strcmp(proto, "icmp"))
			f->proto = POLICY_PROTO_ICMP;
		else
			return -1;
	}
	/* Port 0 is a port like any other to explain; icmp has none. */
	f->port = 0;
	rc = policy_hostport_parse(buf, POLICY_HOSTPORT_PORT_OPTIONAL | POLICY_HOSTPORT_PORT_ZERO,
				   &f->dst, &f->port);
	if (rc < 0)
		return -1;
	if (f->proto == POLICY_PROTO_ICMP)
		return rc == 1 ? 0 : -1;
	return rc == 0 ? 0 : -1;
}

static int load(const char *file, const struct policy_env *env, struct policy **p)
{
	char err[1024];

	const char *w;

	if (policy_load_file(file, env, p, err, sizeof(err)) < 0)
		return fail("%s", err);
	for (int i = 0; (w = policy_warning(*p, i)); i++)
		fprintf(stderr, "moat: %s: warning: %s\n", file, w);
	return EXIT_OK;
}

static int print_policy(const struct policy *p)
{
	char *text = policy_to_json(p);

	if (!text)
		return fail("out of memory");
	printf("%s\n", text);
	free(text);
	return fflush(stdout) ? fail("cannot write the policy to stdout") : EXIT_OK;
}

static int cmd_check(int argc, char **argv)
{
	struct policy_env env;
	struct policy *p = NULL;
	int rc;

	if (argc != 2)
		return fail("usage: moat policy check FILE");
	env_from_subnet(NULL, &env);
	rc = load(argv[1], &env, &p);
	if (rc)
		return rc;
	rc = print_policy(p);
	policy_free(p);
	return rc;
}

/* "--opt VALUE" or "--opt=VALUE": the value, or NULL if @arg is not --opt. */
static const char *opt_value(const char *opt, int argc, char **argv, int *i, bool *missing)
{
	size_t n = strlen(opt);

	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): argv[*i], *i < argc */
	if (strncmp(argv[*i], opt, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n])
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

/* What explain was asked: a flow (maybe with the host name its client sends) or a query. */
struct explain_ask {
	const struct policy_flow *flow; /* NULL: the DNS query below */
	const char *hostname;		/* --sni or --host, or NULL */
	bool tls;			/* hostname is an SNI */
	const char *qname;
	enum policy_proto transport;
};

static int explain_into(const struct policy *p, const struct explain_ask *a, char *buf, size_t len)
{
	if (!a->flow)
		return policy_explain_dns(p, a->qname, a->transport, buf, len);
	if (a->hostname)
		return policy_explain_hostname(p, a->flow, a->hostname, a->tls, buf, len);
	return policy_explain(p, a->flow, buf, len);
}

static int print_explain(const struct policy *p, const struct explain_ask *a)
{
	char small[8192], *buf = small, *big = NULL;
	int n;

	n = explain_into(p, a, buf, sizeof(small));
	if (n < 0)
		return fail("cannot explain");
	if ((size_t)n >= sizeof(small)) {
		buf = big = malloc((size_t)n + 1);
		if (!big)
			return fail("out of memory");
		n = explain_into(p, a, buf, (size_t)n + 1);
		if (n < 0) {
			free(big);
			return fail("cannot explain");
		}
	}
	fputs(buf, stdout);
	free(big);
	return fflush(stdout) ? fail("cannot write to stdout") : EXIT_OK;
}

/* --dns NAME, NAME/udp or NAME/tcp: the name into @qname. Return: @qname, or NULL. */
static const char *explain_dns_name(const char *arg, char qname[256], enum policy_proto *transport)
{
	const char *slash = strrchr(arg, '/');
	size_t n = slash ? (size_t)(slash - arg) : strlen(arg);

	if (slash && !strcmp(slash, "/tcp"))
		*transport = POLICY_PROTO_TCP;
	if (slash && strcmp(slash, "/udp") && strcmp(slash, "/tcp")) {
		fail("explain: --dns '%s': the transport is /udp or /tcp", arg);
		return NULL;
	}
	if (n >= 256) {
		fail("explain: --dns: the name is longer than 255 characters");
		return NULL;
	}
	memcpy(qname, arg, n);
	qname[n] = '\0';
	return qname;
}

/*
 * --sni NAME or --host NAME: lowercased into @buf (the proxy compares the
 * lowercase name, as sniff.c reads it). Return: 0, or -1 after the message.
 */
static int explain_hostname(const char *arg, bool tls, char buf[256], struct explain_ask *ask)
{
	size_t n = strlen(arg);

	if (!n || n >= 256) {
		fail("explain: %s: the name is 1 to 255 characters", tls ? "--sni" : "--host");
		return -1;
	}
	for (size_t k = 0; k <= n; k++)
		buf[k] = (char)tolower((unsigned char)arg[k]);
	ask->hostname = buf;
	ask->tls = tls;
	return 0;
}

static int cmd_explain(int argc, char **argv)
{
	const char *file = NULL, *dst = NULL, *dns = NULL, *subnet = NULL, *sni = NULL,
		   *host = NULL;
	const char *names[MAX_NAMES + 1] = { NULL };
	struct explain_ask ask = { 0 };
	char hostname[256];
	enum policy_proto transport = POLICY_PROTO_UDP;
	char qname[256];
	struct policy_flow f = { .direction = POLICY_EGRESS };
	struct policy_env env;
	struct policy *p = NULL;
	int n_names = 0, rc;
	bool ingress = false;

	for (int i = 1; i < argc; i++) {
		bool missing = false;
		const char *v;

		if ((v = opt_value("--dst", argc, argv, &i, &missing))) {
			dst = v;
		} else if ((v = opt_value("--dns", argc, argv, &i, &missing))) {
			dns = v;
		} else if ((v = opt_value("--subnet", argc, argv, &i, &missing))) {
			subnet = v;
		} else if ((v = opt_value("--sni", argc, argv, &i, &missing))) {
			sni = v;
		} else if ((v = opt_value("--host", argc, argv, &i, &missing))) {
			host = v;
		} else if ((v = opt_value("--name", argc, argv, &i, &missing))) {
			if (n_names == MAX_NAMES)
				return fail("explain: at most %d --name", MAX_NAMES);
			names[n_names++] = v;
		} else if (missing) {
			return fail("explain: %s needs a value", argv[i]);
			/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): i < argc */
		} else if (!strcmp(argv[i], "--ingress")) {
			ingress = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return fail("explain: unknown option '%s' (see moat policy --help)",
				    argv[i]);
		} else if (!file) {
			file = argv[i];
		} else {
			return fail("explain: more than one FILE ('%s')", argv[i]);
		}
	}
	if (!file)
		return fail("usage: moat policy explain FILE --dst ADDR:PORT/PROTO | --dns NAME");
	if (!!dst == !!dns)
		return fail("explain: give exactly one of --dst ADDR:PORT/PROTO and --dns NAME");
	if (dns && (n_names || ingress || sni || host))
		return fail(
			"explain: --name, --ingress, --sni and --host go with --dst, not --dns");
	if (sni && host)
		return fail(
			"explain: give --sni or --host, not both (a connection is TLS or HTTP)");
	if ((sni || host) && explain_hostname(sni ? sni : host, sni != NULL, hostname, &ask) < 0)
		return EXIT_USAGE;
	if (dns && !(dns = explain_dns_name(dns, qname, &transport)))
		return EXIT_USAGE;
	if (dst && parse_dst(dst, &f) < 0)
		return fail(
			"explain: --dst '%s' is not ADDR:PORT/PROTO (like 203.0.113.10:443/tcp, "
			"[2001:db8::1]:443/tcp or 192.0.2.1/icmp)",
			dst);
	if (env_from_subnet(subnet, &env) < 0)
		return fail("explain: --subnet '%s' is not an IPv4 CIDR like 10.0.2.0/24 "
			    "(prefix 8..28)",
			    subnet);
	rc = load(file, &env, &p);
	if (rc)
		return rc;
	if (ingress)
		f.direction = POLICY_INGRESS;
	f.names = n_names ? names : NULL;
	ask.flow = dst ? &f : NULL;
	ask.qname = dns;
	ask.transport = transport;
	rc = print_explain(p, &ask);
	policy_free(p);
	return rc;
}

static int cmd_default(int argc)
{
	struct policy_env env;
	struct policy *p;
	int rc;

	if (argc != 1)
		return fail("usage: moat policy default");
	env_from_subnet(NULL, &env);
	p = policy_default(&env);
	if (!p)
		return fail("cannot build the default policy");
	rc = print_policy(p);
	policy_free(p);
	return rc;
}

/**
 * policy_cmd_main() - `moat policy ...`
 * @argc:	argument count, from "policy" on
 * @argv:	argv[0] is "policy", argv[1] the subcommand
 *
 * Context: the moat binary, before anything else; nothing is started.
 * Return: the exit status: 0 on success (whatever an explained decision
 * is), 2 on a usage error or a policy that does not parse.
 */
int policy_cmd_main(int argc, char **argv)
{
	if (argc < 2)
		return fail(
			"usage: moat policy check|explain|default ... (see moat policy --help)");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "explain"))
		return cmd_explain(argc - 1, argv + 1);
	if (!strcmp(argv[1], "default"))
		return cmd_default(argc - 1);
	return fail("policy: unknown command '%s' (check, explain or default)", argv[1]);
}
