/* SPDX-License-Identifier: MIT */
/*
 * test_tlsflow.c - tls/tlsca.c and tls/tlsflow.c: the interception CA and
 * its leaves, and one intercepted connection between a real OpenSSL
 * client (the "guest") and a real OpenSSL server, all on memory BIOs
 *
 * The guest trusts only the moat CA (tlsca_cert_pem()); the server has its
 * own test CA, which the flow's upstream context trusts through a bundle
 * file. pump() moves bytes guest <-> flow <-> server until nothing moves.
 */
#define _GNU_SOURCE /* memmem() */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tlsca.h"
#include "tls/tlsflow.h"

#define NAME "api.example.test"

/* A file's bytes as moat-tls gets them (read from the descriptor the supervisor opened). */
static struct tlsca_file file_bytes(const char *path)
{
	struct tlsca_file f = { .name = path };
	FILE *fp = fopen(path, "re");
	char *b = NULL;
	size_t cap = 0;

	cr_assert_not_null(fp, "%s", path);
	for (size_t n = 1; n > 0; cap += n) {
		char *nb = realloc(b, cap + 65536);

		cr_assert_not_null(nb);
		b = nb;
		n = fread(b + cap, 1, 65536, fp);
	}
	fclose(fp);
	f.data = b;
	f.len = cap;
	return f;
}

static int load_ca(struct tlsca **t, const char *cert, const char *key, char *err, size_t errlen)
{
	struct tlsca_file c = file_bytes(cert), k = file_bytes(key);
	int rc = tlsca_load(t, &c, &k, err, errlen);

	free((char *)c.data);
	free((char *)k.data);
	return rc;
}

static SSL_CTX *upstream_ctx(const char *bundle, char *err, size_t errlen)
{
	struct tlsca_file b = file_bytes(bundle);
	SSL_CTX *ctx = tlsflow_upstream_ctx(&b, err, errlen);

	free((char *)b.data);
	return ctx;
}

/* ---- certificates made by the test --------------------------------------------------------- */

static EVP_PKEY *key_new(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	cr_assert_not_null(k);
	return k;
}

static void ext_add(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX c;
	X509_EXTENSION *e;

	X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &c, nid, value);
	cr_assert_not_null(e, "extension %s", value);
	cr_assert(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
}

/*
 * A certificate for @pub: a CA (self-signed when @issuer is NULL) or a
 * server leaf with subjectAltName @san ("DNS:..." / "IP:..."), signed by @ikey.
 */
static X509 *cert_make(const char *cn, const char *san, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *ikey,
		       bool ca)
{
	X509 *x = X509_new();

	cr_assert_not_null(x);
	cr_assert(X509_set_version(x, X509_VERSION_3));
	cr_assert(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)random() + 1));
	cr_assert(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	cr_assert(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	cr_assert(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					     (const unsigned char *)cn, -1, -1, 0));
	cr_assert(X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)));
	cr_assert(X509_set_pubkey(x, pub));
	if (ca) {
		ext_add(x, x, NID_basic_constraints, "critical,CA:TRUE");
		ext_add(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
		ext_add(x, x, NID_subject_key_identifier, "hash");
	} else {
		ext_add(x, issuer, NID_subject_alt_name, san);
		ext_add(x, issuer, NID_ext_key_usage, "serverAuth");
	}
	cr_assert_gt(X509_sign(x, ikey, EVP_PKEY_is_a(ikey, "ED25519") ? NULL : EVP_sha256()), 0);
	return x;
}

/* Write @x (or @k) as PEM to a new temporary file; return its path (free() it). */
static char *pem_file(X509 *x, EVP_PKEY *k)
{
	char *path = strdup("/tmp/test_tlsflow.XXXXXX");
	FILE *f;
	int fd;

	if (!path)
		abort();
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	if (x)
		cr_assert(PEM_write_X509(f, x));
	if (k)
		cr_assert(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	return path;
}

/* The moat CA's certificate, through tlsca_cert_pem(). */
static X509 *moat_ca_cert(const struct tlsca *ca)
{
	char pem[8192];
	int n = tlsca_cert_pem(ca, pem, sizeof(pem));
	BIO *b;
	X509 *x;

	cr_assert_gt(n, 0);
	b = BIO_new_mem_buf(pem, n);
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	cr_assert_not_null(x);
	return x;
}

/* Does @leaf verify against @ca alone, for host @name (or IP @ip)? */
static int verify_leaf(X509 *leaf, X509 *ca, const char *name, const char *ip)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *c = X509_STORE_CTX_new();
	int ok, err;

	cr_assert(X509_STORE_add_cert(st, ca));
	cr_assert(X509_STORE_CTX_init(c, st, leaf, NULL));
	X509_STORE_CTX_set_purpose(c, X509_PURPOSE_SSL_SERVER);
	if (name)
		cr_assert(X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(c), name, 0));
	if (ip)
		cr_assert(X509_VERIFY_PARAM_set1_ip_asc(X509_STORE_CTX_get0_param(c), ip));
	ok = X509_verify_cert(c);
	err = X509_STORE_CTX_get_error(c);
	X509_STORE_CTX_free(c);
	X509_STORE_free(st);
	ERR_clear_error();
	return ok == 1 ? X509_V_OK : (err ? err : -1);
}

/* ---- the two real TLS ends --------------------------------------------------------------- */

struct end {
	SSL *ssl;
	BIO *in, *out;	/* in: from the flow; out: toward it */
	bool failed;	/* an SSL error (handshake or later) */
	bool got_close; /* a close_notify came */
	bool fin;	/* the flow said no more bytes (its *_done()) */
	uint8_t *got;	/* plaintext received */
	size_t got_len;
	const uint8_t *send; /* plaintext to send once open */
	size_t send_len, sent;
	bool close_after_send; /* then a close_notify */
	bool closed;
	const char *reply; /* the server: sent once a request head ("\r\n\r\n") came */
	bool replied;
};

/* The server's ALPN: the list the flow offered, and http/1.1 picked from it. */
static unsigned char offered[64];
static unsigned offered_len;

static int server_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	offered_len = inlen < sizeof(offered) ? inlen : sizeof(offered);
	memcpy(offered, in, offered_len);
	if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

static void end_init(struct end *e, SSL_CTX *ctx, bool server)
{
	memset(e, 0, sizeof(*e));
	e->ssl = SSL_new(ctx);
	e->in = BIO_new(BIO_s_mem());
	e->out = BIO_new(BIO_s_mem());
	cr_assert(e->ssl && e->in && e->out);
	SSL_set_bio(e->ssl, e->in, e->out);
	if (server)
		SSL_set_accept_state(e->ssl);
	else
		SSL_set_connect_state(e->ssl);
	e->got = malloc(8u << 20);
	cr_assert_not_null(e->got);
}

static void end_fini(struct end *e)
{
	SSL_free(e->ssl);
	free(e->got);
}

