/* SPDX-License-Identifier: MIT */
/*
 * tls.c - the moat-tls role: TLS interception and secret injection
 *
 * Theory of Operation
 * -------------------
 * Started by the supervisor when the policy has a "tls" section (docs/tls.md).
 * At start, before it is confined, it reads its configuration from a pipe
 * (FD_TLS_CONFIG): the normalized policy, then each secret's value, which
 * no other child ever holds. It makes or loads the CA (tlsca.c), writes the
 * CA certificate back to the supervisor (FD_TLS_CA_OUT, a pipe; it writes
 * --tls-ca-out), loads the upstream trust store, and confines itself:
 * an empty network namespace, no capabilities, no files, and an allowlist
 * without socket, connect, open or exec (tls_seccomp()).
 *
 * From then on it only answers the proxy. An OPEN record on the channel
 * (FD_TLS_CHANNEL) brings the server name and two unix stream sockets: on
 * the first it is the guest's TLS server (a leaf minted for the name), on
 * the second the server's TLS client (the name as SNI, the certificate
 * verified for it). Between them the guest's plaintext requests go through
 * the HTTP/1.1 rewriter (http1.c), which puts each secret's value in place
 * of its placeholder where the request's Host is one of the secret's hosts
 * and the connection's name is that host too. A placeholder bound anywhere
 * else stops the flow: the guest gets a 403 and the proxy a SECRET
 * violation record, whose action (block, log, terminate) is the proxy's.
 * Everything else that fails is a FAIL record with a side and a reason;
 * the proxy resets the connection. A reload that changes the tls or
 * secrets sections arrives on the configuration pipe as a whole new
 * configuration: the open flows are cut (reason "reload") and the new
 * secrets take over.
 *
 * Each flow is a tlsflow (memory BIOs) fed from its two sockets; a side is
 * read only while the ciphertext waiting for the other side is small, so
 * a flow holds at most a few records' worth beyond tlsflow's own bounds.
 * At most TLS_MAX_FLOWS flows at once; more are refused with TOO_MANY.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "policy/policy.h"
#include "tls/http1.h"
#include "tls/tls.h"
#include "tls/tlsca.h"
#include "tls/tlsflow.h"
#include "tls/tlsmsg.h"

#define TLS_MAX_FLOWS  256
#define TLS_IO_CHUNK   16384
#define TLS_CONFIG_MAX (POLICY_MAX_FILE_SIZE + 64u * (65536u + 4u) + 16u)
#define TLS_FD_LIMIT   (2 * TLS_MAX_FLOWS + 32)

/**
 * struct tls_conn - one intercepted connection
 * @id:		the proxy's flow id
 * @fd:		the guest side's socket [0] and the server side's [1]
 * @tf:		the TLS engine
 * @http:	the guest's requests, rewritten
 * @out, @out_len, @out_off: ciphertext taken from @tf, not yet written to fd[i]
 * @eof:	fd[i] said EOF (passed to @tf)
 * @shut:	fd[i] was shut for writing (its side's stream ended)
 * @opened:	OPENED was sent
 * @name:	the server name (for the secrets' host check)
 */
struct tls_conn {
	uint32_t id;
	int fd[2];
	struct tlsflow *tf;
	struct http1 http;
	uint8_t out[2][TLS_IO_CHUNK];
	size_t out_len[2], out_off[2];
	bool eof[2], shut[2], opened, used, draining;
	uint64_t injected_sent; /* requests rewritten that the proxy was told of */
	char name[TLSMSG_SNI_MAX + 1];
};

struct tls_state {
	struct policy *policy;
	struct tlsca *ca;
	SSL_CTX *guest_ctx, *up_ctx;
	struct http1_secret secrets[64];
	struct policy_secret_value *values;
	unsigned n_secrets;
	struct tls_conn conn[TLS_MAX_FLOWS];
	struct tls_conn *current; /* the flow whose filter runs (http1's allowed()) */
};

static struct tls_state tls;
static volatile sig_atomic_t tls_stop;

static void tls_on_term(int sig)
{
	(void)sig;
	tls_stop = 1;
}

