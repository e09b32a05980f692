/* SPDX-License-Identifier: MIT */
/*
 * gso.c - software segmentation and checksum completion for the guest
 *
 * Theory of Operation
 * -------------------
 * The netstack hands frames toward the guest to the guest port as
 * MOAT_REC_FRAME_VNET records: a struct moat_vnet_hdr (virtio_net_hdr's
 * layout) and an Ethernet frame of up to 64 KiB that may carry a partial
 * checksum (MOAT_VNET_F_NEEDS_CSUM, Linux's CHECKSUM_PARTIAL: the field at
 * csum_start + csum_offset holds the folded pseudo-header sum, the checksum
 * covers csum_start to the end of the frame) and may be one large TCP segment
 * (MOAT_VNET_GSO_TCPV4 / TCPV6) to be cut into pieces of gso_size payload
 * bytes. A guest driver that did not negotiate the matching offloads takes
 * neither, so the vhost-user backend (moat-vhost) finishes both here, in the
 * process that writes the guest's receive queue:
 *
 * - gso_checksum() completes a partial checksum in place.
 * - gso_segment() turns one record into the frames the guest gets, each built
 *   in the caller's scratch buffer and handed to an emit callback: one frame
 *   for MOAT_VNET_GSO_NONE (the checksum completed if it was partial), one or
 *   more for TCP segmentation, with every length, the IPv4 id and header
 *   checksum, the sequence number, the flags (FIN and PSH on the last piece,
 *   CWR on the first) and the whole TCP checksum computed afresh. The partial
 *   checksum of a segment is not used: the pieces' checksums are computed from
 *   their bytes, so a wrong hint cannot make a wrong piece.
 *
 * Trust. The record comes from another process over shared memory, so the
 * header and the frame are hostile: every offset is derived from the frame
 * itself and checked against its length before anything is read, hdr_len is
 * only a lower-bound hint (a value below the real header length is refused),
 * and the whole record is checked before the first piece is emitted, so a
 * refused record emits nothing. The caller passes a private copy (STYLE.md:
 * a record is copied out of shared memory before it is parsed); the frame and
 * the scratch buffer must not overlap.
 *
 * What is taken: Ethernet without VLAN tags; IPv4 (options allowed, not a
 * fragment, protocol TCP) or IPv6 with TCP as the first next header (no
 * extension headers); TCP with options. The IP datagram fills the frame,
 * except that a frame of the Ethernet minimum (60 bytes) may carry padding
 * after a shorter IPv4 datagram; the padding is not copied.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "vhost/gso.h"

#define GSO_ETH_LEN    14u
#define GSO_ETH_MIN    60u /* the shortest Ethernet frame (no FCS): may be padded */
#define GSO_ETH_P_IP   0x0800u
#define GSO_ETH_P_IPV6 0x86ddu
#define GSO_IP4_MIN    20u
#define GSO_IP6_LEN    40u
#define GSO_TCP_MIN    20u
#define GSO_PROTO_TCP  6u
#define GSO_TCP_FIN    0x01u
#define GSO_TCP_PSH    0x08u
#define GSO_TCP_CWR    0x80u

/**
 * struct gso_layout - where the headers of a checked TCP segment are
 * @v6:		IPv6 (else IPv4)
 * @l4:		offset of the TCP header
 * @hdrs:	offset of the payload (end of the TCP header)
 * @end:	end of the IP datagram (bytes after it are padding)
 */
struct gso_layout {
	bool v6;
	size_t l4, hdrs, end;
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Add @n bytes at @p to @sum as big-endian 16-bit words (RFC 1071); an odd
 * last byte is the high half of a word. 64 bits cannot overflow here.
 */
static uint64_t sum_add(uint64_t sum, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (uint64_t)(p[i] << 8 | p[i + 1]);
	if (i < n)
		sum += (uint64_t)p[i] << 8;
	return sum;
}

/* The ones'-complement sum folded to 16 bits (not inverted). */
static uint16_t sum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffffu) + (sum >> 16);
	return (uint16_t)sum;
}

/* Can the partial-checksum fields of @h be used on a frame of @len bytes? */
static int gso_csum_check(size_t len, const struct moat_vnet_hdr *h)
{
	size_t field = (size_t)h->csum_start + h->csum_offset;

	/*
	 * An odd offset would put the field across two words of the sum: no
	 * protocol does that, and the value written would be no checksum.
	 */
	if (h->csum_start < GSO_ETH_LEN || (h->csum_offset & 1u) || field + 2 > len)
		return -EINVAL;
	return 0;
}

/**
 * gso_checksum() - complete a partial checksum in place
 * @frame:	the Ethernet frame
 * @len:	its length
 * @h:		its offload header; only MOAT_VNET_F_NEEDS_CSUM, csum_start and
 *		csum_offset are used
 *
 * With MOAT_VNET_F_NEEDS_CSUM, the 16-bit field at csum_start + csum_offset
 * (holding the pseudo-header sum) is replaced by the ones'-complement of the
 * sum over the frame from csum_start to its end; a result of 0 is written as
 * 0xffff, as Linux does (the same value for TCP, and UDP's "no checksum" is
 * never produced). Without the flag nothing is done.
 *
 * Context: any process; no system calls.
 * Return: 0, or -EINVAL when csum_start is inside the Ethernet header, the
 * field does not lie inside the frame, or csum_offset is odd (the frame is
 * unchanged then).
 */
