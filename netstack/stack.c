/* SPDX-License-Identifier: MIT */
/*
 * stack.c - the netstack's set-up and one iteration of its loop
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack (and in the netstack's in-process tests, which
 * build a region in private memory and pass -1 for the eventfds).
 * stack_init() runs before confinement and does everything that needs a
 * system call other than read/write/ppoll/clock_gettime: it draws the random
 * secrets, maps lwIP's arena and the flow tables, initialises lwIP and
 * creates the guest netif. After that the netstack never allocates from the
 * system again.
 *
 * stack_poll() is one iteration: guest frames from g2s (bounded batch),
 * messages from p2s (bounded batch), lwIP's timers, owed flow messages to
 * s2p, one tcp_output() per flow written to, a retry of lwIP output if s2g
 * had been full and has room again, then one flush per produced ring and
 * one release per consumed ring - one wake per batch at most.
 * stack_prepare_sleep() tells the loop how long it may sleep: 0 if work is
 * left, the time to lwIP's next timer otherwise, after announcing the sleep
 * on each ring it consumes and the wait on each ring it is blocked on.
 */
#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "lwip/init.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "netstack/arena.h"
#include "netstack/stack.h"
#include "shm/mailbox.h"

#define FRAME_BUDGET  256
#define MSG_BUDGET    256
#define TICK_MS	      1000
#define RA_INTERVAL_S 600

static uint32_t ticks;
static uint32_t frag_drops_seen;

/**
 * stack_drop() - count a dropped guest frame
 * @ns:		netstack
 * @reason:	enum moat_drop_reason
 */
void stack_drop(struct netstack *ns, int reason)
{
	if (reason >= 0 && reason < MOAT_DROP_REASON_COUNT)
		cnt_add(&ns->cnt->drops[reason], 1);
}

/**
 * stack_violation() - report a fatal violation and stop processing
 * @ns:		netstack
 * @reason:	enum moat_violation
 * @flow:	flow id or 0
 * @detail:	words for the event log
 *
 * The supervisor kills the VM and ends us; until then the loop idles.
 */
void stack_violation(struct netstack *ns, uint32_t reason, uint32_t flow, const char *detail)
{
	struct mailbox_report rep = {
		.reason = reason,
		.rule = -1,
		.flow = flow,
		.proto = 0xff,
		.detail = detail,
	};

	if (ns->violation)
		return;
	log_error("violation: %s", detail);
	mailbox_post(ns->mbox, ns->fds.supervisor, &rep);
	ns->violation = true;
}

/* Fragments lwIP's reassembly gave up on since the last look. */
static void count_frag_drops(struct netstack *ns)
{
	uint32_t now = (uint32_t)lwip_stats.ip_frag.drop + (uint32_t)lwip_stats.ip6_frag.drop;

	if (now != frag_drops_seen) {
		cnt_add(&ns->cnt->drops[MOAT_DROP_FRAGMENT], now - frag_drops_seen);
		frag_drops_seen = now;
	}
}

/*
 * lwIP memory counters. Every arena block is a memp element (counted per
 * pool by MEMP_STATS) or a PBUF_RAM pbuf (lwIP's only other mem_malloc
 * user), so pbufs in use = blocks - memp elements + memp-allocated pbufs.
 */
static void count_memory(struct netstack *ns)
{
	struct arena_stats st;
	uint64_t memp_used = 0;

	arena_get_stats(&st);
	for (int i = 0; i < MEMP_MAX; i++)
		memp_used += lwip_stats.memp[i]->used;
	cnt_set(&ns->cnt->pbufs_in_use, st.allocs - memp_used + lwip_stats.memp[MEMP_PBUF]->used +
						lwip_stats.memp[MEMP_PBUF_POOL]->used);
	cnt_set(&ns->cnt->lwip_mem_errors, st.failures + ns->mem_errs);
}

static void tick(void *arg)
{
	struct netstack *ns = arg;

	ticks++;
	connopen_timer(ns);
	conn_timer(ns);
	count_frag_drops(ns);
	count_memory(ns);
	if (ns->guest_mac_known && ticks % RA_INTERVAL_S == 0)
		icmpgw_guest_seen(ns);
	sys_timeout(TICK_MS, tick, ns);
}

