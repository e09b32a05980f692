/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - Prometheus text exposition of the shared counters
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor. The three counter blocks of the shared region
 * (guest port, netstack, proxy), the head and tail of the four rings and
 * the supervisor's own event counters are rendered as Prometheus text
 * format 0.0.4, one HELP and one TYPE line per family, by
 * metrics_render_buf(). It reads everything with relaxed atomic loads and
 * takes no lock: each counter has exactly one writer, and a scrape that
 * sees one counter a moment later than another is what every exporter
 * does. Values written by the confined children are untrusted but only
 * displayed; labels come from fixed tables here, never from the region,
 * so a compromised child cannot add series or break the format.
 *
 * --metrics HOST:PORT | [V6]:PORT | unix:PATH: we create and bind the
 * listening socket ourselves (so a bad address fails metrics_start() with
 * one clear line, and a unix socket works the same way as TCP) and hand it
 * to libmicrohttpd, which serves it from its own internal polling thread.
 * GET (or HEAD) /metrics answers 200; another path 404; another method
 * 405. The handler renders into one of METRICS_HTTP_CONNECTIONS buffers
 * allocated on first use and kept (the connection limit equals the number
 * of buffers), and MHD sends straight from it and hands it back through
 * the response's free callback: no allocation per scrape beyond MHD's own.
 *
 * --metrics-file PATH: the same text, written to PATH.tmp and renamed over
 * PATH (atomic for readers such as node_exporter's textfile collector)
 * at start, every METRICS_FILE_INTERVAL_MS from the main loop through
 * metrics_tick(), and once more from metrics_final() at stop (clean or
 * violation) with moat_up 0. No fsync: readers need atomicity, not
 * durability across a host crash.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/confine.h"
#include "common/log.h"
#include "policy/policy.h"
#include "shm/ring.h"
#include "supervisor/events.h"
#include "supervisor/httpd.h"
#include "supervisor/metrics.h"
#include "tls/tlsmsg.h"

/**
 * struct metrics_slot - one rendered response, lent to MHD until it is sent
 * @busy:	taken by a response (MHD thread only, atomic for clarity)
 * @buf:	METRICS_BUF_SIZE bytes, allocated on first use
 */
struct metrics_slot {
	atomic_bool busy;
	char *buf;
};

struct metrics {
	const struct region *r;
	struct MHD_Daemon *mhd;
	struct MHD_Response *r404, *r405, *r503;
	struct metrics_slot slot[METRICS_HTTP_CONNECTIONS];
	char address[160]; /* what we listen on, for logs and tests */
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *file, *tmp; /* --metrics-file and PATH.tmp */
	char *file_buf;
	int64_t next_ms;   /* CLOCK_MONOTONIC of the next file write */
	bool file_failing; /* log a failing write once, not every 5 s */
};

/* Set by metrics_start() before the HTTP thread exists; read-only after. */
static struct timespec start_time;

/* ---- rendering -------------------------------------------------------- */

/* An output buffer that, like snprintf, keeps counting past its end. */
struct out {
	char *p;
	size_t cap, len;
};

static void __attribute__((format(printf, 2, 3))) outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	if (o->len < o->cap)
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	else
		n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* @labels: "" or 'a="x",b="y"' (fixed strings from this file only) */
static void sample(struct out *o, const char *name, const char *labels, uint64_t v)
{
	if (labels[0])
		outf(o, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	else
		outf(o, "%s %llu\n", name, (unsigned long long)v);
}

/* A family of one unlabelled sample. */
static void single(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, "", v);
}

/* A family with one label over a fixed list of values. */
static void labelled(struct out *o, const char *name, const char *type, const char *help,
		     const char *label, const char *const *values, const uint64_t *v, int n)
{
	char l[96];

	family(o, name, type, help);
	for (int i = 0; i < n; i++) {
		snprintf(l, sizeof(l), "%s=\"%s\"", label, values[i]);
		sample(o, name, l, v[i]);
	}
}

static uint64_t ld(const uint64_t *p)
{
	return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}

/*
 * struct counter - one unlabelled field of a counter block, and the metric
 * it is rendered as. The blocks' plain counters are tables of these, so a
 * new counter is one line here and one in shm/moat_shm.h.
 */
struct counter {
	const char *name, *type, *help;
	size_t off; /* offsetof() in its block */
};

#define COUNTER(block, field, name, type, help)                       \
	{                                                             \
		(name), (type), (help), offsetof(struct block, field) \
	}

/* Render every counter of @table from @block. */
static void counters(struct out *o, const void *block, const struct counter *table, size_t n)
{
	for (size_t i = 0; i < n; i++)
		single(o, table[i].name, table[i].type, table[i].help,
		       ld((const uint64_t *)((const char *)block + table[i].off)));
}

#define COUNTERS(o, block, table) \
	counters((o), (block), (table), sizeof(table) / sizeof((table)[0]))

static const char *const drop_names[MOAT_DROP_REASON_COUNT] = {
	[MOAT_DROP_TOO_SHORT] = "too_short", [MOAT_DROP_TOO_LONG] = "too_long",
	[MOAT_DROP_RING_FULL] = "ring_full", [MOAT_DROP_BAD_LENGTH] = "bad_length",
	[MOAT_DROP_MALFORMED] = "malformed", [MOAT_DROP_ETHERTYPE] = "ethertype",
	[MOAT_DROP_FRAGMENT] = "fragment",   [MOAT_DROP_IP_OPTIONS] = "ip_options",
	[MOAT_DROP_SPOOFED] = "spoofed",     [MOAT_DROP_NOT_FOR_US] = "not_for_us",
	[MOAT_DROP_PROTOCOL] = "protocol",   [MOAT_DROP_DHCP] = "dhcp",
	[MOAT_DROP_NO_MEMORY] = "no_memory", [MOAT_DROP_BAD_OFFLOAD] = "bad_offload",
};
static const char *const conn_names[MOAT_CONN_RESULT_COUNT] = { "ok",	  "refused", "unreachable",
								"denied", "timeout", "limit" };
static const char *const proto_names[MOAT_P_COUNT] = { "tcp", "udp", "icmp" };
static const char *const dns_names[MOAT_DNS_RESULT_COUNT] = {
	"forwarded", "denied", "rebind", "formerr", "servfail", "truncated", "upstream_bad"
};
static const char *const ring_names[4] = { "g2s", "s2g", "s2p", "p2s" };
static const char *const pool_names[MOAT_POOL_COUNT] = { "tcp_write", "p2s_control", "p2s_dgram",
							 "dns_query", "dns_stream",  "dns_answer",
							 "sniff",     "tls" };

_Static_assert((int)EVENTS_KIND_COUNT <= 16 && (int)MOAT_VIOL_COUNT <= 16 &&
		       (int)MOAT_DNS_RESULT_COUNT <= 16 && (int)MOAT_CONN_RESULT_COUNT <= 16 &&
		       (int)MOAT_POOL_COUNT <= 16,
	       "the label tables below hold 16 values");

static void render_supervisor(struct out *o, const struct region *r, bool up)
{
	struct events_stats es;
	const char *names[16];
	struct timespec st = start_time;

	events_stats(&es);
	single(o, "moat_up", "gauge",
	       "1 while moat runs; 0 in the last --metrics-file, written at stop.", up);
	family(o, "moat_info", "gauge", "Always 1; the version of moat is the label.");
	sample(o, "moat_info", "version=\"" MOAT_VERSION "\"", 1);
	family(o, "moat_start_time_seconds", "gauge",
	       "When the supervisor started, in seconds since the Unix epoch.");
	outf(o, "moat_start_time_seconds %lld.%06ld\n", (long long)st.tv_sec, st.tv_nsec / 1000);
	single(o, "moat_mtu_bytes", "gauge", "IP MTU toward the guest.", r->hdr.mtu);

	/* Reasons 1..: "none" is never a violation. */
	for (int i = 1; i < MOAT_VIOL_COUNT; i++)
		names[i - 1] = events_violation_name((unsigned)i);
	labelled(o, "moat_policy_violations_total", "counter",
		 "Fatal violations seen by the supervisor (each one kills the VM), by reason.",
		 "reason", names, es.violations + 1, MOAT_VIOL_COUNT - 1);
	{
		static const char *const res[2] = { "ok", "error" };
		uint64_t v[2] = { es.reloads_ok, es.reloads_failed };

		labelled(o, "moat_policy_reloads_total", "counter",
			 "SIGHUP policy reloads; on error the old policy stays in force.", "result",
			 res, v, 2);
	}
	for (int i = 0; i < EVENTS_KIND_COUNT; i++)
		names[i] = events_kind_name((enum events_kind)i);
	labelled(o, "moat_events_total", "counter",
		 "Events by kind (counted even without --events).", "event", names, es.emitted,
		 EVENTS_KIND_COUNT);
	single(o, "moat_events_rejected_total", "counter",
	       "Messages from the proxy that were not a valid event.", es.proxy_rejected);
	single(o, "moat_events_suppressed_total", "counter",
	       "Valid proxy events not written because of the events rate limit.",
	       es.proxy_suppressed);
	single(o, "moat_events_write_errors_total", "counter",
	       "Event lines that could not be written.", es.write_errors);
}

#define G(field, name, type, help) COUNTER(moat_guest_counters, field, name, type, help)
static const struct counter guest_counters[] = {
	G(tx_frames, "moat_guest_tx_frames_total", "counter",
	  "Ethernet frames from the guest accepted by the guest port."),
	G(tx_bytes, "moat_guest_tx_bytes_total", "counter",
	  "Bytes of Ethernet frames from the guest (header included, no FCS)."),
	G(rx_frames, "moat_guest_rx_frames_total", "counter",
	  "Ethernet frames delivered to the guest."),
	G(rx_bytes, "moat_guest_rx_bytes_total", "counter",
	  "Bytes of Ethernet frames delivered to the guest (header included, no FCS)."),
	G(clients_accepted, "moat_guest_clients_accepted_total", "counter",
	  "Clients accepted by a stream or dgram guest frontend."),
	G(clients_dropped, "moat_guest_clients_dropped_total", "counter",
	  "Clients of a stream frontend dropped for a bad length prefix or an error."),
	G(offloads_refused, "moat_guest_offloads_refused_total", "counter",
	  "1 if the tap refused checksum and segmentation offloads (plain frames are used)."),
	G(vring_bad_chains, "moat_guest_vring_bad_chains_total", "counter",
	  "vhost-user: descriptor chains refused (outside guest memory, loops, too long)."),
	G(vring_bad_messages, "moat_guest_vhost_bad_messages_total", "counter",
	  "vhost-user: VMM connections dropped for a broken message or an unusable queue."),
	G(rx_no_buffers, "moat_guest_rx_no_buffers_total", "counter",
	  "vhost-user: frames for the guest dropped because no receive buffer could hold them."),
	G(rx_segmented, "moat_guest_rx_segmented_total", "counter",
	  "vhost-user: segments cut in software for a guest that did not take TSO."),
};
#undef G

static void render_guest(struct out *o, const struct moat_guest_counters *g,
			 const struct moat_netstack_counters *n,
			 const struct moat_proxy_counters *p)
{
	COUNTERS(o, g, guest_counters);
	family(o, "moat_guest_dropped_frames_total", "counter",
	       "Guest frames dropped, by where (guest_port or netstack) and why.");
	for (int i = 0; i < MOAT_DROP_REASON_COUNT; i++) {
		char l[96];

		snprintf(l, sizeof(l), "stage=\"guest_port\",reason=\"%s\"", drop_names[i]);
		sample(o, "moat_guest_dropped_frames_total", l, ld(&g->drops[i]));
		snprintf(l, sizeof(l), "stage=\"netstack\",reason=\"%s\"", drop_names[i]);
		sample(o, "moat_guest_dropped_frames_total", l, ld(&n->drops[i]));
	}
	{
		static const char *const who[3] = { "guest_port", "netstack", "proxy" };
		uint64_t v[3] = { ld(&g->wakes_sent), ld(&n->wakes_sent), ld(&p->wakes_sent) };

		labelled(o, "moat_wakeups_total", "counter",
			 "Eventfd writes to wake a peer, by the process that wrote them.",
			 "process", who, v, 3);
	}
}

static void render_rings(struct out *o, const struct region *r)
{
	uint64_t used[4], cap[4];

	for (int i = 0; i < 4; i++) {
		enum moat_part part = (enum moat_part)(MOAT_PART_RING_G2S + i);

		cap[i] = r->part[part] ? region_ring_capacity(r, part) : 0;
		used[i] = r->part[part] ? ring_used_bytes(r->part[part], cap[i]) : 0;
	}
	labelled(o, "moat_ring_used_bytes", "gauge",
		 "Bytes published but not yet consumed in each shared-memory ring.", "ring",
		 ring_names, used, 4);
	labelled(o, "moat_ring_capacity_bytes", "gauge", "Data bytes of each ring.", "ring",
		 ring_names, cap, 4);
}

#define N(field, name, type, help) COUNTER(moat_netstack_counters, field, name, type, help)
static const struct counter netstack_counters[] = {
	N(arp_replies, "moat_arp_replies_total", "counter",
	  "ARP replies the netstack sent for the gateway and DNS addresses."),
	N(icmp_echo_replies, "moat_icmp_echo_gateway_replies_total", "counter",
	  "ICMP echo replies the netstack answered itself (gateway and DNS addresses)."),
	N(icmp_echo_relayed, "moat_icmp_echo_relayed_total", "counter",
	  "ICMP echo requests the netstack relayed to the proxy."),
	N(tcp_syns, "moat_netstack_tcp_syns_total", "counter",
	  "TCP SYNs from the guest that started a connect."),
	N(tcp_flows_opened, "moat_netstack_tcp_flows_opened_total", "counter",
	  "TCP flows the netstack opened toward the guest."),
	N(tcp_flows_closed, "moat_netstack_tcp_flows_closed_total", "counter",
	  "TCP flows the netstack closed."),
	N(tcp_flows_active, "moat_netstack_tcp_flows_active", "gauge",
	  "TCP flows open in the netstack."),
	N(tcp_table_full, "moat_netstack_tcp_table_full_total", "counter",
	  "Guest SYNs refused because the netstack's flow table was full."),
	N(lwip_mem_errors, "moat_netstack_lwip_memory_errors_total", "counter",
	  "lwIP allocations that failed (pool or heap exhausted)."),
	N(pcbs_in_use, "moat_netstack_pcbs_in_use", "gauge", "lwIP TCP and UDP PCBs in use."),
	N(pbufs_in_use, "moat_netstack_pbufs_in_use", "gauge", "lwIP pbufs in use."),
	N(listeners, "moat_netstack_tcp_listeners", "gauge",
	  "lwIP listening PCBs (one per destination port in use)."),
	N(spoofed_frames, "moat_netstack_spoofed_frames_total", "counter",
	  "Guest frames with a source MAC or IP other than the guest's."),
	N(tx_bytes_tcp, "moat_tcp_payload_tx_bytes_total", "counter",
	  "TCP payload bytes from the guest, as the netstack received them."),
	N(rx_bytes_tcp, "moat_tcp_payload_rx_bytes_total", "counter",
	  "TCP payload bytes to the guest, as the netstack sent them."),
};
#undef N

static void render_netstack(struct out *o, const struct moat_netstack_counters *n)
{
	static const char *const type[3] = { "offer", "ack", "nak" };
	uint64_t v[3] = { ld(&n->dhcp_offers), ld(&n->dhcp_acks), ld(&n->dhcp_naks) };

	COUNTERS(o, n, netstack_counters);
	labelled(o, "moat_dhcp_replies_total", "counter",
		 "DHCPv4 messages the netstack sent to the guest, by type.", "type", type, v, 3);
}

#define P(field, name, type, help) COUNTER(moat_proxy_counters, field, name, type, help)
static const struct counter proxy_counters[] = {
	P(tcp_active, "moat_tcp_connections_active", "gauge",
	  "TCP connections the proxy is relaying."),
	P(udp_flows_opened, "moat_udp_flows_opened_total", "counter",
	  "UDP flows the proxy opened a host socket for."),
	P(udp_flows_refused, "moat_udp_flows_refused_total", "counter",
	  "UDP flows the proxy refused for a limit (denials are in moat_policy_denials_total)."),
	P(udp_flows_active, "moat_udp_flows_active", "gauge", "UDP flows the proxy is relaying."),
	P(udp_unreachable, "moat_udp_unreachable_total", "counter",
	  "ICMP port, host or network unreachables for guest UDP flows, relayed to the guest."),
	P(dns_intercepted, "moat_dns_intercepted_total", "counter",
	  "Guest DNS queries to an address other than the DNS address, taken by the forwarder."),
	P(dns_pins, "moat_dns_pinned_addresses", "gauge",
	  "Addresses remembered from allowed DNS answers (for domain rules)."),
	P(upstream_tx_bytes, "moat_upstream_tx_bytes_total", "counter",
	  "Bytes the proxy wrote to host sockets."),
	P(upstream_rx_bytes, "moat_upstream_rx_bytes_total", "counter",
	  "Bytes the proxy read from host sockets."),
	P(icmp_echo_sent, "moat_icmp_echo_upstream_requests_total", "counter",
	  "ICMP echo requests the proxy sent on the host."),
	P(icmp_echo_replies, "moat_icmp_echo_upstream_replies_total", "counter",
	  "ICMP echo replies the proxy received on the host."),
	P(limit_exceeded, "moat_limit_exceeded_total", "counter",
	  "Times a policy limit was exceeded."),
	P(reload_cuts, "moat_policy_reload_cuts_total", "counter",
	  "Open TCP connections and UDP flows a policy reload denied and cut off."),
	P(hostname_denials, "moat_hostname_denials_total", "counter",
	  "TCP connections reset for the TLS SNI or HTTP Host their client sent."),
	P(bad_messages, "moat_proxy_bad_messages_total", "counter",
	  "Malformed flow messages the proxy received from the netstack."),
	P(policy_generation, "moat_policy_generation", "gauge",
	  "Generation of the policy in force in the proxy (1 at start, +1 per reload)."),
	P(tls_intercepted, "moat_tls_intercepted_total", "counter",
	  "TLS connections handed to moat-tls (their name is intercepted)."),
	P(tls_opened, "moat_tls_established_total", "counter",
	  "Intercepted connections whose two handshakes (guest and server) completed."),
	P(tls_secrets_injected, "moat_tls_secret_injections_total", "counter",
	  "Requests in which moat-tls replaced a placeholder by its secret."),
	P(tls_secret_violations, "moat_tls_secret_violations_total", "counter",
	  "Placeholders the guest sent toward a host their secret is not for."),
};
#undef P

static void render_proxy(struct out *o, const struct moat_proxy_counters *p)
{
	uint64_t v[16];

	COUNTERS(o, p, proxy_counters);
	for (int i = 0; i < MOAT_CONN_RESULT_COUNT; i++)
		v[i] = ld(&p->tcp_connections[i]);
	labelled(o, "moat_tcp_connections_total", "counter",
		 "Guest TCP connects decided by the proxy, by result.", "result", conn_names, v,
		 MOAT_CONN_RESULT_COUNT);
	family(o, "moat_policy_denials_total", "counter",
	       "Flows the policy denied, by direction and protocol.");
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < MOAT_P_COUNT; i++) {
			char l[64];

			snprintf(l, sizeof(l), "direction=\"%s\",protocol=\"%s\"",
				 d ? "ingress" : "egress", proto_names[i]);
			sample(o, "moat_policy_denials_total", l,
			       ld(d ? &p->denials_ingress[i] : &p->denials_egress[i]));
		}
	for (int i = 0; i < MOAT_DNS_RESULT_COUNT; i++)
		v[i] = ld(&p->dns_queries[i]);
	labelled(o, "moat_dns_queries_total", "counter",
		 "DNS queries from the guest handled by the forwarder, by result.", "result",
		 dns_names, v, MOAT_DNS_RESULT_COUNT);
	for (int i = 0; i < MOAT_POOL_COUNT; i++)
		v[i] = ld(&p->pool_size[i]);
	labelled(o, "moat_proxy_pool_size", "gauge",
		 "Objects in each of the proxy's fixed pools (the bound).", "pool", pool_names, v,
		 MOAT_POOL_COUNT);
	for (int i = 0; i < MOAT_POOL_COUNT; i++)
		v[i] = ld(&p->pool_in_use[i]);
	labelled(o, "moat_proxy_pool_in_use", "gauge", "Objects of each pool in use.", "pool",
		 pool_names, v, MOAT_POOL_COUNT);
	for (int i = 0; i < MOAT_POOL_COUNT; i++)
		v[i] = ld(&p->pool_refused[i]);
	labelled(o, "moat_proxy_pool_refused_total", "counter",
		 "Requests a pool refused because it was empty, by pool.", "pool", pool_names, v,
		 MOAT_POOL_COUNT);
	{
		family(o, "moat_tls_failures_total", "counter",
		       "Intercepted connections that failed, by side and reason.");
		for (int side = 0; side < 2; side++)
			for (int i = 0; i < MOAT_TLS_REASONS; i++) {
				char l[64];

				snprintf(l, sizeof(l), "side=\"%s\",reason=\"%s\"",
					 side ? "server" : "guest",
					 tlsmsg_reason_name((uint32_t)i));
				sample(o, "moat_tls_failures_total", l,
				       ld(&p->tls_failures[side][i]));
			}
	}
}

