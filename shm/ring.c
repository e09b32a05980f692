/* SPDX-License-Identifier: MIT */
/*
 * ring.c - SPSC record rings with batching and wake suppression
 *
 * Theory of Operation
 * -------------------
 * Runs in every moat process (and may be copied into a VMM through
 * moat_shm.h's protocol). A producer reserves and commits records against a
 * private head and makes them visible all at once with ring_flush(), which
 * is also the only place it may wake the consumer: one eventfd write per
 * batch, and none at all while the consumer is awake. A consumer pops
 * records against a private tail and hands the space back with
 * ring_release(), which wakes a producer that said it waits for space.
 *
 * Trust: the peer process may be compromised and may write anything into
 * the control block or the data area at any time. The consumer therefore
 * checks every published head against its own tail and the capacity it
 * took from the validated header, checks each record's length against what
 * was published and what is contiguous, and copies the record out (or, with
 * ring_peek(), hands out a pointer only to code that does not parse the
 * bytes). A record's header is read and checked once: ring_peek() keeps
 * the validated size for ring_consume(). The producer checks the tail the
 * same way (ahead of its head, or more than a capacity behind it, is
 * impossible). A failed check sets ->corrupt, which stays set: every call
 * then says -EBADMSG, distinct from -ENOBUFS (full, wait) and -EAGAIN
 * (empty), and callers report a MOAT_VIOL_RING_CORRUPT violation and stop
 * using the ring.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "shm/ring.h"

#define HDR_SIZE ((uint64_t)sizeof(struct moat_rec_hdr))

static inline uint64_t rec_size(uint32_t len)
{
	return (HDR_SIZE + len + (MOAT_REC_ALIGN - 1)) & ~(uint64_t)(MOAT_REC_ALIGN - 1);
}

static inline uint64_t load_acquire(uint64_t *p)
{
	return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}

static inline void store_release(uint64_t *p, uint64_t v)
{
	atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}

static void wake(int efd, uint64_t *wakes)
{
	uint64_t one = 1;

	if (efd < 0)
		return;
	/* EAGAIN means the counter is saturated: the peer is awake anyway. */
	if (write(efd, &one, sizeof(one)) < 0)
		return;
	if (wakes)
		atomic_fetch_add_explicit((_Atomic uint64_t *)wakes, 1, memory_order_relaxed);
}

/**
 * ring_attach() - set up a process-local view of a ring part
 * @r:		view to fill
 * @part:	start of the ring part (control block), mapped read-write
 * @cap:	data capacity in bytes, a power of two, from the validated header
 * @cons_efd:	eventfd the consumer sleeps on (-1: none)
 * @prod_efd:	eventfd the producer sleeps on when waiting for space (-1: none)
 * @wakes:	counter to bump on every eventfd write, or NULL
 *
 * The local head and tail start from the shared values, so a view can be
 * attached after the ring was used (the region is zeroed at creation).
 */
void ring_attach(struct ring *r, void *part, uint64_t cap, int cons_efd, int prod_efd,
		 uint64_t *wakes)
{
	memset(r, 0, sizeof(*r));
	r->ctl = part;
	r->data = (uint8_t *)part + MOAT_RING_DATA_OFF;
	r->cap = cap;
	r->mask = cap - 1;
	r->head = load_acquire(&r->ctl->head);
	r->tail = load_acquire(&r->ctl->tail);
	r->cons_efd = cons_efd;
	r->prod_efd = prod_efd;
	r->wakes = wakes;
}

/**
 * ring_free_bytes() - space the producer may still fill
 * @r:	producer view
 *
 * Return: free bytes; 0 and ->corrupt set if the consumer published a tail
 * that is ahead of our head or more than a capacity behind it.
 */
uint64_t ring_free_bytes(struct ring *r)
{
	uint64_t tail = load_acquire(&r->ctl->tail);
	uint64_t used = r->head - tail;

	if (used > r->cap) {
		r->corrupt = true;
		return 0;
	}
	return r->cap - used;
}

/* Does a record of @len payload bytes fit now, counting a wrap if needed? */
static bool room_for(struct ring *r, uint32_t len)
{
	uint64_t need = rec_size(len), contig = r->cap - (r->head & r->mask);
	uint64_t avail = ring_free_bytes(r);

	return need > contig ? avail >= contig + need : avail >= need;
}

