/* SPDX-License-Identifier: MIT */
/*
 * guest_stream.c - the stream frontend: stream:PATH and stream-fd:N
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's loop (guest.c dispatches here). The wire format
 * is QEMU's `-netdev stream` (and `-netdev socket`), libkrun's unixstream
 * and passt's: every frame is preceded by its length as a 32-bit big-endian
 * number. stream:PATH listens on a unix stream socket and serves one client
 * at a time: while one is connected the listening socket is not watched, so
 * the next client waits in the backlog and is accepted when the current one
 * leaves (a restarted VMM reconnects without a race). stream-fd:N is an
 * already connected socket; when its peer leaves there is nobody to wait
 * for and moat stops.
 *
 * Guest -> g2s: we read as much as fits into a private buffer (256 KiB, so
 * one read(2) usually brings a whole batch), cut frames out of it and copy
 * each into g2s, one flush per buffer. A frame split across reads stays in
 * the buffer (moved to its front) until the rest arrives. A length below 14
 * or above 65535 cannot be a frame: the byte stream is out of step, so the
 * client is dropped (MOAT_DROP_BAD_LENGTH) and the next one accepted. A
 * length that is a possible frame but above MTU + 14 is skipped and counted
 * (MOAT_DROP_TOO_LONG), as a tap drops such a frame, and the connection
 * stays. A stream-fd:N peer has nobody to be replaced by, so a bad length
 * from it stops moat as a runtime error (guest_fail(): exit 1), not as the
 * VMM leaving. When g2s is full we stop reading; the socket buffer holds
 * the rest, and the frames already in our buffer wait for our eventfd. A
 * corrupt g2s (guest_g2s_blocked()) stops reading for good.
 *
 * s2g -> guest: frames are gathered straight from the ring (no copy) into
 * one sendmsg() per batch, each behind its length prefix. The socket may
 * take only part of it: fully sent frames are consumed; a frame cut in the
 * middle has its remainder copied to a private buffer (sent first next
 * time, so nothing is lost or reordered); the records after it are put
 * back by rewinding our private tail, which is safe because the tail is
 * not published until the batch ends. Then we wait for EPOLLOUT and do not
 * drain s2g meanwhile (backpressure reaches the netstack).
 *
 * With no client connected, frames toward the guest are discarded (a link
 * without a peer), so a new client never gets its predecessor's traffic.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/guest_int.h"

#define STREAM_INBUF   (256u << 10)
#define STREAM_MAX_LEN 65535u /* above this a length prefix is garbage */
#define STREAM_READS   4      /* reads per wake before others get a turn */

struct stream {
	int lfd; /* listening socket, -1 for stream-fd */
	int cfd; /* the client, -1 if none */
	struct loop_watch wl, wc;
	uint32_t cevents; /* client watch mask */
	bool parked;	  /* client watch removed (nothing to wait for) */
	char what[128];	  /* "stream:PATH" / "stream-fd:N" for logs */
	/* guest -> g2s */
	uint8_t *in;
	uint32_t in_rd, in_wr, skip;
	/* s2g -> guest: the unsent rest of a frame cut by a short write */
	uint8_t *out;
	uint32_t out_off, out_len;
};

static int guest_stream_open(struct guest *g, char *err, size_t errlen)
{
	struct stream *s = guest_fe_alloc(g, sizeof(*s), err, errlen);

	if (!s)
		return -1;
	s->lfd = s->cfd = -1;
	if (g->spec.kind == GUEST_STREAM_FD) {
		snprintf(s->what, sizeof(s->what), "stream-fd:%d", g->spec.fd);
		if (guest_check_fd(g->spec.fd, SOCK_STREAM, s->what, err, errlen) < 0)
			return -1;
		s->cfd = g->spec.fd;
		return 0;
	}
	snprintf(s->what, sizeof(s->what), "stream:%s", g->spec.path);
	s->lfd = guest_unix_listen(g->spec.path, SOCK_STREAM, err, errlen);
	return s->lfd < 0 ? -1 : 0;
}

static void guest_stream_set_events(struct guest *g)
{
	struct stream *s = g->fe;
	uint32_t ev;

	if (s->cfd < 0)
		return;
	ev = (guest_input_off(g) ? 0 : EPOLLIN) | (g->waiting_out ? EPOLLOUT : 0);
	guest_watch_set(g, &s->wc, &s->cevents, &s->parked, ev);
}