int gso_checksum(uint8_t *frame, size_t len, const struct moat_vnet_hdr *h)
{
	size_t start = h->csum_start;
	uint16_t s;
	int rc;

	if (!(h->flags & MOAT_VNET_F_NEEDS_CSUM))
		return 0;
	rc = gso_csum_check(len, h);
	if (rc < 0)
		return rc;
	/* The checksum is ~s; it is 0 exactly when s is 0xffff, written as 0xffff. */
	s = sum_fold(sum_add(0, frame + start, len - start));
	wr16(frame + start + h->csum_offset, s == 0xffffu ? 0xffffu : (uint16_t)~s);
	return 0;
}

/* Check the Ethernet, IP and TCP headers of a segment of @len bytes. */
static int gso_parse(const uint8_t *f, size_t len, bool v6, struct gso_layout *lay)
{
	const uint8_t *ip = f + GSO_ETH_LEN;
	size_t doff;

	if (len < GSO_ETH_LEN || rd16(f + 12) != (v6 ? GSO_ETH_P_IPV6 : GSO_ETH_P_IP))
		return -EINVAL;
	lay->v6 = v6;
	if (v6) {
		size_t plen;

		if (len < GSO_ETH_LEN + GSO_IP6_LEN || ip[0] >> 4 != 6 || ip[6] != GSO_PROTO_TCP)
			return -EINVAL;
		plen = rd16(ip + 4);
		if (plen != len - GSO_ETH_LEN - GSO_IP6_LEN)
			return -EINVAL;
		lay->l4 = GSO_ETH_LEN + GSO_IP6_LEN;
	} else {
		size_t ihl, tot;

		if (len < GSO_ETH_LEN + GSO_IP4_MIN || ip[0] >> 4 != 4 || ip[9] != GSO_PROTO_TCP)
			return -EINVAL;
		ihl = (size_t)(ip[0] & 15u) * 4;
		tot = rd16(ip + 2);
		if (ihl < GSO_IP4_MIN || tot < ihl || tot > len - GSO_ETH_LEN)
			return -EINVAL;
		/* Only the shortest frames may be padded after the datagram. */
		if (GSO_ETH_LEN + tot != len && len > GSO_ETH_MIN)
			return -EINVAL;
		/* A fragment (MF or an offset) cannot be cut: it is not a whole segment. */
		if (rd16(ip + 6) & 0x3fffu)
			return -EINVAL;
		lay->l4 = GSO_ETH_LEN + ihl;
		len = GSO_ETH_LEN + tot;
	}
	/* @len is now the end of the datagram, and l4 <= len. */
	if (len - lay->l4 < GSO_TCP_MIN)
		return -EINVAL;
	doff = (size_t)(f[lay->l4 + 12] >> 4) * 4;
	if (doff < GSO_TCP_MIN || doff > len - lay->l4)
		return -EINVAL;
	lay->hdrs = lay->l4 + doff;
	lay->end = len;
	return 0;
}

/*
 * Build piece @i of @n in @s: the headers of @f, then @plen payload bytes
 * from payload offset @off, with lengths, id, sequence number, flags and
 * checksums made its own. Return: the piece's length.
 */
static size_t gso_piece(const uint8_t *f, const struct gso_layout *lay, size_t i, size_t n,
			size_t off, size_t plen, uint8_t *s)
{
	uint8_t *ip = s + GSO_ETH_LEN, *th = s + lay->l4;
	size_t len = lay->hdrs + plen, tcp_len = len - lay->l4;
	uint64_t sum;

	memcpy(s, f, lay->hdrs);
	memcpy(s + lay->hdrs, f + lay->hdrs + off, plen);
	if (lay->v6) {
		wr16(ip + 4, (unsigned)(len - GSO_ETH_LEN - GSO_IP6_LEN));
		sum = sum_add(0, ip + 8, 32); /* source and destination */
	} else {
		size_t ihl = lay->l4 - GSO_ETH_LEN;

		wr16(ip + 2, (unsigned)(len - GSO_ETH_LEN));
		wr16(ip + 4, (unsigned)(rd16(ip + 4) + i)); /* 16-bit wrap */
		wr16(ip + 10, 0);
		wr16(ip + 10, (uint16_t)~sum_fold(sum_add(0, ip, ihl)));
		sum = sum_add(0, ip + 12, 8);
	}
	/*
	 * The rest of the pseudo-header: protocol and TCP length (both fit the
	 * low 16 bits of IPv6's 32-bit fields).
	 */
	sum += GSO_PROTO_TCP + tcp_len;
	wr32(th + 4, (uint32_t)(rd32(th + 4) + off));
	if (i + 1 < n)
		th[13] &= (uint8_t) ~(GSO_TCP_FIN | GSO_TCP_PSH);
	if (i > 0)
		th[13] &= (uint8_t)~GSO_TCP_CWR;
	wr16(th + 16, 0);
	wr16(th + 16, (uint16_t)~sum_fold(sum_add(sum, th, tcp_len)));
	return len;
}

