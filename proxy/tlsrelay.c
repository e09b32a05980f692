/* SPDX-License-Identifier: MIT */
/*
 * tlsrelay.c - the proxy's side of TLS interception (docs/tls.md)
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-proxy, when the supervisor started moat-tls (the policy has
 * a "tls" section) and handed us our end of a SOCK_SEQPACKET socketpair
 * with it (FD_PROXY_TLS). The proxy keeps every socket and every decision:
 * a TCP flow is decided as always, and once sniff.c has read the SNI of its
 * ClientHello and the flow is allowed, tlsrelay_wants() asks the policy
 * whether the name is intercepted. If so, tlsrelay_start() makes two unix
 * stream socketpairs and sends one end of each to moat-tls with an OPEN
 * record (tls/tlsmsg.h): moat-tls speaks TLS with the guest on the first
 * and with the server on the second. Our ends become the flow's streams:
 *
 *   netstack <-> [tcpflow.c's relay] <-> guest pipe <-> moat-tls
 *   moat-tls <-> server pipe <-> [the splice below] <-> f->sock (the server)
 *
 * tcpflow.c relays the guest side exactly as it relays a plain flow (the
 * guest pipe stands where the server's socket stands: credits, half-close,
 * resets), and the splice copies between the server pipe and the real
 * socket, one 64 KiB buffer each way, reading a side only while its last
 * buffer is not yet written: the kernel's socket buffers and TCP windows
 * do the flow control, so nothing here queues more than two buffers per
 * flow. Splices come from a fixed pool (MOAT_POOL_TLS, TLSRELAY_MAX_FLOWS);
 * an empty pool resets the flow (fail closed: the policy said intercept).
 *
 * moat-tls answers each flow on the channel: OPENED, FAIL (a side and a
 * reason: the flow is reset and a "tls" event says why), SECRET (a
 * placeholder injected, or sent to a host it is not for: a
 * "secret_violation" event, and with on_violation "terminate" a fatal
 * violation). Records are checked with tlsmsg_check(); a broken channel
 * is a violation (MOAT_VIOL_BAD_MESSAGE).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/proxy_internal.h"
#include "proxy/tcpflow.h"
#include "tls/tlsmsg.h"

#define TLSRELAY_BUF 65536

_Static_assert(TLSMSG_R_COUNT == MOAT_TLS_REASONS, "the failure counters have a slot per reason");

/**
 * struct tls_splice - an intercepted flow's two pipes to moat-tls, and the
 * copy between the server pipe and the server's socket
 * @f:		the flow (its handle count includes our two pipes)
 * @guest:	the guest side's pipe: tcpflow.c reads and writes it
 * @up:		the server side's pipe
 * @w_up, @w_sock: the one write in flight toward @up, toward f->sock
 * @sh_up, @sh_sock: shutdowns passed on
 * @shut_sock:	the shutdown toward the server is done: the server has all
 *		moat-tls sent, and the flow may end (tlsrelay_done())
 * @n_s2t, @n_t2s: bytes of those writes (0: none in flight)
 * @reading_sock, @reading_up: uv_read_start() in force
 * @eof_sock, @eof_up: the side sent its FIN (passed on after the last write)
 * @open:	pipes still open (freed back to the pool at 0)
 * @s2t, @t2s:	the buffers
 */
struct tls_splice {
	struct tcp_flow *f;
	uv_pipe_t guest, up;
	uv_write_t w_up, w_sock;
	uv_shutdown_t sh_up, sh_sock;
	uint32_t n_s2t, n_t2s;
	bool reading_sock, reading_up, eof_sock, eof_up, shut_sock;
	int open;
	uint8_t s2t[TLSRELAY_BUF], t2s[TLSRELAY_BUF];
};

struct tlsrelay {
	int fd;
	uv_poll_t poll;
	bool poll_open;
};

static void tlsrelay_kill(struct tls_splice *s)
{
	struct tcp_flow *f = s->f;

	if (f && f->st != ST_CLOSED)
		tcpflow_kill(f->px, f, true, true);
}

/* ---- server socket -> moat-tls --------------------------------------- */

static void tlsrelay_sock_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_flow *f = h->data;
	struct tls_splice *s = f->tls;

	(void)suggested;
	*buf = s && !s->n_s2t ? uv_buf_init((char *)s->s2t, TLSRELAY_BUF) : uv_buf_init(NULL, 0);
}

static void tlsrelay_sock_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void tlsrelay_sock_resume(struct tls_splice *s)
{
	if (!s->reading_sock && !s->eof_sock && !s->n_s2t &&
	    uv_read_start((uv_stream_t *)&s->f->sock, tlsrelay_sock_alloc, tlsrelay_sock_read) == 0)
		s->reading_sock = true;
}