/*
 * One record to the proxy. A violation or a failure must not be lost: it is
 * sent blocking (the proxy's loop reads the channel; a proxy that stopped
 * is the supervisor's to notice). OPENED and injection counts only feed
 * counters: dropped if the channel is full.
 */
static void tls_send(uint32_t flow, uint32_t type, uint32_t a, uint32_t b)
{
	uint8_t rec[TLSMSG_HDR + 8];
	size_t n = tlsmsg_build2(rec, flow, type, a, b);
	bool may_drop = type == TLSMSG_OPENED ||
			(type == TLSMSG_SECRET && b == TLSMSG_SECRET_INJECTED);

	while (send(FD_TLS_CHANNEL, rec, n, (may_drop ? MSG_DONTWAIT : 0) | MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && may_drop)
			return;
		fatal("the channel to the proxy");
	}
}

/* ---- set-up -------------------------------------------------------------- */

static void tls_read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fatalx(1, "the configuration from the supervisor is short");
		got += (size_t)n;
	}
}

static uint32_t tls_read_u32(int fd)
{
	uint8_t b[4];

	tls_read_all(fd, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/*
 * The host check of http1.c: the secret may go to @host if the policy says
 * so, and the connection really goes there (its SNI is @host too): a Host
 * header names whatever the guest likes.
 */
static bool tls_allowed(void *arg, int secret, const char *host)
{
	struct tls_conn *c = arg;

	return secret >= 0 && c && !strcasecmp(host, c->name) &&
	       policy_secret_host_allowed(tls.policy, (unsigned)secret, host);
}

/*
 * Read one configuration from the supervisor: the normalized policy, then
 * each secret's value. Return: the policy (its secrets in @values/@secrets).
 */
static struct policy *tls_read_config(struct policy_secret_value **values,
				      struct http1_secret *secrets, unsigned *n_out)
{
	static const struct policy_env env;
	struct policy *p = NULL;
	struct policy_secret_value *v;
	char err[512];
	uint32_t len = tls_read_u32(FD_TLS_CONFIG), n;
	char *json;

	if (len == 0 || len > POLICY_MAX_FILE_SIZE)
		fatalx(1, "the policy from the supervisor has a bad length");
	json = malloc(len);
	if (!json)
		fatalx(1, "out of memory");
	tls_read_all(FD_TLS_CONFIG, json, len);
	if (policy_parse(json, len, "policy", &env, &p, err, sizeof(err)) < 0 || !policy_has_tls(p))
		fatalx(1, "the policy from the supervisor: %s", err);
	free(json);
	n = tls_read_u32(FD_TLS_CONFIG);
	if (n != policy_secret_count(p) || n > HTTP1_MAX_SECRETS)
		fatalx(1, "the supervisor sent %u secrets for %u", n, policy_secret_count(p));
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		fatalx(1, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		uint32_t vl = tls_read_u32(FD_TLS_CONFIG);

		if (vl == 0 || vl > HTTP1_VALUE_MAX)
			fatalx(1, "secret %u from the supervisor has a bad length", i);
		tls_read_all(FD_TLS_CONFIG, v[i].value, vl);
		v[i].len = vl;
		secrets[i] = (struct http1_secret){ .placeholder = policy_secret_placeholder(p, i),
						    .value = (const uint8_t *)v[i].value,
						    .value_len = vl,
						    .id = (int)i };
	}
	*values = v;
	*n_out = n;
	return p;
}

static void tls_configure(void)
{
	struct policy *p;
	char err[512];

	p = tls.policy = tls_read_config(&tls.values, tls.secrets, &tls.n_secrets);
	if (policy_tls_has_ca(p) ? tlsca_load(&tls.ca, policy_tls_ca_cert(p), policy_tls_ca_key(p),
					      err, sizeof(err)) < 0 :
				   tlsca_generate(&tls.ca, err, sizeof(err)) < 0)
		fatalx(1, "the CA: %s", err);
	{
		/* The certificate (never the key) back to the supervisor, for --tls-ca-out. */
		static char pem[16384];
		int pl = tlsca_cert_pem(tls.ca, pem, sizeof(pem));

		if (pl < 0 || write(FD_TLS_CA_OUT, pem, (size_t)pl) != pl)
			fatalx(1, "cannot hand the CA certificate to the supervisor");
		close(FD_TLS_CA_OUT);
	}
	tls.guest_ctx = tlsca_server_ctx(tls.ca);
	tls.up_ctx = tlsflow_upstream_ctx(policy_tls_upstream_ca(p), err, sizeof(err));
	if (!tls.guest_ctx || !tls.up_ctx)
		fatalx(1, "TLS contexts: %s", tls.up_ctx ? "the server side" : err);
}

/* The calls moat-tls makes once it serves flows, each with its reason. */
static void tls_seccomp(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	ALLOW(ctx, read);     /* the flows' sockets */
	ALLOW(ctx, write);    /* the flows' sockets, stderr */
	ALLOW(ctx, close);    /* flows that end */
	ALLOW(ctx, shutdown); /* a side's stream ended */
	ALLOW(ctx, sendto);   /* records to the proxy (send) */
	ALLOW_ARG(ctx, recvmsg, SCMP_A0(SCMP_CMP_EQ, FD_TLS_CHANNEL)); /* OPEN and its sockets */
	ALLOW(ctx, ppoll);					       /* the loop */
	ALLOW(ctx, clock_gettime);  /* certificate validity, the vDSO's fallback */
	ALLOW(ctx, rt_sigprocmask); /* ppoll's mask handling */
	ALLOW(ctx, getrandom);	    /* OpenSSL's DRBG, leaf serials */
	ALLOW(ctx, getpid);	    /* OpenSSL's DRBG checks for a fork on every use */
	ALLOW(ctx, brk);	    /* malloc (OpenSSL) */
	/* malloc of large blocks: anonymous and never executable */
	ALLOW_ARG(ctx, mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
		  SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
	ALLOW(ctx, munmap);
	ALLOW(ctx, mremap);
	ALLOW(ctx, madvise);
	ALLOW(ctx, futex); /* OpenSSL's locks (one thread: uncontended) */
	confine_seccomp_load(ctx);
}

/* ---- flows ---------------------------------------------------------------- */

static void tls_conn_end(struct tls_conn *c)
{
	for (int i = 0; i < 2; i++)
		if (c->fd[i] >= 0)
			close(c->fd[i]);
	if (c->tf)
		tlsflow_free(c->tf);
	http1_fini(&c->http);
	memset(c, 0, offsetof(struct tls_conn, out));
	c->fd[0] = c->fd[1] = -1;
	memset(c->out_len, 0, sizeof(c->out_len));
	memset(c->out_off, 0, sizeof(c->out_off));
	memset(c->eof, 0, sizeof(c->eof));
	memset(c->shut, 0, sizeof(c->shut));
	c->opened = c->used = c->draining = false;
	c->injected_sent = 0;
}

static const char tls_forbidden[] =
	"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 52\r\n"
	"Connection: close\r\n\r\nmoat: a secret was sent to a host it is not for.\r\n\r\n";

static int tls_filter(void *arg, const uint8_t *in, size_t len,
		      int (*emit)(void *, const uint8_t *, size_t), void *emit_arg)
{
	struct tls_conn *c = arg;
	ssize_t n = http1_feed(&c->http, in, len, emit, emit_arg);
	int secret = -1;
	const char *why;
	enum http1_verdict v;

	if (n == (ssize_t)len && http1_verdict(&c->http, NULL, NULL) == HTTP1_OK)
		return 0;
	v = http1_verdict(&c->http, &secret, &why);
	if (v == HTTP1_VIOLATION) {
		tls_send(c->id, TLSMSG_SECRET, (uint32_t)secret, TLSMSG_SECRET_VIOLATION);
		tlsflow_reply_guest(c->tf, tls_forbidden, sizeof(tls_forbidden) - 1);
		return -EPERM;
	}
	log_debug("tls flow %u: request refused: %s", c->id, why ? why : "?");
	return -EPROTO;
}

static void tls_open(const struct tlsmsg *m, const int *fds, unsigned nfds)
{
	struct tls_conn *c = NULL;
	struct http1_cfg hc = { 0 };
	char err[256];

	for (int i = 0; i < TLS_MAX_FLOWS && !c; i++)
		if (!tls.conn[i].used)
			c = &tls.conn[i];
	if (nfds != TLSMSG_FDS || !c) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		tls_send(m->flow, TLSMSG_FAIL, 0,
			 nfds != TLSMSG_FDS ? TLSMSG_R_IO : TLSMSG_R_TOO_MANY);
		return;
	}
	c->used = true;
	c->id = m->flow;
	c->fd[0] = fds[0];
	c->fd[1] = fds[1];
	memcpy(c->name, m->payload, m->len);
	c->name[m->len] = '\0';
	/* The proxy's word is checked too: only names the policy intercepts. */
	if (!policy_tls_intercepts(tls.policy, c->name)) {
		log_warn("tls flow %u: the proxy asked for a name the policy does not intercept",
			 c->id);
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_NAME);
		tls_conn_end(c);
		return;
	}
	hc.secrets = tls.secrets;
	hc.n_secrets = tls.n_secrets;
	hc.allowed = tls_allowed;
	hc.arg = c;
	if (http1_init(&c->http, &hc) < 0) {
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_HTTP);
		tls_conn_end(c);
		return;
	}
	c->tf = tlsflow_new(tls.guest_ctx, tls.up_ctx, c->name, err, sizeof(err));
	if (!c->tf) {
		log_debug("tls flow %u: %s", c->id, err);
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_NAME);
		tls_conn_end(c);
		return;
	}
	tlsflow_set_filter(c->tf, tls_filter, c);
}