/* Handshake, write, read, as far as the bytes allow. Return: whether anything happened. */
static bool end_drive(struct end *e)
{
	bool moved = false;
	size_t n;
	int r;

	if (e->failed)
		return false;
	if (!SSL_is_init_finished(e->ssl)) {
		r = SSL_do_handshake(e->ssl);
		if (r != 1) {
			if (SSL_get_error(e->ssl, r) != SSL_ERROR_WANT_READ) {
				e->failed = true;
				ERR_clear_error();
				return true;
			}
			if (e->fin) {
				e->failed = true;
				return true;
			}
			return false;
		}
		moved = true;
	}
	if (e->reply && !e->replied && memmem(e->got, e->got_len, "\r\n\r\n", 4)) {
		e->send = (const uint8_t *)e->reply;
		e->send_len = strlen(e->reply);
		e->replied = true;
	}
	if (e->sent < e->send_len) {
		cr_assert_eq(SSL_write_ex(e->ssl, e->send + e->sent, e->send_len - e->sent, &n), 1);
		e->sent += n;
		moved = true;
	}
	if (e->close_after_send && e->sent == e->send_len && !e->closed) {
		SSL_shutdown(e->ssl);
		e->closed = true;
		moved = true;
	}
	while (!e->got_close) {
		cr_assert_lt(e->got_len, 8u << 20);
		r = SSL_read_ex(e->ssl, e->got + e->got_len, (8u << 20) - e->got_len, &n);
		if (r == 1) {
			e->got_len += n;
			moved = true;
			continue;
		}
		/* WANT_READ after e->fin: the stream ended without close_notify */
		r = SSL_get_error(e->ssl, 0);
		if (r == SSL_ERROR_ZERO_RETURN) {
			e->got_close = true;
			moved = true;
		} else if (r != SSL_ERROR_WANT_READ) {
			e->failed = true;
			ERR_clear_error();
		}
		break;
	}
	return moved;
}

/* ---- the world: CA, contexts, a flow, two ends --------------------------------------------- */

struct world {
	struct tlsca *ca;
	X509 *moat_ca;
	EVP_PKEY *srv_ca_key, *srv_key, *rogue_key;
	X509 *srv_ca, *rogue_ca;
	char *bundle;
	SSL_CTX *up_ctx, *guest_ctx, *srv_ctx;
	struct tlsflow *f;
	struct end guest, server;
	/* what the flow has taken but not yet passed on, per side */
	uint8_t stage[2][32768];
	size_t stage_off[2], stage_len[2];
	bool hold_upstream;  /* no bytes between flow and server */
	bool hold_to_server; /* none from the flow to the server */
	bool hold_to_guest;
	bool saw_enobufs;
	size_t to_server_bytes; /* ciphertext the flow sent toward the server */
	size_t fed[2];		/* ciphertext the flow took from each side */
};

static void world_server(struct world *w, const char *san, bool rogue)
{
	X509 *leaf = cert_make("server", san, w->srv_key, rogue ? w->rogue_ca : w->srv_ca,
			       rogue ? w->rogue_key : w->srv_ca_key, false);

	w->srv_ctx = SSL_CTX_new(TLS_server_method());
	cr_assert_not_null(w->srv_ctx);
	cr_assert_eq(SSL_CTX_use_certificate(w->srv_ctx, leaf), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey(w->srv_ctx, w->srv_key), 1);
	SSL_CTX_set_alpn_select_cb(w->srv_ctx, server_alpn, NULL);
	X509_free(leaf);
}

/* A guest context that trusts the moat CA only and checks @host. */
static SSL_CTX *guest_ctx_new(X509 *moat_ca)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	cr_assert_not_null(ctx);
	cr_assert(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), moat_ca));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/*
 * Everything for one flow to @flow_name: the server's leaf for @san (signed
 * by the test CA, or a rogue one), the guest sending SNI @guest_sni (NULL:
 * none) and ALPN @alpn (NULL: none).
 */
static struct world *world_new(const char *flow_name, const char *san, bool rogue,
			       const char *guest_sni, const unsigned char *alpn, size_t alpn_len)
{
	struct world *w = calloc(1, sizeof(*w));
	char err[256] = "";

	if (!w)
		abort();
	cr_assert_eq(tlsca_generate(&w->ca, err, sizeof(err)), 0, "%s", err);
	w->moat_ca = moat_ca_cert(w->ca);
	w->srv_ca_key = key_new();
	w->srv_key = key_new();
	w->rogue_key = key_new();
	w->srv_ca = cert_make("test server CA", NULL, w->srv_ca_key, NULL, w->srv_ca_key, true);
	w->rogue_ca = cert_make("rogue CA", NULL, w->rogue_key, NULL, w->rogue_key, true);
	w->bundle = pem_file(w->srv_ca, NULL);
	w->up_ctx = upstream_ctx(w->bundle, err, sizeof(err));
	cr_assert_not_null(w->up_ctx, "%s", err);
	world_server(w, san, rogue);
	w->guest_ctx = guest_ctx_new(w->moat_ca);

	w->f = tlsflow_new(tlsca_server_ctx(w->ca), w->up_ctx, flow_name, err, sizeof(err));
	cr_assert_not_null(w->f, "%s", err);
	end_init(&w->guest, w->guest_ctx, false);
	end_init(&w->server, w->srv_ctx, true);
	if (guest_sni) {
		cr_assert_eq(SSL_set_tlsext_host_name(w->guest.ssl, guest_sni), 1);
		cr_assert_eq(SSL_set1_host(w->guest.ssl, guest_sni), 1);
	}
	if (alpn)
		cr_assert_eq(SSL_set_alpn_protos(w->guest.ssl, alpn, (unsigned)alpn_len), 0);
	return w;
}

static void world_free(struct world *w)
{
	tlsflow_free(w->f);
	end_fini(&w->guest);
	end_fini(&w->server);
	SSL_CTX_free(w->up_ctx);
	SSL_CTX_free(w->guest_ctx);
	SSL_CTX_free(w->srv_ctx);
	tlsca_free(w->ca);
	X509_free(w->moat_ca);
	X509_free(w->srv_ca);
	X509_free(w->rogue_ca);
	EVP_PKEY_free(w->srv_ca_key);
	EVP_PKEY_free(w->srv_key);
	EVP_PKEY_free(w->rogue_key);
	unlink(w->bundle);
	free(w->bundle);
	free(w);
}

