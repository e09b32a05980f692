/* SPDX-License-Identifier: MIT */
/*
 * test_gso.c - software segmentation and checksum completion (vhost/gso.c):
 * TCPv4 and TCPv6 segments cut into pieces and checked by a verifier of the
 * test's own, partial checksums completed, and every record that must be
 * refused without a frame emitted
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vhost/gso.h"

#define MSS	1448u
#define MAXP	8
#define PIECE	2048u
#define SEQ	0x11223344u
#define IP4_ID	0x1234u
#define F_FIN	0x01u
#define F_PSH	0x08u
#define F_ACK	0x10u
#define F_CWR	0x80u
#define TCP_OPT 12u /* NOP, NOP, timestamp */

/* What the emit callback saw. */
static struct {
	int n, calls;
	int fail_at, fail_rc; /* emit returns fail_rc on call fail_at (-1: never) */
	size_t len[MAXP];
	uint8_t buf[MAXP][PIECE];
} got;

static uint8_t frame[70000], orig[70000], scratch[70000];

static int collect(void *arg, const uint8_t *f, size_t len)
{
	cr_assert_eq(arg, &got);
	cr_assert_eq(f, scratch, "every frame is built in scratch");
	if (got.calls++ == got.fail_at)
		return got.fail_rc;
	cr_assert_lt(got.n, MAXP);
	cr_assert_leq(len, PIECE);
	memcpy(got.buf[got.n], f, len);
	got.len[got.n++] = len;
	return 0;
}

static void setup(void)
{
	memset(&got, 0, sizeof(got));
	got.fail_at = -1;
}

TestSuite(gso, .init = setup);

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/*
 * The verifier's checksum, written apart from gso.c's: native (little-endian)
 * 16-bit loads, an odd byte as the low half; the ones'-complement sum of a
 * valid packet is 0xffff in either byte order.
 */
static uint32_t le_sum(uint32_t acc, const uint8_t *p, size_t n)
{
	uint16_t w;

	for (; n >= 2; p += 2, n -= 2) {
		memcpy(&w, p, 2);
		acc += w;
		acc = (acc & 0xffff) + (acc >> 16);
	}
	if (n)
		acc += p[0];
	while (acc > 0xffff)
		acc = (acc & 0xffff) + (acc >> 16);
	return acc;
}

/* Does the TCP or UDP checksum of the L4 bytes at @l4 (@l4len) verify? */
static bool l4_ok(const uint8_t *ip, bool v6, const uint8_t *l4, size_t l4len, uint8_t proto)
{
	uint8_t ph[40];
	size_t phl;

	memset(ph, 0, sizeof(ph));
	if (v6) {
		memcpy(ph, ip + 8, 32);
		ph[34] = (uint8_t)(l4len >> 8);
		ph[35] = (uint8_t)l4len;
		ph[39] = proto;
		phl = 40;
	} else {
		memcpy(ph, ip + 12, 8);
		ph[9] = proto;
		ph[10] = (uint8_t)(l4len >> 8);
		ph[11] = (uint8_t)l4len;
		phl = 12;
	}
	return le_sum(le_sum(0, ph, phl), l4, l4len) == 0xffff;
}

/*
 * Build an Ethernet + IP + TCP frame in @f: @ipopt bytes of IPv4 options
 * (a multiple of 4), a 12-byte timestamp option, @flags, @payload bytes of a
 * pattern. The IP and TCP checksums hold garbage: gso_segment() must not
 * use them. Return: the frame's length.
 */
