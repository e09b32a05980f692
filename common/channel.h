/* SPDX-License-Identifier: MIT */
/*
 * channel.h - the supervisor <-> proxy control channel: framing, limits, messages
 *
 * Included by both ends: the supervisor (supervisor/run.c sends, events.c
 * reads) and the proxy (proxy/control.c). This header is the protocol.
 *
 * Transport
 * ---------
 * One AF_UNIX SOCK_STREAM socketpair, created by the supervisor before it
 * forks; the proxy holds its end at FD_CONTROL (common/fds.h). Both ends
 * are used without blocking (MSG_DONTWAIT): each side queues what it sends
 * in a bounded struct channel_out and writes it when the socket is
 * writable, and reassembles what it receives in a struct channel_in.
 *
 * Framing, both ways
 * ------------------
 *	u32 length (host order: both ends are the same binary on the same host)
 *	length bytes of UTF-8 JSON, one document, not NUL-terminated
 *
 * A length of 0 or above the receiver's limit is a framing error: the
 * stream cannot be resynchronized and the sender is broken or compromised.
 * The supervisor treats one from the proxy as a fatal violation
 * (bad_message); the proxy, which trusts its parent, stops.
 *
 * Supervisor -> proxy: configuration documents (at most CHANNEL_CONFIG_MAX)
 * -------------------------------------------------------------------------
 * One at start-up, then one per successful SIGHUP reload. Each is a whole
 * new configuration; a later one supersedes an earlier one.
 *
 *   { "policy": { ...the normalized policy (policy_to_json)... },
 *     "nameservers": ["192.0.2.53:53", "[2001:db8::53]:53"],   (start-up only)
 *     "publish": [ { "host_address": "127.0.0.1", "host_port": 8080,
 *                    "guest_port": 80, "protocol": "tcp" } ],   (start-up only)
 *     "generation": 1 }
 *
 * The proxy parses it with the same strict code as a policy file (unknown
 * and duplicate keys are errors) and changes nothing unless the whole
 * document is valid; a rejected start-up document stops the proxy.
 *
 * Proxy -> supervisor: events (at most CHANNEL_EVENT_MAX)
 * -------------------------------------------------------
 * One compact JSON object per message, its kind in "event":
 *
 *   { "event": "denial", "direction": "egress", "protocol": "tcp",
 *     "dst": "203.0.113.10", "dst_port": 443, "rule": 2, "flow": 7 }
 *   { "event": "dns_denial", "direction": "egress", "protocol": "udp",
 *     "name": "blocked.example.", "rule": -1 }
 *   { "event": "limit", "limit": "max_tcp_connections", "action": "refuse",
 *     "protocol": "tcp", "dst": "203.0.113.10", "dst_port": 443 }
 *
 * (ingress denials carry "src" and "guest_port" instead of "dst" and
 * "dst_port"; "terminate": true marks a fatal match). The supervisor
 * treats each as untrusted: it checks the kind and the documented fields'
 * types, copies only tame scalar fields, stamps "ts" itself and writes the
 * line to --events (supervisor/events.c; the format is in docs/metrics.md).
 * A malformed event is counted and dropped; a framing error is fatal. The
 * proxy never blocks on events: when its queue is full they are dropped
 * and counted.
 */
#ifndef MOAT_CHANNEL_H
#define MOAT_CHANNEL_H

#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the length prefix in front of every message. */
#define CHANNEL_HDR 4u

/* The largest configuration document (supervisor -> proxy). */
#define CHANNEL_CONFIG_MAX (4u << 20)

/* The largest event (proxy -> supervisor); the biggest real one is < 2 KiB. */
#define CHANNEL_EVENT_MAX (64u << 10)

/*
 * The supervisor's outgoing queue: one document being written and one
 * waiting. A reload that does not fit is refused like a bad policy file
 * (the old policy stays in force; the policy_reload event says why), and
 * a proxy that takes nothing at all meets CHANNEL_DRAIN_TIMEOUT_MS.
 */
#define CHANNEL_SUPERVISOR_QUEUE_MAX (2u * (CHANNEL_HDR + CHANNEL_CONFIG_MAX))

/* The proxy's outgoing queue of events; beyond it, events are dropped and counted. */
#define CHANNEL_PROXY_QUEUE_MAX (1u << 20)

/* Bytes one channel_in_read() call takes at most, so one peer cannot starve a loop. */
#define CHANNEL_READ_BUDGET (256u << 10)

/*
 * A peer that does not drain the supervisor's queue within this time is
 * treated as a fatal violation by the supervisor (exit 3, "violation"
 * event, VM killed), like a corrupt ring: a stopped or compromised proxy
 * must not freeze the supervisor, and a proxy that cannot take its
 * configuration cannot be trusted to enforce it. "Drain" means progress:
 * any byte the proxy takes restarts the clock (channel_out_stalled_ms()).
 * Five seconds is far beyond what a live proxy needs to read 8 MiB, and
 * short enough that an orchestrator sees the failure.
 */
#define CHANNEL_DRAIN_TIMEOUT_MS 5000

/* The "event" values of proxy -> supervisor messages. */
#define CHANNEL_EVENT_DENIAL	 "denial"
#define CHANNEL_EVENT_DNS_DENIAL "dns_denial"
#define CHANNEL_EVENT_LIMIT	 "limit"

/**
 * struct channel_out - a bounded queue of framed messages waiting for the socket
 * @buf:	max_bytes, allocated once by channel_out_init()
 * @head:	first byte not yet written
 * @tail:	end of the queued bytes; pending = @tail - @head
 * @max_msg:	the largest message channel_out_push() accepts
 * @max_bytes:	the bound on pending bytes (frames included)
 * @stalled_since: CLOCK_MONOTONIC ms of the last progress, or of the push
 *		that made the queue non-empty; 0 when empty
 *
 * Fields are private to common/channel.c.
 */
struct channel_out {
	uint8_t *buf;
	size_t head, tail;
	size_t max_msg, max_bytes;
	uint64_t stalled_since;
};

/**
 * struct channel_in - reassembly of framed messages from non-blocking reads
 * @buf:	CHANNEL_HDR + @max_msg bytes, allocated once by channel_in_init()
 * @have:	bytes buffered: at most one partial message between calls
 * @max_msg:	the largest message accepted; above it is a framing error
 *
 * Fields are private to common/channel.c.
 */
struct channel_in {
	uint8_t *buf;
	size_t have;
	size_t max_msg;
};

/* Called for each complete message; a negative return stops reading (-EPROTO). */
typedef int (*channel_msg_cb)(void *arg, const char *msg, size_t len);

uint64_t channel_now_ms(void);

int channel_out_init(struct channel_out *q, size_t max_msg, size_t max_bytes);
void channel_out_fini(struct channel_out *q);
int channel_out_push(struct channel_out *q, const void *msg, size_t len);
int channel_out_flush(struct channel_out *q, int fd);
size_t channel_out_pending(const struct channel_out *q);
uint64_t channel_out_stalled_since_ms(const struct channel_out *q);
uint64_t channel_out_stalled_ms(const struct channel_out *q);

int channel_in_init(struct channel_in *r, size_t max_msg);
void channel_in_fini(struct channel_in *r);
int channel_in_read(struct channel_in *r, int fd, channel_msg_cb on_msg, void *arg, char *err,
		    size_t errlen);
size_t channel_in_pending(const struct channel_in *r);
void channel_seccomp(scmp_filter_ctx ctx);

#endif /* MOAT_CHANNEL_H */
