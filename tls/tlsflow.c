/* SPDX-License-Identifier: MIT */
/*
 * tlsflow.c - one intercepted TLS connection: the guest's TLS terminated,
 * the server's TLS opened and verified, the plaintext pumped between them
 *
 * Theory of Operation
 * -------------------
 * moat-tls has no sockets: the proxy owns both TCP connections and relays
 * their bytes (tls/tlsmsg.h). A tlsflow is the TLS state of one
 * intercepted connection, two OpenSSL SSL objects on memory BIOs: toward
 * the guest a TLS server (the SSL_CTX of tlsca_server_ctx(), which mints
 * the leaf for the SNI), toward the server a TLS client (the SSL_CTX of
 * tlsflow_upstream_ctx()). Ciphertext goes in through tlsflow_from_guest()
 * and tlsflow_from_upstream(), comes out through tlsflow_to_guest() and
 * tlsflow_to_upstream(); everything in between happens inside those calls.
 *
 * The server's side. tlsflow_new() starts the client handshake at once,
 * so the ClientHello is in tlsflow_to_upstream() before the guest's
 * handshake is even read. The client sends the flow's name as SNI (an IP
 * literal is sent no SNI, RFC 6066) and verifies the server's certificate
 * against the bundle read by tlsflow_upstream_ctx(), for that name
 * (SSL_set1_host(), no partial wildcards; an IP literal against the
 * certificate's IP addresses). ALPN offered: "http/1.1" only. A
 * certificate that does not verify fails the handshake: TLSFLOW_FAILED,
 * side upstream, "upstream certificate does not verify", with OpenSSL's
 * verify error as the detail. There is no fallback and no downgrade: a
 * flow whose upstream context does not verify is refused by tlsflow_new().
 *
 * The guest's side runs its handshake in parallel. Its name must be the
 * flow's (tlsca_expect_name()): a guest whose SNI names another host fails
 * its handshake. Plaintext moves only once both handshakes are done and
 * the server's certificate verified (TLSFLOW_OPEN): until then the guest's
 * ciphertext after its handshake is kept as it came, undecrypted, in the
 * guest's input buffer (bounded by TLSFLOW_IN_MAX), so nothing the guest
 * sends can reach a server that was not verified, not even by a bug in the
 * order of things here.
 *
 * Once open, the guest's plaintext goes, in order and in pieces of at most
 * one record, through the filter (tlsflow_set_filter(); moat puts its
 * HTTP/1.1 secret rewriter there); what the filter emits is encrypted
 * toward the server. A filter that refuses fails the flow ("filter
 * refused", side guest); one that answers the guest itself (a 403 for a
 * secret sent to the wrong host) calls tlsflow_reply_guest() first, and
 * the guest gets that answer and a close_notify instead of the server's.
 * Without a filter the bytes pass unchanged. The server's plaintext goes
 * to the guest unchanged.
 *
 * Ends. A close_notify from one side ends its plaintext stream and is
 * passed on as a close_notify to the other; a FIN without close_notify
 * (tlsflow_eof_from_*() while no close_notify came) ends it too, and is
 * passed on as a FIN only, so the other end sees the truncation it would
 * have seen. Either way tlsflow_guest_done() / tlsflow_upstream_done()
 * then say when the caller may shut down its writing side of that
 * connection. Bytes a side sends after its close_notify are discarded.
 * Renegotiation is refused (both contexts set SSL_OP_NO_RENEGOTIATION).
 *
 * Flow control: the caller's contract.
 *  1. tlsflow_from_guest() / tlsflow_from_upstream() take what fits: the
 *     return value is the number of bytes taken, which may be fewer than
 *     offered; -ENOBUFS when none fit. Keep the rest, stop reading that
 *     connection (TCP back-pressure) and offer it again after draining
 *     (2.). -EPIPE: that side takes nothing more (the flow failed, or
 *     tlsflow_eof_from_*() was called for it).
 *  2. After every call into a flow (from_*, eof_*, to_*), drain both
 *     tlsflow_to_guest() and tlsflow_to_upstream() until they return 0,
 *     or as far as the connections take it: each drain makes room, and the
 *     flow resumes decrypting (so a drain can yield more to drain, and can
 *     move the state).
 *  3. Decryption stops while TLSFLOW_OUT_MAX or more ciphertext is pending
 *     toward either side; then the input buffers fill up to TLSFLOW_IN_MAX
 *     each and from_* returns -ENOBUFS. A caller that does not drain is
 *     thus never owed more than TLSFLOW_IN_MAX of input per side, and the
 *     flow never holds more than TLSFLOW_OUT_MAX plus one record, or plus
 *     what the filter emitted for one piece, of output per side. The
 *     filter's output is bounded too: pending output toward the server
 *     beyond TLSFLOW_EMIT_MAX fails the flow ("filter output exceeds the
 *     flow's bound") rather than grow.
 *  4. tlsflow_guest_done() (tlsflow_upstream_done()): nothing more will be
 *     written toward that side and its output is drained: shut down the
 *     writing half of that connection. TLSFLOW_CLOSED or TLSFLOW_FAILED
 *     with both done: close both connections and tlsflow_free(). On
 *     FAILED, the pending output may end in an alert for the failing side;
 *     the connections should then be reset, not closed cleanly, since a
 *     clean close could read as a complete response.
 *  5. Time is the caller's: a flow stuck in HANDSHAKE, or one whose peer
 *     stops reading, stays so until the caller gives up on it.
 * OpenSSL's own buffers (a record or two per SSL) come on top.
 *
 * Every byte from either side is hostile: any error makes the flow
 * TLSFLOW_FAILED (which it stays) with the side at fault, a stable reason
 * (enum tlsflow_reason) and OpenSSL's words as the detail. The OpenSSL
 * error queue is cleared before every OpenSSL call that reports through it
 * and before each function returns, so no flow's errors are read as
 * another's.
 *
 * Context: moat-tls, which opens no file: tlsflow_upstream_ctx() takes the
 * CA bundle's bytes. Single-threaded. Errors
 * are negative errnos; tlsflow_upstream_ctx() and tlsflow_new() return
 * NULL with a reason in @err.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "tls/tlsca.h"
#include "tls/tlsflow.h"

struct tlsflow {
	SSL *ssl[2];	     /* [TLSFLOW_GUEST] a server, [TLSFLOW_UPSTREAM] a client */
	BIO *in[2], *out[2]; /* their memory BIOs (owned by ssl[]): from / to that side */
	bool open[2];	     /* handshake done (upstream: and its certificate verified) */
	bool fin[2];	     /* tlsflow_eof_from_*(): nothing more comes from that side */
	bool ended[2];	     /* that side's plaintext stream has ended */
	bool busy;	     /* inside tlsflow_pump() (a filter calling back in) */
	bool replied;	     /* tlsflow_reply_guest(): the guest's answer was moat's */
	enum tlsflow_state state;
	enum tlsflow_reason reason;
	int side; /* at fault, when FAILED */
	char detail[TLSFLOW_DETAIL_MAX];
	tlsflow_filter_fn filter;
	void *filter_arg;
	char name[TLSCA_NAME_MAX + 1];
};

