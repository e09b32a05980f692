/* SPDX-License-Identifier: MIT */
/*
 * run.c - `moat run`: the supervisor process
 *
 * Theory of Operation
 * -------------------
 * The parent of everything. In order:
 *   1. parse and check the command line and the policy, resolve --user,
 *      open the guest port (a tap may need privileges we drop later),
 *      --events, --pcap and the metrics listener: any error exits 2 before
 *      anything is forked (fail closed, say what to fix);
 *   2. create the shared region, four eventfds, a control socketpair for
 *      the proxy, the lifeline pipe (the children see its read end hang up
 *      when we die) and the pipe the children log into;
 *   3. fork the --on-violation runner (supervisor/hook.c), re-execute
 *      /proc/self/exe twice as the netstack and the proxy with those at the
 *      fixed numbers of common/fds.h, start the command after `--` in its
 *      own process group: all through proc_fork(), so none outlives us;
 *   4. confine ourselves (supervisor/sandbox.c): --user, CAP_KILL only,
 *      no_new_privs, a seccomp allowlist;
 *   5. run the loop: guest port I/O, mailboxes, signals, child exits, the
 *      control channel, the children's log lines.
 *
 * Child death is fatal (DESIGN §1): a pidfd per child wakes the loop; an
 * exit we did not ask for is a MOAT_VIOL_CHILD_EXIT violation. So is a
 * proxy that does not take a control document within
 * CHANNEL_DRAIN_TIMEOUT_MS: the channel is non-blocking both ways and a
 * stopped proxy must not freeze the process that kills the VM. A violation
 * runs the termination hook: an event, SIGKILL to the VM (pidfd for
 * --vm-pid, the process group of the `--` command), --on-violation, stop
 * the children, exit 3. SIGTERM and SIGINT stop everything cleanly with 0
 * (a command that ignores SIGTERM is killed after PROC_STOP_GRACE_MS);
 * SIGHUP reloads the policy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fds.h"
#include "common/log.h"
#include "common/rate.h"
#include "policy/policy.h"
#include "common/channel.h"
#include "common/confine.h"
#include "shm/mailbox.h"
#include "shm/region.h"
#include "supervisor/api.h"
#include "supervisor/events.h"
#include "supervisor/guest.h"
#include "supervisor/hook.h"
#include "supervisor/loop.h"
#include "supervisor/metrics.h"
#include "supervisor/proc.h"
#include "supervisor/run.h"
#include "supervisor/sandbox.h"
#include "supervisor/tlsconf.h"
#include "tls/tls.h"

#define EXIT_RUNTIME   1
#define EXIT_USAGE     2
#define EXIT_VIOLATION 3
#define MAX_PUBLISH    32

struct publish_opt {
	char host_addr[INET6_ADDRSTRLEN];
	unsigned host_port, guest_port;
	bool udp;
};

struct run_opts {
	struct guest_spec guest;
	const char *policy_path;
	pid_t vm_pid;
	char **command;
	unsigned mtu;
	uint8_t subnet[4];
	unsigned prefix;
	struct publish_opt publish[MAX_PUBLISH];
	int n_publish;
	unsigned max_connections, max_udp_flows, connect_timeout_ms, udp_timeout_s;
	const char *metrics_addr, *metrics_file, *events_path, *pcap_path, *on_violation;
	const char *api_path;	/* --api */
	const char *tls_ca_out; /* --tls-ca-out */
	const char *user;
	int ready_fd;
	int anti_spoof;
	int log_level;
	enum guest_offload offload; /* --offload */
	bool test_trigger;
	bool have_guest; /* --guest was given */
};

/*
 * moat-vhost runs only with --guest vhost-user:, moat-tls only when the policy
 * has a tls section (their slots stay empty otherwise).
 */
enum child_role { CHILD_NETSTACK, CHILD_PROXY, CHILD_VHOST, CHILD_TLS, CHILD_COUNT };
static const char *const child_name[CHILD_COUNT] = { "moat-netstack", "moat-proxy", "moat-vhost",
						     "moat-tls" };
static const char *const child_role_word[CHILD_COUNT] = { "__netstack", "__proxy", "__vhost",
							  "__tls" };

struct supervisor {
	struct run_opts o;
	struct region region;
	struct policy *policy;
	struct policy_env env;
	struct sandbox_user user;
	int efd[4];			/* supervisor, guest, netstack, proxy */
	int control_fd;			/* our end of the proxy's control socket */
	struct channel_out control_out; /* documents the proxy has not taken yet */
	bool control_armed;		/* EPOLLOUT asked for on control_fd */
	int lifeline[2]; /* read end: the children's FD_LIFELINE; write end: ours only */
	int log_pipe[2]; /* the children's stderr; we drain the read end */
	struct proc child[CHILD_COUNT];
	struct proc cmd;  /* `--` command (its own process group) */
	struct hook hook; /* --on-violation runner */
	int vm_pidfd;	  /* --vm-pid */
	uint32_t mbox_seq[2];
	uint64_t generation;
	bool stopping;
	struct loop loop;
	struct loop_watch w_signal, w_efd, w_child[CHILD_COUNT], w_cmd, w_control, w_log;
	struct guest *guest;
	struct metrics *metrics;
	struct api *api;
	struct timespec started; /* CLOCK_MONOTONIC, for the API's uptime */
	bool tls;		 /* moat-tls runs (the policy has a tls section) */
	int tls_sp[2];		 /* the proxy's and moat-tls's ends of their channel */
	int tls_cfg[2];		 /* moat-tls's configuration pipe */
};

static struct supervisor sv;
static struct events_reader control_rd; /* the proxy's events, reassembled */

