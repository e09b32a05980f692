/* SPDX-License-Identifier: MIT */
/*
 * tcpflow.h - the TCP flow table shared by tcpflow.c (the relay),
 * publish.c (published ports) and tcpdns.c (DNS over TCP): the flow, the listener, the state, and the
 * few table operations publish.c needs. Private to those two files and the
 * unit tests.
 */
#ifndef MOAT_PROXY_TCPFLOW_H
#define MOAT_PROXY_TCPFLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/list.h"
#include "proxy/proxy_internal.h"
#include "proxy/sniff.h"

#define TCP_BUCKETS 4096 /* flow id hash buckets */

enum tcp_st {
	ST_CONNECTING, /* egress: dialing the upstream */
	ST_ACCEPTING,  /* ingress: waiting for the netstack's CONNECT_RESULT */
	ST_OPEN,
	ST_DRAINING, /* id dead; writing what is queued, then FIN, then close */
	ST_CLOSED,   /* handles closing; freed when the last one is closed */
};

enum stop_why { WHY_CREDIT, WHY_RING, WHY_SHAPE };

/*
 * Guest bytes on their way to the host socket: a write pool object
 * (MOAT_POOL_TCP_WRITE), filled by DATA records and written with its own
 * uv_write(). A flow holds at most TCP_WCHUNKS_PER_FLOW of them (tcpflow.c).
 */
#define TCP_WCHUNK_BYTES 65536

struct tcp_wchunk {
	uv_write_t req;
	struct tcp_flow *f;
	uint32_t len;
	uint8_t data[TCP_WCHUNK_BYTES];
};

/**
 * struct tcp_flow - one TCP connection the proxy relays (or a DNS stream)
 * @px:		the proxy
 * @id:		the flow id shared with the netstack (FLOW_ID_INGRESS set for
 *		published ports)
 * @st:		where it is in its life
 * @why:	why reading stopped (no credit, full ring, shaped)
 * @dns:	a DNS-over-TCP stream to the forwarder: no socket, bytes go to
 *		dnsfwd.c and answers come back through @outq
 * @hashed:	in the id table (its id is alive for the netstack)
 * @active:	counted in tcp_connections_active (accepted both ways)
 * @reading:	uv_read_start() is in force on @sock
 * @eof_up:	the upstream sent its FIN (SHUT_WR sent toward the netstack)
 * @shut_guest:	the guest sent its FIN (SHUT_WR from the netstack)
 * @shut_started: uv_shutdown() of @sock was issued (after the queued writes)
 * @shut_done:	that shutdown completed
 * @to_host:	the destination is the gateway: dial loopback instead
 * @tried_other: for @to_host, the second loopback family was tried
 * @sock_open:	@sock is initialised and not yet closed
 * @timer_open:	@timer is initialised and not yet closed
 * @finishing:	DNS stream: the forwarder is done, close once @outq drained
 * @reset_pending: DNS stream: tcpflow_flush() resets it, not *_stream_output()
 * @dial_family: the address family being dialled (4 or 6)
 * @hnext:	next in the id hash bucket
 * @all:	in tcp_state.all (every flow)
 * @dirty:	in tcp_state.dirty (guest bytes gathered this iteration)
 * @shaped:	in tcp_state.shaped (waiting for a byte limit's tokens)
 * @waiter:	waiting for p2s ring space
 * @sock:	the upstream socket (not used by DNS streams)
 * @timer:	connect/accept timeout
 * @creq:	the pending connect
 * @sreq:	the pending shutdown
 * @src, @dst:	the guest-side endpoints as the netstack named them
 * @decided:	what the policy decided on (egress: @dst; ingress: the host
 *		client with the guest port), decided again on a reload
 * @credit:	bytes the netstack lets us send toward the guest
 * @owed:	guest bytes written upstream, not yet credited back
 * @unacked:	guest bytes received and not yet credited back (bounded)
 * @wb:		the chunk gathering guest bytes not yet written; written when
 *		full, or at the end of an iteration when no write is in flight
 * @writes:	uv_write()s in flight (one chunk each)
 * @last_ms:	last activity (idle timeout)
 * @deadline_ms: end of a graceful close (ST_DRAINING)
 * @ds:		the forwarder's stream state (DNS streams)
 * @outq:	DNS answers queued toward the guest (struct tcpdns_answer)
 * @outq_n:	buffers in @outq, at most TCPDNS_QUEUE_MAX
 * @sniffing:	the guest's first bytes are held until the host name they
 *		name (TLS SNI, HTTP Host) is checked (policy_wants_hostname())
 * @sniff:	those bytes (MOAT_POOL_SNIFF), NULL until the first arrive
 * @sniff_len:	how many
 * @sniff_deadline_ms: when a partial ClientHello or request head stops
 *		being waited for (decided without a name)
 * @first:	the connect's decision (the one the host name refines)
 * @hostname:	the name the client sent, "" if none (decided again on reload)
 * @tls:	an intercepted connection (proxy/tlsrelay.c): the guest side is
 *		relayed to moat-tls's pipe instead of @sock, NULL otherwise
 * @handles:	libuv handles not yet closed; freed when 0 in ST_CLOSED
 */
