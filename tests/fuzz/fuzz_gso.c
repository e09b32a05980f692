/* SPDX-License-Identifier: MIT */
/*
 * fuzz_gso.c - libFuzzer harness for software segmentation (vhost/gso.c):
 * the input is one byte that chooses the scratch size, a struct
 * moat_vnet_hdr (10 bytes, as on the ring) and the frame. The frame and the
 * scratch buffer are heap copies of their exact sizes, so ASan sees any
 * access past either. Every piece emitted must fit the scratch buffer; a
 * TCP piece must carry valid IPv4 and TCP checksums, lengths that match it,
 * at most gso_size payload bytes, and the original's payload in order; a
 * GSO_NONE frame with a partial checksum must verify against the
 * pseudo-header sum it came with. A refused record must emit nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vhost/gso.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_ctx {
	const uint8_t *frame;
	size_t len, scratch_len, payload_done, hdrs;
	struct moat_vnet_hdr h;
	unsigned pieces;
};

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t sum(uint32_t acc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		acc += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return acc;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void check_tcp(struct fuzz_ctx *c, const uint8_t *f, size_t len)
{
	bool v6 = (c->h.gso_type & ~MOAT_VNET_GSO_ECN) == MOAT_VNET_GSO_TCPV6;
	const uint8_t *ip = f + 14;
	size_t l4, hdrs, plen;
	uint32_t ph;

	check(len >= 14 + (v6 ? 60 : 40));
	check(be16(f + 12) == (v6 ? 0x86ddu : 0x0800u));
	if (v6) {
		check(ip[0] >> 4 == 6 && ip[6] == 6 && be16(ip + 4) == len - 54);
		l4 = 54;
		ph = sum(0, ip + 8, 32);
	} else {
		size_t ihl = (size_t)(ip[0] & 15) * 4;

		check(ip[0] >> 4 == 4 && ihl >= 20 && ip[9] == 6 && be16(ip + 2) == len - 14);
		check(14 + ihl + 20 <= len);
		check(sum(0, ip, ihl) == 0xffff);
		l4 = 14 + ihl;
		ph = sum(0, ip + 12, 8);
	}
	hdrs = l4 + (size_t)(f[l4 + 12] >> 4) * 4;
	check(hdrs >= l4 + 20 && hdrs <= len);
	check(!c->hdrs || hdrs == c->hdrs);
	c->hdrs = hdrs;
	plen = len - hdrs;
	ph += 6 + (uint32_t)(len - l4);
	check(sum(ph, f + l4, len - l4) == 0xffff);
	check(plen <= c->h.gso_size);
	/* The payload continues the original's, which starts at the same offset. */
	check(hdrs + c->payload_done + plen <= c->len);
	check(!memcmp(f + hdrs, c->frame + hdrs + c->payload_done, plen));
	c->payload_done += plen;
}

static int emit(void *arg, const uint8_t *f, size_t len)
{
	struct fuzz_ctx *c = arg;

	check(len <= c->scratch_len);
	c->pieces++;
	if (c->h.gso_type == MOAT_VNET_GSO_NONE) {
		check(len == c->len);
		if (c->h.flags & MOAT_VNET_F_NEEDS_CSUM) {
			size_t s = c->h.csum_start, field = s + c->h.csum_offset;

			/* The pseudo-header sum it came with, plus the region, verifies. */
			check(sum(sum(0, c->frame + field, 2), f + s, len - s) == 0xffff);
			check(!memcmp(f, c->frame, field));
			check(!memcmp(f + field + 2, c->frame + field + 2, len - field - 2));
		} else {
			check(!memcmp(f, c->frame, len));
		}
	} else {
		check_tcp(c, f, len);
	}
	/* Now and then, stop the walk. */
	return c->pieces == 5 && (c->h.hdr_len & 0x8000) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_ctx c = { 0 };
	uint8_t *frame, *scratch;
	int rc;

	if (size < 1 + sizeof(c.h))
		return 0;
	c.scratch_len = data[0] < 128 ? 65536 : (size_t)(data[0] - 128) * 64;
	memcpy(&c.h, data + 1, sizeof(c.h));
	c.len = size - 1 - sizeof(c.h);
	frame = malloc(c.len ? c.len : 1);
	scratch = malloc(c.scratch_len ? c.scratch_len : 1);
	if (!frame || !scratch)
		abort();
	memcpy(frame, data + 1 + sizeof(c.h), c.len);
	c.frame = frame;
	rc = gso_segment(frame, c.len, &c.h, scratch, c.scratch_len, emit, &c);
	/* gso_segment() itself never says -EPERM (-1): that is our emit's stop. */
	if (rc == -1)
		check(c.pieces == 5);
	else if (rc < 0)
		check(c.pieces == 0);
	else
		check(rc >= 1 && (unsigned)rc == c.pieces);
	if (rc > 0 && c.h.gso_type != MOAT_VNET_GSO_NONE) {
		/* Every payload byte went out: the datagram's end (IPv4 may be padded). */
		size_t end = be16(frame + 12) == 0x0800u ? 14u + be16(frame + 16) : c.len;

		check(c.hdrs + c.payload_done == end);
	}
	free(scratch);
	free(frame);
	return 0;
}