/**
 * metrics_render_buf() - render every metric into a caller's buffer
 * @r:		the region (the supervisor's full mapping; unmapped parts read as 0)
 * @up:		the value of moat_up
 * @buf:	output
 * @cap:	size of @buf
 *
 * Like snprintf: writes at most @cap bytes (NUL-terminated if @cap > 0)
 * and returns the length the whole text needs, so a return >= @cap means
 * it was cut.
 *
 * Context: any thread; reads with relaxed atomics, allocates nothing.
 * Return: length of the text, without the NUL.
 */
size_t metrics_render_buf(const struct region *r, bool up, char *buf, size_t cap)
{
	static const struct moat_guest_counters g0;
	static const struct moat_netstack_counters n0;
	static const struct moat_proxy_counters p0;
	const struct moat_guest_counters *g = r->part[MOAT_PART_CNT_GUEST];
	const struct moat_netstack_counters *n = r->part[MOAT_PART_CNT_NETSTACK];
	const struct moat_proxy_counters *p = r->part[MOAT_PART_CNT_PROXY];
	struct out o = { .p = buf, .cap = cap };

	if (cap)
		buf[0] = '\0';
	render_supervisor(&o, r, up);
	render_guest(&o, g ? g : &g0, n ? n : &n0, p ? p : &p0);
	render_rings(&o, r);
	render_netstack(&o, n ? n : &n0);
	render_proxy(&o, p ? p : &p0);
	return o.len;
}

