/* SPDX-License-Identifier: MIT */
/*
 * test_vring.c - split virtqueues in guest memory (shm/vring.c): address
 * translation, queue set-up, chains, indirect tables, and every way a guest
 * can make them impossible
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "vhost/vring.h"

#define GPA   0x10000ull
#define DESC  (GPA + 0x0000)
#define AVAIL (GPA + 0x1000)
#define USED  (GPA + 0x2000)
#define DATA  (GPA + 0x4000)
#define QN    16u

static _Alignas(16) uint8_t guest[0x10000];
static struct vring_mem mem;
static struct vring vq;

static struct vring_desc *desc(unsigned i)
{
	return (struct vring_desc *)(void *)(guest + (DESC - GPA)) + i;
}

static uint16_t *avail(void)
{
	return (uint16_t *)(void *)(guest + (AVAIL - GPA));
}

static void setup(void)
{
	memset(guest, 0, sizeof(guest));
	memset(&mem, 0, sizeof(mem));
	mem.gpa[0] = GPA;
	mem.size[0] = sizeof(guest);
	mem.hva[0] = guest;
	mem.n = 1;
	cr_assert_eq(vring_setup(&vq, &mem, QN, DESC, AVAIL, USED), 0);
}

/* Make chain @head available (the driver's side). */
static void offer(uint16_t head)
{
	uint16_t *a = avail();

	a[2 + (a[1] & (QN - 1))] = head;
	a[1]++;
}

static void set(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	*desc(i) = (struct vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
}

TestSuite(vring, .init = setup);

Test(vring, translate_stays_inside_one_region)
{
	cr_assert_eq(vring_translate(&mem, GPA, 16), guest);
	cr_assert_eq(vring_translate(&mem, GPA + sizeof(guest) - 1, 1), guest + sizeof(guest) - 1);
	cr_assert_null(vring_translate(&mem, GPA + sizeof(guest) - 1, 2), "crosses the end");
	cr_assert_null(vring_translate(&mem, GPA - 1, 1), "before the region");
	cr_assert_null(vring_translate(&mem, UINT64_MAX - 4, 16), "wraps around");
	cr_assert_null(vring_translate(&mem, GPA, sizeof(guest) + 1));
}

Test(vring, setup_refuses_impossible_queues)
{
	struct vring v;

	cr_assert_eq(vring_setup(&v, &mem, 0, DESC, AVAIL, USED), -EINVAL);
	cr_assert_eq(vring_setup(&v, &mem, 3, DESC, AVAIL, USED), -EINVAL, "not a power of two");
	cr_assert_eq(vring_setup(&v, &mem, 65536, DESC, AVAIL, USED), -EINVAL);
	cr_assert_eq(vring_setup(&v, &mem, QN, DESC + 8, AVAIL, USED), -EINVAL, "misaligned");
	cr_assert_eq(vring_setup(&v, &mem, QN, DESC, AVAIL + 1, USED), -EINVAL);
	cr_assert_eq(vring_setup(&v, &mem, QN, DESC, AVAIL, USED + 2), -EINVAL);
	cr_assert_eq(vring_setup(&v, &mem, 4096, GPA + 0xf000, AVAIL, USED), -EINVAL,
		     "a descriptor table past the end of memory");
	cr_assert_eq(vring_setup(&v, &mem, QN, 0x1000, AVAIL, USED), -EINVAL, "not guest memory");
}

Test(vring, chains_readable_then_writable)
{
	struct vring_chain c;

	cr_assert_eq(vring_pop(&vq, &mem, &c), -EAGAIN);
	set(0, DATA, 100, VRING_DESC_F_NEXT, 5);
	set(5, DATA + 0x100, 200, VRING_DESC_F_WRITE, 0);
	offer(0);
	cr_assert_eq(vring_pop(&vq, &mem, &c), 0);
	cr_assert_eq(c.head, 0);
	cr_assert_eq(c.n_out, 1);
	cr_assert_eq(c.n_in, 1);
	cr_assert_eq(c.out[0].iov_base, guest + (DATA - GPA));
	cr_assert_eq(c.out_len, 100);
	cr_assert_eq(c.in_len, 200);
	vring_push(&vq, c.head, 42);
	{
		const uint8_t *u = guest + (USED - GPA);
		uint32_t id, len;
		uint16_t idx;

		memcpy(&idx, u + 2, 2);
		memcpy(&id, u + 4, 4);
		memcpy(&len, u + 8, 4);
		cr_assert_eq(idx, 1);
		cr_assert_eq(id, 0);
		cr_assert_eq(len, 42);
	}
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EAGAIN);
}

