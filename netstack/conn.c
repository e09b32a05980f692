/* SPDX-License-Identifier: MIT */
/*
 * conn.c - TCP flows once open: the table, credits, half-close, reaping
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. Every guest TCP connection is one `struct conn` in
 * a table of the header's max_tcp_connections entries (allocated before
 * confinement), named toward the proxy by a flow id: slot + 1 in the low
 * bits, a per-slot generation above, bit 31 clear (egress ids). How a flow
 * comes to be (the held SYN, connect before accept, the listeners, ingress
 * connects to the guest) is connopen.c's; both share conn.h's table.
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
 * table).
 *
 * Delayed ACKs. lwIP ACKs every second segment at once and holds the
 * ACK of a lone one for its fast timer (up to 250 ms). A guest that
 * writes twice without TCP_NODELAY sends its second write only once the
 * first is ACKed (Nagle), and a server that waits for the whole request
 * answers nothing meanwhile: each such request waited a quarter second.
 * So a segment whose ACK lwIP holds arms a short timer (CONN_ACK_DELAY_MS,
 * one for all flows); when it fires, every ACK still held goes out. An
 * answer that comes before (a request-response exchange) still carries
 * the ACK with it, and bulk transfers, ACKed every second segment, never
 * wait for the timer.
 *
 * Messages for unknown or dead ids are ignored (they may cross a CLOSE);
 * impossible ones (too much data or credit) are violations (flows.c).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "common/list.h"
#include "common/log.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "netstack/conn.h"
#include "netstack/stack.h"

_Static_assert(TCP_WND <= FLOW_TCP_WINDOW_MAX,
	       "the proxy sizes its write pool from FLOW_TCP_WINDOW_MAX");

#define HALF_CLOSED_IDLE_S 300u

struct conn_table conns;

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

/**
 * conn_alloc() - take a free slot, with the next generation's id
 *
 * Return: the zeroed flow (state CS_FREE, born now), or NULL if the table
 * is full.
 */
struct conn *conn_alloc(void)
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

/**
 * conn_lookup() - the live flow named @id by the proxy
 * @id:	egress (slot and generation) or ingress (the proxy's) id
 *
 * Return: the flow, or NULL if no live flow has that id.
 */
struct conn *conn_lookup(uint32_t id)
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

/**
 * conn_free() - give the slot back: the held SYN and queued data are freed
 * and the flow leaves every list
 * @c:	the flow (its pcb already detached or gone)
 */
void conn_free(struct conn *c)
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

/**
 * conn_finish() - the flow is over for lwIP: tell the proxy
 * @c:		the flow (pcb detached or gone)
 * @reset:	CLOSE says reset=1 and queued data is dropped; otherwise the
 *		CLOSE follows the queued data
 */
void conn_finish(struct conn *c, bool reset)
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
	conn_tx_mark(c);
}

/**
 * conn_abort() - detach and abort the flow's pcb (RST to the guest), if any
 * @c:	the flow
 */
void conn_abort(struct conn *c)
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
		conn_finish(c, false);
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
		conn_tx_mark(c);
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

#define CONN_ACK_DELAY_MS 5 /* a held ACK goes out within this (Linux: 40 ms at least) */

static u32_t conn_ack_due; /* when the armed timer fires (0: none) */

/* The ACK timer: send every ACK lwIP still holds. */
static void conn_ack_timer(void *arg)
{
	(void)arg;
	conn_ack_due = 0;
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next) {
		if (pcb->flags & TF_ACK_DELAY) {
			tcp_ack_now(pcb);
			tcp_output(pcb);
		}
	}
}

/* lwIP holds @pcb's ACK (it got one segment): make sure it waits no longer than the timer. */
static void conn_ack_soon(struct tcp_pcb *pcb)
{
	u32_t now = sys_now();

	/* Armed already, unless it is long overdue (sys_timeout() found no memory). */
	if (!(pcb->flags & TF_ACK_DELAY) ||
	    (conn_ack_due && (s32_t)(now - conn_ack_due) < CONN_ACK_DELAY_MS))
		return;
	conn_ack_due = now + CONN_ACK_DELAY_MS;
	sys_timeout(CONN_ACK_DELAY_MS, conn_ack_timer, NULL);
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
			conn_tx_mark(c);
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
	conn_ack_soon(pcb);
	conn_tx_mark(c);
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
		conn_tx_mark(c);
		return;
	}
	if (c->state == CS_HANDSHAKE || c->state == CS_OPEN)
		conn_finish(c, err != ERR_CLSD);
}

