/* SPDX-License-Identifier: MIT */
/*
 * tls.c - the moat-tls role: TLS interception and secret injection
 *
 * Theory of Operation
 * -------------------
 * Started by the supervisor when the policy has a "tls" section (docs/tls.md).
 * It opens no file, ever: a configuration comes on a pipe (FD_TLS_CONFIG) —
 * the policy's tls and secrets sections, then each secret's value, which no
 * other child ever holds — and the files the policy names (the CA and its
 * key, the upstream trust store) come as descriptors the supervisor opened,
 * with its OFFER on FD_TLS_SUPERVISOR (tls.h). moat-tls builds everything
 * from them (tls_offer()), answers OK with its CA certificate (the
 * supervisor writes --tls-ca-out) or REFUSED with why, and puts it in force
 * on COMMIT. The first configuration is taken so, before moat-tls confines
 * itself: an empty network namespace, no capabilities, and an allowlist
 * without socket, connect, open or exec (tls_seccomp()). A reload is the
 * same exchange, confined: the supervisor commits only once the proxy has
 * taken the new policy, so a reload either side refuses changes nothing.
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
 * the proxy resets the connection. A committed configuration that differs
 * from the one in force (by the digest of all its bytes, files included)
 * cuts the open flows (reason "reload"); one that is the same changes
 * nothing.
 *
 * Each flow is a tlsflow (memory BIOs) fed from its two sockets; a side is
 * read only while the ciphertext waiting for the other side is small, so
 * a flow holds at most a few records' worth beyond tlsflow's own bounds.
 * At most TLS_MAX_FLOWS flows at once (twice the proxy's bound, tlsmsg.h);
 * more are refused with TOO_MANY.
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

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "policy/policy.h"
#include "tls/http1.h"
#include "tls/tls.h"
#include "tls/tlsca.h"
#include "tls/tlsflow.h"
#include "tls/tlsmsg.h"

#define TLS_MAX_FLOWS (2 * TLSMSG_MAX_FLOWS) /* tlsmsg.h says why twice */
#define TLS_IO_CHUNK  16384
#define TLS_FD_LIMIT  (2 * TLS_MAX_FLOWS + 32)

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

/**
 * struct tls_config - one configuration: in force, or offered
 * @seq:	the supervisor's number for its offer
 * @policy:	the tls and secrets sections
 * @values:	each secret's value (wiped when freed)
 * @secrets:	the rewriter's view of them
 * @ca:		the interception CA (an offer without one keeps the current)
 * @up_ctx:	servers are verified with it (likewise)
 * @digest:	SHA-256 of everything the offer brought
 * @same:	an offer whose digest is the one in force
 */
struct tls_config {
	uint32_t seq;
	struct policy *policy;
	struct policy_secret_value *values;
	struct http1_secret secrets[HTTP1_MAX_SECRETS];
	unsigned n_secrets;
	struct tlsca *ca;
	SSL_CTX *up_ctx;
	uint8_t digest[SHA256_DIGEST_LENGTH];
	bool same;
};

struct tls_state {
	struct tls_config cur, next;
	struct tls_conn conn[TLS_MAX_FLOWS];
	struct tls_conn *current; /* the flow whose filter runs (http1's allowed()) */
};

static struct tls_state tls;

static void tls_conn_end(struct tls_conn *c);
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

/* ---- configuration ------------------------------------------------------- */

/*
 * Read @len bytes of the configuration pipe (the supervisor wrote the whole
 * configuration before its OFFER), into the digest @md.
 */
static void tls_read_all(int fd, void *buf, size_t len, EVP_MD_CTX *md)
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
	if (EVP_DigestUpdate(md, buf, len) != 1)
		fatalx(1, "SHA-256 of the configuration");
}

static uint32_t tls_read_u32(int fd, EVP_MD_CTX *md)
{
	uint8_t b[4];

	tls_read_all(fd, b, 4, md);
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
	       policy_secret_host_allowed(tls.cur.policy, (unsigned)secret, host);
}

static void tls_config_free(struct tls_config *k)
{
	if (k->values)
		policy_secrets_wipe(k->values, k->n_secrets);
	free(k->values);
	policy_free(k->policy);
	tlsca_free(k->ca);
	SSL_CTX_free(k->up_ctx);
	memset(k, 0, sizeof(*k));
}

