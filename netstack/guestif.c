/* SPDX-License-Identifier: MIT */
/*
 * guestif.c - the guest link: g2s frames in, s2g frames out, input dispatch
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. lwIP knows the guest link as one netif whose
 * output functions (IPv4 and IPv6; lwIP's ARP and ND are not used) put an
 * Ethernet header in front of the packet and copy it into one s2g record.
 * Output never drops: when s2g is full the output reports ERR_MEM, lwIP
 * keeps its TCP segment (TF_NAGLEMEMERR) or schedules the ACK again, and the
 * loop calls tcp_txnow() once the guest port has released space (it writes
 * our eventfd because we announced the wait with ring_wait_space()). Records
 * are published once per loop iteration (stack.c flushes), not per frame.
 *
 * Input: guestif_poll() copies each g2s record out of the ring into an
 * exact-size lwIP pbuf (one copy, no double fetch), and guestif_input() then
 * trusts only that copy. Every frame passes frame_check() first (lengths,
 * header consistency, no IP options, known ethertypes and protocols, MAC
 * destination ours or broadcast/multicast); a failure is counted under its
 * drop reason. The guest's MAC is learned from its first valid frame; with
 * anti-spoofing on, later frames must come from that MAC and from the
 * guest's addresses (0.0.0.0 only for DHCP, :: only for ICMPv6), else they
 * are counted and dropped, or reported as a violation (terminate).
 *
 * Valid frames are dispatched by protocol, for any destination address
 * (DESIGN §6): ARP to arp.c; IPv4/IPv6 fragments through lwIP's bounded
 * reassembly (ip4_reass/ip6_reass), after which the transport header is
 * validated again; then TCP to connopen.c (which holds new SYNs and hands
 * everything else to lwIP's tcp_input() through guestif_feed_tcp(), which sets
 * up lwIP's ip_data as ip4_input()/ip6_input() would), UDP to dgram.c and
 * ICMP to icmpgw.c.
 */
#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip4_frag.h"
#include "lwip/ip6_frag.h"
#include "lwip/prot/ip4.h"
#include "lwip/prot/ip6.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

static struct frame_cfg fcfg;

static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/*
 * A TCP segment longer than the guest's MTU allows: with the guest port's
 * TSO it goes out whole, in a MOAT_REC_FRAME_VNET record that tells the
 * guest's side how to cut it (GSO), with a partial checksum. Return: the
 * GSO type, or MOAT_VNET_GSO_NONE for a frame that goes out as it is.
 */
static uint8_t gso_type_for(const struct netstack *ns, uint16_t type, const struct pbuf *p)
{
	if (p->tot_len <= ns->cfg.mtu)
		return MOAT_VNET_GSO_NONE;
	if (type == ETHTYPE_IP4 && (ns->cfg.offloads & MOAT_OFFLOAD_TSO4) &&
	    pbuf_get_at(p, 9) == IPPROTO_TCP_ && (pbuf_get_at(p, 0) & 0x0f) == 5)
		return MOAT_VNET_GSO_TCPV4;
	if (type == ETHTYPE_IP6 && (ns->cfg.offloads & MOAT_OFFLOAD_TSO6) &&
	    pbuf_get_at(p, 6) == IPPROTO_TCP_)
		return MOAT_VNET_GSO_TCPV6;
	return MOAT_VNET_GSO_NONE;
}

static void wr_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/*
 * Fill @vh for the segment at @f (Ethernet header first) and replace its TCP
 * checksum with the pseudo-header sum (the length is the whole segment's):
 * whoever cuts it completes the checksum of each piece.
 */
static void gso_prepare(const struct netstack *ns, uint8_t gso, uint8_t *vh, uint8_t *f,
			uint32_t len)
{
	uint16_t l3 = gso == MOAT_VNET_GSO_TCPV4 ? IP_HLEN : IP6_HLEN;
	uint8_t *tcp = f + ETH_HLEN + l3;
	uint16_t thl = (uint16_t)((tcp[12] >> 4) * 4);
	uint16_t tcp_len = (uint16_t)(len - ETH_HLEN - l3);
	uint32_t sum = 0;

	/* Addresses: IPv4 12..19, IPv6 8..39 of the IP header. */
	for (uint16_t i = gso == MOAT_VNET_GSO_TCPV4 ? 12 : 8; i < l3; i += 2)
		sum += rd16(f + ETH_HLEN + i);
	sum += IPPROTO_TCP_ + tcp_len;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	wr16(tcp + 16, (uint16_t)sum);
	vh[0] = MOAT_VNET_F_NEEDS_CSUM;
	vh[1] = gso;
	wr_le16(vh + 2, (uint16_t)(ETH_HLEN + l3 + thl));
	wr_le16(vh + 4, (uint16_t)(ns->cfg.mtu - l3 - thl));
	wr_le16(vh + 6, (uint16_t)(ETH_HLEN + l3));
	wr_le16(vh + 8, 16);
}

