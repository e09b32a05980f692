/* SPDX-License-Identifier: MIT */
/*
 * limits.c - the policy's "limits" in the proxy: flow counts, connection
 * rate, bytes per second
 *
 * Theory of Operation
 * -------------------
 * DESIGN §8/§9: each limit has an `on_exceed` of `refuse` or `terminate`.
 * The proxy's TCP and UDP code ask limits_new_flow() before opening a
 * flow (maximum TCP connections, maximum UDP flows, new connections per
 * second) and get LIMIT_OK, LIMIT_REFUSE (CONNECT_RESULT limit, datagram
 * dropped) or LIMIT_TERMINATE (a MOAT_VIOL_LIMIT violation).
 *
 * Bytes per second are token buckets holding one second's worth. With
 * `refuse` they shape: the relay asks limits_bytes_allowed() how much it
 * may move now (read from a socket toward the guest, or hand back as
 * CREDIT toward the guest's sender) and waits limits_bytes_wait_ms() when
 * the answer is 0, so the guest's TCP slows down and nothing is dropped.
 * With `terminate` they police: everything moves, and overdrawing the
 * bucket is a violation.
 *
 * The counts caps from the command line (in the region header) always
 * refuse; the policy's own caps act as their on_exceed says. A reload
 * (limits_configure()) keeps the buckets' fill when a rate is unchanged.
 * Buckets count milli-tokens against a millisecond clock, so they are
 * exact for rates down to 1 per second. Pure code: the caller passes the
 * time.
 */
#include <string.h>

#include "proxy/limits.h"

#define RATE_MAX    (1ull << 40) /* keeps rate * ms and burst * 1000 far from overflow */
#define SHAPE_CHUNK 16384	 /* wait for at least this much (or the burst) */

static void refill(struct tbucket *b, uint64_t now_ms)
{
	int64_t full = (int64_t)(b->burst * 1000);
	uint64_t el;

	if (now_ms <= b->last_ms)
		return;
	el = now_ms - b->last_ms;
	b->last_ms = now_ms;
	if (b->milli >= full)
		return;
	/* Enough time to fill up from wherever we are? */
	if (el >= (uint64_t)(full - b->milli) / b->rate + 1)
		b->milli = full;
	else
		b->milli += (int64_t)(el * b->rate);
	if (b->milli > full)
		b->milli = full;
}

/**
 * limits_tbucket_init() - set a bucket's rate and capacity; it starts full
 * @b:		bucket
 * @rate:	tokens per second, 0 for "no limit"
 * @burst:	capacity in tokens (raised to 1)
 * @now_ms:	current time
 */
void limits_tbucket_init(struct tbucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms)
{
	if (rate > RATE_MAX)
		rate = RATE_MAX;
	if (burst > RATE_MAX)
		burst = RATE_MAX;
	if (burst < 1)
		burst = 1;
	b->rate = rate;
	b->burst = burst;
	b->milli = (int64_t)(burst * 1000);
	b->last_ms = now_ms;
}

/**
 * limits_tbucket_avail() - whole tokens available now
 * @b:		bucket
 * @now_ms:	current time
 *
 * Return: the tokens, UINT64_MAX for a bucket that is off.
 */
uint64_t limits_tbucket_avail(struct tbucket *b, uint64_t now_ms)
{
	if (!b->rate)
		return UINT64_MAX;
	refill(b, now_ms);
	return b->milli <= 0 ? 0 : (uint64_t)b->milli / 1000;
}

/**
 * limits_tbucket_take() - take @n tokens if they are all there
 * @b:		bucket
 * @n:		tokens
 * @now_ms:	current time
 *
 * Return: true if taken.
 */
bool limits_tbucket_take(struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	if (limits_tbucket_avail(b, now_ms) < n)
		return false;
	b->milli -= (int64_t)(n * 1000);
	return true;
}

/**
 * limits_tbucket_charge() - take @n tokens whether or not they are there
 * @b:		bucket
 * @n:		tokens (the fill may go below zero: that is the overdraft
 *		a policing limit reports)
 * @now_ms:	current time
 */
void limits_tbucket_charge(struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	if (!b->rate)
		return;
	refill(b, now_ms);
	if (n > RATE_MAX)
		n = RATE_MAX;
	b->milli -= (int64_t)(n * 1000);
}

/**
 * limits_tbucket_wait_ms() - how long until @n tokens are there
 * @b:		bucket
 * @n:		tokens (capped at the burst)
 * @now_ms:	current time
 *
 * Return: milliseconds, 0 if available now.
 */
uint64_t limits_tbucket_wait_ms(struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	int64_t need;

	if (!b->rate)
		return 0;
	if (n > b->burst)
		n = b->burst;
	refill(b, now_ms);
	need = (int64_t)(n * 1000) - b->milli;
	if (need <= 0)
		return 0;
	return ((uint64_t)need + b->rate - 1) / b->rate;
}

/**
 * limits_name() - the name of a limit, as in the policy file
 * @k:	which
 *
 * Return: a static string.
 */
const char *limits_name(enum limit_kind k)
{
	static const char *const names[LIMIT_KIND_COUNT] = { "max_tcp_connections", "max_udp_flows",
							     "new_connections_per_second",
							     "egress_bytes_per_second",
							     "ingress_bytes_per_second" };

	return k < LIMIT_KIND_COUNT ? names[k] : "unknown";
}

