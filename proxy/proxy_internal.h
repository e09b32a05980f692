/* SPDX-License-Identifier: MIT */
/*
 * proxy_internal.h - the proxy's state and the interfaces between its files:
 * proxy.c (start-up, confinement), relay.c (rings, validation, dispatch),
 * control.c (configuration and events), tcpflow.c, publish.c, udpflow.c, dnsfwd.c, ping.c,
 * limits.c, pins.c. Private to proxy/ and its unit tests.
 */
#ifndef MOAT_PROXY_INTERNAL_H
#define MOAT_PROXY_INTERNAL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/list.h"
#include "policy/policy.h"
#include "proxy/limits.h"
#include "tls/tlsmsg.h"
#include "proxy/pins.h"
#include "proxy/pool.h"
#include "shm/flow.h"
#include "shm/region.h"
#include "shm/ring.h"

struct tcp_state;
struct udp_state;
struct dnsfwd;
struct icmp_state;
struct control;
struct tcp_flow;
struct tlsrelay;

/**
 * struct relay_waiter - something that stopped producing because p2s was
 * full (a socket no longer read); resumed when the netstack frees space
 * @node:	in proxy->waiters
 * @resume:	called once, from the loop, when space may be there
 */
struct relay_waiter {
	struct list_head node;
	void (*resume)(struct relay_waiter *w);
};

/**
 * struct proxy - everything the proxy process owns
 * @region:	its view of the shared region (header copy in region.hdr)
 * @loop:	the libuv loop
 * @s2p, @p2s:	flow rings (consumer, producer)
 * @cnt:	counters
 * @mbox:	violation mailbox
 * @policy:	the policy in force (replaced on reload), NULL until the first
 *		control document arrived
 * @env:	the "host" group addresses (gateway, DNS, gateway v6)
 * @generation:	the control document's generation of @policy
 * @violation:	a fatal violation was reported: nothing is processed anymore
 * @exit_status: what proxy_main() returns once the loop stops
 * @efd_self:	our eventfd (s2p data, p2s space)
 * @efd_netstack: the netstack's eventfd (p2s data, s2p space)
 * @efd_supervisor: the supervisor's eventfd (mailbox)
 * @control_fd:	the control socket
 * @nameservers: upstream DNS servers from the control document
 * @n_nameservers: how many
 * @publish:	published ports from the control document (start-up)
 * @n_publish:	how many
 * @pins:	DNS pin table
 * @limits:	limits state
 * @backlog:	p2s records that did not fit, in order (struct backlog_rec,
 *		from @pools[MOAT_POOL_P2S_CONTROL] or [MOAT_POOL_P2S_DGRAM])
 * @backlog_len: records in @backlog
 * @pools:	the fixed pools of the data path (enum moat_pool; pool.c), each
 *		made by the file that uses it, all unmapped by relay_fini()
 * @waiters:	producers waiting for p2s space (struct relay_waiter)
 * @p2s_blocked: we asked the netstack to wake us for space
 * @efd_poll, @prepare, @idle, @tick: loop handles of relay.c
 * @tcp, @udp, @dns, @icmp, @ctl: per-file state
 * @tls:	the channel to moat-tls (tlsrelay.c), NULL when it does not run
 */
struct proxy {
	struct region region;
	uv_loop_t loop;
	struct ring s2p, p2s;
	struct moat_proxy_counters *cnt;
	struct moat_mailbox *mbox;
	struct policy *policy;
	struct policy_env env;
	uint64_t generation;
	bool violation;
	int exit_status;
	int efd_self, efd_netstack, efd_supervisor, control_fd;
	struct sockaddr_storage nameservers[POLICY_MAX_NAMESERVERS];
	int n_nameservers;
	struct policy_publish publish[POLICY_MAX_PUBLISH];
	int n_publish;
	struct pins pins;
	struct limits limits;
	struct list_head backlog;
	uint64_t backlog_len;
	struct pool pools[MOAT_POOL_COUNT];
	struct list_head waiters;
	bool p2s_blocked;
	uv_poll_t efd_poll;
	uv_prepare_t prepare;
	uv_idle_t idle;
	uv_timer_t tick;
	struct tcp_state *tcp;
	struct udp_state *udp;
	struct udppub_state *udppub;
	struct dnsfwd *dns;
	struct icmp_state *icmp;
	struct control *ctl;
	struct tlsrelay *tls;
};

/* Counters: one writer (us), relaxed atomics (DESIGN §3). */
#define CNT_ADD(px, field, n)                                                             \
	atomic_store_explicit((_Atomic uint64_t *)&(px)->cnt->field,                      \
			      atomic_load_explicit((_Atomic uint64_t *)&(px)->cnt->field, \
						   memory_order_relaxed) +                \
				      (n),                                                \
			      memory_order_relaxed)
