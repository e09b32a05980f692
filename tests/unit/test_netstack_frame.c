/* SPDX-License-Identifier: MIT */
/*
 * test_netstack_frame.c - the guest frame validator (netstack/frame.c),
 * called directly, and the same frames through a whole netstack to check
 * that each drop is counted under its reason.
 */
#include <criterion/criterion.h>

#include "netstack/frame.h"
#include "netstack_harness.h"

static const struct frame_cfg cfg = {
	.mtu = 1500,
	.our_mac = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 },
};
static uint8_t f[70000];

/* A valid UDP/IPv4 frame to start from. */
static size_t base_udp(void)
{
	return nh_udp4(f, nh_guest_mac, NH_GUEST_IP, 1234, NH_REMOTE_IP, 53, "payload!", 8);
}

static void reip(void)
{
	/* recompute the IPv4 header checksum (not checked, but keep frames honest) */
	nh_put16(f + 24, 0);
	nh_put16(f + 24, nh_fold(nh_sum(f + 14, (size_t)(f[14] & 15) * 4, 0)));
}

static int check(size_t len)
{
	struct frame_info fi;

	return frame_check(&cfg, f, len, &fi);
}

Test(netstack_frame, valid_frames_pass)
{
	struct frame_info fi;
	size_t n = base_udp();

	cr_assert_eq(frame_check(&cfg, f, n, &fi), FRAME_OK);
	cr_assert_eq(fi.ethertype, ETHTYPE_IP4);
	cr_assert_eq(fi.l4_proto, 17);
	cr_assert_eq(fi.ip_len, 36);
	/* Ethernet padding after the IP packet is allowed. */
	memset(f + n, 0, 20);
	cr_assert_eq(frame_check(&cfg, f, n + 20, &fi), FRAME_OK);
	cr_assert_eq(fi.ip_len, 36);
	n = nh_tcp4(f, NH_GUEST_IP, 1, NH_REMOTE_IP, 80, 1, 0, 0x02, 100, NULL, 0, NULL, 0);
	cr_assert_eq(check(n), FRAME_OK);
	n = nh_echo4(f, NH_GUEST_IP, NH_GW_IP, 1, 1, "x", 1);
	cr_assert_eq(check(n), FRAME_OK);
}

Test(netstack_frame, lengths)
{
	size_t n = base_udp();

	cr_assert_eq(check(0), MOAT_DROP_TOO_SHORT);
	cr_assert_eq(check(13), MOAT_DROP_TOO_SHORT);
	cr_assert_eq(check(1515), MOAT_DROP_TOO_LONG);
	/* Ethernet only, truncated IPv4 header */
	cr_assert_eq(check(14), MOAT_DROP_MALFORMED);
	cr_assert_eq(check(14 + 19), MOAT_DROP_MALFORMED);
	/* truncated UDP header / payload: IP total length says more than the frame */
	cr_assert_eq(check(n - 1), MOAT_DROP_MALFORMED);
	cr_assert_eq(check(14 + 20 + 4), MOAT_DROP_MALFORMED);
	/* IP total length smaller than the header */
	nh_put16(f + 16, 19);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	/* UDP length larger than the IP payload, or smaller than 8 */
	n = base_udp();
	nh_put16(f + 38, 17);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	nh_put16(f + 38, 7);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
}

Test(netstack_frame, headers)
{
	size_t n = base_udp();

	f[14] = 0x65; /* version 6 in an IPv4 frame */
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	f[14] = 0x44; /* IHL 4 */
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	/* IPv4 options: IHL 6 with a NOP option word */
	n = base_udp();
	memmove(f + 38, f + 34, 16);
	memset(f + 34, 1, 4);
	f[14] = 0x46;
	nh_put16(f + 16, 40);
	reip();
	cr_assert_eq(check(n + 4), MOAT_DROP_IP_OPTIONS);
	/* unknown ethertype, VLAN */
	n = base_udp();
	nh_put16(f + 12, 0x8100);
	cr_assert_eq(check(n), MOAT_DROP_ETHERTYPE);
	/* unknown protocol (GRE) */
	n = base_udp();
	f[23] = 47;
	cr_assert_eq(check(n), MOAT_DROP_PROTOCOL);
	/* not our MAC, not broadcast */
	n = base_udp();
	f[5] ^= 1;
	cr_assert_eq(check(n), MOAT_DROP_NOT_FOR_US);
	memset(f, 0xff, 6);
	cr_assert_eq(check(n), FRAME_OK);
	/* martians */
	n = base_udp();
	nh_put32(f + 30, 0x7f000001);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	n = base_udp();
	nh_put32(f + 26, 0xe0000001);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
}

