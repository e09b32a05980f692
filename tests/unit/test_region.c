/* SPDX-License-Identifier: MIT */
/*
 * test_region.c - the shared memfd region of shm/region.c
 *
 * region_create() must leave a sealed file whose parts are page-aligned,
 * in bounds and disjoint; region_map() of the inherited fd must refuse any
 * header a peer could have forged, and map only the parts asked for.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/region.h"

#define PAGE 4096u

static const struct region_config cfg = {
	.frame_ring_bytes = 1u << 20,
	.flow_ring_bytes = 256u << 10,
};

static void make(struct region *r)
{
	struct moat_shm_header proto = { .mtu = 1500, .log_level = 2 };
	int rc = region_create(&cfg, &proto, r);

	cr_assert_eq(rc, 0, "region_create: %s", strerror(-rc));
}

static void destroy(struct region *r)
{
	/* region_create maps everything in one piece starting at the header. */
	munmap(r->part[MOAT_PART_HEADER], r->hdr.region_size);
	close(r->fd);
}

Test(region, sealed_against_resize)
{
	struct region r;
	struct stat st;
	int seals;

	make(&r);
	seals = fcntl(r.fd, F_GET_SEALS);
	cr_assert_geq(seals, 0);
	cr_assert_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
		     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, "seals 0x%x", seals);
	/* Writes stay possible: rings and counters live in it. */
	cr_assert_eq(seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE), 0);
	cr_assert_eq(region_check_seals(r.fd), 0);

	cr_assert_eq(fstat(r.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, r.hdr.region_size);
	errno = 0;
	cr_assert_eq(ftruncate(r.fd, st.st_size + PAGE), -1);
	cr_assert_eq(errno, EPERM);
	errno = 0;
	cr_assert_eq(ftruncate(r.fd, PAGE), -1);
	cr_assert_eq(errno, EPERM);
	errno = 0;
	cr_assert_eq(ftruncate(r.fd, 0), -1);
	cr_assert_eq(errno, EPERM);
	/* No more seals can be added (or removed). */
	errno = 0;
	cr_assert_eq(fcntl(r.fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	cr_assert_eq(errno, EPERM);
	/* Growing by writing past the end is refused too. */
	{
		char c = 1;

		errno = 0;
		cr_assert_eq(pwrite(r.fd, &c, 1, st.st_size), -1);
		cr_assert_eq(errno, EPERM);
	}
	cr_assert_eq(fstat(r.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, r.hdr.region_size);
	/* Close-on-exec: children get it only where the supervisor dup2()s it. */
	cr_assert(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
	destroy(&r);
}

Test(region, check_seals_refuses_unsealed_files)
{
	int fd = memfd_create("not-moat", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	cr_assert_geq(fd, 0);
	cr_assert_eq(region_check_seals(fd), -EPERM);
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	cr_assert_eq(region_check_seals(fd), -EPERM, "F_SEAL_SEAL missing");
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL), 0);
	cr_assert_eq(region_check_seals(fd), 0);
	close(fd);
	cr_assert_eq(region_check_seals(fd), -EBADF);
}

Test(region, layout_page_aligned_in_bounds_disjoint)
{
	struct region r;
	const struct moat_shm_header *h;
	uint64_t end = 0;

	make(&r);
	h = r.part[MOAT_PART_HEADER];
	/* The shared header and the private copy agree. */
	cr_assert_eq(memcmp(h, &r.hdr, sizeof(r.hdr)), 0);
	cr_assert_eq(h->magic, MOAT_SHM_MAGIC);
	cr_assert_eq(h->version, MOAT_SHM_VERSION);
	cr_assert_eq(h->header_size, sizeof(*h));
	cr_assert_eq(h->mtu, 1500, "fields of the prototype header are kept");
	cr_assert_eq(h->log_level, 2);
	cr_assert_eq(h->part[MOAT_PART_HEADER].off, 0);
	cr_assert_geq(h->part[MOAT_PART_HEADER].size, sizeof(*h));
	for (int p = 0; p < MOAT_PART_COUNT; p++) {
		const struct moat_part_desc *d = &h->part[p];

		cr_assert_eq(d->off % PAGE, 0, "part %d at %llu", p, (unsigned long long)d->off);
		cr_assert_geq(d->off, end, "part %d overlaps the one before", p);
		cr_assert_gt(d->size, 0);
		cr_assert_leq(d->off + d->size, h->region_size, "part %d out of bounds", p);
		cr_assert_eq((uint8_t *)r.part[p], (uint8_t *)r.part[0] + d->off);
		end = d->off + d->size;
	}
	cr_assert_eq(h->region_size % PAGE, 0);
	/* Each part is big enough for what lives in it. */
	cr_assert_geq(h->part[MOAT_PART_CNT_GUEST].size, sizeof(struct moat_guest_counters));
	cr_assert_geq(h->part[MOAT_PART_CNT_NETSTACK].size, sizeof(struct moat_netstack_counters));
	cr_assert_geq(h->part[MOAT_PART_CNT_PROXY].size, sizeof(struct moat_proxy_counters));
	cr_assert_geq(h->part[MOAT_PART_MBOX_NETSTACK].size, sizeof(struct moat_mailbox));
	cr_assert_geq(h->part[MOAT_PART_MBOX_PROXY].size, sizeof(struct moat_mailbox));
	/* Rings: control page + the configured power-of-two capacity. */
	cr_assert_eq(region_ring_capacity(&r, MOAT_PART_RING_G2S), cfg.frame_ring_bytes);
	cr_assert_eq(region_ring_capacity(&r, MOAT_PART_RING_S2G), cfg.frame_ring_bytes);
	cr_assert_eq(region_ring_capacity(&r, MOAT_PART_RING_S2P), cfg.flow_ring_bytes);
	cr_assert_eq(region_ring_capacity(&r, MOAT_PART_RING_P2S), cfg.flow_ring_bytes);
	cr_assert_geq(MOAT_RING_DATA_OFF, sizeof(struct moat_ring_ctl));
	/* The region starts zeroed (rings empty, counters 0). */
	{
		const uint8_t *g2s = r.part[MOAT_PART_RING_G2S];

		for (size_t i = 0; i < MOAT_RING_DATA_OFF + cfg.frame_ring_bytes; i++)
			if (g2s[i]) {
				cr_assert_fail("byte %zu of g2s is not zero", i);
				break;
			}
	}
	destroy(&r);
}

Test(region, create_rejects_bad_ring_sizes)
{
	static const struct region_config bad[] = {
		{ 0, 1u << 16 },	{ 1u << 16, 0 },	{ (1u << 16) + 4096, 1u << 16 },
		{ 1u << 16, 3u << 16 }, { 1u << 15, 1u << 16 }, { 1u << 16, 4096 },
	};
	struct moat_shm_header proto = { .mtu = 1500 };

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct region r;

		cr_assert_eq(region_create(&bad[i], &proto, &r), -EINVAL, "config %u", i);
	}
}

Test(region, map_all_parts_shares_memory)
{
	struct region r, c;
	int fd;

	make(&r);
	/* A child gets the fd across exec: simulate with a dup. */
	fd = dup(r.fd);
	cr_assert_eq(region_map(fd, REGION_ALL_PARTS, &c), 0);
	cr_assert_eq(memcmp(&c.hdr, &r.hdr, sizeof(c.hdr)), 0);
	for (int p = 0; p < MOAT_PART_COUNT; p++)
		cr_assert_not_null(c.part[p]);
	/* Same memory: a write on one side is seen on the other. */
	((uint64_t *)r.part[MOAT_PART_RING_S2P])[0] = 0x1122334455667788ULL;
	cr_assert_eq(((uint64_t *)c.part[MOAT_PART_RING_S2P])[0], 0x1122334455667788ULL);
	((struct moat_mailbox *)c.part[MOAT_PART_MBOX_PROXY])->reason = 5;
	cr_assert_eq(((struct moat_mailbox *)r.part[MOAT_PART_MBOX_PROXY])->reason, 5);
	/* The last byte of the last ring is mapped and shared. */
	{
		uint8_t *cp = c.part[MOAT_PART_RING_P2S], *rp = r.part[MOAT_PART_RING_P2S];
		size_t last = MOAT_RING_DATA_OFF + cfg.flow_ring_bytes - 1;

		cp[last] = 0x5a;
		cr_assert_eq(rp[last], 0x5a);
	}
	region_unmap(&c);
	for (int p = 0; p < MOAT_PART_COUNT; p++)
		cr_assert_null(c.part[p]);
	close(fd);
	destroy(&r);
}

Test(region, map_some_parts_leaves_the_rest_null)
{
	uint32_t parts = REGION_PART_BIT(MOAT_PART_HEADER) | REGION_PART_BIT(MOAT_PART_CNT_PROXY) |
			 REGION_PART_BIT(MOAT_PART_RING_S2P) | REGION_PART_BIT(MOAT_PART_RING_P2S) |
			 REGION_PART_BIT(MOAT_PART_MBOX_PROXY);
	struct region r, c;

	make(&r);
	cr_assert_eq(region_map(r.fd, parts, &c), 0);
	for (int p = 0; p < MOAT_PART_COUNT; p++) {
		if (parts & REGION_PART_BIT(p))
			cr_assert_not_null(c.part[p], "part %d", p);
		else
			cr_assert_null(c.part[p], "part %d mapped but not asked for", p);
	}
	/* The header is still validated and copied without being asked for. */
	cr_assert_eq(region_map(r.fd, REGION_PART_BIT(MOAT_PART_RING_G2S), &c), 0);
	cr_assert_null(c.part[MOAT_PART_HEADER]);
	cr_assert_not_null(c.part[MOAT_PART_RING_G2S]);
	cr_assert_eq(c.hdr.magic, MOAT_SHM_MAGIC);
	cr_assert_eq(region_ring_capacity(&c, MOAT_PART_RING_G2S), cfg.frame_ring_bytes);
	region_unmap(&c);
	cr_assert_eq(region_map(r.fd, 0, &c), 0);
	for (int p = 0; p < MOAT_PART_COUNT; p++)
		cr_assert_null(c.part[p]);
	destroy(&r);
}

Test(region, mapped_header_is_read_only)
{
	struct region r, c;
	int status;
	pid_t pid;

	make(&r);
	cr_assert_eq(region_map(r.fd, REGION_PART_BIT(MOAT_PART_HEADER), &c), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		((volatile struct moat_shm_header *)c.part[MOAT_PART_HEADER])->mtu = 9000;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		  "writing the header through a child's mapping did not fault (status 0x%x)",
		  status);
	cr_assert_eq(((struct moat_shm_header *)r.part[MOAT_PART_HEADER])->mtu, 1500);
	region_unmap(&c);
	destroy(&r);
}

/* The private copy does not follow later writes to the shared header. */
Test(region, header_copy_is_private)
{
	struct region r, c;

	make(&r);
	cr_assert_eq(region_map(r.fd, REGION_ALL_PARTS, &c), 0);
	((struct moat_shm_header *)r.part[MOAT_PART_HEADER])->part[MOAT_PART_RING_G2S].size = 1u
											      << 30;
	cr_assert_eq(region_ring_capacity(&c, MOAT_PART_RING_G2S), cfg.frame_ring_bytes);
	cr_assert_eq(c.hdr.part[MOAT_PART_RING_G2S].size,
		     MOAT_RING_DATA_OFF + cfg.frame_ring_bytes);
	region_unmap(&c);
	destroy(&r);
}

/* ------------------------------------------------------------------ */
/* Forged headers                                                       */
/* ------------------------------------------------------------------ */

typedef void (*forge_fn)(struct moat_shm_header *h);

/* Map a region whose shared header was changed by @forge: must be -EBADMSG. */
static void expect_rejected(forge_fn forge, const char *what)
{
	struct region r, c;
	struct moat_shm_header *h;
	int rc;

	make(&r);
	h = r.part[MOAT_PART_HEADER];
	forge(h);
	memset(&c, 0xa5, sizeof(c));
	rc = region_map(r.fd, REGION_ALL_PARTS, &c);
	cr_assert_eq(rc, -EBADMSG, "%s: region_map returned %d", what, rc);
	for (int p = 0; p < MOAT_PART_COUNT; p++)
		cr_assert_null(c.part[p], "%s: part %d mapped after a refusal", what, p);
	destroy(&r);
}

#define FORGE(name, body)                                   \
	static void forge_##name(struct moat_shm_header *h) \
	{                                                   \
		body;                                       \
	}                                                   \
	Test(region_forged, name)                           \
	{                                                   \
		expect_rejected(forge_##name, #name);       \
	}

FORGE(magic, h->magic ^= 1)
FORGE(magic_zero, h->magic = 0)
FORGE(version, h->version = MOAT_SHM_VERSION + 1)
FORGE(version_zero, h->version = 0)
FORGE(header_size_small, h->header_size = 8)
FORGE(header_size_big, h->header_size += 8)
FORGE(region_size_bigger_than_file, h->region_size += PAGE)
FORGE(region_size_smaller_than_file, h->region_size -= PAGE)
FORGE(part_offset_beyond_file, h->part[MOAT_PART_MBOX_PROXY].off = h->region_size)
FORGE(part_end_beyond_file, h->part[MOAT_PART_MBOX_PROXY].size = 2 * PAGE)
FORGE(part_offset_huge, h->part[MOAT_PART_RING_P2S].off = ~0ULL & ~(uint64_t)(PAGE - 1))
FORGE(part_size_huge, h->part[MOAT_PART_CNT_GUEST].size = ~0ULL)
FORGE(part_offset_plus_size_wraps,
      h->part[MOAT_PART_MBOX_PROXY].size = (uint64_t)0 - h->part[MOAT_PART_MBOX_PROXY].off + PAGE)
FORGE(part_size_zero, h->part[MOAT_PART_CNT_PROXY].size = 0)
FORGE(part_not_page_aligned, h->part[MOAT_PART_CNT_NETSTACK].off += 8)
FORGE(parts_overlap, h->part[MOAT_PART_RING_S2G].off = h->part[MOAT_PART_RING_G2S].off)
FORGE(parts_overlap_partially,
      h->part[MOAT_PART_RING_S2G].off = h->part[MOAT_PART_RING_G2S].off + PAGE)
FORGE(parts_out_of_order, {
	struct moat_part_desc t = h->part[MOAT_PART_CNT_GUEST];
	h->part[MOAT_PART_CNT_GUEST] = h->part[MOAT_PART_CNT_NETSTACK];
	h->part[MOAT_PART_CNT_NETSTACK] = t;
})
FORGE(counters_overlap_header, h->part[MOAT_PART_CNT_GUEST].off = 0)
FORGE(ring_not_power_of_two, h->part[MOAT_PART_RING_G2S].size -= PAGE)
FORGE(ring_power_of_two_plus_page_missing, h->part[MOAT_PART_RING_S2P].size -= MOAT_RING_DATA_OFF)
FORGE(ring_only_control_page, h->part[MOAT_PART_RING_P2S].size = MOAT_RING_DATA_OFF)
FORGE(ring_odd_size, h->part[MOAT_PART_RING_S2G].size = MOAT_RING_DATA_OFF + 65536 + 1)
/*
 * A power of two, but smaller than region_create() ever makes: RING_MAX_RECORD()
 * underflows below 32 bytes and no frame would ever fit.
 */
FORGE(ring_tiny, h->part[MOAT_PART_RING_S2G].size = MOAT_RING_DATA_OFF + 16)
FORGE(ring_below_minimum, h->part[MOAT_PART_RING_P2S].size = MOAT_RING_DATA_OFF + 32768)
FORGE(mtu_too_small, h->mtu = 100)
FORGE(mtu_too_big, h->mtu = 70000)

/* A file that is too small to hold a header at all. */
Test(region_forged, file_smaller_than_header)
{
	struct region c;
	int fd = memfd_create("tiny", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 16), 0);
	cr_assert_eq(region_map(fd, REGION_ALL_PARTS, &c), -EBADMSG);
	for (int p = 0; p < MOAT_PART_COUNT; p++)
		cr_assert_null(c.part[p]);
	close(fd);
}

/* An fd that is not a file at all. */
Test(region_forged, not_a_file)
{
	struct region c;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_lt(region_map(p[0], REGION_ALL_PARTS, &c), 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(region_map(p[0], REGION_ALL_PARTS, &c), -EBADF);
}

/* Every byte of the header flipped, one at a time: accepted or -EBADMSG, never a crash. */
Test(region_forged, every_header_byte)
{
	struct region r, c;
	uint8_t *h;
	int accepted = 0;

	make(&r);
	h = r.part[MOAT_PART_HEADER];
	for (size_t i = 0; i < sizeof(struct moat_shm_header); i++) {
		int rc;

		h[i] ^= 0x80;
		rc = region_map(r.fd, REGION_ALL_PARTS, &c);
		if (rc == 0) {
			accepted++;
			/* Then the layout must still be sane. */
			for (int p = 0; p < MOAT_PART_COUNT; p++)
				cr_assert_leq(c.hdr.part[p].off + c.hdr.part[p].size,
					      c.hdr.region_size);
			region_unmap(&c);
		} else {
			cr_assert_eq(rc, -EBADMSG, "byte %zu: %d", i, rc);
		}
		h[i] ^= 0x80;
	}
	/* The layout bytes (magic .. part[]) are all checked. */
	cr_assert_lt(accepted, (int)sizeof(struct moat_shm_header) -
				       (int)offsetof(struct moat_shm_header, mtu) + 1);
	destroy(&r);
}

/* A role keeps only its mappings: region_adopt() closes the descriptor. */
Test(region, adopt_maps_then_closes_the_fd)
{
	struct region r, c;
	int fd;

	make(&r);
	fd = dup(r.fd);
	cr_assert(fd >= 0);
	cr_assert_eq(region_adopt(fd, REGION_PART_BIT(MOAT_PART_RING_S2P), &c), 0);
	cr_assert_eq(c.fd, -1);
	cr_assert_not_null(c.part[MOAT_PART_RING_S2P]);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "the descriptor is still open");
	cr_assert_eq(errno, EBADF);
	/* The mapping still works without it. */
	((volatile uint8_t *)c.part[MOAT_PART_RING_S2P])[0] = 1;
	region_unmap(&c);
	/* Closed on failure too. */
	fd = open("/dev/null", O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_lt(region_adopt(fd, REGION_ALL_PARTS, &c), 0);
	cr_assert_eq(fcntl(fd, F_GETFD), -1);
	destroy(&r);
}