/* An end's ciphertext into the flow, through the stage (the flow may take part). */
static bool feed(struct world *w, int side)
{
	BIO *from = side == TLSFLOW_GUEST ? w->guest.out : w->server.out;
	bool moved = false;
	int r;

	for (;;) {
		if (w->stage_len[side] == 0) {
			r = BIO_read(from, w->stage[side], sizeof(w->stage[side]));
			if (r <= 0)
				break;
			w->stage_len[side] = (size_t)r;
			w->stage_off[side] = 0;
			moved = true;
		}
		r = side == TLSFLOW_GUEST ?
			    tlsflow_from_guest(w->f, w->stage[side] + w->stage_off[side],
					       w->stage_len[side] - w->stage_off[side]) :
			    tlsflow_from_upstream(w->f, w->stage[side] + w->stage_off[side],
						  w->stage_len[side] - w->stage_off[side]);
		if (r == -ENOBUFS) {
			w->saw_enobufs = true;
			break;
		}
		if (r < 0) { /* -EPIPE: dropped, as a caller would */
			cr_assert_eq(r, -EPIPE);
			w->stage_len[side] = 0;
			continue;
		}
		cr_assert_gt(r, 0);
		w->stage_off[side] += (size_t)r;
		w->fed[side] += (size_t)r;
		if (w->stage_off[side] == w->stage_len[side])
			w->stage_len[side] = 0;
		moved = true;
	}
	return moved;
}

/* The flow's ciphertext for @side into that end. */
static bool drain(struct world *w, int side)
{
	uint8_t buf[7000]; /* not a multiple of anything */
	struct end *e = side == TLSFLOW_GUEST ? &w->guest : &w->server;
	bool moved = false;
	size_t n;

	while ((n = side == TLSFLOW_GUEST ? tlsflow_to_guest(w->f, buf, sizeof(buf)) :
					    tlsflow_to_upstream(w->f, buf, sizeof(buf))) > 0) {
		cr_assert_eq(BIO_write(e->in, buf, (int)n), (int)n);
		if (side == TLSFLOW_UPSTREAM)
			w->to_server_bytes += n;
		moved = true;
	}
	if (!e->fin &&
	    (side == TLSFLOW_GUEST ? tlsflow_guest_done(w->f) : tlsflow_upstream_done(w->f))) {
		e->fin = true; /* shutdown(SHUT_WR) toward that end */
		moved = true;
	}
	return moved;
}

/* Move bytes everywhere until nothing moves. */
static void pump(struct world *w)
{
	for (int i = 0; i < 100000; i++) {
		bool moved = false;

		if (end_drive(&w->guest))
			moved = true;
		if (end_drive(&w->server))
			moved = true;
		if (feed(w, TLSFLOW_GUEST))
			moved = true;
		if (!w->hold_to_guest && drain(w, TLSFLOW_GUEST))
			moved = true;
		if (!w->hold_upstream && !w->hold_to_server && drain(w, TLSFLOW_UPSTREAM))
			moved = true;
		if (!w->hold_upstream && feed(w, TLSFLOW_UPSTREAM))
			moved = true;
		if (!moved)
			return;
	}
	cr_assert_fail("pump() never went quiet");
}

static void world_send(struct world *w, struct end *e, const char *s, bool close)
{
	(void)w;
	e->send = (const uint8_t *)s;
	e->send_len = strlen(s);
	e->sent = 0;
	e->close_after_send = close;
}

/* ---- filters --------------------------------------------------------------------------- */

/* Replaces every "MARKER" (whole, within one piece) with "s3cr3t-value". */
static int marker_filter(void *arg, const uint8_t *in, size_t len,
			 int (*emit)(void *, const uint8_t *, size_t), void *emit_arg)
{
	size_t i = 0, start = 0;
	int r;

	(*(unsigned *)arg)++;
	while (i + 6 <= len) {
		if (memcmp(in + i, "MARKER", 6) == 0) {
			r = emit(emit_arg, in + start, i - start);
			if (r < 0)
				return r;
			r = emit(emit_arg, (const uint8_t *)"s3cr3t-value", 12);
			if (r < 0)
				return r;
			i += 6;
			start = i;
		} else {
			i++;
		}
	}
	return emit(emit_arg, in + start, len - start);
}

/* Refuses any piece with "FORBIDDEN" in it. */
static int refusing_filter(void *arg, const uint8_t *in, size_t len,
			   int (*emit)(void *, const uint8_t *, size_t), void *emit_arg)
{
	(void)arg;
	if (memmem(in, len, "FORBIDDEN", 9))
		return -EACCES;
	return emit(emit_arg, in, len);
}

/* Emits each byte 300 times: more than TLSFLOW_EMIT_MAX for a big enough request. */
static int blowup_filter(void *arg, const uint8_t *in, size_t len,
			 int (*emit)(void *, const uint8_t *, size_t), void *emit_arg)
{
	static uint8_t big[300];
	int r;

	(void)arg;
	for (size_t i = 0; i < len; i++) {
		memset(big, in[i], sizeof(big));
		r = emit(emit_arg, big, sizeof(big));
		if (r < 0)
			return r;
	}
	return 0;
}

static const unsigned char alpn_h2_h11[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h2[] = "\x02h2";

#define REQUEST "GET /v1/models HTTP/1.1\r\nHost: " NAME "\r\nAuthorization: Bearer MARKER\r\n\r\n"
#define FILTERED \
	"GET /v1/models HTTP/1.1\r\nHost: " NAME "\r\nAuthorization: Bearer s3cr3t-value\r\n\r\n"
#define RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

static void assert_no_openssl_errors(void)
{
	cr_assert_eq(ERR_peek_error(), 0, "the OpenSSL error queue was left: %s",
		     ERR_reason_error_string(ERR_peek_error()));
}

/* ---- tests: a good flow ------------------------------------------------------------------ */

Test(tlsflow, intercepts_filters_and_passes_the_reply_back)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, alpn_h2_h11,
				    sizeof(alpn_h2_h11) - 1);
	const unsigned char *p;
	unsigned plen;
	unsigned calls = 0;
	X509 *leaf;
	char cn[256];

	tlsflow_set_filter(w->f, marker_filter, &calls);
	world_send(w, &w->guest, REQUEST, false);
	w->server.reply = RESPONSE;
	pump(w);

	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN, "%s: %s", tlsflow_error(w->f, NULL),
		     tlsflow_error_detail(w->f));
	cr_assert_not(w->guest.failed);
	cr_assert_not(w->server.failed);
	/* The guest got a leaf for the SNI, signed by the moat CA. */
	leaf = SSL_get0_peer_certificate(w->guest.ssl);
	cr_assert_not_null(leaf);
	cr_assert_eq(SSL_get_verify_result(w->guest.ssl), X509_V_OK);
	cr_assert_gt(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
					       sizeof(cn)),
		     0);
	cr_assert_str_eq(cn, NAME);
	cr_assert_eq(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(w->moat_ca)),
		     0);
	cr_assert_eq(verify_leaf(leaf, w->moat_ca, NAME, NULL), X509_V_OK);
	cr_assert_neq(verify_leaf(leaf, w->srv_ca, NAME, NULL), X509_V_OK);
	/* ALPN: http/1.1 toward the guest, which offered h2 too; only http/1.1 upstream. */
	SSL_get0_alpn_selected(w->guest.ssl, &p, &plen);
	cr_assert_eq(plen, 8);
	cr_assert_eq(memcmp(p, "http/1.1", 8), 0);
	cr_assert_str_eq(tlsflow_alpn(w->f), "http/1.1");
	cr_assert_eq(offered_len, 9);
	cr_assert_eq(memcmp(offered, "\x08http/1.1", 9), 0);
	cr_assert_str_eq(SSL_get_servername(w->server.ssl, TLSEXT_NAMETYPE_host_name), NAME);
	/* The server got the filter's output, exactly; the guest the reply, exactly. */
	cr_assert_gt(calls, 0);
	cr_assert_eq(w->server.got_len, strlen(FILTERED));
	cr_assert_eq(memcmp(w->server.got, FILTERED, w->server.got_len), 0);
	cr_assert_eq(w->guest.got_len, strlen(RESPONSE));
	cr_assert_eq(memcmp(w->guest.got, RESPONSE, w->guest.got_len), 0);
	cr_assert_not(tlsflow_guest_done(w->f));
	cr_assert_not(tlsflow_upstream_done(w->f));

	/* The guest's close_notify goes on to the server, and the server's back. */
	cr_assert_eq(SSL_shutdown(w->guest.ssl), 0);
	pump(w);
	cr_assert(w->server.got_close);
	cr_assert(tlsflow_upstream_done(w->f));
	cr_assert_not(w->guest.got_close);
	cr_assert_eq(SSL_shutdown(w->server.ssl), 1);
	pump(w);
	cr_assert(w->guest.got_close);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_CLOSED);
	cr_assert(tlsflow_guest_done(w->f));
	cr_assert_null(tlsflow_error(w->f, NULL));
	assert_no_openssl_errors();
	world_free(w);
}

