/* SPDX-License-Identifier: MIT */
/*
 * stack.h - the netstack's state and the interfaces between its loop
 * (netstack.c), the lwIP glue and the protocol files. Private to netstack/:
 * only files in netstack/ and the netstack's own tests include it.
 *
 * Prefixes: each file's non-static functions carry the file's name:
 * stack_ (stack.c), guestif_ (guestif.c, the guest interface), arp_
 * (arp.c), dhcps_ (dhcps.c, the DHCP server), icmpgw_ (icmpgw.c, ICMP as
 * the gateway answers it), dgram_ (dgram.c, UDP flows), conn_ (conn.c, TCP
 * flows once open), connopen_ (connopen.c, how they open), flows_
 * (flows.c, the p2s dispatch). lwIP owns netif_, icmp_, udp_, tcp_,
 * dhcp_, etharp_, ip4_/ip6_, nd6_, pbuf_ and sys_ (sys_arch.c implements
 * lwIP's port API and is the one exception).
 */
#ifndef MOAT_STACK_H
#define MOAT_STACK_H

#include <stdbool.h>
#include <stdint.h>

#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "shm/flow.h"
#include "shm/region.h"
#include "shm/ring.h"

/**
 * struct stack_cfg - what the netstack takes from the validated header
 * @mtu:	IP MTU toward the guest
 * @guest_ip4, @gw_ip4, @dns_ip4, @mask4: IPv4 addresses, network order
 * @gw_mac:	the MAC we answer with
 * @guest_ip6, @gw_ip6: IPv6 addresses (the guest's /64 prefix is guest_ip6's)
 * @anti_spoof:	0 off, 1 drop, 2 terminate
 * @max_conns:	TCP flow table size
 * @connect_timeout_ms: how long a held SYN may wait for CONNECT_RESULT
 * @tcp_idle_s:	idle TCP flows are reset after this
 * @offloads:	MOAT_OFFLOAD_* of the guest port (segments and partial
 *		checksums in MOAT_REC_FRAME_VNET records)
 */
struct stack_cfg {
	uint32_t mtu;
	uint32_t guest_ip4, gw_ip4, dns_ip4, mask4;
	uint8_t gw_mac[6];
	uint8_t guest_ip6[16], gw_ip6[16];
	uint8_t anti_spoof;
	uint32_t max_conns;
	uint32_t connect_timeout_ms;
	uint32_t tcp_idle_s;
	uint32_t offloads;
};

/**
 * struct stack_fds - the eventfds the netstack writes (-1: none, in tests)
 * @supervisor:	violation reports
 * @guest:	s2g data, g2s space
 * @proxy:	s2p data, p2s space
 */
struct stack_fds {
	int supervisor, guest, proxy;
};

/**
 * struct netstack - everything the netstack process owns
 * @region:	its view of the shared region
 * @g2s, @s2g:	frame rings (consumer, producer)
 * @s2p, @p2s:	flow rings (producer, consumer)
 * @cnt:	its counter block
 * @mbox:	its violation mailbox
 * @violation:	set once a violation was reported; the loop stops
 * @cfg:	configuration from the header
 * @fds:	eventfds
 * @netif:	lwIP's view of the guest link
 * @guest_mac:	learned from the guest's first valid frame
 * @guest_mac_known: whether @guest_mac is set
 * @mac_wait:	output waits for the guest's MAC (an ARP request was sent)
 * @mac_asked_ms: when that ARP request went out (sys_now())
 * @s2g_blocked: an output found s2g full; retry lwIP output when space returns
 * @s2p_blocked: a flow message waits for room in s2p
 * @p2s_paused:	p2s processing waits (s2g space or lwIP memory)
 * @p2s_retry_ms: when a memory-paused p2s is retried (sys_now() time)
 * @p2s_need_s2g: bytes of s2g room the paused p2s record waits for (0: memory)
 * @p2s_skip:	bytes of the p2s record at the head already handled
 * @more:	a budget ran out; poll again before sleeping
 * @mem_errs:	lwIP refusals that were not arena failures (a full send queue)
 */
struct netstack {
	struct region region;
	struct ring g2s, s2g, s2p, p2s;
	struct moat_netstack_counters *cnt;
	struct moat_mailbox *mbox;
	bool violation;
	struct stack_cfg cfg;
	struct stack_fds fds;
	struct netif netif;
	uint8_t guest_mac[6];
	bool guest_mac_known;
	bool mac_wait;
	uint32_t mac_asked_ms;
	bool s2g_blocked, s2p_blocked, p2s_paused;
	uint32_t p2s_retry_ms;
	uint32_t p2s_need_s2g;
	uint32_t p2s_skip;
	bool more;
	uint64_t mem_errs;
};

