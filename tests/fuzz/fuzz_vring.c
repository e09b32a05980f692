/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vring.c - libFuzzer harness for the split-virtqueue walker
 * (shm/vring.c): the input is guest memory at guest physical 0x100000 (the
 * descriptor table first, then the avail and used rings; the first two
 * bytes choose the queue size and where our avail index starts);
 * every chain is popped and pushed back. ASan/UBSan find any access outside
 * the memory given.
 */
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhost/vring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM 0x8000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static _Alignas(16) uint8_t guest[MEM];
	struct vring_mem m = { .gpa = { 0x100000 }, .size = { MEM }, .hva = { guest }, .n = 1 };
	struct vring_chain c;
	struct vring v;
	unsigned num;

	if (size < 2)
		return 0;
	num = 1u << (data[0] % 9); /* 1..256 */
	memset(guest, 0, sizeof(guest));
	memcpy(guest, data + 2, size - 2 < MEM ? size - 2 : MEM);
	/* Packed from the start, so that short inputs reach the avail ring. */
	{
		uint64_t avail = 16u * num, used = (avail + 6u + 2u * num + 3u) & ~3ull;

		if (vring_setup(&v, &m, num, 0x100000, 0x100000 + avail, 0x100000 + used) < 0)
			return 0;
	}
	v.last_avail = data[1];
	for (int i = 0; i < 300; i++) {
		int rc = vring_pop(&v, &m, &c);

		if (rc == -EAGAIN || rc == -EIO)
			break; /* nothing offered, or an impossible avail index */
		if (rc == -EBADMSG)
			vring_push(&v, c.head, 0); /* as moat-vhost does: handed back unused */
		if (rc == 0) {
			for (unsigned k = 0; k < c.n_out; k++)
				if (c.out[k].iov_len)
					(void)*(volatile uint8_t *)c.out[k].iov_base;
			for (unsigned k = 0; k < c.n_in; k++)
				if (c.in[k].iov_len)
					((volatile uint8_t *)c.in[k]
						 .iov_base)[c.in[k].iov_len - 1] = 0;
			vring_push(&v, c.head, (uint32_t)c.in_len);
		}
	}
	return 0;
}