/**
 * metrics_render() - render every metric into a new buffer
 * @r:		the region
 * @len:	set to the length of the text
 *
 * Return: a NUL-terminated string the caller frees, or NULL (no memory).
 */
char *metrics_render(const struct region *r, size_t *len)
{
	char *buf = malloc(METRICS_BUF_SIZE);

	if (!buf)
		return NULL;
	*len = metrics_render_buf(r, true, buf, METRICS_BUF_SIZE);
	if (*len >= METRICS_BUF_SIZE) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- the HTTP endpoint (MHD's thread) --------------------------------- */

static void slot_release(void *cls)
{
	struct metrics_slot *s = cls;

	atomic_store_explicit(&s->busy, false, memory_order_release);
}

static struct metrics_slot *slot_take(struct metrics *m)
{
	for (int i = 0; i < METRICS_HTTP_CONNECTIONS; i++) {
		struct metrics_slot *s = &m->slot[i];
		bool f = false;

		if (!atomic_compare_exchange_strong(&s->busy, &f, true))
			continue;
		if (!s->buf)
			s->buf = malloc(METRICS_BUF_SIZE);
		if (s->buf)
			return s;
		slot_release(s);
		return NULL;
	}
	return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct metrics *m = cls;
	struct MHD_Response *resp;
	struct metrics_slot *s;
	enum MHD_Result ret;
	size_t len;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return httpd.queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, m->r405);
	if (strcmp(url, "/metrics"))
		return httpd.queue_response(c, MHD_HTTP_NOT_FOUND, m->r404);
	s = slot_take(m);
	if (!s)
		return httpd.queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, m->r503);
	len = metrics_render_buf(m->r, true, s->buf, METRICS_BUF_SIZE);
	if (len >= METRICS_BUF_SIZE) {
		/* Cannot happen (a unit test renders the worst case); never send a cut text. */
		slot_release(s);
		return httpd.queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, m->r503);
	}
	resp = httpd.create_response_from_buffer_with_free_callback_cls(len, s->buf, slot_release,
									s);
	if (!resp) {
		slot_release(s);
		return MHD_NO;
	}
	httpd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	ret = httpd.queue_response(c, MHD_HTTP_OK, resp);
	httpd.destroy_response(resp); /* the slot goes back when MHD is done with it */
	return ret;
}

