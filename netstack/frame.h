/* SPDX-License-Identifier: MIT */
/*
 * frame.h - validation of guest frames before anything else parses them.
 * Pure functions with no lwIP dependency (unit tests and fuzzers call them
 * directly). Private to netstack/ and its tests.
 */
#ifndef MOAT_FRAME_H
#define MOAT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/moat_shm.h"

#define FRAME_OK     (-1) /* frame_check() passed */
#define FRAME_IGNORE (-2) /* multicast group chatter (IGMP, MLD): drop, uncounted */

#define ETH_HLEN    14
#define ETHTYPE_IP4 0x0800
#define ETHTYPE_ARP 0x0806
#define ETHTYPE_IP6 0x86dd

#define IPPROTO_ICMP4  1
#define IPPROTO_TCP_   6
#define IPPROTO_UDP_   17
#define IPPROTO_ICMP6_ 58
#define IP6_NEXTH_FRAG 44

/**
 * struct frame_cfg - what the validator needs to know
 * @mtu:	IP MTU; frames may be at most mtu + 14 bytes (segments with
 *		offload metadata: MOAT_FRAME_MAX_GSO)
 * @offloads:	MOAT_OFFLOAD_* the guest port negotiated (frame_check_vnet())
 * @our_mac:	the gateway MAC the guest sends to
 */
struct frame_cfg {
	uint32_t mtu;
	uint32_t offloads;
	uint8_t our_mac[6];
};

/**
 * struct frame_vnet - a moat_vnet_hdr as frame_check_vnet() read it (host
 * order); see shm/moat_shm.h for the fields
 */
struct frame_vnet {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

#define FRAME_VNET_LEN ((uint32_t)sizeof(struct moat_vnet_hdr)) /* on the ring, before the frame */

/**
 * struct frame_info - what frame_check() found (valid only on FRAME_OK)
 * @ethertype:	ETHTYPE_*
 * @multicast:	destination MAC is broadcast or multicast
 * @ip_len:	IP packet length (header included) without Ethernet padding;
 *		for ARP the ARP payload length
 * @l4_proto:	IPPROTO_* of the transport header
 * @l4_off:	offset of the transport header from the IP header (IPv6:
 *		after the fragment header, if any)
 * @fragment:	an IPv4 fragment, or an IPv6 packet with a fragment header
 * @frag_off:	for IPv6 fragments, offset of the fragment header from the IP header
 */
struct frame_info {
	uint16_t ethertype;
	bool multicast;
	uint32_t ip_len;
	uint8_t l4_proto;
	uint16_t l4_off;
	bool fragment;
	uint16_t frag_off;
};

int frame_check(const struct frame_cfg *cfg, const uint8_t *f, size_t len, struct frame_info *fi);
int frame_check_l4(uint8_t proto, const uint8_t *l4, size_t avail, size_t l4_len);
int frame_check_vnet(const struct frame_cfg *cfg, const uint8_t *vh, const uint8_t *f, size_t len,
		     struct frame_vnet *v, struct frame_info *fi);

/* Big-endian loads from byte buffers (no alignment assumptions). */
static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif /* MOAT_FRAME_H */
