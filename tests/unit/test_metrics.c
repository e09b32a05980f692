/* SPDX-License-Identifier: MIT */
/*
 * test_metrics.c - the Prometheus exposition of supervisor/metrics.c
 *
 * Renders from a real region (region_create) with counters set by hand and
 * parses the text strictly: every line is "# HELP", "# TYPE" or a sample
 * `name{labels} value`; names and label names match the exposition
 * grammar; each family has one HELP and one TYPE before its samples, and
 * its samples are contiguous; counters end in _total; no series appears
 * twice. The worst case (every counter at UINT64_MAX) must fit the
 * preallocated buffer. Then the HTTP endpoint, on a free TCP port and on a
 * unix socket, is asked with a raw socket client: 200 with the same text
 * for GET /metrics, 404 elsewhere, 405 for other methods; and
 * --metrics-file is written at start and at stop with moat_up 0. When
 * promtool (Debian's prometheus package) is installed, it must accept the
 * text too.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stddef.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/region.h"
#include "supervisor/events.h"
#include "supervisor/metrics.h"

static const struct region_config cfg = {
	.frame_ring_bytes = 1u << 20,
	.flow_ring_bytes = 256u << 10,
};

static struct region reg;

static void setup(void)
{
	struct moat_shm_header proto = { .mtu = 1500 };
	int rc = region_create(&cfg, &proto, &reg);

	cr_assert_eq(rc, 0, "region_create: %s", strerror(-rc));
}

static void teardown(void)
{
	munmap(reg.part[MOAT_PART_HEADER], reg.hdr.region_size);
	close(reg.fd);
}

TestSuite(metrics, .init = setup, .fini = teardown);

/* ---- a strict parser of text format 0.0.4 -------------------------------- */

#define MAX_FAMILIES 256
#define MAX_SERIES   1024

struct parsed {
	int n_families, n_series;
	char family[MAX_FAMILIES][128];
	char type[MAX_FAMILIES][16];
	char series[MAX_SERIES][256]; /* name{labels} as written */
	double value[MAX_SERIES];
};

static bool is_name(const char *s, size_t n, bool colon_ok)
{
	if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || (colon_ok && s[0] == ':')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || (colon_ok && s[i] == ':')))
			return false;
	return true;
}

static bool is_value(const char *s)
{
	char *end;

	if (!strcmp(s, "+Inf") || !strcmp(s, "-Inf") || !strcmp(s, "NaN"))
		return true;
	if (!*s)
		return false;
	strtod(s, &end);
	return *end == '\0';
}

