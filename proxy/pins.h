/* SPDX-License-Identifier: MIT */
/*
 * pins.h - the DNS pin table: which names each address was resolved from.
 * Private to proxy/ (and its unit tests).
 */
#ifndef MOAT_PROXY_PINS_H
#define MOAT_PROXY_PINS_H

#include <stdint.h>

#define PINS_NAME_MAX	 256 /* longer names are not pinned (no rule can match them) */
#define PINS_TTL_MIN_S	 10  /* a client connects a little after a TTL-0 answer */
#define PINS_TTL_MAX_S	 86400
#define PINS_DEFAULT_MAX 4096
#define PINS_LOOKUP_MAX	 16 /* names handed to the policy per address */

struct pin {
	uint8_t family; /* 4 or 6; 0 = free */
	uint8_t addr[16];
	uint64_t expires_ms;
	int32_t hnext;	    /* hash chain */
	int32_t prev, next; /* age list (oldest first) / free list */
	char name[PINS_NAME_MAX];
};

/**
 * struct pins - a bounded, TTL-expiring map address -> names
 * @e:		entries (@max of them)
 * @bucket:	hash heads (@nbucket, a power of two), -1 = empty
 * @oldest, @newest: age list; the oldest is evicted when the table is full
 * @free:	free list of entries used before and given back
 * @fresh:	entries from this index on were never used since pins_clear()
 * @count:	entries in use
 */
struct pins {
	struct pin *e;
	int32_t *bucket;
	uint32_t max, nbucket, count, fresh;
	int32_t oldest, newest, free;
};

int pins_init(struct pins *t, uint32_t max);
void pins_fini(struct pins *t);
int pins_add(struct pins *t, uint8_t family, const uint8_t *addr, const char *name, uint32_t ttl_s,
	     uint64_t now_ms);
int pins_lookup(struct pins *t, uint8_t family, const uint8_t *addr, uint64_t now_ms,
		const char **names, int max);
void pins_expire(struct pins *t, uint64_t now_ms);
void pins_clear(struct pins *t);

#endif /* MOAT_PROXY_PINS_H */