/* Read file @fd whole (at most TLS_FILE_MAX bytes) into @f. Return: 0, or -errno. */
static int tls_read_file(int fd, struct tlsca_file *f, char **buf)
{
	size_t cap = 65536, len = 0;
	char *b = malloc(cap);

	while (b) {
		ssize_t n;

		if (len == cap) {
			char *nb = cap < TLS_FILE_MAX ? realloc(b, cap *= 2) : NULL;

			if (!nb) {
				explicit_bzero(b, len);
				free(b);
				return cap >= TLS_FILE_MAX ? -EFBIG : -ENOMEM;
			}
			b = nb;
		}
		n = read(fd, b + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;

			explicit_bzero(b, len);
			free(b);
			return e;
		}
		if (n == 0) {
			*buf = b;
			f->data = b;
			f->len = len;
			return 0;
		}
		len += (size_t)n;
	}
	return -ENOMEM;
}

/*
 * Build @k's CA and upstream trust store from the files' bytes @f (by
 * TLS_FILE_* bit in @files); a new CA if the policy names none and there is
 * none yet. What an offer has no file for stays as it is in force (NULL
 * here). Return: 0, or -1 with @err set.
 */
static int tls_config_build(struct tls_config *k, uint32_t files, const struct tlsca_file *f,
			    char *err, size_t errlen)
{
	if ((files & TLS_FILE_CA_CERT) && (files & TLS_FILE_CA_KEY)) {
		if (tlsca_load(&k->ca, &f[0], &f[1], err, errlen) < 0)
			return -1;
	} else if (!tls.cur.ca && tlsca_generate(&k->ca, err, errlen) < 0) {
		return -1;
	}
	if ((files & TLS_FILE_UPSTREAM) && !(k->up_ctx = tlsflow_upstream_ctx(&f[2], err, errlen)))
		return -1;
	if (!k->up_ctx && !tls.cur.up_ctx) {
		snprintf(err, errlen, "no upstream trust store (tls.upstream_ca)");
		return -1;
	}
	return 0;
}

/*
 * An OFFER: read the configuration from the pipe (the tls and secrets
 * sections, then each secret's value) and the files the supervisor opened
 * (@fd, in TLS_FILE_* order of the bits in @files), into tls.next. An offer
 * whose bytes are all the same as what is in force (the digest) is marked
 * @same: its commit changes nothing and cuts no flow.
 * Return: 0 (usable), -1 with @err set (refused: nothing changes).
 */
static int tls_offer(uint32_t seq, uint32_t files, const int *fd, char *err, size_t errlen)
{
	static const struct policy_env env;
	struct tls_config *k = &tls.next;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct tlsca_file f[3] = { { 0 } };
	char *buf[3] = { NULL, NULL, NULL };
	uint32_t len, n;
	char *json;
	int rc = -1;

	tls_config_free(k);
	k->seq = seq;
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		fatalx(1, "SHA-256 of the configuration");
	len = tls_read_u32(FD_TLS_CONFIG, md);
	if (len == 0 || len > POLICY_MAX_FILE_SIZE)
		fatalx(1, "the policy from the supervisor has a bad length");
	json = malloc(len);
	if (!json)
		fatalx(1, "out of memory");
	tls_read_all(FD_TLS_CONFIG, json, len, md);
	n = tls_read_u32(FD_TLS_CONFIG, md);
	if (n > HTTP1_MAX_SECRETS)
		fatalx(1, "the supervisor sent %u secrets", n);
	k->values = calloc(n ? n : 1, sizeof(*k->values));
	if (!k->values)
		fatalx(1, "out of memory");
	k->n_secrets = n;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t vl = tls_read_u32(FD_TLS_CONFIG, md);

		if (vl == 0 || vl > HTTP1_VALUE_MAX)
			fatalx(1, "secret %u from the supervisor has a bad length", i);
		tls_read_all(FD_TLS_CONFIG, k->values[i].value, vl, md);
		k->values[i].len = vl;
	}
	/* The pipe is read; now what the configuration says. */
	if (policy_parse(json, len, "policy", &env, &k->policy, err, errlen) < 0)
		goto out;
	if (!policy_has_tls(k->policy) || policy_secret_count(k->policy) != n) {
		snprintf(err, errlen, "the supervisor sent %u secrets for %u", n,
			 policy_secret_count(k->policy));
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		k->secrets[i] = (struct http1_secret){
			.placeholder = policy_secret_placeholder(k->policy, i),
			.value = (const uint8_t *)k->values[i].value,
			.value_len = k->values[i].len,
			.id = (int)i,
		};
	f[0].name = policy_tls_ca_cert(k->policy);
	f[1].name = policy_tls_ca_key(k->policy);
	f[2].name = policy_tls_upstream_ca(k->policy);
	for (int i = 0, at = 0; i < 3; i++) {
		int e;

		if (!(files & (1u << i)))
			continue;
		e = tls_read_file(fd[at++], &f[i], &buf[i]);
		if (e < 0) {
			snprintf(err, errlen, "%s: %s", f[i].name ? f[i].name : "a file",
				 strerror(-e));
			goto out;
		}
		/* the files count too: a CA rotated in place is a change */
		if (EVP_DigestUpdate(md, &i, sizeof(i)) != 1 ||
		    EVP_DigestUpdate(md, &f[i].len, sizeof(f[i].len)) != 1 ||
		    EVP_DigestUpdate(md, f[i].data, f[i].len) != 1)
			fatalx(1, "SHA-256 of the configuration");
	}
	if (EVP_DigestFinal_ex(md, k->digest, NULL) != 1)
		fatalx(1, "SHA-256 of the configuration");
	k->same = tls.cur.policy && !memcmp(k->digest, tls.cur.digest, sizeof(k->digest));
	rc = k->same ? 0 : tls_config_build(k, files, f, err, errlen);
out:
	for (int i = 0; i < 3; i++) {
		if (buf[i])
			explicit_bzero(buf[i], f[i].len); /* the CA key */
		free(buf[i]);
	}
	free(json);
	EVP_MD_CTX_free(md);
	if (rc < 0)
		tls_config_free(k);
	return rc;
}