static const char *const tlsflow_reasons[TLSFLOW_R_COUNT] = {
	[TLSFLOW_R_NONE] = "no failure",
	[TLSFLOW_R_GUEST_HANDSHAKE] = "guest handshake failed",
	[TLSFLOW_R_GUEST_CLOSED] = "guest closed during the handshake",
	[TLSFLOW_R_GUEST_RECORD] = "guest sent a bad record",
	[TLSFLOW_R_FILTER_REFUSED] = "filter refused",
	[TLSFLOW_R_FILTER_OVERFLOW] = "filter output exceeds the flow's bound",
	[TLSFLOW_R_UPSTREAM_VERIFY] = "upstream certificate does not verify",
	[TLSFLOW_R_UPSTREAM_HANDSHAKE] = "upstream handshake failed",
	[TLSFLOW_R_UPSTREAM_CLOSED] = "upstream closed during the handshake",
	[TLSFLOW_R_UPSTREAM_RECORD] = "upstream sent a bad record",
	[TLSFLOW_R_INTERNAL] = "internal error",
};

/* Write a reason into @err (when there is one). */
static void __attribute__((format(printf, 3, 4)))
tlsflow_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

/* OpenSSL's reason for the first error on the queue, "" if none. */
static const char *tlsflow_ossl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_error());

	return r ? r : "";
}

/*
 * The flow fails, for good: @side at fault, @reason, and @detail (NULL:
 * OpenSSL's reason for the error on the queue). The first failure sticks.
 */