static const char run_usage[] =
	"usage: moat run --guest SPEC [--policy FILE] [--vm-pid PID | -- COMMAND...]\n"
	"                [--mtu N] [--subnet CIDR] [--publish [HOSTIP:]HOSTPORT:GUESTPORT[/udp]]...\n"
	"                [--max-connections N] [--max-udp-flows N] [--connect-timeout MS]\n"
	"                [--udp-timeout S]\n"
	"                [--metrics ADDR] [--metrics-file PATH] [--events PATH|-] [--pcap PATH]\n"
	"                [--api PATH] [--tls-ca-out PATH]\n"
	"                [--ready-fd N] [--on-violation PROGRAM] [--anti-spoof off|drop|terminate]\n"
	"                [--offload on|off] [--user NAME] [--log-level error|warn|info|debug]\n"
	"\n"
	"  --guest SPEC       tap:IFNAME[@NETNS_PATH] | tap-fd:N | stream:PATH | stream-fd:N |\n"
	"                     dgram:PATH | dgram-fd:N | shm:PATH | vhost-user:PATH\n"
	"  --policy FILE      JSON policy (default: public internet and DNS only)\n"
	"  --vm-pid PID       the process killed on a fatal violation\n"
	"  -- COMMAND...      run COMMAND in its own process group; it is the VM\n"
	"  --mtu N            IP MTU toward the guest, 576..65520 (default 1500)\n"
	"  --subnet CIDR      guest network (default 10.0.2.0/24: guest .15, gateway .2, DNS .3)\n"
	"  --publish SPEC     forward a host port to a guest port\n"
	"  --max-connections N, --max-udp-flows N, --connect-timeout MS\n"
	"  --udp-timeout S    a UDP flow idle this long is closed, 1..86400 (default 60)\n"
	"  --metrics ADDR     serve Prometheus metrics at HOST:PORT or unix:PATH\n"
	"  --metrics-file P   rewrite the metrics to P every few seconds\n"
	"  --api PATH         the control API (HTTP and JSON) on the unix socket PATH\n"
	"  --tls-ca-out PATH  write the CA of TLS interception (policy \"tls\") to PATH\n"
	"  --events PATH|-    JSON lines: denials, violations, exits, reloads\n"
	"  --pcap PATH        record every guest frame\n"
	"  --ready-fd N       write one line to fd N once the guest port is up\n"
	"  --on-violation P   run P (with MOAT_VIOLATION_* set) after killing the VM\n"
	"  --anti-spoof MODE  spoofed guest sources: off, drop (default) or terminate\n"
	"  --offload on|off   checksum and TCP segmentation offloads: a tap and a vhost-user\n"
	"                     driver negotiate them unless off; on also promises them to shm:\n"
	"  --user NAME        started as root, run as NAME after set-up (default nobody;\n"
	"                     root keeps uid 0, still without capabilities but CAP_KILL)\n"
	"Exit status: 0 clean stop, 1 runtime error, 2 usage or configuration error,\n"
	"3 fatal violation (the VM was killed).\n";

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "moat: %s (see moat run --help)\n", buf);
	exit(EXIT_USAGE);
}

static unsigned parse_uint(const char *opt, const char *s, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		usage_error("%s: '%s' is not a number in %u..%u", opt, s, lo, hi);
	return (unsigned)v;
}

static void parse_subnet(struct run_opts *o, const char *s)
{
	char buf[64], *slash;
	struct in_addr a;

	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (!slash)
		usage_error("--subnet: '%s' is not an IPv4 CIDR like 10.0.2.0/24", s);
	*slash = '\0';
	o->prefix = parse_uint("--subnet prefix", slash + 1, 8, 28);
	if (inet_pton(AF_INET, buf, &a) != 1)
		usage_error("--subnet: '%s' is not an IPv4 CIDR like 10.0.2.0/24", s);
	a.s_addr &= htonl(~0u << (32 - o->prefix));
	memcpy(o->subnet, &a, 4);
}

static void set_host_addr(struct publish_opt *p, const struct policy_addr *a, const char *spec)
{
	if (policy_addr_format(a, p->host_addr, sizeof(p->host_addr)) < 0)
		usage_error("--publish: bad address in '%s'", spec);
}

static void parse_publish(struct run_opts *o, const char *s)
{
	struct policy_publish pub;
	struct publish_opt *p;
	char err[160];

	if (o->n_publish == MAX_PUBLISH)
		usage_error("--publish: at most %d", MAX_PUBLISH);
	if (policy_publish_parse(s, true, &pub, err, sizeof(err)) < 0)
		usage_error("--publish: %s", err);
	p = &o->publish[o->n_publish++];
	set_host_addr(p, &pub.host_addr, s);
	p->host_port = pub.host_port;
	p->guest_port = pub.guest_port;
	p->udp = pub.proto == POLICY_PROTO_UDP;
}

static void opt_guest(struct run_opts *o, const char *arg)
{
	char err[256];

	if (guest_spec_parse(arg, &o->guest, err, sizeof(err)) < 0)
		usage_error("--guest: %s", err);
	o->have_guest = true;
}

static void opt_vm_pid(struct run_opts *o, const char *arg)
{
	o->vm_pid = (pid_t)parse_uint("--vm-pid", arg, 1, INT_MAX);
}

static void opt_ready_fd(struct run_opts *o, const char *arg)
{
	o->ready_fd = (int)parse_uint("--ready-fd", arg, 0, INT_MAX);
}

static void opt_anti_spoof(struct run_opts *o, const char *arg)
{
	static const char *const modes[] = { "off", "drop", "terminate" };

	for (int i = 0; i < 3; i++)
		if (!strcmp(arg, modes[i])) {
			o->anti_spoof = i;
			return;
		}
	usage_error("--anti-spoof: '%s' is not off, drop or terminate", arg);
}

static void opt_offload(struct run_opts *o, const char *arg)
{
	if (strcmp(arg, "on") && strcmp(arg, "off"))
		usage_error("--offload: '%s' is not on or off", arg);
	o->offload = !strcmp(arg, "on") ? GUEST_OFFLOAD_ON : GUEST_OFFLOAD_OFF;
}

static void opt_log_level(struct run_opts *o, const char *arg)
{
	o->log_level = log_level_parse(arg);
	if (o->log_level < 0)
		usage_error("--log-level: '%s' is not error, warn, info or debug", arg);
}

static void opt_help(struct run_opts *o, const char *arg)
{
	(void)o, (void)arg;
	fputs(run_usage, stdout);
	exit(0);
}

#ifdef MOAT_TEST_TRIGGERS
static void opt_test_trigger(struct run_opts *o, const char *arg)
{
	(void)arg;
	o->test_trigger = true;
}
#endif

/*
 * moat run's options, one row each: a string kept as given, a number in
 * [min, max] stored in an unsigned field, or a function of its own.
 */
enum run_opt_kind { RUN_OPT_STRING, RUN_OPT_UINT, RUN_OPT_CALL };

struct run_option {
	const char *name;
	size_t off; /* RUN_OPT_STRING: a const char *; RUN_OPT_UINT: an unsigned */
	void (*call)(struct run_opts *o, const char *arg); /* RUN_OPT_CALL */
	unsigned min, max;
	enum run_opt_kind kind;
	bool flag; /* takes no value */
};

#define OPT_S(n, f)                                                                    \
	{                                                                              \
		.name = n, .kind = RUN_OPT_STRING, .off = offsetof(struct run_opts, f) \
	}
#define OPT_U(n, f, lo, hi)                                                                      \
	{                                                                                        \
		.name = n, .kind = RUN_OPT_UINT, .off = offsetof(struct run_opts, f), .min = lo, \
		.max = hi                                                                        \
	}
#define OPT_F(n, fn)                                        \
	{                                                   \
		.name = n, .kind = RUN_OPT_CALL, .call = fn \
	}
#define OPT_FLAG(n, fn)                                                   \
	{                                                                 \
		.name = n, .kind = RUN_OPT_CALL, .call = fn, .flag = true \
	}