static int load_cfg(struct netstack *ns)
{
	const struct moat_shm_header *h = &ns->region.hdr;
	struct stack_cfg *c = &ns->cfg;

	memset(c, 0, sizeof(*c));
	c->mtu = h->mtu;
	memcpy(&c->guest_ip4, h->guest_ip4, 4);
	memcpy(&c->gw_ip4, h->gateway_ip4, 4);
	memcpy(&c->dns_ip4, h->dns_ip4, 4);
	memcpy(&c->mask4, h->netmask4, 4);
	memcpy(c->gw_mac, h->gateway_mac, 6);
	memcpy(c->guest_ip6, h->guest_ip6, 16);
	memcpy(c->gw_ip6, h->gateway_ip6, 16);
	c->anti_spoof = h->anti_spoof;
	c->max_conns = h->max_tcp_connections;
	c->connect_timeout_ms = h->connect_timeout_ms;
	c->tcp_idle_s = h->tcp_idle_timeout_s;
	c->offloads = h->guest_offloads &
		      (MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6);
	if (c->mtu < 576 || c->mtu > 65520 || c->anti_spoof > 2 || c->max_conns < 1 ||
	    c->max_conns > 65536 || (c->gw_mac[0] & 1) || !c->gw_ip4 || !c->guest_ip4)
		return -EINVAL;
	if (c->tcp_idle_s == 0)
		c->tcp_idle_s = MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S;
	if (c->connect_timeout_ms == 0 || c->connect_timeout_ms > 600000)
		c->connect_timeout_ms = 600000;
	return 0;
}

/**
 * stack_init() - set up lwIP and the protocol state
 * @ns:		netstack; ->region must be mapped (header, counters, mailbox,
 *		the four rings)
 * @fds:	eventfds to write (-1 for none)
 *
 * Context: before confinement: maps memory and calls getrandom().
 * Return: 0, or -errno (the caller refuses to start).
 */
int stack_init(struct netstack *ns, const struct stack_fds *fds)
{
	struct region *r = &ns->region;
	struct arena_stats st;
	int rc;

	ns->fds = *fds;
	ns->cnt = r->part[MOAT_PART_CNT_NETSTACK];
	ns->mbox = r->part[MOAT_PART_MBOX_NETSTACK];
	ns->violation = false;
	ns->guest_mac_known = false;
	ns->mac_wait = false;
	ns->s2g_blocked = ns->s2p_blocked = ns->p2s_paused = ns->more = false;
	ns->p2s_skip = ns->p2s_need_s2g = 0;
	ns->mem_errs = 0;
	ring_attach(&ns->g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), -1, fds->guest,
		    &ns->cnt->wakes_sent);
	ring_attach(&ns->s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), fds->guest, -1,
		    &ns->cnt->wakes_sent);
	ring_attach(&ns->s2p, r->part[MOAT_PART_RING_S2P],
		    region_ring_capacity(r, MOAT_PART_RING_S2P), fds->proxy, -1,
		    &ns->cnt->wakes_sent);
	ring_attach(&ns->p2s, r->part[MOAT_PART_RING_P2S],
		    region_ring_capacity(r, MOAT_PART_RING_P2S), -1, fds->proxy,
		    &ns->cnt->wakes_sent);
	rc = load_cfg(ns);
	if (rc < 0) {
		log_error("the region header's network settings are out of range");
		return rc;
	}
	if (sys_arch_init() < 0) {
		log_error("getrandom failed");
		return -EIO;
	}
	rc = arena_init(arena_size_for(ns->cfg.max_conns, ns->cfg.mtu));
	if (rc < 0) {
		log_error("cannot map lwIP's arena: %s", strerror(-rc));
		return rc;
	}
	lwip_init();
	if (guestif_init(ns) < 0) {
		log_error("cannot create the guest interface");
		return -ENOMEM;
	}
	rc = conn_init(ns);
	if (rc < 0) {
		log_error("cannot map the flow table");
		return rc;
	}
	sys_timeout(TICK_MS, tick, ns);
	ticks = 0;
	frag_drops_seen = 0;

	arena_get_stats(&st);
	log_debug("pool: lwip arena bytes=%zu (heap and all memp pools, buddy blocks of 64 B..)",
		  st.size);
	log_debug("pool: tcp per connection: window=%u send buffer=%u segment queue=%u "
		  "out-of-order max=%u bytes/%u pbufs, mss<=%u",
		  (unsigned)TCP_WND, (unsigned)TCP_SND_BUF, (unsigned)TCP_SND_QUEUELEN,
		  (unsigned)TCP_OOSEQ_MAX_BYTES, (unsigned)TCP_OOSEQ_MAX_PBUFS,
		  (unsigned)(ns->cfg.mtu - 40));
	log_debug("pool: ip reassembly max pbufs=%u (v4) timeout=%us", (unsigned)IP_REASS_MAX_PBUFS,
		  (unsigned)IP_REASS_MAXAGE);
	log_debug("pool: rings g2s=%llu s2g=%llu s2p=%llu p2s=%llu bytes",
		  (unsigned long long)ns->g2s.cap, (unsigned long long)ns->s2g.cap,
		  (unsigned long long)ns->s2p.cap, (unsigned long long)ns->p2s.cap);
	log_debug("config: mtu=%u max_tcp_connections=%u anti_spoof=%u idle=%us", ns->cfg.mtu,
		  ns->cfg.max_conns, ns->cfg.anti_spoof, ns->cfg.tcp_idle_s);
	return 0;
}