Test(netstack_frame, transport_headers)
{
	size_t n;

	/* TCP data offset beyond the segment, below 5, SYN+FIN, port 0 */
	n = nh_tcp4(f, NH_GUEST_IP, 1, NH_REMOTE_IP, 80, 1, 0, 0x02, 100, NULL, 0, NULL, 0);
	f[46] = 0xf0;
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	f[46] = 0x40;
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	f[46] = 0x50;
	f[47] = 0x03;
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	f[47] = 0x02;
	nh_put16(f + 36, 0);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	/* truncated TCP header: IP says 20 + 10 */
	n = nh_tcp4(f, NH_GUEST_IP, 1, NH_REMOTE_IP, 80, 1, 0, 0x02, 100, NULL, 0, NULL, 0);
	nh_put16(f + 16, 30);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
	/* truncated ICMP header */
	n = nh_echo4(f, NH_GUEST_IP, NH_GW_IP, 1, 1, "", 0);
	nh_put16(f + 16, 24);
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
}

Test(netstack_frame, fragments)
{
	struct frame_info fi;
	size_t n = base_udp();

	nh_put16(f + 20, 0x2000); /* MF, offset 0, 16 bytes payload: 8n */
	cr_assert_eq(frame_check(&cfg, f, n, &fi), FRAME_OK);
	cr_assert(fi.fragment);
	nh_put16(f + 20, 0x0001); /* last fragment at offset 8 */
	cr_assert_eq(frame_check(&cfg, f, n, &fi), FRAME_OK);
	cr_assert(fi.fragment);
	nh_put16(f + 20, 0x1fff); /* ends beyond 64 KiB */
	cr_assert_eq(check(n), MOAT_DROP_FRAGMENT);
	/* MF with a payload that is not a multiple of 8 */
	n = nh_udp4(f, nh_guest_mac, NH_GUEST_IP, 1, NH_REMOTE_IP, 53, "abc", 3);
	nh_put16(f + 20, 0x2000);
	cr_assert_eq(check(n), MOAT_DROP_FRAGMENT);
	nh_put16(f + 20, 0x8000); /* the reserved flag */
	cr_assert_eq(check(n), MOAT_DROP_MALFORMED);
}

Test(netstack_frame, arp_and_ipv6)
{
	size_t n;

	memcpy(f, nh_gw_mac, 6);
	memcpy(f + 6, nh_guest_mac, 6);
	nh_put16(f + 12, ETHTYPE_ARP);
	nh_put16(f + 14, 1);
	nh_put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	nh_put16(f + 20, 1);
	cr_assert_eq(check(42), FRAME_OK);
	cr_assert_eq(check(41), MOAT_DROP_MALFORMED);
	f[18] = 8;
	cr_assert_eq(check(42), MOAT_DROP_MALFORMED);

	/* IPv6: UDP, then a hop-by-hop header (options), then a truncated header */
	memset(f, 0, 100);
	memcpy(f, nh_gw_mac, 6);
	memcpy(f + 6, nh_guest_mac, 6);
	nh_put16(f + 12, ETHTYPE_IP6);
	f[14] = 0x60;
	nh_put16(f + 18, 8 + 4);
	f[20] = 17;
	f[21] = 64;
	f[22] = 0xfd, f[37] = 0x15;
	f[38] = 0x20, f[39] = 0x01, f[53] = 1;
	nh_put16(f + 54, 1000);
	nh_put16(f + 56, 53);
	nh_put16(f + 58, 12);
	n = 14 + 40 + 12;
	cr_assert_eq(check(n), FRAME_OK);
	f[20] = 0;
	cr_assert_eq(check(n), MOAT_DROP_IP_OPTIONS);
	f[20] = 17;
	cr_assert_eq(check(n - 1), MOAT_DROP_MALFORMED);
	cr_assert_eq(check(14 + 39), MOAT_DROP_MALFORMED);
}

