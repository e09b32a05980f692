/* SPDX-License-Identifier: MIT */
/*
 * run.c - `moat run`: the supervisor process
 *
 * Theory of Operation
 * -------------------
 * The parent of everything. In order:
 *   1. parse the command line and the policy; any error exits 2 before
 *      anything is forked (fail closed, say what to fix);
 *   2. open the guest port (a tap may need privileges we drop later);
 *   3. create the shared region and four eventfds, a control socketpair for
 *      the proxy, and re-execute /proc/self/exe twice as the netstack and
 *      the proxy with those at the fixed numbers of common/fds.h;
 *   4. start the command after `--` in its own process group, if any;
 *   5. drop capabilities we no longer need (we keep CAP_KILL for the hook);
 *   6. run the loop: guest port I/O, mailboxes, signals, child exits.
 *
 * Child death is fatal (DESIGN §1): a pidfd per child wakes the loop; an
 * exit we did not ask for is a MOAT_VIOL_CHILD_EXIT violation. A violation,
 * from a mailbox or a child's death, runs the termination hook: an event,
 * SIGKILL to the VM (pidfd for --vm-pid, the process group of the `--`
 * command), --on-violation, stop the children, exit 3. SIGTERM and SIGINT
 * stop everything cleanly with 0; SIGHUP reloads the policy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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
#include "policy/policy.h"
#include "shm/control.h"
#include "shm/mailbox.h"
#include "shm/region.h"
#include "supervisor/events.h"
#include "supervisor/guest.h"
#include "supervisor/loop.h"
#include "supervisor/metrics.h"
#include "supervisor/run.h"

#define EXIT_RUNTIME	1
#define EXIT_USAGE	2
#define EXIT_VIOLATION	3
#define MAX_PUBLISH	32

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
	unsigned max_connections, max_udp_flows, connect_timeout_ms;
	const char *metrics_addr, *metrics_file, *events_path, *pcap_path, *on_violation;
	int ready_fd;
	int anti_spoof;
	int log_level;
	bool test_trigger;
};

enum child_role { CHILD_NETSTACK, CHILD_PROXY, CHILD_COUNT };
static const char *const child_name[CHILD_COUNT] = { "moat-netstack", "moat-proxy" };

struct supervisor {
	struct run_opts o;
	struct region region;
	struct policy *policy;
	struct policy_env env;
	int efd[4];			/* supervisor, guest, netstack, proxy */
	int control_fd;			/* our end of the proxy's control socket */
	pid_t child_pid[CHILD_COUNT];
	int child_pidfd[CHILD_COUNT];
	bool child_gone[CHILD_COUNT];
	int vm_pidfd;			/* --vm-pid */
	pid_t cmd_pid;			/* `--` command (its own process group) */
	int cmd_pidfd;
	int cmd_status;
	uint32_t mbox_seq[2];
	uint64_t generation;
	bool stopping;
	int exit_status;
	struct loop loop;
	struct loop_watch w_signal, w_efd, w_child[CHILD_COUNT], w_cmd, w_control;
	struct guest *guest;
	struct metrics *metrics;
};

static struct supervisor sv;
static struct events_reader control_rd;	/* the proxy's events, reassembled */

static const char run_usage[] =
	"usage: moat run --guest SPEC [--policy FILE] [--vm-pid PID | -- COMMAND...]\n"
	"                [--mtu N] [--subnet CIDR] [--publish [HOSTIP:]HOSTPORT:GUESTPORT[/udp]]...\n"
	"                [--max-connections N] [--max-udp-flows N] [--connect-timeout MS]\n"
	"                [--metrics ADDR] [--metrics-file PATH] [--events PATH|-] [--pcap PATH]\n"
	"                [--ready-fd N] [--on-violation PROGRAM] [--anti-spoof off|drop|terminate]\n"
	"                [--log-level error|warn|info|debug]\n"
	"\n"
	"  --guest SPEC       tap:IFNAME[@NETNS_PATH] | tap-fd:N | stream:PATH | stream-fd:N |\n"
	"                     dgram:PATH | dgram-fd:N | shm:PATH\n"
	"  --policy FILE      JSON policy (default: public internet and DNS only)\n"
	"  --vm-pid PID       the process killed on a fatal violation\n"
	"  -- COMMAND...      run COMMAND in its own process group; it is the VM\n"
	"  --mtu N            IP MTU toward the guest, 576..65520 (default 1500)\n"
	"  --subnet CIDR      guest network (default 10.0.2.0/24: guest .15, gateway .2, DNS .3)\n"
	"  --publish SPEC     forward a host port to a guest port\n"
	"  --max-connections N, --max-udp-flows N, --connect-timeout MS\n"
	"  --metrics ADDR     serve Prometheus metrics at HOST:PORT or unix:PATH\n"
	"  --metrics-file P   rewrite the metrics to P every few seconds\n"
	"  --events PATH|-    JSON lines: denials, violations, exits, reloads\n"
	"  --pcap PATH        record every guest frame\n"
	"  --ready-fd N       write one line to fd N once the guest port is up\n"
	"  --on-violation P   run P (with MOAT_VIOLATION_* set) after killing the VM\n"
	"  --anti-spoof MODE  spoofed guest sources: off, drop (default) or terminate\n"
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