static const struct run_option run_options[] = {
	OPT_F("guest", opt_guest),
	OPT_S("policy", policy_path),
	OPT_F("vm-pid", opt_vm_pid),
	OPT_U("mtu", mtu, 576, 65520),
	OPT_F("subnet", parse_subnet),
	OPT_F("publish", parse_publish),
	OPT_U("max-connections", max_connections, 1, 65536),
	OPT_U("max-udp-flows", max_udp_flows, 1, 65536),
	OPT_U("connect-timeout", connect_timeout_ms, 10, 600000),
	OPT_U("udp-timeout", udp_timeout_s, 1, 86400),
	OPT_S("metrics", metrics_addr),
	OPT_S("metrics-file", metrics_file),
	OPT_S("api", api_path),
	OPT_S("tls-ca-out", tls_ca_out),
	OPT_S("events", events_path),
	OPT_S("pcap", pcap_path),
	OPT_F("ready-fd", opt_ready_fd),
	OPT_S("on-violation", on_violation),
	OPT_F("anti-spoof", opt_anti_spoof),
	OPT_F("offload", opt_offload),
	OPT_F("log-level", opt_log_level),
	OPT_S("user", user),
	OPT_FLAG("help", opt_help),
#ifdef MOAT_TEST_TRIGGERS
	OPT_FLAG("test-trigger-seccomp", opt_test_trigger),
#endif
};
#undef OPT_S
#undef OPT_U
#undef OPT_F
#undef OPT_FLAG
#define RUN_OPTIONS ((int)(sizeof(run_options) / sizeof(run_options[0])))

static void run_option_apply(struct run_opts *o, const struct run_option *r, const char *arg)
{
	char what[64];

	switch (r->kind) {
	case RUN_OPT_STRING:
		*(const char **)((char *)o + r->off) = arg;
		break;
	case RUN_OPT_UINT:
		snprintf(what, sizeof(what), "--%s", r->name);
		*(unsigned *)((char *)o + r->off) = parse_uint(what, arg, r->min, r->max);
		break;
	case RUN_OPT_CALL:
		r->call(o, arg);
		break;
	}
}

static void parse_options(struct run_opts *o, int argc, char **argv)
{
	struct option longopts[RUN_OPTIONS + 1];
	int c;

	for (int i = 0; i < RUN_OPTIONS; i++)
		longopts[i] = (struct option){ run_options[i].name,
					       run_options[i].flag ? no_argument :
								     required_argument,
					       NULL, 256 + i };
	longopts[RUN_OPTIONS] = (struct option){ NULL, 0, NULL, 0 };
	o->mtu = 1500;
	o->subnet[0] = 10, o->subnet[1] = 0, o->subnet[2] = 2, o->subnet[3] = 0;
	o->prefix = 24;
	o->max_connections = 1024;
	o->max_udp_flows = 256;
	o->connect_timeout_ms = 10000;
	o->udp_timeout_s = 60;
	o->ready_fd = -1;
	o->anti_spoof = 1;
	o->log_level = LOG_LVL_INFO;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		if (c >= 256 && c < 256 + RUN_OPTIONS)
			run_option_apply(o, &run_options[c - 256], optarg);
		else if (c == 'h')
			opt_help(o, NULL);
		else if (c == ':')
			usage_error("option '%s' needs a value", argv[optind - 1]);
		else
			usage_error("unknown option '%s'", argv[optind - 1]);
	}
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--"))
			usage_error("unexpected argument '%s' (a command goes after --)",
				    argv[optind]);
		o->command = &argv[optind];
	}
	if (!o->have_guest)
		usage_error("--guest is required, e.g. --guest tap:tap0@/run/netns/guest");
	if (o->vm_pid && o->command)
		usage_error("--vm-pid and -- COMMAND exclude each other");
	if (o->ready_fd >= 0 && fcntl(o->ready_fd, F_GETFD) < 0)
		usage_error("--ready-fd %d: not an open descriptor", o->ready_fd);
}

/* The addresses of the guest network, slirp-style, from --subnet. */
static void fill_addresses(struct moat_shm_header *h, const struct run_opts *o)
{
	uint32_t net = ntohl(*(const uint32_t *)o->subnet), mask = ~0u << (32 - o->prefix);
	uint32_t v;

	v = htonl(net | 15);
	memcpy(h->guest_ip4, &v, 4);
	v = htonl(net | 2);
	memcpy(h->gateway_ip4, &v, 4);
	v = htonl(net | 3);
	memcpy(h->dns_ip4, &v, 4);
	v = htonl(mask);
	memcpy(h->netmask4, &v, 4);
	h->prefix4 = (uint8_t)o->prefix;
	/* Locally administered, fixed: 52:55:0a:00:02:02 for 10.0.2.2, as slirp. */
	h->gateway_mac[0] = 0x52, h->gateway_mac[1] = 0x55;
	memcpy(h->gateway_mac + 2, h->gateway_ip4, 4);
	/* fd00::/64 ULA for the guest's v6: gateway fd00::2 (RA is the netstack's). */
	h->gateway_ip6[0] = 0xfd, h->gateway_ip6[15] = 2;
	h->guest_ip6[0] = 0xfd, h->guest_ip6[15] = 15;
}

static void make_env(struct policy_env *env, const struct moat_shm_header *h)
{
	memset(env, 0, sizeof(*env));
	env->host[0].family = AF_INET;
	memcpy(env->host[0].addr, h->gateway_ip4, 4);
	env->host[1].family = AF_INET;
	memcpy(env->host[1].addr, h->dns_ip4, 4);
	env->host[2].family = AF_INET6;
	memcpy(env->host[2].addr, h->gateway_ip6, 16);
	env->n_host = 3;
}

/* What a role's child needs before its exec: read-only to it (proc_spawn()). */
struct role_exec {
	int map[12][2]; /* { our fd, the child's fixed number } */
	int nmap;
	char *argv[4];
};

/* The child: async-signal-safe calls only (libmicrohttpd's thread may run),
 * and it shares our memory until the exec: it writes its own locals only. */
static int role_exec_child(void *arg)
{
	const struct role_exec *re = arg;
	int tmp[12];
	sigset_t none;

	/* Move each fd above the fixed range first (close-on-exec), then into place. */
	for (int i = 0; i < re->nmap; i++) {
		tmp[i] = fcntl(re->map[i][0], F_DUPFD_CLOEXEC, 64);
		if (tmp[i] < 0)
			_exit(127);
	}
	for (int i = 0; i < re->nmap; i++)
		if (dup2(tmp[i], re->map[i][1]) < 0)
			_exit(127);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv("/proc/self/exe", re->argv);
	_exit(127);
}

/*
 * Re-execute ourselves as @role (common/fds.h): stdin and stdout /dev/null,
 * stderr our log pipe, the region, the eventfds, the lifeline's read end and,
 * for the proxy, the control socket and the channel to moat-tls; for
 * moat-vhost the vhost-user listening socket; for moat-tls the channel, its
 * configuration pipe and its socket to us) at their fixed numbers.
 */
