/* SPDX-License-Identifier: MIT */
/*
 * pool.c - fixed pools of equal objects for the proxy's data path
 *
 * Theory of Operation
 * -------------------
 * The proxy does not allocate while it relays: every buffer a flow needs
 * on its data path (TCP write chunks, p2s records waiting for ring space,
 * DNS queries and streams) comes from a pool whose bound is fixed at
 * start from the region's limits, so a busy or hostile guest meets a
 * counted refusal instead of growing the process. docs/proxy.md lists the
 * pools, their bounds and what a refusal does.
 *
 * A pool is one anonymous MAP_NORESERVE mapping of count * size bytes.
 * Objects are handed out first from the free list (the most recently given
 * back first, so the same few stay in cache) and then from the untouched
 * rest, in address order; so only the pages of objects ever used are
 * backed by memory. pool_trim(), called once a second, gives those pages
 * back when the pool is entirely free (madvise(MADV_DONTNEED) on an
 * anonymous private mapping: the next use finds zero pages).
 *
 * Not thread-safe: the proxy is one libuv loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "proxy/pool.h"

/**
 * pool_init() - reserve a pool
 * @p:		the pool
 * @name:	its name (static string)
 * @size:	bytes per object (at least a pointer)
 * @count:	objects (at least 1)
 *
 * Return: 0, -EINVAL for a zero count or an overflowing size, or -ENOMEM.
 */
int pool_init(struct pool *p, const char *name, size_t size, uint32_t count)
{
	void *m;

	memset(p, 0, sizeof(*p));
	p->name = name;
	if (size < sizeof(void *))
		size = sizeof(void *);
	size = (size + 15) & ~(size_t)15;
	if (!count || size > SIZE_MAX / count)
		return -EINVAL;
	m = mmap(NULL, size * count, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	p->base = m;
	p->size = size;
	p->count = count;
	return 0;
}

/**
 * pool_get() - one object
 * @p:	the pool
 *
 * Return: the object (its contents undefined), or NULL when all @p->count
 * are handed out (counted in @p->refused).
 */
void *pool_get(struct pool *p)
{
	void *obj = p->free;

	if (obj) {
		memcpy(&p->free, obj, sizeof(void *));
	} else if (p->fresh < p->count) {
		obj = p->base + (size_t)p->fresh++ * p->size;
	} else {
		p->refused++;
		return NULL;
	}
	if (++p->used > p->peak)
		p->peak = p->used;
	return obj;
}

/**
 * pool_put() - give an object back
 * @p:		the pool it came from
 * @obj:	the object, or NULL (ignored)
 */
void pool_put(struct pool *p, void *obj)
{
	if (!obj)
		return;
	memcpy(obj, &p->free, sizeof(void *));
	p->free = obj;
	p->used--;
}

/**
 * pool_trim() - give the pages of an entirely free pool back to the kernel
 * @p:	the pool
 */
void pool_trim(struct pool *p)
{
	if (p->used || !p->fresh)
		return;
	if (madvise(p->base, (size_t)p->fresh * p->size, MADV_DONTNEED) < 0)
		return; /* keep them; nothing is lost */
	p->fresh = 0;
	p->free = NULL;
}

/**
 * pool_fini() - unmap a pool (every object is gone with it)
 * @p:	the pool, initialized or zeroed
 */
void pool_fini(struct pool *p)
{
	if (p->base)
		munmap(p->base, p->size * p->count);
	p->base = NULL;
	p->free = NULL;
	p->count = p->fresh = p->used = 0;
}