static void set_host_addr(struct publish_opt *p, const char *addr, const char *spec)
{
	size_t n = strlen(addr);

	if (n == 0 || n >= sizeof(p->host_addr))
		usage_error("--publish: bad address in '%s'", spec);
	memcpy(p->host_addr, addr, n + 1);
}

static void parse_publish(struct run_opts *o, const char *s)
{
	struct publish_opt *p;
	char buf[128], *proto, *parts[3];
	int n = 0;

	if (o->n_publish == MAX_PUBLISH)
		usage_error("--publish: at most %d", MAX_PUBLISH);
	p = &o->publish[o->n_publish++];
	snprintf(buf, sizeof(buf), "%s", s);
	proto = strchr(buf, '/');
	if (proto) {
		*proto++ = '\0';
		if (!strcmp(proto, "udp"))
			p->udp = true;
		else if (strcmp(proto, "tcp"))
			usage_error("--publish: protocol '%s' is not tcp or udp", proto);
	}
	/* [HOSTIP:]HOSTPORT:GUESTPORT, HOSTIP may be [v6] */
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close || close[1] != ':')
			usage_error("--publish: bad address in '%s'", s);
		*close = '\0';
		set_host_addr(p, buf + 1, s);
		parts[n++] = close + 2;
		parts[n++] = strchr(close + 2, ':');
		if (!parts[1])
			usage_error("--publish: '%s' is not [HOSTIP:]HOSTPORT:GUESTPORT", s);
		*parts[1]++ = '\0';
	} else {
		for (char *tok = strtok(buf, ":"); tok && n < 3; tok = strtok(NULL, ":"))
			parts[n++] = tok;
		if (n == 3) {
			set_host_addr(p, parts[0], s);
			parts[0] = parts[1];
			parts[1] = parts[2];
		} else if (n == 2) {
			snprintf(p->host_addr, sizeof(p->host_addr), "127.0.0.1");
		} else {
			usage_error("--publish: '%s' is not [HOSTIP:]HOSTPORT:GUESTPORT", s);
		}
	}
	p->host_port = parse_uint("--publish host port", parts[0], 1, 65535);
	p->guest_port = parse_uint("--publish guest port", parts[1], 1, 65535);
	{
		struct policy_addr a;

		if (policy_addr_parse(p->host_addr, &a) < 0)
			usage_error("--publish: '%s' is not an IP address", p->host_addr);
	}
}

static void parse_options(struct run_opts *o, int argc, char **argv)
{
	enum { O_GUEST = 256, O_POLICY, O_VMPID, O_MTU, O_SUBNET, O_PUBLISH, O_MAXCONN,
	       O_MAXUDP, O_CTIMEOUT, O_METRICS, O_METRICS_FILE, O_EVENTS, O_PCAP, O_READY,
	       O_ONVIOL, O_ANTISPOOF, O_LOGLEVEL, O_HELP, O_TEST_TRIGGER };
	static const struct option longopts[] = {
		{ "guest", required_argument, NULL, O_GUEST },
		{ "policy", required_argument, NULL, O_POLICY },
		{ "vm-pid", required_argument, NULL, O_VMPID },
		{ "mtu", required_argument, NULL, O_MTU },
		{ "subnet", required_argument, NULL, O_SUBNET },
		{ "publish", required_argument, NULL, O_PUBLISH },
		{ "max-connections", required_argument, NULL, O_MAXCONN },
		{ "max-udp-flows", required_argument, NULL, O_MAXUDP },
		{ "connect-timeout", required_argument, NULL, O_CTIMEOUT },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "metrics-file", required_argument, NULL, O_METRICS_FILE },
		{ "events", required_argument, NULL, O_EVENTS },
		{ "pcap", required_argument, NULL, O_PCAP },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "on-violation", required_argument, NULL, O_ONVIOL },
		{ "anti-spoof", required_argument, NULL, O_ANTISPOOF },
		{ "log-level", required_argument, NULL, O_LOGLEVEL },
		{ "help", no_argument, NULL, O_HELP },
