/* SPDX-License-Identifier: MIT */
/*
 * events.h - the structured event stream (--events PATH|-): JSON lines
 *
 * Included by the supervisor only. The format of every event kind is in
 * docs/metrics.md ("Events").
 */
#ifndef MOAT_EVENTS_H
#define MOAT_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/channel.h"
#include "shm/moat_shm.h"

/* Every kind of event, in the order of the moat_events_total series. */
enum events_kind {
	EVENTS_START,
	EVENTS_STOP,
	EVENTS_VIOLATION,
	EVENTS_TERMINATION,
	EVENTS_CHILD_EXIT,
	EVENTS_POLICY_RELOAD,
	EVENTS_DENIAL,		 /* from the proxy */
	EVENTS_DNS_DENIAL,	 /* from the proxy */
	EVENTS_LIMIT,		 /* from the proxy */
	EVENTS_PUBLISH,		 /* a port published or unpublished through the API */
	EVENTS_TLS,		 /* from the proxy: an intercepted connection failed */
	EVENTS_SECRET_VIOLATION, /* from the proxy: a placeholder sent to another host */
	EVENTS_KIND_COUNT
};

/*
 * Proxy -> supervisor events travel on the control channel (common/channel.h:
 * framing, CHANNEL_EVENT_MAX, the kinds); a framing error is a violation.
 * Proxy events written per second in the long run, and the burst allowed:
 */
#define EVENTS_PROXY_RATE  200
#define EVENTS_PROXY_BURST 1000

/**
 * struct events_stats - what the events module has seen since start
 * @emitted:	events of each kind (counted even without --events)
 * @violations:	violation events per enum moat_violation reason
 * @reloads_ok, @reloads_failed: policy reloads
 * @proxy_rejected: proxy messages that were not a valid event
 * @proxy_suppressed: valid proxy events dropped by the rate limit
 * @write_errors: lines that could not be written
 */
struct events_stats {
	uint64_t emitted[EVENTS_KIND_COUNT];
	uint64_t violations[MOAT_VIOL_COUNT];
	uint64_t reloads_ok, reloads_failed;
	uint64_t proxy_rejected, proxy_suppressed;
	uint64_t write_errors;
};

/**
 * struct events_reader - reassembly of the proxy's framed events
 * @in:	the channel reader; zeroed at start, set up by the first
 *	events_reader_input() (limit CHANNEL_EVENT_MAX)
 */
struct events_reader {
	struct channel_in in;
};

int events_open(const char *path, char *err, size_t errlen);
void events_close(void);
void events_start(int netstack_pid, int proxy_pid);
void events_stop(int status);
void events_violation(const char *reason, const char *who, const struct moat_mailbox *m,
		      long kill_us);
void events_child_exit(const char *who, int status, int signal);
void events_reload(const char *path, bool ok, const char *err);
void events_publish(const char *action, json_t *entry);
typedef void (*events_reply_fn)(json_t *msg);
void events_on_reply(events_reply_fn fn);
int events_from_proxy(const char *json, size_t len);
int events_reader_input(struct events_reader *rd, int fd, char *err, size_t errlen);
void events_reader_fini(struct events_reader *rd);
void events_stats(struct events_stats *out);
const char *events_kind_name(enum events_kind k);
const char *events_violation_name(unsigned reason);

#endif /* MOAT_EVENTS_H */
