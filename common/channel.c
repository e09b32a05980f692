/* SPDX-License-Identifier: MIT */
/*
 * channel.c - framing and non-blocking I/O of the supervisor <-> proxy channel
 *
 * Theory of Operation
 * -------------------
 * The one implementation of the control channel's framing (common/channel.h
 * is the protocol), used by both ends: in the supervisor, run.c queues
 * configuration documents and events.c reassembles the proxy's events; in
 * the proxy, control.c reassembles configuration and queues events. Neither
 * side ever blocks on the other: a stopped or compromised peer must not
 * freeze a loop, and the supervisor must stay free to act on violations.
 *
 * Outgoing (struct channel_out): channel_out_push() appends the length
 * prefix and the message to a bounded byte queue, or refuses the whole
 * message (-EMSGSIZE over the per-message limit, -ENOBUFS over the queue's
 * bound): a message is never partly queued, so the stream stays framed.
 * channel_out_flush() writes with MSG_DONTWAIT | MSG_NOSIGNAL until the
 * socket is full (1: the caller waits for writability and calls again) or
 * the queue is empty (0); a dead peer is -EPIPE/-ECONNRESET, never SIGPIPE.
 * The queue remembers since when it has been waiting without progress
 * (CLOCK_MONOTONIC; any byte written restarts the clock), which the
 * supervisor compares with CHANNEL_DRAIN_TIMEOUT_MS.
 *
 * Incoming (struct channel_in): channel_in_read() reads with MSG_DONTWAIT
 * into a buffer of one maximum frame, hands every complete message to the
 * caller's callback and keeps the partial rest at the front of the buffer.
 * A length of 0 or above the limit is -EPROTO at once, before any byte of
 * the body is waited for: the limit is what bounds the buffer, and a broken
 * frame cannot be resynchronized. Each call reads at most
 * CHANNEL_READ_BUDGET bytes; the callers' loops are level-triggered and
 * call again.
 *
 * Memory: each buffer is allocated once, at init, at its full bound
 * (max_bytes, or one maximum frame), and never again: nothing allocates on
 * the message path, and nothing can fail for memory once running, under
 * the roles' (and the supervisor's) seccomp filters. Buffers this size come
 * from fresh anonymous mappings, which the kernel fills on first touch, and
 * both buffers go back to offset 0 whenever they empty, so what is
 * resident is the high-water mark of what was really waiting (a few KiB
 * in practice), not the bound. Growing on demand would save address space
 * only, and would add a failure path in the middle of a run.
 *
 * Nothing here logs or exits (library level): errors are negative errnos
 * and, for framing, a sentence in the caller's buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/channel.h"
#include "common/confine.h"

/**
 * channel_now_ms() - the clock of the stall timer
 *
 * Return: CLOCK_MONOTONIC in milliseconds; never 0 on a running system
 * (0 means "empty" in struct channel_out).
 */
uint64_t channel_now_ms(void)
{
	struct timespec ts;
	uint64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	return ms ? ms : 1;
}

/**
 * channel_out_init() - set up an empty outgoing queue
 * @q:		queue
 * @max_msg:	the largest message channel_out_push() takes (1..UINT32_MAX),
 *		e.g. CHANNEL_CONFIG_MAX or CHANNEL_EVENT_MAX
 * @max_bytes:	the bound on pending bytes, length prefixes included; at
 *		least CHANNEL_HDR + @max_msg, so one maximum message fits
 *
 * Allocates the whole buffer now (see Theory of Operation).
 *
 * Return: 0, -EINVAL for inconsistent bounds, -ENOMEM.
 */
int channel_out_init(struct channel_out *q, size_t max_msg, size_t max_bytes)
{
	memset(q, 0, sizeof(*q));
	if (!max_msg || max_msg > UINT32_MAX || max_bytes < CHANNEL_HDR + max_msg)
		return -EINVAL;
	q->buf = malloc(max_bytes);
	if (!q->buf)
		return -ENOMEM;
	q->max_msg = max_msg;
	q->max_bytes = max_bytes;
	return 0;
}

/**
 * channel_out_fini() - free the queue; what was pending is lost
 * @q:	queue (initialized or zeroed); may be finalized twice
 */
