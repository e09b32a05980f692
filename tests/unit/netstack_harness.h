/* SPDX-License-Identifier: MIT */
/*
 * netstack_harness.h - an in-process netstack with the other ends of its
 * rings: the tests are the guest (g2s producer, s2g consumer) and the proxy
 * (p2s producer, s2p consumer). The region is a real memfd region made with
 * region_create(); eventfds are -1 (the rings' wakes become no-ops).
 *
 * Frame builders produce Ethernet/IPv4/IPv6 frames with correct checksums;
 * frame parsers check the checksums of what the netstack sends. Included by
 * tests/unit/test_netstack_*.c and tests/fuzz/fuzz_netstack_*.c only.
 */
#ifndef MOAT_NETSTACK_HARNESS_H
#define MOAT_NETSTACK_HARNESS_H

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "netstack/stack.h"
#include "shm/flow.h"
#include "shm/region.h"
#include "shm/ring.h"

#define NH_GUEST_IP  0x0a00020fu /* 10.0.2.15 */
#define NH_GW_IP     0x0a000202u
#define NH_DNS_IP    0x0a000203u
#define NH_REMOTE_IP 0xcb00710au /* 203.0.113.10 */

static const uint8_t nh_gw_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };
static const uint8_t nh_guest_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x15 };

struct nh {
	struct netstack ns;
	struct ring g2s, s2g, s2p, p2s; /* the peers' views */
};

static struct nh H;
/* MOAT_OFFLOAD_* the next nh_init_cfg() writes to the header (0: plain frames). */
static uint32_t nh_offloads;

static inline void nh_init_cfg(uint32_t mtu, uint32_t max_conns, uint8_t anti_spoof,
			       uint64_t frame_ring)
{
	struct region_config rc = { .frame_ring_bytes = frame_ring, .flow_ring_bytes = 1u << 20 };
	struct stack_fds fds = { -1, -1, -1 };
	struct moat_shm_header h;
	struct region *r = &H.ns.region;
	uint32_t v;

	memset(&h, 0, sizeof(h));
	h.mtu = mtu;
	v = htobe32(NH_GUEST_IP);
	memcpy(h.guest_ip4, &v, 4);
	v = htobe32(NH_GW_IP);
	memcpy(h.gateway_ip4, &v, 4);
	v = htobe32(NH_DNS_IP);
	memcpy(h.dns_ip4, &v, 4);
	v = htobe32(0xffffff00u);
	memcpy(h.netmask4, &v, 4);
	memcpy(h.gateway_mac, nh_gw_mac, 6);
	h.guest_ip6[0] = 0xfd, h.guest_ip6[15] = 15;
	h.gateway_ip6[0] = 0xfd, h.gateway_ip6[15] = 2;
	h.prefix4 = 24;
	h.anti_spoof = anti_spoof;
	h.log_level = 1;
	h.max_tcp_connections = max_conns;
	h.max_udp_flows = 64;
	h.connect_timeout_ms = 10000;
	h.tcp_idle_timeout_s = MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S;
	h.udp_idle_timeout_s = 60;
	h.guest_offloads = nh_offloads;
	memset(&H, 0, sizeof(H));
	if (region_create(&rc, &h, r) < 0) {
		perror("region_create");
		abort();
	}
	if (stack_init(&H.ns, &fds) < 0) {
		fprintf(stderr, "stack_init failed\n");
		abort();
	}
	ring_attach(&H.g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), -1, -1, NULL);
	ring_attach(&H.s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), -1, -1, NULL);
	ring_attach(&H.s2p, r->part[MOAT_PART_RING_S2P],
		    region_ring_capacity(r, MOAT_PART_RING_S2P), -1, -1, NULL);
	ring_attach(&H.p2s, r->part[MOAT_PART_RING_P2S],
		    region_ring_capacity(r, MOAT_PART_RING_P2S), -1, -1, NULL);
}

static inline void nh_init(void)
{
	nh_init_cfg(1500, 64, 1, 1u << 20);
}

static struct moat_netstack_counters *nh_cnt(void)
{
	return H.ns.cnt;
}

/* Run the netstack until it has nothing left to do right now. */
static inline void nh_poll(void)
{
	for (int i = 0; i < 64; i++) {
		stack_poll(&H.ns);
		if (H.ns.violation || stack_prepare_sleep(&H.ns) != 0)
			break;
	}
	stack_wake(&H.ns);
}

/* Push a frame into g2s; false if the ring is full. */
static inline bool nh_guest_try_send(const void *frame, size_t len)
{
	if (ring_push(&H.g2s, MOAT_REC_FRAME, frame, (uint32_t)len) < 0)
		return false;
	ring_flush(&H.g2s);
	return true;
}