static void tlsflow_fail(struct tlsflow *f, int side, enum tlsflow_reason reason,
			 const char *detail)
{
	if (f->state != TLSFLOW_FAILED) {
		f->state = TLSFLOW_FAILED;
		f->side = side;
		f->reason = reason;
		snprintf(f->detail, sizeof(f->detail), "%s",
			 detail ? detail : tlsflow_ossl_reason());
	}
	ERR_clear_error();
}

/* Encrypt @len bytes toward @to (the BIO is memory: it takes all, or fails). */
static int tlsflow_write(struct tlsflow *f, int to, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	if (len == 0)
		return 0;
	ERR_clear_error();
	if (SSL_write_ex(f->ssl[to], buf, len, &done) != 1 || done != len) {
		tlsflow_fail(f, to, TLSFLOW_R_INTERNAL, NULL);
		return -EIO;
	}
	return 0;
}

/* The filter's emit(): toward the server, within TLSFLOW_EMIT_MAX. */
static int tlsflow_emit(void *arg, const uint8_t *buf, size_t len)
{
	struct tlsflow *f = arg;
	size_t pend;

	if (f->state != TLSFLOW_OPEN || f->replied)
		return -EPIPE;
	pend = BIO_ctrl_pending(f->out[TLSFLOW_UPSTREAM]);
	if (pend > TLSFLOW_EMIT_MAX || len > TLSFLOW_EMIT_MAX - pend) {
		tlsflow_fail(f, TLSFLOW_GUEST, TLSFLOW_R_FILTER_OVERFLOW, "");
		return -ENOBUFS;
	}
	return tlsflow_write(f, TLSFLOW_UPSTREAM, buf, len);
}

/* Advance @side's handshake; on success it is open. */
static void tlsflow_handshake(struct tlsflow *f, int side)
{
	SSL *s = f->ssl[side];
	long v;
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(s);
	if (r == 1) {
		/* SSL_VERIFY_PEER already failed the handshake on a bad
		 * certificate; this only makes sure of it. */
		if (side == TLSFLOW_UPSTREAM &&
		    (SSL_get_verify_result(s) != X509_V_OK || !SSL_get0_peer_certificate(s))) {
			tlsflow_fail(f, side, TLSFLOW_R_UPSTREAM_VERIFY, "no verified certificate");
			return;
		}
		f->open[side] = true;
		return;
	}
	switch (SSL_get_error(s, r)) {
	case SSL_ERROR_WANT_READ:
		if (f->fin[side])
			tlsflow_fail(f, side,
				     side == TLSFLOW_GUEST ? TLSFLOW_R_GUEST_CLOSED :
							     TLSFLOW_R_UPSTREAM_CLOSED,
				     "");
		return;
	default:
		v = side == TLSFLOW_UPSTREAM ? SSL_get_verify_result(s) : X509_V_OK;
		if (v != X509_V_OK)
			tlsflow_fail(f, side, TLSFLOW_R_UPSTREAM_VERIFY,
				     X509_verify_cert_error_string(v));
		else
			tlsflow_fail(f, side,
				     side == TLSFLOW_GUEST ? TLSFLOW_R_GUEST_HANDSHAKE :
							     TLSFLOW_R_UPSTREAM_HANDSHAKE,
				     NULL);
		return;
	}
}

/* @from's plaintext stream ended, with close_notify when @clean: pass it on. */
static void tlsflow_end(struct tlsflow *f, int from, bool clean)
{
	int to = !from;

	f->ended[from] = true;
	if (!clean)
		return; /* a FIN only: the caller passes it on (tlsflow_*_done()) */
	ERR_clear_error();
	if (SSL_shutdown(f->ssl[to]) < 0)
		tlsflow_fail(f, to, TLSFLOW_R_INTERNAL, NULL);
}

/* Room to decrypt: neither side has TLSFLOW_OUT_MAX of output pending. */
static bool tlsflow_room(const struct tlsflow *f)
{
	return BIO_ctrl_pending(f->out[TLSFLOW_GUEST]) < TLSFLOW_OUT_MAX &&
	       BIO_ctrl_pending(f->out[TLSFLOW_UPSTREAM]) < TLSFLOW_OUT_MAX;
}