Test(tlsflow, without_a_filter_bytes_pass_unchanged_and_a_half_close_works)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);

	/* The guest sends its request and close_notify at once, then waits. */
	world_send(w, &w->guest, REQUEST, true);
	w->server.reply = RESPONSE;
	pump(w);
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	cr_assert_eq(memcmp(w->server.got, REQUEST, w->server.got_len), 0);
	cr_assert(w->server.got_close);
	cr_assert_eq(w->guest.got_len, strlen(RESPONSE), "the reply after a half-close was lost");
	cr_assert_eq(memcmp(w->guest.got, RESPONSE, w->guest.got_len), 0);
	cr_assert_str_eq(tlsflow_alpn(w->f), "", "no ALPN offered, none selected");
	world_free(w);
}

Test(tlsflow, a_guest_offering_only_h2_gets_no_alpn)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, alpn_h2, sizeof(alpn_h2) - 1);
	const unsigned char *p = NULL;
	unsigned plen = 0;

	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	SSL_get0_alpn_selected(w->guest.ssl, &p, &plen);
	cr_assert_eq(plen, 0, "ALPN selected although the guest offered only h2");
	cr_assert_str_eq(tlsflow_alpn(w->f), "");
	world_free(w);
}

Test(tlsflow, a_guest_without_sni_gets_the_flows_name)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NULL, NULL, 0);
	char cn[256];
	X509 *leaf;

	cr_assert_eq(SSL_set1_host(w->guest.ssl, NAME), 1);
	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	leaf = SSL_get0_peer_certificate(w->guest.ssl);
	cr_assert_not_null(leaf);
	cr_assert_gt(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
					       sizeof(cn)),
		     0);
	cr_assert_str_eq(cn, NAME);
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	world_free(w);
}

Test(tlsflow, an_ip_literal_is_verified_by_address_and_minted_as_ip)
{
	struct world *w = world_new("192.0.2.7", "IP:192.0.2.7", false, NULL, NULL, 0);
	X509 *leaf;

	cr_assert_eq(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(w->guest.ssl), "192.0.2.7"), 1);
	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN, "%s: %s", tlsflow_error(w->f, NULL),
		     tlsflow_error_detail(w->f));
	cr_assert_null(SSL_get_servername(w->server.ssl, TLSEXT_NAMETYPE_host_name),
		       "an IP literal was sent as SNI");
	leaf = SSL_get0_peer_certificate(w->guest.ssl);
	cr_assert_eq(verify_leaf(leaf, w->moat_ca, NULL, "192.0.2.7"), X509_V_OK);
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	world_free(w);
}

Test(tlsflow, guest_plaintext_is_held_until_the_server_is_verified)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);

	world_send(w, &w->guest, REQUEST, false);
	w->hold_upstream = true;
	pump(w);
	cr_assert(SSL_is_init_finished(w->guest.ssl),
		  "the guest's handshake waited for the server");
	cr_assert_eq(w->guest.sent, strlen(REQUEST));
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_HANDSHAKE);
	cr_assert_gt(tlsflow_unread(w->f, TLSFLOW_GUEST), 0, "the request was not held");
	cr_assert_eq(w->server.got_len, 0);
	w->hold_upstream = false;
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	cr_assert_eq(memcmp(w->server.got, REQUEST, w->server.got_len), 0);
	world_free(w);
}

Test(tlsflow, a_server_fin_without_close_notify_is_passed_on_as_a_fin)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);

	world_send(w, &w->guest, REQUEST, false);
	w->server.reply = RESPONSE;
	pump(w);
	cr_assert_eq(w->guest.got_len, strlen(RESPONSE));
	tlsflow_eof_from_upstream(w->f); /* a bare FIN from the server */
	pump(w);
	cr_assert(tlsflow_guest_done(w->f));
	cr_assert(w->guest.fin);
	cr_assert_not(w->guest.got_close, "a FIN became a close_notify");
	cr_assert_not(tlsflow_upstream_done(w->f), "the other direction was closed too");
	cr_assert_eq(tlsflow_from_upstream(w->f, "x", 1), -EPIPE);
	/* The guest may still send (half-close). */
	world_send(w, &w->guest, "more", false);
	pump(w);
	cr_assert_eq(w->server.got_len, strlen(REQUEST) + 4);
	world_free(w);
}

Test(tlsflow, tls12_on_both_sides_works_end_to_end)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, alpn_h2_h11,
				    sizeof(alpn_h2_h11) - 1);
	unsigned calls = 0;

	cr_assert(SSL_set_max_proto_version(w->guest.ssl, TLS1_2_VERSION));
	cr_assert(SSL_set_max_proto_version(w->server.ssl, TLS1_2_VERSION));
	tlsflow_set_filter(w->f, marker_filter, &calls);
	world_send(w, &w->guest, REQUEST, false);
	w->server.reply = RESPONSE;
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN, "%s: %s", tlsflow_error(w->f, NULL),
		     tlsflow_error_detail(w->f));
	cr_assert_eq(SSL_version(w->guest.ssl), TLS1_2_VERSION);
	cr_assert_eq(SSL_version(w->server.ssl), TLS1_2_VERSION);
	cr_assert_str_eq(tlsflow_alpn(w->f), "http/1.1");
	cr_assert_eq(w->server.got_len, strlen(FILTERED));
	cr_assert_eq(memcmp(w->server.got, FILTERED, w->server.got_len), 0);
	cr_assert_eq(w->guest.got_len, strlen(RESPONSE));
	/* The server closes first this time. */
	SSL_shutdown(w->server.ssl);
	pump(w);
	cr_assert(w->guest.got_close);
	SSL_shutdown(w->guest.ssl);
	pump(w);
	cr_assert(w->server.got_close);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_CLOSED);
	world_free(w);
}