/* Map the engine's reasons onto the proxy's (side 0 guest, 1 server). */
static uint32_t tls_reason(enum tlsflow_reason r)
{
	switch (r) {
	case TLSFLOW_R_UPSTREAM_VERIFY:
		return TLSMSG_R_VERIFY;
	case TLSFLOW_R_FILTER_REFUSED:
	case TLSFLOW_R_FILTER_OVERFLOW:
		return TLSMSG_R_HTTP;
	case TLSFLOW_R_GUEST_CLOSED:
	case TLSFLOW_R_UPSTREAM_CLOSED:
		return TLSMSG_R_IO;
	default:
		return TLSMSG_R_HANDSHAKE;
	}
}

/* Write what is pending toward side @i. Return: false if the socket failed. */
static bool tls_flush(struct tls_conn *c, int i)
{
	for (;;) {
		ssize_t n;

		if (c->out_off[i] == c->out_len[i]) {
			c->out_off[i] = 0;
			c->out_len[i] = i ? tlsflow_to_upstream(c->tf, c->out[i], TLS_IO_CHUNK) :
					    tlsflow_to_guest(c->tf, c->out[i], TLS_IO_CHUNK);
			if (!c->out_len[i])
				return true;
		}
		n = write(c->fd[i], c->out[i] + c->out_off[i], c->out_len[i] - c->out_off[i]);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->out_off[i] += (size_t)n;
	}
}