/* Decrypt one record's worth from @from and pass it on. Return: whether anything happened. */
static bool tlsflow_move(struct tlsflow *f, int from)
{
	uint8_t buf[TLSFLOW_CHUNK];
	size_t n = 0;
	int r;

	ERR_clear_error();
	if (SSL_read_ex(f->ssl[from], buf, sizeof(buf), &n) == 1) {
		if (from == TLSFLOW_UPSTREAM) {
			tlsflow_write(f, TLSFLOW_GUEST, buf, n);
		} else if (!f->filter) {
			tlsflow_emit(f, buf, n);
		} else {
			r = f->filter(f->filter_arg, buf, n, tlsflow_emit, f);
			if ((r < 0 || f->replied) && f->state != TLSFLOW_FAILED)
				tlsflow_fail(f, TLSFLOW_GUEST, TLSFLOW_R_FILTER_REFUSED,
					     r < 0 ? strerror(-r) : "replied to the guest");
		}
		return true;
	}
	switch (SSL_get_error(f->ssl[from], 0)) {
	case SSL_ERROR_WANT_READ:
		if (!f->fin[from])
			return false;
		tlsflow_end(f, from, false); /* a FIN, or a record cut short by one */
		return true;
	case SSL_ERROR_ZERO_RETURN:
		tlsflow_end(f, from, true);
		return true;
	default:
		tlsflow_fail(f, from,
			     from == TLSFLOW_GUEST ? TLSFLOW_R_GUEST_RECORD :
						     TLSFLOW_R_UPSTREAM_RECORD,
			     NULL);
		return false;
	}
}

/* Do everything the bytes in and the room out allow. */
static void tlsflow_pump(struct tlsflow *f)
{
	bool progress;

	if (f->busy || f->state == TLSFLOW_FAILED || f->state == TLSFLOW_CLOSED)
		return;
	f->busy = true;
	if (!f->open[TLSFLOW_UPSTREAM])
		tlsflow_handshake(f, TLSFLOW_UPSTREAM);
	if (f->state != TLSFLOW_FAILED && !f->open[TLSFLOW_GUEST])
		tlsflow_handshake(f, TLSFLOW_GUEST);
	if (f->state == TLSFLOW_HANDSHAKE && f->open[TLSFLOW_GUEST] && f->open[TLSFLOW_UPSTREAM])
		f->state = TLSFLOW_OPEN;
	while (f->state == TLSFLOW_OPEN) {
		progress = false;
		if (!f->ended[TLSFLOW_GUEST] && tlsflow_room(f) && tlsflow_move(f, TLSFLOW_GUEST))
			progress = true;
		if (f->state == TLSFLOW_OPEN && !f->ended[TLSFLOW_UPSTREAM] && tlsflow_room(f) &&
		    tlsflow_move(f, TLSFLOW_UPSTREAM))
			progress = true;
		if (f->state == TLSFLOW_OPEN && f->ended[TLSFLOW_GUEST] &&
		    f->ended[TLSFLOW_UPSTREAM])
			f->state = TLSFLOW_CLOSED;
		if (!progress)
			break;
	}
	f->busy = false;
	ERR_clear_error();
}

/**
 * tlsflow_upstream_ctx() - the SSL_CTX moat-tls opens servers' TLS with
 * @bundle:	the PEM file of the CA certificates servers are verified
 *		against: its bytes (moat-tls read them from a descriptor the
 *		supervisor opened)
 * @err:	a reason naming the file, on error (may be NULL)
 * @errlen:	bytes at @err
 *
 * TLS 1.2 or 1.3, SSL_VERIFY_PEER against the bundle only (not OpenSSL's
 * default paths), ALPN "http/1.1", no renegotiation, no session cache.
 * Each flow adds the server's name (tlsflow_new()).
 *
 * Context: moat-tls; opens no file.
 * Return: the context (SSL_CTX_free() it once its flows are freed), or NULL
 * with @err set.
 */