Test(tlsflow, a_hello_retry_request_still_finds_the_leaf)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);

	/* The guest's first key share is one moat does not take: TLS 1.3 HRR. */
	cr_assert_eq(SSL_CTX_set1_groups_list(tlsca_server_ctx(w->ca), "X25519"), 1);
	cr_assert_eq(SSL_set1_groups_list(w->guest.ssl, "P-256:X25519"), 1);
	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN, "%s: %s", tlsflow_error(w->f, NULL),
		     tlsflow_error_detail(w->f));
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	cr_assert_eq(tlsca_cache_size(w->ca), 1);
	world_free(w);
}

Test(tlsflow, a_guest_below_tls12_is_refused)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	SSL_set_security_level(w->guest.ssl, 0);
	cr_assert(SSL_set_min_proto_version(w->guest.ssl, TLS1_VERSION));
	cr_assert(SSL_set_max_proto_version(w->guest.ssl, TLS1_1_VERSION));
	pump(w);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_GUEST_HANDSHAKE);
	tlsflow_error(w->f, &side);
	cr_assert_eq(side, TLSFLOW_GUEST);
	world_free(w);
}

Test(tlsflow, key_updates_and_renegotiation_attempts_do_not_break_it)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	world_send(w, &w->guest, REQUEST, false);
	w->server.reply = RESPONSE;
	pump(w);
	cr_assert_eq(SSL_key_update(w->guest.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
	cr_assert_eq(SSL_key_update(w->server.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
	world_send(w, &w->guest, "second", false);
	pump(w);
	world_send(w, &w->server, "reply2", false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN, "%s: %s", tlsflow_error(w->f, NULL),
		     tlsflow_error_detail(w->f));
	cr_assert_eq(w->server.got_len, strlen(REQUEST) + 6);
	cr_assert_eq(w->guest.got_len, strlen(RESPONSE) + 6);
	world_free(w);

	/* TLS 1.2: the guest asks to renegotiate; moat refuses, and nothing leaks. */
	w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	cr_assert(SSL_set_max_proto_version(w->guest.ssl, TLS1_2_VERSION));
	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	cr_assert_eq(SSL_renegotiate(w->guest.ssl), 1);
	pump(w);
	cr_assert(tlsflow_state(w->f) == TLSFLOW_OPEN ||
		  (tlsflow_error(w->f, &side) && side == TLSFLOW_GUEST));
	cr_assert_eq(w->server.got_len, strlen(REQUEST));
	assert_no_openssl_errors();
	world_free(w);
}

/* ---- tests: flows that must fail ------------------------------------------------------- */

Test(tlsflow, a_server_certificate_for_another_name_fails_upstream)
{
	struct world *w = world_new(NAME, "DNS:other.example.test", false, NAME, NULL, 0);
	int side = -1;

	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED);
	cr_assert_str_eq(tlsflow_error(w->f, &side), "upstream certificate does not verify");
	cr_assert_eq(side, TLSFLOW_UPSTREAM);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_UPSTREAM_VERIFY);
	cr_assert_str_eq(tlsflow_error_detail(w->f), "hostname mismatch");
	cr_assert_eq(w->server.got_len, 0, "the server received plaintext");
	cr_assert_eq(w->guest.got_len, 0);
	cr_assert(tlsflow_guest_done(w->f) && tlsflow_upstream_done(w->f));
	cr_assert_eq(tlsflow_from_guest(w->f, "x", 1), -EPIPE);
	assert_no_openssl_errors();
	world_free(w);
}

Test(tlsflow, a_server_certificate_from_an_untrusted_ca_fails_upstream)
{
	struct world *w = world_new(NAME, "DNS:" NAME, true, NAME, NULL, 0);
	int side = -1;

	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_UPSTREAM_VERIFY, "%s",
		     tlsflow_error(w->f, NULL));
	cr_assert_not_null(tlsflow_error(w->f, &side));
	cr_assert_eq(side, TLSFLOW_UPSTREAM);
	cr_assert_eq(w->server.got_len, 0);
	world_free(w);
}

Test(tlsflow, a_guest_sni_for_another_name_fails_the_guest)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, "other.example.test", NULL, 0);
	int side = -1;

	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_GUEST_HANDSHAKE);
	tlsflow_error(w->f, &side);
	cr_assert_eq(side, TLSFLOW_GUEST);
	cr_assert(w->guest.failed, "the guest's handshake succeeded");
	cr_assert_eq(w->server.got_len, 0);
	world_free(w);
}

Test(tlsflow, a_guest_sni_with_a_bad_character_is_refused)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, "api_example.test", NULL, 0);

	pump(w);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_GUEST_HANDSHAKE);
	cr_assert(w->guest.failed);
	cr_assert_eq(tlsca_cache_size(w->ca), 0, "a leaf was minted for a refused name");
	world_free(w);
}

Test(tlsflow, garbage_from_the_guest_fails_the_guest)
{
#define J(s)                     \
	{                        \
		s, sizeof(s) - 1 \
	}
	static const struct {
		const char *b;
		size_t n;
	} junk[] = {
		J("GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n"),
		J("\x16\x03\x01\xff\xff"),		       /* a record longer than allowed */
		J("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"), /* a ClientHello of nothing */
		J("\x15\x03\x03\x00\x02\x02\x28"),	       /* a fatal alert */
		J("\x16\x03\x03\x00\x00"),		       /* an empty handshake record */
	};
#undef J
	uint8_t rnd[4096], out[65536];

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]) + 20; i++) {
		struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
		size_t len;
		int side = -1;

		if (i < sizeof(junk) / sizeof(junk[0])) {
			len = junk[i].n;
			memcpy(rnd, junk[i].b, len);
		} else {
			len = 1 + (size_t)random() % sizeof(rnd);
			for (size_t j = 0; j < len; j++)
				rnd[j] = (uint8_t)random();
			if (i % 2)
				rnd[0] = 0x16; /* looks like a handshake record */
		}
		tlsflow_from_guest(w->f, rnd, len);
		tlsflow_eof_from_guest(w->f);
		while (tlsflow_to_guest(w->f, out, sizeof(out)) > 0)
			;
		cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED, "junk %zu", i);
		cr_assert_not_null(tlsflow_error(w->f, &side));
		cr_assert_eq(side, TLSFLOW_GUEST, "junk %zu: %s", i, tlsflow_error(w->f, NULL));
		assert_no_openssl_errors();
		world_free(w);
	}
}

