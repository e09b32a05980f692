/* SPDX-License-Identifier: MIT */
/*
 * arena.h - the netstack's fixed memory arena (lwIP's heap and pools).
 * Private to netstack/.
 */
#ifndef MOAT_ARENA_H
#define MOAT_ARENA_H

#include <stddef.h>
#include <stdint.h>

/**
 * struct arena_stats - what the arena reports for logs and counters
 * @size:	bytes mapped
 * @used:	bytes in allocated blocks (block sizes, headers included)
 * @peak:	highest @used seen
 * @allocs:	blocks currently allocated
 * @failures:	allocations refused since start
 */
struct arena_stats {
	size_t size, used, peak;
	uint64_t allocs, failures;
};

int arena_init(size_t size);
void arena_fini(void);
void *arena_alloc(size_t size);
void arena_free(void *ptr);
void arena_get_stats(struct arena_stats *st);
size_t arena_size_for(uint32_t max_tcp_connections, uint32_t mtu);

/* lwIP's mem_clib_* hooks (lwipopts.h). */
void *arena_lwip_malloc(size_t size);
void *arena_lwip_calloc(size_t count, size_t size);
void arena_lwip_free(void *ptr);

#endif /* MOAT_ARENA_H */