SSL_CTX *tlsflow_upstream_ctx(const struct tlsca_file *bundle, char *err, size_t errlen)
{
	static const unsigned char alpn[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
	STACK_OF(X509_INFO) *infos = NULL;
	X509_STORE *store;
	SSL_CTX *ctx;
	BIO *b;
	int certs = 0;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tlsflow_errf(err, errlen, "cannot make the upstream TLS context: %s",
			     tlsflow_ossl_reason());
		ERR_clear_error();
		return NULL;
	}
	store = SSL_CTX_get_cert_store(ctx);
	b = bundle->len <= INT_MAX ? BIO_new_mem_buf(bundle->data, (int)bundle->len) : NULL;
	if (b)
		infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
	BIO_free(b);
	if (!infos) {
		tlsflow_errf(err, errlen, "%s: cannot read CA certificates: %s", bundle->name,
			     tlsflow_ossl_reason());
		goto fail;
	}
	for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *xi = sk_X509_INFO_value(infos, i);

		if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
			certs++;
		if (xi->crl)
			(void)X509_STORE_add_crl(store, xi->crl);
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (certs == 0) {
		tlsflow_errf(err, errlen, "%s: no CA certificate in it", bundle->name);
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0) { /* 0 is success */
		tlsflow_errf(err, errlen, "cannot configure the upstream TLS context: %s",
			     tlsflow_ossl_reason());
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

/* One side's SSL on two fresh memory BIOs. */
static int tlsflow_ssl(struct tlsflow *f, int side, SSL_CTX *ctx)
{
	BIO *in, *out;

	f->ssl[side] = SSL_new(ctx);
	if (!f->ssl[side])
		return -ENOMEM;
	in = BIO_new(BIO_s_mem());
	out = BIO_new(BIO_s_mem());
	if (!in || !out) {
		BIO_free(in);
		BIO_free(out);
		return -ENOMEM;
	}
	/* An empty BIO reads as "try again" (BIO_s_mem()'s default), never
	 * as EOF: the end of a side is tlsflow_eof_from_*()'s to say. */
	SSL_set_bio(f->ssl[side], in, out);
	f->in[side] = in;
	f->out[side] = out;
	return 0;
}

/**
 * tlsflow_new() - a flow for one intercepted connection
 * @guest_side:		the guest's TLS server context (tlsca_server_ctx())
 * @upstream_side:	the server's TLS client context (tlsflow_upstream_ctx());
 *			it must verify (SSL_VERIFY_PEER), or the flow is refused
 * @sni:		the server's name: a DNS name (sent as SNI and verified)
 *			or an IP literal (verified against the certificate's
 *			addresses), as tlsca_name_norm() accepts; the guest's
 *			SNI must be the same name
 * @err:		a reason, on error (may be NULL)
 * @errlen:		bytes at @err
 *
 * The upstream handshake starts now: the ClientHello is ready in
 * tlsflow_to_upstream(). Both contexts are referenced by the flow; the
 * guest-side one's tlsca must outlive it.
 *
 * Return: the flow (tlsflow_free() it), or NULL with @err set.
 */
struct tlsflow *tlsflow_new(SSL_CTX *guest_side, SSL_CTX *upstream_side, const char *sni, char *err,
			    size_t errlen)
{
	struct tlsflow *f;
	SSL *u;
	int kind;

	ERR_clear_error();
	if (!guest_side || !upstream_side || !sni) {
		tlsflow_errf(err, errlen, "a TLS context or the server name is missing");
		return NULL;
	}
	if (!(SSL_CTX_get_verify_mode(upstream_side) & SSL_VERIFY_PEER)) {
		tlsflow_errf(err, errlen, "the upstream TLS context does not verify servers");
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		tlsflow_errf(err, errlen, "out of memory");
		return NULL;
	}
	kind = tlsca_name_norm(sni, f->name, sizeof(f->name));
	if (kind < 0) {
		tlsflow_errf(err, errlen, "not a server name moat intercepts: \"%.*s\"",
			     (int)TLSCA_NAME_MAX, sni);
		goto fail;
	}
	if (tlsflow_ssl(f, TLSFLOW_GUEST, guest_side) < 0 ||
	    tlsflow_ssl(f, TLSFLOW_UPSTREAM, upstream_side) < 0 ||
	    tlsca_expect_name(f->ssl[TLSFLOW_GUEST], f->name) < 0) {
		tlsflow_errf(err, errlen, "out of memory for a TLS connection");
		goto fail;
	}
	SSL_set_accept_state(f->ssl[TLSFLOW_GUEST]);
	u = f->ssl[TLSFLOW_UPSTREAM];
	SSL_set_connect_state(u);
	if (kind == TLSCA_NAME_DNS) {
		SSL_set_hostflags(u, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set_tlsext_host_name(u, f->name) != 1 || SSL_set1_host(u, f->name) != 1) {
			tlsflow_errf(err, errlen, "cannot set the server name: %s",
				     tlsflow_ossl_reason());
			goto fail;
		}
	} else if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(u), f->name) != 1) {
		tlsflow_errf(err, errlen, "cannot set the server address: %s",
			     tlsflow_ossl_reason());
		goto fail;
	}
	f->state = TLSFLOW_HANDSHAKE;
	tlsflow_handshake(f, TLSFLOW_UPSTREAM); /* the ClientHello */
	if (f->state == TLSFLOW_FAILED) {
		tlsflow_errf(err, errlen, "cannot start the upstream handshake: %s", f->detail);
		goto fail;
	}
	ERR_clear_error();
	return f;
fail:
	tlsflow_free(f);
	return NULL;
}

