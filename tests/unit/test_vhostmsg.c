/* SPDX-License-Identifier: MIT */
/*
 * test_vhostmsg.c - vhost-user messages (shm/vhostmsg.c): the requests a
 * VMM sends to a net backend, as QEMU lays them out, and every way a
 * message can be impossible
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vhost/vhostmsg.h"

static uint8_t buf[VHOSTMSG_MAX + 64];
static size_t len;

static void put32(size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		buf[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void put64(size_t off, uint64_t v)
{
	put32(off, (uint32_t)v);
	put32(off + 4, (uint32_t)(v >> 32));
}

/* A message with @size payload bytes (zeroed, filled by the test). */
static void msg(uint32_t request, uint32_t flags, uint32_t size)
{
	memset(buf, 0, sizeof(buf));
	put32(0, request);
	put32(4, flags);
	put32(8, size);
	len = VHOSTMSG_HDR + size;
}

static int check(unsigned nfds, struct vhostmsg *m)
{
	const char *why;
	int rc = vhostmsg_check(buf, len, nfds, m, &why);

	if (rc)
		cr_assert_not_null(why, "a refusal says why");
	return rc;
}

Test(vhostmsg, features_and_owner)
{
	struct vhostmsg m;

	msg(VHOSTMSG_GET_FEATURES, 1, 0);
	cr_assert_eq(check(0, &m), 0);
	msg(VHOSTMSG_SET_FEATURES, 1 | VHOSTMSG_F_NEED_REPLY, 8);
	put64(12, 0x140000000ull);
	cr_assert_eq(check(0, &m), 0);
	cr_assert_eq(m.u64, 0x140000000ull);
	cr_assert(m.flags & VHOSTMSG_F_NEED_REPLY);
	msg(VHOSTMSG_SET_OWNER, 1, 0);
	cr_assert_eq(check(0, &m), 0);
	msg(VHOSTMSG_SET_FEATURES, 1, 4);
	cr_assert_eq(check(0, &m), -EBADMSG, "a short u64");
	msg(VHOSTMSG_SET_OWNER, 1, 0);
	cr_assert_eq(check(1, &m), -EBADMSG, "a descriptor nobody asked for");
}

Test(vhostmsg, header)
{
	struct vhostmsg m;

	msg(VHOSTMSG_GET_FEATURES, 2, 0);
	cr_assert_eq(check(0, &m), -EBADMSG, "version 2");
	msg(VHOSTMSG_GET_FEATURES, 1 | VHOSTMSG_F_REPLY, 0);
	cr_assert_eq(check(0, &m), -EBADMSG, "a reply sent to us");
	msg(VHOSTMSG_SET_FEATURES, 1, 8);
	len -= 1;
	cr_assert_eq(check(0, &m), -EBADMSG, "size and length disagree");
	len = 11;
	cr_assert_eq(check(0, &m), -EBADMSG, "a short header");
	msg(VHOSTMSG_SET_FEATURES, 1, 100000);
	len = sizeof(buf);
	cr_assert_eq(check(0, &m), -EBADMSG, "too long");
	msg(6 /* SET_LOG_BASE */, 1, 16);
	cr_assert_eq(check(1, &m), -ENOTSUP);
	msg(999, 1, 0);
	cr_assert_eq(check(0, &m), -ENOTSUP);
}

Test(vhostmsg, memory_table)
{
	struct vhostmsg m;

	msg(VHOSTMSG_SET_MEM_TABLE, 1, 8 + 2 * 32);
	put32(12, 2);
	put64(20, 0), put64(28, 0xa0000), put64(36, 0x7f0000000000), put64(44, 0);
	put64(52, 0x100000), put64(60, 0x10000000), put64(68, 0x7f1000000000), put64(76, 0xc0000);
	cr_assert_eq(check(2, &m), 0);
	cr_assert_eq(m.nregions, 2);
	cr_assert_eq(m.region[1].gpa, 0x100000);
	cr_assert_eq(m.region[1].mmap_offset, 0xc0000);
	cr_assert_eq(check(1, &m), -EBADMSG, "a descriptor missing");
	put64(52, 0x50000);
	cr_assert_eq(check(2, &m), -EBADMSG, "overlapping regions");
	put64(52, UINT64_MAX - 10);
	cr_assert_eq(check(2, &m), -EBADMSG, "a region wrapping around");
	put64(52, 0x100000), put64(60, 0);
	cr_assert_eq(check(2, &m), -EBADMSG, "an empty region");
	put32(12, 9);
	cr_assert_eq(check(9, &m), -EBADMSG, "nine regions");
	put32(12, 0);
	cr_assert_eq(check(0, &m), -EBADMSG, "no region");
}

Test(vhostmsg, vrings)
{
	struct vhostmsg m;

	msg(VHOSTMSG_SET_VRING_NUM, 1, 8);
	put32(12, 1), put32(16, 256);
	cr_assert_eq(check(0, &m), 0);
	cr_assert_eq(m.index, 1);
	cr_assert_eq(m.num, 256);
	put32(16, 300);
	cr_assert_eq(check(0, &m), -EBADMSG, "not a power of two");
	put32(12, 2), put32(16, 256);
	cr_assert_eq(check(0, &m), -EBADMSG, "a third queue");
	msg(VHOSTMSG_SET_VRING_BASE, 1, 8);
	put32(16, 0x10000);
	cr_assert_eq(check(0, &m), -EBADMSG, "a base beyond 16 bits");
	msg(VHOSTMSG_SET_VRING_ADDR, 1, 40);
	put32(12, 0), put64(20, 0x7f0000001000), put64(28, 0x7f0000003000),
		put64(36, 0x7f0000002000);
	cr_assert_eq(check(0, &m), 0);
	cr_assert_eq(m.desc_uva, 0x7f0000001000);
	cr_assert_eq(m.used_uva, 0x7f0000003000);
	cr_assert_eq(m.avail_uva, 0x7f0000002000);
	msg(VHOSTMSG_SET_VRING_KICK, 1, 8);
	put64(12, 1);
	cr_assert_eq(check(1, &m), 0);
	cr_assert(m.has_fd);
	cr_assert_eq(check(0, &m), -EBADMSG, "the kick descriptor missing");
	put64(12, 1 | VHOSTMSG_NOFD);
	cr_assert_eq(check(0, &m), 0, "polling mode: no descriptor");
	cr_assert(!m.has_fd);
	put64(12, 0x200);
	cr_assert_eq(check(1, &m), -EBADMSG, "unknown bits");
}

Test(vhostmsg, config)
{
	struct vhostmsg m;

	msg(VHOSTMSG_GET_CONFIG, 1, 12 + 10);
	put32(12, 0), put32(16, 10);
	cr_assert_eq(check(0, &m), 0);
	cr_assert_eq(m.cfg_size, 10);
	put32(16, 11);
	cr_assert_eq(check(0, &m), -EBADMSG, "size and payload disagree");
}