static void tlsrelay_on_w_up(uv_write_t *req, int status)
{
	struct tls_splice *s = req->data;

	s->n_s2t = 0;
	if (!s->f || s->f->st == ST_CLOSED)
		return;
	if (status < 0) {
		tlsrelay_kill(s);
		return;
	}
	tlsrelay_sock_resume(s);
}

static void tlsrelay_sock_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct tcp_flow *f = st->data;
	struct tls_splice *s = f->tls;
	uv_buf_t b;

	if (!s || f->st == ST_CLOSED)
		return;
	if (n == 0)
		return;
	uv_read_stop(st);
	s->reading_sock = false;
	if (n == UV_ENOBUFS)
		return;
	if (n == UV_EOF) {
		s->eof_sock = true;
		s->sh_up.data = s;
		if (uv_shutdown(&s->sh_up, (uv_stream_t *)&s->up, NULL) < 0)
			tlsrelay_kill(s);
		return;
	}
	if (n < 0) {
		log_debug("tcp flow %u: server %s (intercepted)", f->id, uv_err_name((int)n));
		tlsrelay_kill(s);
		return;
	}
	CNT_ADD(f->px, upstream_rx_bytes, (uint64_t)n);
	s->n_s2t = (uint32_t)n;
	s->w_up.data = s;
	b = uv_buf_init(buf->base, (unsigned)n);
	if (uv_write(&s->w_up, (uv_stream_t *)&s->up, &b, 1, tlsrelay_on_w_up) < 0)
		tlsrelay_kill(s);
}

/* ---- moat-tls -> server socket --------------------------------------- */

static void tlsrelay_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tls_splice *s = h->data;

	(void)suggested;
	*buf = !s->n_t2s ? uv_buf_init((char *)s->t2s, TLSRELAY_BUF) : uv_buf_init(NULL, 0);
}

static void tlsrelay_up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void tlsrelay_up_resume(struct tls_splice *s)
{
	if (!s->reading_up && !s->eof_up && !s->n_t2s &&
	    uv_read_start((uv_stream_t *)&s->up, tlsrelay_up_alloc, tlsrelay_up_read) == 0)
		s->reading_up = true;
}

static void tlsrelay_on_w_sock(uv_write_t *req, int status)
{
	struct tls_splice *s = req->data;

	s->n_t2s = 0;
	if (!s->f || s->f->st == ST_CLOSED)
		return;
	if (status < 0) {
		tlsrelay_kill(s);
		return;
	}
	tlsrelay_up_resume(s);
}

/*
 * moat-tls finished the server's side and all of it reached the server:
 * the flow may end now, once the guest's side is finished too.
 */
static void tlsrelay_on_sh_sock(uv_shutdown_t *req, int status)
{
	struct tcp_flow *f = req->data;

	if (f->st == ST_CLOSED || !f->tls)
		return;
	if (status < 0) {
		tlsrelay_kill(f->tls);
		return;
	}
	f->tls->shut_sock = true;
	tcpflow_maybe_done(f->px, f);
}

static void tlsrelay_up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct tls_splice *s = st->data;
	struct tcp_flow *f = s->f;
	uv_buf_t b;

	if (!f || f->st == ST_CLOSED || n == 0)
		return;
	uv_read_stop(st);
	s->reading_up = false;
	if (n == UV_ENOBUFS)
		return;
	if (n == UV_EOF) {
		s->eof_up = true;
		s->sh_sock.data = f; /* f outlives its socket's requests; s may not */
		if (uv_shutdown(&s->sh_sock, (uv_stream_t *)&f->sock, tlsrelay_on_sh_sock) < 0)
			tlsrelay_kill(s);
		return;
	}
	if (n < 0) {
		tlsrelay_kill(s);
		return;
	}
	CNT_ADD(f->px, upstream_tx_bytes, (uint64_t)n);
	s->n_t2s = (uint32_t)n;
	s->w_sock.data = s;
	b = uv_buf_init(buf->base, (unsigned)n);
	if (uv_write(&s->w_sock, (uv_stream_t *)&f->sock, &b, 1, tlsrelay_on_w_sock) < 0)
		tlsrelay_kill(s);
}

/* ---- start and end ----------------------------------------------------- */

/**
 * tlsrelay_guest_stream() - the pipe tcpflow.c relays the guest's bytes to
 * @s:	an intercepted flow's splice
 *
 * Return: the guest side's pipe to moat-tls, as a stream.
 */
uv_stream_t *tlsrelay_guest_stream(struct tls_splice *s)
{
	return (uv_stream_t *)&s->guest;
}