Test(tlsflow, a_bad_record_after_the_handshake_fails_the_guest)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	uint8_t bad[5 + 32] = { 0x17, 0x03, 0x03, 0x00, 0x20 }; /* application data, 32 bytes */
	int side = -1;

	for (size_t i = 5; i < sizeof(bad); i++)
		bad[i] = (uint8_t)i;

	world_send(w, &w->guest, REQUEST, false);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	/* One byte short, it waits for the rest; whole, it fails. */
	cr_assert_eq(tlsflow_from_guest(w->f, bad, sizeof(bad) - 1), (int)sizeof(bad) - 1);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	cr_assert_eq(tlsflow_from_guest(w->f, bad + sizeof(bad) - 1, 1), 1);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_GUEST_RECORD);
	tlsflow_error(w->f, &side);
	cr_assert_eq(side, TLSFLOW_GUEST);
	world_free(w);
}

Test(tlsflow, garbage_from_the_server_fails_upstream)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	cr_assert_eq(tlsflow_from_upstream(w->f, "HTTP/1.1 400 Bad Request\r\n\r\n", 28), 28);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_FAILED);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_UPSTREAM_HANDSHAKE);
	tlsflow_error(w->f, &side);
	cr_assert_eq(side, TLSFLOW_UPSTREAM);
	assert_no_openssl_errors();
	world_free(w);
}

Test(tlsflow, a_fin_during_the_handshake_fails_that_side)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	tlsflow_eof_from_upstream(w->f);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_UPSTREAM_CLOSED);
	tlsflow_error(w->f, &side);
	cr_assert_eq(side, TLSFLOW_UPSTREAM);
	world_free(w);
}

Test(tlsflow, a_refusing_filter_fails_the_flow_and_nothing_reaches_the_server)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	tlsflow_set_filter(w->f, refusing_filter, NULL);
	world_send(w, &w->guest, "GET /FORBIDDEN HTTP/1.1\r\n\r\n", false);
	pump(w);
	cr_assert_str_eq(tlsflow_error(w->f, &side), "filter refused");
	cr_assert_eq(side, TLSFLOW_GUEST);
	cr_assert_eq(w->server.got_len, 0);
	world_free(w);
}

#define FORBIDDEN_REPLY "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

/* Passes the bytes before "FORBIDDEN", then answers the guest itself. */
static int replying_filter(void *arg, const uint8_t *in, size_t len,
			   int (*emit)(void *, const uint8_t *, size_t), void *emit_arg)
{
	struct tlsflow *f = arg;
	const uint8_t *p = memmem(in, len, "FORBIDDEN", 9);
	int r;

	if (!p)
		return emit(emit_arg, in, len);
	r = emit(emit_arg, in, (size_t)(p - in));
	if (r < 0)
		return r;
	cr_assert_eq(tlsflow_reply_guest(f, FORBIDDEN_REPLY, strlen(FORBIDDEN_REPLY)), 0);
	cr_assert_eq(tlsflow_reply_guest(f, "x", 1), -EPIPE, "answered twice");
	cr_assert_lt(emit(emit_arg, p, len - (size_t)(p - in)), 0, "emitted after the answer");
	return -EPERM;
}

Test(tlsflow, a_filter_can_answer_the_guest_itself)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	int side = -1;

	cr_assert_eq(tlsflow_reply_guest(w->f, "x", 1), -EPIPE, "answered before the handshake");
	tlsflow_set_filter(w->f, replying_filter, w->f);
	world_send(w, &w->guest, "ok FORBIDDEN rest", false);
	w->server.reply = RESPONSE;
	pump(w);
	cr_assert_str_eq(tlsflow_error(w->f, &side), "filter refused");
	cr_assert_eq(side, TLSFLOW_GUEST);
	cr_assert_eq(w->server.got_len, 3);
	cr_assert_eq(memcmp(w->server.got, "ok ", 3), 0);
	cr_assert_eq(w->guest.got_len, strlen(FORBIDDEN_REPLY));
	cr_assert_eq(memcmp(w->guest.got, FORBIDDEN_REPLY, w->guest.got_len), 0);
	cr_assert(w->guest.got_close, "no close_notify after the answer");
	cr_assert(tlsflow_guest_done(w->f));
	world_free(w);

	/* From outside a filter it ends the flow at once. */
	w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	pump(w);
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	cr_assert_eq(tlsflow_reply_guest(w->f, FORBIDDEN_REPLY, TLSFLOW_OUT_MAX + 1), -EMSGSIZE);
	cr_assert_eq(tlsflow_reply_guest(w->f, FORBIDDEN_REPLY, strlen(FORBIDDEN_REPLY)), 0);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_FILTER_REFUSED);
	pump(w);
	cr_assert_eq(w->guest.got_len, strlen(FORBIDDEN_REPLY));
	cr_assert(w->guest.got_close);
	world_free(w);
}

Test(tlsflow, a_filter_that_emits_without_bound_fails_the_flow)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	static char req[16001];

	memset(req, 'a', sizeof(req) - 1);
	tlsflow_set_filter(w->f, blowup_filter, NULL);
	world_send(w, &w->guest, req, false);
	pump(w);
	cr_assert_eq(tlsflow_reason(w->f), TLSFLOW_R_FILTER_OVERFLOW, "%s",
		     tlsflow_error(w->f, NULL));
	cr_assert_leq(w->to_server_bytes, TLSFLOW_EMIT_MAX + 65536);
	world_free(w);
}

/* ---- tests: flow control -------------------------------------------------------------- */

Test(tlsflow, an_undrained_flow_stays_bounded_and_loses_nothing)
{
	struct world *w = world_new(NAME, "DNS:" NAME, false, NAME, NULL, 0);
	size_t big = 4u << 20, before, fed;
	char *data = malloc(big + 1);

	cr_assert_not_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	data[big] = '\0';
	pump(w); /* the handshakes */
	cr_assert_eq(tlsflow_state(w->f), TLSFLOW_OPEN);
	before = w->to_server_bytes;
	fed = w->fed[TLSFLOW_GUEST];

	/* The server's connection takes nothing now: the flow must push back. */
	w->hold_to_server = true;
	world_send(w, &w->guest, data, false);
	pump(w);
	cr_assert(w->saw_enobufs, "the flow took 4 MiB without pushing back");
	cr_assert_leq(tlsflow_unread(w->f, TLSFLOW_GUEST), TLSFLOW_IN_MAX);
	cr_assert_eq(w->to_server_bytes, before);
	/* All it holds: what it took and has not passed on, encrypted or not. */
	cr_assert_leq(w->fed[TLSFLOW_GUEST] - fed, TLSFLOW_IN_MAX + TLSFLOW_OUT_MAX + 2 * 16640,
		      "the flow took %zu bytes", w->fed[TLSFLOW_GUEST] - fed);
	cr_assert_geq(w->fed[TLSFLOW_GUEST] - fed, TLSFLOW_IN_MAX);
	w->hold_to_server = false;
	pump(w);
	cr_assert_eq(w->server.got_len, big);
	cr_assert_eq(memcmp(w->server.got, data, big), 0, "bytes lost or reordered");

	/* The same toward the guest. */
	w->hold_to_guest = true;
	w->saw_enobufs = false;
	fed = w->fed[TLSFLOW_UPSTREAM];
	world_send(w, &w->server, data, false);
	pump(w);
	cr_assert(w->saw_enobufs);
	cr_assert_leq(tlsflow_unread(w->f, TLSFLOW_UPSTREAM), TLSFLOW_IN_MAX);
	cr_assert_leq(w->fed[TLSFLOW_UPSTREAM] - fed, TLSFLOW_IN_MAX + TLSFLOW_OUT_MAX + 2 * 16640);
	w->hold_to_guest = false;
	pump(w);
	cr_assert_eq(w->guest.got_len, big);
	cr_assert_eq(memcmp(w->guest.got, data, big), 0);
	free(data);
	world_free(w);
}