/**
 * ring_reserve() - reserve room for one record of @len payload bytes
 * @r:		producer view
 * @len:	payload length, at most RING_MAX_RECORD(cap)
 * @payload:	set to where the payload is to be written
 *
 * Writes a wrap record first if the record would straddle the end. The
 * record becomes visible only after ring_commit() and ring_flush().
 *
 * Return: 0, -EMSGSIZE if @len is too big, -ENOBUFS if the ring is full,
 * -EBADMSG if the ring is corrupt.
 */
int ring_reserve(struct ring *r, uint32_t len, void **payload)
{
	uint64_t need, pos, contig, avail;

	if (r->corrupt)
		return -EBADMSG;
	if (len > RING_MAX_RECORD(r->cap))
		return -EMSGSIZE;
	need = rec_size(len);
	pos = r->head & r->mask;
	contig = r->cap - pos;
	avail = ring_free_bytes(r);
	if (r->corrupt)
		return -EBADMSG;
	if (need > contig) {
		if (avail < contig + need)
			return -ENOBUFS;
		if (contig >= HDR_SIZE) {
			struct moat_rec_hdr w = { .len = 0, .type = MOAT_REC_WRAP };

			memcpy(r->data + pos, &w, sizeof(w));
		}
		r->head += contig;
		pos = 0;
	} else if (avail < need) {
		return -ENOBUFS;
	}
	*payload = r->data + pos + HDR_SIZE;
	return 0;
}

/**
 * ring_commit() - finish the record reserved by the last ring_reserve()
 * @r:		producer view
 * @type:	record type (not MOAT_REC_WRAP)
 * @len:	payload length, at most what was reserved
 */
void ring_commit(struct ring *r, uint32_t type, uint32_t len)
{
	struct moat_rec_hdr h = { .len = len, .type = type };

	memcpy(r->data + (r->head & r->mask), &h, sizeof(h));
	r->head += rec_size(len);
}

/**
 * ring_pushv() - copy one record from an iovec into the ring
 * @r:		producer view
 * @type:	record type
 * @iov:	payload pieces
 * @iovcnt:	number of pieces
 *
 * Return: 0 or a ring_reserve() error.
 */
int ring_pushv(struct ring *r, uint32_t type, const struct iovec *iov, int iovcnt)
{
	uint64_t total = 0;
	uint8_t *dst;
	void *p;
	int i, rc;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > UINT32_MAX)
		return -EMSGSIZE;
	rc = ring_reserve(r, (uint32_t)total, &p);
	if (rc)
		return rc;
	dst = p;
	for (i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
	ring_commit(r, type, (uint32_t)total);
	return 0;
}

/**
 * ring_push() - copy one record into the ring
 * @r:		producer view
 * @type:	record type
 * @buf:	payload
 * @len:	payload length
 *
 * Return: 0 or a ring_reserve() error.
 */
int ring_push(struct ring *r, uint32_t type, const void *buf, uint32_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return ring_pushv(r, type, &iov, 1);
}

/*
 * Publish our side's counter (head or tail) and wake the other side if it
 * said it sleeps. The full fence orders the counter store before the load
 * of the flag and pairs with the fence in ring_prepare_sleep() /
 * ring_wait_space(): either the sleeper sees the new counter, or we see its
 * flag.
 */
static void publish(struct ring *r, uint64_t *counter, uint64_t value, uint32_t *waiting, int efd)
{
	if (value == r->pub)
		return;
	store_release(counter, value);
	r->pub = value;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit((_Atomic uint32_t *)waiting, memory_order_relaxed) &&
	    atomic_exchange_explicit((_Atomic uint32_t *)waiting, 0, memory_order_relaxed))
		wake(efd, r->wakes);
}

/**
 * ring_flush() - publish everything committed and wake a sleeping consumer
 * @r:	producer view
 */
void ring_flush(struct ring *r)
{
	publish(r, &r->ctl->head, r->head, &r->ctl->cons_waiting, r->cons_efd);
}

/**
 * ring_wait_space() - announce that the producer will sleep until @len fits
 * @r:		producer view
 * @len:	payload length wanted
 *
 * Return: true if the producer must not sleep: the record fits now, or the
 * ring is corrupt (->corrupt is set; the next ring_reserve() says -EBADMSG,
 * so a caller that retries cannot loop on a corrupt ring); false if the
 * producer may sleep on its eventfd: the consumer will write it after
 * releasing space.
 */