static size_t build_tcp(uint8_t *f, bool v6, size_t ipopt, size_t payload, uint8_t flags)
{
	size_t ip_len = v6 ? 40 : 20 + ipopt, l4 = 14 + ip_len, hdrs = l4 + 20 + TCP_OPT;
	uint8_t *ip = f + 14, *th = f + l4;

	memset(f, 0, hdrs);
	memcpy(f, "\x52\x54\x00\x12\x34\x56\x02\x00\x00\x00\x00\x01", 12);
	put16(f + 12, v6 ? 0x86dd : 0x0800);
	if (v6) {
		ip[0] = 0x60;
		ip[1] = 0x0a; /* traffic class and flow label: copied as they are */
		ip[3] = 0x42;
		put16(ip + 4, 20 + TCP_OPT + payload);
		ip[6] = 6;
		ip[7] = 64;
		memcpy(ip + 8, "\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
		       16);
		memcpy(ip + 24, "\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02",
		       16);
	} else {
		ip[0] = (uint8_t)(0x40 | (ip_len / 4));
		put16(ip + 2, ip_len + 20 + TCP_OPT + payload);
		put16(ip + 4, IP4_ID);
		put16(ip + 6, 0x4000); /* DF */
		ip[8] = 64;
		ip[9] = 6;
		put16(ip + 10, 0xdead);
		memcpy(ip + 12, "\x0a\x00\x02\x02\x0a\x00\x02\x0f", 8);
		for (size_t k = 0; k < ipopt; k++)
			ip[20 + k] = k + 1 < ipopt ? 1 : 0; /* NOPs, then EOL */
	}
	put16(th, 443);
	put16(th + 2, 51000);
	th[4] = (uint8_t)(SEQ >> 24);
	th[5] = (uint8_t)(SEQ >> 16);
	th[6] = (uint8_t)(SEQ >> 8);
	th[7] = (uint8_t)SEQ;
	memcpy(th + 8, "\x99\x88\x77\x66", 4);
	th[12] = (20 + TCP_OPT) / 4 << 4;
	th[13] = flags;
	put16(th + 14, 65000);
	put16(th + 16, 0xbeef);
	memcpy(th + 20, "\x01\x01\x08\x0a\x00\x00\x10\x00\x00\x00\x20\x00", TCP_OPT);
	for (size_t k = 0; k < payload; k++)
		f[hdrs + k] = (uint8_t)(k * 7 + k / 251);
	return hdrs + payload;
}

static struct moat_vnet_hdr tso(bool v6, size_t l4, size_t hdrs, unsigned mss)
{
	return (struct moat_vnet_hdr){ .flags = MOAT_VNET_F_NEEDS_CSUM,
				       .gso_type = v6 ? MOAT_VNET_GSO_TCPV6 : MOAT_VNET_GSO_TCPV4,
				       .hdr_len = (uint16_t)hdrs,
				       .gso_size = (uint16_t)mss,
				       .csum_start = (uint16_t)l4,
				       .csum_offset = 16 };
}

/*
 * Check the pieces in got against the segment @o (@olen bytes, headers
 * ending at @hdrs, TCP at @l4) cut at @mss: lengths, ids, checksums,
 * sequence numbers, flags, unchanged header bytes, and the payload.
 */