/*
 * A COMMIT: put tls.next in force. Unless it is the same as what is in
 * force, the open flows are cut: their requests were checked against the
 * old secrets (the proxy resets them).
 */
static void tls_commit(void)
{
	struct tls_config *k = &tls.next;

	if (k->same) {
		tls_config_free(k);
		return;
	}
	for (int i = 0; i < TLS_MAX_FLOWS; i++) {
		if (!tls.conn[i].used)
			continue;
		tls_send(tls.conn[i].id, TLSMSG_FAIL, 0, TLSMSG_R_RELOAD);
		tls_conn_end(&tls.conn[i]);
	}
	/* what the offer had no file for stays */
	if (!k->ca) {
		k->ca = tls.cur.ca;
		tls.cur.ca = NULL;
	}
	if (!k->up_ctx) {
		k->up_ctx = tls.cur.up_ctx;
		tls.cur.up_ctx = NULL;
	}
	if (tls.cur.policy)
		log_info("configuration reloaded: %u secret%s", k->n_secrets,
			 k->n_secrets == 1 ? "" : "s");
	tls_config_free(&tls.cur);
	tls.cur = *k;
	memset(k, 0, sizeof(*k));
}

/* A reply to the supervisor: OK with the CA certificate, or REFUSED with why. */
static void tls_reply(uint32_t seq, bool ok, const char *why)
{
	static char msg[sizeof(struct tls_ctl) + TLS_CTL_TEXT_MAX];
	struct tls_ctl h = { .kind = ok ? TLS_CTL_OK : TLS_CTL_REFUSED, .seq = seq };
	struct tlsca *ca = tls.next.ca ? tls.next.ca : tls.cur.ca;
	size_t len;

	memcpy(msg, &h, sizeof(h));
	if (ok) {
		int pl = tlsca_cert_pem(ca, msg + sizeof(h), TLS_CTL_TEXT_MAX);

		if (pl < 0)
			fatalx(1, "the CA certificate does not fit a reply");
		len = (size_t)pl;
	} else {
		len = strnlen(why, TLS_CTL_TEXT_MAX - 1);
		memcpy(msg + sizeof(h), why, len);
	}
	while (send(FD_TLS_SUPERVISOR, msg, sizeof(h) + len, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			fatal("the reply to the supervisor");
}

/*
 * One message on a seqpacket socket, with up to @max descriptors (the rest
 * closed). Return: its length, 0 at EOF, -1 (errno) on error; a truncated
 * message is -1 with EMSGSIZE, its descriptors closed.
 */
static ssize_t tls_recv(int sock, void *buf, size_t len, int *fds, unsigned max, unsigned *nfds,
			int flags)
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { buf, len };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)
	};
	ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);

	*nfds = 0;
	if (n < 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < max)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
		for (unsigned i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}

/*
 * One message from the supervisor (docs/tls.md, "Configuration").
 * Return: false when the supervisor closed its end (no more reloads).
 */