/* Build one s2g record: Ethernet header + the pbuf chain (a segment: GSO). */
static err_t linkout(struct netstack *ns, const uint8_t *dst, uint16_t type, struct pbuf *p)
{
	uint8_t gso = gso_type_for(ns, type, p);
	uint32_t vlen = gso != MOAT_VNET_GSO_NONE ? FRAME_VNET_LEN : 0;
	uint32_t len = ETH_HLEN + (uint32_t)p->tot_len;
	uint8_t *f;
	void *rec;
	int rc;

	rc = ring_reserve(&ns->s2g, vlen + len, &rec);
	if (rc == -ENOBUFS) {
		ns->s2g_blocked = true;
		return ERR_MEM;
	}
	if (rc == -EBADMSG) {
		stack_violation(ns, MOAT_VIOL_RING_CORRUPT, 0, "s2g ring corrupt");
		return ERR_IF;
	}
	if (rc < 0)
		return ERR_BUF;
	f = (uint8_t *)rec + vlen;
	memcpy(f, dst, 6);
	memcpy(f + 6, ns->cfg.gw_mac, 6);
	wr16(f + 12, type);
	pbuf_copy_partial(p, f + ETH_HLEN, p->tot_len, 0);
	if (vlen) {
		gso_prepare(ns, gso, rec, f, len);
		ring_commit(&ns->s2g, MOAT_REC_FRAME_VNET, vlen + len);
	} else {
		ring_commit(&ns->s2g, MOAT_REC_FRAME, len);
	}
	return ERR_OK;
}

/**
 * guestif_send_frame() - send a frame built by moat's own code (ARP)
 * @ns:		netstack
 * @dst_mac:	destination MAC
 * @ethertype:	ETHTYPE_*
 * @l3:		payload after the Ethernet header
 * @l3len:	its length
 *
 * Return: 0, or -ENOBUFS if s2g is full (the frame is not sent).
 */
int guestif_send_frame(struct netstack *ns, const uint8_t *dst_mac, uint16_t ethertype,
		       const void *l3, size_t l3len)
{
	uint8_t *f;
	void *rec;
	int rc;

	rc = ring_reserve(&ns->s2g, (uint32_t)(ETH_HLEN + l3len), &rec);
	if (rc == -EBADMSG)
		stack_violation(ns, MOAT_VIOL_RING_CORRUPT, 0, "s2g ring corrupt");
	if (rc < 0)
		return rc;
	f = rec;
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, ns->cfg.gw_mac, 6);
	wr16(f + 12, ethertype);
	memcpy(f + ETH_HLEN, l3, l3len);
	ring_commit(&ns->s2g, MOAT_REC_FRAME, (uint32_t)(ETH_HLEN + l3len));
	return 0;
}

/**
 * guestif_s2g_room() - whether s2g can take @bytes of frames now
 * @ns:		netstack
 * @bytes:	frame bytes about to be sent (record overhead is added)
 *
 * Return: true if they fit.
 */
bool guestif_s2g_room(struct netstack *ns, size_t bytes)
{
	return ring_free_bytes(&ns->s2g) >= bytes + 64;
}

/*
 * The guest has not sent a frame yet, so its MAC is unknown: ask for it
 * (ARP "who has guest, tell gateway", at most once a second) and report
 * ERR_MEM so that lwIP keeps the segment; guestif_input() retries the output
 * once the MAC is learned.
 */