static void verify(const uint8_t *o, size_t olen, bool v6, size_t l4, size_t hdrs, unsigned mss)
{
	size_t payload = olen - hdrs, n = payload ? (payload + mss - 1) / mss : 1, done = 0;
	uint8_t oflags = o[l4 + 13];

	cr_assert_eq((size_t)got.n, n, "pieces: %d, want %zu", got.n, n);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = got.buf[i], *ip = p + 14, *th = p + l4;
		size_t want = payload - done < mss ? payload - done : mss;
		uint8_t flags = oflags;

		cr_assert_eq(got.len[i], hdrs + want, "piece %zu: %zu bytes", i, got.len[i]);
		cr_assert_eq(memcmp(p, o, 14), 0, "Ethernet header");
		if (v6) {
			cr_assert_eq(be16(ip + 4), got.len[i] - 54, "IPv6 payload length");
			cr_assert_eq(memcmp(ip, o + 14, 4), 0);
			cr_assert_eq(memcmp(ip + 6, o + 20, 34), 0, "next header, hops, addresses");
		} else {
			size_t ihl = l4 - 14;

			cr_assert_eq(be16(ip + 2), got.len[i] - 14, "IPv4 total length");
			cr_assert_eq(be16(ip + 4), (be16(o + 18) + i) & 0xffff, "IPv4 id");
			cr_assert_eq(le_sum(0, ip, ihl), 0xffff, "IPv4 header checksum");
			cr_assert_eq(memcmp(ip, o + 14, 2), 0);
			cr_assert_eq(memcmp(ip + 6, o + 20, 4), 0,
				     "flags, fragment, ttl, protocol");
			cr_assert_eq(memcmp(ip + 12, o + 26, ihl - 12), 0, "addresses, options");
		}
		cr_assert_eq(be32(th + 4), (uint32_t)(be32(o + l4 + 4) + done), "sequence number");
		if (i + 1 < n)
			flags &= (uint8_t) ~(F_FIN | F_PSH);
		if (i > 0)
			flags &= (uint8_t)~F_CWR;
		cr_assert_eq(th[13], flags, "piece %zu: flags %#x, want %#x", i, th[13], flags);
		cr_assert_eq(memcmp(th, o + l4, 4), 0, "ports");
		cr_assert_eq(memcmp(th + 8, o + l4 + 8, 5), 0, "ack, data offset");
		cr_assert_eq(memcmp(th + 14, o + l4 + 14, 2), 0, "window");
		cr_assert_eq(memcmp(th + 18, o + l4 + 18, hdrs - l4 - 18), 0, "urgent, options");
		cr_assert(l4_ok(ip, v6, th, got.len[i] - l4, 6), "piece %zu: TCP checksum", i);
		cr_assert_eq(memcmp(p + hdrs, o + hdrs + done, want), 0, "payload of piece %zu", i);
		done += want;
	}
	cr_assert_eq(done, payload, "the pieces carry the whole payload");
}

/* Segment @len bytes of frame (built with build_tcp()) and verify the pieces. */
static void cut_and_verify(size_t len, bool v6, size_t ipopt, unsigned mss)
{
	size_t l4 = 14 + (v6 ? 40 : 20 + ipopt), hdrs = l4 + 20 + TCP_OPT;
	struct moat_vnet_hdr h = tso(v6, l4, hdrs, mss);
	size_t n = len > hdrs ? (len - hdrs + mss - 1) / mss : 1;

	memcpy(orig, frame, len);
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), (int)n);
	cr_assert_eq(memcmp(orig, frame, len), 0, "the input is not changed");
	verify(frame, len, v6, l4, hdrs, mss);
}

Test(gso, tcp4_three_pieces)
{
	size_t len = build_tcp(frame, false, 0, 3000, F_PSH | F_FIN | F_ACK | F_CWR);

	cut_and_verify(len, false, 0, MSS);
	cr_assert_eq(got.len[2], 66 + 3000 - 2 * MSS);
	cr_assert_eq(got.buf[0][47], F_ACK | F_CWR);
	cr_assert_eq(got.buf[1][47], F_ACK);
	cr_assert_eq(got.buf[2][47], F_ACK | F_PSH | F_FIN);
}

Test(gso, tcp6_three_pieces)
{
	size_t len = build_tcp(frame, true, 0, 3000, F_PSH | F_FIN | F_ACK | F_CWR);

	cut_and_verify(len, true, 0, MSS);
	cr_assert_eq(got.buf[0][67], F_ACK | F_CWR);
	cr_assert_eq(got.buf[1][67], F_ACK);
	cr_assert_eq(got.buf[2][67], F_ACK | F_PSH | F_FIN);
}

Test(gso, tcp4_ip_options_id_and_sequence_wrap)
{
	size_t len = build_tcp(frame, false, 8, 4000, F_PSH | F_ACK);

	put16(frame + 18, 0xfffe);		       /* ids 0xfffe, 0xffff, 0, 1 */
	memcpy(frame + 42 + 4, "\xff\xff\xfc\x00", 4); /* the sequence number wraps */
	cut_and_verify(len, false, 8, 1000);
	cr_assert_eq(be16(got.buf[2] + 18), 0);
	cr_assert_eq(be32(got.buf[1] + 42 + 4), 0xffffffffu - 1023u + 1000u);
	cr_assert_eq(be32(got.buf[3] + 42 + 4), 1976u, "0xfffffc00 + 3000, mod 2^32");
}