void channel_out_fini(struct channel_out *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

/**
 * channel_out_pending() - bytes waiting to be written
 * @q:	queue
 *
 * Return: pending bytes, length prefixes included; 0 when empty.
 */
size_t channel_out_pending(const struct channel_out *q)
{
	return q->tail - q->head;
}

/**
 * channel_out_push() - frame one message and queue it, all or nothing
 * @q:		queue
 * @msg:	the message (copied)
 * @len:	its length, 1..max_msg
 *
 * Does not write: call channel_out_flush() afterwards. On any error
 * nothing was queued and the queue is as it was.
 *
 * Return: 0; -EINVAL for an empty message (the receiver would take its
 * length as a framing error); -EMSGSIZE above the limit given at init;
 * -ENOBUFS if the queue would exceed its bound.
 */
int channel_out_push(struct channel_out *q, const void *msg, size_t len)
{
	size_t pending = q->tail - q->head;
	uint32_t l32;

	if (!len)
		return -EINVAL;
	if (len > q->max_msg)
		return -EMSGSIZE;
	if (CHANNEL_HDR + len > q->max_bytes - pending)
		return -ENOBUFS;
	if (CHANNEL_HDR + len > q->max_bytes - q->tail) {
		/* Room in the bound, not at the end: move the pending bytes to the front. */
		memmove(q->buf, q->buf + q->head, pending);
		q->head = 0;
		q->tail = pending;
	}
	l32 = (uint32_t)len;
	memcpy(q->buf + q->tail, &l32, CHANNEL_HDR);
	memcpy(q->buf + q->tail + CHANNEL_HDR, msg, len);
	q->tail += CHANNEL_HDR + len;
	if (!pending)
		q->stalled_since = channel_now_ms();
	return 0;
}

/**
 * channel_out_flush() - write what the socket takes now, never blocking
 * @q:	queue
 * @fd:	a connected stream socket (its O_NONBLOCK flag does not matter)
 *
 * Writes with MSG_DONTWAIT | MSG_NOSIGNAL until the socket would block or
 * the queue is empty. Any byte written counts as progress and restarts
 * the stall clock.
 *
 * Return: 0 when the queue is empty; 1 when bytes remain (wait for
 * EPOLLOUT / UV_WRITABLE and call again); -errno if the peer is gone or
 * the write failed (-EPIPE, -ECONNRESET, ...): the pending bytes stay
 * queued, but the stream is dead.
 */
int channel_out_flush(struct channel_out *q, int fd)
{
	bool progress = false;

	while (q->head < q->tail) {
		ssize_t n = send(fd, q->buf + q->head, q->tail - q->head,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		if (n == 0)
			break; /* not seen on stream sockets; treat as full */
		q->head += (size_t)n;
		progress = true;
	}
	if (q->head == q->tail) {
		q->head = q->tail = 0;
		q->stalled_since = 0;
		return 0;
	}
	if (progress)
		q->stalled_since = channel_now_ms();
	return 1;
}

/**
 * channel_out_stalled_since_ms() - since when the queue waits without progress
 * @q:	queue
 *
 * Return: the channel_now_ms() time of the last byte written, or of the
 * push that made the queue non-empty, whichever is later; 0 when the queue
 * is empty.
 */
uint64_t channel_out_stalled_since_ms(const struct channel_out *q)
{
	return q->head == q->tail ? 0 : q->stalled_since;
}

/**
 * channel_out_stalled_ms() - how long the queue has waited without progress
 * @q:	queue
 *
 * Compare with CHANNEL_DRAIN_TIMEOUT_MS.
 *
 * Return: milliseconds since channel_out_stalled_since_ms(); 0 when empty.
 */
uint64_t channel_out_stalled_ms(const struct channel_out *q)
{
	uint64_t since = channel_out_stalled_since_ms(q), now;

	if (!since)
		return 0;
	now = channel_now_ms();
	return now > since ? now - since : 0;
}

/**
 * channel_in_init() - set up reassembly for messages of at most @max_msg bytes
 * @r:		reader
 * @max_msg:	the limit (1..UINT32_MAX - CHANNEL_HDR), e.g. CHANNEL_EVENT_MAX
 *		in the supervisor, CHANNEL_CONFIG_MAX in the proxy
 *
 * Allocates one maximum frame now (see Theory of Operation).
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int channel_in_init(struct channel_in *r, size_t max_msg)
{
	memset(r, 0, sizeof(*r));
	if (!max_msg || max_msg > UINT32_MAX - CHANNEL_HDR)
		return -EINVAL;
	r->buf = malloc(CHANNEL_HDR + max_msg);
	if (!r->buf)
		return -ENOMEM;
	r->max_msg = max_msg;
	return 0;
}

/**
 * channel_in_fini() - free the reader; a partial message is lost
 * @r:	reader (initialized or zeroed); may be finalized twice
 */
void channel_in_fini(struct channel_in *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

/**
 * channel_in_pending() - bytes of a partial message held between calls
 * @r:	reader
 *
 * Return: 0 when the stream is at a message boundary (e.g. to tell a clean
 * end of file from one in the middle of a message).
 */
size_t channel_in_pending(const struct channel_in *r)
{
	return r->have;
}

/* Hand out every complete message in the buffer; keep the partial rest. */
static int in_deliver(struct channel_in *r, channel_msg_cb on_msg, void *arg, char *err,
		      size_t errlen)
{
	size_t off = 0;
	int rc = 0;

	while (r->have - off >= CHANNEL_HDR) {
		uint32_t len;

		memcpy(&len, r->buf + off, CHANNEL_HDR);
		if (len == 0 || len > r->max_msg) {
			snprintf(err, errlen, "bad frame: a message of %u bytes (1 to %zu allowed)",
				 len, r->max_msg);
			rc = -EPROTO;
			break;
		}
		if (r->have - off - CHANNEL_HDR < len)
			break;
		if (on_msg(arg, (const char *)r->buf + off + CHANNEL_HDR, len) < 0) {
			snprintf(err, errlen, "a message of %u bytes was rejected", len);
			off += CHANNEL_HDR + len;
			rc = -EPROTO;
			break;
		}
		off += CHANNEL_HDR + len;
	}
	if (off) {
		memmove(r->buf, r->buf + off, r->have - off);
		r->have -= off;
	}
	return rc;
}

/**
 * channel_in_read() - read what the peer sent and deliver complete messages
 * @r:		reader
 * @fd:		a connected stream socket (its O_NONBLOCK flag does not matter)
 * @on_msg:	called for each complete message, in order, with @arg, a
 *		pointer into the reader's buffer (valid during the call only,
 *		not NUL-terminated) and its length; it must not call
 *		channel_in_read() on @r; a negative return stops reading
 * @arg:	for @on_msg
 * @err:	a sentence when -EPROTO is returned
 * @errlen:	size of @err
 *
 * Reads with MSG_DONTWAIT until the socket is drained or
 * CHANNEL_READ_BUDGET bytes were read, delivering messages as they
 * complete. After a negative return the stream is unusable: only
 * channel_in_fini() remains.
 *
 * Return: 1 while the peer is alive (call again when readable); 0 on end
 * of file (channel_in_pending() tells whether it cut a message); -EPROTO
 * on a framing error (a length of 0 or above the limit: from the less
 * trusted side, a violation) or when @on_msg failed, with @err set;
 * another -errno if reading failed.
 */
int channel_in_read(struct channel_in *r, int fd, channel_msg_cb on_msg, void *arg, char *err,
		    size_t errlen)
{
	size_t budget = CHANNEL_READ_BUDGET;

	while (budget) {
		/* in_deliver() leaves less than one frame, so there is room. */
		size_t room = CHANNEL_HDR + r->max_msg - r->have;
		ssize_t n = recv(fd, r->buf + r->have, room < budget ? room : budget, MSG_DONTWAIT);
		int rc;

		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -errno;
		}
		budget -= (size_t)n;
		r->have += (size_t)n;
		rc = in_deliver(r, on_msg, arg, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 1;
}

/**
 * channel_seccomp() - the calls this module makes, for a confined process
 * @ctx:	the filter of a process that speaks the channel (the supervisor's;
 *		the proxy's list names them itself, next to libuv's)
 */
void channel_seccomp(scmp_filter_ctx ctx)
{
	ALLOW(ctx, sendto);	   /* channel_out_flush(): send(MSG_DONTWAIT | MSG_NOSIGNAL) */
	ALLOW(ctx, recvfrom);	   /* channel_in_read(): recv(MSG_DONTWAIT) */
	ALLOW(ctx, clock_gettime); /* the stall clock, when the vDSO falls back */
}