static err_t mac_unknown(struct netstack *ns)
{
	static const uint8_t unknown[6];
	uint8_t a[28];

	if (!ns->mac_wait || sys_now() - ns->mac_asked_ms >= 1000) {
		arp_build(ns, a, 1, &ns->cfg.gw_ip4, unknown, &ns->cfg.guest_ip4);
		if (guestif_send_frame(ns, bcast_mac, ETHTYPE_ARP, a, sizeof(a)) == 0) {
			ns->mac_wait = true;
			ns->mac_asked_ms = sys_now();
		}
	}
	return ERR_MEM;
}

static err_t output4(struct netif *netif, struct pbuf *p, const ip4_addr_t *dst)
{
	struct netstack *ns = netif->state;
	uint32_t a = ip4_addr_get_u32(dst);
	const uint8_t *mac = ns->guest_mac;

	if (a == IPADDR_BROADCAST || ip4_addr_ismulticast(dst) ||
	    (a | ns->cfg.mask4) == IPADDR_BROADCAST)
		mac = bcast_mac;
	else if (!ns->guest_mac_known)
		return mac_unknown(ns);
	return linkout(ns, mac, ETHTYPE_IP4, p);
}

static err_t output6(struct netif *netif, struct pbuf *p, const ip6_addr_t *dst)
{
	struct netstack *ns = netif->state;
	uint8_t mac[6];

	if (ip6_addr_ismulticast(dst)) {
		/* 33:33 + the low 32 bits of the group (RFC 2464). */
		uint32_t low = lwip_ntohl(dst->addr[3]);

		mac[0] = 0x33;
		mac[1] = 0x33;
		wr32(mac + 2, low);
		return linkout(ns, mac, ETHTYPE_IP6, p);
	}
	if (!ns->guest_mac_known)
		return mac_unknown(ns);
	return linkout(ns, ns->guest_mac, ETHTYPE_IP6, p);
}

static err_t linkoutput(struct netif *netif, struct pbuf *p)
{
	(void)netif;
	(void)p;
	return ERR_IF; /* lwIP's ARP/ND are off: everything uses output4/6 */
}

/**
 * guestif_output_ip() - send an IP packet that is not a TCP segment to the
 * guest, fragmented to the guest's MTU where it is longer
 * @ns:		netstack
 * @p:		the transport message (header and checksum done); not freed
 * @src, @dst:	addresses (the family is @dst's)
 * @hops:	TTL or hop limit
 * @proto:	the IP protocol / next header
 *
 * The netif's MTU is the segment limit (guestif_ip_mtu()); here it is the
 * guest's for the one call, so lwIP fragments datagrams as the guest needs.
 *
 * Return: lwIP's result.
 */
err_t guestif_output_ip(struct netstack *ns, struct pbuf *p, const ip_addr_t *src,
			const ip_addr_t *dst, uint8_t hops, uint8_t proto)
{
	err_t err;

	ns->netif.mtu = (u16_t)ns->cfg.mtu;
	if (IP_IS_V6(dst))
		err = ip6_output_if_src(p, ip_2_ip6(src), ip_2_ip6(dst), hops, 0, proto,
					&ns->netif);
	else
		err = ip4_output_if_src(p, ip_2_ip4(src), ip_2_ip4(dst), hops, 0, proto,
					&ns->netif);
	ns->netif.mtu = (u16_t)guestif_ip_mtu(ns, IPPROTO_TCP_);
	return err;
}

/**
 * guestif_ip_mtu() - the largest IP packet of @proto the guest link takes
 * @ns:		netstack
 * @proto:	IPPROTO_TCP_ (segments, which the guest's side may cut) or
 *		anything else
 *
 * Return: the guest's MTU, or for TCP with TSO negotiated (either family)
 * MOAT_FRAME_MAX_GSO - 14.
 */
uint32_t guestif_ip_mtu(const struct netstack *ns, uint8_t proto)
{
	if (proto == IPPROTO_TCP_ && (ns->cfg.offloads & (MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6)))
		return MOAT_FRAME_MAX_GSO - ETH_HLEN;
	return ns->cfg.mtu;
}

static err_t link_setup(struct netif *netif)
{
	struct netstack *ns = netif->state;

	netif->name[0] = 'g';
	netif->name[1] = 'w';
	netif->output = output4;
	netif->output_ip6 = output6;
	netif->linkoutput = linkoutput;
	/*
	 * With TSO the link takes segments up to MOAT_FRAME_MAX_GSO: lwIP must
	 * not fragment them. Datagrams keep the guest's MTU (guestif_mtu()).
	 */
	netif->mtu = (u16_t)guestif_ip_mtu(ns, IPPROTO_TCP_);
	netif->hwaddr_len = 6;
	memcpy(netif->hwaddr, ns->cfg.gw_mac, 6);
	netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
	return ERR_OK;
}