/* Verify an IPv6 piece's TCP checksum and count it, keeping nothing. */
static int count_tcp6(void *arg, const uint8_t *f, size_t len)
{
	int *n = arg;

	cr_assert_geq(len, 86u);
	cr_assert_leq(len, 86u + 1400u);
	cr_assert(l4_ok(f + 14, true, f + 54, len - 54, 6), "piece %d: TCP checksum", *n);
	cr_assert_eq(be32(f + 58), (uint32_t)(SEQ + 1400u * (unsigned)*n));
	cr_assert_eq(f[67], *n ? F_ACK : (F_ACK | F_CWR));
	(*n)++;
	return 0;
}

Test(gso, ecn_flag_and_a_64k_segment)
{
	size_t len = build_tcp(frame, true, 0, 65535 - 86, F_ACK | F_CWR);
	struct moat_vnet_hdr h = tso(true, 54, 86, 1400);
	int n = 0;

	h.gso_type |= MOAT_VNET_GSO_ECN;
	cr_assert_eq(len, 65535u);
	/* 65449 bytes of payload at 1400: 47 pieces, the last 1049. */
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), count_tcp6, &n), 47);
	cr_assert_eq(n, 47);
	/* The first MAXP of them in full. */
	got.fail_at = MAXP;
	got.fail_rc = -EPIPE;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), -EPIPE);
	cr_assert_eq(got.n, MAXP);
	for (int i = 0; i < MAXP; i++)
		cr_assert_eq(memcmp(got.buf[i] + 86, frame + 86 + 1400 * i, 1400), 0);
}

Test(gso, one_piece_when_the_payload_fits)
{
	size_t len = build_tcp(frame, false, 0, MSS, F_PSH | F_FIN | F_ACK | F_CWR);

	cut_and_verify(len, false, 0, MSS);
	cr_assert_eq(got.buf[0][47], F_PSH | F_FIN | F_ACK | F_CWR, "one piece keeps every flag");
	setup();
	len = build_tcp(frame, false, 0, MSS + 1, F_ACK);
	cut_and_verify(len, false, 0, MSS);
	cr_assert_eq(got.len[1], 67u);
	setup();
	len = build_tcp(frame, true, 0, 10, F_PSH | F_ACK);
	cut_and_verify(len, true, 0, MSS);
}

Test(gso, no_payload_is_one_piece)
{
	size_t len = build_tcp(frame, false, 0, 0, F_ACK | F_FIN);

	cut_and_verify(len, false, 0, MSS);
	cr_assert_eq(got.len[0], 66u);
	cr_assert_eq(got.buf[0][47], F_ACK | F_FIN);
}

Test(gso, scratch_only_needs_the_largest_piece)
{
	size_t len = build_tcp(frame, false, 0, 3000, F_ACK);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);

	cr_assert_eq(gso_segment(frame, len, &h, scratch, 66 + MSS, collect, &got), 3);
	setup();
	len = build_tcp(frame, false, 0, 100, F_ACK);
	cr_assert_eq(gso_segment(frame, len, &h, scratch, 166, collect, &got), 1,
		     "a short segment needs no room for gso_size");
	cr_assert_eq(gso_segment(frame, len, &h, scratch, 165, collect, &got), -ENOSPC);
}

Test(gso, padded_minimum_frame)
{
	/* A bare ACK without options: 54 bytes, padded to 60 on the wire. */
	struct moat_vnet_hdr h = tso(false, 34, 0, MSS);
	uint8_t *th = frame + 34;

	build_tcp(frame, false, 0, 0, F_ACK);
	put16(frame + 16, 40);
	th[12] = 5 << 4;
	memset(frame + 54, 0xaa, 6);
	cr_assert_eq(gso_segment(frame, 60, &h, scratch, sizeof(scratch), collect, &got), 1);
	cr_assert_eq(got.len[0], 54u, "the padding is not copied");
	cr_assert(l4_ok(got.buf[0] + 14, false, got.buf[0] + 34, 20, 6));
	cr_assert_eq(le_sum(0, got.buf[0] + 14, 20), 0xffff);
	setup();
	/* Past the minimum, a frame longer than its datagram is refused. */
	put16(frame + 16, 40);
	memset(frame + 54, 0xaa, 20);
	cr_assert_eq(gso_segment(frame, 61, &h, scratch, sizeof(scratch), collect, &got), -EINVAL);
	cr_assert_eq(got.calls, 0);
}

