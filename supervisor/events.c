/* SPDX-License-Identifier: MIT */
/*
 * events.c - one JSON object per line for machines (DESIGN §10)
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's main thread. Every event has "ts" (RFC 3339 UTC
 * with microseconds) and "event"; the rest depends on the kind (the format
 * of each is in docs/metrics.md). Events the supervisor sees itself (start,
 * stop, violations, terminations, child exits, reloads) are written
 * directly.
 *
 * Events the proxy sees (denial, dns_denial, limit) arrive on the control
 * channel (common/channel.h). events_reader_input() reassembles them with
 * the channel's reader, from non-blocking reads into one buffer of
 * CHANNEL_EVENT_MAX allocated on first use; a length of 0 or above
 * CHANNEL_EVENT_MAX can only come from a broken or compromised proxy and is
 * returned as -EPROTO, which run.c turns into a bad_message violation.
 * Each message is then parsed as untrusted JSON by events_from_proxy():
 * it must be an object of a known proxy kind (jansson rejects invalid
 * UTF-8, NUL bytes and, as asked, duplicate keys), the documented fields of its kind must have their documented types, and
 * of the rest only scalar fields with tame key names are copied. The
 * supervisor stamps the time and the kind itself and re-serializes, so a
 * compromised proxy cannot inject arbitrary lines; a token bucket
 * (EVENTS_PROXY_RATE per second, EVENTS_PROXY_BURST) keeps a guest that
 * hammers a denied address from filling the disk through the proxy. What
 * is rejected or suppressed is counted, and the counters are exported as
 * metrics.
 *
 * Counters are bumped here, in the main thread, and read by the metrics
 * HTTP thread, so they are relaxed atomics. Each line goes out with one
 * write(2) (O_APPEND for files), so a reader never sees half a line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rate.h"
#include "supervisor/events.h"

#define FIELD_MAX  32	/* fields copied from one proxy event */
#define KEY_MAX	   32	/* length of a copied key */
#define STRING_MAX 1024 /* bytes of a copied string value */

static int events_fd = -1;

static _Atomic uint64_t n_emitted[EVENTS_KIND_COUNT];
static _Atomic uint64_t n_violations[MOAT_VIOL_COUNT];
static _Atomic uint64_t n_reloads_ok, n_reloads_failed;
static _Atomic uint64_t n_proxy_rejected, n_proxy_suppressed, n_write_errors;

static const char *const kind_names[EVENTS_KIND_COUNT] = {
	[EVENTS_START] = "start",
	[EVENTS_STOP] = "stop",
	[EVENTS_VIOLATION] = "violation",
	[EVENTS_TERMINATION] = "termination",
	[EVENTS_CHILD_EXIT] = "child_exit",
	[EVENTS_POLICY_RELOAD] = "policy_reload",
	[EVENTS_DENIAL] = "denial",
	[EVENTS_DNS_DENIAL] = "dns_denial",
	[EVENTS_LIMIT] = "limit",
	[EVENTS_PUBLISH] = "publish",
	[EVENTS_TLS] = "tls",
	[EVENTS_SECRET_VIOLATION] = "secret_violation",
};

static const char *const violation_names[MOAT_VIOL_COUNT] = {
	"none",	       "policy_terminate", "limit",	    "spoof",	       "ring_corrupt",
	"bad_message", "child_exit",	   "child_stalled", "secret_violation"
};

