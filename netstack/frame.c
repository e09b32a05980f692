/* SPDX-License-Identifier: MIT */
/*
 * frame.c - the guest frame validator
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack on a private copy of every frame taken from g2s,
 * before ARP, DHCP, ICMP, UDP or lwIP look at it. It checks that every
 * header the rest of the netstack will read is present and consistent:
 * Ethernet (length, destination MAC), ARP (Ethernet/IPv4 only), IPv4
 * (version, header length, total length, no options, fragment bounds),
 * IPv6 (payload length, at most a fragment header as extension), and, for
 * packets that are not fragments, the TCP/UDP/ICMP header
 * (frame_check_l4(), which the input path calls again on reassembled
 * packets). The answer is FRAME_OK, the enum moat_drop_reason to count, or
 * FRAME_IGNORE for the multicast group management every guest sends (IGMP,
 * MLD), which is dropped without being counted: it is not an error.
 *
 * Trust: the guest controls every byte. Nothing here allocates or keeps
 * state; the functions only read within the given length.
 */
#include <string.h>

#include "netstack/frame.h"
#include "shm/moat_shm.h"

#define IP4_HLEN    20
#define IP6_HLEN    40
#define IP4_MF	    0x2000
#define IP4_OFFMASK 0x1fff

/* Addresses the guest may never use as a source or destination. */
static bool martian4(const uint8_t *a)
{
	return a[0] == 127 || (a[0] & 0xf0) == 0xe0 || a[0] >= 240;
}

static int check_arp(const uint8_t *a, size_t len, struct frame_info *fi)
{
	uint16_t op;

	if (len < 28)
		return MOAT_DROP_MALFORMED;
	op = rd16(a + 6);
	if (rd16(a) != 1 || rd16(a + 2) != ETHTYPE_IP4 || a[4] != 6 || a[5] != 4 ||
	    (op != 1 && op != 2))
		return MOAT_DROP_MALFORMED;
	fi->ip_len = 28;
	return FRAME_OK;
}

static int check_proto(uint8_t proto, bool v6)
{
	if (proto == IPPROTO_TCP_ || proto == IPPROTO_UDP_)
		return FRAME_OK;
	if (proto == (v6 ? IPPROTO_ICMP6_ : IPPROTO_ICMP4))
		return FRAME_OK;
	return MOAT_DROP_PROTOCOL;
}

static int check_ip4(const uint8_t *ip, size_t len, struct frame_info *fi)
{
	uint32_t hl, tot, off;
	uint16_t frag;
	int rc;

	if (len < IP4_HLEN)
		return MOAT_DROP_MALFORMED;
	if ((ip[0] >> 4) != 4)
		return MOAT_DROP_MALFORMED;
	hl = (uint32_t)(ip[0] & 0x0f) * 4;
	if (hl < IP4_HLEN)
		return MOAT_DROP_MALFORMED;
	tot = rd16(ip + 2);
	if (tot < hl || tot > len)
		return MOAT_DROP_MALFORMED;
	/* IGMP reports (with their router alert option) are the guest's group chatter. */
	if (ip[9] == 2 && (ip[16] & 0xf0) == 0xe0)
		return FRAME_IGNORE;
	if (hl > IP4_HLEN)
		return MOAT_DROP_IP_OPTIONS;
	/* Destination 0.0.0.0 and martian sources or destinations. */
	if (!memcmp(ip + 16, "\0\0\0\0", 4) || martian4(ip + 12) ||
	    (martian4(ip + 16) &&
	     !(ip[16] == 255 && ip[17] == 255 && ip[18] == 255 && ip[19] == 255) &&
	     (ip[16] & 0xf0) != 0xe0))
		return MOAT_DROP_MALFORMED;
	frag = rd16(ip + 6);
	if (frag & 0x8000) /* the reserved flag */
		return MOAT_DROP_MALFORMED;
	fi->ip_len = tot;
	fi->l4_proto = ip[9];
	fi->l4_off = IP4_HLEN;
	rc = check_proto(ip[9], false);
	if (rc != FRAME_OK)
		return rc;
	off = (uint32_t)(frag & IP4_OFFMASK) * 8;
	if ((frag & IP4_MF) || off) {
		/* A fragment: its end must fit a 64 KiB datagram; MF ones carry 8n bytes. */
		if (tot == hl || off + (tot - hl) > 65535 - IP4_HLEN)
			return MOAT_DROP_FRAGMENT;
		if ((frag & IP4_MF) && ((tot - hl) & 7))
			return MOAT_DROP_FRAGMENT;
		fi->fragment = true;
		return FRAME_OK;
	}
	return frame_check_l4(ip[9], ip + hl, tot - hl, tot - hl);
}