static void spawn_child(enum child_role role, int control_child_fd, int devnull)
{
	char supervisor[16];
	pid_t pid;
	struct role_exec re = {
		.map = {
			{ devnull, STDIN_FILENO },	   { devnull, STDOUT_FILENO },
			{ sv.log_pipe[1], STDERR_FILENO }, { sv.region.fd, FD_REGION },
			{ sv.efd[0], FD_EFD_SUPERVISOR },  { sv.efd[1], FD_EFD_GUEST },
			{ sv.efd[2], FD_EFD_NETSTACK },	   { sv.efd[3], FD_EFD_PROXY },
			{ sv.lifeline[0], FD_LIFELINE },
		},
		.nmap = 9,
		.argv = { (char *)child_name[role], (char *)child_role_word[role], supervisor,
			  NULL },
	};
	int n = re.nmap;

	if (role == CHILD_PROXY) {
		re.map[n][0] = control_child_fd, re.map[n++][1] = FD_CONTROL;
		/* /dev/null when moat-tls does not run: no stray descriptor stays at 10 */
		re.map[n][0] = sv.tls ? sv.tls_sp[0] : devnull, re.map[n++][1] = FD_PROXY_TLS;
	} else if (role == CHILD_VHOST) {
		re.map[n][0] = guest_vhost_listener(sv.guest), re.map[n++][1] = FD_VHOST_LISTEN;
	} else if (role == CHILD_TLS) {
		re.map[n][0] = sv.tls_sp[1], re.map[n++][1] = FD_TLS_CHANNEL;
		re.map[n][0] = sv.tls_cfg[0], re.map[n++][1] = FD_TLS_CONFIG;
		re.map[n][0] = tlsconf_child_fd(), re.map[n++][1] = FD_TLS_SUPERVISOR;
	}
	re.nmap = n;

	snprintf(supervisor, sizeof(supervisor), "%d", (int)getpid());
	pid = proc_spawn(&sv.child[role], role_exec_child, &re);
	if (pid < 0) {
		errno = -pid;
		fatal("fork");
	}
}

static void violation_simple(enum moat_violation reason, const char *who, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

/* Write what the proxy will take now; wait for EPOLLOUT for the rest. */
static void control_flush(void)
{
	int rc = channel_out_flush(&sv.control_out, sv.control_fd);
	bool want_out = rc == 1;

	if (rc < 0) /* the proxy closed its end: its pidfd says why, and that is fatal */
		log_warn("control socket: %s", strerror(-rc));
	if (want_out != sv.control_armed) {
		loop_mod(&sv.loop, &sv.w_control, EPOLLIN | (want_out ? EPOLLOUT : 0));
		sv.control_armed = want_out;
	}
}

/*
 * A proxy that has not taken a queued document within
 * CHANNEL_DRAIN_TIMEOUT_MS is stopped or compromised: a fatal violation.
 * Return: milliseconds left (the loop's timeout), or -1 when nothing waits.
 */
static int control_deadline_ms(void)
{
	uint64_t stalled = channel_out_stalled_ms(&sv.control_out);

	if (!channel_out_pending(&sv.control_out))
		return -1;
	if (stalled >= CHANNEL_DRAIN_TIMEOUT_MS)
		violation_simple(MOAT_VIOL_CHILD_STALLED, child_name[CHILD_PROXY],
				 "%s took no control document for %d s (%zu bytes waiting)",
				 child_name[CHILD_PROXY], CHANNEL_DRAIN_TIMEOUT_MS / 1000,
				 channel_out_pending(&sv.control_out));
	return (int)(CHANNEL_DRAIN_TIMEOUT_MS - stalled);
}

/* nameserver lines of /etc/resolv.conf, as "addr:port" JSON strings */
static json_t *host_nameservers(void)
{
	json_t *a = json_array();
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[256];

	if (!f)
		return a;
	while (fgets(line, sizeof(line), f)) {
		char ns[128], buf[160];
		struct policy_addr pa;

		if (sscanf(line, " nameserver %127s", ns) != 1)
			continue;
		char *pct = strchr(ns, '%'); /* scoped v6: drop the scope */

		if (pct)
			*pct = '\0';
		if (policy_addr_parse(ns, &pa) < 0)
			continue;
		snprintf(buf, sizeof(buf), pa.family == AF_INET6 ? "[%s]:53" : "%s:53", ns);
		json_array_append_new(a, json_string(buf));
	}
	fclose(f);
	return a;
}

/*
 * The proxy's configuration document (common/channel.h) for @p; the
 * nameservers and published ports go with the first one only.
 * Return: the text (free()), or NULL.
 */
static char *config_document(const struct policy *p, uint64_t generation, bool initial)
{
	char *pol = policy_to_json(p);
	json_t *doc = json_object(), *polj;
	json_error_t jerr;
	char *text;

	polj = pol ? json_loads(pol, 0, &jerr) : NULL;
	free(pol);
	if (!polj || !doc) {
		json_decref(polj);
		json_decref(doc);
		return NULL;
	}
	json_object_set_new(doc, "policy", polj);
	json_object_set_new(doc, "generation", json_integer((json_int_t)generation));
	if (initial) {
		json_t *pubs = json_array();

		json_object_set_new(doc, "nameservers", host_nameservers());
		for (int i = 0; i < sv.o.n_publish; i++) {
			const struct publish_opt *pb = &sv.o.publish[i];

			json_array_append_new(pubs, json_pack("{s:s,s:i,s:i,s:s}", "host_address",
							      pb->host_addr, "host_port",
							      (int)pb->host_port, "guest_port",
							      (int)pb->guest_port, "protocol",
							      pb->udp ? "udp" : "tcp"));
		}
		json_object_set_new(doc, "publish", pubs);
	}
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return text;
}

/*
 * Queue @p for the proxy as generation sv.generation + 1. Nothing blocks:
 * the queue is bounded, and a full one (the proxy has not taken the last
 * documents) refuses this one.
 * Return: 0, or -errno (-ENOBUFS, -EMSGSIZE, -ENOMEM) with nothing queued.
 */
static int send_policy(const struct policy *p, bool initial)
{
	char *text = config_document(p, sv.generation + 1, initial);
	int rc;

	if (!text)
		return -ENOMEM;
	rc = channel_out_push(&sv.control_out, text, strlen(text));
	free(text);
	if (rc < 0)
		return rc;
	sv.generation++;
	control_flush();
	return 0;
}

/*
 * The children's log reaches our stderr at most this fast (a burst of
 * LOG_BURST_BYTES, then LOG_RATE_BYTES a second): a compromised child must
 * not fill a disk through us either. What is over is read and dropped, so
 * the child never blocks on a full pipe, and the drop is said once.
 */
#define LOG_RATE_BYTES	(64u << 10)
#define LOG_BURST_BYTES (1u << 20)

static struct rate child_log_rate = RATE_INIT(LOG_RATE_BYTES, LOG_BURST_BYTES);
static uint64_t child_log_dropped;

/* May @n bytes of the children's log go out now? */
static bool child_log_admit(size_t n)
{
	if (rate_take(&child_log_rate, n))
		return true;
	if (!child_log_dropped)
		log_warn("the children log faster than %u KiB/s; dropping their lines",
			 LOG_RATE_BYTES >> 10);
	child_log_dropped += n;
	return false;
}

/* Drain what the children logged into our stderr (they write whole lines). */
static void on_log(struct loop_watch *w, uint32_t events)
{
	char buf[16384];

	(void)events;
	for (int i = 0; i < 8; i++) {
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				loop_del(&sv.loop, w); /* every child is gone */
			return;
		}
		if (!child_log_admit((size_t)n))
			continue;
		if (child_log_dropped) {
			log_warn("%llu bytes of the children's log were dropped",
				 (unsigned long long)child_log_dropped);
			child_log_dropped = 0;
		}
		if (write(STDERR_FILENO, buf, (size_t)n) < 0)
			return; /* our stderr is gone: nothing to tell */
	}
}