#ifdef MOAT_TEST_TRIGGERS
		{ "test-trigger-seccomp", no_argument, NULL, O_TEST_TRIGGER },
#endif
		{ NULL, 0, NULL, 0 }
	};
	char err[256];
	bool have_guest = false;
	int c;

	o->mtu = 1500;
	o->subnet[0] = 10, o->subnet[1] = 0, o->subnet[2] = 2, o->subnet[3] = 0;
	o->prefix = 24;
	o->max_connections = 1024;
	o->max_udp_flows = 256;
	o->connect_timeout_ms = 10000;
	o->ready_fd = -1;
	o->anti_spoof = 1;
	o->log_level = LOG_LVL_INFO;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (c) {
		case O_GUEST:
			if (guest_spec_parse(optarg, &o->guest, err, sizeof(err)) < 0)
				usage_error("--guest: %s", err);
			have_guest = true;
			break;
		case O_POLICY: o->policy_path = optarg; break;
		case O_VMPID: o->vm_pid = (pid_t)parse_uint("--vm-pid", optarg, 1, INT_MAX); break;
		case O_MTU: o->mtu = parse_uint("--mtu", optarg, 576, 65520); break;
		case O_SUBNET: parse_subnet(o, optarg); break;
		case O_PUBLISH: parse_publish(o, optarg); break;
		case O_MAXCONN: o->max_connections = parse_uint("--max-connections", optarg, 1, 65536); break;
		case O_MAXUDP: o->max_udp_flows = parse_uint("--max-udp-flows", optarg, 1, 65536); break;
		case O_CTIMEOUT: o->connect_timeout_ms = parse_uint("--connect-timeout", optarg, 10, 600000); break;
		case O_METRICS: o->metrics_addr = optarg; break;
		case O_METRICS_FILE: o->metrics_file = optarg; break;
		case O_EVENTS: o->events_path = optarg; break;
		case O_PCAP: o->pcap_path = optarg; break;
		case O_READY: o->ready_fd = (int)parse_uint("--ready-fd", optarg, 0, INT_MAX); break;
		case O_ONVIOL: o->on_violation = optarg; break;
		case O_ANTISPOOF:
			if (!strcmp(optarg, "off"))
				o->anti_spoof = 0;
			else if (!strcmp(optarg, "drop"))
				o->anti_spoof = 1;
			else if (!strcmp(optarg, "terminate"))
				o->anti_spoof = 2;
			else
				usage_error("--anti-spoof: '%s' is not off, drop or terminate", optarg);
			break;
		case O_LOGLEVEL:
			o->log_level = log_level_parse(optarg);
			if (o->log_level < 0)
				usage_error("--log-level: '%s' is not error, warn, info or debug", optarg);
			break;
		case O_HELP:
		case 'h':
			fputs(run_usage, stdout);
			exit(0);
		case O_TEST_TRIGGER: o->test_trigger = true; break;
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--"))
			usage_error("unexpected argument '%s' (a command goes after --)", argv[optind]);
		o->command = &argv[optind];
	}
	if (!have_guest)
		usage_error("--guest is required, e.g. --guest tap:tap0@/run/netns/guest");
	if (o->vm_pid && o->command)
		usage_error("--vm-pid and -- COMMAND exclude each other");
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