Test(vring, hostile_chains_are_refused_not_followed)
{
	struct vring_chain c;

	set(0, DATA, 10, VRING_DESC_F_NEXT, 1);
	set(1, DATA, 10, VRING_DESC_F_NEXT, 0);
	offer(0);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "a loop");
	set(2, 0x100, 10, 0, 0);
	offer(2);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "outside guest memory");
	set(3, GPA + sizeof(guest) - 4, 10, 0, 0);
	offer(3);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "crossing the end of memory");
	set(4, DATA, 10, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
	set(6, DATA, 10, 0, 0);
	offer(4);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "readable after writable");
	offer(QN);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "a head beyond the table");
	set(7, DATA, 10, VRING_DESC_F_NEXT, 200);
	offer(7);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "next beyond the table");
	/* A good chain after all that still works: each bad head was consumed. */
	set(8, DATA, 10, 0, 0);
	offer(8);
	cr_assert_eq(vring_pop(&vq, &mem, &c), 0);
	cr_assert_eq(c.head, 8);
}

Test(vring, an_avail_index_beyond_the_queue_is_corrupt)
{
	struct vring_chain c;

	avail()[1] = QN + 1;
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EIO);
}

Test(vring, vmm_addresses_translate_to_guest_physical_ones)
{
	struct vring_mem vm = { .n = 2 };
	uint64_t gpa = 0;

	vm.gpa[0] = 0, vm.size[0] = 0x1000, vm.uva[0] = 0x7f0000000000;
	vm.gpa[1] = 0x100000, vm.size[1] = 0x2000, vm.uva[1] = 0x7f1000000000;
	cr_assert_eq(vring_gpa_of_uva(&vm, 0x7f0000000010, &gpa), 0);
	cr_assert_eq(gpa, 0x10);
	cr_assert_eq(vring_gpa_of_uva(&vm, 0x7f1000001fff, &gpa), 0);
	cr_assert_eq(gpa, 0x101fff);
	cr_assert_eq(vring_gpa_of_uva(&vm, 0x7f0000001000, &gpa), -EINVAL, "one past the end");
	cr_assert_eq(vring_gpa_of_uva(&vm, 0x7effffffffff, &gpa), -EINVAL, "below");
	cr_assert_eq(vring_gpa_of_uva(&vm, 0, &gpa), -EINVAL);
}

Test(vring, start_continues_from_the_used_index_in_memory)
{
	volatile uint16_t *used_idx = (volatile uint16_t *)(void *)(vq.used + 2);

	*used_idx = 77;
	vring_start(&vq, 70);
	cr_assert_eq(vq.last_avail, 70);
	cr_assert_eq(vq.used_idx, 77);
	vring_push(&vq, 3, 0);
	cr_assert_eq(*used_idx, 78);
	cr_assert(vring_wants_interrupt(&vq));
	avail()[0] = VRING_AVAIL_F_NO_INTERRUPT;
	cr_assert_not(vring_wants_interrupt(&vq));
}

Test(vring, too_many_segments)
{
	struct vring big;
	struct vring_chain c;
	struct vring_desc *d = (struct vring_desc *)(void *)(guest + 0x8000);
	uint16_t *a = (uint16_t *)(void *)(guest + 0x3000);

	cr_assert_eq(vring_setup(&big, &mem, 128, GPA + 0x8000, GPA + 0x3000, GPA + 0x3400), 0);
	for (unsigned i = 0; i < VRING_MAX_SEGS + 1; i++)
		d[i] = (struct vring_desc){ DATA, 8, i < VRING_MAX_SEGS ? VRING_DESC_F_NEXT : 0,
					    (uint16_t)(i + 1) };
	a[2] = 0;
	a[1] = 1;
	cr_assert_eq(vring_pop(&big, &mem, &c), -EBADMSG);
}

Test(vring, indirect_tables)
{
	struct vring_desc *t = (struct vring_desc *)(void *)(guest + 0x6000);
	struct vring_chain c;

	t[0] = (struct vring_desc){ DATA, 12, VRING_DESC_F_NEXT, 1 };
	t[1] = (struct vring_desc){ DATA + 0x100, 1500, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
	t[2] = (struct vring_desc){ DATA + 0x800, 1500, VRING_DESC_F_WRITE, 0 };
	set(0, GPA + 0x6000, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	offer(0);
	cr_assert_eq(vring_pop(&vq, &mem, &c), 0);
	cr_assert_eq(c.n_out, 1);
	cr_assert_eq(c.n_in, 2);
	cr_assert_eq(c.in_len, 3000);

	set(1, GPA + 0x6000, 3 * sizeof(struct vring_desc) - 1, VRING_DESC_F_INDIRECT, 0);
	offer(1);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "not a whole number of descriptors");
	t[3] = (struct vring_desc){ GPA + 0x6000, 16, VRING_DESC_F_INDIRECT, 0 };
	set(2, GPA + 0x6000 + 3 * sizeof(struct vring_desc), sizeof(struct vring_desc),
	    VRING_DESC_F_INDIRECT, 0);
	offer(2);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "an indirect table in an indirect table");
	set(3, GPA + 0x6000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 4);
	offer(3);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "indirect with NEXT");
	t[4] = (struct vring_desc){ DATA, 8, VRING_DESC_F_NEXT, 4 };
	set(5, GPA + 0x6000 + 4 * sizeof(struct vring_desc), sizeof(struct vring_desc),
	    VRING_DESC_F_INDIRECT, 0);
	offer(5);
	cr_assert_eq(vring_pop(&vq, &mem, &c), -EBADMSG, "a loop in an indirect table");
}