/**
 * tlsflow_reply_guest() - answer the guest in moat's name, and end the flow
 * @f:		the flow
 * @buf, @len:	the plaintext answer (a complete HTTP response, say a 403),
 *		at most TLSFLOW_OUT_MAX bytes
 *
 * Encrypts @buf toward the guest, then a close_notify; nothing from the
 * server follows it. Meant for a filter that refuses a request: call it
 * from the filter, then return a negative value. The flow is then
 * TLSFLOW_FAILED with TLSFLOW_R_FILTER_REFUSED (side guest) whatever the
 * filter returns, or at once when called from outside a filter; what the
 * filter emitted before the reply still goes to the server. Drain
 * tlsflow_to_guest() before closing the guest's connection: the answer
 * and its close_notify are there, and a normal close is then right.
 *
 * Return: 0; -EPIPE when the guest's side is not open (handshake not done,
 * failed, its writing side ended, or already answered); -EMSGSIZE for more
 * than TLSFLOW_OUT_MAX bytes; -EIO if OpenSSL failed (the flow failed).
 */
int tlsflow_reply_guest(struct tlsflow *f, const void *buf, size_t len)
{
	SSL *g = f->ssl[TLSFLOW_GUEST];
	int r;

	if (f->state == TLSFLOW_FAILED || !f->open[TLSFLOW_GUEST] || f->replied ||
	    f->ended[TLSFLOW_UPSTREAM] || (SSL_get_shutdown(g) & SSL_SENT_SHUTDOWN))
		return -EPIPE;
	if (len > TLSFLOW_OUT_MAX)
		return -EMSGSIZE;
	f->replied = true;
	r = tlsflow_write(f, TLSFLOW_GUEST, buf, len);
	if (r == 0) {
		ERR_clear_error();
		if (SSL_shutdown(g) < 0) {
			tlsflow_fail(f, TLSFLOW_GUEST, TLSFLOW_R_INTERNAL, NULL);
			r = -EIO;
		}
	}
	if (!f->busy)
		tlsflow_fail(f, TLSFLOW_GUEST, TLSFLOW_R_FILTER_REFUSED, "replied to the guest");
	ERR_clear_error();
	return r;
}

/**
 * tlsflow_set_filter() - put a filter on the guest's plaintext
 * @f:		the flow
 * @fn:		the filter (NULL: the bytes pass unchanged)
 * @arg:	its first argument
 *
 * Set it before the flow is open (plaintext moves only then); it sees every
 * byte the guest sends from then on.
 */
void tlsflow_set_filter(struct tlsflow *f, tlsflow_filter_fn fn, void *arg)
{
	f->filter = fn;
	f->filter_arg = arg;
}

/* Take ciphertext from @side, as much as fits. */
static int tlsflow_input(struct tlsflow *f, int side, const void *buf, size_t len)
{
	size_t pend, take;

	if (f->state == TLSFLOW_FAILED || f->fin[side])
		return -EPIPE;
	if (len > INT_MAX)
		len = INT_MAX;
	if (f->ended[side] || f->state == TLSFLOW_CLOSED)
		return (int)len; /* after its close_notify: discarded, as OpenSSL would */
	if (len == 0)
		return 0;
	pend = BIO_ctrl_pending(f->in[side]);
	if (pend >= TLSFLOW_IN_MAX)
		return -ENOBUFS;
	take = len < TLSFLOW_IN_MAX - pend ? len : TLSFLOW_IN_MAX - pend;
	ERR_clear_error();
	if (BIO_write(f->in[side], buf, (int)take) != (int)take) {
		tlsflow_fail(f, side, TLSFLOW_R_INTERNAL, NULL);
		return -ENOMEM;
	}
	tlsflow_pump(f);
	ERR_clear_error();
	return (int)take;
}