/* lwIP output that failed on a full s2g: try again now that there is room. */
static void retry_output(struct netstack *ns)
{
	if (!ns->s2g_blocked || !guestif_s2g_room(ns, ns->cfg.mtu + 14u))
		return;
	ns->s2g_blocked = false;
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
		if (pcb->flags & (TF_NAGLEMEMERR | TF_ACK_NOW))
			tcp_output(pcb);
}

/* What the netstack owes after its input: flow messages, lwIP output. */
static void output(struct netstack *ns)
{
	ns->s2p_blocked = false;
	conn_pump(ns);
	conn_output(ns);
	retry_output(ns);
	count_frag_drops(ns);
}

/**
 * stack_poll() - one iteration of the netstack's work
 * @ns:	netstack
 */
void stack_poll(struct netstack *ns)
{
	if (ns->violation)
		return;
	ns->more = false;
	/* Each step may find a violation (ns->violation): the rest is skipped. */
	guestif_poll(ns, FRAME_BUDGET);
	if (!ns->violation)
		flows_poll(ns, MSG_BUDGET);
	if (!ns->violation)
		sys_check_timeouts();
	/* cppcheck-suppress duplicateCondition ; lwIP's timers (sys_check_timeouts()) may set it */
	if (!ns->violation)
		output(ns);
	ring_flush(&ns->s2g);
	ring_flush(&ns->s2p);
	ring_release(&ns->g2s);
	ring_release(&ns->p2s);
}

/**
 * stack_prepare_sleep() - may the loop sleep, and for how long?
 * @ns:	netstack
 *
 * Return: 0 if there is work to do now; milliseconds until lwIP's next
 * timer; UINT32_MAX to sleep until woken.
 */
uint32_t stack_prepare_sleep(struct netstack *ns)
{
	uint32_t t;

	if (ns->violation)
		return UINT32_MAX;
	if (ns->more)
		return 0;
	if (ns->s2g_blocked && ring_wait_space(&ns->s2g, ns->cfg.mtu + 14u))
		return 0;
	if (ns->s2p_blocked && ring_wait_space(&ns->s2p, RING_MAX_RECORD(ns->s2p.cap)))
		return 0;
	if (ns->p2s_paused && ns->p2s_need_s2g && ring_wait_space(&ns->s2g, ns->p2s_need_s2g))
		return 0;
	if (!ring_prepare_sleep(&ns->g2s))
		return 0;
	if (!ns->p2s_paused && !ring_prepare_sleep(&ns->p2s)) {
		ring_cancel_sleep(&ns->g2s);
		return 0;
	}
	t = sys_timeouts_sleeptime();
	if (ns->p2s_paused && !ns->p2s_need_s2g) {
		int32_t left = (int32_t)(ns->p2s_retry_ms - sys_now());

		if (left <= 0)
			t = 0;
		else if ((uint32_t)left < t)
			t = (uint32_t)left;
	}
	if (t == 0) {
		ring_cancel_sleep(&ns->g2s);
		ring_cancel_sleep(&ns->p2s);
	}
	return t == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? UINT32_MAX : t;
}

/**
 * stack_wake() - the loop woke up: withdraw the sleep announcements
 * @ns:	netstack
 */
void stack_wake(struct netstack *ns)
{
	ring_cancel_sleep(&ns->g2s);
	ring_cancel_sleep(&ns->p2s);
}