static int check_ip6(const uint8_t *ip, size_t len, struct frame_info *fi)
{
	uint32_t plen, off = IP6_HLEN;
	uint8_t next;

	if (len < IP6_HLEN)
		return MOAT_DROP_MALFORMED;
	if ((ip[0] >> 4) != 6)
		return MOAT_DROP_MALFORMED;
	plen = rd16(ip + 4);
	if (plen == 0 || plen > len - IP6_HLEN) /* 0: a jumbogram, not on a link this small */
		return MOAT_DROP_MALFORMED;
	/* Source multicast, destination unspecified or loopback. */
	if (ip[8] == 0xff)
		return MOAT_DROP_MALFORMED;
	{
		static const uint8_t zero[15];

		if (!memcmp(ip + 24, zero, 15) && (ip[39] == 0 || ip[39] == 1))
			return MOAT_DROP_MALFORMED;
	}
	fi->ip_len = IP6_HLEN + plen;
	next = ip[6];
	if (next == IP6_NEXTH_FRAG) {
		uint16_t fo;

		if (plen < 8)
			return MOAT_DROP_MALFORMED;
		fi->fragment = true;
		fi->frag_off = IP6_HLEN;
		next = ip[IP6_HLEN];
		fo = rd16(ip + IP6_HLEN + 2);
		off += 8;
		if ((fo & 0xfff8) + (plen - 8) > 65535 || plen == 8)
			return MOAT_DROP_FRAGMENT;
		if ((fo & 1) && ((plen - 8) & 7))
			return MOAT_DROP_FRAGMENT;
		/* Atomic fragments (offset 0, no M) go through reassembly too. */
	}
	/* MLD reports: a hop-by-hop router alert to a link-scope group. */
	if (next == 0 && ip[24] == 0xff && (ip[25] & 0x0f) <= 2)
		return FRAME_IGNORE;
	/* Hop-by-hop, routing, destination options and the rest: options. */
	if (next == 0 || next == 43 || next == 60 || next == 51 || next == 50 || next == 135 ||
	    next == 139 || next == 140 || next == IP6_NEXTH_FRAG)
		return MOAT_DROP_IP_OPTIONS;
	fi->l4_proto = next;
	fi->l4_off = (uint16_t)off;
	if (check_proto(next, true) != FRAME_OK)
		return MOAT_DROP_PROTOCOL;
	if (fi->fragment)
		return FRAME_OK;
	return frame_check_l4(next, ip + off, fi->ip_len - off, fi->ip_len - off);
}

/* frame_check() without the MTU bound (the caller applied its own). */
static int check_frame(const struct frame_cfg *cfg, const uint8_t *f, size_t len,
		       struct frame_info *fi)
{
	memset(fi, 0, sizeof(*fi));
	if (len < ETH_HLEN)
		return MOAT_DROP_TOO_SHORT;
	fi->multicast = f[0] & 1;
	if (!fi->multicast && memcmp(f, cfg->our_mac, 6))
		return MOAT_DROP_NOT_FOR_US;
	if (f[6] & 1) /* a multicast source MAC */
		return MOAT_DROP_MALFORMED;
	fi->ethertype = rd16(f + 12);
	switch (fi->ethertype) {
	case ETHTYPE_ARP:
		return check_arp(f + ETH_HLEN, len - ETH_HLEN, fi);
	case ETHTYPE_IP4:
		return check_ip4(f + ETH_HLEN, len - ETH_HLEN, fi);
	case ETHTYPE_IP6:
		return check_ip6(f + ETH_HLEN, len - ETH_HLEN, fi);
	default:
		return MOAT_DROP_ETHERTYPE;
	}
}

/**
 * frame_check() - validate one guest frame
 * @cfg:	MTU and our MAC
 * @f:		the frame (a private copy)
 * @len:	its length
 * @fi:		filled with what was found
 *
 * Return: FRAME_OK, FRAME_IGNORE, or the enum moat_drop_reason to count
 * the drop under.
 */
int frame_check(const struct frame_cfg *cfg, const uint8_t *f, size_t len, struct frame_info *fi)
{
	if (len > (size_t)cfg->mtu + ETH_HLEN) {
		memset(fi, 0, sizeof(*fi));
		return MOAT_DROP_TOO_LONG;
	}
	return check_frame(cfg, f, len, fi);
}

/**
 * frame_check_l4() - validate a transport header
 * @proto:	IPPROTO_TCP_, IPPROTO_UDP_, IPPROTO_ICMP4 or IPPROTO_ICMP6_
 * @l4:		the header
 * @avail:	contiguous bytes readable at @l4 (at least min(@l4_len, 60))
 * @l4_len:	bytes of the transport segment as the IP header says
 *
 * Return: FRAME_OK or a drop reason.
 */