/* ---- tests: set-up errors -------------------------------------------------------------- */

Test(tlsflow, the_upstream_context_needs_a_bundle_with_certificates)
{
	char err[512] = "";
	char *empty = pem_file(NULL, NULL);
	struct tlsca_file junk = { .name = "junk.pem",
				   .data = "-----BEGIN CERTIFICATE-----\nAAAA\n",
				   .len = 33 };

	cr_assert_null(upstream_ctx(empty, err, sizeof(err)));
	cr_assert(strstr(err, empty), "%s", err);
	cr_assert_null(tlsflow_upstream_ctx(&junk, err, sizeof(err)));
	cr_assert(strstr(err, "junk.pem"), "%s", err);
	unlink(empty);
	free(empty);
	assert_no_openssl_errors();
}

Test(tlsflow, new_refuses_bad_names_and_unverifying_contexts)
{
	struct tlsca *ca;
	SSL_CTX *noverify = SSL_CTX_new(TLS_client_method());
	char err[256];

	cr_assert_eq(tlsca_generate(&ca, err, sizeof(err)), 0);
	cr_assert_null(tlsflow_new(tlsca_server_ctx(ca), noverify, NAME, err, sizeof(err)));
	cr_assert(strstr(err, "does not verify"), "%s", err);
	SSL_CTX_set_verify(noverify, SSL_VERIFY_PEER, NULL);
	cr_assert_null(tlsflow_new(tlsca_server_ctx(ca), noverify, "bad_name", err, sizeof(err)));
	cr_assert_null(tlsflow_new(tlsca_server_ctx(ca), noverify, "", err, sizeof(err)));
	cr_assert_null(
		tlsflow_new(tlsca_server_ctx(ca), noverify, "*.example.test", err, sizeof(err)));
	SSL_CTX_free(noverify);
	tlsca_free(ca);
}

/* ---- tests: the CA --------------------------------------------------------------------- */