/* Parse @text strictly into @p; every problem is an assertion failure. */
static void parse_strict(const char *text, size_t len, struct parsed *p)
{
	char line[1024];
	const char *s = text, *end = text + len;
	int cur = -1; /* family whose samples we are in */
	bool seen_help[MAX_FAMILIES] = { 0 }, seen_samples[MAX_FAMILIES] = { 0 };
	int lineno = 0;

	memset(p, 0, sizeof(*p));
	cr_assert(len > 0, "empty exposition");
	cr_assert_eq(text[len - 1], '\n', "text does not end with a newline");
	cr_assert_eq(strlen(text), len, "NUL byte inside the text");
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = (size_t)(nl - s);

		lineno++;
		cr_assert(n > 0, "line %d is empty", lineno);
		cr_assert(n < sizeof(line), "line %d too long", lineno);
		memcpy(line, s, n);
		line[n] = '\0';
		s = nl + 1;
		if (line[0] == '#') {
			char kind[8], name[128], rest[512];
			int f;

			cr_assert(sscanf(line, "# %7s %127s %511[^\n]", kind, name, rest) == 3,
				  "line %d: bad comment '%s'", lineno, line);
			cr_assert(is_name(name, strlen(name), true), "line %d: bad name '%s'",
				  lineno, name);
			for (f = 0; f < p->n_families; f++)
				if (!strcmp(p->family[f], name))
					break;
			if (f == p->n_families) {
				cr_assert(f < MAX_FAMILIES);
				snprintf(p->family[f], sizeof(p->family[f]), "%s", name);
				p->n_families++;
			}
			cr_assert(!seen_samples[f], "line %d: %s after samples of %s", lineno, kind,
				  name);
			if (!strcmp(kind, "HELP")) {
				cr_assert(!seen_help[f], "line %d: second HELP for %s", lineno,
					  name);
				seen_help[f] = true;
			} else if (!strcmp(kind, "TYPE")) {
				cr_assert(!p->type[f][0], "line %d: second TYPE for %s", lineno,
					  name);
				cr_assert(!strcmp(rest, "counter") || !strcmp(rest, "gauge"),
					  "line %d: type '%s' (moat exports counters and gauges)",
					  lineno, rest);
				memcpy(p->type[f], rest, strlen(rest) + 1); /* checked above */
				cur = f;
			} else {
				cr_assert_fail("line %d: comment '%s' is neither HELP nor TYPE",
					       lineno, line);
			}
			continue;
		}
		/* A sample: name[{labels}] value */
		{
			size_t nl_ = strcspn(line, "{ ");
			char *q = line + nl_, *val;
			int k;

			cr_assert(is_name(line, nl_, true), "line %d: bad metric name in '%s'",
				  lineno, line);
			cr_assert(cur >= 0 && strlen(p->family[cur]) == nl_ &&
					  !strncmp(p->family[cur], line, nl_),
				  "line %d: sample '%s' outside its family (no TYPE before it, or "
				  "families interleaved)",
				  lineno, line);
			cr_assert(seen_help[cur], "line %d: family %s has no HELP", lineno,
				  p->family[cur]);
			seen_samples[cur] = true;
			if (*q == '{') {
				q++;
				for (;;) {
					size_t ln = strcspn(q, "=");

					cr_assert(is_name(q, ln, false) && strncmp(q, "__", 2),
						  "line %d: bad label name in '%s'", lineno, line);
					q += ln;
					cr_assert(q[0] == '=' && q[1] == '"', "line %d: '%s'",
						  lineno, line);
					q += 2;
					while (*q && *q != '"') {
						if (*q == '\\') {
							cr_assert(q[1] == '\\' || q[1] == '"' ||
									  q[1] == 'n',
								  "line %d: bad escape", lineno);
							q++;
						}
						q++;
					}
					cr_assert(*q == '"', "line %d: unterminated label value",
						  lineno);
					q++;
					if (*q == ',') {
						q++;
						continue;
					}
					cr_assert(*q == '}', "line %d: '%s'", lineno, line);
					q++;
					break;
				}
			}
			cr_assert(*q == ' ', "line %d: no space before the value in '%s'", lineno,
				  line);
			val = q + 1;
			cr_assert(!strchr(val, ' '), "line %d: timestamps are not expected",
				  lineno);
			cr_assert(is_value(val), "line %d: bad value '%s'", lineno, val);
			*q = '\0';
			for (k = 0; k < p->n_series; k++)
				cr_assert(strcmp(p->series[k], line),
					  "line %d: duplicate series %s", lineno, line);
			cr_assert(p->n_series < MAX_SERIES);
			cr_assert_lt(strlen(line), sizeof(p->series[0]), "line %d: series too long",
				     lineno);
			memcpy(p->series[p->n_series], line, strlen(line) + 1);
			p->value[p->n_series++] = strtod(val, NULL);
		}
	}
	for (int f = 0; f < p->n_families; f++) {
		size_t fl = strlen(p->family[f]);

		cr_assert(p->type[f][0], "family %s has no TYPE", p->family[f]);
		cr_assert(seen_samples[f], "family %s has no samples", p->family[f]);
		cr_assert(!strncmp(p->family[f], "moat_", 5), "%s lacks the moat_ prefix",
			  p->family[f]);
		if (!strcmp(p->type[f], "counter"))
			cr_assert(fl > 6 && !strcmp(p->family[f] + fl - 6, "_total"),
				  "counter %s does not end in _total", p->family[f]);
		else
			cr_assert(fl < 6 || strcmp(p->family[f] + fl - 6, "_total"),
				  "gauge %s ends in _total", p->family[f]);
	}
}

