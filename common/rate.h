/* SPDX-License-Identifier: MIT */
/*
 * rate.h - a token bucket: how much may pass now
 */
#ifndef MOAT_RATE_H
#define MOAT_RATE_H

#include <stdbool.h>
#include <stdint.h>

/**
 * struct rate - a token bucket over CLOCK_MONOTONIC
 * @per_s:	tokens added per second
 * @burst:	most tokens held (and the start)
 * @tokens:	tokens now, in thousandths (no floating point: the netstack's rules)
 * @last_ms:	when @tokens was last brought up to date (0: never)
 */
struct rate {
	uint64_t per_s, burst;
	uint64_t tokens;
	uint64_t last_ms;
};

/* RATE_INIT(per_s, burst) - a full bucket, as an initializer */
#define RATE_INIT(per_s_, burst_)                                                        \
	{                                                                                \
		.per_s = (per_s_), .burst = (burst_), .tokens = (uint64_t)(burst_)*1000, \
		.last_ms = 0                                                             \
	}

bool rate_take_at(struct rate *r, uint64_t n, uint64_t now_ms);
bool rate_take(struct rate *r, uint64_t n);

#endif /* MOAT_RATE_H */