static void stop_children(void)
{
	for (int i = 0; i < CHILD_COUNT; i++)
		proc_signal(&sv.child[i], SIGTERM);
	for (int i = 0; i < CHILD_COUNT; i++) {
		if (proc_wait(&sv.child[i], 1000) == 0) {
			proc_signal(&sv.child[i], SIGKILL);
			proc_wait(&sv.child[i], -1);
		}
	}
	/* Their last words (why a child died) are still in the pipe. */
	on_log(&sv.w_log, 0);
}

static void kill_vm(void)
{
	int rc;

	if (sv.vm_pidfd >= 0) {
		if (syscall(SYS_pidfd_send_signal, sv.vm_pidfd, SIGKILL, NULL, 0) < 0)
			log_error("cannot kill the VM (pid %d): %s", (int)sv.o.vm_pid,
				  strerror(errno));
	} else if (sv.cmd.pid > 0) {
		rc = proc_signal(&sv.cmd, SIGKILL);
		if (rc < 0 && rc != -ESRCH)
			log_error("cannot kill the command's process group %d: %s", (int)sv.cmd.pid,
				  strerror(-rc));
	}
}

static void run_on_violation(const struct moat_mailbox *m, const char *who)
{
	struct hook_info info = { .rule = (int)m->rule, .flow = m->flow };

	snprintf(info.reason, sizeof(info.reason), "%s", events_violation_name(m->reason));
	snprintf(info.detail, sizeof(info.detail), "%s", m->detail);
	snprintf(info.process, sizeof(info.process), "%s", who);
	info.vm_pid = sv.o.vm_pid ? (int)sv.o.vm_pid : (int)sv.cmd.pid;
	if (m->dst_family == 4 || m->dst_family == 6) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(m->dst_family == 4 ? AF_INET : AF_INET6, m->dst_addr, a, sizeof(a));
		snprintf(info.destination, sizeof(info.destination),
			 m->dst_family == 4 ? "%s:%u" : "[%s]:%u", a, m->dst_port);
	}
	hook_run(&sv.hook, &info);
}

/**
 * violation() - the termination hook (DESIGN §9)
 * @m:		what happened (copied out of a mailbox, or made up here)
 * @who:	reporting process
 */