Test(gso, hdr_len_is_a_lower_bound)
{
	size_t len = build_tcp(frame, false, 0, 3000, F_ACK);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);
	static const unsigned ok[] = { 0, 66, 67, 1000 };

	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
		setup();
		h.hdr_len = (uint16_t)ok[k];
		cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
			     3, "hdr_len %u", ok[k]);
		verify(frame, len, false, 34, 66, MSS);
	}
	setup();
	h.hdr_len = 65;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), -EINVAL);
	h.hdr_len = 54; /* what a sender that forgot the options would say */
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), -EINVAL);
	cr_assert_eq(got.calls, 0);
}

Test(gso, the_partial_checksum_hint_is_not_used)
{
	size_t len = build_tcp(frame, false, 0, 2000, F_ACK);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);

	h.flags = 0;
	h.csum_start = 0;
	h.csum_offset = 60001;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), 2);
	verify(frame, len, false, 34, 66, MSS);
}

/*
 * A UDP/IPv4 frame with a partial checksum: the field holds the folded
 * pseudo-header sum, as Linux leaves it. Return: its length.
 */
static size_t build_udp4(uint8_t *f, size_t payload)
{
	uint8_t *ip = f + 14, *uh = f + 34;
	uint32_t ps;

	memset(f, 0, 42);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, 28 + payload);
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, "\x0a\x00\x02\x02\xc0\xa8\x01\x07", 8);
	put16(uh, 5353);
	put16(uh + 2, 53);
	put16(uh + 4, 8 + payload);
	for (size_t k = 0; k < payload; k++)
		f[42 + k] = (uint8_t)(k * 13 + 5);
	ps = be16(ip + 12) + be16(ip + 14) + be16(ip + 16) + be16(ip + 18) + 17 + 8 + payload;
	while (ps > 0xffff)
		ps = (ps & 0xffff) + (ps >> 16);
	put16(uh + 6, ps);
	return 42 + payload;
}

static const struct moat_vnet_hdr udp_partial = { .flags = MOAT_VNET_F_NEEDS_CSUM,
						  .csum_start = 34,
						  .csum_offset = 6 };

Test(gso, checksum_completes_udp4)
{
	/* Odd length: the last byte is half a word. */
	size_t len = build_udp4(frame, 101);

	cr_assert_eq(gso_checksum(frame, len, &udp_partial), 0);
	cr_assert(l4_ok(frame + 14, false, frame + 34, len - 34, 17));
	cr_assert_neq(be16(frame + 40), 0, "UDP never gets 0 (no checksum)");
}

Test(gso, checksum_zero_is_written_as_ffff)
{
	/*
	 * Make the true checksum come out 0: put the checksum of the frame
	 * into its last payload word, which makes the sum 0xffff.
	 */
	size_t len = build_udp4(frame, 100);
	uint8_t pseudo[2];

	frame[len - 2] = frame[len - 1] = 0;
	memcpy(pseudo, frame + 40, 2);
	cr_assert_eq(gso_checksum(frame, len, &udp_partial), 0);
	memcpy(frame + len - 2, frame + 40, 2);
	memcpy(frame + 40, pseudo, 2);
	cr_assert_eq(gso_checksum(frame, len, &udp_partial), 0);
	cr_assert_eq(be16(frame + 40), 0xffff);
	cr_assert(l4_ok(frame + 14, false, frame + 34, len - 34, 17));
}