/* Push a frame with offload metadata (MOAT_REC_FRAME_VNET); false if g2s is full. */
static inline bool nh_guest_send_vnet(const struct moat_vnet_hdr *vh, const void *frame, size_t len)
{
	struct iovec iov[2] = { { (void *)vh, sizeof(*vh) }, { (void *)frame, len } };

	if (ring_pushv(&H.g2s, MOAT_REC_FRAME_VNET, iov, 2) < 0)
		return false;
	ring_flush(&H.g2s);
	return true;
}

static inline void nh_guest_send(const void *frame, size_t len)
{
	if (!nh_guest_try_send(frame, len)) {
		fprintf(stderr, "g2s full\n");
		abort();
	}
}

/* Next s2g record, whatever its type (*@type): its length or -1. */
static inline int nh_guest_recv_rec(uint8_t *buf, size_t size, uint32_t *type)
{
	int n = ring_pop(&H.s2g, type, buf, (uint32_t)size);

	ring_release(&H.s2g);
	return n < 0 ? -1 : n;
}

/* Next frame the netstack sent to the guest, any ethertype: length or -1. */
static inline int nh_guest_recv_any(uint8_t *buf, size_t size)
{
	uint32_t type;

	return nh_guest_recv_rec(buf, size, &type);
}

/*
 * Next IPv4 or ARP frame the netstack sent to the guest: length, or -1 if
 * none. IPv6 frames (the Router Advertisement the guest's first frame
 * triggers) are skipped.
 */
static inline int nh_guest_recv(uint8_t *buf, size_t size)
{
	int n;

	while ((n = nh_guest_recv_any(buf, size)) >= 14 && buf[12] == 0x86 && buf[13] == 0xdd)
		;
	return n;
}

static inline void nh_proxy_send(uint32_t type, const void *msg, size_t len)
{
	if (ring_push(&H.p2s, type, msg, (uint32_t)len) < 0)
		abort();
	ring_flush(&H.p2s);
}

static inline void nh_proxy_send2(uint32_t type, const void *hdr, size_t hlen, const void *data,
				  size_t dlen)
{
	struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)data, dlen } };

	if (ring_pushv(&H.p2s, type, iov, 2) < 0)
		abort();
	ring_flush(&H.p2s);
}

/* Next message from the netstack to the proxy: length, or -1 if none. */
static inline int nh_proxy_recv(uint32_t *type, uint8_t *buf, size_t size)
{
	int n = ring_pop(&H.s2p, type, buf, (uint32_t)size);

	ring_release(&H.s2p);
	return n < 0 ? -1 : n;
}

/* ---- checksums and builders ------------------------------------------ */

static inline uint32_t nh_sum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	while (len > 1) {
		sum += (uint32_t)(p[0] << 8 | p[1]);
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)(p[0] << 8);
	return sum;
}

static inline uint16_t nh_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static inline void nh_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static inline void nh_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
	p[3] = (uint8_t)v;
}

static inline uint16_t nh_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t nh_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Ethernet + IPv4 header around an L4 payload that is already in place at f+34. */
static inline size_t nh_ip4(uint8_t *f, const uint8_t *src_mac, uint32_t src, uint32_t dst,
			    uint8_t proto, size_t l4len)
{
	uint8_t *ip = f + 14;

	memcpy(f, nh_gw_mac, 6);
	memcpy(f + 6, src_mac, 6);
	nh_put16(f + 12, 0x0800);
	ip[0] = 0x45;
	ip[1] = 0;
	nh_put16(ip + 2, (uint16_t)(20 + l4len));
	nh_put16(ip + 4, 0x1234);
	nh_put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	nh_put16(ip + 10, 0);
	nh_put32(ip + 12, src);
	nh_put32(ip + 16, dst);
	nh_put16(ip + 10, nh_fold(nh_sum(ip, 20, 0)));
	return 34 + l4len;
}

static inline uint32_t nh_pseudo4(uint32_t src, uint32_t dst, uint8_t proto, size_t len)
{
	uint8_t ph[12];

	nh_put32(ph, src);
	nh_put32(ph + 4, dst);
	ph[8] = 0;
	ph[9] = proto;
	nh_put16(ph + 10, (uint16_t)len);
	return nh_sum(ph, 12, 0);
}

/* A TCP segment from the guest; @opts may be NULL. */
static inline size_t nh_tcp4(uint8_t *f, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
			     uint32_t seq, uint32_t ack, uint8_t flags, uint16_t win,
			     const uint8_t *opts, size_t optlen, const void *data, size_t dlen)
{
	uint8_t *t = f + 34;
	size_t hl = 20 + optlen;

	memset(t, 0, hl);
	nh_put16(t, sport);
	nh_put16(t + 2, dport);
	nh_put32(t + 4, seq);
	nh_put32(t + 8, ack);
	t[12] = (uint8_t)((hl / 4) << 4);
	t[13] = flags;
	nh_put16(t + 14, win);
	if (optlen)
		memcpy(t + 20, opts, optlen);
	if (dlen)
		memcpy(t + hl, data, dlen);
	nh_put16(t + 16, nh_fold(nh_sum(t, hl + dlen, nh_pseudo4(src, dst, 6, hl + dlen))));
	return nh_ip4(f, nh_guest_mac, src, dst, 6, hl + dlen);
}