/**
 * tlsflow_from_guest() - ciphertext the guest sent
 * @f:		the flow
 * @buf, @len:	the bytes, as they came off the guest's connection
 *
 * Return: the number of bytes taken (up to @len; fewer when the flow's
 * input buffer for the guest is full: offer the rest again after draining);
 * -ENOBUFS when none fit; -EPIPE when the flow takes no more from the guest
 * (TLSFLOW_FAILED, or after tlsflow_eof_from_guest()). Bytes after the
 * guest's close_notify are taken and discarded.
 */
int tlsflow_from_guest(struct tlsflow *f, const void *buf, size_t len)
{
	return tlsflow_input(f, TLSFLOW_GUEST, buf, len);
}

/**
 * tlsflow_from_upstream() - ciphertext the server sent
 * @f:		the flow
 * @buf, @len:	the bytes, as they came off the server's connection
 *
 * Return: as tlsflow_from_guest(), for the server's side.
 */
int tlsflow_from_upstream(struct tlsflow *f, const void *buf, size_t len)
{
	return tlsflow_input(f, TLSFLOW_UPSTREAM, buf, len);
}

/* Hand out up to @cap bytes of ciphertext for @side; the room made lets the flow go on. */
static size_t tlsflow_output(struct tlsflow *f, int side, void *buf, size_t cap)
{
	size_t n = 0;

	if (cap == 0 || BIO_ctrl_pending(f->out[side]) == 0)
		return 0;
	ERR_clear_error();
	if (BIO_read_ex(f->out[side], buf, cap, &n) != 1)
		n = 0;
	tlsflow_pump(f);
	ERR_clear_error();
	return n;
}

/**
 * tlsflow_to_guest() - ciphertext to send to the guest
 * @f:		the flow
 * @buf:	where to copy it
 * @cap:	bytes at @buf
 *
 * Also after TLSFLOW_FAILED or TLSFLOW_CLOSED: what was produced before
 * (and an alert, on failure) is still handed out.
 *
 * Return: bytes copied, 0 when nothing is pending.
 */
size_t tlsflow_to_guest(struct tlsflow *f, void *buf, size_t cap)
{
	return tlsflow_output(f, TLSFLOW_GUEST, buf, cap);
}

/**
 * tlsflow_to_upstream() - ciphertext to send to the server
 * @f:		the flow
 * @buf:	where to copy it
 * @cap:	bytes at @buf
 *
 * Return: bytes copied, 0 when nothing is pending.
 */
size_t tlsflow_to_upstream(struct tlsflow *f, void *buf, size_t cap)
{
	return tlsflow_output(f, TLSFLOW_UPSTREAM, buf, cap);
}

/* Nothing more comes from @side. */
static void tlsflow_eof(struct tlsflow *f, int side)
{
	if (f->fin[side])
		return;
	f->fin[side] = true;
	tlsflow_pump(f);
	ERR_clear_error();
}

/**
 * tlsflow_eof_from_guest() - the guest's connection ended (FIN): nothing
 * more comes from it
 * @f:		the flow
 *
 * During the guest's handshake the flow fails ("guest closed during the
 * handshake"). Otherwise, once what came before is processed, the guest's
 * stream has ended: after a close_notify, which was passed on; without
 * one, as a FIN only (tlsflow_upstream_done()).
 */
void tlsflow_eof_from_guest(struct tlsflow *f)
{
	tlsflow_eof(f, TLSFLOW_GUEST);
}

/**
 * tlsflow_eof_from_upstream() - the server's connection ended (FIN)
 * @f:		the flow
 *
 * As tlsflow_eof_from_guest(), for the server's side (tlsflow_guest_done()).
 */
void tlsflow_eof_from_upstream(struct tlsflow *f)
{
	tlsflow_eof(f, TLSFLOW_UPSTREAM);
}

/**
 * tlsflow_guest_done() - may the caller shut down writing to the guest?
 * @f:		the flow
 *
 * Return: true once nothing more will be written toward the guest (the
 * server's stream ended, or the flow failed) and tlsflow_to_guest() is
 * drained: shutdown(SHUT_WR) the guest's connection (on failure, reset it).
 */