Test(gso, checksum_completes_tcp6)
{
	size_t len = build_tcp(frame, true, 0, 777, F_ACK | F_PSH);
	struct moat_vnet_hdr h = tso(true, 54, 86, 0);
	uint32_t ps = 0;

	h.gso_type = MOAT_VNET_GSO_NONE;
	for (size_t k = 0; k < 32; k += 2)
		ps += be16(frame + 22 + k);
	ps += 6 + (len - 54);
	while (ps > 0xffff)
		ps = (ps & 0xffff) + (ps >> 16);
	put16(frame + 54 + 16, ps);
	cr_assert_eq(gso_checksum(frame, len, &h), 0);
	cr_assert(l4_ok(frame + 14, true, frame + 54, len - 54, 6));
}

Test(gso, checksum_without_the_flag_does_nothing)
{
	size_t len = build_udp4(frame, 50);
	struct moat_vnet_hdr h = udp_partial;

	h.flags = MOAT_VNET_F_DATA_VALID;
	h.csum_start = 0; /* not looked at */
	memcpy(orig, frame, len);
	cr_assert_eq(gso_checksum(frame, len, &h), 0);
	cr_assert_eq(memcmp(orig, frame, len), 0);
}

Test(gso, checksum_refuses_offsets_out_of_range)
{
	static const struct {
		uint16_t start, off;
	} bad[] = {
		{ 13, 6 },	  /* inside the Ethernet header */
		{ 0, 40 },	  /* ditto, even if the field is inside the frame */
		{ 34, 5 },	  /* odd: across two words, though inside the frame */
		{ 34, 58 },	  /* the field's second byte past the end (len 92) */
		{ 91, 0 },	  /* ditto */
		{ 92, 0 },	  /* starts at the end */
		{ 65535, 65535 }, /* no wrap-around */
		{ 40, 65534 },
	};
	size_t len = build_udp4(frame, 50);

	memcpy(orig, frame, len);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct moat_vnet_hdr h = udp_partial;

		h.csum_start = bad[k].start;
		h.csum_offset = bad[k].off;
		cr_assert_eq(gso_checksum(frame, len, &h), -EINVAL, "start %u offset %u",
			     bad[k].start, bad[k].off);
		h.gso_type = MOAT_VNET_GSO_NONE;
		cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
			     -EINVAL);
	}
	cr_assert_eq(memcmp(orig, frame, len), 0, "a refused frame is not changed");
	cr_assert_eq(got.calls, 0);
	{
		/* The last legal place: the field is the frame's last two bytes. */
		struct moat_vnet_hdr h = udp_partial;

		h.csum_offset = (uint16_t)(len - 2 - 34);
		cr_assert_eq(gso_checksum(frame, len, &h), 0);
	}
}

Test(gso, none_copies_and_completes)
{
	size_t len = build_udp4(frame, 300);

	memcpy(orig, frame, len);
	cr_assert_eq(gso_segment(frame, len, &udp_partial, scratch, sizeof(scratch), collect, &got),
		     1);
	cr_assert_eq(memcmp(orig, frame, len), 0, "the input is not changed");
	cr_assert_eq(got.len[0], len);
	cr_assert(l4_ok(got.buf[0] + 14, false, got.buf[0] + 34, len - 34, 17));
	cr_assert_eq(memcmp(got.buf[0], frame, 40), 0);
	cr_assert_eq(memcmp(got.buf[0] + 42, frame + 42, len - 42), 0);

	setup();
	{
		struct moat_vnet_hdr h = { 0 };

		cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
			     1);
		cr_assert_eq(got.len[0], len);
		cr_assert_eq(memcmp(got.buf[0], frame, len), 0, "nothing to do: emitted as it is");
		cr_assert_eq(gso_segment(frame, len, &h, scratch, len - 1, collect, &got), -ENOSPC);
		cr_assert_eq(gso_segment(frame, 13, &h, scratch, sizeof(scratch), collect, &got),
			     -EINVAL, "not an Ethernet frame");
		cr_assert_eq(gso_segment(frame, 65536, &h, scratch, sizeof(scratch), collect, &got),
			     -EINVAL, "longer than any record");
		cr_assert_eq(got.calls, 1);
	}
}