/* Read side @i once into the engine. Return: false if the socket failed. */
static bool tls_fill(struct tls_conn *c, int i)
{
	uint8_t buf[TLS_IO_CHUNK];
	ssize_t n;

	if (c->eof[i] || tlsflow_unread(c->tf, (enum tlsflow_side)i) > TLS_IO_CHUNK)
		return true;
	n = read(c->fd[i], buf, sizeof(buf));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0) {
		c->eof[i] = true;
		if (i)
			tlsflow_eof_from_upstream(c->tf);
		else
			tlsflow_eof_from_guest(c->tf);
		return true;
	}
	return (i ? tlsflow_from_upstream(c->tf, buf, (size_t)n) :
		    tlsflow_from_guest(c->tf, buf, (size_t)n)) >= 0 ||
	       tlsflow_state(c->tf) == TLSFLOW_FAILED;
}

/* After a 403: send what is left of it, shut, and drop what the guest sends until it closes. */
static void tls_drain(struct tls_conn *c, const short *revents)
{
	if (revents[0] & (POLLIN | POLLHUP | POLLERR)) {
		uint8_t buf[TLS_IO_CHUNK];
		ssize_t n = read(c->fd[0], buf, sizeof(buf));

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			tls_conn_end(c);
			return;
		}
	}
	if (!tls_flush(c, 0)) {
		tls_conn_end(c);
		return;
	}
	if (!c->shut[0] && c->out_off[0] == c->out_len[0]) {
		c->shut[0] = true;
		shutdown(c->fd[0], SHUT_WR);
	}
}

