/* SPDX-License-Identifier: MIT */
/*
 * main.c - moat's entry: `moat run`, `moat policy`, `moat ctl`, `moat version`, and the
 * re-executed roles
 *
 * Theory of Operation
 * -------------------
 * One binary, three processes. The supervisor starts as `moat run ...`; it
 * re-executes /proc/self/exe as "moat-netstack __netstack PID" and
 * "moat-proxy __proxy PID" (and, for --guest vhost-user:, "moat-vhost
 * __vhost PID") with the shared region, the eventfds and the
 * lifeline at the fixed numbers of common/fds.h. The role words start with
 * "__" so that nobody types them by accident. Their one argument is the
 * supervisor's pid, in decimal, so that a child can tell at start whether
 * its parent is still the supervisor (confine_parent_death()); everything
 * else a child needs is in the region's header or on its control channel.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/log.h"
#include "netstack/netstack.h"
#include "proxy/proxy.h"
#include "supervisor/ctl.h"
#include "supervisor/policy_cmd.h"
#include "supervisor/run.h"
#include "tls/tls.h"
#include "vhost/vhost.h"

#ifndef MOAT_VERSION
#define MOAT_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fputs("usage: moat run --guest SPEC [options] [-- COMMAND...]\n"
	      "       moat policy check FILE\n"
	      "       moat policy explain FILE --dst ADDR:PORT/PROTO [--name N] [--sni N|--host N]\n"
	      "       moat policy explain FILE --dns NAME[/udp|/tcp]\n"
	      "       moat ctl [--json] PATH status | flows [tcp|udp] | publish [add|del SPEC] | policy [FILE]\n"
	      "       moat version\n"
	      "Run `moat run --help` for the options of run.\n",
	      f);
}

/*
 * The supervisor pid of a role's command line, strictly: decimal digits
 * only (no sign, space, leading zero or trailing bytes), at least 1 (a
 * supervisor that is a container's init is pid 1), within pid_t, and no
 * further argument. The value is not echoed: it may hold any bytes.
 * Anything else exits 1: a role started by hand or by a mismatched
 * supervisor must not run unsupervised.
 */
static pid_t role_supervisor(const char *role, int argc, char **argv)
{
	const char *s = argc == 3 ? argv[2] : "";
	char *end;
	long v;

	log_init(role, LOG_LVL_INFO);
	if (argc != 3)
		fatalx(1, "%s takes one argument, the supervisor's pid (got %d)", argv[1],
		       argc - 2);
	if (s[0] < '1' || s[0] > '9')
		fatalx(1, "%s: the supervisor's pid is not a decimal number", argv[1]);
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || (long)(pid_t)v != v)
		fatalx(1, "%s: the supervisor's pid is not a decimal number", argv[1]);
	return (pid_t)v;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "__netstack"))
		return netstack_main(role_supervisor("moat-netstack", argc, argv));
	if (argc >= 2 && !strcmp(argv[1], "__proxy"))
		return proxy_main(role_supervisor("moat-proxy", argc, argv));
	if (argc >= 2 && !strcmp(argv[1], "__tls"))
		return tls_main(role_supervisor("moat-tls", argc, argv));
	if (argc >= 2 && !strcmp(argv[1], "__vhost"))
		return vhost_main(role_supervisor("moat-vhost", argc, argv));
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "policy"))
		return policy_cmd_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("moat %s\n", MOAT_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "moat: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
