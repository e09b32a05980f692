/* SPDX-License-Identifier: MIT */
/*
 * conn.h - the TCP flow table, shared by conn.c (the relay: credits,
 * half-close, reaping) and connopen.c (how a flow opens: connect before
 * accept, the on-demand listeners, ingress connects to the guest). Private
 * to those two files and the netstack's tests; the rest of the netstack
 * sees only the conn_ and connopen_ functions in stack.h.
 */
#ifndef MOAT_CONN_H
#define MOAT_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/list.h"
#include "lwip/ip_addr.h"
#include "lwip/opt.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"

/* Chains in a receive queue: consecutive chains sum to more than 64 KiB. */
#define RXQ_MAX ((2 * TCP_WND) / 0xffff + 4)

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
 * One per process, defined in conn.c and shared with connopen.c only: the
 * two reach it directly rather than through struct netstack, which every
 * netstack file shares.
 */
struct conn_table {
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
};

extern struct conn_table conns;

/* The flow owes the proxy a message: conn_pump() sends it. */
static inline void conn_tx_mark(struct conn *c)
{
	if (!list_linked(&c->tx))
		list_add_tail(&conns.tx, &c->tx);
}

/* The flow was written to: one tcp_output() at the end of the batch. */
static inline void conn_out_mark(struct conn *c)
{
	if (!list_linked(&c->out))
		list_add_tail(&conns.out, &c->out);
}

struct conn *conn_alloc(void);
struct conn *conn_lookup(uint32_t id);
void conn_free(struct conn *c);
void conn_attach(struct conn *c, struct tcp_pcb *pcb);
void conn_opened(struct conn *c, struct tcp_pcb *pcb);
void conn_finish(struct conn *c, bool reset);
void conn_abort(struct conn *c);

/* connopen.c, for conn.c */
void connopen_refuse(struct conn *c);

#endif /* MOAT_CONN_H */
