/* SPDX-License-Identifier: MIT */
/*
 * vring.h - virtio split virtqueues in guest memory, read as hostile input
 *
 * The piece of a vhost-user backend (issue 15, docs/frontends.md) that
 * touches guest memory: a memory table that translates guest physical
 * addresses to mappings, and the walk of a split virtqueue's descriptor
 * chains. Pure code over memory it is given; no system calls.
 */
#ifndef MOAT_VRING_H
#define MOAT_VRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VRING_MAX_REGIONS 8	 /* VHOST_USER_SET_MEM_TABLE's limit */
#define VRING_MAX_SIZE	  32768u /* virtio's largest queue */
#define VRING_MAX_SEGS	  64	 /* buffers of one chain moat takes */

#define VRING_DESC_F_NEXT     1u
#define VRING_DESC_F_WRITE    2u
#define VRING_DESC_F_INDIRECT 4u

/* The split ring's layout (virtio 1.x, little-endian on every host moat runs on). */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

/**
 * struct vring_mem - guest memory as the VMM described it
 * @gpa:	guest physical address of each region
 * @size:	its length
 * @hva:	where it is mapped here
 * @uva:	where the VMM has it mapped (the addresses of SET_VRING_ADDR)
 * @n:		regions in use
 */
struct vring_mem {
	uint64_t gpa[VRING_MAX_REGIONS];
	uint64_t size[VRING_MAX_REGIONS];
	uint8_t *hva[VRING_MAX_REGIONS];
	uint64_t uva[VRING_MAX_REGIONS];
	unsigned n;
};

/**
 * struct vring - our view of one queue: sizes and addresses checked once
 * @num:	queue size (a power of two, 1..VRING_MAX_SIZE)
 * @desc:	the descriptor table (num entries)
 * @avail:	the driver's ring: flags, idx, ring[num] (16-bit each)
 * @used:	the device's ring: flags, idx, then num used elements
 * @last_avail:	the next avail entry we take
 * @used_idx:	the next used entry we write
 */
struct vring {
	uint16_t num;
	volatile struct vring_desc *desc;
	volatile uint16_t *avail;
	volatile uint8_t *used;
	uint16_t last_avail, used_idx;
};

/**
 * struct vring_chain - one available descriptor chain, translated
 * @head:	its head index (for vring_push())
 * @out, @n_out: the driver's buffers (device reads), in order
 * @in, @n_in:	the buffers the device writes, after every @out one
 * @out_len, @in_len: their total lengths
 */
struct vring_chain {
	uint16_t head;
	struct iovec out[VRING_MAX_SEGS], in[VRING_MAX_SEGS];
	unsigned n_out, n_in;
	size_t out_len, in_len;
};

#define VRING_AVAIL_F_NO_INTERRUPT 1u

void *vring_translate(const struct vring_mem *m, uint64_t gpa, uint64_t len);
int vring_gpa_of_uva(const struct vring_mem *m, uint64_t uva, uint64_t *gpa);
int vring_setup(struct vring *v, const struct vring_mem *m, unsigned num, uint64_t desc_gpa,
		uint64_t avail_gpa, uint64_t used_gpa);
int vring_pop(struct vring *v, const struct vring_mem *m, struct vring_chain *c);
void vring_start(struct vring *v, uint16_t last_avail);
void vring_push(struct vring *v, uint16_t head, uint32_t len);
bool vring_wants_interrupt(const struct vring *v);

#endif /* MOAT_VRING_H */
