/* SPDX-License-Identifier: MIT */
/*
 * tcpdns.c - DNS over TCP: a guest TCP connection whose far end is the DNS
 * forwarder instead of a socket
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy. A TCP connection to port 53 that dnsfwd.c takes
 * (the DNS address, or any address under interception: docs/policy.md) is
 * a struct tcp_flow with @dns set and no socket: its guest bytes go to
 * dnsfwd_stream_input() instead of a write, and dnsfwd.c's answers come
 * back here. Each answer (with its two-byte length) is copied into a buffer
 * of the dns_answer pool and queued on the flow (at most TCPDNS_QUEUE_MAX,
 * TCPDNS_ANSWERS in all); the queue drains into the p2s ring as the
 * netstack's credit allows, exactly as a socket's bytes would
 * (tcpflow.c, shm/flow.h). A guest that does not read its answers fills its
 * queue and is reset. When the stream is done (the guest shut its side and
 * every answer is queued) the flow sends FIN and CLOSE once the queue is
 * empty.
 *
 * The other direction's credit is the stream's to give: dnsfwd.c credits
 * back what it consumed (tcpdns_credit()), and tcpflow_flush() sends it.
 */
#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"
#include "proxy/tcpflow.h"

#define TCPDNS_ANSWERS	    256 /* answers waiting, all streams together */
/* answers queued toward a guest that does not read (dnsfwd.c lets a stream
 * have 64 queries unanswered) */
#define TCPDNS_QUEUE_MAX    64
#define TCPDNS_ANSWER_BYTES (2 + 65535)

/* A DNS answer waiting for the guest's window (MOAT_POOL_DNS_ANSWER). */
struct tcpdns_answer {
	struct list_head node;
	uint32_t len, off;
	uint8_t data[TCPDNS_ANSWER_BYTES];
};

/* Queue a copy of @data on @f's outq (bounded). Return: 0 or -ENOBUFS. */
static int answer_push(struct tcp_flow *f, const void *data, uint32_t len)
{
	struct tcpdns_answer *b;

	if (f->outq_n >= TCPDNS_QUEUE_MAX || len > sizeof(b->data))
		return -ENOBUFS;
	b = pool_get(&f->px->pools[MOAT_POOL_DNS_ANSWER]);
	if (!b)
		return -ENOBUFS;
	b->len = len;
	b->off = 0;
	memcpy(b->data, data, len);
	/*
	 * Freed when sent, or by free_buffers(). gcc 12's -fanalyzer reports
	 * a leak of b here: a false positive, it loses the pointer stored
	 * through head->prev->next in list_add_tail().
	 */
	list_add_tail(&f->outq, &b->node);
	f->outq_n++;
	return 0;
}

/**
 * tcpdns_output() - queue bytes toward the guest on a DNS stream and
 * send what the credit allows
 * @px:		proxy
 * @f:		the DNS flow
 * @data:	bytes (NULL: only send what is queued)
 * @len:	their length
 *
 * A guest that does not read its answers may have at most TCPDNS_QUEUE_MAX
 * of them queued. When that bound or the memory runs out the flow is reset,
 * but not here: the caller is inside its stream (dnsfwd_stream_input()
 * parsing further queries), and closing the flow frees the stream. The
 * reset happens in tcpflow_flush(), later in the same loop iteration, which
 * then frees the stream through dnsfwd_stream_close(); until then the
 * stream and the flow stay valid and further output is refused.
 *
 * Return: 0, -ENOBUFS (queue full), -ENOMEM, or -EPIPE (the flow is not
 * open or is being reset).
 */
int tcpdns_output(struct proxy *px, struct tcp_flow *f, const void *data, uint32_t len)
{
	if (f->st != ST_OPEN || f->reset_pending)
		return -EPIPE;
	if (data && len) {
		int rc = answer_push(f, data, len);

		if (rc < 0) {
			log_debug("tcp flow %u: DNS answer not queued (%s): reset", f->id,
				  strerror(-rc));
			f->reset_pending = true;
			tcpflow_mark_dirty(f);
			return rc;
		}
	}
	while (!list_empty(&f->outq) && f->credit) {
		struct tcpdns_answer *b = list_entry(f->outq.next, struct tcpdns_answer, node);
		uint64_t n = b->len - b->off;
		struct flow_data d = { .id = f->id };

		uint32_t got;
		uint8_t *p;

		if (n > f->credit)
			n = f->credit;
		if (n > FLOW_DATA_MAX)
			n = FLOW_DATA_MAX;
		/* straight into the ring, never into the backlog: DATA waits with us */
		p = relay_reserve(px, sizeof(d), (uint32_t)n, &got);
		if (!p) {
			relay_wait(px, &f->waiter);
			break;
		}
		memcpy(p, &d, sizeof(d));
		memcpy(p + sizeof(d), b->data + b->off, got);
		relay_commit(px, FLOW_DATA, (uint32_t)sizeof(d) + got);
		f->credit -= got;
		b->off += got;
		if (b->off == b->len) {
			list_del(&b->node);
			pool_put(&px->pools[MOAT_POOL_DNS_ANSWER], b);
			f->outq_n--;
		}
	}
	if (f->finishing && list_empty(&f->outq)) {
		struct flow_shut sh = { .id = f->id };

		/* Safe to close here: tcpdns_finish() detached the stream. */
		relay_send(px, FLOW_SHUT_WR, &sh, sizeof(sh));
		tcpflow_kill(px, f, true, false);
	}
	return 0;
}

/**
 * tcpdns_credit() - a DNS stream consumed @bytes of the guest's data
 * @px:		proxy
 * @f:		the DNS flow
 * @bytes:	bytes to credit back to the netstack
 */
void tcpdns_credit(struct proxy *px, struct tcp_flow *f, uint32_t bytes)
{
	(void)px;
	if (f->st != ST_OPEN || f->reset_pending)
		return;
	f->owed += bytes;
	tcpflow_mark_dirty(f);
}

/**
 * tcpdns_finish() - a DNS stream is done (the guest shut its side and
 * every answer is queued): FIN and CLOSE once the answers are out
 * @px:	proxy
 * @f:	the DNS flow; the stream must not be used by tcpflow.c afterwards
 */
void tcpdns_finish(struct proxy *px, struct tcp_flow *f)
{
	f->ds = NULL;
	f->finishing = true;
	(void)tcpdns_output(px, f, NULL, 0);
}

/**
 * tcpdns_drop() - free the answers still queued on a flow that closes
 * @f:	the flow (any: a flow that is no DNS stream has none)
 */
void tcpdns_drop(struct tcp_flow *f)
{
	while (!list_empty(&f->outq)) {
		struct tcpdns_answer *b = list_entry(f->outq.next, struct tcpdns_answer, node);

		list_del(&b->node);
		pool_put(&f->px->pools[MOAT_POOL_DNS_ANSWER], b);
	}
	f->outq_n = 0;
}

/**
 * tcpdns_init() - the answer pool
 * @px:	proxy
 *
 * Return: 0 or -ENOMEM.
 */
int tcpdns_init(struct proxy *px)
{
	return pool_init(&px->pools[MOAT_POOL_DNS_ANSWER], "dns_answer",
			 sizeof(struct tcpdns_answer), TCPDNS_ANSWERS);
}
