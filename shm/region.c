/* SPDX-License-Identifier: MIT */
/*
 * region.c - the memfd that holds rings, counters and mailboxes
 *
 * Theory of Operation
 * -------------------
 * The supervisor calls region_create() once before forking: it sizes the
 * memfd with one ftruncate(), seals it against shrinking and growing (so no
 * process can truncate it under the others and make them take SIGBUS) and
 * against further sealing, and writes the header. The children inherit the
 * fd across exec and call region_map() with just the parts their role needs;
 * that validates the header (magic, version, every part inside the file,
 * page-aligned, ring capacities powers of two) and keeps a private copy, so
 * nothing a peer writes to the header later changes what this process
 * believes about the layout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/region.h"

#define PAGE		4096ULL
#define PAGE_UP(x)	(((x) + PAGE - 1) & ~(PAGE - 1))
#define REGION_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define REGION_MIN_RING 65536ULL /* smallest ring capacity either side accepts */

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t part_size(enum moat_part p, const struct region_config *cfg)
{
	switch (p) {
	case MOAT_PART_HEADER:
		return PAGE_UP(sizeof(struct moat_shm_header));
	case MOAT_PART_CNT_GUEST:
		return PAGE_UP(sizeof(struct moat_guest_counters));
	case MOAT_PART_CNT_NETSTACK:
		return PAGE_UP(sizeof(struct moat_netstack_counters));
	case MOAT_PART_CNT_PROXY:
		return PAGE_UP(sizeof(struct moat_proxy_counters));
	case MOAT_PART_RING_G2S:
	case MOAT_PART_RING_S2G:
		return MOAT_RING_DATA_OFF + cfg->frame_ring_bytes;
	case MOAT_PART_RING_S2P:
	case MOAT_PART_RING_P2S:
		return MOAT_RING_DATA_OFF + cfg->flow_ring_bytes;
	case MOAT_PART_MBOX_NETSTACK:
	case MOAT_PART_MBOX_PROXY:
		return PAGE_UP(sizeof(struct moat_mailbox));
	case MOAT_PART_COUNT:
		break;
	}
	return 0;
}

static int is_ring(int p)
{
	return p >= MOAT_PART_RING_G2S && p <= MOAT_PART_RING_P2S;
}

/**
 * region_create() - make, size, seal and map the region; write its header
 * @cfg:	ring sizes (powers of two, at least 64 KiB)
 * @proto:	header fields other than the layout (MTU, addresses, options)
 * @r:		filled with the fd and a full read-write mapping of every part
 *
 * Context: supervisor, before forking.
 * Return: 0 or -errno. On error nothing is left open.
 */
int region_create(const struct region_config *cfg, const struct moat_shm_header *proto,
		  struct region *r)
{
	struct moat_shm_header h = *proto;
	uint64_t off = 0;
	uint8_t *base;
	int fd, p, rc;

	if (!is_pow2(cfg->frame_ring_bytes) || !is_pow2(cfg->flow_ring_bytes) ||
	    cfg->frame_ring_bytes < REGION_MIN_RING || cfg->flow_ring_bytes < REGION_MIN_RING)
		return -EINVAL;
	for (p = 0; p < MOAT_PART_COUNT; p++) {
		h.part[p].off = off;
		h.part[p].size = part_size(p, cfg);
		off += PAGE_UP(h.part[p].size);
	}
	h.magic = MOAT_SHM_MAGIC;
	h.version = MOAT_SHM_VERSION;
	h.header_size = sizeof(h);
	h.region_size = off;

	fd = memfd_create("moat", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)off) < 0 || fcntl(fd, F_ADD_SEALS, REGION_SEALS) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	base = mmap(NULL, off, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	memcpy(base, &h, sizeof(h));
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->hdr = h;
	for (p = 0; p < MOAT_PART_COUNT; p++)
		r->part[p] = base + h.part[p].off;
	return 0;
}