static double value_of(const struct parsed *p, const char *series)
{
	for (int i = 0; i < p->n_series; i++)
		if (!strcmp(p->series[i], series))
			return p->value[i];
	cr_assert_fail("series %s not found", series);
	return -1;
}

static void render(struct parsed *p)
{
	static char buf[METRICS_BUF_SIZE];
	size_t len = metrics_render_buf(&reg, true, buf, sizeof(buf));

	cr_assert_lt(len, sizeof(buf));
	parse_strict(buf, len, p);
}

/* promtool, if installed, must accept @text; returns false if it is missing. */
static bool promtool_accepts(const char *text, size_t len)
{
	char path[] = "/tmp/moat-test-metrics.XXXXXX", cmd[256];
	int fd, st;

	if (system("command -v promtool >/dev/null 2>&1") != 0)
		return false;
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 1>&2", path);
	st = system(cmd);
	unlink(path);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics failed");
	return true;
}

/* ---- rendering ------------------------------------------------------------ */

Test(metrics, strict_format_and_values)
{
	struct moat_guest_counters *g = reg.part[MOAT_PART_CNT_GUEST];
	struct moat_netstack_counters *n = reg.part[MOAT_PART_CNT_NETSTACK];
	struct moat_proxy_counters *px = reg.part[MOAT_PART_CNT_PROXY];
	struct moat_ring_ctl *g2s = reg.part[MOAT_PART_RING_G2S];
	struct parsed *p = malloc(sizeof(*p));

	g->tx_bytes = 123456;
	g->tx_frames = 100;
	g->rx_bytes = 654321;
	g->rx_frames = 200;
	g->drops[MOAT_DROP_TOO_SHORT] = 3;
	n->drops[MOAT_DROP_TOO_SHORT] = 4;
	n->drops[MOAT_DROP_SPOOFED] = 5;
	n->dhcp_acks = 2;
	n->lwip_mem_errors = 9;
	px->tcp_connections[MOAT_CONN_DENIED] = 7;
	px->tcp_connections[MOAT_CONN_OK] = 11;
	px->denials_egress[MOAT_P_UDP] = 13;
	px->denials_ingress[MOAT_P_TCP] = 17;
	px->dns_queries[MOAT_DNS_REBIND] = 19;
	px->policy_generation = 2;
	g->wakes_sent = 21;
	px->wakes_sent = 23;
	g2s->head = 5000;
	g2s->tail = 1000;

	render(p);
	cr_assert_gt(p->n_families, 40, "only %d families", p->n_families);
	cr_assert_eq(value_of(p, "moat_up"), 1);
	cr_assert_eq(value_of(p, "moat_mtu_bytes"), 1500);
	cr_assert_eq(value_of(p, "moat_guest_tx_bytes_total"), 123456);
	cr_assert_eq(value_of(p, "moat_guest_tx_frames_total"), 100);
	cr_assert_eq(value_of(p, "moat_guest_rx_bytes_total"), 654321);
	cr_assert_eq(value_of(p, "moat_guest_rx_frames_total"), 200);
	cr_assert_eq(value_of(p, "moat_guest_dropped_frames_total{stage=\"guest_port\","
				 "reason=\"too_short\"}"),
		     3);
	cr_assert_eq(value_of(p, "moat_guest_dropped_frames_total{stage=\"netstack\","
				 "reason=\"too_short\"}"),
		     4);
	cr_assert_eq(value_of(p, "moat_guest_dropped_frames_total{stage=\"netstack\","
				 "reason=\"spoofed\"}"),
		     5);
	cr_assert_eq(value_of(p, "moat_dhcp_replies_total{type=\"ack\"}"), 2);
	cr_assert_eq(value_of(p, "moat_netstack_lwip_memory_errors_total"), 9);
	cr_assert_eq(value_of(p, "moat_tcp_connections_total{result=\"denied\"}"), 7);
	cr_assert_eq(value_of(p, "moat_tcp_connections_total{result=\"ok\"}"), 11);
	cr_assert_eq(value_of(p, "moat_tcp_connections_total{result=\"limit\"}"), 0);
	cr_assert_eq(value_of(p, "moat_policy_denials_total{direction=\"egress\","
				 "protocol=\"udp\"}"),
		     13);
	cr_assert_eq(value_of(p, "moat_policy_denials_total{direction=\"ingress\","
				 "protocol=\"tcp\"}"),
		     17);
	cr_assert_eq(value_of(p, "moat_dns_queries_total{result=\"rebind\"}"), 19);
	cr_assert_eq(value_of(p, "moat_policy_generation"), 2);
	cr_assert_eq(value_of(p, "moat_wakeups_total{process=\"guest_port\"}"), 21);
	cr_assert_eq(value_of(p, "moat_wakeups_total{process=\"proxy\"}"), 23);
	cr_assert_eq(value_of(p, "moat_ring_used_bytes{ring=\"g2s\"}"), 4000);
	cr_assert_eq(value_of(p, "moat_ring_used_bytes{ring=\"s2g\"}"), 0);
	cr_assert_eq(value_of(p, "moat_ring_capacity_bytes{ring=\"g2s\"}"), 1u << 20);
	cr_assert_eq(value_of(p, "moat_ring_capacity_bytes{ring=\"p2s\"}"), 256u << 10);
	cr_assert_eq(value_of(p, "moat_policy_violations_total{reason=\"limit\"}"), 0);
	free(p);
}