/* gso_segment() on frame must return @want and emit nothing. */
static void refused(size_t len, const struct moat_vnet_hdr *h, int want, const char *what)
{
	got.calls = 0;
	got.n = 0;
	cr_assert_eq(gso_segment(frame, len, h, scratch, sizeof(scratch), collect, &got), want,
		     "%s", what);
	cr_assert_eq(got.calls, 0, "%s: nothing emitted", what);
}

Test(gso, refuses_impossible_tcp4)
{
	size_t len = build_tcp(frame, false, 0, 3000, F_ACK);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);

	memcpy(orig, frame, len);
	h.gso_size = 0;
	refused(len, &h, -EINVAL, "gso_size 0");
	h.gso_size = MSS;
	h.gso_type = 3; /* UDP fragmentation offload */
	refused(len, &h, -EINVAL, "UFO");
	h.gso_type = MOAT_VNET_GSO_ECN;
	refused(len, &h, -EINVAL, "ECN without a type");
	h.gso_type = MOAT_VNET_GSO_TCPV4 | MOAT_VNET_GSO_TCPV6;
	refused(len, &h, -EINVAL, "two types");
	h.gso_type = MOAT_VNET_GSO_TCPV6;
	refused(len, &h, -EINVAL, "IPv4 frame, TCPV6 type");
	h.gso_type = MOAT_VNET_GSO_TCPV4;

	refused(13, &h, -EINVAL, "shorter than Ethernet");
	refused(14, &h, -EINVAL, "no IP header");
	refused(33, &h, -EINVAL, "half an IPv4 header");
	refused(53, &h, -EINVAL, "half a TCP header");
	refused(65, &h, -EINVAL, "truncated in the TCP options");
	refused(len - 1, &h, -EINVAL, "truncated payload");
	refused(len + 1, &h, -EINVAL, "a byte after the datagram");

	put16(frame + 12, 0x8100);
	refused(len, &h, -EINVAL, "VLAN tag");
	put16(frame + 12, 0x86dd);
	refused(len, &h, -EINVAL, "IPv6 ethertype, TCPV4 type");
	memcpy(frame, orig, len);

	frame[14] = 0x44;
	refused(len, &h, -EINVAL, "IHL 4");
	frame[14] = 0x40;
	refused(len, &h, -EINVAL, "IHL 0");
	frame[14] = 0x65;
	refused(len, &h, -EINVAL, "version 6 in an IPv4 frame");
	frame[14] = 0x4f; /* 60 bytes of IP header: the TCP header moves past hdr_len */
	refused(len, &h, -EINVAL, "IHL 15 against hdr_len 66");
	h.hdr_len = 0;
	frame[14] = 0x4f;
	put16(frame + 16, 60 + 10);
	refused(14 + 70, &h, -EINVAL, "IHL 15, 10 bytes left for TCP");
	memcpy(frame, orig, len);
	h.hdr_len = 66;

	put16(frame + 16, 3000 + 52 + 1);
	refused(len, &h, -EINVAL, "total length past the frame");
	put16(frame + 16, 3000 + 52 - 1);
	refused(len, &h, -EINVAL, "total length short of the frame");
	put16(frame + 16, 19);
	refused(len, &h, -EINVAL, "total length below IHL");
	memcpy(frame, orig, len);

	frame[23] = 17;
	refused(len, &h, -EINVAL, "protocol UDP");
	frame[23] = 6;
	put16(frame + 20, 0x2000);
	refused(len, &h, -EINVAL, "MF: a first fragment");
	put16(frame + 20, 0x0001);
	refused(len, &h, -EINVAL, "a fragment offset");
	memcpy(frame, orig, len);

	frame[46] = 4 << 4;
	refused(len, &h, -EINVAL, "data offset 4");
	frame[46] = 0;
	refused(len, &h, -EINVAL, "data offset 0");
	frame[46] = 15 << 4;
	refused(len, &h, -EINVAL, "data offset 15 against hdr_len 66");
	h.hdr_len = 0;
	put16(frame + 16, 20 + 40);
	refused(14 + 20 + 40, &h, -EINVAL, "data offset 15, the header past the datagram");
	memcpy(frame, orig, len);

	h.hdr_len = 66;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), 3,
		     "and the frame itself is fine");
}

