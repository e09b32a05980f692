/* SPDX-License-Identifier: MIT */
/*
 * connopen.c - how a TCP flow opens: connect before accept, the on-demand
 * listeners, ingress connects to the guest
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack, on conn.h's flow table (the relay, once a flow is
 * open, is conn.c's).
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
 * table answers RST at once (tcp_table_full). A guest RST while pending
 * drops the held SYN; a held SYN the proxy never answers (connect timeout
 * plus five seconds) gets ICMP unreachable.
 *
 * Ingress (published ports). FLOW_ACCEPTED names a host client: lwIP
 * connects to the guest from the client's address (or the gateway's) and a
 * fresh local port, and CONNECT_RESULT goes back when the guest accepts,
 * refuses or does not answer.
 *
 * TIME_WAIT is bounded here too (tw_trim()): every new SYN walks lwIP's
 * TIME_WAIT list.
 */
#include <errno.h>
#include <string.h>

#include "common/list.h"
#include "common/log.h"
#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/prot/ip4.h"
#include "lwip/prot/ip6.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "netstack/conn.h"
#include "netstack/frame.h"
#include "netstack/stack.h"

#define LISTEN_IDLE_MS 60000u

static err_t on_accept(void *arg, struct tcp_pcb *npcb, err_t err)
{
	struct conn *c = arg;

	if (!npcb)
		return ERR_MEM; /* lwIP had no pcb for the SYN; the guest retransmits */
	if (!c || err != ERR_OK || c->pcb != npcb || c->state != CS_HANDSHAKE) {
		tcp_abort(npcb);
		return ERR_ABRT;
	}
	conn_opened(c, npcb);
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
 * connopen_input() - a TCP segment from the guest
 * @ns:		netstack
 * @p:		the IP packet (validated, reassembled, payload at the IP
 *		header, transport header at @l4_off); consumed
 * @v6:		family
 * @l4_off:	offset of the TCP header
 */
void connopen_input(struct netstack *ns, struct pbuf *p, bool v6, uint16_t l4_off)
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
		conn_tx_mark(c);
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
					conn_tx_mark(c);
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
 * connopen_result() - the proxy's answer to FLOW_CONNECT
 * @ns:	netstack
 * @m:	validated message (id egress, result in range)
 */
void connopen_result(struct netstack *ns, const struct flow_connect_result *m)
{
	struct conn *c = conn_lookup(m->id);
	struct tcp_pcb *pcb;
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
			conn_finish(c, true);
			return;
		}
		c->state = CS_HANDSHAKE;
		guestif_feed_tcp(ns, syn);
		pcb = find_pcb(tcp_active_pcbs, c);
		if (!pcb) {
			conn_finish(c, true);
			return;
		}
		conn_attach(c, pcb);
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

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct conn *c = arg;

	if (!c || err != ERR_OK || c->state != CS_HANDSHAKE)
		return ERR_OK;
	conn_opened(c, pcb);
	c->need_result = true;
	c->result = MOAT_CONN_OK;
	conn_tx_mark(c);
	return ERR_OK;
}

/**
 * connopen_accepted() - FLOW_ACCEPTED: a host client connected to a published port
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
int connopen_accepted(struct netstack *ns, const struct flow_connect *m)
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
	conn_attach(c, pcb);
	if (tcp_connect(pcb, &guest, c->gport, on_connected) != ERR_OK) {
		conn_abort(c);
		goto refuse;
	}
	conn_out_mark(c);
	return 0;
refuse:
	c->state = CS_DONE;
	c->need_result = true;
	c->result = MOAT_CONN_REFUSED;
	conn_tx_mark(c);
	return 0;
}

/**
 * connopen_refuse() - answer a pending flow's held SYN with RST
 * @c:	the flow (CS_PENDING; nothing is sent if its SYN is gone)
 *
 * Context: the proxy closed the flow before its CONNECT_RESULT.
 */
void connopen_refuse(struct conn *c)
{
	if (c->syn)
		rst_syn(c, c->syn, syn_l4_off(c));
}

/**
 * connopen_timer() - once a second: give up on held SYNs the proxy never
 * answered (ICMP unreachable to the guest), close idle listeners
 * @ns:	netstack
 */
void connopen_timer(struct netstack *ns)
{
	uint32_t now = sys_now();
	struct list_head *e, *next;

	for (e = conns.pend.next; e != &conns.pend; e = next) {
		struct conn *c = list_entry(e, struct conn, pend);

		next = e->next;
		if (now - c->born_ms <= ns->cfg.connect_timeout_ms + 5000u)
			continue;
		log_debug("flow %u: no connect result from the proxy", c->id);
		icmpgw_unreachable(ns, c->syn, c->v6);
		list_del(&c->pend);
		if (c->need_connect) {
			conn_free(c);
		} else {
			pbuf_free(c->syn);
			c->syn = NULL;
			conn_finish(c, true);
		}
	}
	for (uint32_t i = 0; i < conns.nlports;) {
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
}