Test(metrics, every_counter_field_is_exported)
{
	/*
	 * Give each u64 of the three counter blocks a distinct value; each must
	 * show up in some sample (all fields of the structs are rendered).
	 */
	static const enum moat_part parts[3] = { MOAT_PART_CNT_GUEST, MOAT_PART_CNT_NETSTACK,
						 MOAT_PART_CNT_PROXY };
	static const size_t sizes[3] = { sizeof(struct moat_guest_counters),
					 sizeof(struct moat_netstack_counters),
					 sizeof(struct moat_proxy_counters) };
	struct parsed *p = malloc(sizeof(*p));
	uint64_t base = 1000000;

	for (int b = 0; b < 3; b++) {
		uint64_t *u = reg.part[parts[b]];

		for (size_t i = 0; i < sizes[b] / 8; i++)
			u[i] = base + b * 1000 + i;
	}
	render(p);
	for (int b = 0; b < 3; b++)
		for (size_t i = 0; i < sizes[b] / 8; i++) {
			double want = (double)(base + b * 1000 + i);
			bool found = false;

			/* Not a counter: the guest's MAC, for the control API's /status. */
			if (b == 1 && i == offsetof(struct moat_netstack_counters, guest_mac) / 8)
				continue;

			for (int k = 0; k < p->n_series && !found; k++)
				found = p->value[k] == want;
			cr_assert(found, "field %zu of counter block %d is not exported", i, b);
		}
	free(p);
}