#define CNT_SUB(px, field, n) CNT_ADD(px, field, (uint64_t)0 - (uint64_t)(n))
#define CNT_SET(px, field, v) \
	atomic_store_explicit((_Atomic uint64_t *)&(px)->cnt->field, (v), memory_order_relaxed)

/* tlsrelay.c: the channel to moat-tls (the flows' side is in tcpflow.h) */
#define TLSRELAY_MAX_FLOWS TLSMSG_MAX_FLOWS /* intercepted connections at once */
int tlsrelay_init(struct proxy *px, int fd);
void tlsrelay_fini(struct proxy *px);

/* relay.c */
int relay_init(struct proxy *px);
void relay_fini(struct proxy *px);
void relay_send(struct proxy *px, uint32_t type, const void *msg, uint32_t len);
void relay_sendv(struct proxy *px, uint32_t type, const void *hdr, uint32_t hlen, const void *data,
		 uint32_t dlen);
void relay_dgram_alloc(struct proxy *px, uv_buf_t *buf);
void relay_dgram_commit(struct proxy *px, const uv_buf_t *buf, size_t n,
			const struct flow_endpoint *src, const struct flow_endpoint *dst,
			const struct flow_endpoint *peer);
void *relay_reserve(struct proxy *px, uint32_t hlen, uint32_t want, uint32_t *got);
void relay_commit(struct proxy *px, uint32_t type, uint32_t len);
void relay_wait(struct proxy *px, struct relay_waiter *w);
bool relay_backlogged(const struct proxy *px);
void relay_violation(struct proxy *px, uint32_t reason, int rule, uint32_t flow, uint8_t proto,
		     const struct flow_endpoint *dst, const char *detail);
struct policy_decision relay_decide(struct proxy *px, enum policy_direction dir,
				    enum policy_proto proto, const struct flow_endpoint *dst);
bool relay_denied(struct proxy *px, struct policy_decision d, enum policy_direction dir,
		  enum policy_proto proto, const struct flow_endpoint *dst, uint32_t flow);
bool relay_denied_why(struct proxy *px, struct policy_decision d, enum policy_direction dir,
		      enum policy_proto proto, const struct flow_endpoint *dst, uint32_t flow,
		      const char *reason, const char *name);
struct policy_decision relay_decide_hostname(struct proxy *px, const struct flow_endpoint *dst,
					     struct policy_decision first, const char *hostname,
					     bool *mismatch);
bool relay_limit(struct proxy *px, enum limit_verdict v, enum limit_kind which, uint32_t flow,
		 uint8_t proto, const struct flow_endpoint *dst);
bool relay_is_host(const struct proxy *px, const struct flow_endpoint *ep);
bool relay_is_dns(const struct proxy *px, const struct flow_endpoint *ep);
bool relay_dns_intercepts(const struct proxy *px, const struct flow_endpoint *dst);
int relay_sockaddr(const struct proxy *px, const struct flow_endpoint *ep, bool to_host,
		   struct sockaddr_storage *ss);
void relay_endpoint(const struct sockaddr *sa, struct flow_endpoint *ep);
int relay_format_ep(const struct flow_endpoint *ep, char *buf, size_t len);
void relay_kick(struct proxy *px);
void relay_policy_changed(struct proxy *px);

/* control.c */
int control_init(struct proxy *px);
void control_fini(struct proxy *px);
int control_apply(struct proxy *px, const char *json, size_t len, char *err, size_t errlen);
void control_event(struct proxy *px, const char *json);
void control_event_denial(struct proxy *px, const char *event, enum policy_direction dir,
			  enum policy_proto proto, const struct flow_endpoint *dst,
			  const char *name, int rule, bool terminate, uint32_t flow,
			  const char *reason);
void control_event_limit(struct proxy *px, const char *limit, bool terminate, uint32_t flow,
			 uint8_t proto, const struct flow_endpoint *dst);

/* tcpflow.c */
int tcpflow_init(struct proxy *px);
void tcpflow_fini(struct proxy *px);
void tcpflow_connect_input(struct proxy *px, const struct flow_connect *c);
void tcpflow_data_input(struct proxy *px, uint32_t id, const uint8_t *data, uint32_t len);
void tcpflow_credit_input(struct proxy *px, uint32_t id, uint32_t bytes);
void tcpflow_shut_input(struct proxy *px, uint32_t id);
void tcpflow_close_input(struct proxy *px, uint32_t id, bool reset);
void tcpflow_flush(struct proxy *px);
void tcpflow_tick(struct proxy *px, uint64_t now_ms);
uint64_t tcpflow_active(const struct proxy *px);
void tcpflow_reevaluate(struct proxy *px);