/* Relaxed atomic counter updates (the supervisor reads them concurrently). */
static inline void cnt_add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static inline void cnt_set(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* stack.c */
int stack_init(struct netstack *ns, const struct stack_fds *fds);
void stack_poll(struct netstack *ns);
uint32_t stack_prepare_sleep(struct netstack *ns);
void stack_wake(struct netstack *ns);
void stack_drop(struct netstack *ns, int reason);
void stack_violation(struct netstack *ns, uint32_t reason, uint32_t flow, const char *detail);
int sys_arch_init(void);

/* guestif.c: the guest link */
uint32_t guestif_ip_mtu(const struct netstack *ns, uint8_t proto);
err_t guestif_output_ip(struct netstack *ns, struct pbuf *p, const ip_addr_t *src,
			const ip_addr_t *dst, uint8_t hops, uint8_t proto);
int guestif_init(struct netstack *ns);
void guestif_poll(struct netstack *ns, unsigned budget);
int guestif_send_frame(struct netstack *ns, const uint8_t *dst_mac, uint16_t ethertype,
		       const void *l3, size_t l3len);
void guestif_feed_tcp(struct netstack *ns, struct pbuf *p);
bool guestif_s2g_room(struct netstack *ns, size_t bytes);

/* arp.c */
void arp_input(struct netstack *ns, const uint8_t *frame, size_t len);
void arp_build(const struct netstack *ns, uint8_t a[28], uint16_t op, const void *spa,
	       const uint8_t *tha, const void *tpa);

/* dhcps.c: the server's glue (the parser is in dhcps.h) */
void dhcps_input(struct netstack *ns, struct pbuf *p, uint16_t udp_off, uint16_t udp_len);

/* icmpgw.c */
void icmpgw_input4(struct netstack *ns, struct pbuf *p);
void icmpgw_input6(struct netstack *ns, struct pbuf *p, uint16_t l4_off);
int icmpgw_echo_reply_from_proxy(struct netstack *ns, const struct flow_echo *e,
				 const uint8_t *data, uint32_t len);
int icmpgw_dgram_unreachable(struct netstack *ns, const struct flow_unreach *m);
void icmpgw_unreachable(struct netstack *ns, struct pbuf *orig, bool v6);
void icmpgw_guest_seen(struct netstack *ns);
int icmpgw_send_echo_reply(struct netstack *ns, const ip_addr_t *src, const ip_addr_t *dst,
			   uint16_t ident, uint16_t seq, struct pbuf *data, uint16_t data_off,
			   const uint8_t *bytes, uint32_t len);

/* dgram.c */
void dgram_input(struct netstack *ns, struct pbuf *p, bool v6, uint16_t l4_off);
int dgram_output(struct netstack *ns, const ip_addr_t *src, uint16_t sport, const ip_addr_t *dst,
		 uint16_t dport, const uint8_t *data, uint32_t len);

/* conn.c: TCP flows once open */
int conn_init(struct netstack *ns);
void conn_pump(struct netstack *ns);
void conn_output(struct netstack *ns);
void conn_timer(struct netstack *ns);
int conn_data(struct netstack *ns, uint32_t id, const uint8_t *data, uint32_t len, uint32_t *taken);
int conn_credit(struct netstack *ns, const struct flow_credit *m);
int conn_shut(struct netstack *ns, uint32_t id);
void conn_close(struct netstack *ns, const struct flow_close *m);
uint32_t conn_reset_all(struct netstack *ns);

/* connopen.c: how TCP flows open */
void connopen_input(struct netstack *ns, struct pbuf *p, bool v6, uint16_t l4_off);
void connopen_result(struct netstack *ns, const struct flow_connect_result *m);
int connopen_accepted(struct netstack *ns, const struct flow_connect *m);
void connopen_timer(struct netstack *ns);

/* flows.c: s2p helpers and the p2s dispatch */
int flows_emit(struct netstack *ns, uint32_t type, const void *hdr, uint32_t hdrlen, struct pbuf *p,
	       uint32_t off, uint32_t len);
void flows_poll(struct netstack *ns, unsigned budget);
void flows_endpoint(struct flow_endpoint *e, const ip_addr_t *a, uint16_t port);
int flows_endpoint_addr(const struct flow_endpoint *e, ip_addr_t *a);

#endif /* MOAT_STACK_H */
