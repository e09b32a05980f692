/* SPDX-License-Identifier: MIT */
/*
 * conn.c - TCP flows: connect before accept, credits, half-close, reaping
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. Every guest TCP connection is one `struct conn` in
 * a table of the header's max_tcp_connections entries (allocated before
 * confinement), named toward the proxy by a flow id: slot + 1 in the low
 * bits, a per-slot generation above, bit 31 clear (egress ids).
 *
 * Connect before accept (DESIGN §5). A guest SYN for a 4-tuple lwIP does not
 * know is held here, not given to lwIP, and a FLOW_CONNECT goes to the proxy
 * (retransmitted SYNs while pending are dropped). When CONNECT_RESULT says
 * ok, an IP_ANY_TYPE listener for the destination port is made on demand
 * (SOF_REUSEADDR; kept while used, closed after a minute idle) and the held
 * SYN is fed to tcp_input(): lwIP answers SYN-ACK from the original
 * destination, and the new pcb is found by its 4-tuple and bound to the
 * flow. refused/denied/limit answer the guest with RST, unreachable/timeout
 * with ICMP unreachable; either way the id is dead for both sides. A full
 * table answers RST at once (tcp_table_full).
 *
 * Guest -> proxy. The recv callback queues pbuf chains (always ERR_OK; each
 * chain at most 64 KiB because pbuf tot_len is 16-bit) and the pump turns
 * them into FLOW_DATA records while s2p has room. tcp_recved() is called
 * only for bytes the proxy credits back (FLOW_CREDIT), so the guest's window
 * is the proxy's socket progress. The guest's FIN becomes FLOW_SHUT_WR after
 * the queued data.
 *
 * Proxy -> guest. Once the connection is established the proxy gets credit
 * equal to the free send buffer (pcb->snd_buf), and more as the guest ACKs
 * (sent callback). FLOW_DATA beyond the credit given is a violation. Data is
 * tcp_write()n with TCP_WRITE_FLAG_COPY in 16-bit chunks and each touched
 * flow gets one tcp_output() per batch. Credit bounds the bytes to
 * snd_buf, so tcp_write() can only fail when lwIP's memory (the arena) is
 * exhausted; then the p2s record stays in the ring, the dispatcher remembers
 * how much of it was taken and retries shortly: nothing is dropped, and the
 * proxy sees backpressure.
 *
 * Endings. FLOW_SHUT_WR -> tcp_shutdown(pcb, 0, 1) (deferred until the
 * handshake completed). When both sides have shut, the pcb is detached and
 * tcp_close()d (lwIP finishes FIN/TIME_WAIT on its own) and CLOSE(reset=0)
 * goes to the proxy. A guest RST or an lwIP abort (err callback) sends
 * CLOSE(reset=1); CLOSE(reset=1) from the proxy aborts the pcb (RST to the
 * guest), CLOSE(reset=0) closes it. After CLOSE either way the id is dead.
 * A timer resets flows idle longer than the header's tcp_idle_timeout_s
 * (five minutes once either side has shut: CLOSE_WAIT must not fill the
 * table) and held SYNs the proxy never answered.
 *
 * Messages for unknown or dead ids are ignored (they may cross a CLOSE);
 * impossible ones (too much data or credit) are violations (flows.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/list.h"
#include "common/log.h"
#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/prot/ip4.h"
#include "lwip/prot/ip6.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

/* Chains in a receive queue: consecutive chains sum to more than 64 KiB. */
_Static_assert(TCP_WND <= FLOW_TCP_WINDOW_MAX,
	       "the proxy sizes its write pool from FLOW_TCP_WINDOW_MAX");

#define RXQ_MAX		   ((2 * TCP_WND) / 0xffff + 4)
#define LISTEN_IDLE_MS	   60000u
#define HALF_CLOSED_IDLE_S 300u

enum conn_state { CS_FREE, CS_PENDING, CS_HANDSHAKE, CS_OPEN, CS_DONE };

/**
 * struct conn - one TCP flow
 * @id:		flow id (egress: generation | slot + 1)
 * @state:	enum conn_state; CS_DONE: lwIP no longer has it, messages for
 *		the proxy are still owed
 * @v6:		the flow is IPv6 (@gaddr and @raddr are IPv6 addresses)
 * @ingress:	opened by the proxy for a published port (id from the proxy)
 * @need_result: an ingress CONNECT_RESULT (@result) is owed to the proxy
 * @result:	the MOAT_CONN_* result of an ingress flow's connect
 * @gaddr, @gport: the guest's end
 * @raddr, @rport: the remote end (the original destination)
 * @pcb:	lwIP's pcb while attached
 * @syn:	the held SYN (payload at the IP header) while pending
 * @need_connect: a FLOW_CONNECT for the held SYN is owed to the proxy
 * @need_shut:	a FLOW_SHUT_WR (the guest's FIN) is owed, after the queued data
 * @need_close:	a FLOW_CLOSE is owed; the slot is freed once it is sent
 * @close_reset: that FLOW_CLOSE says reset=1 (an RST or an abort, not a FIN)
 * @proxy_fin:	SHUT_WR came from the proxy (tcp_shutdown done or deferred)
 * @shut_applied: tcp_shutdown() was called for @proxy_fin
 * @guest_fin:	the guest's FIN was received
 * @credit:	credit given to the proxy and not yet used by DATA
 * @credit_unsent: part of @credit not yet sent in a CREDIT message
 * @rx_uncredited: bytes sent as DATA the proxy has not credited back
 * @born_ms, @last_ms: creation and last activity (sys_now())
 * @rxq:	queued pbuf chains from the guest, @rxq_head, @rxq_n
 * @tx, @out, @pend, @ing: links in conns' lists (s2p owed, tcp_output
 *		wanted, pending SYN, ingress)
 * @gen:	generation of this slot
 * @free_next:	next free slot while this one is free
 *
 * The bools stay separate fields rather than one flags word: each is set and
 * tested on its own, and the layout (the size logged at start) is unchanged.
 */
