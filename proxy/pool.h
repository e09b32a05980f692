/* SPDX-License-Identifier: MIT */
/*
 * pool.h - fixed pools of equal objects, sized at start (see pool.c)
 */
#ifndef MOAT_PROXY_POOL_H
#define MOAT_PROXY_POOL_H

#include <stddef.h>
#include <stdint.h>

/**
 * struct pool - @count objects of @size bytes in one reserved mapping
 * @name:	for logs and tests
 * @base:	the mapping (@count * @size bytes, reserved, touched as used)
 * @size:	bytes per object (rounded up to 16)
 * @count:	objects in the pool: the bound
 * @fresh:	objects below this index have been handed out at least once
 * @used:	objects handed out now
 * @peak:	the most ever handed out at once
 * @refused:	pool_get() calls that found the pool empty
 * @free:	objects given back, most recent first (linked through their
 *		first word)
 */
struct pool {
	const char *name;
	uint8_t *base;
	size_t size;
	uint32_t count, fresh, used, peak;
	uint64_t refused;
	void *free;
};

int pool_init(struct pool *p, const char *name, size_t size, uint32_t count);
void *pool_get(struct pool *p);
void pool_put(struct pool *p, void *obj);
void pool_trim(struct pool *p);
void pool_fini(struct pool *p);

#endif