/* Re-execute ourselves as @role with the region and channels at fixed fds. */
static pid_t spawn_child(enum child_role role, int control_child_fd)
{
	int map[][2] = {
		{ sv.region.fd, FD_REGION },
		{ sv.efd[0], FD_EFD_SUPERVISOR },
		{ sv.efd[1], FD_EFD_GUEST },
		{ sv.efd[2], FD_EFD_NETSTACK },
		{ sv.efd[3], FD_EFD_PROXY },
		{ control_child_fd, FD_CONTROL },
	};
	int nmap = role == CHILD_PROXY ? 6 : 5;
	pid_t pid = fork();

	if (pid < 0)
		fatal("fork");
	if (pid > 0)
		return pid;

	/* Child. Move each fd above the fixed range first, then into place. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (int i = 0; i < nmap; i++) {
		int tmp = fcntl(map[i][0], F_DUPFD, 64);

		if (tmp < 0)
			_exit(127);
		map[i][0] = tmp;
	}
	for (int i = 0; i < nmap; i++)
		if (dup2(map[i][0], map[i][1]) < 0)
			_exit(127);
	{
		char *argv[] = { (char *)child_name[role],
				 role == CHILD_NETSTACK ? "__netstack" : "__proxy", NULL };

		execv("/proc/self/exe", argv);
	}
	_exit(127);
}

static void send_control(const char *json)
{
	uint32_t len = (uint32_t)strlen(json);
	struct iovec iov[2] = { { &len, sizeof(len) }, { (void *)json, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t want = sizeof(len) + len;

	while (want) {
		ssize_t n = sendmsg(sv.control_fd, &mh, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("cannot send configuration to the proxy: %s", strerror(errno));
			return;
		}
		want -= (size_t)n;
		while (n > 0 && mh.msg_iovlen) {
			size_t k = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;

			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
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
		char *pct = strchr(ns, '%');	/* scoped v6: drop the scope */

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

static void send_policy(bool initial)
{
	char *pol = policy_to_json(sv.policy);
	json_t *doc = json_object(), *polj;
	json_error_t jerr;
	char *text;

	polj = pol ? json_loads(pol, 0, &jerr) : NULL;
	free(pol);
	if (!polj)
		fatalx(EXIT_RUNTIME, "cannot serialize the policy");
	json_object_set_new(doc, "policy", polj);
	json_object_set_new(doc, "generation", json_integer((json_int_t)++sv.generation));
	if (initial) {
		json_t *pubs = json_array();

		json_object_set_new(doc, "nameservers", host_nameservers());
		for (int i = 0; i < sv.o.n_publish; i++) {
			const struct publish_opt *p = &sv.o.publish[i];

			json_array_append_new(pubs, json_pack("{s:s,s:i,s:i,s:s}",
				"host_address", p->host_addr, "host_port", (int)p->host_port,
				"guest_port", (int)p->guest_port, "protocol", p->udp ? "udp" : "tcp"));
		}
		json_object_set_new(doc, "publish", pubs);
	}
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text)
		fatalx(EXIT_RUNTIME, "cannot serialize the proxy configuration");
	send_control(text);
	free(text);
}

static void stop_children(void)
{
	for (int i = 0; i < CHILD_COUNT; i++)
		if (!sv.child_gone[i] && sv.child_pidfd[i] >= 0)
			syscall(SYS_pidfd_send_signal, sv.child_pidfd[i], SIGTERM, NULL, 0);
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct pollfd pfd = { .fd = sv.child_pidfd[i], .events = POLLIN };

		if (sv.child_gone[i] || sv.child_pidfd[i] < 0)
			continue;
		if (poll(&pfd, 1, 1000) <= 0)
			syscall(SYS_pidfd_send_signal, sv.child_pidfd[i], SIGKILL, NULL, 0);
		waitpid(sv.child_pid[i], NULL, 0);
		sv.child_gone[i] = true;
	}
}

static void kill_vm(void)
{
	if (sv.vm_pidfd >= 0) {
		if (syscall(SYS_pidfd_send_signal, sv.vm_pidfd, SIGKILL, NULL, 0) < 0)
			log_error("cannot kill the VM (pid %d): %s", (int)sv.o.vm_pid, strerror(errno));
	} else if (sv.cmd_pid > 0) {
		if (kill(-sv.cmd_pid, SIGKILL) < 0 && errno != ESRCH)
			log_error("cannot kill the command's process group %d: %s", (int)sv.cmd_pid,
				  strerror(errno));
	}
}

static const char *const viol_name[MOAT_VIOL_COUNT] = {
	"none", "policy_terminate", "limit", "spoof", "ring_corrupt", "bad_message", "child_exit"
};