struct conn {
	uint32_t id;
	uint8_t state;
	bool v6;	  /* IPv6 flow */
	bool ingress;	  /* published port: the proxy opened it */
	bool need_result; /* CONNECT_RESULT owed (ingress) */
	uint8_t result;
	ip_addr_t gaddr, raddr;
	uint16_t gport, rport;
	struct tcp_pcb *pcb;
	struct pbuf *syn;
	bool need_connect; /* FLOW_CONNECT owed for the held SYN */
	bool need_shut;	   /* FLOW_SHUT_WR owed (guest's FIN) */
	bool need_close;   /* FLOW_CLOSE owed; then the slot is freed */
	bool close_reset;  /* ... with reset=1 */
	bool proxy_fin;	   /* the proxy sent SHUT_WR */
	bool shut_applied; /* tcp_shutdown() done for proxy_fin */
	bool guest_fin;	   /* the guest's FIN arrived */
	uint32_t credit, credit_unsent, rx_uncredited;
	uint32_t born_ms, last_ms;
	struct pbuf *rxq[RXQ_MAX];
	uint8_t rxq_head, rxq_n;
	struct list_head tx, out, pend, ing;
	uint32_t gen;
	struct conn *free_next;
};

/**
 * struct conn_table - every TCP flow and listener of this netstack
 * @ns:		the netstack (for callbacks that get only a pcb or a conn)
 * @tab:	@n flow slots, mapped by conn_init() before confinement
 * @n:		number of slots (the header's max_tcp_connections)
 * @idx_bits:	bits of a flow id that hold slot + 1; the generation is above
 * @free:	free slots, linked by free_next
 * @tx:		flows that owe the proxy a message (conn_pump())
 * @out:	flows written to in this batch (one tcp_output() each)
 * @pend:	flows whose SYN is held until the proxy's CONNECT_RESULT
 * @ing:	ingress flows (published ports), found by the proxy's id
 * @active:	flows counted in tcp_flows_active
 * @lst:	the on-demand listener per destination port, or NULL
 * @lst_used:	last use of each port's listener (sys_now())
 * @lports:	the ports that have a listener, @nlports of them
 *
 * One per process, file-local: conn.c's functions reach it directly rather
 * than through struct netstack, which other files share.
 */
static struct conn_table {
	struct netstack *ns;
	struct conn *tab;
	uint32_t n, idx_bits;
	struct conn *free;
	struct list_head tx, out, pend, ing;
	uint64_t active;
	struct tcp_pcb **lst; /* listener per port */
	uint32_t *lst_used;   /* last use per port (sys_now()) */
	uint16_t *lports;     /* ports with a listener */
	uint32_t nlports;
} conns;

static void tx_mark(struct conn *c)
{
	if (!list_linked(&c->tx))
		list_add_tail(&conns.tx, &c->tx);
}

static void out_mark(struct conn *c)
{
	if (!list_linked(&c->out))
		list_add_tail(&conns.out, &c->out);
}

/**
 * conn_init() - allocate the flow table and listener tables
 * @ns:	netstack (cfg.max_conns set)
 *
 * Context: before confinement (maps memory).
 * Return: 0 or -ENOMEM.
 */