/* The same bad frames through a netstack: counted under their reasons, no crash. */
Test(netstack_frame, drops_are_counted_by_the_netstack)
{
	struct moat_netstack_counters *c;
	size_t n;

	nh_init();
	c = nh_cnt();
	nh_guest_send(f, 10);
	n = base_udp();
	nh_guest_send(f, 1600);
	nh_guest_send(f, 14 + 19);
	nh_put16(f + 12, 0x88cc); /* LLDP */
	nh_guest_send(f, n);
	n = base_udp();
	f[0] = 0x02; /* someone else's MAC */
	nh_guest_send(f, n);
	n = base_udp();
	nh_put32(f + 26, 0x0a000263); /* spoofed source IP */
	nh_guest_send(f, n);
	nh_poll();
	cr_assert_eq(c->drops[MOAT_DROP_TOO_SHORT], 1);
	cr_assert_eq(c->drops[MOAT_DROP_TOO_LONG], 1);
	cr_assert_eq(c->drops[MOAT_DROP_MALFORMED], 1);
	cr_assert_eq(c->drops[MOAT_DROP_ETHERTYPE], 1);
	cr_assert_eq(c->drops[MOAT_DROP_NOT_FOR_US], 1);
	cr_assert_eq(c->drops[MOAT_DROP_SPOOFED], 1);
	cr_assert_eq(c->spoofed_frames, 1);
	cr_assert(!H.ns.violation);
}

Test(netstack_frame, spoof_terminate_is_a_violation)
{
	size_t n;

	nh_init_cfg(1500, 16, 2, 1u << 20);
	n = base_udp();
	nh_guest_send(f, n); /* learns the MAC */
	n = base_udp();
	f[11] ^= 0x10; /* another source MAC */
	nh_guest_send(f, n);
	nh_poll();
	cr_assert(H.ns.violation);
	cr_assert_eq(H.ns.mbox->reason, MOAT_VIOL_SPOOF);
}

Test(netstack_frame, anti_spoof_off_lets_them_through)
{
	uint32_t type;
	size_t n;

	nh_init_cfg(1500, 16, 0, 1u << 20);
	n = base_udp();
	nh_guest_send(f, n);
	n = base_udp();
	nh_put32(f + 26, 0x0a000263);
	nh_guest_send(f, n);
	nh_poll();
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_SPOOFED], 0);
	cr_assert_gt(nh_proxy_recv(&type, f, sizeof(f)), 0);
	cr_assert_gt(nh_proxy_recv(&type, f, sizeof(f)), 0);
}

/* Fragmented UDP is reassembled before the proxy sees it. */
Test(netstack_frame, fragments_are_reassembled)
{
	static uint8_t payload[3000], msg[FLOW_RECORD_MAX];
	uint8_t *ip = f + 14;
	size_t off = 0, udp_len = 8 + sizeof(payload);
	uint8_t whole[8 + sizeof(payload)];
	struct flow_dgram d;
	uint32_t type;
	int n;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	nh_init();
	nh_put16(whole, 4000);
	nh_put16(whole + 2, 9999);
	nh_put16(whole + 4, (uint16_t)udp_len);
	nh_put16(whole + 6, 0);
	memcpy(whole + 8, payload, sizeof(payload));
	while (off < udp_len) {
		size_t len = udp_len - off > 1480 ? 1480 : udp_len - off;

		memcpy(f + 34, whole + off, len);
		nh_ip4(f, nh_guest_mac, NH_GUEST_IP, NH_REMOTE_IP, 17, len);
		nh_put16(ip + 6, (uint16_t)((off / 8) | (off + len < udp_len ? 0x2000 : 0)));
		reip();
		nh_guest_send(f, 34 + len);
		off += len;
	}
	nh_poll();
	n = nh_proxy_recv(&type, msg, sizeof(msg));
	cr_assert_eq(type, FLOW_DGRAM);
	cr_assert_eq(n, (int)(sizeof(d) + sizeof(payload)));
	cr_assert(!memcmp(msg + sizeof(d), payload, sizeof(payload)));
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_FRAGMENT], 0);
}

/* ---- offload metadata (frame_check_vnet) --------------------------------- */

static const struct frame_cfg cfg_tso = {
	.mtu = 1500,
	.offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6,
	.our_mac = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 },
};