static void __attribute__((noreturn)) violation(const struct moat_mailbox *m, const char *who)
{
	struct timespec t0, t1;
	const char *reason = events_violation_name(m->reason);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill_vm();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	events_violation(reason, who, m,
			 (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
	log_error("fatal violation: reason=%s process=%s rule=%d flow=%u detail=\"%s\"; VM killed",
		  reason, who, (int)m->rule, m->flow, m->detail);
	sv.stopping = true;
	run_on_violation(m, who);
	stop_children();
	metrics_final(sv.metrics);
	events_close();
	exit(EXIT_VIOLATION);
}

/* A violation the supervisor found itself: @fmt says what, for the detail. */
static void violation_simple(enum moat_violation reason, const char *who, const char *fmt, ...)
{
	struct moat_mailbox m = { .reason = reason, .rule = -1 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m.detail, sizeof(m.detail), fmt, ap);
	va_end(ap);
	violation(&m, who);
}

/* The guest port found s2g corrupt: the netstack is not to be trusted. */
static void guest_port_violation(const char *detail)
{
	violation_simple(MOAT_VIOL_RING_CORRUPT, "moat", "%s", detail);
}

static void check_mailboxes(void)
{
	static const enum moat_part part[2] = { MOAT_PART_MBOX_NETSTACK, MOAT_PART_MBOX_PROXY };
	struct moat_mailbox m;

	for (int i = 0; i < 2; i++)
		if (mailbox_take(sv.region.part[part[i]], &sv.mbox_seq[i], &m))
			violation(&m, child_name[i]);
}

static void on_efd(struct loop_watch *w, uint32_t events)
{
	uint64_t v;

	(void)events;
	if (read(w->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("eventfd read: %s", strerror(errno));
	check_mailboxes();
}

static void on_child(struct loop_watch *w, uint32_t events)
{
	int role = (int)(w - sv.w_child);
	const siginfo_t *si = &sv.child[role].si;

	(void)events;
	if (proc_reap(&sv.child[role]) != 1)
		return;
	loop_del(&sv.loop, w);
	/* A child's mailbox report comes first: it says why it is dying. */
	check_mailboxes();
	if (sv.stopping)
		return;
	events_child_exit(child_name[role], si->si_code == CLD_EXITED ? si->si_status : -1,
			  si->si_code == CLD_EXITED ? 0 : si->si_status);
	on_log(&sv.w_log, 0);
	if (si->si_code == CLD_EXITED)
		violation_simple(MOAT_VIOL_CHILD_EXIT, "moat", "%s exited with status %d",
				 child_name[role], si->si_status);
	violation_simple(MOAT_VIOL_CHILD_EXIT, "moat", "%s killed by signal %d%s", child_name[role],
			 si->si_status, si->si_status == SIGSYS ? " (seccomp)" : "");
}

/* The control socket: the proxy's events in, documents out. */
static void on_control(struct loop_watch *w, uint32_t events)
{
	char err[160];
	int rc;

	if (events & EPOLLOUT)
		control_flush();
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	rc = events_reader_input(&control_rd, w->fd, err, sizeof(err));
	if (rc == -EPROTO)
		violation_simple(MOAT_VIOL_BAD_MESSAGE, child_name[CHILD_PROXY], "%s", err);
	if (rc < 0)
		log_warn("control socket: %s", strerror(-rc));
	if (rc <= 0) {
		loop_del(&sv.loop, w); /* the proxy's pidfd tells why it went */
		sv.control_armed = false;
	}
}

/* What reading a policy file takes once the supervisor is confined. */
static void reload_seccomp(scmp_filter_ctx ctx)
{
	ALLOW(ctx, openat);	/* SIGHUP: open --policy (and --metrics-file's PATH.tmp) */
	ALLOW(ctx, fstat);	/* stdio's buffer size for the policy file */
	ALLOW(ctx, newfstatat); /* the same, where fstat is fstatat */
	ALLOW(ctx, lseek);	/* jansson's file reader */
	ALLOW(ctx, read);	/* a secret's value_file (tlsconf_prepare()) */
	/* has moat-tls read its last configuration? (FIONREAD only) */
	ALLOW_ARG(ctx, ioctl, SCMP_A1(SCMP_CMP_EQ, FIONREAD));
}

static void log_policy_warnings(const struct policy *p)
{
	const char *w;

	for (int i = 0; (w = policy_warning(p, i)); i++)
		log_warn("%s: %s", sv.o.policy_path, w);
}

/*
 * Put @np in force (SIGHUP or the API, named by @source). Return: 0, or -1
 * with @err set and the old policy still in force (@np is freed either way
 * or kept).
 */
static int apply_policy(struct policy *np, const char *source, char *err, size_t errlen)
{
	int rc;

	if (tlsconf_prepare(sv.policy, np, err, errlen) < 0) {
		log_error("policy reload refused, the old policy stays in force: %s: %s", source,
			  err);
		events_reload(source, false, err);
		policy_free(np);
		return -1;
	}
	rc = send_policy(np, false);
	if (rc < 0)
		tlsconf_discard();
	else
		tlsconf_commit(); /* moat-tls takes it only once the proxy has the policy */

	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot hand the policy to the proxy: %s%s", source,
			 strerror(-rc),
			 rc == -ENOBUFS ? " (it has not taken the previous reloads yet)" : "");
		log_error("policy reload failed, the old policy stays in force: %s", err);
		events_reload(source, false, err);
		policy_free(np);
		return -1;
	}
	policy_free(sv.policy);
	sv.policy = np;
	log_info("policy reloaded from %s generation=%llu", source,
		 (unsigned long long)sv.generation);
	events_reload(source, true, NULL);
	return 0;
}

static void reload_policy(void)
{
	struct policy *np = NULL;
	char err[512];

	if (!sv.o.policy_path) {
		log_info("SIGHUP: no --policy file; the default policy stays");
		return;
	}
	if (policy_load_file(sv.o.policy_path, &sv.env, &np, err, sizeof(err)) < 0) {
		log_error("policy reload failed, the old policy stays in force: %s", err);
		events_reload(sv.o.policy_path, false, err);
		return;
	}
	log_policy_warnings(np);
	apply_policy(np, sv.o.policy_path, err, sizeof(err));
}

/* ---- the control API's side (api.c) ------------------------------------ */

static void api_status(json_t *o)
{
	const struct moat_shm_header *h = &sv.region.hdr;
	const struct moat_proxy_counters *pc = sv.region.part[MOAT_PART_CNT_PROXY];
	const struct moat_guest_counters *gc = sv.region.part[MOAT_PART_CNT_GUEST];
	const struct moat_netstack_counters *nc = sv.region.part[MOAT_PART_CNT_NETSTACK];
	uint64_t mac = __atomic_load_n(&nc->guest_mac, __ATOMIC_RELAXED);
	char ip[INET_ADDRSTRLEN] = "", gw[INET_ADDRSTRLEN] = "", macs[18];
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	inet_ntop(AF_INET, h->guest_ip4, ip, sizeof(ip));
	inet_ntop(AF_INET, h->gateway_ip4, gw, sizeof(gw));
	json_object_set_new(o, "version", json_string(MOAT_VERSION));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "netstack_pid", json_integer(sv.child[CHILD_NETSTACK].pid));
	json_object_set_new(o, "proxy_pid", json_integer(sv.child[CHILD_PROXY].pid));
	if (sv.child[CHILD_VHOST].pid > 0)
		json_object_set_new(o, "vhost_pid", json_integer(sv.child[CHILD_VHOST].pid));
	if (sv.child[CHILD_TLS].pid > 0)
		json_object_set_new(o, "tls_pid", json_integer(sv.child[CHILD_TLS].pid));
	json_object_set_new(o, "uptime_s", json_integer(now.tv_sec - sv.started.tv_sec));
	json_object_set_new(o, "guest",
			    json_pack("{s:s,s:s,s:i,s:i,s:s}", "address", ip, "gateway", gw,
				      "prefix", (int)h->prefix4, "mtu", (int)h->mtu, "frontend",
				      guest_kind_name(sv.guest)));
	snprintf(macs, sizeof(macs), "%02x:%02x:%02x:%02x:%02x:%02x", (unsigned)(mac >> 40) & 0xff,
		 (unsigned)(mac >> 32) & 0xff, (unsigned)(mac >> 24) & 0xff,
		 (unsigned)(mac >> 16) & 0xff, (unsigned)(mac >> 8) & 0xff, (unsigned)mac & 0xff);
	/* The netstack learns it from the guest's first frame; null before that. */
	json_object_set_new(json_object_get(o, "guest"), "mac",
			    mac ? json_string(macs) : json_null());
	json_object_set_new(o, "policy_generation", json_integer((json_int_t)sv.generation));
	json_object_set_new(
		o, "counts",
		json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "tcp_connections_active",
			  (json_int_t)__atomic_load_n(&pc->tcp_active, __ATOMIC_RELAXED),
			  "udp_flows_active",
			  (json_int_t)__atomic_load_n(&pc->udp_flows_active, __ATOMIC_RELAXED),
			  "guest_tx_frames",
			  (json_int_t)__atomic_load_n(&gc->tx_frames, __ATOMIC_RELAXED),
			  "guest_rx_frames",
			  (json_int_t)__atomic_load_n(&gc->rx_frames, __ATOMIC_RELAXED),
			  "upstream_tx_bytes",
			  (json_int_t)__atomic_load_n(&pc->upstream_tx_bytes, __ATOMIC_RELAXED),
			  "upstream_rx_bytes",
			  (json_int_t)__atomic_load_n(&pc->upstream_rx_bytes, __ATOMIC_RELAXED)));
}

static json_t *api_policy_get(void)
{
	char *text = policy_to_json(sv.policy);
	json_t *pol = text ? json_loads(text, 0, NULL) : NULL;

	free(text);
	return json_pack("{s:I,s:o}", "generation", (json_int_t)sv.generation, "policy",
			 pol ? pol : json_null());
}

static int api_policy_set(const char *doc, size_t len, unsigned long long *generation, char *err,
			  size_t errlen)
{
	struct policy *np = NULL;

	if (policy_parse(doc, len, "policy", &sv.env, &np, err, errlen) < 0) {
		events_reload("api", false, err);
		return -1;
	}
	if (apply_policy(np, "api", err, errlen) < 0)
		return -1;
	*generation = sv.generation;
	return 0;
}

/* GET /flows, /publish: a request document on the control channel (proxy/control.c). */
static int api_proxy_request(json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	int rc = text ? channel_out_push(&sv.control_out, text, strlen(text)) : -ENOMEM;

	free(text);
	if (rc < 0)
		return -1;
	control_flush();
	return 0;
}

static void api_reply(json_t *msg)
{
	api_proxy_reply(sv.api, msg);
}

static const struct api_ops run_api_ops = {
	.status = api_status,
	.policy_get = api_policy_get,
	.policy_set = api_policy_set,
	.proxy_request = api_proxy_request,
	.published = events_publish,
};

/* 3. --api: bound and served before anything is forked. Return: 0 or EXIT_USAGE. */
static int start_api(void)
{
	char err[512];

	events_on_reply(api_reply);
	if (api_start(&sv.api, sv.o.api_path, sv.user.uid, sv.user.gid, &sv.loop, &run_api_ops, err,
		      sizeof(err)) < 0) {
		fprintf(stderr, "moat: --api: %s\n", err);
		metrics_final(sv.metrics);
		guest_close(sv.guest);
		return EXIT_USAGE;
	}
	return 0;
}