/**
 * limits_init() - no policy limits yet, only the command line's caps
 * @l:		state
 * @hdr_tcp:	--max-connections (0: none)
 * @hdr_udp:	--max-udp-flows (0: none)
 */
void limits_init(struct limits *l, uint64_t hdr_tcp, uint64_t hdr_udp)
{
	memset(l, 0, sizeof(*l));
	l->hdr_tcp = hdr_tcp;
	l->hdr_udp = hdr_udp;
}

static void rebucket(struct tbucket *b, const struct policy_limit *old,
		     const struct policy_limit *nw, uint64_t now_ms)
{
	if (!nw->set || !nw->value) {
		limits_tbucket_init(b, 0, 1, now_ms);
		return;
	}
	if (old->set && old->value == nw->value && b->rate)
		return;
	limits_tbucket_init(b, nw->value, nw->value, now_ms);
}

/**
 * limits_configure() - take the limits of a new policy
 * @l:		state
 * @pol:	policy_limits() of the policy now in force
 * @now_ms:	current time
 */
void limits_configure(struct limits *l, const struct policy_limits *pol, uint64_t now_ms)
{
	rebucket(&l->conn, &l->pol.new_connections_per_second, &pol->new_connections_per_second,
		 now_ms);
	rebucket(&l->egress, &l->pol.egress_bytes_per_second, &pol->egress_bytes_per_second,
		 now_ms);
	rebucket(&l->ingress, &l->pol.ingress_bytes_per_second, &pol->ingress_bytes_per_second,
		 now_ms);
	l->pol = *pol;
}

static enum limit_verdict verdict(const struct policy_limit *lim)
{
	return lim->on_exceed == POLICY_EXCEED_TERMINATE ? LIMIT_TERMINATE : LIMIT_REFUSE;
}

/**
 * limits_new_flow() - may one more TCP connection or UDP flow open
 * @l:		state
 * @tcp:	true for TCP, false for UDP
 * @active:	flows of that kind open now
 * @now_ms:	current time
 * @which:	set to the limit that said no
 *
 * Takes a token of the connection rate when the answer is LIMIT_OK.
 *
 * Return: LIMIT_OK, LIMIT_REFUSE or LIMIT_TERMINATE.
 */
enum limit_verdict limits_new_flow(struct limits *l, bool tcp, uint64_t active, uint64_t now_ms,
				   enum limit_kind *which)
{
	const struct policy_limit *max = tcp ? &l->pol.max_tcp_connections : &l->pol.max_udp_flows;
	uint64_t cap = tcp ? l->hdr_tcp : l->hdr_udp;

	*which = tcp ? LIMIT_TCP_CONNECTIONS : LIMIT_UDP_FLOWS;
	if (max->set && active >= max->value)
		return verdict(max);
	if (cap && active >= cap)
		return LIMIT_REFUSE;
	if (l->pol.new_connections_per_second.set && !limits_tbucket_take(&l->conn, 1, now_ms)) {
		*which = LIMIT_NEW_CONNECTIONS;
		return verdict(&l->pol.new_connections_per_second);
	}
	return LIMIT_OK;
}

static const struct policy_limit *bytes_limit(struct limits *l, bool ingress, struct tbucket **b)
{
	*b = ingress ? &l->ingress : &l->egress;
	return ingress ? &l->pol.ingress_bytes_per_second : &l->pol.egress_bytes_per_second;
}

/**
 * limits_bytes_allowed() - how many bytes may move now
 * @l:		state
 * @ingress:	true: world -> guest; false: guest -> world
 * @want:	bytes the caller would like to move
 * @now_ms:	current time
 *
 * Return: @want unless a shaping (refuse) limit has fewer tokens.
 */
uint64_t limits_bytes_allowed(struct limits *l, bool ingress, uint64_t want, uint64_t now_ms)
{
	struct tbucket *b;
	const struct policy_limit *lim = bytes_limit(l, ingress, &b);
	uint64_t avail;

	if (!lim->set || lim->on_exceed == POLICY_EXCEED_TERMINATE)
		return want;
	avail = limits_tbucket_avail(b, now_ms);
	return avail < want ? avail : want;
}

/**
 * limits_bytes_done() - account bytes that moved
 * @l:		state
 * @ingress:	direction
 * @n:		bytes
 * @now_ms:	current time
 *
 * Return: LIMIT_TERMINATE if a policing limit is now overdrawn, else LIMIT_OK.
 */
enum limit_verdict limits_bytes_done(struct limits *l, bool ingress, uint64_t n, uint64_t now_ms)
{
	struct tbucket *b;
	const struct policy_limit *lim = bytes_limit(l, ingress, &b);

	if (!lim->set)
		return LIMIT_OK;
	limits_tbucket_charge(b, n, now_ms);
	if (lim->on_exceed == POLICY_EXCEED_TERMINATE && b->milli < 0)
		return LIMIT_TERMINATE;
	return LIMIT_OK;
}

/**
 * limits_bytes_wait_ms() - when to try again after limits_bytes_allowed() said 0
 * @l:		state
 * @ingress:	direction
 * @now_ms:	current time
 *
 * Return: milliseconds (at least 1).
 */
uint64_t limits_bytes_wait_ms(struct limits *l, bool ingress, uint64_t now_ms)
{
	struct tbucket *b;
	uint64_t ms;

	bytes_limit(l, ingress, &b);
	ms = limits_tbucket_wait_ms(b, SHAPE_CHUNK, now_ms);
	return ms ? ms : 1;
}