Test(tlsca, the_ca_exports_as_pem_and_is_a_ca)
{
	struct tlsca *ca;
	char err[256], small[64], cn[128];
	BASIC_CONSTRAINTS *bc;
	X509 *x;
	EVP_PKEY *pub;

	cr_assert_eq(tlsca_generate(&ca, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tlsca_cert_pem(ca, small, sizeof(small)), -ENOSPC);
	x = moat_ca_cert(ca);
	cr_assert_gt(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					       sizeof(cn)),
		     0);
	cr_assert_eq(strncmp(cn, "moat sandbox CA ", 16), 0, "%s", cn);
	cr_assert_eq(strlen(cn), 16 + 16);
	cr_assert(X509_get_extension_flags(x) & EXFLAG_CA);
	cr_assert(X509_get_extension_flags(x) & EXFLAG_SS);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	cr_assert_not_null(bc);
	cr_assert(bc->ca);
	cr_assert_eq(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	cr_assert_eq(X509_get_ext_by_critical(x, 1, -1) >= 0, 1);
	cr_assert_eq(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	cr_assert_not_null(X509_get0_subject_key_id(x));
	pub = X509_get0_pubkey(x);
	cr_assert(EVP_PKEY_is_a(pub, "EC"));
	cr_assert_eq(X509_verify(x, pub), 1, "not self-signed");
	cr_assert_eq(X509_cmp_time(X509_get0_notBefore(x), NULL), -1);
	cr_assert_eq(X509_cmp_timeframe(NULL, X509_get0_notBefore(x), X509_get0_notAfter(x)), 0);
	X509_free(x);
	tlsca_free(ca);
}

Test(tlsca, a_leaf_has_the_fields_it_should)
{
	struct tlsca *ca;
	char err[256];
	X509 *leaf, *cax;
	const ASN1_INTEGER *serial;
	BASIC_CONSTRAINTS *bc;
	time_t now = time(NULL), t;

	cr_assert_eq(tlsca_generate(&ca, err, sizeof(err)), 0);
	cax = moat_ca_cert(ca);
	cr_assert_eq(tlsca_leaf(ca, "API.Example.TEST", &leaf), 0);
	cr_assert_eq(verify_leaf(leaf, cax, NAME, NULL), X509_V_OK, "lower-cased");
	serial = X509_get0_serialNumber(leaf);
	cr_assert_geq(ASN1_STRING_length(serial), 14); /* 128 random bits (rarely a byte less) */
	cr_assert_leq(ASN1_STRING_length(serial), 17);
	cr_assert_eq(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
	bc = X509_get_ext_d2i(leaf, NID_basic_constraints, NULL, NULL);
	cr_assert_not_null(bc);
	cr_assert_not(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	cr_assert_not_null(X509_get0_authority_key_id(leaf));
	cr_assert_eq(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf),
					   X509_get0_subject_key_id(cax)),
		     0);
	cr_assert_eq(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
	/* now - 1 h .. now + 7 days, to a minute */
	t = now + TLSCA_LEAF_DAYS * 86400 - 60;
	cr_assert_eq(X509_cmp_time(X509_get0_notAfter(leaf), &t), 1);
	t += 120;
	cr_assert_eq(X509_cmp_time(X509_get0_notAfter(leaf), &t), -1);
	t = now - TLSCA_BACKDATE_S - 60;
	cr_assert_eq(X509_cmp_time(X509_get0_notBefore(leaf), &t), 1);
	t += 120;
	cr_assert_eq(X509_cmp_time(X509_get0_notBefore(leaf), &t), -1);
	X509_free(leaf);
	X509_free(cax);
	tlsca_free(ca);
}

Test(tlsca, names_are_checked)
{
	static const char *const good[] = { "a",	 "api.example.test", "x-y.z9",
					    "192.0.2.1", "2001:db8::1",	     "::ffff:192.0.2.1" };
	static const char *const bad[] = { "",
					   "bad_name.test",
					   "a..b",
					   ".a",
					   "a.",
					   "*.example.test",
					   "a b",
					   "[::1]",
					   "fe80::1%eth0",
					   "caf\xc3\xa9.test",
					   "a/b" };
	char out[TLSCA_NAME_MAX + 1], name[300], label[70];
	struct tlsca *ca;
	X509 *leaf, *cax;
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_gt(tlsca_name_norm(good[i], out, sizeof(out)), 0, "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(tlsca_name_norm(bad[i], out, sizeof(out)), -EINVAL, "%s", bad[i]);
	cr_assert_eq(tlsca_name_norm("2001:DB8:0:0::1", out, sizeof(out)), TLSCA_NAME_IP);
	cr_assert_str_eq(out, "2001:db8::1");
	cr_assert_eq(tlsca_name_norm("Api.Example.Test", out, sizeof(out)), TLSCA_NAME_DNS);
	cr_assert_str_eq(out, NAME);

	/* Lengths: 253 bytes in labels of 63 pass; 254 do not, nor a label of 64. */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label, label, label, label);
	cr_assert_eq(strlen(name), 253);
	cr_assert_eq(tlsca_name_norm(name, out, sizeof(out)), TLSCA_NAME_DNS);
	cr_assert_eq(tlsca_generate(&ca, err, sizeof(err)), 0);
	cax = moat_ca_cert(ca);
	cr_assert_eq(tlsca_leaf(ca, name, &leaf), 0, "a 253-byte name");
	cr_assert_eq(verify_leaf(leaf, cax, name, NULL), X509_V_OK);
	X509_free(leaf);
	cr_assert_eq(tlsca_leaf(ca, "2001:db8::1", &leaf), 0);
	cr_assert_eq(verify_leaf(leaf, cax, NULL, "2001:db8::1"), X509_V_OK);
	X509_free(leaf);
	strcat(name, "a");
	cr_assert_eq(tlsca_name_norm(name, out, sizeof(out)), -EINVAL);
	snprintf(name, sizeof(name), "%sa.test", label);
	cr_assert_eq(tlsca_name_norm(name, out, sizeof(out)), -EINVAL);
	cr_assert_eq(tlsca_leaf(ca, "bad_name.test", &leaf), -EINVAL);
	cr_assert_null(leaf);
	cr_assert_eq(tlsca_cache_size(ca), 2);
	X509_free(cax);
	tlsca_free(ca);
}

Test(tlsca, the_leaf_cache_is_bounded_and_keeps_what_is_used)
{
	struct tlsca *ca;
	char err[256], name[64];
	X509 *hot, *cold, *x;

	cr_assert_eq(tlsca_generate(&ca, err, sizeof(err)), 0);
	cr_assert_eq(tlsca_leaf(ca, "cold.test", &cold), 0);
	cr_assert_eq(tlsca_leaf(ca, "hot.test", &hot), 0);
	cr_assert_eq(tlsca_leaf(ca, "hot.test", &x), 0);
	cr_assert_eq(x, hot, "a cache hit minted again");
	X509_free(x);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "n%d.example.test", i);
		cr_assert_eq(tlsca_leaf(ca, name, &x), 0);
		X509_free(x);
		cr_assert_leq(tlsca_cache_size(ca), TLSCA_CACHE_MAX);
		cr_assert_eq(tlsca_leaf(ca, "hot.test", &x), 0);
		X509_free(x);
	}
	cr_assert_eq(tlsca_cache_size(ca), TLSCA_CACHE_MAX);
	cr_assert_eq(tlsca_leaf(ca, "hot.test", &x), 0);
	cr_assert_eq(x, hot, "the most used leaf was evicted");
	X509_free(x);
	cr_assert_eq(tlsca_leaf(ca, "cold.test", &x), 0);
	cr_assert_neq(x, cold, "the least recently used leaf was kept");
	X509_free(x);
	X509_free(hot);
	X509_free(cold); /* still valid: its reference outlived its eviction */
	tlsca_free(ca);
}

Test(tlsca, load_checks_the_files_and_names_them)
{
	EVP_PKEY *k = key_new(), *other = key_new();
	X509 *ca = cert_make("operator CA", NULL, k, NULL, k, true);
	X509 *leafx = cert_make("not a CA", "DNS:x.test", other, ca, k, false);
	char *cert = pem_file(ca, NULL), *key = pem_file(NULL, k), *okey = pem_file(NULL, other);
	char *leafcert = pem_file(leafx, NULL);
	struct tlsca *t;
	char err[512];
	X509 *leaf;

	/* A good one: its leaves verify against it. */
	cr_assert_eq(load_ca(&t, cert, key, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tlsca_leaf(t, NAME, &leaf), 0);
	cr_assert_eq(verify_leaf(leaf, ca, NAME, NULL), X509_V_OK);
	X509_free(leaf);
	tlsca_free(t);

	/* Other key types sign leaves too: RSA, Ed25519. */
	for (int i = 0; i < 2; i++) {
		EVP_PKEY *ok = i ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") :
				   EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		X509 *oca = cert_make("other CA", NULL, ok, NULL, ok, true);
		char *oc = pem_file(oca, NULL), *ok_path = pem_file(NULL, ok);

		cr_assert_eq(load_ca(&t, oc, ok_path, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(tlsca_leaf(t, NAME, &leaf), 0);
		cr_assert_eq(verify_leaf(leaf, oca, NAME, NULL), X509_V_OK);
		X509_free(leaf);
		tlsca_free(t);
		unlink(oc);
		unlink(ok_path);
		free(oc);
		free(ok_path);
		X509_free(oca);
		EVP_PKEY_free(ok);
	}

	err[0] = '\0';
	cr_assert_eq(load_ca(&t, cert, okey, err, sizeof(err)), -EINVAL);
	cr_assert_null(t);
	cr_assert(strstr(err, okey) && strstr(err, "does not match"), "%s", err);

	cr_assert_eq(load_ca(&t, leafcert, okey, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, leafcert) && strstr(err, "not a CA"), "%s", err);

	{
		struct tlsca_file junk = { .name = "junk.pem", .data = "not PEM", .len = 7 };
		struct tlsca_file kb = file_bytes(key);

		cr_assert_eq(tlsca_load(&t, &junk, &kb, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "junk.pem"), "%s", err);
		free((char *)kb.data);
	}

	cr_assert_eq(load_ca(&t, key, key, err, sizeof(err)), -EINVAL, "a key as certificate");
	cr_assert(strstr(err, key), "%s", err);
	cr_assert_eq(load_ca(&t, cert, cert, err, sizeof(err)), -EINVAL, "a cert as key");
	cr_assert(strstr(err, cert), "%s", err);
	assert_no_openssl_errors();

	for (char **p = (char *[]){ cert, key, okey, leafcert, NULL }; *p; p++) {
		unlink(*p);
		free(*p);
	}
	X509_free(ca);
	X509_free(leafx);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

Test(tlsflow, reason_strings_are_stable)
{
	cr_assert_str_eq(tlsflow_reason_str(TLSFLOW_R_UPSTREAM_VERIFY),
			 "upstream certificate does not verify");
	cr_assert_str_eq(tlsflow_reason_str(TLSFLOW_R_GUEST_HANDSHAKE), "guest handshake failed");
	cr_assert_str_eq(tlsflow_reason_str(TLSFLOW_R_FILTER_REFUSED), "filter refused");
	cr_assert_str_eq(tlsflow_reason_str(999), "unknown");
	for (unsigned i = 0; i < TLSFLOW_R_COUNT; i++)
		cr_assert_not_null(tlsflow_reason_str(i));
}