/* Move what can move on @c; end it when it is over. */
static void tls_pump(struct tls_conn *c, const short *revents)
{
	bool ok = true;

	if (c->draining) {
		tls_drain(c, revents);
		return;
	}

	for (int i = 0; i < 2 && ok; i++)
		if (revents[i] & (POLLIN | POLLHUP | POLLERR))
			ok = tls_fill(c, i);
	for (int i = 0; i < 2 && ok; i++)
		ok = tls_flush(c, i);
	if (!ok) {
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_IO);
		tls_conn_end(c);
		return;
	}
	switch (tlsflow_state(c->tf)) {
	case TLSFLOW_OPEN:
		if (!c->opened) {
			c->opened = true;
			tls_send(c->id, TLSMSG_OPENED, 0, 0);
		}
		break;
	case TLSFLOW_FAILED: {
		int side = 0;

		(void)tlsflow_error(c->tf, &side);
		if (tlsflow_reason(c->tf) == TLSFLOW_R_FILTER_REFUSED &&
		    http1_verdict(&c->http, NULL, NULL) == HTTP1_VIOLATION) {
			/*
			 * The 403 must reach the guest: the server side is cut now, the
			 * guest side is shut after the answer and read (and dropped)
			 * until the guest closes — a close with its request body still
			 * unread would make the kernel send a reset instead.
			 */
			close(c->fd[1]);
			c->fd[1] = -1;
			c->eof[1] = c->shut[1] = true;
			c->draining = true;
			tls_drain(c, (const short[2]){ 0, 0 });
			return;
		}
		(void)tls_flush(c, 0);
		tls_send(c->id, TLSMSG_FAIL, side ? 1 : 0, tls_reason(tlsflow_reason(c->tf)));
		tls_conn_end(c);
		return;
	}
	default:
		break;
	}
	if (c->http.stats.rewritten > c->injected_sent) {
		/* one record for all the requests rewritten since the last: a = how many */
		uint64_t k = c->http.stats.rewritten - c->injected_sent;

		tls_send(c->id, TLSMSG_SECRET, k > UINT32_MAX ? UINT32_MAX : (uint32_t)k,
			 TLSMSG_SECRET_INJECTED);
		c->injected_sent = c->http.stats.rewritten;
	}
	for (int i = 0; i < 2; i++) {
		bool done = i ? tlsflow_upstream_done(c->tf) : tlsflow_guest_done(c->tf);

		if (done && !c->shut[i] && c->out_off[i] == c->out_len[i]) {
			c->shut[i] = true;
			shutdown(c->fd[i], SHUT_WR);
		}
	}
	if (c->shut[0] && c->shut[1])
		tls_conn_end(c);
}

/* One record from the proxy. Return: false if the channel is gone or broken. */
static bool tls_channel(void)
{
	uint8_t buf[TLSMSG_MAX + 1];
	int fds[4];
	unsigned nfds = 0;
	union {
		char b[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)
	};
	struct tlsmsg m;
	ssize_t n = recvmsg(FD_TLS_CHANNEL, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0)
		return false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds < 4)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if ((mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || tlsmsg_check(buf, (size_t)n, 1, &m) < 0) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		log_error("the proxy sent a malformed record; stopping");
		return false;
	}
	tls_open(&m, fds, nfds);
	return true;
}

/*
 * A reload changed the tls or secrets sections: the open flows' requests
 * were checked against the old secrets, so they are cut (the proxy resets
 * them), and the new configuration takes over.
 */
