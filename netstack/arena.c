/* SPDX-License-Identifier: MIT */
/*
 * arena.c - a buddy allocator over one mapping made before confinement
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. Once the seccomp filter is loaded the process may
 * not call brk or mmap, yet lwIP allocates on every packet. So lwIP's heap
 * (MEM_LIBC_MALLOC) and all of its pools (MEMP_MEM_MALLOC) are served by
 * this file from a single anonymous mapping sized at start-up from the
 * region header (arena_size_for()): untouched pages cost nothing, and an
 * exhausted arena is an ordinary allocation failure that lwIP already
 * handles (ERR_MEM, a dropped segment the guest retransmits).
 *
 * The allocator is a binary buddy system: blocks of 64 << order bytes,
 * one free list per order, O(log n) split and merge, no external
 * fragmentation that merging cannot undo. Each block starts with a 16-byte
 * header (order and state), so user pointers are 16-byte aligned. A block's
 * buddy is found by address arithmetic and merged only if its header says
 * it is free and of the same order.
 *
 * Not thread-safe (the netstack has one thread). Trusts its callers (lwIP
 * and the netstack); it is never handed guest-controlled sizes above 64 KiB
 * plus headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "netstack/arena.h"

#define MIN_SHIFT  6 /* 64-byte blocks at order 0 */
#define MAX_ORDERS 32
#define HDR_SIZE   16u
#define ST_FREE	   0x46524545u /* "FREE" */
#define ST_USED	   0x55534544u /* "USED" */

struct blk {
	uint32_t order;
	uint32_t state;
	uint64_t pad;
	/* free blocks only, in what would be the payload: */
	struct blk *next, *prev;
};

static struct {
	uint8_t *base;
	size_t size;
	unsigned top; /* order of the whole arena */
	struct blk *free[MAX_ORDERS];
	struct arena_stats st;
} A;

static void blk_push(struct blk *b, unsigned order)
{
	b->order = order;
	b->state = ST_FREE;
	b->prev = NULL;
	b->next = A.free[order];
	if (b->next)
		b->next->prev = b;
	A.free[order] = b;
}

static void blk_remove(struct blk *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		A.free[b->order] = b->next;
	if (b->next)
		b->next->prev = b->prev;
	b->state = ST_USED;
}

/**
 * arena_size_for() - arena size for a configuration
 * @max_tcp_connections:	the header's connection limit
 * @mtu:			the header's MTU
 *
 * A base for reassembly, frames in flight and bursts, plus room for each
 * connection's control blocks and part of its windows; rounded up to a power
 * of two and capped at 1 GiB. Only the pages lwIP touches become resident.
 *
 * Return: bytes.
 */
size_t arena_size_for(uint32_t max_tcp_connections, uint32_t mtu)
{
	size_t want = (16u << 20) + (size_t)max_tcp_connections * (32u << 10) + (size_t)mtu * 1024u;
	size_t sz = 1u << 20;

	while (sz < want && sz < (1u << 30))
		sz <<= 1;
	return sz;
}

/**
 * arena_init() - map the arena
 * @size:	bytes, rounded up to a power of two (at least 1 MiB)
 *
 * Context: before confinement (calls mmap).
 * Return: 0 or -errno.
 */
int arena_init(size_t size)
{
	size_t sz = 1u << 20;
	unsigned order = 20 - MIN_SHIFT;
	void *p;

	while (sz < size && order + 1 < MAX_ORDERS) {
		sz <<= 1;
		order++;
	}
	p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		 0);
	if (p == MAP_FAILED)
		return -errno;
	memset(&A, 0, sizeof(A));
	A.base = p;
	A.size = sz;
	A.top = order;
	A.st.size = sz;
	blk_push((struct blk *)A.base, order);
	return 0;
}

/**
 * arena_fini() - unmap the arena (tests only; the netstack never frees it)
 */
void arena_fini(void)
{
	if (A.base)
		munmap(A.base, A.size);
	memset(&A, 0, sizeof(A));
}

/**
 * arena_alloc() - allocate a block
 * @size:	bytes wanted
 *
 * Return: 16-byte aligned memory, or NULL if no block is free.
 */
void *arena_alloc(size_t size)
{
	size_t need = size + HDR_SIZE;
	unsigned order = 0, k;
	struct blk *b;

	if (!A.base || size > A.size)
		goto fail;
	while (((size_t)1 << (order + MIN_SHIFT)) < need)
		order++;
	for (k = order; k <= A.top && !A.free[k]; k++)
		;
	if (k > A.top)
		goto fail;
	b = A.free[k];
	blk_remove(b);
	while (k > order) {
		k--;
		blk_push((struct blk *)((uint8_t *)b + ((size_t)1 << (k + MIN_SHIFT))), k);
	}
	b->order = order;
	b->state = ST_USED;
	A.st.used += (size_t)1 << (order + MIN_SHIFT);
	if (A.st.used > A.st.peak)
		A.st.peak = A.st.used;
	A.st.allocs++;
	return (uint8_t *)b + HDR_SIZE;
fail:
	A.st.failures++;
	return NULL;
}

/**
 * arena_free() - return a block from arena_alloc()
 * @ptr:	the block, or NULL
 */
void arena_free(void *ptr)
{
	struct blk *b, *buddy;
	unsigned order;
	size_t off;

	if (!ptr)
		return;
	b = (struct blk *)((uint8_t *)ptr - HDR_SIZE);
	if (b->state != ST_USED)
		return; /* double free: refuse rather than corrupt the lists */
	order = b->order;
	A.st.used -= (size_t)1 << (order + MIN_SHIFT);
	A.st.allocs--;
	while (order < A.top) {
		off = (size_t)((uint8_t *)b - A.base) ^ ((size_t)1 << (order + MIN_SHIFT));
		buddy = (struct blk *)(A.base + off);
		if (buddy->state != ST_FREE || buddy->order != order)
			break;
		blk_remove(buddy);
		if (buddy < b)
			b = buddy;
		order++;
	}
	blk_push(b, order);
}

/**
 * arena_get_stats() - copy the arena's statistics
 * @st:	filled in
 */
void arena_get_stats(struct arena_stats *st)
{
	*st = A.st;
}

/**
 * arena_lwip_malloc() - lwIP's mem_clib_malloc
 * @size:	bytes
 *
 * Return: memory or NULL.
 */
void *arena_lwip_malloc(size_t size)
{
	return arena_alloc(size);
}

/**
 * arena_lwip_calloc() - lwIP's mem_clib_calloc
 * @count:	elements
 * @size:	bytes each
 *
 * Return: zeroed memory or NULL.
 */
void *arena_lwip_calloc(size_t count, size_t size)
{
	void *p;

	if (size && count > SIZE_MAX / size)
		return NULL;
	p = arena_alloc(count * size);
	if (p)
		memset(p, 0, count * size);
	return p;
}

/**
 * arena_lwip_free() - lwIP's mem_clib_free
 * @ptr:	memory from arena_lwip_malloc() or arena_lwip_calloc()
 */
void arena_lwip_free(void *ptr)
{
	arena_free(ptr);
}