bool tlsflow_guest_done(const struct tlsflow *f)
{
	if (BIO_ctrl_pending(f->out[TLSFLOW_GUEST]) > 0)
		return false;
	return f->state == TLSFLOW_FAILED || f->ended[TLSFLOW_UPSTREAM];
}

/**
 * tlsflow_upstream_done() - may the caller shut down writing to the server?
 * @f:		the flow
 *
 * Return: as tlsflow_guest_done(), toward the server (the guest's stream
 * ended, or the flow failed).
 */
bool tlsflow_upstream_done(const struct tlsflow *f)
{
	if (BIO_ctrl_pending(f->out[TLSFLOW_UPSTREAM]) > 0)
		return false;
	return f->state == TLSFLOW_FAILED || f->ended[TLSFLOW_GUEST];
}

/**
 * tlsflow_unread() - ciphertext taken from a side and not yet processed
 * @f:		the flow
 * @side:	TLSFLOW_GUEST or TLSFLOW_UPSTREAM
 *
 * Return: 0 to TLSFLOW_IN_MAX bytes (OpenSSL's partial record aside).
 */
size_t tlsflow_unread(const struct tlsflow *f, enum tlsflow_side side)
{
	return BIO_ctrl_pending(f->in[side == TLSFLOW_UPSTREAM]);
}

/**
 * tlsflow_state() - where a flow is
 * @f:		the flow
 *
 * Return: TLSFLOW_HANDSHAKE, TLSFLOW_OPEN, or the final TLSFLOW_FAILED or
 * TLSFLOW_CLOSED.
 */
enum tlsflow_state tlsflow_state(const struct tlsflow *f)
{
	return f->state;
}

/**
 * tlsflow_error() - why a flow failed
 * @f:		the flow
 * @side:	set to the side at fault, TLSFLOW_GUEST (0) or TLSFLOW_UPSTREAM
 *		(1), when the flow failed (may be NULL)
 *
 * Return: a static string (tlsflow_reason_str() of tlsflow_reason()), or
 * NULL when the flow has not failed.
 */
const char *tlsflow_error(const struct tlsflow *f, int *side)
{
	if (f->state != TLSFLOW_FAILED)
		return NULL;
	if (side)
		*side = f->side;
	return tlsflow_reasons[f->reason];
}

/**
 * tlsflow_reason() - why a flow failed, as a stable code
 * @f:		the flow
 *
 * Return: TLSFLOW_R_NONE unless the flow failed.
 */
enum tlsflow_reason tlsflow_reason(const struct tlsflow *f)
{
	return f->state == TLSFLOW_FAILED ? f->reason : TLSFLOW_R_NONE;
}

/**
 * tlsflow_error_detail() - OpenSSL's words on a failure
 * @f:		the flow
 *
 * Return: the flow's own string (such as "hostname mismatch", "wrong
 * version number", "sslv3 alert bad certificate"), valid until
 * tlsflow_free(); "" when there is none or the flow has not failed.
 */
const char *tlsflow_error_detail(const struct tlsflow *f)
{
	return f->state == TLSFLOW_FAILED ? f->detail : "";
}

/**
 * tlsflow_reason_str() - the words of a reason code
 * @reason:	an enum tlsflow_reason (from a record, say)
 *
 * Return: a static string; "unknown" for a code out of range.
 */
const char *tlsflow_reason_str(unsigned reason)
{
	return reason < TLSFLOW_R_COUNT ? tlsflow_reasons[reason] : "unknown";
}

/**
 * tlsflow_alpn() - the protocol negotiated with the guest
 * @f:		the flow
 *
 * Return: "http/1.1", or "" when none was (the guest offered no http/1.1,
 * or its handshake is not done).
 */
const char *tlsflow_alpn(const struct tlsflow *f)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	SSL_get0_alpn_selected(f->ssl[TLSFLOW_GUEST], &p, &n);
	return n == 8 && memcmp(p, "http/1.1", 8) == 0 ? "http/1.1" : "";
}

/**
 * tlsflow_free() - release a flow
 * @f:		the flow (NULL is fine)
 *
 * Sends nothing: a close_notify is sent only when one is passed on.
 */
void tlsflow_free(struct tlsflow *f)
{
	if (!f)
		return;
	SSL_free(f->ssl[TLSFLOW_GUEST]);
	SSL_free(f->ssl[TLSFLOW_UPSTREAM]);
	free(f);
	ERR_clear_error();
}
