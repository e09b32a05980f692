/* SPDX-License-Identifier: MIT */
/*
 * region.h - creating and mapping moat's shared-memory region
 */
#ifndef MOAT_REGION_H
#define MOAT_REGION_H

#include <stdint.h>

#include "shm/moat_shm.h"

/**
 * struct region - one process's view of the region
 * @fd:		the memfd
 * @hdr:	private copy of the header, validated when the view was made
 * @part:	where each mapped part starts (NULL: not mapped by this process)
 */
struct region {
	int fd;
	struct moat_shm_header hdr;
	void *part[MOAT_PART_COUNT];
};

/* Parameters the supervisor chooses (ring sizes are powers of two). */
struct region_config {
	uint64_t frame_ring_bytes; /* g2s and s2g */
	uint64_t flow_ring_bytes;  /* s2p and p2s */
};

#define REGION_PART_BIT(p) (1u << (p))
#define REGION_ALL_PARTS   ((1u << MOAT_PART_COUNT) - 1)

int region_create(const struct region_config *cfg, const struct moat_shm_header *proto,
		  struct region *r);
int region_map(int fd, uint32_t parts, struct region *r);
int region_adopt(int fd, uint32_t parts, struct region *r);
void region_unmap(struct region *r);
uint64_t region_ring_capacity(const struct region *r, enum moat_part p);
int region_check_seals(int fd);

#endif /* MOAT_REGION_H */