Test(metrics, worst_case_fits_and_hostile_rings_are_clamped)
{
	static char buf[METRICS_BUF_SIZE];
	struct moat_ring_ctl *s2p = reg.part[MOAT_PART_RING_S2P];
	struct parsed *p = malloc(sizeof(*p));
	size_t len;

	memset(reg.part[MOAT_PART_CNT_GUEST], 0xff, sizeof(struct moat_guest_counters));
	memset(reg.part[MOAT_PART_CNT_NETSTACK], 0xff, sizeof(struct moat_netstack_counters));
	memset(reg.part[MOAT_PART_CNT_PROXY], 0xff, sizeof(struct moat_proxy_counters));
	s2p->head = 1;
	s2p->tail = 2; /* head - tail wraps: a lying producer */
	len = metrics_render_buf(&reg, true, buf, sizeof(buf));
	cr_assert_lt(len, sizeof(buf), "worst case needs %zu bytes, buffer has %zu", len,
		     sizeof(buf));
	/* Keep head room for new metrics: fail early if it gets tight. */
	cr_assert_lt(len, sizeof(buf) * 3 / 4, "worst case %zu bytes: grow METRICS_BUF_SIZE", len);
	parse_strict(buf, len, p);
	cr_assert_eq(value_of(p, "moat_guest_tx_bytes_total"), 18446744073709551615.0);
	cr_assert_eq(value_of(p, "moat_ring_used_bytes{ring=\"s2p\"}"), 256u << 10);
	promtool_accepts(buf, len);
	free(p);
}

Test(metrics, cut_output_is_reported_like_snprintf)
{
	char small[100];
	size_t full, len;

	full = metrics_render_buf(&reg, true, NULL, 0);
	cr_assert_gt(full, sizeof(small));
	len = metrics_render_buf(&reg, true, small, sizeof(small));
	cr_assert_eq(len, full);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
}

Test(metrics, promtool_accepts_the_text)
{
	size_t len;
	char *text = metrics_render(&reg, &len);

	cr_assert_not_null(text);
	if (!promtool_accepts(text, len)) {
		free(text);
		cr_skip_test("promtool not installed (Debian package prometheus)");
	}
	/* cppcheck-suppress doubleFree ; cr_skip_test() above does not return */
	free(text);
}

Test(metrics, violations_and_reloads_are_counted)
{
	struct moat_mailbox m = { .reason = MOAT_VIOL_LIMIT, .rule = -1 };
	struct parsed *p = malloc(sizeof(*p));

	events_violation("limit", "moat-proxy", &m, 10);
	events_reload("/nonexistent", false, "bad");
	events_reload("/nonexistent", true, NULL);
	events_reload("/nonexistent", true, NULL);
	render(p);
	cr_assert_eq(value_of(p, "moat_policy_violations_total{reason=\"limit\"}"), 1);
	cr_assert_eq(value_of(p, "moat_policy_violations_total{reason=\"spoof\"}"), 0);
	cr_assert_eq(value_of(p, "moat_policy_reloads_total{result=\"ok\"}"), 2);
	cr_assert_eq(value_of(p, "moat_policy_reloads_total{result=\"error\"}"), 1);
	cr_assert_eq(value_of(p, "moat_events_total{event=\"violation\"}"), 1);
	cr_assert_eq(value_of(p, "moat_events_total{event=\"termination\"}"), 1);
	free(p);
}

/* ---- the HTTP endpoint ---------------------------------------------------- */

/* Send @req to @addr ("HOST:PORT" v4 or "unix:PATH"); return the whole reply. */
static char *http(const char *addr, const char *req, size_t *rlen)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	int fd;

	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", addr + 5);
		sl = sizeof(*sun);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		const char *colon = strrchr(addr, ':');

		cr_assert_not_null(colon);
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)atoi(colon + 1));
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*sin);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&ss, sl), 0, "connect %s: %s", addr,
		     strerror(errno));
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *more = realloc(buf, cap * 2);

			cr_assert_not_null(more);
			buf = more;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		cr_assert_geq(n, 0, "read: %s", strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*rlen = len;
	return buf;
}

static const char *body_of(const char *reply)
{
	const char *b = strstr(reply, "\r\n\r\n");

	cr_assert_not_null(b, "no end of headers in the reply");
	return b + 4;
}