int frame_check_l4(uint8_t proto, const uint8_t *l4, size_t avail, size_t l4_len)
{
	size_t need;

	switch (proto) {
	case IPPROTO_TCP_: {
		uint8_t flags;
		size_t doff;

		if (l4_len < 20 || avail < 20)
			return MOAT_DROP_MALFORMED;
		doff = (size_t)(l4[12] >> 4) * 4;
		if (doff < 20 || doff > l4_len)
			return MOAT_DROP_MALFORMED;
		if (!rd16(l4) || !rd16(l4 + 2))
			return MOAT_DROP_MALFORMED;
		flags = l4[13];
		if ((flags & 0x02) && (flags & 0x05)) /* SYN with FIN or RST */
			return MOAT_DROP_MALFORMED;
		return FRAME_OK;
	}
	case IPPROTO_UDP_: {
		uint16_t ulen;

		if (l4_len < 8 || avail < 8)
			return MOAT_DROP_MALFORMED;
		ulen = rd16(l4 + 4);
		if (ulen < 8 || ulen > l4_len || !rd16(l4 + 2))
			return MOAT_DROP_MALFORMED;
		return FRAME_OK;
	}
	case IPPROTO_ICMP4:
	case IPPROTO_ICMP6_:
		need = proto == IPPROTO_ICMP4 ? 8 : 4;
		if (l4_len < need || avail < need)
			return MOAT_DROP_MALFORMED;
		return FRAME_OK;
	default:
		return MOAT_DROP_PROTOCOL;
	}
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/**
 * frame_check_vnet() - validate a frame that came with offload metadata
 * @cfg:	MTU, our MAC and the offloads the guest port negotiated
 * @vh:		the FRAME_VNET_LEN bytes of struct moat_vnet_hdr (a private copy)
 * @f:		the frame after it (a private copy)
 * @len:	the frame's length
 * @v:		filled with the metadata in host order
 * @fi:		as for frame_check()
 *
 * Metadata the guest port did not negotiate, or that cannot be true of this
 * frame, is MOAT_DROP_BAD_OFFLOAD: flags or GSO types moat does not know, a
 * GSO segment of size 0, a TCPv4 segment that is not IPv4 TCP (and the same
 * for TCPv6), a checksum position outside the frame. A segment (GSO) may be
 * up to MOAT_FRAME_MAX_GSO bytes; anything else keeps the MTU bound. The
 * checksum of a NEEDS_CSUM frame is partial and is not looked at (moat
 * verifies no checksums: the guest port is a local link).
 *
 * Return: FRAME_OK, FRAME_IGNORE, or the enum moat_drop_reason to count
 * the drop under.
 */
int frame_check_vnet(const struct frame_cfg *cfg, const uint8_t *vh, const uint8_t *f, size_t len,
		     struct frame_vnet *v, struct frame_info *fi)
{
	uint8_t gso;
	int rc;

	memset(fi, 0, sizeof(*fi));
	v->flags = vh[0];
	v->gso_type = vh[1];
	v->hdr_len = le16(vh + 2);
	v->gso_size = le16(vh + 4);
	v->csum_start = le16(vh + 6);
	v->csum_offset = le16(vh + 8);
	gso = v->gso_type & (uint8_t)~MOAT_VNET_GSO_ECN;
	if (v->flags & ~(MOAT_VNET_F_NEEDS_CSUM | MOAT_VNET_F_DATA_VALID))
		return MOAT_DROP_BAD_OFFLOAD;
	if (v->flags & MOAT_VNET_F_NEEDS_CSUM) {
		if (!(cfg->offloads & MOAT_OFFLOAD_CSUM) || v->csum_start < ETH_HLEN ||
		    (size_t)v->csum_start + v->csum_offset + 2 > len)
			return MOAT_DROP_BAD_OFFLOAD;
	}
	if (gso == MOAT_VNET_GSO_NONE) {
		if (v->gso_type != MOAT_VNET_GSO_NONE)
			return MOAT_DROP_BAD_OFFLOAD; /* ECN on no segment */
		return frame_check(cfg, f, len, fi);
	}
	if ((gso == MOAT_VNET_GSO_TCPV4 && !(cfg->offloads & MOAT_OFFLOAD_TSO4)) ||
	    (gso == MOAT_VNET_GSO_TCPV6 && !(cfg->offloads & MOAT_OFFLOAD_TSO6)) ||
	    (gso != MOAT_VNET_GSO_TCPV4 && gso != MOAT_VNET_GSO_TCPV6) || v->gso_size == 0)
		return MOAT_DROP_BAD_OFFLOAD;
	if (len > MOAT_FRAME_MAX_GSO)
		return MOAT_DROP_TOO_LONG;
	rc = check_frame(cfg, f, len, fi);
	if (rc != FRAME_OK)
		return rc;
	if (fi->l4_proto != IPPROTO_TCP_ || fi->fragment ||
	    fi->ethertype != (gso == MOAT_VNET_GSO_TCPV4 ? ETHTYPE_IP4 : ETHTYPE_IP6))
		return MOAT_DROP_BAD_OFFLOAD;
	return FRAME_OK;
}