/* What an emit callback's stop becomes: its errno, never a piece count. */
static int gso_stopped(int rc)
{
	return rc < 0 ? rc : -ECANCELED;
}

/* MOAT_VNET_GSO_NONE: one frame, copied to @scratch, its checksum completed. */
static int gso_whole(const uint8_t *frame, size_t len, const struct moat_vnet_hdr *h,
		     uint8_t *scratch, size_t scratch_len, gso_emit_fn emit, void *arg)
{
	int rc;

	if ((h->flags & MOAT_VNET_F_NEEDS_CSUM) && gso_csum_check(len, h) < 0)
		return -EINVAL;
	if (len > scratch_len)
		return -ENOSPC;
	memcpy(scratch, frame, len);
	rc = gso_checksum(scratch, len, h);
	if (rc < 0)
		return rc;
	rc = emit(arg, scratch, len);
	return rc ? gso_stopped(rc) : 1;
}

/**
 * gso_segment() - the frames a guest without offloads gets for one record
 * @frame:	the Ethernet frame of the record (a private copy)
 * @len:	its length, 14 to MOAT_FRAME_MAX_GSO bytes
 * @h:		the record's offload header
 * @scratch:	where each frame is built (must not overlap @frame)
 * @scratch_len: its size
 * @emit:	called with each frame, in order
 * @arg:	passed to @emit
 *
 * MOAT_VNET_GSO_NONE: the frame is copied to @scratch, its partial checksum
 * (MOAT_VNET_F_NEEDS_CSUM) completed there, and emitted once; gso_size and
 * hdr_len are not used. The frame is not parsed, and it is copied even when
 * there is nothing to complete, so that every frame @emit sees lives in
 * @scratch and is at most @scratch_len bytes.
 *
 * MOAT_VNET_GSO_TCPV4 / TCPV6 (with or without MOAT_VNET_GSO_ECN): the
 * Ethernet, IP and TCP headers are checked (see the Theory of Operation) and
 * the payload is cut into pieces of gso_size bytes, the last one shorter; a
 * payload of at most gso_size bytes (or none) makes one piece. Each piece
 * gets the headers with its own IPv4 total length, id (+ piece number,
 * 16-bit wrap) and header checksum or IPv6 payload length, sequence number
 * (+ payload offset), FIN and PSH only on the last piece, CWR only on the
 * first, and a TCP checksum computed over the whole piece; the partial
 * checksum fields of @h are not used. hdr_len 0 means "not given"; a
 * non-zero hdr_len below the real header length is refused, a larger one
 * is ignored.
 *
 * Nothing is emitted unless the whole record was accepted.
 *
 * Context: moat-vhost (any process; no allocation, no system calls).
 * Return: the number of frames emitted (at least 1); -EINVAL for a record
 * that cannot be finished (an unknown gso_type, gso_size 0, headers that are
 * truncated, inconsistent or not of the gso_type, hdr_len too small, a bad
 * partial checksum offset, @len out of range); -ENOSPC when the largest frame
 * (headers + min(gso_size, payload), or @len for GSO_NONE) does not fit in
 * @scratch_len; or what @emit returned to stop (a positive value becomes
 * -ECANCELED), after the frames before it were emitted.
 */
int gso_segment(const uint8_t *frame, size_t len, const struct moat_vnet_hdr *h, uint8_t *scratch,
		size_t scratch_len, gso_emit_fn emit, void *arg)
{
	unsigned type = h->gso_type & ~MOAT_VNET_GSO_ECN;
	size_t payload, piece, n, gso_size = h->gso_size;
	struct gso_layout lay;
	int rc;

	if (len < GSO_ETH_LEN || len > MOAT_FRAME_MAX_GSO)
		return -EINVAL;
	if (h->gso_type == MOAT_VNET_GSO_NONE)
		return gso_whole(frame, len, h, scratch, scratch_len, emit, arg);
	if ((type != MOAT_VNET_GSO_TCPV4 && type != MOAT_VNET_GSO_TCPV6) || !gso_size)
		return -EINVAL;
	rc = gso_parse(frame, len, type == MOAT_VNET_GSO_TCPV6, &lay);
	if (rc < 0)
		return rc;
	if (h->hdr_len && h->hdr_len < lay.hdrs)
		return -EINVAL;
	payload = lay.end - lay.hdrs;
	piece = payload < gso_size ? payload : gso_size;
	if (scratch_len < lay.hdrs + piece)
		return -ENOSPC;
	n = payload ? (payload + gso_size - 1) / gso_size : 1;
	for (size_t i = 0; i < n; i++) {
		size_t off = i * gso_size;
		size_t plen = payload - off < gso_size ? payload - off : gso_size;
		size_t out = gso_piece(frame, &lay, i, n, off, plen, scratch);

		rc = emit(arg, scratch, out);
		if (rc)
			return gso_stopped(rc);
	}
	return (int)n;
}