/**
 * guestif_init() - create lwIP's netif for the guest link
 * @ns:	netstack (configuration filled in)
 *
 * Return: 0 or -1.
 */
int guestif_init(struct netstack *ns)
{
	ip4_addr_t ip, mask, gw;
	ip6_addr_t ll;

	ip4_addr_set_u32(&ip, ns->cfg.gw_ip4);
	ip4_addr_set_u32(&mask, ns->cfg.mask4);
	ip4_addr_set_zero(&gw);
	if (!netif_add(&ns->netif, &ip, &mask, &gw, ns, link_setup, netif_input))
		return -1;
	/* The gateway's global and link-local IPv6 addresses (used for ND/RA). */
	memcpy(ll.addr, ns->cfg.gw_ip6, 16);
	netif_ip6_addr_set(&ns->netif, 1, &ll);
	netif_ip6_addr_set_state(&ns->netif, 1, IP6_ADDR_PREFERRED);
	netif_create_ip6_linklocal_address(&ns->netif, 1);
	netif_ip6_addr_set_state(&ns->netif, 0, IP6_ADDR_PREFERRED);
	netif_set_default(&ns->netif);
	netif_set_up(&ns->netif);
	fcfg.mtu = ns->cfg.mtu;
	fcfg.offloads = ns->cfg.offloads;
	memcpy(fcfg.our_mac, ns->cfg.gw_mac, 6);
	return 0;
}

/* Anti-spoofing: is this valid frame from someone other than the guest? */
static bool spoofed(struct netstack *ns, const uint8_t *f, const struct frame_info *fi)
{
	const uint8_t *l3 = f + ETH_HLEN;

	if (memcmp(f + 6, ns->guest_mac, 6))
		return true;
	switch (fi->ethertype) {
	case ETHTYPE_ARP:
		if (memcmp(l3 + 8, ns->guest_mac, 6))
			return true;
		return memcmp(l3 + 14, &ns->cfg.guest_ip4, 4) && memcmp(l3 + 14, "\0\0\0\0", 4);
	case ETHTYPE_IP4:
		if (!memcmp(l3 + 12, &ns->cfg.guest_ip4, 4))
			return false;
		/* 0.0.0.0 only for DHCP to the server port. */
		return !(!memcmp(l3 + 12, "\0\0\0\0", 4) && fi->l4_proto == IPPROTO_UDP_ &&
			 !fi->fragment && rd16(l3 + fi->l4_off + 2) == 67);
	case ETHTYPE_IP6: {
		static const uint8_t zero[16];
		const uint8_t *src = l3 + 8;

		if (!memcmp(src, zero, 16))
			return fi->l4_proto != IPPROTO_ICMP6_;
		if (src[0] == 0xfe && (src[1] & 0xc0) == 0x80)
			return false;			       /* link-local */
		return memcmp(src, ns->cfg.guest_ip6, 8) != 0; /* the guest's /64 */
	}
	default:
		return true;
	}
}

/* Check a reassembled packet's transport header; 0 or a drop was counted. */
static int recheck_l4(struct netstack *ns, struct pbuf *p, uint8_t proto, uint16_t l4_off)
{
	uint8_t hdr[60];
	u16_t n, l4_len;
	int rc;

	if (p->tot_len <= l4_off) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		return -1;
	}
	l4_len = (u16_t)(p->tot_len - l4_off);
	n = pbuf_copy_partial(p, hdr, l4_len < sizeof(hdr) ? l4_len : sizeof(hdr), l4_off);
	rc = frame_check_l4(proto, hdr, n, l4_len);
	if (rc != FRAME_OK) {
		stack_drop(ns, rc);
		return -1;
	}
	return 0;
}