struct tcp_flow {
	struct proxy *px;
	uint32_t id;
	enum tcp_st st;
	enum stop_why why;
	bool dns, hashed, active, reading, eof_up, shut_guest, shut_started, shut_done;
	bool to_host, tried_other, sock_open, timer_open, finishing, reset_pending;
	uint8_t dial_family;
	struct tcp_flow *hnext;
	struct list_head all, dirty, shaped;
	struct relay_waiter waiter;
	uv_tcp_t sock;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_shutdown_t sreq;
	struct flow_endpoint src, dst, decided;
	uint64_t credit, owed, unacked;
	struct tcp_wchunk *wb;
	uint32_t writes;
	uint64_t last_ms, deadline_ms;
	struct dnsfwd_stream *ds;
	struct list_head outq;
	uint32_t outq_n;
	bool sniffing;
	uint8_t *sniff;
	uint32_t sniff_len;
	uint64_t sniff_deadline_ms;
	struct policy_decision first;
	int rule;			      /* the rule that allowed it (-1: default) */
	uint64_t born_ms, tx_bytes, rx_bytes; /* for the API's GET /flows */
	char hostname[SNIFF_NAME_MAX + 1];
	struct tls_splice *tls;
	int handles;
};

/* A published port (publish.c). */
struct tcp_listener {
	uv_tcp_t sock;
	uv_timer_t retry;
	struct proxy *px;
	struct policy_publish pub;
	struct sockaddr_storage ss; /* where we listen */
	struct list_head node;
	bool sock_open; /* @sock initialised and not closed */
	bool held;	/* libuv holds a connection for us */
	bool closing;	/* publish_fini(): free once @handles is 0 */
	int handles;
};

struct tcp_state {
	struct tcp_flow *hash[TCP_BUCKETS];
	struct list_head all, dirty, shaped, listeners;
	uint64_t count, active;
	uint32_t next_ingress;
	uint64_t accept_errors; /* published listeners: failed accepts */
	uv_timer_t shape_timer;
	bool shape_armed;
};

struct tls_splice;
uv_stream_t *tlsrelay_guest_stream(struct tls_splice *s);

struct tcp_flow *tcpflow_find(struct proxy *px, uint32_t id);
struct tcp_flow *tcpflow_new(struct proxy *px, uint32_t id);
void tcpflow_close_handles(struct proxy *px, struct tcp_flow *f, bool reset);
void tcpflow_set_active(struct proxy *px, struct tcp_flow *f);
void tcpflow_start_reading(struct tcp_flow *f);
int tcpflow_start_timer(struct proxy *px, struct tcp_flow *f);
void tcpflow_kill(struct proxy *px, struct tcp_flow *f, bool send_close, bool reset);
void tcpflow_maybe_done(struct proxy *px, struct tcp_flow *f);
void tcpflow_mark_dirty(struct tcp_flow *f);
void tcpflow_handle_closed(struct tcp_flow *f);

/* What the guest's bytes are relayed to: the server's socket, or moat-tls's pipe. */
static inline uv_stream_t *tcpflow_peer(struct tcp_flow *f)
{
	return f->tls ? tlsrelay_guest_stream(f->tls) : (uv_stream_t *)&f->sock;
}

/* tlsrelay.c: TLS interception */
bool tlsrelay_wants(const struct proxy *px, const char *sni);
int tlsrelay_start(struct proxy *px, struct tcp_flow *f, const char *sni);
void tlsrelay_close(struct tcp_flow *f);
bool tlsrelay_done(const struct tls_splice *s);

/* tcpdns.c: DNS over TCP, a flow whose far end is dnsfwd.c's stream */
void tcpdns_drop(struct tcp_flow *f);
int tcpdns_init(struct proxy *px);

#endif