static int check_vnet(const struct frame_cfg *c, uint8_t flags, uint8_t gso, uint16_t gso_size,
		      uint16_t csum_start, uint16_t csum_offset, size_t len)
{
	uint8_t vh[FRAME_VNET_LEN] = { flags,
				       gso,
				       54,
				       0,
				       (uint8_t)gso_size,
				       (uint8_t)(gso_size >> 8),
				       (uint8_t)csum_start,
				       (uint8_t)(csum_start >> 8),
				       (uint8_t)csum_offset,
				       (uint8_t)(csum_offset >> 8) };
	struct frame_vnet v;
	struct frame_info fi;

	return frame_check_vnet(c, vh, f, len, &v, &fi);
}

Test(netstack_frame, offload_metadata)
{
	static uint8_t payload[20000];
	size_t small = base_udp(), seg;

	/* No metadata at all: the frame as frame_check() sees it. */
	cr_assert_eq(check_vnet(&cfg_tso, 0, MOAT_VNET_GSO_NONE, 0, 0, 0, small), FRAME_OK);
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_DATA_VALID, 0, 0, 0, 0, small), FRAME_OK);
	/* A partial checksum inside the frame, and outside it. */
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, 0, 0, 34, 6, small), FRAME_OK);
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, 0, 0, 34, 60000, small),
		     MOAT_DROP_BAD_OFFLOAD);
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, 0, 0, 2, 0, small),
		     MOAT_DROP_BAD_OFFLOAD, "a checksum inside the Ethernet header");
	cr_assert_eq(check_vnet(&cfg, MOAT_VNET_F_NEEDS_CSUM, 0, 0, 34, 6, small),
		     MOAT_DROP_BAD_OFFLOAD, "partial checksums not negotiated");
	/* Flags and GSO types moat does not know. */
	cr_assert_eq(check_vnet(&cfg_tso, 0x80, 0, 0, 0, 0, small), MOAT_DROP_BAD_OFFLOAD);
	cr_assert_eq(check_vnet(&cfg_tso, 0, 3 /* UFO */, 1400, 0, 0, small),
		     MOAT_DROP_BAD_OFFLOAD);
	cr_assert_eq(check_vnet(&cfg_tso, 0, MOAT_VNET_GSO_ECN, 0, 0, 0, small),
		     MOAT_DROP_BAD_OFFLOAD, "ECN without a segment");

	/* A 20000-byte TCP/IPv4 segment. */
	seg = nh_tcp4(f, NH_GUEST_IP, 40000, NH_REMOTE_IP, 80, 1, 1, 0x18, 1000, NULL, 0, payload,
		      sizeof(payload));
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 1460, 34, 16,
				seg),
		     FRAME_OK);
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM,
				MOAT_VNET_GSO_TCPV4 | MOAT_VNET_GSO_ECN, 1460, 34, 16, seg),
		     FRAME_OK);
	cr_assert_eq(check_vnet(&cfg_tso, 0, MOAT_VNET_GSO_NONE, 0, 0, 0, seg), MOAT_DROP_TOO_LONG,
		     "over the MTU without GSO");
	cr_assert_eq(check(seg), MOAT_DROP_TOO_LONG);
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 0, 34, 16,
				seg),
		     MOAT_DROP_BAD_OFFLOAD, "GSO size 0");
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV6, 1440, 34, 16,
				seg),
		     MOAT_DROP_BAD_OFFLOAD, "a TCPv6 segment that is IPv4");
	cr_assert_eq(check_vnet(&cfg, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 1460, 34, 16,
				seg),
		     MOAT_DROP_BAD_OFFLOAD, "TSO not negotiated");
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 1460, 34, 16,
				70000),
		     MOAT_DROP_TOO_LONG, "longer than MOAT_FRAME_MAX_GSO");
	/* The IP header says less than the frame holds: padding, fine; more: malformed. */
	cr_assert_eq(check_vnet(&cfg_tso, MOAT_VNET_F_NEEDS_CSUM, MOAT_VNET_GSO_TCPV4, 1460, 34, 16,
				seg - 100),
		     MOAT_DROP_MALFORMED, "a segment shorter than its IP header says");
	/* A UDP frame claiming to be a TCP segment. */
	nh_udp4(f, nh_guest_mac, NH_GUEST_IP, 1234, NH_REMOTE_IP, 53, payload, 2000);
	cr_assert_eq(check_vnet(&cfg_tso, 0, MOAT_VNET_GSO_TCPV4, 1460, 0, 0, 14 + 20 + 8 + 2000),
		     MOAT_DROP_BAD_OFFLOAD);
}