static void run_on_violation(const struct moat_mailbox *m, const char *who)
{
	char rule[16], flow[16], vm[16], dst[80] = "";
	pid_t pid;

	if (!sv.o.on_violation)
		return;
	snprintf(rule, sizeof(rule), "%d", (int)m->rule);
	snprintf(flow, sizeof(flow), "%u", m->flow);
	snprintf(vm, sizeof(vm), "%d", sv.o.vm_pid ? (int)sv.o.vm_pid : (int)sv.cmd_pid);
	if (m->dst_family == 4 || m->dst_family == 6) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(m->dst_family == 4 ? AF_INET : AF_INET6, m->dst_addr, a, sizeof(a));
		snprintf(dst, sizeof(dst), m->dst_family == 4 ? "%s:%u" : "[%s]:%u", a, m->dst_port);
	}
	pid = fork();
	if (pid == 0) {
		setenv("MOAT_VIOLATION_REASON", viol_name[m->reason], 1);
		setenv("MOAT_VIOLATION_RULE", rule, 1);
		setenv("MOAT_VIOLATION_FLOW", flow, 1);
		setenv("MOAT_VIOLATION_DETAIL", m->detail, 1);
		setenv("MOAT_VIOLATION_DESTINATION", dst, 1);
		setenv("MOAT_VIOLATION_PROCESS", who, 1);
		setenv("MOAT_VIOLATION_VM_PID", vm, 1);
		execl("/bin/sh", "sh", "-c", sv.o.on_violation, (char *)NULL);
		_exit(127);
	}
	if (pid > 0) {
		/* Bounded: the hook must not keep a dead sandbox's supervisor alive. */
		for (int i = 0; i < 500; i++) {
			if (waitpid(pid, NULL, WNOHANG) == pid)
				return;
			usleep(10000);
		}
		log_warn("--on-violation program still running after 5 s; not waiting");
	}
}

/**
 * violation() - the termination hook (DESIGN §9)
 * @m:		what happened (copied out of a mailbox, or made up here)
 * @who:	reporting process
 */
