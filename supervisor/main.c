/* SPDX-License-Identifier: MIT */
/*
 * main.c - moat's entry: `moat run`, `moat policy`, `moat version`, and the
 * re-executed roles
 *
 * Theory of Operation
 * -------------------
 * One binary, three processes. The supervisor starts as `moat run ...`; it
 * re-executes /proc/self/exe as "moat-netstack __netstack" and
 * "moat-proxy __proxy" with the shared region and eventfds at the fixed
 * numbers of common/fds.h. The role words start with "__" so that nobody
 * types them by accident; they take no other arguments: everything a child
 * needs is in the region's header or on its control channel.
 */
#include <stdio.h>
#include <string.h>

#include "netstack/netstack.h"
#include "proxy/proxy.h"
#include "supervisor/policy_cmd.h"
#include "supervisor/run.h"

#ifndef MOAT_VERSION
#define MOAT_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fputs("usage: moat run --guest SPEC [options] [-- COMMAND...]\n"
	      "       moat policy check FILE\n"
	      "       moat policy explain FILE --dst ADDR:PORT/PROTO | --dns NAME\n"
	      "       moat version\n"
	      "Run `moat run --help` for the options of run.\n", f);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "__netstack"))
		return netstack_main();
	if (argc >= 2 && !strcmp(argv[1], "__proxy"))
		return proxy_main();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "policy"))
		return policy_cmd_main(argc - 1, argv + 1);
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