/*
 * With TSO toward the guest lwIP writes segments of this many bytes, a
 * multiple of the guest's MSS @mss (so that the pieces the guest's side cuts
 * are all full) that fits, with its headers, in one 64 KiB arena block.
 */
static u16_t segment_mss(u16_t mss)
{
	uint32_t big;

	if (mss == 0)
		return mss;
	big = (65536u - 512u) / mss * mss;
	if (big > TCP_MSS)
		big = TCP_MSS / mss * mss;
	return big > mss ? (u16_t)big : mss; /* an MSS near 64 KiB stays as it is */
}

/**
 * conn_attach() - bind lwIP's @pcb to the flow: its callbacks reach @c
 * @c:		the flow
 * @pcb:	the pcb lwIP made for it (accepted or connecting)
 */
void conn_attach(struct conn *c, struct tcp_pcb *pcb)
{
	c->pcb = pcb;
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_err);
}

/**
 * conn_opened() - the handshake completed (either direction): the flow is
 * open, counted, and the proxy gets credit or its deferred SHUT_WR applied
 * @c:		the flow (CS_HANDSHAKE)
 * @pcb:	its pcb
 */
void conn_opened(struct conn *c, struct tcp_pcb *pcb)
{
	struct netstack *ns = conns.ns;

	c->state = CS_OPEN;
	c->last_ms = sys_now();
	tcp_nagle_disable(pcb);
	if (ns->cfg.offloads & (c->v6 ? MOAT_OFFLOAD_TSO6 : MOAT_OFFLOAD_TSO4))
		pcb->mss = segment_mss(pcb->mss);
	cnt_add(&ns->cnt->tcp_flows_opened, 1);
	conns.active++;
	cnt_set(&ns->cnt->tcp_flows_active, conns.active);
	if (c->proxy_fin && !c->shut_applied) {
		c->shut_applied = true;
		tcp_shutdown(pcb, 0, 1);
		conn_out_mark(c);
	} else {
		give_credit(c);
	}
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
	conn_out_mark(c);
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
		conn_out_mark(c);
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
		connopen_refuse(c);
		break;
	case CS_HANDSHAKE:
	case CS_OPEN:
		count_closed(ns, c);
		if (m->reset)
			conn_abort(c);
		else
			close_pcb(c);
		break;
	default:
		break;
	}
	conn_free(c);
}

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
		conn_abort(c);
		n++;
	}
	return n;
}

/* Send what the flow owes the proxy, in order; false if s2p is full. */
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
 * conn_timer() - once a second: reset idle flows, refresh the pcb counters
 * @ns:	netstack
 *
 * Context: after connopen_timer(), which closes idle listeners.
 */
void conn_timer(struct netstack *ns)
{
	uint32_t now = sys_now();

	for (uint32_t i = 0; i < conns.n; i++) {
		struct conn *c = &conns.tab[i];
		uint32_t idle_s = ns->cfg.tcp_idle_s;

		if (c->state != CS_HANDSHAKE && c->state != CS_OPEN)
			continue;
		if ((c->guest_fin || c->proxy_fin) && idle_s > HALF_CLOSED_IDLE_S)
			idle_s = HALF_CLOSED_IDLE_S;
		if (now - c->last_ms > idle_s * 1000u) {
			log_debug("flow %u: idle for %us, reset", c->id, idle_s);
			conn_abort(c);
			conn_finish(c, true);
		}
	}
	cnt_set(&ns->cnt->pcbs_in_use,
		count_pcbs(tcp_active_pcbs) + count_pcbs(tcp_tw_pcbs) + conns.nlports);
}
