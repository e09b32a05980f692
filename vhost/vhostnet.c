/* SPDX-License-Identifier: MIT */
/*
 * vhostnet.c - frames between the virtio-net queues and the frame rings
 *
 * Theory of Operation
 * -------------------
 * moat-vhost stands where the supervisor's guest port stands for the other
 * frontends: producer of g2s, consumer of s2g (docs/frontends.md). The
 * difference is the far side: guest memory, walked with vhost/vring.c.
 *
 * Transmit (queue 1 -> g2s). Each available chain is the driver's
 * virtio_net_hdr (hdr_len bytes: 12 with VERSION_1 or MRG_RXBUF, else 10)
 * followed by one frame, in any layout over the chain's buffers. The frame
 * is copied once, straight into a reserved g2s record; where the netstack
 * takes offloads the header's first 10 bytes (the layout of struct
 * moat_vnet_hdr) go in front of it as a MOAT_REC_FRAME_VNET record, and the
 * netstack checks them (netstack/frame.c). Without offloads a header that
 * asks for one is a counted drop (bad_offload): moat never offered it. A
 * full g2s puts the chain back (the avail index is rewound, nothing was
 * used) and transmit waits for the netstack's eventfd.
 *
 * Receive (s2g -> queue 0). A record is written into as many receive
 * chains as it needs with MRG_RXBUF (num_buffers in the header says how
 * many), or into one chain that holds it whole without. No chain: the
 * record stays in s2g (the avail index is rewound) until the driver kicks
 * with new buffers, so the netstack feels backpressure as with a full
 * socket. A segment or partial checksum the driver did not negotiate
 * (GUEST_TSO4/6, GUEST_CSUM) is finished in software (vhost/gso.c): cut
 * into MTU-sized frames with full checksums (rx_segmented); a piece that
 * finds no buffer is dropped (rx_no_buffers) - TCP sends it again.
 *
 * Hostile chains. vring_pop() refuses a chain outside guest memory, a
 * loop, or more than VRING_MAX_SEGS buffers: the chain is handed back as
 * used with length 0 (the driver frees it) and counted (vring_bad_chains).
 * An impossible avail index (-EIO) is a broken queue: the VMM is dropped.
 * A corrupt g2s or s2g is the netstack's fault, not the guest's: moat-vhost
 * exits, and the supervisor takes a child's exit as a violation.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "vhost/gso.h"
#include "vhost/vhost_int.h"

/* Receive chains one frame may take with MRG_RXBUF (64 KiB in 256-byte buffers). */
#define VHOSTNET_MAX_MERGE 256

/**
 * vhostnet_ready() - may queue @qi be used?
 * @v:	moat-vhost
 * @qi:	VHOST_RXQ or VHOST_TXQ
 *
 * Return: true once the queue is started and enabled and no drop is pending.
 */
bool vhostnet_ready(const struct vhost *v, int qi)
{
	return v->cfd >= 0 && !v->drop && v->q[qi].started && v->q[qi].enabled;
}