/* Check a header copy against the file size; 0 or -EBADMSG. */
static int header_valid(const struct moat_shm_header *h, uint64_t file_size)
{
	uint64_t end = 0;
	int p;

	if (h->magic != MOAT_SHM_MAGIC || h->version != MOAT_SHM_VERSION ||
	    h->header_size != sizeof(*h) || h->region_size != file_size)
		return -EBADMSG;
	for (p = 0; p < MOAT_PART_COUNT; p++) {
		const struct moat_part_desc *d = &h->part[p];

		if (d->off % PAGE || d->off < end || d->size == 0 || d->size > file_size ||
		    d->off > file_size - d->size)
			return -EBADMSG;
		end = d->off + d->size;
		if (is_ring(p) && (d->size < MOAT_RING_DATA_OFF + REGION_MIN_RING ||
				   !is_pow2(d->size - MOAT_RING_DATA_OFF)))
			return -EBADMSG;
	}
	if (h->mtu < 576 || h->mtu > 65520)
		return -EBADMSG;
	return 0;
}

/**
 * region_map() - map the parts of an inherited region that a role needs
 * @fd:		the memfd
 * @parts:	bitmask of REGION_PART_BIT(p); the header is always read
 * @r:		filled; unmapped parts stay NULL
 *
 * Context: children at start-up, before they handle any guest data.
 * Return: 0, -EBADMSG if the header is invalid, or -errno.
 */
int region_map(int fd, uint32_t parts, struct region *r)
{
	struct stat st;
	int p, rc;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < sizeof(r->hdr))
		return -EBADMSG;
	if (pread(fd, &r->hdr, sizeof(r->hdr), 0) != (ssize_t)sizeof(r->hdr))
		return -EBADMSG;
	rc = header_valid(&r->hdr, (uint64_t)st.st_size);
	if (rc)
		return rc;
	for (p = 0; p < MOAT_PART_COUNT; p++) {
		void *m;

		if (!(parts & REGION_PART_BIT(p)))
			continue;
		m = mmap(NULL, r->hdr.part[p].size,
			 p == MOAT_PART_HEADER ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			 (off_t)r->hdr.part[p].off);
		if (m == MAP_FAILED) {
			rc = -errno;
			region_unmap(r);
			return rc;
		}
		r->part[p] = m;
	}
	return 0;
}

/**
 * region_adopt() - map a role's parts of an inherited region, then close @fd
 * @fd:		the memfd (closed in every case)
 * @parts:	as region_map()
 * @r:		filled; @r->fd is -1
 *
 * The mappings are all a role keeps: without the descriptor it cannot map
 * another part later, nor write() into the region (DESIGN §2).
 *
 * Context: children at start-up, before they handle any guest data.
 * Return: as region_map().
 */
int region_adopt(int fd, uint32_t parts, struct region *r)
{
	int rc = region_map(fd, parts, r);

	close(fd);
	r->fd = -1;
	return rc;
}

/**
 * region_unmap() - undo region_map() (the fd is left open)
 * @r:	view
 */
void region_unmap(struct region *r)
{
	int p;

	for (p = 0; p < MOAT_PART_COUNT; p++) {
		if (r->part[p])
			munmap(r->part[p], r->hdr.part[p].size);
		r->part[p] = NULL;
	}
}

/**
 * region_ring_capacity() - data capacity of a ring part
 * @r:	view (validated header copy)
 * @p:	one of the MOAT_PART_RING_* parts
 *
 * Return: capacity in bytes.
 */
uint64_t region_ring_capacity(const struct region *r, enum moat_part p)
{
	return r->hdr.part[p].size - MOAT_RING_DATA_OFF;
}

/**
 * region_check_seals() - are the region's seals all in place?
 * @fd:	the memfd
 *
 * Return: 0 if shrink, grow and seal are sealed, -EPERM if not, -errno.
 */
int region_check_seals(int fd)
{
	int s = fcntl(fd, F_GET_SEALS);

	if (s < 0)
		return -errno;
	return (s & REGION_SEALS) == REGION_SEALS ? 0 : -EPERM;
}
