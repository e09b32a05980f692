/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - `moat ctl`: the control API's client
 *
 * Theory of Operation
 * -------------------
 * One HTTP/1.1 request per run over the unix socket `moat run --api PATH`
 * serves (docs/api.md), with "Connection: close", so the answer is read to
 * the end of the stream: a status line, headers, and a JSON body. The body
 * is printed for people (default) or as it came (--json). Exit status: 0
 * for a 2xx answer, 1 for an error the API gave (its "error" on stderr),
 * 2 for a usage error or no answer at all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "policy/policy.h"
#include "supervisor/api.h"
#include "supervisor/ctl.h"

#define CTL_REPLY_MAX (4u << 20)

static const char ctl_usage[] =
	"usage: moat ctl [--json] PATH status\n"
	"       moat ctl [--json] PATH flows [tcp|udp]\n"
	"       moat ctl [--json] PATH publish [add [HOSTIP:]HOSTPORT:GUESTPORT[/udp]\n"
	"                                      | del [HOSTIP:]HOSTPORT[/udp]]\n"
	"       moat ctl [--json] PATH policy [FILE|-]\n"
	"  status         pids, uptime, the guest, counts\n"
	"  flows          the open TCP connections and UDP flows\n"
	"  publish        the published ports; add or delete one\n"
	"  policy         the policy in force and its generation\n"
	"  policy FILE    put FILE (- for stdin) in force, as SIGHUP would\n";