static void check_endpoint(const char *addr)
{
	struct parsed *p = malloc(sizeof(*p));
	size_t len;
	char *r;

	r = http(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "reply: %.60s", r);
	cr_assert_not_null(strcasestr(r, "\r\nContent-Type: text/plain; version=0.0.4"),
			   "no 0.0.4 content type: %.300s", r);
	parse_strict(body_of(r), strlen(body_of(r)), p);
	cr_assert_eq(value_of(p, "moat_guest_tx_bytes_total"), 4242);
	free(r);

	r = http(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.0 200 ", 13) || !strncmp(r, "HTTP/1.1 200 ", 13),
		  "reply: %.60s", r);
	free(r);

	r = http(addr, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.1 404 ", 13), "reply: %.60s", r);
	free(r);
	r = http(addr, "GET /metricsx HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.1 404 ", 13), "reply: %.60s", r);
	free(r);

	r = http(addr,
		 "POST /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		 "Content-Length: 3\r\n\r\nabc",
		 &len);
	cr_assert(!strncmp(r, "HTTP/1.1 405 ", 13), "reply: %.60s", r);
	cr_assert_not_null(strcasestr(r, "\r\nAllow: GET"), "405 without Allow: %.300s", r);
	free(r);
	r = http(addr, "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.1 405 ", 13), "reply: %.60s", r);
	free(r);

	r = http(addr, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
	cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "reply: %.60s", r);
	cr_assert_eq(strlen(body_of(r)), 0, "HEAD with a body");
	free(r);

	/* Many scrapes in a row: the response buffers go back to the pool. */
	for (int i = 0; i < 3 * METRICS_HTTP_CONNECTIONS; i++) {
		r = http(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
			 &len);
		cr_assert(!strncmp(r, "HTTP/1.1 200 ", 13), "scrape %d: %.60s", i, r);
		free(r);
	}
	free(p);
}

Test(metrics, http_on_a_free_tcp_port)
{
	struct moat_guest_counters *g = reg.part[MOAT_PART_CNT_GUEST];
	struct metrics *m;
	char err[256];
	const char *addr;

	g->tx_bytes = 4242;
	cr_assert_eq(metrics_start(&m, "127.0.0.1:0", NULL, &reg, err, sizeof(err)), 0, "%s", err);
	addr = metrics_address(m);
	cr_assert_not_null(addr);
	cr_assert(strncmp(addr, "127.0.0.1:", 10) == 0 && atoi(addr + 10) > 0, "address %s", addr);
	cr_assert_eq(metrics_tick(m), -1, "no file: no timeout");
	check_endpoint(addr);
	metrics_final(m);
}

Test(metrics, http_on_a_unix_socket)
{
	struct moat_guest_counters *g = reg.part[MOAT_PART_CNT_GUEST];
	char dir[] = "/tmp/moat-test-mx.XXXXXX", spec[128], err[256], path[100];
	struct metrics *m;
	struct stat st;
	int fd;

	g->tx_bytes = 4242;
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	cr_assert_eq(metrics_start(&m, spec, NULL, &reg, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(metrics_address(m), spec);
	check_endpoint(spec);

	/* A second moat must not steal a live socket. */
	{
		struct metrics *m2;

		cr_assert_eq(metrics_start(&m2, spec, NULL, &reg, err, sizeof(err)), -1);
		cr_assert_not_null(strstr(err, "in use"), "%s", err);
	}
	metrics_final(m);
	cr_assert_neq(stat(path, &st), 0, "the socket is left behind");

	/* A stale socket (nobody listening) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	}
	close(fd);
	cr_assert_eq(metrics_start(&m, spec, NULL, &reg, err, sizeof(err)), 0, "%s", err);
	check_endpoint(spec);
	metrics_final(m);

	/* A regular file there is not ours to remove. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	cr_assert_eq(metrics_start(&m, spec, NULL, &reg, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "not a socket"), "%s", err);
	unlink(path);
	rmdir(dir);
}

Test(metrics, bad_addresses_fail_with_one_line)
{
	static const char *const bad[] = {
		"nonsense",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:99999",
		"127.0.0.1:-1",
		"127.0.0.1:80x",
		"127.0.0.1: 80",
		"127.0.0.1:+80",
		"300.1.1.1:80",
		"[::1",
		"[::1]",
		"[::1]80",
		"[nothex]:80",
		"example.com:80",
		"unix:",
		"198.51.100.1:9100" /* not a local address */,
		"unix:/nonexistent-dir/x.sock",
		("unix:/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock"),
	};
	struct metrics *m;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(metrics_start(&m, bad[i], NULL, &reg, err, sizeof(err)), -1,
			     "'%s' was accepted", bad[i]);
		cr_assert_null(m);
		cr_assert(err[0] && !strchr(err, '\n'), "'%s': error '%s'", bad[i], err);
	}
}