static void input4(struct netstack *ns, struct pbuf *p, const struct frame_info *fi)
{
	const struct ip_hdr *iph;
	uint8_t proto = fi->l4_proto;

	if (fi->fragment) {
		ip_data.current_input_netif = &ns->netif;
		p = ip4_reass(p);
		ip_data.current_input_netif = NULL;
		if (!p)
			return;
		if (recheck_l4(ns, p, proto, IP_HLEN) < 0) {
			pbuf_free(p);
			return;
		}
	}
	iph = p->payload;
	switch (proto) {
	case IPPROTO_TCP_:
		if (ip4_addr_get_u32(&iph->dest) == IPADDR_BROADCAST ||
		    ip4_addr_ismulticast(&iph->dest)) {
			stack_drop(ns, MOAT_DROP_NOT_FOR_US);
			pbuf_free(p);
			return;
		}
		connopen_input(ns, p, false, IP_HLEN);
		return;
	case IPPROTO_UDP_:
		dgram_input(ns, p, false, IP_HLEN);
		break;
	default:
		icmpgw_input4(ns, p);
		break;
	}
	pbuf_free(p);
}

static void input6(struct netstack *ns, struct pbuf *p, const struct frame_info *fi)
{
	uint16_t l4_off = fi->l4_off;
	struct ip6_hdr *ip6h = p->payload;
	uint8_t proto = fi->l4_proto;

	if (fi->fragment) {
		ip_data.current_netif = ip_data.current_input_netif = &ns->netif;
		ip_data.current_ip6_header = ip6h;
		ip_data.current_ip4_header = NULL;
		ip_data.current_ip_header_tot_len = IP6_HLEN;
		ip_addr_copy_from_ip6_packed(ip_data.current_iphdr_src, ip6h->src);
		ip_addr_copy_from_ip6_packed(ip_data.current_iphdr_dest, ip6h->dest);
		pbuf_remove_header(p, fi->frag_off);
		p = ip6_reass(p);
		memset(&ip_data, 0, sizeof(ip_data));
		if (!p)
			return;
		l4_off = IP6_HLEN;
		ip6h = p->payload;
		if (p->len < IP6_HLEN || IP6H_NEXTH(ip6h) != proto ||
		    recheck_l4(ns, p, proto, l4_off) < 0) {
			if (p->len < IP6_HLEN || IP6H_NEXTH(ip6h) != proto)
				stack_drop(ns, MOAT_DROP_FRAGMENT);
			pbuf_free(p);
			return;
		}
	}
	switch (proto) {
	case IPPROTO_TCP_:
		if (ip6_addr_ismulticast(&ip6h->dest)) {
			stack_drop(ns, MOAT_DROP_NOT_FOR_US);
			pbuf_free(p);
			return;
		}
		connopen_input(ns, p, true, l4_off);
		return;
	case IPPROTO_UDP_:
		dgram_input(ns, p, true, l4_off);
		break;
	default:
		icmpgw_input6(ns, p, l4_off);
		break;
	}
	pbuf_free(p);
}

/*
 * One frame, in a private single pbuf, with its offload metadata (@vh, a
 * private copy) or none (NULL); consumes @p.
 */
static void guestif_input(struct netstack *ns, struct pbuf *p, const uint8_t *vh)
{
	const uint8_t *f = p->payload;
	struct frame_info fi;
	struct frame_vnet v;
	int rc;

	rc = vh ? frame_check_vnet(&fcfg, vh, f, p->len, &v, &fi) :
		  frame_check(&fcfg, f, p->len, &fi);
	if (rc != FRAME_OK) {
		if (rc != FRAME_IGNORE)
			stack_drop(ns, rc);
		pbuf_free(p);
		return;
	}
	if (!ns->guest_mac_known) {
		memcpy(ns->guest_mac, f + 6, 6);
		ns->guest_mac_known = true;
		cnt_set(&ns->cnt->guest_mac, (uint64_t)rd16(f + 6) << 32 | rd32(f + 8));
		log_info("guest MAC %02x:%02x:%02x:%02x:%02x:%02x", f[6], f[7], f[8], f[9], f[10],
			 f[11]);
		icmpgw_guest_seen(ns);
		if (ns->mac_wait) {
			ns->mac_wait = false;
			ns->s2g_blocked = true; /* stack_poll() retries lwIP's output */
		}
	}
	if (ns->cfg.anti_spoof && spoofed(ns, f, &fi)) {
		cnt_add(&ns->cnt->spoofed_frames, 1);
		stack_drop(ns, MOAT_DROP_SPOOFED);
		pbuf_free(p);
		if (ns->cfg.anti_spoof == 2)
			stack_violation(ns, MOAT_VIOL_SPOOF, 0,
					"guest frame with a spoofed source");
		return;
	}
	if (fi.ethertype == ETHTYPE_ARP) {
		arp_input(ns, f, p->len);
		pbuf_free(p);
		return;
	}
	pbuf_remove_header(p, ETH_HLEN);
	pbuf_realloc(p, (u16_t)fi.ip_len); /* drop Ethernet padding */
	if (fi.ethertype == ETHTYPE_IP4)
		input4(ns, p, &fi);
	else
		input6(ns, p, &fi);
}

