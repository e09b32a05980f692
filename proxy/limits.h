/* SPDX-License-Identifier: MIT */
/*
 * limits.h - token buckets and the policy's "limits" section, in the
 * proxy. Private to proxy/ (and its unit tests).
 */
#ifndef MOAT_PROXY_LIMITS_H
#define MOAT_PROXY_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "policy/policy.h"

/**
 * struct tbucket - a token bucket in milli-tokens, refilled from a
 * millisecond clock
 * @rate:	tokens per second (0: the bucket is off, always full)
 * @burst:	capacity in tokens
 * @milli:	current fill in milli-tokens (may go below zero only through
 *		limits_tbucket_charge())
 * @last_ms:	time of the last refill
 */
struct tbucket {
	uint64_t rate, burst;
	int64_t milli;
	uint64_t last_ms;
};

void limits_tbucket_init(struct tbucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms);
uint64_t limits_tbucket_avail(struct tbucket *b, uint64_t now_ms);
bool limits_tbucket_take(struct tbucket *b, uint64_t n, uint64_t now_ms);
void limits_tbucket_charge(struct tbucket *b, uint64_t n, uint64_t now_ms);
uint64_t limits_tbucket_wait_ms(struct tbucket *b, uint64_t n, uint64_t now_ms);

enum limit_verdict { LIMIT_OK, LIMIT_REFUSE, LIMIT_TERMINATE };

enum limit_kind {
	LIMIT_TCP_CONNECTIONS,
	LIMIT_UDP_FLOWS,
	LIMIT_NEW_CONNECTIONS,
	LIMIT_EGRESS_BYTES,
	LIMIT_INGRESS_BYTES,
	LIMIT_KIND_COUNT
};

/**
 * struct limits - the proxy's view of policy_limits()
 * @pol:	the limits of the policy in force (copied on every reload)
 * @hdr_tcp, @hdr_udp: the caps from the command line (region header), 0 = none
 * @conn:	new connections per second
 * @egress, @ingress: bytes per second (guest -> world, world -> guest)
 */
struct limits {
	struct policy_limits pol;
	uint64_t hdr_tcp, hdr_udp;
	struct tbucket conn, egress, ingress;
};

const char *limits_name(enum limit_kind k);
void limits_init(struct limits *l, uint64_t hdr_tcp, uint64_t hdr_udp);
void limits_configure(struct limits *l, const struct policy_limits *pol, uint64_t now_ms);
enum limit_verdict limits_new_flow(struct limits *l, bool tcp, uint64_t active, uint64_t now_ms,
				   enum limit_kind *which);
uint64_t limits_bytes_allowed(struct limits *l, bool ingress, uint64_t want, uint64_t now_ms);
enum limit_verdict limits_bytes_done(struct limits *l, bool ingress, uint64_t n, uint64_t now_ms);
uint64_t limits_bytes_wait_ms(struct limits *l, bool ingress, uint64_t now_ms);

#endif /* MOAT_PROXY_LIMITS_H */