Test(gso, refuses_impossible_tcp6)
{
	size_t len = build_tcp(frame, true, 0, 3000, F_ACK);
	struct moat_vnet_hdr h = tso(true, 54, 86, MSS);

	memcpy(orig, frame, len);
	h.gso_type = MOAT_VNET_GSO_TCPV4;
	refused(len, &h, -EINVAL, "IPv6 frame, TCPV4 type");
	h.gso_type = MOAT_VNET_GSO_TCPV6;
	refused(53, &h, -EINVAL, "half an IPv6 header");
	refused(73, &h, -EINVAL, "half a TCP header");
	refused(len - 1, &h, -EINVAL, "truncated payload");
	refused(len + 1, &h, -EINVAL, "a byte after the datagram");

	put16(frame + 12, 0x0800);
	refused(len, &h, -EINVAL, "IPv4 ethertype");
	memcpy(frame, orig, len);
	frame[14] = 0x40;
	refused(len, &h, -EINVAL, "version 4 in an IPv6 frame");
	memcpy(frame, orig, len);

	frame[20] = 0; /* hop-by-hop options */
	refused(len, &h, -EINVAL, "next header hop-by-hop");
	frame[20] = 17;
	refused(len, &h, -EINVAL, "next header UDP");
	memcpy(frame, orig, len);

	put16(frame + 18, 3032 + 1);
	refused(len, &h, -EINVAL, "payload length past the frame");
	put16(frame + 18, 3032 - 1);
	refused(len, &h, -EINVAL, "payload length short of the frame");
	put16(frame + 18, 0);
	refused(len, &h, -EINVAL, "payload length 0 (a jumbogram)");
	put16(frame + 18, 10);
	refused(64, &h, -EINVAL, "10 bytes left for TCP");
	memcpy(frame, orig, len);

	frame[66] = 4 << 4;
	refused(len, &h, -EINVAL, "data offset 4");
	h.hdr_len = 0;
	frame[66] = 15 << 4;
	put16(frame + 18, 40);
	refused(54 + 40, &h, -EINVAL, "data offset 15, the header past the frame");
	memcpy(frame, orig, len);

	h.hdr_len = 86;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), 3,
		     "and the frame itself is fine");
}

Test(gso, refuses_a_small_scratch)
{
	size_t len = build_tcp(frame, false, 0, 3000, F_ACK);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);

	cr_assert_eq(gso_segment(frame, len, &h, scratch, 66 + MSS - 1, collect, &got), -ENOSPC);
	cr_assert_eq(gso_segment(frame, len, &h, scratch, 0, collect, &got), -ENOSPC);
	cr_assert_eq(got.calls, 0);
}

Test(gso, a_failing_emit_stops_the_walk)
{
	size_t len = build_tcp(frame, false, 0, 5000, F_ACK | F_FIN);
	struct moat_vnet_hdr h = tso(false, 34, 66, MSS);

	got.fail_at = 1;
	got.fail_rc = -ENOBUFS;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
		     -ENOBUFS);
	cr_assert_eq(got.calls, 2, "no call after the one that failed");
	cr_assert_eq(got.n, 1);

	setup();
	got.fail_at = 0;
	got.fail_rc = 1;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
		     -ECANCELED, "a positive stop is not a piece count");
	cr_assert_eq(got.calls, 1);

	setup();
	got.fail_at = 0;
	got.fail_rc = -EAGAIN;
	h = (struct moat_vnet_hdr){ 0 };
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got), -EAGAIN,
		     "GSO_NONE too");
	got.calls = 0;
	got.fail_rc = 2;
	cr_assert_eq(gso_segment(frame, len, &h, scratch, sizeof(scratch), collect, &got),
		     -ECANCELED, "GSO_NONE: a positive stop is not a count either");
}