static void on_cmd_exit(struct loop_watch *w, uint32_t events)
{
	const siginfo_t *si = &sv.cmd.si;

	(void)events;
	if (proc_reap(&sv.cmd) != 1)
		return;
	loop_del(&sv.loop, w);
	log_info("command exited (%s %d); stopping",
		 si->si_code == CLD_EXITED ? "status" : "signal", si->si_status);
	sv.loop.stop = 1;
}

static void on_signal(struct loop_watch *w, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("signal %d: stopping", (int)si.ssi_signo);
			sv.loop.stop = 1;
			break;
		case SIGHUP:
			reload_policy();
			break;
		}
	}
}

static void start_command(void)
{
	pid_t pid = proc_fork(&sv.cmd, true);

	if (pid < 0) {
		errno = -pid;
		fatal("fork");
	}
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(sv.o.command[0], sv.o.command);
		dprintf(STDERR_FILENO, "moat: cannot run %s: %s\n", sv.o.command[0],
			strerror(errno));
		_exit(127);
	}
	sv.w_cmd = (struct loop_watch){ .fd = sv.cmd.pidfd, .cb = on_cmd_exit };
	loop_add(&sv.loop, &sv.w_cmd, EPOLLIN);
}

/* Become --user with CAP_KILL only, and load our own allowlist. */
static void confine_supervisor(void)
{
	scmp_filter_ctx ctx = sandbox_filter();

	proc_seccomp(ctx);
	channel_seccomp(ctx);
	reload_seccomp(ctx);
	tlsconf_seccomp(ctx);
	guest_seccomp(ctx, sv.guest);
	metrics_seccomp(ctx, sv.metrics);
	api_seccomp(ctx, sv.api);
	sandbox_enter(&sv.user, ctx);
}

/* Pipes with a close-on-exec end for us (the children get theirs by dup2). */
static void make_pipe(int p[2], int read_flags)
{
	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe");
	if (read_flags && fcntl(p[0], F_SETFL, read_flags) < 0)
		fatal("fcntl");
}

/*
 * 1. Everything that can be refused, before anything is forked: the user,
 * the policy, the VM's pidfd, the guest port, --pcap, --events. @proto gets
 * the addresses.
 * Return: 0, or EXIT_USAGE after one line on stderr.
 */
static int check_and_open(struct moat_shm_header *proto)
{
	char err[512];

	if (sandbox_user_lookup(sv.o.user, &sv.user, err, sizeof(err)) < 0 ||
	    (sv.o.metrics_file &&
	     sandbox_check_dir(&sv.user, sv.o.metrics_file, err, sizeof(err)) < 0)) {
		fprintf(stderr, "moat: %s\n", err);
		return EXIT_USAGE;
	}
	fill_addresses(proto, &sv.o);
	make_env(&sv.env, proto);
	if (sv.o.policy_path) {
		if (policy_load_file(sv.o.policy_path, &sv.env, &sv.policy, err, sizeof(err)) < 0) {
			fprintf(stderr, "moat: %s\n", err);
			return EXIT_USAGE;
		}
		log_policy_warnings(sv.policy);
	} else {
		sv.policy = policy_default(&sv.env);
		if (!sv.policy)
			fatalx(EXIT_RUNTIME, "cannot build the default policy");
	}
	{
		int t = tlsconf_open(sv.policy, sv.o.tls_ca_out, err, sizeof(err));

		if (t < 0) {
			fprintf(stderr, "moat: %s\n", err);
			return EXIT_USAGE;
		}
		sv.tls = t == 1;
	}
	if (sv.o.vm_pid) {
		sv.vm_pidfd = (int)syscall(SYS_pidfd_open, sv.o.vm_pid, 0);
		if (sv.vm_pidfd < 0) {
			fprintf(stderr, "moat: --vm-pid %d: %s\n", (int)sv.o.vm_pid,
				strerror(errno));
			return EXIT_USAGE;
		}
	}
	sv.o.guest.offload = sv.o.offload;
	sv.guest = guest_open(&sv.o.guest, err, sizeof(err));
	if (!sv.guest) {
		fprintf(stderr, "moat: --guest: %s\n", err);
		return EXIT_USAGE;
	}
	if (sv.o.pcap_path &&
	    guest_open_pcap(sv.guest, sv.o.pcap_path, sv.o.mtu, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat: --pcap: %s\n", err);
		guest_close(sv.guest);
		return EXIT_USAGE;
	}
	if (events_open(sv.o.events_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat: --events: %s\n", err);
		guest_close(sv.guest);
		return EXIT_USAGE;
	}
	return 0;
}

/*
 * 2. The region, the signal mask, the metrics (the last thing that can be
 * refused: it binds), the eventfds, the control socketpair (@sp), the
 * lifeline and the log pipe, and the loop.
 * Return: 0, or EXIT_USAGE after one line on stderr.
 */
static int create_region_and_channels(struct moat_shm_header *proto, int sp[2],
				      const sigset_t *mask)
{
	/* 1 MiB rings: room for 16 frames of MTU 65520 or ~700 of 1500, and they stay
	 * in cache (8 MiB rings measured 10-16% slower at MTU 65520, bench/). */
	struct region_config rc = { .frame_ring_bytes = 1u << 20, .flow_ring_bytes = 1u << 20 };
	char err[512];
	int rcode;

	proto->mtu = sv.o.mtu;
	proto->anti_spoof = (uint8_t)sv.o.anti_spoof;
	proto->guest_offloads = guest_offloads(sv.guest);
	proto->log_level = (uint8_t)sv.o.log_level;
	proto->max_tcp_connections = sv.o.max_connections;
	proto->max_udp_flows = sv.o.max_udp_flows;
	proto->connect_timeout_ms = sv.o.connect_timeout_ms;
	proto->tcp_idle_timeout_s = MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S;
	proto->udp_idle_timeout_s = sv.o.udp_timeout_s;
	if (sv.o.test_trigger)
		proto->flags |= MOAT_HDR_F_TEST_TRIGGERS;
	if (sv.tls) {
		proto->flags |= MOAT_HDR_F_TLS;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv.tls_sp) < 0)
			fatal("socketpair (moat-tls)");
		make_pipe(sv.tls_cfg, 0);
	}
	/* The policy's limits (connections, flows) are enforced by the proxy, so a
	 * limit can refuse or terminate and a reload can change it; the tables
	 * themselves are sized by the command line only. */
	rcode = region_create(&rc, proto, &sv.region);
	if (rcode < 0) {
		errno = -rcode;
		fatal("cannot create the shared region");
	}
	/* Signals through a signalfd, blocked before libmicrohttpd's thread starts
	 * so that it inherits the mask; every child unblocks them before exec. */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, mask, NULL);
	if (metrics_start(&sv.metrics, sv.o.metrics_addr, sv.o.metrics_file, &sv.region, err,
			  sizeof(err)) < 0) {
		fprintf(stderr, "moat: --metrics: %s\n", err);
		guest_close(sv.guest);
		return EXIT_USAGE;
	}
	/* Written once as root: make it the user's, who rewrites it from now on. */
	if (sv.o.metrics_file && sv.user.change &&
	    lchown(sv.o.metrics_file, sv.user.uid, sv.user.gid) < 0)
		log_warn("--metrics-file: cannot give %s to user %s: %s", sv.o.metrics_file,
			 sv.user.name, strerror(errno));
	for (int i = 0; i < 4; i++) {
		sv.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sv.efd[i] < 0)
			fatal("eventfd");
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
		fatal("socketpair");
	sv.control_fd = sp[0];
	if (channel_out_init(&sv.control_out, CHANNEL_CONFIG_MAX, CHANNEL_SUPERVISOR_QUEUE_MAX) < 0)
		fatal("control queue");
	make_pipe(sv.lifeline, 0);
	make_pipe(sv.log_pipe, O_NONBLOCK);
	if (loop_init(&sv.loop) < 0)
		fatal("epoll");
	return 0;
}