static inline size_t nh_udp4(uint8_t *f, const uint8_t *mac, uint32_t src, uint16_t sport,
			     uint32_t dst, uint16_t dport, const void *data, size_t dlen)
{
	uint8_t *u = f + 34;

	nh_put16(u, sport);
	nh_put16(u + 2, dport);
	nh_put16(u + 4, (uint16_t)(8 + dlen));
	nh_put16(u + 6, 0);
	memcpy(u + 8, data, dlen);
	nh_put16(u + 6, nh_fold(nh_sum(u, 8 + dlen, nh_pseudo4(src, dst, 17, 8 + dlen))));
	return nh_ip4(f, mac, src, dst, 17, 8 + dlen);
}

static inline size_t nh_echo4(uint8_t *f, uint32_t src, uint32_t dst, uint16_t ident, uint16_t seq,
			      const void *data, size_t dlen)
{
	uint8_t *c = f + 34;

	c[0] = 8;
	c[1] = 0;
	nh_put16(c + 2, 0);
	nh_put16(c + 4, ident);
	nh_put16(c + 6, seq);
	memcpy(c + 8, data, dlen);
	nh_put16(c + 2, nh_fold(nh_sum(c, 8 + dlen, 0)));
	return nh_ip4(f, nh_guest_mac, src, dst, 1, 8 + dlen);
}

/* ---- parsing what the netstack sends ---------------------------------- */

struct nh_pkt {
	uint16_t ethertype;
	uint8_t dst_mac[6];
	uint32_t src, dst;
	uint8_t proto;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	uint8_t type, code; /* ICMP */
	const uint8_t *l4;
	size_t l4len;
	const uint8_t *data; /* TCP/UDP payload, ICMP after 8 bytes */
	size_t dlen;
	bool csum_ok;
	bool frag;
};

/* Parse an IPv4 frame from the netstack; checksums are verified. */
static inline bool nh_parse4(const uint8_t *f, size_t len, struct nh_pkt *p)
{
	const uint8_t *ip = f + 14;
	size_t hl, tot;

	memset(p, 0, sizeof(*p));
	if (len < 34)
		return false;
	memcpy(p->dst_mac, f, 6);
	p->ethertype = nh_get16(f + 12);
	if (p->ethertype != 0x0800)
		return false;
	hl = (size_t)(ip[0] & 15) * 4;
	tot = nh_get16(ip + 2);
	if (tot > len - 14 || hl < 20)
		return false;
	p->src = nh_get32(ip + 12);
	p->dst = nh_get32(ip + 16);
	p->proto = ip[9];
	p->frag = (nh_get16(ip + 6) & 0x3fff) != 0;
	p->csum_ok = nh_fold(nh_sum(ip, hl, 0)) == 0;
	p->l4 = ip + hl;
	p->l4len = tot - hl;
	if (p->frag)
		return true;
	if (p->proto == 6 && p->l4len >= 20) {
		size_t thl = (size_t)(p->l4[12] >> 4) * 4;

		p->sport = nh_get16(p->l4);
		p->dport = nh_get16(p->l4 + 2);
		p->seq = nh_get32(p->l4 + 4);
		p->ack = nh_get32(p->l4 + 8);
		p->flags = p->l4[13];
		p->win = nh_get16(p->l4 + 14);
		p->data = p->l4 + thl;
		p->dlen = p->l4len - thl;
		p->csum_ok = p->csum_ok &&
			     nh_fold(nh_sum(p->l4, p->l4len,
					    nh_pseudo4(p->src, p->dst, 6, p->l4len))) == 0;
	} else if (p->proto == 17 && p->l4len >= 8) {
		p->sport = nh_get16(p->l4);
		p->dport = nh_get16(p->l4 + 2);
		p->data = p->l4 + 8;
		p->dlen = p->l4len - 8;
		p->csum_ok = p->csum_ok &&
			     nh_fold(nh_sum(p->l4, p->l4len,
					    nh_pseudo4(p->src, p->dst, 17, p->l4len))) == 0;
	} else if (p->proto == 1 && p->l4len >= 8) {
		p->type = p->l4[0];
		p->code = p->l4[1];
		p->data = p->l4 + 8;
		p->dlen = p->l4len - 8;
		p->csum_ok = p->csum_ok && nh_fold(nh_sum(p->l4, p->l4len, 0)) == 0;
	}
	return true;
}

#endif /* MOAT_NETSTACK_HARNESS_H */