static bool tls_supervisor(void)
{
	struct tls_ctl h;
	int fds[3];
	unsigned nfds;
	char err[512];
	ssize_t n = tls_recv(FD_TLS_SUPERVISOR, &h, sizeof(h), fds, 3, &nfds, 0);

	if (n < 0 && errno == EINTR)
		return true;
	if (n == 0)
		return false;
	if (n != (ssize_t)sizeof(h) ||
	    (unsigned)__builtin_popcount(h.kind == TLS_CTL_OFFER ? h.files & 7u : 0) != nfds)
		fatalx(1, "the supervisor sent a malformed message");
	switch (h.kind) {
	case TLS_CTL_OFFER:
		if (tls_offer(h.seq, h.files, fds, err, sizeof(err)) < 0) {
			log_warn("configuration refused: %s", err);
			tls_reply(h.seq, false, err);
		} else {
			tls_reply(h.seq, true, NULL);
		}
		break;
	case TLS_CTL_COMMIT:
		if (h.seq == tls.next.seq && tls.next.policy)
			tls_commit();
		break;
	case TLS_CTL_ABORT:
		if (h.seq == tls.next.seq)
			tls_config_free(&tls.next);
		break;
	default:
		fatalx(1, "the supervisor sent a message of kind %u", h.kind);
	}
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	return true;
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
	/* a reload: an offer and the descriptors of its files (read, then closed) */
	ALLOW_ARG(ctx, recvmsg, SCMP_A0(SCMP_CMP_EQ, FD_TLS_SUPERVISOR));
	ALLOW(ctx, ppoll);	    /* the loop */
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
	if (!policy_tls_intercepts(tls.cur.policy, c->name)) {
		log_warn("tls flow %u: the proxy asked for a name the policy does not intercept",
			 c->id);
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_NAME);
		tls_conn_end(c);
		return;
	}
	hc.secrets = tls.cur.secrets;
	hc.n_secrets = tls.cur.n_secrets;
	hc.allowed = tls_allowed;
	hc.arg = c;
	if (http1_init(&c->http, &hc) < 0) {
		tls_send(c->id, TLSMSG_FAIL, 0, TLSMSG_R_HTTP);
		tls_conn_end(c);
		return;
	}
	c->tf = tlsflow_new(tlsca_server_ctx(tls.cur.ca), tls.cur.up_ctx, c->name, err,
			    sizeof(err));
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
	unsigned nfds;
	struct tlsmsg m;
	ssize_t n = tls_recv(FD_TLS_CHANNEL, buf, sizeof(buf), fds, 4, &nfds, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n == 0)
		return false;
	if (n < 0 || tlsmsg_check(buf, (size_t)n, 1, &m) < 0) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		log_error("the proxy sent a malformed record; stopping");
		return false;
	}
	tls_open(&m, fds, nfds);
	return true;
}

/*
 * The loop. SIGTERM and SIGINT are blocked but inside ppoll(), which
 * unblocks them with @waitmask: a stop that comes between the check of
 * tls_stop and the wait ends the wait at once.
 */
static void tls_run(const sigset_t *waitmask)
{
	static struct pollfd pfd[4 + 2 * TLS_MAX_FLOWS];
	static struct tls_conn *who[4 + 2 * TLS_MAX_FLOWS];
	bool sup_open = true;

	while (!tls_stop) {
		int n = 4;

		pfd[0] = (struct pollfd){ .fd = FD_LIFELINE, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = FD_TLS_CHANNEL, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = sup_open ? FD_TLS_SUPERVISOR : -1,
					  .events = POLLIN };
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
		if (confine_ppoll(pfd, (nfds_t)n, NULL, waitmask) < 0)
			continue;
		for (int k = 4; k < n; k += 2) {
			short rev[2] = { pfd[k].revents, pfd[k + 1].revents };

			if (who[k]->used && (rev[0] || rev[1]))
				tls_pump(who[k], rev);
		}
		if (pfd[1].revents && !tls_channel())
			return;
		if (pfd[2].revents && !tls_supervisor())
			sup_open = false; /* the supervisor closed it: no more reloads */
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
	sigset_t stops, waitmask;

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
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_BLOCK, &stops, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * The first configuration, before confinement (OpenSSL reads its own
	 * configuration on first use): an offer, then its commit. A refused
	 * offer is the supervisor's to report; it stops moat.
	 */
	while (!tls.cur.policy)
		if (!tls_supervisor())
			fatalx(1, "the supervisor closed the configuration channel at start");
	confine_no_network();
	confine_drop_caps();
	confine_limits(TLS_FD_LIMIT);
	confine_parent_death(supervisor);
	tls_seccomp();
	log_info("intercepting for %u secret%s", tls.cur.n_secrets,
		 tls.cur.n_secrets == 1 ? "" : "s");
	tls_run(&waitmask);
	return tls_stop ? 0 : 1;
}