/* Signal the driver that queue @qi has used entries (unless it polls). */
static void notify(struct vhost *v, int qi)
{
	struct vhost_queue *q = &v->q[qi];
	uint64_t one = 1;

	if (q->call >= 0 && vring_wants_interrupt(&q->ring) &&
	    write(q->call, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("vhost-user: queue %d: call: %s", qi, strerror(errno));
}

/*
 * Copy @len bytes between @buf and the buffers @iov (@n of them), starting
 * @skip bytes into them: out of them (@to_iov false) or into them (true).
 */
static void iov_copy(const struct iovec *iov, unsigned n, size_t skip, uint8_t *buf, size_t len,
		     bool to_iov)
{
	for (unsigned i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len;
		uint8_t *at;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len)
			l = len;
		at = (uint8_t *)iov[i].iov_base + skip;
		memcpy(to_iov ? at : buf, to_iov ? buf : at, l);
		buf += l;
		len -= l;
		skip = 0;
	}
}

/* A corrupt frame ring means a compromised netstack: stop; the supervisor decides. */
static void __attribute__((noreturn)) ring_broken(const char *which)
{
	fatalx(1, "%s ring corrupt (the netstack published an impossible index); stopping", which);
}

/*
 * One transmit chain into g2s. Return: 1 if it was taken (used), 0 if it
 * was dropped (used too, counted), -ENOBUFS if g2s has no room (nothing
 * used; the caller rewinds the queue).
 */
static int tx_one(struct vhost *v, const struct vring_chain *c, uint64_t *bytes)
{
	uint8_t h[12] = { 0 };
	uint32_t vlen = v->offloads ? (uint32_t)sizeof(struct moat_vnet_hdr) : 0;
	size_t flen;
	void *p;
	int rc;

	if (c->out_len < v->hdr_len + 14) {
		vhost_count(&v->cnt->drops[MOAT_DROP_TOO_SHORT], 1);
		return 0;
	}
	flen = c->out_len - v->hdr_len;
	if (flen > (v->offloads ? MOAT_FRAME_MAX_GSO : v->max_frame)) {
		vhost_count(&v->cnt->drops[MOAT_DROP_TOO_LONG], 1);
		return 0;
	}
	iov_copy(c->out, c->n_out, 0, h, v->hdr_len, false);
	if (!vlen && (h[0] || h[1])) { /* flags or gso_type that moat never offered */
		vhost_count(&v->cnt->drops[MOAT_DROP_BAD_OFFLOAD], 1);
		return 0;
	}
	rc = ring_reserve(&v->g2s, vlen + (uint32_t)flen, &p);
	if (rc == -ENOBUFS && !v->g2s.corrupt)
		return -ENOBUFS;
	if (rc < 0)
		ring_broken("g2s");
	memcpy(p, h, vlen);
	iov_copy(c->out, c->n_out, v->hdr_len, (uint8_t *)p + vlen, flen, false);
	ring_commit(&v->g2s, vlen ? MOAT_REC_FRAME_VNET : MOAT_REC_FRAME, vlen + (uint32_t)flen);
	*bytes += flen;
	return 1;
}

/**
 * vhostnet_tx() - the driver's transmit queue into g2s, one batch
 * @v:	moat-vhost
 *
 * Return: true if more may be waiting (the batch was used up), false if
 * the queue is empty or transmit waits for room in g2s.
 */
bool vhostnet_tx(struct vhost *v)
{
	struct vhost_queue *q = &v->q[VHOST_TXQ];
	uint64_t frames = 0, bytes = 0;
	bool used = false, more = false;
	struct vring_chain c;

	if (!vhostnet_ready(v, VHOST_TXQ) || v->waiting_g2s)
		return false;
	for (int i = 0;; i++) {
		uint16_t save = q->ring.last_avail;
		int rc;

		if (i == VHOST_BATCH) {
			more = true;
			break;
		}
		rc = vring_pop(&q->ring, &v->mem, &c);
		if (rc == -EAGAIN)
			break;
		if (rc == -EIO) {
			log_warn("vhost-user: the transmit queue's avail index is impossible; "
				 "dropping the VMM");
			v->drop = true;
			break;
		}
		if (rc == -EBADMSG) {
			vhost_count(&v->cnt->vring_bad_chains, 1);
		} else {
			rc = tx_one(v, &c, &bytes);
			if (rc == -ENOBUFS) {
				q->ring.last_avail = save;
				if (ring_wait_space(&v->g2s, (uint32_t)(c.out_len - v->hdr_len) +
								     (v->offloads ? 10u : 0u)))
					continue; /* room appeared meanwhile */
				v->waiting_g2s = true;
				break;
			}
			frames += (uint64_t)rc;
		}
		vring_push(&q->ring, c.head, 0);
		used = true;
	}
	ring_flush(&v->g2s);
	if (frames) {
		vhost_count(&v->cnt->tx_frames, frames);
		vhost_count(&v->cnt->tx_bytes, bytes);
	}
	if (used)
		notify(v, VHOST_TXQ);
	return more;
}

struct rx_used {
	uint16_t head;
	uint32_t len;
};

/* Hand back @n popped receive chains, each with what was written into it. */
static void rx_push(struct vhost *v, const struct rx_used *u, unsigned n, bool zero)
{
	for (unsigned i = 0; i < n; i++)
		vring_push(&v->q[VHOST_RXQ].ring, u[i].head, zero ? 0 : u[i].len);
}

/*
 * Write the virtio header @h and @frame into receive chains. With @wait, a
 * lack of chains leaves the queue as it was (-EAGAIN: try again after a
 * kick); without, it drops the frame (counted, -EAGAIN too). Return: 1
 * delivered, 0 dropped (counted), -EAGAIN.
 */
static int rx_deliver(struct vhost *v, const struct moat_vnet_hdr *h, const uint8_t *frame,
		      size_t flen, bool wait)
{
	struct vring *r = &v->q[VHOST_RXQ].ring;
	bool merge = vhost_has(v, VIRTIO_NET_F_MRG_RXBUF);
	size_t total = v->hdr_len + flen, pos = 0;
	uint8_t hdr[12] = { 0 };
	struct rx_used u[VHOSTNET_MAX_MERGE];
	struct vring_chain first, next; /* the first chain holds num_buffers */
	unsigned n = 0;
	uint16_t save = r->last_avail;

	first.n_in = 0; /* vring_pop() fills it: total is never 0 */
	memcpy(hdr, h, sizeof(*h));
	if (!vhost_has(v, VIRTIO_NET_F_GUEST_CSUM))
		hdr[0] &= (uint8_t)~MOAT_VNET_F_DATA_VALID;
	while (pos < total) {
		/* cppcheck-suppress uninitvar ; vring_pop() fills the chain before any read */
		struct vring_chain *c = n ? &next : &first;
		size_t take, off = 0;
		int rc;

		if (n == VHOSTNET_MAX_MERGE || (n && !merge)) {
			/* No single chain holds it (or too many would): the frame is lost. */
			rx_push(v, u, n, true);
			vhost_count(&v->cnt->rx_no_buffers, 1);
			return 0;
		}
		rc = vring_pop(r, &v->mem, c);
		if (rc == -EAGAIN) {
			r->last_avail = save;
			if (!wait)
				vhost_count(&v->cnt->rx_no_buffers, 1);
			return -EAGAIN;
		}
		if (rc == -EIO) {
			log_warn("vhost-user: the receive queue's avail index is impossible; "
				 "dropping the VMM");
			r->last_avail = save;
			v->drop = true;
			return -EAGAIN;
		}
		if (rc == -EBADMSG || !c->in_len) {
			/* A bad buffer: it and those taken for this frame go back empty. */
			u[n].head = c->head;
			rx_push(v, u, n + 1, true);
			vhost_count(&v->cnt->vring_bad_chains, 1);
			return 0;
		}
		take = total - pos < c->in_len ? total - pos : c->in_len;
		if (pos < v->hdr_len) { /* the header; num_buffers is filled in at the end */
			off = v->hdr_len - pos < take ? v->hdr_len - pos : take;
			iov_copy(c->in, c->n_in, 0, hdr + pos, off, true);
		}
		if (take > off)
			iov_copy(c->in, c->n_in, off, (uint8_t *)frame + (pos + off - v->hdr_len),
				 take - off, true);
		u[n].head = c->head;
		u[n].len = (uint32_t)take;
		n++;
		pos += take;
	}
	if (v->hdr_len == 12) {
		uint8_t nb[2] = { (uint8_t)(merge ? n : 1), (uint8_t)((merge ? n : 1) >> 8) };

		iov_copy(first.in, first.n_in, 10, nb, 2, true);
	}
	rx_push(v, u, n, false);
	return 1;
}

static int rx_piece(void *arg, const uint8_t *frame, size_t len)
{
	static const struct moat_vnet_hdr none;
	struct vhost *v = arg;
	int rc = rx_deliver(v, &none, frame, len, false);

	if (rc == 1) {
		vhost_count(&v->cnt->rx_segmented, 1);
		vhost_count(&v->cnt->rx_frames, 1);
		vhost_count(&v->cnt->rx_bytes, len);
	}
	return rc < 0 ? rc : 0;
}

/* Does the driver lack what the record asks of it (TSO, partial checksums)? */
static bool needs_software(const struct vhost *v, const struct moat_vnet_hdr *h)
{
	/* moat never offers GUEST_ECN or UFO: those (and unknown types) go the software
	 * way, which cuts ECN segments and refuses the rest. */
	if (h->gso_type == MOAT_VNET_GSO_TCPV4 && !vhost_has(v, VIRTIO_NET_F_GUEST_TSO4))
		return true;
	if (h->gso_type == MOAT_VNET_GSO_TCPV6 && !vhost_has(v, VIRTIO_NET_F_GUEST_TSO6))
		return true;
	if (h->gso_type != MOAT_VNET_GSO_NONE && h->gso_type != MOAT_VNET_GSO_TCPV4 &&
	    h->gso_type != MOAT_VNET_GSO_TCPV6)
		return true;
	return (h->flags & MOAT_VNET_F_NEEDS_CSUM) && !vhost_has(v, VIRTIO_NET_F_GUEST_CSUM);
}

/* The next s2g frame (ring_next_frame()); a corrupt s2g stops us. */
static int s2g_next(struct vhost *v, const uint8_t **p, bool *vnet)
{
	int n = ring_next_frame(&v->s2g, v->max_frame, v->offloads != 0, p, vnet);

	if (n == -EBADMSG)
		ring_broken("s2g");
	return n;
}

/**
 * vhostnet_discard() - empty s2g while the guest has no receive queue
 * @v:	moat-vhost
 *
 * A NIC whose driver is not running drops what arrives, so a driver that
 * starts later does not get stale frames.
 */
void vhostnet_discard(struct vhost *v)
{
	const uint8_t *p;
	bool vnet;

	while (s2g_next(v, &p, &vnet) > 0)
		ring_consume(&v->s2g);
	ring_release(&v->s2g);
}

/**
 * vhostnet_rx() - s2g into the driver's receive queue, one batch
 * @v:	moat-vhost
 *
 * Return: true if more may be waiting (the batch was used up), false if
 * s2g is empty (the netstack wakes us) or the queue has no buffers (the
 * driver's kick does).
 */
bool vhostnet_rx(struct vhost *v)
{
	uint64_t frames = 0, bytes = 0;
	bool more = false, used = false;

	if (!vhostnet_ready(v, VHOST_RXQ)) {
		vhostnet_discard(v);
		return false;
	}
	for (int i = 0;; i++) {
		struct moat_vnet_hdr h = { 0 };
		const uint8_t *p;
		bool vnet;
		int n, rc;

		if (i == VHOST_BATCH) {
			more = true;
			break;
		}
		n = s2g_next(v, &p, &vnet);
		if (n < 0)
			break;
		if (vnet) {
			memcpy(&h, p, sizeof(h));
			p += sizeof(h);
			n -= (int)sizeof(h);
		}
		if (needs_software(v, &h)) {
			/* A private copy first: the netstack could rewrite the record while
			 * it is parsed. */
			memcpy(v->rec, p, (size_t)n);
			rc = gso_segment(v->rec, (size_t)n, &h, v->scratch, sizeof(v->scratch),
					 rx_piece, v);
			if (rc == -EINVAL || rc == -ENOSPC)
				vhost_count(&v->cnt->drops[MOAT_DROP_BAD_OFFLOAD], 1);
			used = true;
			rc = 0; /* rx_piece() counted what it delivered */
		} else {
			rc = rx_deliver(v, &h, p, (size_t)n, true);
			if (rc == -EAGAIN)
				break; /* the record waits for buffers (or the VMM is dropped) */
			used = true;
		}
		ring_consume(&v->s2g);
		if (rc == 1) {
			frames++;
			bytes += (uint64_t)n;
		}
	}
	ring_release(&v->s2g);
	if (frames) {
		vhost_count(&v->cnt->rx_frames, frames);
		vhost_count(&v->cnt->rx_bytes, bytes);
	}
	if (used)
		notify(v, VHOST_RXQ);
	return more;
}