struct ctl_reply {
	int status;
	json_t *body;
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read the whole answer into a NUL-terminated buffer. Return: its length or -1. */
static ssize_t read_all(int fd, char **out)
{
	size_t len = 0, cap = 8192;
	char *buf = malloc(cap + 1);

	if (!buf)
		return -1;
	for (;;) {
		ssize_t r;

		if (len == cap) {
			char *nb;

			if (cap >= CTL_REPLY_MAX)
				break;
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (!nb)
				break;
			buf = nb;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	*out = buf;
	return (ssize_t)len;
}

/* One request. Return: 0 with @rep filled, or -1 with the reason on stderr. */
static int request(const char *path, const char *method, const char *url, const char *body,
		   size_t blen, struct ctl_reply *rep)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char head[256], *resp = NULL, *p;
	json_error_t jerr;
	char *end;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "moat ctl: %s: path too long\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "moat ctl: %s: %s (is moat running with --api %s?)\n", path,
			strerror(errno), path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	snprintf(head, sizeof(head),
		 "%s %s HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 method, url, blen);
	if (write_all(fd, head, strlen(head)) < 0 || (blen && write_all(fd, body, blen) < 0) ||
	    read_all(fd, &resp) < 0) {
		fprintf(stderr, "moat ctl: %s: %s\n", path, strerror(errno));
		close(fd);
		free(resp);
		return -1;
	}
	close(fd);
	p = strstr(resp, "\r\n\r\n");
	rep->status = strncmp(resp, "HTTP/1.", 7) || !strchr(resp, ' ') ?
			      0 :
			      (int)strtol(strchr(resp, ' ') + 1, &end, 10);
	if (rep->status < 100 || rep->status > 599 || !p) {
		fprintf(stderr, "moat ctl: %s: not an HTTP answer\n", path);
		free(resp);
		return -1;
	}
	rep->body = json_loads(p + 4, 0, &jerr);
	free(resp);
	if (!rep->body) {
		fprintf(stderr, "moat ctl: %s: the answer is not JSON: %s\n", path, jerr.text);
		return -1;
	}
	return 0;
}

static json_int_t num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void print_status(const json_t *s)
{
	const json_t *g = json_object_get(s, "guest"), *c = json_object_get(s, "counts");

	printf("moat %s, up %lld s, pid %lld (netstack %lld, proxy %lld)\n",
	       json_string_value(json_object_get(s, "version")), (long long)num(s, "uptime_s"),
	       (long long)num(s, "pid"), (long long)num(s, "netstack_pid"),
	       (long long)num(s, "proxy_pid"));
	printf("guest %s/%lld via %s, mtu %lld, frontend %s, mac %s\n",
	       json_string_value(json_object_get(g, "address")), (long long)num(g, "prefix"),
	       json_string_value(json_object_get(g, "gateway")), (long long)num(g, "mtu"),
	       json_string_value(json_object_get(g, "frontend")),
	       json_is_string(json_object_get(g, "mac")) ?
		       json_string_value(json_object_get(g, "mac")) :
		       "(not seen yet)");
	printf("policy generation %lld\n", (long long)num(s, "policy_generation"));
	printf("tcp connections %lld, udp flows %lld\n",
	       (long long)num(c, "tcp_connections_active"), (long long)num(c, "udp_flows_active"));
	printf("guest frames out %lld, in %lld; upstream bytes out %lld, in %lld\n",
	       (long long)num(c, "guest_tx_frames"), (long long)num(c, "guest_rx_frames"),
	       (long long)num(c, "upstream_tx_bytes"), (long long)num(c, "upstream_rx_bytes"));
}

static void print_flows(const json_t *flows)
{
	const json_t *f;
	size_t i;

	printf("%-5s %-8s %-26s %-26s %-11s %5s %10s %10s %6s\n", "PROTO", "DIR", "SRC", "DST",
	       "STATE", "RULE", "TX", "RX", "AGE");
	json_array_foreach(flows, i, f)
	{
		char src[64], dst[64], rule[16] = "-";
		const json_t *r = json_object_get(f, "rule");

		snprintf(src, sizeof(src), "%s:%lld", json_string_value(json_object_get(f, "src")),
			 (long long)num(f, "sport"));
		snprintf(dst, sizeof(dst), "%s:%lld", json_string_value(json_object_get(f, "dst")),
			 (long long)num(f, "dport"));
		if (json_is_integer(r))
			snprintf(rule, sizeof(rule), "%lld", (long long)json_integer_value(r));
		printf("%-5s %-8s %-26s %-26s %-11s %5s %10lld %10lld %5llds\n",
		       json_string_value(json_object_get(f, "protocol")),
		       json_string_value(json_object_get(f, "direction")), src, dst,
		       json_string_value(json_object_get(f, "state")), rule,
		       (long long)num(f, "tx_bytes"), (long long)num(f, "rx_bytes"),
		       (long long)num(f, "age_s"));
	}
}

static void print_publish(const json_t *list)
{
	const json_t *p;
	size_t i;

	printf("%-5s %-28s %s\n", "PROTO", "HOST", "GUEST PORT");
	json_array_foreach(list, i, p)
	{
		char host[64];

		snprintf(host, sizeof(host), "%s:%lld",
			 json_string_value(json_object_get(p, "host_address")),
			 (long long)num(p, "host_port"));
		printf("%-5s %-28s %lld\n", json_string_value(json_object_get(p, "protocol")), host,
		       (long long)num(p, "guest_port"));
	}
}

/*
 * "[HOSTIP:]HOSTPORT:GUESTPORT[/udp]" (add) or "[HOSTIP:]HOSTPORT[/udp]"
 * (del), parsed as --publish parses it, as the body of POST or DELETE
 * /publish. Return: the JSON text, or NULL after a message.
 */
static char *publish_body(const char *spec, bool add)
{
	struct policy_publish pub;
	char err[160], addr[INET6_ADDRSTRLEN];
	json_t *o;
	char *text;

	if (policy_publish_parse(spec, add, &pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat ctl: publish: %s\n", err);
		return NULL;
	}
	policy_addr_format(&pub.host_addr, addr, sizeof(addr));
	o = json_pack("{s:s,s:s,s:i}", "protocol", policy_proto_name(pub.proto), "host_address",
		      addr, "host_port", (int)pub.host_port);
	if (add)
		json_object_set_new(o, "guest_port", json_integer(pub.guest_port));
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}

/* The body of `policy FILE`: the file, or stdin for "-". NULL on error. */
static char *read_policy(const char *file, size_t *len)
{
	FILE *f = strcmp(file, "-") ? fopen(file, "re") : stdin;
	char *buf = NULL;
	size_t cap = 0;

	if (!f) {
		fprintf(stderr, "moat ctl: %s: %s\n", file, strerror(errno));
		return NULL;
	}
	*len = 0;
	for (;;) {
		size_t r;

		if (*len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 65536;
			if (cap > API_BODY_MAX * 2u || !(nb = realloc(buf, cap))) {
				fprintf(stderr, "moat ctl: %s: too big\n", file);
				break;
			}
			buf = nb;
		}
		r = fread(buf + *len, 1, cap - *len, f);
		*len += r;
		if (r == 0) {
			if (f != stdin)
				fclose(f);
			return buf;
		}
	}
	if (f != stdin)
		fclose(f);
	free(buf);
	return NULL;
}

/**
 * ctl_main() - `moat ctl`
 * @argc:	arguments after "moat"
 * @argv:	argv[0] is "ctl"
 *
 * Return: exit status (0, 1 for an error answer, 2 for usage or no answer).
 */
int ctl_main(int argc, char **argv)
{
	struct ctl_reply rep = { 0 };
	const char *path, *what, *method = "GET", *url;
	bool json = false;
	char *body = NULL;
	size_t blen = 0;
	int i = 1, rc;

	if (i < argc && !strcmp(argv[i], "--json")) {
		json = true;
		i++;
	}
	if (argc - i < 2 || argc - i > 4) {
		fputs(ctl_usage, stderr);
		return 2;
	}
	path = argv[i];
	what = argv[i + 1];
	if (argc - i == 4 && strcmp(what, "publish")) {
		fputs(ctl_usage, stderr);
		return 2;
	}
	if (!strcmp(what, "status") && argc - i == 2) {
		url = "/status";
	} else if (!strcmp(what, "flows")) {
		url = "/flows";
		if (argc - i == 3) {
			if (strcmp(argv[i + 2], "tcp") && strcmp(argv[i + 2], "udp")) {
				fputs(ctl_usage, stderr);
				return 2;
			}
			url = !strcmp(argv[i + 2], "tcp") ? "/flows?protocol=tcp" :
							    "/flows?protocol=udp";
		}
	} else if (!strcmp(what, "publish")) {
		url = "/publish";
		if (argc - i == 3 ||
		    (argc - i == 4 && strcmp(argv[i + 2], "add") && strcmp(argv[i + 2], "del"))) {
			fputs(ctl_usage, stderr);
			return 2;
		}
		if (argc - i == 4) {
			bool add = !strcmp(argv[i + 2], "add");

			method = add ? "POST" : "DELETE";
			body = publish_body(argv[i + 3], add);
			if (!body)
				return 2;
			blen = strlen(body);
		}
	} else if (!strcmp(what, "policy")) {
		url = "/policy";
		if (argc - i == 3) {
			method = "POST";
			body = read_policy(argv[i + 2], &blen);
			if (!body)
				return 2;
		}
	} else {
		fputs(ctl_usage, stderr);
		return 2;
	}
	rc = request(path, method, url, body, blen, &rep);
	free(body);
	if (rc < 0)
		return 2;
	if (rep.status / 100 != 2) {
		const char *e = json_string_value(json_object_get(rep.body, "error"));

		fprintf(stderr, "moat ctl: %s %s: %d: %s\n", method, url, rep.status, e ? e : "?");
		json_decref(rep.body);
		return 1;
	}
	if (json) {
		json_dumpf(rep.body, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (!strcmp(url, "/status")) {
		print_status(rep.body);
	} else if (!strncmp(url, "/flows", 6)) {
		print_flows(rep.body);
	} else if (!strcmp(url, "/publish")) {
		print_publish(rep.body);
	} else if (!strcmp(method, "POST")) {
		printf("policy generation %lld in force\n", (long long)num(rep.body, "generation"));
	} else {
		printf("policy generation %lld:\n", (long long)num(rep.body, "generation"));
		json_dumpf(json_object_get(rep.body, "policy"), stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(rep.body);
	return 0;
}