Test(metrics, ipv6_loopback)
{
	struct metrics *m;
	char err[256];
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	if (fd < 0 || bind(fd, (struct sockaddr *)&s6, sizeof(s6)) < 0) {
		if (fd >= 0)
			close(fd);
		cr_skip_test("no IPv6 loopback here");
	}
	close(fd);
	cr_assert_eq(metrics_start(&m, "[::1]:0", NULL, &reg, err, sizeof(err)), 0, "%s", err);
	cr_assert(!strncmp(metrics_address(m), "[::1]:", 6), "%s", metrics_address(m));
	metrics_final(m);
}

Test(metrics, no_options_no_state)
{
	struct metrics *m = (struct metrics *)&m;
	char err[64];

	cr_assert_eq(metrics_start(&m, NULL, NULL, &reg, err, sizeof(err)), 0);
	cr_assert_null(m);
	cr_assert_eq(metrics_tick(NULL), -1);
	cr_assert_null(metrics_address(NULL));
	metrics_final(NULL);
}

/* ---- --metrics-file ------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, METRICS_BUF_SIZE + 1);

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	*len = fread(buf, 1, METRICS_BUF_SIZE, f);
	fclose(f);
	return buf;
}

Test(metrics, file_written_at_start_and_at_stop)
{
	struct moat_guest_counters *g = reg.part[MOAT_PART_CNT_GUEST];
	char dir[] = "/tmp/moat-test-mx.XXXXXX", path[128], tmp[140], err[256];
	struct parsed *p = malloc(sizeof(*p));
	struct metrics *m;
	struct stat st;
	size_t len;
	char *t;
	int to;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/moat.prom", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	g->rx_bytes = 77;
	cr_assert_eq(metrics_start(&m, NULL, path, &reg, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(metrics_address(m));
	t = slurp(path, &len);
	parse_strict(t, len, p);
	cr_assert_eq(value_of(p, "moat_up"), 1);
	cr_assert_eq(value_of(p, "moat_guest_rx_bytes_total"), 77);
	free(t);
	cr_assert_neq(stat(tmp, &st), 0, "PATH.tmp left behind");

	to = metrics_tick(m);
	cr_assert(to > 0 && to <= METRICS_FILE_INTERVAL_MS, "timeout %d", to);

	g->rx_bytes = 78;
	metrics_final(m);
	t = slurp(path, &len);
	parse_strict(t, len, p);
	cr_assert_eq(value_of(p, "moat_up"), 0, "the last file must say moat is down");
	cr_assert_eq(value_of(p, "moat_guest_rx_bytes_total"), 78);
	free(t);
	cr_assert_neq(stat(tmp, &st), 0, "PATH.tmp left behind");
	unlink(path);
	rmdir(dir);
	free(p);
}

Test(metrics, unwritable_file_fails_at_start)
{
	struct metrics *m;
	char err[256];

	cr_assert_eq(metrics_start(&m, NULL, "/nonexistent-dir/moat.prom", &reg, err, sizeof(err)),
		     -1);
	cr_assert_not_null(strstr(err, "/nonexistent-dir/moat.prom"), "%s", err);
	/* Both given, the file bad: nothing is left listening. */
	cr_assert_eq(metrics_start(&m, "127.0.0.1:0", "/nonexistent-dir/moat.prom", &reg, err,
				   sizeof(err)),
		     -1);
}