/**
 * tlsrelay_done() - has the server received all that moat-tls sent it?
 * @s:	an intercepted flow's splice
 *
 * Return: true once moat-tls ended the server's side and its FIN was
 * written: until then the flow stays, even if the guest's side is over
 * (a server that half-closed first still gets the guest's last bytes).
 */
bool tlsrelay_done(const struct tls_splice *s)
{
	return s->shut_sock;
}

/**
 * tlsrelay_wants() - is @sni intercepted?
 * @px:		proxy
 * @sni:	the ClientHello's server name
 *
 * Return: true if moat-tls runs and the policy intercepts @sni.
 */
bool tlsrelay_wants(const struct proxy *px, const char *sni)
{
	return px->tls && px->policy && sni && sni[0] && policy_tls_intercepts(px->policy, sni);
}

/* Send OPEN with the two far ends. Return: 0 or -errno. */
static int tlsrelay_send_open(struct proxy *px, uint32_t id, const char *sni, int g, int u)
{
	uint8_t rec[TLSMSG_MAX];
	size_t len = tlsmsg_build(rec, id, TLSMSG_OPEN, sni, (uint32_t)strlen(sni));
	int fds[TLSMSG_FDS] = { g, u };
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} c;
	struct iovec iov = { rec, len };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(c.buf, 0, sizeof(c.buf));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	return sendmsg(px->tls->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

static void tlsrelay_on_pipe_closed(uv_handle_t *h)
{
	struct tls_splice *s = h->data;
	struct tcp_flow *f = s->f;

	if (--s->open == 0) {
		if (f) {
			f->tls = NULL;
			pool_put(&f->px->pools[MOAT_POOL_TLS], s);
			tcpflow_handle_closed(f);
		}
		return;
	}
	if (f)
		tcpflow_handle_closed(f);
}

/**
 * tlsrelay_start() - hand @f to moat-tls
 * @px:		proxy
 * @f:		an allowed, open egress flow whose ClientHello named @sni; its
 *		socket is not being read by tcpflow.c
 * @sni:	the name
 *
 * Return: 0 (the flow's guest side is now f->tls->guest), or -errno (the
 * caller resets the flow).
 */
int tlsrelay_start(struct proxy *px, struct tcp_flow *f, const char *sni)
{
	int gp[2] = { -1, -1 }, up[2] = { -1, -1 }, rc;
	struct tls_splice *s = pool_get(&px->pools[MOAT_POOL_TLS]);

	if (!s) {
		log_warn("tcp flow %u: no room for another intercepted connection: reset", f->id);
		return -ENOBUFS;
	}
	memset(s, 0, offsetof(struct tls_splice, s2t));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, gp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, up) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = tlsrelay_send_open(px, f->id, sni, gp[1], up[1]);
	close(gp[1]);
	close(up[1]);
	gp[1] = up[1] = -1;
	if (rc < 0) {
		log_warn("tcp flow %u: cannot hand the connection to moat-tls: %s", f->id,
			 strerror(-rc));
		goto fail;
	}
	if (uv_pipe_init(&px->loop, &s->guest, 0) < 0 || uv_pipe_open(&s->guest, gp[0]) < 0 ||
	    uv_pipe_init(&px->loop, &s->up, 0) < 0 || uv_pipe_open(&s->up, up[0]) < 0) {
		/* cannot happen with fresh descriptors and a live loop */
		fatalx(1, "tcp flow %u: libuv refused a pipe", f->id);
	}
	s->f = f;
	s->open = 2;
	f->handles += 2;
	s->guest.data = f; /* tcpflow.c's callbacks */
	s->up.data = s;
	f->tls = s;
	CNT_ADD(px, tls_intercepted, 1);
	tlsrelay_sock_resume(s);
	tlsrelay_up_resume(s);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (gp[i] >= 0)
			close(gp[i]);
		if (up[i] >= 0)
			close(up[i]);
	}
	pool_put(&px->pools[MOAT_POOL_TLS], s);
	return rc;
}

/**
 * tlsrelay_close() - close an intercepted flow's pipes
 * @f:	the flow (tcpflow_close_handles(); f->sock is closed there)
 *
 * moat-tls sees both pipes hang up and forgets the flow.
 */
void tlsrelay_close(struct tcp_flow *f)
{
	struct tls_splice *s = f->tls;

	if (!s)
		return;
	s->guest.data = s;
	if (!uv_is_closing((uv_handle_t *)&s->guest))
		uv_close((uv_handle_t *)&s->guest, tlsrelay_on_pipe_closed);
	if (!uv_is_closing((uv_handle_t *)&s->up))
		uv_close((uv_handle_t *)&s->up, tlsrelay_on_pipe_closed);
}