static void bump(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/**
 * events_kind_name() - the "event" value of a kind
 * @k:	kind
 *
 * Return: a static string ("start", "denial", ...), "unknown" if out of range.
 */
const char *events_kind_name(enum events_kind k)
{
	return (unsigned)k < EVENTS_KIND_COUNT ? kind_names[k] : "unknown";
}

/**
 * events_violation_name() - the name of a violation reason
 * @reason:	enum moat_violation (may come from a mailbox: checked)
 *
 * Return: a static string; "none" for out-of-range values.
 */
const char *events_violation_name(unsigned reason)
{
	return reason < MOAT_VIOL_COUNT ? violation_names[reason] : violation_names[0];
}

/**
 * events_stats() - a snapshot of the event counters
 * @out:	filled
 *
 * Context: any thread (the metrics HTTP thread reads these).
 */
void events_stats(struct events_stats *out)
{
	for (int i = 0; i < EVENTS_KIND_COUNT; i++)
		out->emitted[i] = atomic_load_explicit(&n_emitted[i], memory_order_relaxed);
	for (int i = 0; i < MOAT_VIOL_COUNT; i++)
		out->violations[i] = atomic_load_explicit(&n_violations[i], memory_order_relaxed);
	out->reloads_ok = atomic_load_explicit(&n_reloads_ok, memory_order_relaxed);
	out->reloads_failed = atomic_load_explicit(&n_reloads_failed, memory_order_relaxed);
	out->proxy_rejected = atomic_load_explicit(&n_proxy_rejected, memory_order_relaxed);
	out->proxy_suppressed = atomic_load_explicit(&n_proxy_suppressed, memory_order_relaxed);
	out->write_errors = atomic_load_explicit(&n_write_errors, memory_order_relaxed);
}

/**
 * events_open() - open the stream
 * @path:	file path (appended to), "-" for stdout, NULL for none
 * @err:	error text on failure
 * @errlen:	size of @err
 *
 * Return: 0 or -1.
 */
int events_open(const char *path, char *err, size_t errlen)
{
	if (!path)
		return 0;
	if (!strcmp(path, "-"))
		events_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	else
		events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (events_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/**
 * events_close() - close the stream
 */
void events_close(void)
{
	if (events_fd >= 0)
		close(events_fd);
	events_fd = -1;
}

static void stamp(json_t *o, const char *kind)
{
	struct timespec ts;
	struct tm tm;
	char buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%06ldZ", ts.tv_nsec / 1000);
	json_object_set_new(o, "ts", json_string(buf));
	json_object_set_new(o, "event", json_string(kind));
}

/* Write @o (stolen) as one line; count it as @kind. */
static void emit(enum events_kind kind, json_t *o)
{
	char *s;
	size_t n, off = 0;

	bump(&n_emitted[kind]);
	if (events_fd < 0) {
		json_decref(o);
		return;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s) {
		bump(&n_write_errors);
		return;
	}
	n = strlen(s);
	{
		char *t = realloc(s, n + 2);

		if (!t) {
			free(s);
			bump(&n_write_errors);
			return;
		}
		s = t;
	}
	s[n++] = '\n';
	/* A pipe may take a long line in pieces; a file takes it at once. */
	while (off < n) {
		ssize_t w = write(events_fd, s + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!atomic_fetch_add_explicit(&n_write_errors, 1, memory_order_relaxed))
				log_warn("events: write failed: %s", strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	free(s);
}

static json_t *event(enum events_kind kind)
{
	json_t *o = json_object();

	stamp(o, kind_names[kind]);
	return o;
}

/**
 * events_start() - the "start" event
 * @netstack_pid: pid of moat-netstack
 * @proxy_pid:	pid of moat-proxy
 */
void events_start(int netstack_pid, int proxy_pid)
{
	json_t *o = event(EVENTS_START);

	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "netstack_pid", json_integer(netstack_pid));
	json_object_set_new(o, "proxy_pid", json_integer(proxy_pid));
	json_object_set_new(o, "version", json_string(MOAT_VERSION));
	emit(EVENTS_START, o);
}

/**
 * events_stop() - the "stop" event of a clean stop
 * @status:	exit status
 */
void events_stop(int status)
{
	json_t *o = event(EVENTS_STOP);

	json_object_set_new(o, "status", json_integer(status));
	emit(EVENTS_STOP, o);
}

/**
 * events_violation() - a fatal violation and the kill that followed
 * @reason:	violation name
 * @who:	reporting process
 * @m:		the mailbox copy (untrusted words); m->reason is counted
 * @kill_us:	microseconds the kill took
 *
 * Also counts the violation for moat_policy_violations_total, so run.c's
 * violation() needs nothing else before metrics_final().
 */
void events_violation(const char *reason, const char *who, const struct moat_mailbox *m,
		      long kill_us)
{
	json_t *o = event(EVENTS_VIOLATION), *detail;
	char d[sizeof(m->detail)];

	bump(&n_violations[m->reason < MOAT_VIOL_COUNT ? m->reason : 0]);
	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "process", json_string(who));
	json_object_set_new(o, "rule", json_integer(m->rule));
	json_object_set_new(o, "flow", json_integer(m->flow));
	if (m->dst_family == 4 || m->dst_family == 6) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(m->dst_family == 4 ? AF_INET : AF_INET6, m->dst_addr, a, sizeof(a));
		json_object_set_new(o, "dst", json_string(a));
		json_object_set_new(o, "dst_port", json_integer(m->dst_port));
	}
	/* Untrusted bytes, maybe unterminated: bound them; jansson rejects bad UTF-8. */
	memcpy(d, m->detail, sizeof(d));
	d[sizeof(d) - 1] = '\0';
	detail = json_string(d);
	json_object_set_new(o, "detail", detail ? detail : json_string("(not UTF-8)"));
	emit(EVENTS_VIOLATION, o);
	o = event(EVENTS_TERMINATION);
	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "kill_us", json_integer(kill_us));
	emit(EVENTS_TERMINATION, o);
}

/**
 * events_child_exit() - a child process ended
 * @who:	its name
 * @status:	exit status, -1 if killed
 * @signal:	killing signal, 0 if exited
 */
void events_child_exit(const char *who, int status, int signal)
{
	json_t *o = event(EVENTS_CHILD_EXIT);

	json_object_set_new(o, "process", json_string(who));
	json_object_set_new(o, "status", json_integer(status));
	json_object_set_new(o, "signal", json_integer(signal));
	emit(EVENTS_CHILD_EXIT, o);
}

/**
 * events_reload() - a SIGHUP policy reload
 * @path:	policy file
 * @ok:		whether the new policy is in force
 * @err:	why not, or NULL
 */
void events_reload(const char *path, bool ok, const char *err)
{
	json_t *o = event(EVENTS_POLICY_RELOAD), *e;

	bump(ok ? &n_reloads_ok : &n_reloads_failed);
	e = json_string(path);
	json_object_set_new(o, "file", e ? e : json_string("(not UTF-8)"));
	json_object_set_new(o, "ok", json_boolean(ok));
	if (err) {
		e = json_string(err);
		json_object_set_new(o, "error", e ? e : json_string("(not UTF-8)"));
	}
	emit(EVENTS_POLICY_RELOAD, o);
}

/**
 * events_publish() - a port published or unpublished through the control API
 * @action:	"add" or "delete"
 * @entry:	{"protocol", "host_address", "host_port"[, "guest_port"]} (borrowed)
 */
void events_publish(const char *action, json_t *entry)
{
	json_t *o = event(EVENTS_PUBLISH);
	const char *key;
	json_t *v;

	json_object_set_new(o, "action", json_string(action));
	json_object_foreach(entry, key, v)
	{
		if (!strcmp(key, "protocol") || !strcmp(key, "host_address") ||
		    !strcmp(key, "host_port") || !strcmp(key, "guest_port"))
			json_object_set(o, key, v);
	}
	emit(EVENTS_PUBLISH, o);
}

/* The documented fields of each proxy kind, with the JSON types they may have. */
#define T_STR  1
#define T_INT  2
#define T_BOOL 4

struct field_spec {
	const char *key;
	int types;
};

static const struct field_spec denial_fields[] = { { "direction", T_STR },  { "protocol", T_STR },
						   { "dst", T_STR },	    { "dst_port", T_INT },
						   { "src", T_STR },	    { "guest_port", T_INT },
						   { "rule", T_INT },	    { "flow", T_INT },
						   { "terminate", T_BOOL }, { NULL, 0 } };
static const struct field_spec dns_denial_fields[] = {
	{ "direction", T_STR }, { "protocol", T_STR },	 { "name", T_STR },
	{ "dst", T_STR },	{ "dst_port", T_INT },	 { "rule", T_INT },
	{ "flow", T_INT },	{ "terminate", T_BOOL }, { NULL, 0 }
};
static const struct field_spec limit_fields[] = {
	{ "limit", T_STR }, { "action", T_STR },   { "protocol", T_STR },
	{ "dst", T_STR },   { "dst_port", T_INT }, { "flow", T_INT },
	{ NULL, 0 }
};

static const struct field_spec tls_fields[] = { { "outcome", T_STR }, { "side", T_STR },
						{ "reason", T_STR },  { "flow", T_INT },
						{ "sni", T_STR },     { NULL, 0 } };
static const struct field_spec secret_fields[] = { { "placeholder", T_STR },
						   { "flow", T_INT },
						   { "sni", T_STR },
						   { "action", T_STR },
						   { NULL, 0 } };

static int type_of(const json_t *v)
{
	if (json_is_string(v))
		return T_STR;
	if (json_is_integer(v))
		return T_INT;
	if (json_is_boolean(v))
		return T_BOOL;
	return 0;
}

/* A key we are willing to copy: [a-z0-9_], 1..KEY_MAX bytes. */
static bool tame_key(const char *k)
{
	size_t n = 0;

	for (; k[n]; n++)
		if (n == KEY_MAX ||
		    !((k[n] >= 'a' && k[n] <= 'z') || (k[n] >= '0' && k[n] <= '9') || k[n] == '_'))
			return false;
	return n > 0;
}

/* May one more proxy event be written? */
static bool rate_allows(void)
{
	static struct rate r = RATE_INIT(EVENTS_PROXY_RATE, EVENTS_PROXY_BURST);

	return rate_take(&r, 1);
}

static int reject(json_t *in)
{
	json_decref(in);
	bump(&n_proxy_rejected);
	return -1;
}

static events_reply_fn reply_hook;

/**
 * events_on_reply() - where the proxy's answers to requests go
 * @fn:	called with each {"reply": ...} message (borrowed), or NULL
 *
 * The control API's requests to the proxy (GET /flows) are answered on the
 * same channel as the events; those messages are not events and never
 * reach --events.
 */
void events_on_reply(events_reply_fn fn)
{
	reply_hook = fn;
}

/**
 * events_from_proxy() - validate, stamp and write an event the proxy sent
 * @json:	the proxy's JSON text (untrusted)
 * @len:	its length
 *
 * Accepted kinds: "denial", "dns_denial", "limit", "tls",
 * "secret_violation". The documented fields
 * of the kind (docs/metrics.md) must have their documented types; other
 * fields are copied only if their key is [a-z0-9_]{1,32} and their value
 * a string (up to 1024 bytes), an integer or a boolean, at most 32 in all.
 * "ts" and "event" are always the supervisor's own. A valid event beyond
 * the rate limit is counted as suppressed and not written.
 *
 * Context: supervisor main thread.
 * Return: 0 if written (or suppressed), -1 if the message is malformed
 * (counted in events_stats.proxy_rejected).
 */
int events_from_proxy(const char *json, size_t len)
{
	const struct field_spec *spec;
	enum events_kind kind;
	json_error_t e;
	json_t *in, *out, *v;
	const char *k, *key;
	int copied = 0;

	in = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
	if (json_is_object(in) && json_is_string(json_object_get(in, "reply"))) {
		/* An answer to a control API request, not an event. */
		if (reply_hook)
			reply_hook(in);
		json_decref(in);
		return 0;
	}
	if (!in || !json_is_object(in) || !json_is_string(json_object_get(in, "event")))
		return reject(in);
	k = json_string_value(json_object_get(in, "event"));
	if (!strcmp(k, "denial"))
		kind = EVENTS_DENIAL, spec = denial_fields;
	else if (!strcmp(k, "dns_denial"))
		kind = EVENTS_DNS_DENIAL, spec = dns_denial_fields;
	else if (!strcmp(k, "limit"))
		kind = EVENTS_LIMIT, spec = limit_fields;
	else if (!strcmp(k, "tls"))
		kind = EVENTS_TLS, spec = tls_fields;
	else if (!strcmp(k, "secret_violation"))
		kind = EVENTS_SECRET_VIOLATION, spec = secret_fields;
	else
		return reject(in);
	for (const struct field_spec *f = spec; f->key; f++) {
		v = json_object_get(in, f->key);
		if (v && !(type_of(v) & f->types))
			return reject(in);
		if (json_is_string(v) && json_string_length(v) > STRING_MAX)
			return reject(in);
	}
	if (!rate_allows()) {
		bump(&n_proxy_suppressed);
		json_decref(in);
		return 0;
	}
	out = event(kind);
	json_object_foreach(in, key, v)
	{
		if (!strcmp(key, "event") || !strcmp(key, "ts") || !tame_key(key))
			continue;
		if (!type_of(v) || (json_is_string(v) && json_string_length(v) > STRING_MAX))
			continue;
		if (copied++ == FIELD_MAX)
			break;
		json_object_set(out, key, v);
	}
	json_decref(in);
	emit(kind, out);
	return 0;
}

/* channel_msg_cb: one complete message from the proxy. Never fails: a bad event is not fatal. */
static int reader_msg(void *arg, const char *msg, size_t len)
{
	(void)arg;
	if (events_from_proxy(msg, len) < 0) {
		uint64_t r = atomic_load_explicit(&n_proxy_rejected, memory_order_relaxed);

		/* 1, 2, 4, 8, ...: enough to notice, never a flood. */
		if (!(r & (r - 1)))
			log_warn("events: dropped a malformed event from the proxy (%llu so far)",
				 (unsigned long long)r);
	}
	return 0;
}

/**
 * events_reader_input() - read what the proxy sent and write its events
 * @rd:		reassembly state for this connection (zeroed at start; the
 *		first call allocates its buffer, events_reader_fini() frees it)
 * @fd:		our end of the control socketpair (a stream socket)
 * @err:	why, when -EPROTO is returned
 * @errlen:	size of @err
 *
 * Reads without blocking (MSG_DONTWAIT, whatever the fd's O_NONBLOCK flag)
 * until the socket is drained or CHANNEL_READ_BUDGET bytes were read (the
 * loop is level-triggered and calls again). Each complete message goes to
 * events_from_proxy(); malformed JSON is counted there, not fatal.
 *
 * Context: supervisor main thread, when @fd is readable.
 * Return: 1 if the channel is still open, 0 on end of file, -EPROTO if the
 * proxy broke the framing (a length of 0 or above CHANNEL_EVENT_MAX),
 * -ENOMEM if the first call could not allocate, another -errno if reading
 * failed.
 */
int events_reader_input(struct events_reader *rd, int fd, char *err, size_t errlen)
{
	char why[128];
	int rc;

	if (!rd->in.buf) {
		rc = channel_in_init(&rd->in, CHANNEL_EVENT_MAX);
		if (rc < 0)
			return rc;
	}
	rc = channel_in_read(&rd->in, fd, reader_msg, NULL, why, sizeof(why));
	if (rc == -EPROTO)
		snprintf(err, errlen, "control channel: %s", why);
	if (rc == 0 && channel_in_pending(&rd->in))
		log_warn("events: the proxy closed its channel mid-message (%zu bytes)",
			 channel_in_pending(&rd->in));
	return rc;
}

/**
 * events_reader_fini() - free a reader's buffer
 * @rd:	reader (used or still zeroed); may be called twice
 */
void events_reader_fini(struct events_reader *rd)
{
	channel_in_fini(&rd->in);
}