static void tls_reload(void)
{
	struct policy_secret_value *nv;
	struct http1_secret ns[HTTP1_MAX_SECRETS] = { 0 };
	unsigned nn;
	struct policy *np = tls_read_config(&nv, ns, &nn);

	for (int i = 0; i < TLS_MAX_FLOWS; i++) {
		if (!tls.conn[i].used)
			continue;
		tls_send(tls.conn[i].id, TLSMSG_FAIL, 0, TLSMSG_R_RELOAD);
		tls_conn_end(&tls.conn[i]);
	}
	policy_secrets_wipe(tls.values, tls.n_secrets);
	free(tls.values);
	policy_free(tls.policy);
	tls.policy = np;
	tls.values = nv;
	memcpy(tls.secrets, ns, sizeof(ns));
	tls.n_secrets = nn;
	log_info("configuration reloaded: %u secret%s", nn, nn == 1 ? "" : "s");
}

static void tls_run(void)
{
	static struct pollfd pfd[4 + 2 * TLS_MAX_FLOWS];
	static struct tls_conn *who[4 + 2 * TLS_MAX_FLOWS];
	bool cfg_open = true;

	while (!tls_stop) {
		int n = 4;

		pfd[0] = (struct pollfd){ .fd = FD_LIFELINE, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = FD_TLS_CHANNEL, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = cfg_open ? FD_TLS_CONFIG : -1, .events = POLLIN };
		pfd[3] = (struct pollfd){ .fd = -1 }; /* keeps the flows' pairs aligned */
		for (int i = 0; i < TLS_MAX_FLOWS; i++) {
			struct tls_conn *c = &tls.conn[i];

			if (!c->used)
				continue;
			for (int s = 0; s < 2; s++) {
				short ev = 0;
				bool room = c->draining ||
					    tlsflow_unread(c->tf, (enum tlsflow_side)s) <=
						    TLS_IO_CHUNK;

				/* Read a side only while the engine takes more (no busy loop
				 * on a readable socket we would not read). */
				if (!c->eof[s] && room)
					ev |= POLLIN;
				if (c->out_off[s] < c->out_len[s])
					ev |= POLLOUT;
				/* a side that is finished both ways is not watched any more */
				pfd[n] = (struct pollfd){ .fd = c->fd[s] < 0 || (c->eof[s] &&
										 c->shut[s] &&
										 !c->draining) ?
									-1 :
									c->fd[s],
							  .events = ev };
				who[n++] = c;
			}
		}
		if (confine_ppoll(pfd, (nfds_t)n, NULL) < 0)
			continue;
		for (int k = 4; k < n; k += 2) {
			short rev[2] = { pfd[k].revents, pfd[k + 1].revents };

			if (who[k]->used && (rev[0] || rev[1]))
				tls_pump(who[k], rev);
		}
		if (pfd[1].revents && !tls_channel())
			return;
		if (pfd[2].revents & POLLIN)
			tls_reload();
		else if (pfd[2].revents)
			cfg_open = false; /* the supervisor closed it: no more reloads */
	}
}

/**
 * tls_main() - entry of the moat-tls role
 * @supervisor:	the supervisor's pid (our parent), from the command line
 *
 * Context: a freshly exec'd child of the supervisor, fds as in common/fds.h
 * (up to FD_LAST_TLS).
 * Return: exit status (0 on a requested stop). Exits 1 when the supervisor
 * is gone, the configuration cannot be used, or the channel breaks.
 */
int tls_main(pid_t supervisor)
{
	struct sigaction sa = { .sa_handler = tls_on_term };

	prctl(PR_SET_NAME, "moat-tls");
	/* Before any secret is read: no core file and no ptrace by our uid. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	log_init("moat-tls", LOG_LVL_INFO);
	confine_parent_death(supervisor);
	confine_close_fds(FD_LAST_TLS);
	/* The region and the eventfds are the other roles': moat-tls writes none of them. */
	for (int fd = FD_REGION; fd <= FD_EFD_PROXY; fd++)
		close(fd);
	for (int i = 0; i < TLS_MAX_FLOWS; i++)
		tls.conn[i].fd[0] = tls.conn[i].fd[1] = -1;
	tls_configure();
	confine_no_network();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	confine_drop_caps();
	confine_limits(TLS_FD_LIMIT);
	confine_parent_death(supervisor);
	tls_seccomp();
	log_info("intercepting for %u secret%s", tls.n_secrets, tls.n_secrets == 1 ? "" : "s");
	tls_run();
	return tls_stop ? 0 : 1;
}