/* tcpdns.c: DNS over TCP, dnsfwd.c's side */
int tcpdns_output(struct proxy *px, struct tcp_flow *f, const void *data, uint32_t len);
void tcpdns_credit(struct proxy *px, struct tcp_flow *f, uint32_t bytes);
void tcpdns_finish(struct proxy *px, struct tcp_flow *f);

/* publish.c */
int publish_listen(struct proxy *px, const struct policy_publish *pub);
const struct policy_publish *publish_find(struct proxy *px, const struct policy_publish *pub);
int publish_remove(struct proxy *px, const struct policy_publish *pub);
void publish_list(struct proxy *px, void (*fn)(void *arg, const struct policy_publish *pub),
		  void *arg);
void publish_result_input(struct proxy *px, const struct flow_connect_result *r);
uint64_t publish_accept_errors(const struct proxy *px);
void publish_fini(struct proxy *px);

/* udpflow.c */
int udpflow_init(struct proxy *px);
void udpflow_fini(struct proxy *px);
void udpflow_input(struct proxy *px, const struct flow_dgram *d, const uint8_t *data, uint32_t len);
void udpflow_tick(struct proxy *px, uint64_t now_ms);
uint64_t udpflow_active(const struct proxy *px);

/**
 * struct relay_flow_info - one open flow, as the control API lists it
 * @proto:	POLICY_PROTO_TCP or POLICY_PROTO_UDP
 * @ingress:	opened from the host (a published port)
 * @src, @dst:	the opening side and the other (egress: guest, remote;
 *		ingress: the host peer, the guest)
 * @state:	"connecting", "open", "closing" (TCP), "open" (UDP)
 * @rule:	the rule that allowed it, -1 for the direction's default
 * @tx, @rx:	bytes toward the host socket, and from it
 * @born_ms:	when it was opened (the proxy's loop clock)
 */
struct relay_flow_info {
	enum policy_proto proto;
	bool ingress;
	const struct flow_endpoint *src, *dst;
	const char *state;
	int rule;
	uint64_t tx, rx, born_ms;
};

typedef void (*relay_flow_fn)(void *arg, const struct relay_flow_info *fi);

void tcpflow_list(struct proxy *px, relay_flow_fn fn, void *arg);
void udpflow_list(struct proxy *px, relay_flow_fn fn, void *arg);
void udppub_list(struct proxy *px, relay_flow_fn fn, void *arg);

/* udppub.c: published UDP ports */
int udppub_init(struct proxy *px);
void udppub_fini(struct proxy *px);
int udppub_listen(struct proxy *px, const struct policy_publish *pub);
bool udppub_reply(struct proxy *px, const struct flow_dgram *d, const uint8_t *data, uint32_t len);
void udppub_tick(struct proxy *px, uint64_t now_ms);
void udppub_reevaluate(struct proxy *px);
const struct policy_publish *udppub_find(struct proxy *px, const struct policy_publish *pub);
int udppub_remove(struct proxy *px, const struct policy_publish *pub);
void udppub_list_ports(struct proxy *px, void (*fn)(void *arg, const struct policy_publish *pub),
		       void *arg);
void udpflow_reevaluate(struct proxy *px);

/* dnsfwd.c */
struct dnsfwd_stream;
int dnsfwd_init(struct proxy *px);
void dnsfwd_fini(struct proxy *px);
void dnsfwd_udp_input(struct proxy *px, const struct flow_dgram *d, const uint8_t *data,
		      uint32_t len);
struct dnsfwd_stream *dnsfwd_stream_open(struct proxy *px, struct tcp_flow *f,
					 const struct flow_endpoint *server,
					 const struct flow_endpoint *guest);
void dnsfwd_stream_input(struct proxy *px, struct dnsfwd_stream *s, const uint8_t *data,
			 uint32_t len);
void dnsfwd_stream_shut(struct proxy *px, struct dnsfwd_stream *s);
void dnsfwd_stream_close(struct proxy *px, struct dnsfwd_stream *s);
void dnsfwd_tick(struct proxy *px, uint64_t now_ms);

/* ping.c */
int ping_init(struct proxy *px);
void ping_fini(struct proxy *px);
void ping_input(struct proxy *px, const struct flow_echo *e, const uint8_t *data, uint32_t len);
void ping_tick(struct proxy *px, uint64_t now_ms);

#endif /* MOAT_PROXY_INTERNAL_H */