bool ring_wait_space(struct ring *r, uint32_t len)
{
	atomic_store_explicit((_Atomic uint32_t *)&r->ctl->prod_waiting, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (room_for(r, len) || r->corrupt) {
		atomic_store_explicit((_Atomic uint32_t *)&r->ctl->prod_waiting, 0,
				      memory_order_relaxed);
		return true;
	}
	return false;
}

/* Validate and locate the next record; returns 1 with pos and h set, 0 if empty, <0 corrupt. */
static int next_record(struct ring *r, uint64_t *pos, struct moat_rec_hdr *h)
{
	for (;;) {
		uint64_t head = load_acquire(&r->ctl->head);
		uint64_t avail = head - r->tail;
		uint64_t p, contig;

		if (avail > r->cap) {
			r->corrupt = true;
			return -EBADMSG;
		}
		if (avail == 0)
			return 0;
		p = r->tail & r->mask;
		contig = r->cap - p;
		if (contig < HDR_SIZE) {
			/* Too little room for a header: implicit wrap. */
			if (avail < contig) {
				r->corrupt = true;
				return -EBADMSG;
			}
			r->tail += contig;
			continue;
		}
		if (avail < HDR_SIZE) {
			r->corrupt = true;
			return -EBADMSG;
		}
		memcpy(h, r->data + p, sizeof(*h));
		if (h->type == MOAT_REC_WRAP) {
			if (avail < contig) {
				r->corrupt = true;
				return -EBADMSG;
			}
			r->tail += contig;
			continue;
		}
		if (h->len > RING_MAX_RECORD(r->cap) || rec_size(h->len) > contig ||
		    rec_size(h->len) > avail) {
			r->corrupt = true;
			return -EBADMSG;
		}
		*pos = p;
		return 1;
	}
}

/* The next record for a consumer: 1, -EAGAIN if empty, -EBADMSG if corrupt. */
static int consumer_next(struct ring *r, uint64_t *pos, struct moat_rec_hdr *h)
{
	int rc;

	r->peeked = 0;
	if (r->corrupt)
		return -EBADMSG;
	rc = next_record(r, pos, h);
	if (rc <= 0)
		return rc ? rc : -EAGAIN;
	return 1;
}

/**
 * ring_pop() - copy the next record out of the ring
 * @r:		consumer view
 * @type:	set to the record's type
 * @buf:	where the payload is copied
 * @bufsize:	size of @buf
 *
 * The space is handed back to the producer only by ring_release(), so a
 * consumer may pop a batch and release once.
 *
 * Return: payload length (>= 0), -EAGAIN if empty, -EBADMSG if the ring is
 * corrupt (sticky), -EMSGSIZE if the record is larger than @bufsize (the
 * record is skipped; the caller decides whether that is a violation).
 */
int ring_pop(struct ring *r, uint32_t *type, void *buf, uint32_t bufsize)
{
	struct moat_rec_hdr h;
	uint64_t pos;
	int rc = consumer_next(r, &pos, &h);

	if (rc < 0)
		return rc;
	r->tail += rec_size(h.len);
	if (h.len > bufsize)
		return -EMSGSIZE;
	memcpy(buf, r->data + pos + HDR_SIZE, h.len);
	*type = h.type;
	return (int)h.len;
}

/**
 * ring_peek() - look at the next record in place, without copying
 * @r:		consumer view
 * @type:	set to the record's type
 * @payload:	set to the payload inside the ring
 *
 * Only for consumers that do not parse the bytes (the guest port writing a
 * frame to a tap): the peer may change them while we look. The length is
 * validated once, here, and remembered: ring_consume() steps over exactly
 * what was validated. Follow with ring_consume().
 *
 * Return: payload length, -EAGAIN if empty, -EBADMSG if corrupt.
 */
int ring_peek(struct ring *r, uint32_t *type, const uint8_t **payload)
{
	struct moat_rec_hdr h;
	uint64_t pos;
	int rc = consumer_next(r, &pos, &h);

	if (rc < 0)
		return rc;
	*type = h.type;
	*payload = r->data + pos + HDR_SIZE;
	r->peeked = rec_size(h.len);
	return (int)h.len;
}

/**
 * ring_consume() - step over the record last returned by ring_peek()
 * @r:	consumer view
 *
 * Moves the tail by the size ring_peek() validated, never by what the
 * header says now: the peer may rewrite it between the peek and here, and
 * reading it again would let it move our tail anywhere (a double fetch).
 * Without a successful peek since the last consume or pop this does
 * nothing.
 */
void ring_consume(struct ring *r)
{
	if (r->corrupt || !r->peeked)
		return;
	r->tail += r->peeked;
	r->peeked = 0;
}

/**
 * ring_release() - hand consumed space back and wake a waiting producer
 * @r:	consumer view
 */
void ring_release(struct ring *r)
{
	publish(r, &r->ctl->tail, r->tail, &r->ctl->prod_waiting, r->prod_efd);
}

/**
 * ring_prepare_sleep() - announce that the consumer is going to sleep
 * @r:	consumer view
 *
 * Return: true if the ring is still empty and the consumer may sleep on its
 * eventfd (a producer publishing from now on will write it); false if
 * records arrived meanwhile (the flag is withdrawn).
 */
bool ring_prepare_sleep(struct ring *r)
{
	atomic_store_explicit((_Atomic uint32_t *)&r->ctl->cons_waiting, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (load_acquire(&r->ctl->head) != r->tail) {
		ring_cancel_sleep(r);
		return false;
	}
	return true;
}

/**
 * ring_cancel_sleep() - withdraw the flag set by ring_prepare_sleep()
 * @r:	consumer view
 */
void ring_cancel_sleep(struct ring *r)
{
	atomic_store_explicit((_Atomic uint32_t *)&r->ctl->cons_waiting, 0, memory_order_relaxed);
}

/**
 * ring_used_bytes() - bytes published but not yet released, for metrics
 * @ctl:	ring control block
 * @cap:	trusted capacity
 *
 * Return: used bytes, clamped to @cap (the value is only displayed).
 */
uint64_t ring_used_bytes(const struct moat_ring_ctl *ctl, uint64_t cap)
{
	uint64_t head = atomic_load_explicit((_Atomic uint64_t *)&ctl->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit((_Atomic uint64_t *)&ctl->tail, memory_order_relaxed);
	uint64_t used = head - tail;

	return used > cap ? cap : used;
}

/**
 * ring_next_frame() - the next record of a frame ring that is a frame to pass on
 * @r:		consumer view of s2g
 * @max_frame:	the largest plain frame (MTU + 14)
 * @vnet_ok:	MOAT_REC_FRAME_VNET records are taken (the port negotiated offloads)
 * @frame:	set to the record inside the ring (not copied: the caller only hands
 *		the bytes on, it does not parse them)
 * @vnet:	set to true for a MOAT_REC_FRAME_VNET record (struct moat_vnet_hdr
 *		first), false for a plain frame
 *
 * Records that are not frames of 14..@max_frame bytes, or (with @vnet_ok)
 * vnet records of a header and 14..MOAT_FRAME_MAX_GSO bytes, are stepped
 * over: the netstack never writes them, the guest must not get them. Every
 * consumer of s2g (the supervisor's guest port, moat-vhost) takes frames
 * through this one check. Follow with ring_consume() once the frame is taken.
 *
 * Return: the record length, -EAGAIN if the ring is empty (the consumer flag
 * is set: the producer will wake us), -EBADMSG if it is corrupt.
 */
int ring_next_frame(struct ring *r, uint32_t max_frame, bool vnet_ok, const uint8_t **frame,
		    bool *vnet)
{
	for (;;) {
		uint32_t type;
		int n = ring_peek(r, &type, frame);

		if (n == -EAGAIN) {
			if (ring_prepare_sleep(r))
				return -EAGAIN;
			continue;
		}
		if (n < 0 || r->corrupt)
			return -EBADMSG;
		if (type == MOAT_REC_FRAME && n >= 14 && (uint32_t)n <= max_frame) {
			*vnet = false;
			return n;
		}
		if (type == MOAT_REC_FRAME_VNET && vnet_ok &&
		    n >= (int)sizeof(struct moat_vnet_hdr) + 14 &&
		    (uint32_t)n <= sizeof(struct moat_vnet_hdr) + MOAT_FRAME_MAX_GSO) {
			*vnet = true;
			return n;
		}
		ring_consume(r);
	}
}