static void guest_stream_drop(struct guest *g, const char *why, bool bad)
{
	struct stream *s = g->fe;

	if (!s->parked)
		loop_del(g->loop, &s->wc);
	close(s->cfd);
	s->cfd = -1;
	s->parked = false;
	s->in_rd = s->in_wr = s->skip = 0;
	s->out_off = s->out_len = 0;
	g->waiting_g2s = g->waiting_out = false;
	guest_count(&g->cnt->clients_dropped, 1);
	guest_s2g_discard(g);
	if (s->lfd < 0) {
		/* Nobody can reconnect: bad framing is an error, not a VMM leaving. */
		if (bad)
			guest_fail(g, s->what, why);
		else
			guest_gone(g, s->what, why);
		return;
	}
	log_msg(bad ? LOG_LVL_WARN : LOG_LVL_INFO,
		"guest port: %s: client dropped (%s); waiting for the next", s->what, why);
	loop_add(g->loop, &s->wl, EPOLLIN);
}

/*
 * Cut frames out of the input buffer into g2s.
 * Return: 0 when more bytes are needed, 1 when input must stop (g2s full:
 * paused; or corrupt: reported, off for good), -1 when the client was
 * dropped.
 */
static int guest_stream_parse(struct guest *g, uint64_t *frames, uint64_t *bytes)
{
	struct stream *s = g->fe;

	for (;;) {
		uint32_t avail = s->in_wr - s->in_rd, len;
		const uint8_t *p = s->in + s->in_rd;
		int rc;

		if (s->skip) {
			uint32_t k = avail < s->skip ? avail : s->skip;

			s->in_rd += k;
			s->skip -= k;
			if (s->skip)
				break;
			continue;
		}
		if (avail < 4)
			break;
		len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		if (len < 14 || len > STREAM_MAX_LEN) {
			char why[64];

			guest_count(&g->cnt->drops[MOAT_DROP_BAD_LENGTH], 1);
			snprintf(why, sizeof(why),
				 s->lfd < 0 ? "the VMM sent a bad length prefix %u" :
					      "bad length prefix %u",
				 len);
			guest_stream_drop(g, why, true);
			return -1;
		}
		if (len > g->max_frame) {
			guest_count(&g->cnt->drops[MOAT_DROP_TOO_LONG], 1);
			s->in_rd += 4;
			s->skip = len;
			continue;
		}
		if (avail < 4 + len)
			break;
		rc = ring_push(&g->g2s, MOAT_REC_FRAME, p + 4, len);
		if (rc < 0) {
			if (guest_g2s_blocked(g, rc, len))
				return 1;
			continue;
		}
		if (g->pcap)
			pcap_frame(g->pcap, p + 4, len);
		(*frames)++;
		*bytes += len;
		s->in_rd += 4 + len;
	}
	if (s->in_rd == s->in_wr) {
		s->in_rd = s->in_wr = 0;
	} else if (s->in_rd) {
		memmove(s->in, s->in + s->in_rd, s->in_wr - s->in_rd);
		s->in_wr -= s->in_rd;
		s->in_rd = 0;
	}
	return 0;
}

static void guest_stream_input(struct guest *g)
{
	struct stream *s = g->fe;
	uint64_t frames = 0, bytes = 0;

	for (int round = 0; s->cfd >= 0; round++) {
		uint32_t room;
		ssize_t n;

		if (guest_stream_parse(g, &frames, &bytes))
			break;
		if (round == STREAM_READS)
			break; /* level-triggered: we come back */
		room = STREAM_INBUF - s->in_wr;
		n = read(s->cfd, s->in + s->in_wr, room);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			if (s->in_wr > s->in_rd || s->skip)
				guest_count(&g->cnt->drops[MOAT_DROP_TOO_SHORT], 1);
			guest_stream_drop(g, n == 0 ? "closed" : strerror(errno), false);
			break;
		}
		if (n < 0)
			break;
		s->in_wr += (uint32_t)n;
		if ((uint32_t)n < room) {
			guest_stream_parse(g, &frames, &bytes);
			break;
		}
	}
	guest_g2s_done(g, frames, bytes);
	guest_stream_set_events(g);
}

/* Send the rest of a frame a short write cut. Return: true when done. */
static bool guest_stream_flush_rest(struct guest *g)
{
	struct stream *s = g->fe;
	ssize_t n;

	if (s->out_off == s->out_len)
		return true;
	n = send(s->cfd, s->out + s->out_off, s->out_len - s->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			g->waiting_out = true;
			return false;
		}
		guest_stream_drop(g, strerror(errno), false);
		return false;
	}
	s->out_off += (uint32_t)n;
	if (s->out_off < s->out_len) {
		g->waiting_out = true;
		return false;
	}
	s->out_off = s->out_len = 0;
	return true;
}