/* ---- moat-tls's answers -------------------------------------------------- */

static void tlsrelay_answer(struct proxy *px, const struct tlsmsg *m)
{
	struct tcp_flow *f = tcpflow_find(px, m->flow);
	char ev[512];

	if (m->type == TLSMSG_OPENED) {
		CNT_ADD(px, tls_opened, 1);
		return;
	}
	if (m->type == TLSMSG_FAIL) {
		CNT_ADD(px, tls_failures[m->a][m->b], 1);
		snprintf(
			ev, sizeof(ev),
			"{\"event\":\"tls\",\"outcome\":\"failed\",\"side\":\"%s\",\"reason\":\"%s\","
			"\"flow\":%u,\"sni\":\"%s\"}",
			m->a ? "server" : "guest", tlsmsg_reason_name(m->b), m->flow,
			f ? f->hostname : "");
		control_event(px, ev);
		if (f)
			tcpflow_kill(px, f, true, true);
		return;
	}
	/* TLSMSG_SECRET */
	if (m->b == TLSMSG_SECRET_INJECTED) { /* a: requests rewritten since the last record */
		CNT_ADD(px, tls_secrets_injected, m->a);
		return;
	}
	CNT_ADD(px, tls_secret_violations, 1);
	{
		unsigned n = policy_secret_count(px->policy);
		const char *ph = m->a < n ? policy_secret_placeholder(px->policy, m->a) : "?";
		enum policy_secret_violation act = m->a < n ? policy_secret_on_violation(px->policy,
											 m->a) :
							      POLICY_SECRET_TERMINATE;

		snprintf(ev, sizeof(ev),
			 "{\"event\":\"secret_violation\",\"placeholder\":\"%s\",\"flow\":%u,"
			 "\"sni\":\"%s\",\"action\":\"%s\"}",
			 ph, m->flow, f ? f->hostname : "",
			 act == POLICY_SECRET_TERMINATE	    ? "terminate" :
			 act == POLICY_SECRET_BLOCK_AND_LOG ? "block_and_log" :
							      "block");
		if (act != POLICY_SECRET_BLOCK)
			log_warn("tcp flow %u: secret %s sent toward %s, not one of its hosts",
				 m->flow, ph, f ? f->hostname : "?");
		control_event(px, ev);
		if (act == POLICY_SECRET_TERMINATE)
			relay_violation(px, MOAT_VIOL_SECRET, -1, m->flow, MOAT_P_TCP,
					f ? &f->dst : NULL,
					"a secret sent to a host it is not for");
	}
}

static void tlsrelay_on_channel(uv_poll_t *h, int status, int events)
{
	struct proxy *px = h->data;

	(void)events;
	if (status < 0)
		return;
	for (int i = 0; i < 64 && !px->violation; i++) {
		uint8_t buf[TLSMSG_MAX + 1];
		struct tlsmsg m;
		ssize_t n = recv(px->tls->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* moat-tls is gone: the supervisor sees its exit (a violation). */
			uv_poll_stop(h);
			return;
		}
		if (tlsmsg_check(buf, (size_t)n, 0, &m) < 0) {
			relay_violation(px, MOAT_VIOL_BAD_MESSAGE, -1, 0, MOAT_P_TCP, NULL,
					"moat-tls sent a malformed record");
			return;
		}
		tlsrelay_answer(px, &m);
	}
}

/**
 * tlsrelay_init() - take up the channel to moat-tls, if there is one
 * @px:	proxy
 * @fd:	our end of the socketpair, or -1 (no interception)
 *
 * Return: 0 or a negative errno.
 */
int tlsrelay_init(struct proxy *px, int fd)
{
	int rc;

	if (fd < 0)
		return 0;
	px->tls = calloc(1, sizeof(*px->tls));
	if (!px->tls)
		return -ENOMEM;
	px->tls->fd = fd;
	rc = pool_init(&px->pools[MOAT_POOL_TLS], "tls", sizeof(struct tls_splice),
		       TLSRELAY_MAX_FLOWS);
	if (rc < 0)
		return rc;
	rc = uv_poll_init(&px->loop, &px->tls->poll, fd);
	if (rc < 0)
		return rc;
	px->tls->poll_open = true;
	px->tls->poll.data = px;
	return uv_poll_start(&px->tls->poll, UV_READABLE, tlsrelay_on_channel);
}

/**
 * tlsrelay_fini() - close the channel
 * @px:	proxy
 */
void tlsrelay_fini(struct proxy *px)
{
	if (!px->tls)
		return;
	if (px->tls->poll_open)
		uv_close((uv_handle_t *)&px->tls->poll, NULL);
	px->tls->poll_open = false;
}