static void watch(struct loop_watch *w, int fd, loop_cb cb)
{
	*w = (struct loop_watch){ .fd = fd, .cb = cb };
	if (loop_add(&sv.loop, w, EPOLLIN) < 0)
		fatal("epoll_ctl");
}

/*
 * 3. The processes (the hook's runner, the two roles, the command), the
 * loop's watches, the first control document and the guest port.
 */
static void start_processes(int sp[2], const sigset_t *mask)
{
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (devnull < 0)
		fatal("/dev/null");
	if (hook_start(&sv.hook, sv.o.on_violation) < 0)
		fatal("cannot start the --on-violation runner");
	for (int i = 0; i < CHILD_COUNT; i++) {
		if ((i == CHILD_VHOST && guest_vhost_listener(sv.guest) < 0) ||
		    (i == CHILD_TLS && !sv.tls))
			continue;
		spawn_child(i, sp[1], devnull);
		watch(&sv.w_child[i], sv.child[i].pidfd, on_child);
	}
	if (sv.tls) {
		close(sv.tls_sp[0]);
		close(sv.tls_sp[1]);
		close(sv.tls_cfg[0]);
		char err[TLS_CTL_TEXT_MAX];

		/* moat-tls reads it now; only it holds the secrets from here on */
		if (tlsconf_start(sv.policy, sv.tls_cfg[1], err, sizeof(err)) < 0)
			fatalx(EXIT_RUNTIME, "moat-tls did not start: %s", err);
	}
	close(sp[1]);
	close(sv.lifeline[0]); /* the write end stays ours alone, until we die */
	close(sv.log_pipe[1]);
	close(devnull);
	sv.w_signal.fd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sv.w_signal.fd < 0)
		fatal("signalfd");
	watch(&sv.w_signal, sv.w_signal.fd, on_signal);
	watch(&sv.w_efd, sv.efd[0], on_efd);
	watch(&sv.w_control, sv.control_fd, on_control);
	watch(&sv.w_log, sv.log_pipe[0], on_log);

	if (send_policy(sv.policy, true) < 0)
		fatalx(EXIT_RUNTIME, "cannot hand the policy to the proxy");
	guest_on_violation(sv.guest, guest_port_violation);
	if (guest_start(sv.guest, &sv.loop, &sv.region, sv.efd[1], sv.efd[2]) < 0)
		fatalx(EXIT_RUNTIME, "cannot start the guest port");
	if (sv.o.command)
		start_command();
}

/* 5. Until a signal, the command's exit or a violation (which exits itself). */
static void main_loop(void)
{
	while (!sv.loop.stop) {
		int timeout = metrics_tick(sv.metrics), deadline = control_deadline_ms();
		int api = api_timeout_ms(sv.api);

		if (deadline >= 0 && (timeout < 0 || deadline < timeout))
			timeout = deadline;
		if (api >= 0 && (timeout < 0 || api < timeout))
			timeout = api;
		if (loop_run_once(&sv.loop, timeout) < 0)
			fatal("epoll_wait");
		check_mailboxes();
	}
}

/*
 * A clean stop, or the end of a stream-fd VMM that broke its framing.
 * Return: the exit status, 0 or EXIT_RUNTIME.
 */
static int clean_stop(void)
{
	int status = guest_failed(sv.guest) ? EXIT_RUNTIME : 0;

	sv.stopping = true;
	proc_stop(&sv.cmd, PROC_STOP_GRACE_MS);
	stop_children();
	hook_fini(&sv.hook);
	api_stop(sv.api);
	/* Pass on what the netstack sent last (the RSTs of open connections). */
	guest_flush(sv.guest);
	guest_close(sv.guest);
	metrics_final(sv.metrics);
	events_stop(status);
	events_close();
	channel_out_fini(&sv.control_out);
	policy_free(sv.policy);
	return status;
}

/**
 * run_main() - `moat run`
 * @argc:	arguments after "moat"
 * @argv:	argv[0] is "run"
 *
 * Return: exit status (0, 1, 2; 3 exits from violation()).
 */
int run_main(int argc, char **argv)
{
	struct moat_shm_header proto = { 0 };
	sigset_t mask;
	int sp[2], rc;

	memset(&sv, 0, sizeof(sv));
	sv.vm_pidfd = -1;
	proc_init(&sv.cmd);
	for (int i = 0; i < CHILD_COUNT; i++)
		proc_init(&sv.child[i]);
	parse_options(&sv.o, argc, argv);
	log_init("moat", sv.o.log_level);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);

	clock_gettime(CLOCK_MONOTONIC, &sv.started);
	rc = check_and_open(&proto);
	if (!rc)
		rc = create_region_and_channels(&proto, sp, &mask);
	if (!rc)
		rc = start_api();
	if (rc)
		return rc;
	start_processes(sp, &mask);

	/* 4. Nothing privileged is left to do. */
	confine_supervisor();
	log_info("running netstack=%d proxy=%d mtu=%u guest=%u.%u.%u.%u gateway=%u.%u.%u.%u "
		 "user=%s",
		 (int)sv.child[0].pid, (int)sv.child[1].pid, sv.o.mtu, proto.guest_ip4[0],
		 proto.guest_ip4[1], proto.guest_ip4[2], proto.guest_ip4[3], proto.gateway_ip4[0],
		 proto.gateway_ip4[1], proto.gateway_ip4[2], proto.gateway_ip4[3], sv.user.name);
	if (sv.child[CHILD_TLS].pid > 0)
		log_info("moat-tls=%d intercepts TLS for the policy's names",
			 (int)sv.child[CHILD_TLS].pid);
	if (sv.child[CHILD_VHOST].pid > 0)
		log_info("moat-vhost=%d serves the vhost-user socket %s",
			 (int)sv.child[CHILD_VHOST].pid, sv.o.guest.path);
	events_start((int)sv.child[0].pid, (int)sv.child[1].pid);
	if (sv.o.ready_fd >= 0) {
		dprintf(sv.o.ready_fd, "ready\n");
		close(sv.o.ready_fd);
	}
	main_loop();
	return clean_stop();
}