static struct MHD_Response *static_response(const char *text, const char *allow)
{
	struct MHD_Response *r = httpd.create_response_from_buffer(strlen(text), (void *)text,
								   MHD_RESPMEM_PERSISTENT);

	if (!r)
		return NULL;
	httpd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		httpd.add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	return r;
}

/* ---- the listening socket --------------------------------------------- */

static int listen_unix(struct metrics *m, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	CLEANUP_CLOSE int fd = -1;
	struct stat st;

	if (!path[0] || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "unix socket path must be 1..%zu bytes",
			 sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (lstat(path, &st) == 0) {
		/* A stale socket from a dead moat is replaced; a live one or a file is not. */
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			return -1;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(probe);
			snprintf(err, errlen, "%s is in use by another process", path);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(m->unix_path, sizeof(m->unix_path), "%s", path);
	snprintf(m->address, sizeof(m->address), "unix:%s", path);
	return cleanup_take_fd(&fd);
}

static int listen_inet(struct metrics *m, const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct policy_addr a;
	socklen_t sl;
	char host[INET6_ADDRSTRLEN + 2], alias[64];
	const char *text = spec;
	CLEANUP_CLOSE int fd = -1;
	uint16_t port;
	int one = 1;

	/* The one name we know: "localhost:PORT" is 127.0.0.1. */
	if (!strncmp(spec, "localhost:", strlen("localhost:")) &&
	    snprintf(alias, sizeof(alias), "127.0.0.1:%s", spec + strlen("localhost:")) <
		    (int)sizeof(alias))
		text = alias;
	switch (policy_hostport_parse(
		text, POLICY_HOSTPORT_PORT_ZERO | POLICY_HOSTPORT_HOST_OPTIONAL, &a, &port)) {
	case 0:
		break;
	case POLICY_HOSTPORT_BAD_FORM:
		if (spec[0] == '[')
			snprintf(err, errlen, "'%s' is not [IPV6]:PORT", spec);
		else
			snprintf(err, errlen, "'%s' is not HOST:PORT, [IPV6]:PORT or unix:PATH",
				 spec);
		return -1;
	case POLICY_HOSTPORT_BAD_PORT:
		snprintf(err, errlen, "'%s': port '%s' is not a number in 0..65535", spec,
			 spec[0] == '[' ? strchr(spec, ']') + 2 : strrchr(spec, ':') + 1);
		return -1;
	default:
		snprintf(err, errlen,
			 "'%s': the host must be an IPv4 address, [IPv6], localhost or empty",
			 spec);
		return -1;
	}
	if (a.family == AF_INET6) {
		memcpy(&sin6->sin6_addr, a.addr, 16);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sl = sizeof(*sin6);
	} else {
		/* An empty host (AF_UNSPEC, all zero) is INADDR_ANY. */
		memcpy(&sin->sin_addr, a.addr, 4);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sl = sizeof(*sin);
	}

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
		snprintf(err, errlen, "cannot bind %s: %s", spec, strerror(errno));
		return -1;
	}
	/* Report the port actually bound (port 0 picks a free one). */
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(m->address, sizeof(m->address), "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(m->address, sizeof(m->address), "%s:%u", host, ntohs(sin->sin_port));
	}
	return cleanup_take_fd(&fd);
}

/* ---- --metrics-file ------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Write the text to PATH.tmp and rename it over PATH.
 * Return: 0, or -1 with the reason (naming the failing step) in @err.
 */
static int write_file(struct metrics *m, bool up, char *err, size_t errlen)
{
	size_t len = metrics_render_buf(m->r, up, m->file_buf, METRICS_BUF_SIZE), off = 0;
	const char *step = NULL;
	int fd, e = 0;

	if (len >= METRICS_BUF_SIZE) {
		snprintf(err, errlen, "%s: the metrics text is over %u bytes", m->file,
			 (unsigned)METRICS_BUF_SIZE);
		return -1;
	}
	fd = open(m->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", m->tmp, strerror(errno));
		return -1;
	}
	while (off < len) {
		ssize_t n = write(fd, m->file_buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? errno : EIO;
			step = "write";
			break;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0 && !step) {
		e = errno;
		step = "write";
	}
	if (!step && rename(m->tmp, m->file) < 0) {
		e = errno;
		step = "rename to";
	}
	if (!step)
		return 0;
	snprintf(err, errlen, "cannot %s %s: %s", step, !strcmp(step, "write") ? m->tmp : m->file,
		 strerror(e));
	unlink(m->tmp);
	return -1;
}

static void write_file_logged(struct metrics *m, bool up)
{
	char err[PATH_MAX + 128];
	int rc = write_file(m, up, err, sizeof(err));

	if (rc && !m->file_failing)
		log_warn("--metrics-file: %s", err);
	else if (!rc && m->file_failing)
		log_info("--metrics-file: %s is written again", m->file);
	m->file_failing = rc != 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void metrics_free(struct metrics *m)
{
	if (m->mhd)
		httpd.stop_daemon(m->mhd); /* closes the listening socket */
	if (m->unix_path[0])
		unlink(m->unix_path);
	if (m->r404)
		httpd.destroy_response(m->r404);
	if (m->r405)
		httpd.destroy_response(m->r405);
	if (m->r503)
		httpd.destroy_response(m->r503);
	for (int i = 0; i < METRICS_HTTP_CONNECTIONS; i++)
		free(m->slot[i].buf);
	free(m->file);
	free(m->tmp);
	free(m->file_buf);
	free(m);
}

/**
 * metrics_start() - start serving --metrics and writing --metrics-file
 * @out:	set to the new state, or NULL when neither is asked for
 * @addr:	--metrics: "HOST:PORT", "[V6]:PORT", "unix:PATH", or NULL
 * @file:	--metrics-file path, or NULL
 * @r:		the region (must outlive the state)
 * @err:	one line saying what is wrong, on failure
 * @errlen:	size of @err
 *
 * Binds the address (port 0 picks a free port; metrics_address() says
 * which), starts libmicrohttpd's thread on it, and writes @file once, so
 * an unwritable path fails here rather than silently later. Call it with
 * the signals the main loop handles already blocked, so that MHD's thread
 * inherits the mask.
 *
 * Context: supervisor, before the loop.
 * Return: 0, or -1 with @err set and nothing left running.
 */
int metrics_start(struct metrics **out, const char *addr, const char *file, const struct region *r,
		  char *err, size_t errlen)
{
	struct metrics *m;
	int fd = -1;

	*out = NULL;
	clock_gettime(CLOCK_REALTIME, &start_time);
	if (!addr && !file)
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->r = r;
	if (file) {
		m->file = strdup(file);
		if (m->file && asprintf(&m->tmp, "%s.tmp", file) < 0)
			m->tmp = NULL;
		m->file_buf = malloc(METRICS_BUF_SIZE);
		if (!m->file || !m->tmp || !m->file_buf) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (write_file(m, true, err, errlen) < 0)
			goto fail;
		m->next_ms = now_ms() + METRICS_FILE_INTERVAL_MS;
	}
	if (addr) {
		if (httpd_load(err, errlen) < 0)
			goto fail;
		fd = !strncmp(addr, "unix:", 5) ? listen_unix(m, addr + 5, err, errlen) :
						  listen_inet(m, addr, err, errlen);
		if (fd < 0)
			goto fail;
		if (listen(fd, 16) < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
			goto fail;
		}
		m->r404 = static_response("not found: moat serves /metrics only\n", NULL);
		m->r405 = static_response("method not allowed\n", "GET, HEAD");
		m->r503 = static_response("busy, try again\n", NULL);
		if (!m->r404 || !m->r405 || !m->r503) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		m->mhd = httpd.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
					    NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER,
					    httpd_log, (void *)"metrics http",
					    MHD_OPTION_LISTEN_SOCKET, fd,
					    MHD_OPTION_CONNECTION_LIMIT,
					    (unsigned)METRICS_HTTP_CONNECTIONS,
					    MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
		if (!m->mhd) {
			snprintf(err, errlen, "cannot start the HTTP server on %s", addr);
			goto fail;
		}
		/* fd is MHD's now; nothing below fails */
		log_info("metrics: serving /metrics on %s", m->address);
	}
	*out = m;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	metrics_free(m);
	return -1;
}

/**
 * metrics_tick() - rewrite --metrics-file when it is due
 * @m:	state, or NULL
 *
 * Context: supervisor main loop, before each wait.
 * Return: milliseconds until the next write (the loop's epoll timeout), or
 * -1 when there is no file to write.
 */
int metrics_tick(struct metrics *m)
{
	int64_t now;

	if (!m || !m->file)
		return -1;
	now = now_ms();
	if (now >= m->next_ms) {
		write_file_logged(m, true);
		m->next_ms = now + METRICS_FILE_INTERVAL_MS;
	}
	return (int)(m->next_ms - now);
}

/**
 * metrics_address() - where the HTTP endpoint listens
 * @m:	state, or NULL
 *
 * Return: "127.0.0.1:9100", "[::1]:9100" or "unix:/path" (the real port
 * when 0 was asked for), or NULL if there is no endpoint.
 */
const char *metrics_address(const struct metrics *m)
{
	return m && m->mhd ? m->address : NULL;
}

/**
 * metrics_final() - stop serving, write the file a last time, free
 * @m:	state, or NULL
 *
 * The last --metrics-file has moat_up 0, so a textfile collector that
 * keeps exporting it after moat is gone says so. A unix socket is removed.
 *
 * Context: supervisor, at a clean stop or after a violation's kill.
 */
void metrics_final(struct metrics *m)
{
	if (!m)
		return;
	if (m->mhd) {
		httpd.stop_daemon(m->mhd);
		m->mhd = NULL;
	}
	if (m->file)
		write_file_logged(m, false);
	metrics_free(m);
}

/**
 * metrics_seccomp() - the calls the metrics make once the supervisor is confined
 * @ctx:	the supervisor's filter (supervisor/sandbox.c)
 * @m:		state, or NULL (nothing to add)
 *
 * libmicrohttpd's thread serves /metrics; --metrics-file is rewritten as
 * PATH.tmp renamed over PATH. Both were set up before the filter: no bind,
 * no listen here.
 */
void metrics_seccomp(scmp_filter_ctx ctx, const struct metrics *m)
{
	if (!m)
		return;
	if (m->file) {
		ALLOW(ctx, openat); /* PATH.tmp, created anew each time */
		ALLOW(ctx, rename); /* PATH.tmp over PATH: readers never see half a file */
		ALLOW(ctx, unlink); /* PATH.tmp after a failed write */
	}
	if (m->mhd) {
		ALLOW(ctx, select);	     /* libmicrohttpd's internal polling thread */
		ALLOW(ctx, pselect6);	     /* the same where libc's select() is pselect6 */
		ALLOW(ctx, poll);	     /* libmicrohttpd's wake-up checks */
		httpd_seccomp(ctx);	     /* serving connections */
		ALLOW(ctx, exit);	     /* the thread's end at metrics_final() */
		ALLOW(ctx, set_robust_list); /* thread bookkeeping in glibc */
		ALLOW(ctx, rseq);	     /* the same */
	}
}