/**
 * guestif_poll() - take guest frames from g2s
 * @ns:		netstack
 * @budget:	at most this many frames; ns->more is set if some are left
 *
 * A corrupt ring is a violation: it is reported and the loop stops.
 */
void guestif_poll(struct netstack *ns, unsigned budget)
{
	while (budget-- && !ns->violation) {
		uint8_t vh[FRAME_VNET_LEN];
		uint32_t type, vlen, max;
		const uint8_t *rec;
		struct pbuf *p;
		int n;

		n = ring_peek(&ns->g2s, &type, &rec);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			stack_violation(ns, MOAT_VIOL_RING_CORRUPT, 0, "g2s ring corrupt");
			return;
		}
		vlen = type == MOAT_REC_FRAME_VNET ? FRAME_VNET_LEN : 0;
		max = vlen ? MOAT_FRAME_MAX_GSO : ns->cfg.mtu + ETH_HLEN;
		if (type != MOAT_REC_FRAME && !(vlen && ns->cfg.offloads)) {
			stack_drop(ns, MOAT_DROP_MALFORMED);
		} else if ((uint32_t)n < vlen + ETH_HLEN) {
			stack_drop(ns, MOAT_DROP_TOO_SHORT);
		} else if ((uint32_t)n - vlen > max) {
			stack_drop(ns, MOAT_DROP_TOO_LONG);
		} else {
			p = pbuf_alloc(PBUF_RAW, (u16_t)(n - vlen), PBUF_RAM);
			if (!p) {
				stack_drop(ns, MOAT_DROP_NO_MEMORY);
				ring_consume(&ns->g2s);
				continue;
			}
			/* The one read of the shared bytes; only the copies are parsed. */
			memcpy(vh, rec, vlen);
			memcpy(p->payload, rec + vlen, (size_t)n - vlen);
			ring_consume(&ns->g2s);
			guestif_input(ns, p, vlen ? vh : NULL);
			continue;
		}
		ring_consume(&ns->g2s);
	}
	ns->more = true;
}

/**
 * guestif_feed_tcp() - hand a TCP segment to lwIP, whatever its destination
 * @ns:	netstack
 * @p:	IPv4 or IPv6 packet, payload at the IP header, transport header
 *	directly after the fixed header; consumed
 *
 * Sets lwIP's ip_data as ip4_input()/ip6_input() do before they call
 * tcp_input() (ip4.c:683-686, 515-516) and clears it afterwards.
 */
void guestif_feed_tcp(struct netstack *ns, struct pbuf *p)
{
	const uint8_t *h = p->payload;
	u16_t hlen;

	ip_data.current_netif = &ns->netif;
	ip_data.current_input_netif = &ns->netif;
	if ((h[0] >> 4) == 6) {
		struct ip6_hdr *ip6h = p->payload;

		ip_data.current_ip4_header = NULL;
		ip_data.current_ip6_header = ip6h;
		hlen = IP6_HLEN;
		ip_addr_copy_from_ip6_packed(ip_data.current_iphdr_src, ip6h->src);
		ip_addr_copy_from_ip6_packed(ip_data.current_iphdr_dest, ip6h->dest);
	} else {
		const struct ip_hdr *iph = p->payload;

		ip_data.current_ip6_header = NULL;
		ip_data.current_ip4_header = iph;
		hlen = IP_HLEN;
		ip_addr_copy_from_ip4(ip_data.current_iphdr_src, iph->src);
		ip_addr_copy_from_ip4(ip_data.current_iphdr_dest, iph->dest);
	}
	ip_data.current_ip_header_tot_len = hlen;
	pbuf_remove_header(p, hlen);
	tcp_input(p, &ns->netif);
	memset(&ip_data, 0, sizeof(ip_data));
}