static void __attribute__((noreturn)) violation(const struct moat_mailbox *m, const char *who)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill_vm();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	events_violation(viol_name[m->reason < MOAT_VIOL_COUNT ? m->reason : 0], who, m,
			 (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
	log_error("fatal violation: reason=%s process=%s rule=%d flow=%u detail=\"%s\"; VM killed",
		  viol_name[m->reason < MOAT_VIOL_COUNT ? m->reason : 0], who, (int)m->rule, m->flow,
		  m->detail);
	sv.stopping = true;
	run_on_violation(m, who);
	stop_children();
	metrics_final(sv.metrics);
	events_close();
	exit(EXIT_VIOLATION);
}

/* The guest port found s2g corrupt: the netstack is not to be trusted. */
static void guest_port_violation(const char *detail)
{
	struct moat_mailbox m = { .reason = MOAT_VIOL_RING_CORRUPT, .rule = -1 };

	snprintf(m.detail, sizeof(m.detail), "%s", detail);
	violation(&m, "moat");
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
	struct moat_mailbox m = { .reason = MOAT_VIOL_CHILD_EXIT, .rule = -1 };
	siginfo_t si = { 0 };

	(void)events;
	if (waitid(P_PIDFD, (id_t)w->fd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	sv.child_gone[role] = true;
	loop_del(&sv.loop, w);
	/* A child's mailbox report comes first: it says why it is dying. */
	check_mailboxes();
	if (sv.stopping)
		return;
	if (si.si_code == CLD_EXITED)
		snprintf(m.detail, sizeof(m.detail), "%s exited with status %d", child_name[role],
			 si.si_status);
	else
		snprintf(m.detail, sizeof(m.detail), "%s killed by signal %d%s", child_name[role],
			 si.si_status, si.si_status == SIGSYS ? " (seccomp)" : "");
	events_child_exit(child_name[role], si.si_code == CLD_EXITED ? si.si_status : -1,
			  si.si_code == CLD_EXITED ? 0 : si.si_status);
	violation(&m, "moat");
}

/* The proxy's events (length-prefixed JSON) on the control socket. */
static void on_control(struct loop_watch *w, uint32_t events)
{
	struct moat_mailbox m = { .reason = MOAT_VIOL_BAD_MESSAGE, .rule = -1 };
	int rc;

	(void)events;
	rc = events_reader_input(&control_rd, w->fd, m.detail, sizeof(m.detail));
	if (rc == -EPROTO)
		violation(&m, child_name[CHILD_PROXY]);
	if (rc < 0)
		log_warn("control socket: %s", strerror(-rc));
	if (rc <= 0)
		loop_del(&sv.loop, w);	/* the proxy's pidfd tells why it went */
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
	policy_free(sv.policy);
	sv.policy = np;
	send_policy(false);
	log_info("policy reloaded from %s generation=%llu", sv.o.policy_path,
		 (unsigned long long)sv.generation);
	events_reload(sv.o.policy_path, true, NULL);
}

static void on_cmd_exit(struct loop_watch *w, uint32_t events)
{
	siginfo_t si = { 0 };

	(void)events;
	if (waitid(P_PIDFD, (id_t)w->fd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	loop_del(&sv.loop, w);
	log_info("command exited (%s %d); stopping", si.si_code == CLD_EXITED ? "status" : "signal",
		 si.si_status);
	sv.cmd_pid = 0;
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
		case SIGCHLD:
			/* Children are watched through pidfds; reap hook leftovers. */
			while (waitpid(-1, NULL, WNOHANG) > 0) {
			}
			break;
		}
	}
}

static void start_command(void)
{
	pid_t pid = fork();

	if (pid < 0)
		fatal("fork");
	if (pid == 0) {
		sigset_t none;

		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(sv.o.command[0], sv.o.command);
		fprintf(stderr, "moat: cannot run %s: %s\n", sv.o.command[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	sv.cmd_pid = pid;
	sv.cmd_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (sv.cmd_pidfd < 0)
		fatal("pidfd_open(command)");
	sv.w_cmd = (struct loop_watch){ .fd = sv.cmd_pidfd, .cb = on_cmd_exit };
	loop_add(&sv.loop, &sv.w_cmd, EPOLLIN);
}

/* Keep only CAP_KILL (to kill a VM owned by another user) once set up. */
static void drop_supervisor_privileges(void)
{
	if (geteuid() != 0)
		return;
	capng_clear(CAPNG_SELECT_BOTH);
	capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_KILL);
	if (capng_apply(CAPNG_SELECT_BOTH) < 0)
		log_warn("cannot drop the supervisor's capabilities");
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
	/* 1 MiB rings: room for 16 frames of MTU 65520 or ~700 of 1500, and they stay
	 * in cache (8 MiB rings measured 10-16% slower at MTU 65520, bench/). */
	struct region_config rc = { .frame_ring_bytes = 1u << 20, .flow_ring_bytes = 1u << 20 };
	char err[512];
	int sp[2];
	sigset_t mask;

	memset(&sv, 0, sizeof(sv));
	sv.vm_pidfd = sv.cmd_pidfd = -1;
	sv.child_pidfd[0] = sv.child_pidfd[1] = -1;
	parse_options(&sv.o, argc, argv);
	log_init("moat", sv.o.log_level);

	fill_addresses(&proto, &sv.o);
	make_env(&sv.env, &proto);
	if (sv.o.policy_path) {
		if (policy_load_file(sv.o.policy_path, &sv.env, &sv.policy, err, sizeof(err)) < 0) {
			fprintf(stderr, "moat: %s\n", err);
			return EXIT_USAGE;
		}
	} else {
		sv.policy = policy_default(&sv.env);
		if (!sv.policy)
			fatalx(EXIT_RUNTIME, "cannot build the default policy");
	}
	if (sv.o.vm_pid) {
		sv.vm_pidfd = (int)syscall(SYS_pidfd_open, sv.o.vm_pid, 0);
		if (sv.vm_pidfd < 0) {
			fprintf(stderr, "moat: --vm-pid %d: %s\n", (int)sv.o.vm_pid, strerror(errno));
			return EXIT_USAGE;
		}
	}
	sv.guest = guest_open(&sv.o.guest, err, sizeof(err));
	if (!sv.guest) {
		fprintf(stderr, "moat: --guest: %s\n", err);
		return EXIT_USAGE;
	}
	if (events_open(sv.o.events_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat: --events: %s\n", err);
		return EXIT_USAGE;
	}

	proto.mtu = sv.o.mtu;
	proto.anti_spoof = (uint8_t)sv.o.anti_spoof;
	proto.log_level = (uint8_t)sv.o.log_level;
	proto.max_tcp_connections = sv.o.max_connections;
	proto.max_udp_flows = sv.o.max_udp_flows;
	proto.connect_timeout_ms = sv.o.connect_timeout_ms;
	proto.tcp_idle_timeout_s = 7200;
	proto.udp_idle_timeout_s = 60;
	if (sv.o.test_trigger)
		proto.flags |= MOAT_HDR_F_TEST_TRIGGERS;
	/* The policy's limits (connections, flows) are enforced by the proxy, so a
	 * limit can refuse or terminate and a reload can change it; the tables
	 * themselves are sized by the command line only. */
	int rcode = region_create(&rc, &proto, &sv.region);

	if (rcode < 0) {
		errno = -rcode;
		fatal("cannot create the shared region");
	}
	for (int i = 0; i < 4; i++) {
		sv.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sv.efd[i] < 0)
			fatal("eventfd");
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		fatal("socketpair");
	sv.control_fd = sp[0];

	/* Signals through a signalfd; children start with an empty mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	signal(SIGPIPE, SIG_IGN);

	if (loop_init(&sv.loop) < 0)
		fatal("epoll");
	for (int i = 0; i < CHILD_COUNT; i++) {
		sv.child_pid[i] = spawn_child(i, sp[1]);
		sv.child_pidfd[i] = (int)syscall(SYS_pidfd_open, sv.child_pid[i], 0);
		if (sv.child_pidfd[i] < 0)
			fatal("pidfd_open");
		sv.w_child[i] = (struct loop_watch){ .fd = sv.child_pidfd[i], .cb = on_child };
		loop_add(&sv.loop, &sv.w_child[i], EPOLLIN);
	}
	close(sp[1]);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sv.w_signal.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sv.w_signal.fd < 0)
		fatal("signalfd");
	sv.w_signal.cb = on_signal;
	loop_add(&sv.loop, &sv.w_signal, EPOLLIN);
	sv.w_efd = (struct loop_watch){ .fd = sv.efd[0], .cb = on_efd };
	loop_add(&sv.loop, &sv.w_efd, EPOLLIN);
	sv.w_control = (struct loop_watch){ .fd = sv.control_fd, .cb = on_control };
	loop_add(&sv.loop, &sv.w_control, EPOLLIN);

	send_policy(true);
	guest_on_violation(sv.guest, guest_port_violation);
	if (guest_start(sv.guest, &sv.loop, &sv.region, sv.efd[1], sv.efd[2], sv.o.pcap_path) < 0)
		fatalx(EXIT_RUNTIME, "cannot start the guest port");
	if (metrics_start(&sv.metrics, sv.o.metrics_addr, sv.o.metrics_file, &sv.region, err,
			  sizeof(err)) < 0) {
		fprintf(stderr, "moat: --metrics: %s\n", err);
		stop_children();
		return EXIT_USAGE;
	}
	if (sv.o.command)
		start_command();
	drop_supervisor_privileges();
	log_info("running netstack=%d proxy=%d mtu=%u guest=%u.%u.%u.%u gateway=%u.%u.%u.%u",
		 (int)sv.child_pid[0], (int)sv.child_pid[1], sv.o.mtu,
		 proto.guest_ip4[0], proto.guest_ip4[1], proto.guest_ip4[2], proto.guest_ip4[3],
		 proto.gateway_ip4[0], proto.gateway_ip4[1], proto.gateway_ip4[2], proto.gateway_ip4[3]);
	events_start((int)sv.child_pid[0], (int)sv.child_pid[1]);
	if (sv.o.ready_fd >= 0) {
		dprintf(sv.o.ready_fd, "ready\n");
		close(sv.o.ready_fd);
	}

	while (!sv.loop.stop) {
		int n = loop_run_once(&sv.loop, metrics_tick(sv.metrics));

		if (n < 0)
			fatal("epoll_wait");
		check_mailboxes();
	}

	/* Clean stop. */
	sv.stopping = true;
	if (sv.cmd_pid > 0) {
		kill(-sv.cmd_pid, SIGTERM);
		waitpid(sv.cmd_pid, NULL, 0);
	}
	stop_children();
	/* Pass on what the netstack sent last (the RSTs of open connections). */
	guest_flush(sv.guest);
	guest_close(sv.guest);
	metrics_final(sv.metrics);
	events_stop(0);
	events_close();
	policy_free(sv.policy);
	return 0;
}
