/* SPDX-License-Identifier: MIT */
/*
 * events.c - one JSON object per line for machines (DESIGN §10)
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor. Every event has "ts" (RFC 3339 UTC with
 * microseconds) and "event"; the rest depends on the kind. Events the
 * supervisor sees itself (start, stop, violations, child exits, reloads)
 * are written directly; events the proxy sees (denials) arrive on the
 * control socket, are parsed as untrusted JSON, checked to be an object of
 * a known kind, stamped and re-serialized here, so a compromised proxy
 * cannot inject arbitrary lines. Each line is written with one write(2)
 * and the stream is line-buffered, so a reader never sees half a line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/events.h"

static int events_fd = -1;

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
	if (!strcmp(path, "-")) {
		events_fd = dup(STDOUT_FILENO);
	} else {
		events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	}
	if (events_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	fcntl(events_fd, F_SETFD, FD_CLOEXEC);
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

/* Write @o (stolen) as one line. */
static void emit(json_t *o)
{
	char *s;
	size_t n;

	if (events_fd < 0) {
		json_decref(o);
		return;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return;
	n = strlen(s);
	s = realloc(s, n + 2);
	if (!s)
		return;
	s[n] = '\n';
	if (write(events_fd, s, n + 1) < 0)
		log_warn("events: write failed: %s", strerror(errno));
	free(s);
}

static json_t *event(const char *kind)
{
	json_t *o = json_object();

	stamp(o, kind);
	return o;
}

/**
 * events_start() - the "start" event
 * @netstack_pid: pid of moat-netstack
 * @proxy_pid:	pid of moat-proxy
 */
void events_start(int netstack_pid, int proxy_pid)
{
	json_t *o = event("start");

	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "netstack_pid", json_integer(netstack_pid));
	json_object_set_new(o, "proxy_pid", json_integer(proxy_pid));
	emit(o);
}

/**
 * events_stop() - the "stop" event of a clean stop
 * @status:	exit status
 */
void events_stop(int status)
{
	json_t *o = event("stop");

	json_object_set_new(o, "status", json_integer(status));
	emit(o);
}

/**
 * events_violation() - a fatal violation and the kill that followed
 * @reason:	violation name
 * @who:	reporting process
 * @m:		the mailbox copy (untrusted words)
 * @kill_us:	microseconds the kill took
 */
void events_violation(const char *reason, const char *who, const struct moat_mailbox *m,
		      long kill_us)
{
	json_t *o = event("violation");

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
	/* Untrusted bytes: jansson rejects invalid UTF-8, so fall back to a marker. */
	json_object_set_new(o, "detail", json_string(m->detail) ? json_string(m->detail)
								  : json_string("(not UTF-8)"));
	emit(o);
	o = event("termination");
	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "kill_us", json_integer(kill_us));
	emit(o);
}

/**
 * events_child_exit() - a child process ended
 * @who:	its name
 * @status:	exit status, -1 if killed
 * @signal:	killing signal, 0 if exited
 */
void events_child_exit(const char *who, int status, int signal)
{
	json_t *o = event("child_exit");

	json_object_set_new(o, "process", json_string(who));
	json_object_set_new(o, "status", json_integer(status));
	json_object_set_new(o, "signal", json_integer(signal));
	emit(o);
}

/**
 * events_reload() - a SIGHUP policy reload
 * @path:	policy file
 * @ok:		whether the new policy is in force
 * @err:	why not, or NULL
 */
void events_reload(const char *path, bool ok, const char *err)
{
	json_t *o = event("policy_reload");

	json_object_set_new(o, "file", json_string(path));
	json_object_set_new(o, "ok", json_boolean(ok));
	if (err)
		json_object_set_new(o, "error", json_string(err));
	emit(o);
}

/**
 * events_from_proxy() - validate, stamp and write an event the proxy sent
 * @json:	the proxy's JSON text (untrusted)
 * @len:	its length
 *
 * Accepted kinds: "denial", "dns_denial", "limit". Other fields are copied
 * if they are strings or integers.
 *
 * Return: 0, or -1 if the message is malformed (the caller counts it).
 */
int events_from_proxy(const char *json, size_t len)
{
	static const char *const kinds[] = { "denial", "dns_denial", "limit", NULL };
	json_error_t e;
	json_t *in = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e), *out, *v;
	const char *kind, *key;
	int ok = 0;

	if (!in || !json_is_object(in) || !json_is_string(json_object_get(in, "event"))) {
		json_decref(in);
		return -1;
	}
	kind = json_string_value(json_object_get(in, "event"));
	for (int i = 0; kinds[i]; i++)
		ok |= !strcmp(kind, kinds[i]);
	if (!ok) {
		json_decref(in);
		return -1;
	}
	out = event(kind);
	json_object_foreach(in, key, v) {
		if (!strcmp(key, "event") || !strcmp(key, "ts"))
			continue;
		if (json_is_string(v) || json_is_integer(v) || json_is_boolean(v))
			json_object_set(out, key, v);
	}
	json_decref(in);
	emit(out);
	return 0;
}