int conn_init(struct netstack *ns)
{
	size_t tab_bytes = (size_t)ns->cfg.max_conns * sizeof(struct conn);
	size_t lst_bytes = 65536 * (sizeof(struct tcp_pcb *) + sizeof(uint32_t) + sizeof(uint16_t));
	uint8_t *m;

	memset(&conns, 0, sizeof(conns));
	conns.ns = ns;
	conns.n = ns->cfg.max_conns;
	while ((1u << conns.idx_bits) <= conns.n)
		conns.idx_bits++;
	m = mmap(NULL, tab_bytes + lst_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	conns.tab = (struct conn *)(void *)m;
	conns.lst = (struct tcp_pcb **)(void *)(m + tab_bytes);
	conns.lst_used = (uint32_t *)(void *)(m + tab_bytes + 65536 * sizeof(struct tcp_pcb *));
	conns.lports = (uint16_t *)(void *)((uint8_t *)conns.lst_used + 65536 * sizeof(uint32_t));
	for (uint32_t i = conns.n; i-- > 0;) {
		conns.tab[i].free_next = conns.free;
		conns.free = &conns.tab[i];
	}
	list_init(&conns.tx);
	list_init(&conns.out);
	list_init(&conns.pend);
	list_init(&conns.ing);
	log_debug("pool: tcp flow table entries=%u bytes=%zu (%zu per flow, %d rx chains each)",
		  conns.n, tab_bytes, sizeof(struct conn), (int)RXQ_MAX);
	log_debug("pool: tcp listener tables bytes=%zu (one listener per destination port)",
		  lst_bytes);
	return 0;
}

static struct conn *conn_alloc(void)
{
	struct conn *c = conns.free;
	uint32_t slot, gen;

	if (!c)
		return NULL;
	conns.free = c->free_next;
	slot = (uint32_t)(c - conns.tab);
	gen = c->gen + 1;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->id = ((gen << conns.idx_bits) | (slot + 1)) & (FLOW_ID_INGRESS - 1);
	if ((c->id >> conns.idx_bits) ==
	    0) /* generation wrapped to 0: keep ids unique-ish, nonzero */
		c->id |= 1u << conns.idx_bits;
	c->born_ms = c->last_ms = sys_now();
	return c;
}

static struct conn *conn_lookup(uint32_t id)
{
	uint32_t slot = id & ((1u << conns.idx_bits) - 1);
	struct conn *c;

	if (id & FLOW_ID_INGRESS) {
		/* Published ports are few: a list, not an index. */
		for (struct list_head *e = conns.ing.next; e != &conns.ing; e = e->next) {
			c = list_entry(e, struct conn, ing);
			if (c->id == id)
				return c;
		}
		return NULL;
	}
	if (id == 0 || slot == 0 || slot > conns.n)
		return NULL;
	c = &conns.tab[slot - 1];
	return c->state != CS_FREE && c->id == id ? c : NULL;
}

static void rxq_clear(struct conn *c)
{
	while (c->rxq_n) {
		pbuf_free(c->rxq[c->rxq_head]);
		c->rxq_head = (uint8_t)((c->rxq_head + 1) % RXQ_MAX);
		c->rxq_n--;
	}
}

static void conn_free(struct conn *c)
{
	if (c->syn)
		pbuf_free(c->syn);
	rxq_clear(c);
	list_del(&c->tx);
	list_del(&c->out);
	list_del(&c->pend);
	list_del(&c->ing);
	c->state = CS_FREE;
	c->pcb = NULL;
	c->syn = NULL;
	c->free_next = conns.free;
	conns.free = c;
}

static void count_closed(struct netstack *ns, struct conn *c)
{
	if (c->state == CS_OPEN) {
		cnt_add(&ns->cnt->tcp_flows_closed, 1);
		conns.active--;
		cnt_set(&ns->cnt->tcp_flows_active, conns.active);
	}
}

/* Take lwIP's pcb away from the flow: no more callbacks. */
static struct tcp_pcb *detach(struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb;

	if (pcb) {
		tcp_arg(pcb, NULL);
		tcp_recv(pcb, NULL);
		tcp_sent(pcb, NULL);
		tcp_err(pcb, NULL);
	}
	c->pcb = NULL;
	return pcb;
}

/* The flow is over for lwIP; tell the proxy (after queued data unless reset). */
static void finish(struct conn *c, bool reset)
{
	count_closed(conns.ns, c);
	c->state = CS_DONE;
	c->need_close = true;
	c->close_reset = reset;
	if (reset) {
		rxq_clear(c);
		c->need_shut = false;
	}
	list_del(&c->out);
	tx_mark(c);
}

static void abort_conn(struct conn *c)
{
	struct tcp_pcb *pcb = detach(c);

	if (pcb)
		tcp_abort(pcb);
}

static void close_pcb(struct conn *c)
{
	struct tcp_pcb *pcb = detach(c);

	if (pcb && tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
}

/* Both directions are finished: let lwIP complete the close by itself. */
static void maybe_finish(struct conn *c)
{
	if (c->state == CS_OPEN && c->guest_fin && c->shut_applied) {
		close_pcb(c);
		finish(c, false);
	}
}

static void give_credit(struct conn *c)
{
	uint32_t buf, avail;

	if (!c->pcb || c->state != CS_OPEN || c->proxy_fin)
		return;
	buf = c->pcb->snd_buf;
	avail = buf > c->credit ? buf - c->credit : 0;
	/* Batch small increments unless the proxy has nothing left. */
	if (avail >= 4096 || (avail && c->credit == 0)) {
		c->credit += avail;
		c->credit_unsent += avail;
		tx_mark(c);
	}
}

static bool rxq_push(struct conn *c, struct pbuf *p)
{
	if (c->rxq_n) {
		struct pbuf *tail = c->rxq[(c->rxq_head + c->rxq_n - 1) % RXQ_MAX];

		if ((uint32_t)tail->tot_len + p->tot_len <= 0xffff) {
			pbuf_cat(tail, p);
			return true;
		}
	}
	if (c->rxq_n == RXQ_MAX)
		return false;
	c->rxq[(c->rxq_head + c->rxq_n) % RXQ_MAX] = p;
	c->rxq_n++;
	return true;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *c = arg;

	if (!c) {
		if (p) {
			tcp_recved(pcb, p->tot_len);
			pbuf_free(p);
		}
		return ERR_OK;
	}
	c->last_ms = sys_now();
	if (!p) {
		if (!c->guest_fin) {
			c->guest_fin = true;
			c->need_shut = true;
			tx_mark(c);
		}
		maybe_finish(c);
		return ERR_OK;
	}
	if (err != ERR_OK) {
		pbuf_free(p);
		return ERR_OK;
	}
	/* Only if the queue bound were wrong: lwIP keeps it and offers it again. */
	if (!rxq_push(c, p))
		return ERR_MEM;
	tx_mark(c);
	return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct conn *c = arg;

	(void)pcb;
	(void)len;
	if (c) {
		c->last_ms = sys_now();
		give_credit(c);
	}
	return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
	struct conn *c = arg;

	if (!c)
		return;
	c->pcb = NULL; /* lwIP freed it */
	if (c->ingress && c->state == CS_HANDSHAKE) {
		/* The guest refused (RST) or never answered our SYN. */
		c->state = CS_DONE;
		c->need_result = true;
		c->result = err == ERR_RST ? MOAT_CONN_REFUSED : MOAT_CONN_TIMEOUT;
		tx_mark(c);
		return;
	}
	if (c->state == CS_HANDSHAKE || c->state == CS_OPEN)
		finish(c, err != ERR_CLSD);
}

static err_t on_accept(void *arg, struct tcp_pcb *npcb, err_t err)
{
	struct conn *c = arg;
	struct netstack *ns = conns.ns;

	if (!npcb)
		return ERR_MEM; /* lwIP had no pcb for the SYN; the guest retransmits */
	if (!c || err != ERR_OK || c->pcb != npcb || c->state != CS_HANDSHAKE) {
		tcp_abort(npcb);
		return ERR_ABRT;
	}
	c->state = CS_OPEN;
	c->last_ms = sys_now();
	tcp_nagle_disable(npcb);
	cnt_add(&ns->cnt->tcp_flows_opened, 1);
	conns.active++;
	cnt_set(&ns->cnt->tcp_flows_active, conns.active);
	if (c->proxy_fin && !c->shut_applied) {
		c->shut_applied = true;
		tcp_shutdown(npcb, 0, 1);
		out_mark(c);
	} else {
		give_credit(c);
	}
	return ERR_OK;
}

static struct tcp_pcb *find_pcb(struct tcp_pcb *list, const struct conn *c)
{
	for (struct tcp_pcb *pcb = list; pcb; pcb = pcb->next)
		if (pcb->remote_port == c->gport && pcb->local_port == c->rport &&
		    ip_addr_cmp(&pcb->remote_ip, &c->gaddr) &&
		    ip_addr_cmp(&pcb->local_ip, &c->raddr))
			return pcb;
	return NULL;
}

static struct conn *find_pending(const struct conn *key)
{
	for (struct list_head *e = conns.pend.next; e != &conns.pend; e = e->next) {
		struct conn *c = list_entry(e, struct conn, pend);

		if (c->gport == key->gport && c->rport == key->rport &&
		    ip_addr_cmp(&c->gaddr, &key->gaddr) && ip_addr_cmp(&c->raddr, &key->raddr))
			return c;
	}
	return NULL;
}

/* RST answering the held SYN @syn (payload at the IP header). */
static void rst_syn(struct conn *c, struct pbuf *syn, uint16_t l4_off)
{
	uint8_t th[20];
	uint32_t seg;

	if (pbuf_copy_partial(syn, th, 20, l4_off) != 20)
		return;
	seg = (uint32_t)syn->tot_len - l4_off - (uint32_t)(th[12] >> 4) * 4u;
	tcp_rst(NULL, 0, rd32(th + 4) + 1 + seg, &c->raddr, &c->gaddr, c->rport, c->gport);
}

static uint16_t syn_l4_off(const struct conn *c)
{
	return c->v6 ? IP6_HLEN : IP_HLEN;
}

/*
 * At most TW_MAX connections in TIME_WAIT. lwIP keeps them 2 * TCP_MSL on a
 * list that every segment and every new SYN walks; at thousands of short
 * connections a second (the crr benchmark) that list held 5,000-8,000
 * entries and the walks were half of the netstack's time. The guest is one
 * host on a point-to-point link, so old duplicates that TIME_WAIT guards
 * against cannot arrive late from elsewhere; the oldest entries go first.
 */
#define TW_MAX 64

static void tw_trim(void)
{
	struct tcp_pcb *pcb = tcp_tw_pcbs, *next;
	unsigned n = 0;

	/* New TIME_WAIT entries are pushed at the head: the tail is the oldest. */
	for (; pcb && n < TW_MAX; pcb = pcb->next)
		n++;
	for (; pcb; pcb = next) {
		next = pcb->next;
		tcp_abort(pcb); /* TIME_WAIT: removed and freed, no RST */
	}
}

/**
 * conn_input() - a TCP segment from the guest
 * @ns:		netstack
 * @p:		the IP packet (validated, reassembled, payload at the IP
 *		header, transport header at @l4_off); consumed
 * @v6:		family
 * @l4_off:	offset of the TCP header
 */
void conn_input(struct netstack *ns, struct pbuf *p, bool v6, uint16_t l4_off)
{
	struct conn key, *c;
	struct tcp_pcb *tw;
	uint8_t th[20];

	if (l4_off != (v6 ? IP6_HLEN : IP_HLEN) || pbuf_copy_partial(p, th, 20, l4_off) != 20) {
		stack_drop(ns, MOAT_DROP_MALFORMED);
		pbuf_free(p);
		return;
	}
	memset(&key, 0, sizeof(key));
	key.v6 = v6;
	if (v6) {
		const struct ip6_hdr *h = p->payload;

		ip_addr_copy_from_ip6_packed(key.gaddr, h->src);
		ip_addr_copy_from_ip6_packed(key.raddr, h->dest);
	} else {
		const struct ip_hdr *h = p->payload;

		ip_addr_copy_from_ip4(key.gaddr, h->src);
		ip_addr_copy_from_ip4(key.raddr, h->dest);
	}
	key.gport = rd16(th);
	key.rport = rd16(th + 2);

	if ((th[13] & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		if (find_pcb(tcp_active_pcbs, &key)) {
			guestif_feed_tcp(ns, p); /* lwIP knows it: a retransmitted SYN */
			return;
		}
		tw = find_pcb(tcp_tw_pcbs, &key);
		if (tw)
			tcp_abort(tw); /* port reuse after TIME_WAIT: a new connection */
		tw_trim();
		if (find_pending(&key)) {
			pbuf_free(p); /* retransmission while the proxy connects */
			return;
		}
		cnt_add(&ns->cnt->tcp_syns, 1);
		c = conn_alloc();
		if (!c) {
			cnt_add(&ns->cnt->tcp_table_full, 1);
			rst_syn(&key, p, l4_off);
			pbuf_free(p);
			return;
		}
		c->state = CS_PENDING;
		c->v6 = v6;
		c->gaddr = key.gaddr;
		c->raddr = key.raddr;
		c->gport = key.gport;
		c->rport = key.rport;
		c->syn = p;
		c->need_connect = true;
		list_add_tail(&conns.pend, &c->pend);
		tx_mark(c);
		return;
	}
	if (!list_empty(&conns.pend)) {
		c = find_pending(&key);
		if (c) {
			if (th[13] & TCP_RST) {
				/* The guest gave up before the proxy answered. */
				list_del(&c->pend);
				pbuf_free(c->syn);
				c->syn = NULL;
				if (c->need_connect) {
					conn_free(c);
				} else {
					c->state = CS_DONE;
					c->need_close = true;
					c->close_reset = true;
					tx_mark(c);
				}
			}
			pbuf_free(p);
			return;
		}
	}
	guestif_feed_tcp(ns, p);
}

static struct tcp_pcb *listener_get(uint16_t port)
{
	struct tcp_pcb *pcb, *lpcb;

	if (conns.lst[port]) {
		conns.lst_used[port] = sys_now();
		return conns.lst[port];
	}
	pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
	if (!pcb)
		return NULL;
	ip_set_option(pcb, SOF_REUSEADDR);
	if (tcp_bind(pcb, IP_ANY_TYPE, port) != ERR_OK) {
		tcp_abort(pcb);
		return NULL;
	}
	lpcb = tcp_listen_with_backlog(pcb, TCP_DEFAULT_LISTEN_BACKLOG);
	if (!lpcb) {
		tcp_abort(pcb);
		return NULL;
	}
	tcp_arg(lpcb, NULL);
	tcp_accept(lpcb, on_accept);
	conns.lst[port] = lpcb;
	conns.lst_used[port] = sys_now();
	conns.lports[conns.nlports++] = port;
	cnt_set(&conns.ns->cnt->listeners, conns.nlports);
	return lpcb;
}

/**
 * conn_connect_result() - the proxy's answer to FLOW_CONNECT
 * @ns:	netstack
 * @m:	validated message (id egress, result in range)
 */
void conn_connect_result(struct netstack *ns, const struct flow_connect_result *m)
{
	struct conn *c = conn_lookup(m->id);
	struct pbuf *syn;

	if (!c || c->state != CS_PENDING || c->need_connect)
		return;
	list_del(&c->pend);
	syn = c->syn;
	c->syn = NULL;
	c->last_ms = sys_now();
	switch (m->result) {
	case MOAT_CONN_OK:
		if (!listener_get(c->rport)) {
			rst_syn(c, syn, syn_l4_off(c));
			pbuf_free(syn);
			finish(c, true);
			return;
		}
		c->state = CS_HANDSHAKE;
		guestif_feed_tcp(ns, syn);
		c->pcb = find_pcb(tcp_active_pcbs, c);
		if (!c->pcb) {
			finish(c, true);
			return;
		}
		tcp_arg(c->pcb, c);
		tcp_recv(c->pcb, on_recv);
		tcp_sent(c->pcb, on_sent);
		tcp_err(c->pcb, on_err);
		return;
	case MOAT_CONN_UNREACHABLE:
	case MOAT_CONN_TIMEOUT:
		icmpgw_unreachable(ns, syn, c->v6);
		break;
	default: /* refused, denied, limit */
		rst_syn(c, syn, syn_l4_off(c));
		break;
	}
	pbuf_free(syn);
	conn_free(c);
}

/**
 * conn_data() - FLOW_DATA from the proxy: bytes for the guest
 * @ns:		netstack
 * @id:		flow id
 * @data:	payload (in the ring; copied by tcp_write)
 * @len:	payload length
 * @taken:	set to the bytes consumed
 *
 * Return: 0, -EAGAIN if lwIP ran out of memory part-way (retry the rest
 * later), -EINVAL if the proxy exceeded its credit (a violation).
 */
int conn_data(struct netstack *ns, uint32_t id, const uint8_t *data, uint32_t len, uint32_t *taken)
{
	struct conn *c = conn_lookup(id);
	uint32_t off = 0;

	*taken = len;
	if (!c || c->state == CS_DONE)
		return 0; /* dead: crossed our CLOSE */
	if (c->proxy_fin || len > c->credit - c->credit_unsent)
		return -EINVAL;
	if (!c->pcb)
		return 0;
	while (off < len) {
		uint32_t chunk = len - off > 0xffff ? 0xffff : len - off;
		err_t err = tcp_write(c->pcb, data + off, (u16_t)chunk,
				      TCP_WRITE_FLAG_COPY |
					      (off + chunk < len ? TCP_WRITE_FLAG_MORE : 0));

		if (err == ERR_MEM)
			break;
		if (err != ERR_OK) { /* the connection is going away */
			off = len;
			break;
		}
		off += chunk;
	}
	c->credit -= off;
	cnt_add(&ns->cnt->rx_bytes_tcp, off);
	c->last_ms = sys_now();
	out_mark(c);
	*taken = off;
	if (off < len) {
		ns->mem_errs++; /* the arena counts its own failures */
		return -EAGAIN;
	}
	return 0;
}

/**
 * conn_credit() - FLOW_CREDIT from the proxy: it wrote bytes to its socket
 * @ns:	netstack
 * @m:	message
 *
 * Return: 0, or -EINVAL if it credits more than it was sent (a violation).
 */
int conn_credit(struct netstack *ns, const struct flow_credit *m)
{
	struct conn *c = conn_lookup(m->id);
	uint32_t n = m->bytes;

	(void)ns;
	if (!c || c->state == CS_DONE)
		return 0;
	if (n > c->rx_uncredited)
		return -EINVAL;
	c->rx_uncredited -= n;
	c->last_ms = sys_now();
	if (!c->pcb)
		return 0;
	while (n) {
		u16_t chunk = n > 0xffff ? 0xffff : (u16_t)n;

		tcp_recved(c->pcb, chunk);
		n -= chunk;
	}
	return 0;
}

/**
 * conn_shut() - FLOW_SHUT_WR from the proxy: the remote will send no more
 * @ns:	netstack
 * @id:	flow id
 *
 * Return: 0 (a repeated SHUT_WR is ignored).
 */
int conn_shut(struct netstack *ns, uint32_t id)
{
	struct conn *c = conn_lookup(id);

	(void)ns;
	if (!c || c->state == CS_DONE || c->proxy_fin)
		return 0;
	if (c->state == CS_PENDING)
		return -EINVAL; /* no connection to shut yet */
	c->proxy_fin = true;
	c->last_ms = sys_now();
	if (c->state == CS_OPEN && c->pcb) {
		c->shut_applied = true;
		tcp_shutdown(c->pcb, 0, 1);
		out_mark(c);
		maybe_finish(c);
	}
	return 0;
}

/**
 * conn_close() - FLOW_CLOSE from the proxy: the flow is gone
 * @ns:	netstack
 * @m:	message (reset validated 0 or 1)
 */
void conn_close(struct netstack *ns, const struct flow_close *m)
{
	struct conn *c = conn_lookup(m->id);

	if (!c)
		return;
	switch (c->state) {
	case CS_PENDING:
		if (c->syn)
			rst_syn(c, c->syn, syn_l4_off(c));
		break;
	case CS_HANDSHAKE:
	case CS_OPEN:
		count_closed(ns, c);
		if (m->reset)
			abort_conn(c);
		else
			close_pcb(c);
		break;
	default:
		break;
	}
	conn_free(c);
}

/* Send what the flow owes the proxy, in order; false if s2p is full. */
/**
 * conn_reset_all() - abort every flow lwIP still holds: RST to the guest
 * @ns:	netstack
 *
 * Context: the netstack on a requested stop (SIGTERM), so that the guest's
 * connections fail at once instead of hanging until they time out.
 * Return: number of flows reset.
 */
uint32_t conn_reset_all(struct netstack *ns)
{
	uint32_t n = 0;

	(void)ns;
	for (uint32_t i = 0; i < conns.n; i++) {
		struct conn *c = &conns.tab[i];

		if (c->state == CS_FREE || !c->pcb)
			continue;
		abort_conn(c);
		n++;
	}
	return n;
}

static bool pump_one(struct netstack *ns, struct conn *c)
{
	if (c->need_result) {
		struct flow_connect_result m = { .id = c->id, .result = c->result };

		if (flows_emit(ns, FLOW_CONNECT_RESULT, &m, sizeof(m), NULL, 0, 0) < 0)
			return false;
		c->need_result = false;
		if (c->result != MOAT_CONN_OK) {
			conn_free(c); /* the id is dead for both sides */
			return true;
		}
	}
	if (c->need_connect) {
		struct flow_connect m;

		memset(&m, 0, sizeof(m));
		m.id = c->id;
		flows_endpoint(&m.src, &c->gaddr, c->gport);
		flows_endpoint(&m.dst, &c->raddr, c->rport);
		if (flows_emit(ns, FLOW_CONNECT, &m, sizeof(m), NULL, 0, 0) < 0)
			return false;
		c->need_connect = false;
	}
	if (c->credit_unsent) {
		struct flow_credit m = { .id = c->id, .bytes = c->credit_unsent };

		if (flows_emit(ns, FLOW_CREDIT, &m, sizeof(m), NULL, 0, 0) < 0)
			return false;
		c->credit_unsent = 0;
	}
	while (c->rxq_n) {
		struct pbuf *q = c->rxq[c->rxq_head];
		struct flow_data m = { .id = c->id };
		uint32_t max = RING_MAX_RECORD(ns->s2p.cap) - (uint32_t)sizeof(m);
		uint16_t chunk = q->tot_len > max ? (uint16_t)max : q->tot_len;

		if (flows_emit(ns, FLOW_DATA, &m, sizeof(m), q, 0, chunk) < 0)
			return false;
		c->rx_uncredited += chunk;
		cnt_add(&ns->cnt->tx_bytes_tcp, chunk);
		q = pbuf_free_header(q, chunk);
		if (q) {
			c->rxq[c->rxq_head] = q; /* a small s2p ring: the rest next */
			continue;
		}
		c->rxq_head = (uint8_t)((c->rxq_head + 1) % RXQ_MAX);
		c->rxq_n--;
	}
	if (c->need_shut) {
		struct flow_shut m = { .id = c->id };

		if (flows_emit(ns, FLOW_SHUT_WR, &m, sizeof(m), NULL, 0, 0) < 0)
			return false;
		c->need_shut = false;
	}
	if (c->need_close) {
		struct flow_close m = { .id = c->id, .reset = c->close_reset };

		if (flows_emit(ns, FLOW_CLOSE, &m, sizeof(m), NULL, 0, 0) < 0)
			return false;
		conn_free(c);
	}
	return true;
}

/**
 * conn_pump() - send owed flow messages while s2p has room
 * @ns:	netstack
 */
void conn_pump(struct netstack *ns)
{
	while (!list_empty(&conns.tx)) {
		struct list_head *e = conns.tx.next;
		struct conn *c = list_entry(e, struct conn, tx);

		if (!pump_one(ns, c))
			return; /* ns->s2p_blocked is set */
		list_del(e);
	}
}

/**
 * conn_output() - one tcp_output() per flow that got data or a FIN
 * @ns:	netstack
 */
void conn_output(struct netstack *ns)
{
	(void)ns;
	while (!list_empty(&conns.out)) {
		struct list_head *e = conns.out.next;
		struct conn *c = list_entry(e, struct conn, out);

		list_del(e);
		if (c->pcb)
			tcp_output(c->pcb);
	}
}

static uint32_t count_pcbs(struct tcp_pcb *list)
{
	uint32_t n = 0;

	for (; list; list = list->next)
		n++;
	return n;
}

/**
 * conn_timer() - once a second: reap idle flows and unanswered SYNs, close
 * idle listeners, refresh the pcb counters
 * @ns:	netstack
 */
void conn_timer(struct netstack *ns)
{
	uint32_t now = sys_now(), i;

	for (i = 0; i < conns.n; i++) {
		struct conn *c = &conns.tab[i];
		uint32_t idle_s;

		switch (c->state) {
		case CS_PENDING:
			if (now - c->born_ms <= ns->cfg.connect_timeout_ms + 5000u)
				break;
			log_debug("flow %u: no connect result from the proxy", c->id);
			icmpgw_unreachable(ns, c->syn, c->v6);
			list_del(&c->pend);
			if (c->need_connect) {
				conn_free(c);
			} else {
				pbuf_free(c->syn);
				c->syn = NULL;
				finish(c, true);
			}
			break;
		case CS_HANDSHAKE:
		case CS_OPEN:
			idle_s = ns->cfg.tcp_idle_s;
			if ((c->guest_fin || c->proxy_fin) && idle_s > HALF_CLOSED_IDLE_S)
				idle_s = HALF_CLOSED_IDLE_S;
			if (now - c->last_ms > idle_s * 1000u) {
				log_debug("flow %u: idle for %us, reset", c->id, idle_s);
				abort_conn(c);
				finish(c, true);
			}
			break;
		default:
			break;
		}
	}
	for (i = 0; i < conns.nlports;) {
		uint16_t port = conns.lports[i];

		if (now - conns.lst_used[port] > LISTEN_IDLE_MS) {
			tcp_close(conns.lst[port]);
			conns.lst[port] = NULL;
			conns.lports[i] = conns.lports[--conns.nlports];
			continue;
		}
		i++;
	}
	cnt_set(&ns->cnt->listeners, conns.nlports);
	cnt_set(&ns->cnt->pcbs_in_use,
		count_pcbs(tcp_active_pcbs) + count_pcbs(tcp_tw_pcbs) + conns.nlports);
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct conn *c = arg;
	struct netstack *ns = conns.ns;

	if (!c || err != ERR_OK || c->state != CS_HANDSHAKE)
		return ERR_OK;
	c->state = CS_OPEN;
	c->last_ms = sys_now();
	tcp_nagle_disable(pcb);
	cnt_add(&ns->cnt->tcp_flows_opened, 1);
	conns.active++;
	cnt_set(&ns->cnt->tcp_flows_active, conns.active);
	c->need_result = true;
	c->result = MOAT_CONN_OK;
	tx_mark(c);
	if (c->proxy_fin && !c->shut_applied) {
		c->shut_applied = true;
		tcp_shutdown(pcb, 0, 1);
		out_mark(c);
	} else {
		give_credit(c);
	}
	return ERR_OK;
}

/**
 * conn_accepted() - FLOW_ACCEPTED: a host client connected to a published port
 * @ns:	netstack
 * @m:	validated message (ingress id, ports non-zero)
 *
 * lwIP connects to the guest's address and port from the client's address
 * (the gateway's when the client is on host loopback or speaks IPv6: the
 * guest is reached over IPv4) and CONNECT_RESULT follows when the guest
 * accepts, refuses or does not answer.
 *
 * Return: 0, or -EINVAL if the id is already in use (a violation).
 */
int conn_accepted(struct netstack *ns, const struct flow_connect *m)
{
	ip_addr_t src, guest;
	struct tcp_pcb *pcb;
	struct conn *c;

	if (conn_lookup(m->id))
		return -EINVAL;
	c = conn_alloc();
	if (!c) {
		struct flow_connect_result r = { .id = m->id, .result = MOAT_CONN_LIMIT };

		cnt_add(&ns->cnt->tcp_table_full, 1);
		flows_emit(ns, FLOW_CONNECT_RESULT, &r, sizeof(r), NULL, 0, 0);
		return 0;
	}
	c->id = m->id;
	c->ingress = true;
	c->state = CS_HANDSHAKE;
	list_add_tail(&conns.ing, &c->ing);
	if (m->src.family != 4 || flows_endpoint_addr(&m->src, &src) < 0 ||
	    ip4_addr_get_u32(ip_2_ip4(&src)) == ns->cfg.guest_ip4)
		ip_addr_set_ip4_u32_val(src, ns->cfg.gw_ip4);
	ip_addr_set_ip4_u32_val(guest, ns->cfg.guest_ip4);
	c->gaddr = guest;
	c->raddr = src;
	c->gport = m->dst.port;
	c->rport = m->src.port;
	pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
	if (!pcb)
		goto refuse;
	ip_set_option(pcb, SOF_REUSEADDR);
	/*
	 * A fresh local port from lwIP's allocator, not the host client's port:
	 * a host client on loopback may reuse a port whose last connection the
	 * guest still holds in TIME_WAIT (tcp_tw_reuse), and the guest would
	 * then refuse our SYN.
	 */
	if (tcp_bind(pcb, &src, 0) != ERR_OK) {
		tcp_abort(pcb);
		goto refuse;
	}
	c->rport = pcb->local_port;
	c->pcb = pcb;
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_err);
	if (tcp_connect(pcb, &guest, c->gport, on_connected) != ERR_OK) {
		abort_conn(c);
		goto refuse;
	}
	out_mark(c);
	return 0;
refuse:
	c->state = CS_DONE;
	c->need_result = true;
	c->result = MOAT_CONN_REFUSED;
	tx_mark(c);
	return 0;
}
