/* SPDX-License-Identifier: MIT */
/*
 * rate.c - a token bucket: how much may pass now
 *
 * Theory of Operation
 * -------------------
 * Everything moat passes on from a less trusted process at its own pace is
 * bounded by one of these: the proxy's events on --events, the children's
 * log lines on the supervisor's stderr. A bucket holds at most @burst
 * tokens (it starts full: RATE_INIT), gains @per_s a second, and rate_take() spends @n of them or
 * refuses (the caller drops and counts). Integer arithmetic in thousandths
 * of a token, so a slow rate does not round to nothing between calls.
 * rate_take_at() takes the clock as an argument, for tests.
 */
#include <time.h>

#include "common/rate.h"

/**
 * rate_take_at() - spend @n tokens at time @now_ms, if there are that many
 * @r:		the bucket
 * @n:		tokens wanted
 * @now_ms:	a monotonic clock in milliseconds (never going back)
 *
 * Return: true if @n tokens were spent, false if fewer are left (nothing
 * is spent then).
 */
bool rate_take_at(struct rate *r, uint64_t n, uint64_t now_ms)
{
	if (r->last_ms && now_ms > r->last_ms) {
		/* Thousandths: per_s tokens a second are per_s thousandths a ms. Capped
		 * at 11 days, so the product cannot overflow for any sane per_s. */
		uint64_t dt = now_ms - r->last_ms < 1000000000u ? now_ms - r->last_ms : 1000000000u;

		r->tokens += dt * r->per_s;
		if (r->tokens > r->burst * 1000)
			r->tokens = r->burst * 1000;
	}
	if (!r->last_ms || now_ms > r->last_ms)
		r->last_ms = now_ms;
	if (n * 1000 > r->tokens)
		return false;
	r->tokens -= n * 1000;
	return true;
}

/**
 * rate_take() - spend @n tokens now, if there are that many
 * @r:	the bucket
 * @n:	tokens wanted
 *
 * Return: as rate_take_at().
 */
bool rate_take(struct rate *r, uint64_t n)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return rate_take_at(r, n, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1);
}