static void guest_stream_output(struct guest *g)
{
	struct stream *s = g->fe;
	uint64_t frames = 0, bytes = 0;

	g->waiting_out = false;
	if (s->cfd < 0) {
		guest_s2g_discard(g);
		return;
	}
	if (!guest_stream_flush_rest(g))
		goto out;
	while (frames < GUEST_OUT_MAX) {
		struct iovec iov[2 * GUEST_BATCH];
		struct msghdr mh = { .msg_iov = iov };
		uint32_t prefix[GUEST_BATCH];
		uint64_t start[GUEST_BATCH];
		const uint8_t *p;
		ssize_t sent;
		int k = 0, n, i;

		while (k < GUEST_BATCH && (n = guest_s2g_next(g, &p, NULL)) > 0) {
			start[k] = g->s2g.tail;
			prefix[k] = htonl((uint32_t)n);
			iov[2 * k] = (struct iovec){ &prefix[k], 4 };
			iov[2 * k + 1] = (struct iovec){ (void *)p, (size_t)n };
			ring_consume(&g->s2g);
			k++;
		}
		if (!k)
			break;
		mh.msg_iovlen = (size_t)2 * k;
		sent = sendmsg(s->cfd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				g->s2g.tail = start[0];
				g->waiting_out = true;
			} else {
				guest_stream_drop(g, strerror(errno), false);
			}
			break;
		}
		for (i = 0; i < k; i++) {
			uint32_t len = (uint32_t)iov[2 * i + 1].iov_len, whole = 4 + len;

			if ((size_t)sent == 0)
				break;
			if (g->pcap)
				pcap_frame(g->pcap, iov[2 * i + 1].iov_base, len);
			frames++;
			bytes += len;
			if ((size_t)sent >= whole) {
				sent -= whole;
				continue;
			}
			/* Cut in the middle: keep the rest, in order, for next time. */
			memcpy(s->out, &prefix[i], 4);
			memcpy(s->out + 4, iov[2 * i + 1].iov_base, len);
			s->out_off = (uint32_t)sent;
			s->out_len = whole;
			i++;
			break;
		}
		if (i < k) {
			g->s2g.tail = start[i]; /* not published yet: put them back */
			g->waiting_out = true;
			break;
		}
		if (s->out_len) {
			g->waiting_out = true;
			break;
		}
		if (k < GUEST_BATCH)
			break; /* s2g is empty */
	}
	if (frames >= GUEST_OUT_MAX && !g->waiting_out)
		guest_yield(g);
out:
	guest_s2g_done(g, frames, bytes);
	guest_stream_set_events(g);
}

static void guest_stream_on_client(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	struct stream *s = g->fe;

	if ((events & EPOLLOUT) && s->cfd >= 0)
		guest_stream_output(g);
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && s->cfd >= 0 && !guest_input_off(g))
		guest_stream_input(g);
}

static void guest_stream_watch_client(struct guest *g)
{
	struct stream *s = g->fe;

	s->wc = (struct loop_watch){ .fd = s->cfd, .cb = guest_stream_on_client, .arg = g };
	s->cevents = 0;
	s->parked = true;
	guest_count(&g->cnt->clients_accepted, 1);
	guest_stream_set_events(g); /* EPOLLIN, unless g2s is corrupt */
}

static void guest_stream_on_listen(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	struct stream *s = g->fe;
	int fd;

	(void)events;
	if (s->cfd >= 0)
		return;
	fd = guest_unix_accept(s->lfd, s->what);
	if (fd < 0)
		return;
	loop_del(g->loop, &s->wl);
	/* Whatever s2g holds now was meant for nobody: this client has sent nothing yet. */
	guest_s2g_discard(g);
	s->cfd = fd;
	guest_stream_watch_client(g);
	log_info("guest port: %s: client connected", s->what);
}

static int guest_stream_start(struct guest *g)
{
	struct stream *s = g->fe;

	s->in = malloc(STREAM_INBUF);
	s->out = malloc(g->max_frame + 4);
	if (!s->in || !s->out) {
		log_error("guest port: out of memory");
		return -1;
	}
	if (s->cfd >= 0) {
		guest_stream_watch_client(g);
		return 0;
	}
	return guest_unix_watch_listener(g, &s->wl, s->lfd, guest_stream_on_listen, s->what);
}

static void guest_stream_close(struct guest *g)
{
	struct stream *s = g->fe;

	if (!s)
		return;
	guest_unix_close(g, s->cfd, s->lfd);
	free(s->in);
	free(s->out);
}

const struct guest_ops guest_stream_ops = {
	.name = "stream",
	.open = guest_stream_open,
	.start = guest_stream_start,
	.input = guest_stream_input,
	.output = guest_stream_output,
	.close = guest_stream_close,
};
