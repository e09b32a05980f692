/* SPDX-License-Identifier: MIT */
/*
 * tlsca.c - moat-tls's interception CA: the certificate the guest is told to
 * trust, and the leaf certificates minted under it per server name
 *
 * Theory of Operation
 * -------------------
 * moat-tls terminates the guest's TLS for the names a policy intercepts
 * (tlsflow.c). The guest trusts one CA that moat holds: an operator's,
 * taken from the bytes of its PEM files by tlsca_load(), or a fresh one made at start by
 * tlsca_generate() (EC P-256, self-signed, "moat sandbox CA <64 random
 * bits in hex>", basicConstraints critical CA:TRUE pathlen:0, keyUsage
 * critical keyCertSign cRLSign, subjectKeyIdentifier, valid from an hour
 * ago for TLSCA_CA_DAYS). tlsca_cert_pem() gives its certificate to the
 * orchestrator, which installs it in the guest's trust store. A loaded CA
 * is checked before it is used: its key must match the certificate, the
 * certificate must say basicConstraints CA:TRUE, allow keyCertSign if it
 * has a keyUsage, and be valid now; each error names the file.
 *
 * tlsca_server_ctx() is the SSL_CTX every guest-side connection is
 * accepted with: TLS 1.2 or 1.3, ECDHE with AES-GCM or ChaCha20-Poly1305,
 * no renegotiation, no session cache (every handshake is a full
 * one, and nothing about one guest connection is kept for the next). It
 * has no certificate of its own: a servername callback, run on the guest's
 * ClientHello, checks the name the guest asks for and installs the leaf
 * for it. ALPN: "http/1.1" when the guest offers it, otherwise no ALPN at
 * all. HTTP/2 is never selected, because the secret rewriter behind it
 * (http1.c) reads HTTP/1.1 only; a guest that offers only h2 gets no ALPN
 * and speaks what it likes, which the rewriter then refuses unless it is
 * HTTP/1.1.
 *
 * Names. A name is a DNS name of 1 to TLSCA_NAME_MAX bytes of
 * [A-Za-z0-9.-] in labels of 1 to TLSCA_LABEL_MAX bytes (no empty label,
 * so no leading, trailing or double dot; no '*', so no wildcard), taken
 * lower-cased; or an IPv4 or IPv6 literal, taken in its canonical text
 * form (inet_ntop). Anything else is refused: the handshake fails with an
 * unrecognized_name alert. The connection's own name, when tlsflow.c set
 * one with tlsca_expect_name(), is used when the guest sends no SNI, and
 * must be the SNI when it sends one (so the leaf always names the server
 * that moat-tls connects to and checks).
 *
 * Leaves. One EC P-256 key per tlsca, made once, is the key of every leaf,
 * so a new name costs one signature, not a key generation. A leaf has a
 * random 128-bit serial, subject CN the name (left out when the name is
 * longer than a CN may be, 64 bytes: the subjectAltName is then critical,
 * RFC 5280 4.2.1.6), subjectAltName DNS:name or IP:address, basicConstraints
 * critical CA:FALSE, keyUsage critical digitalSignature, extendedKeyUsage
 * serverAuth, authorityKeyIdentifier, validity an hour ago to
 * TLSCA_LEAF_DAYS from now, signed by the CA with SHA-256 (or with the
 * CA's own scheme for an Ed25519/Ed448 CA key). Leaves live in a cache of
 * TLSCA_CACHE_MAX names, searched linearly (256 string compares are noise
 * beside the handshake's signature and key exchange); when it is full the
 * least recently used leaf goes, so no sequence of names a guest sends can
 * grow it. A cached leaf older than TLSCA_LEAF_REUSE_S is minted again,
 * so a long-running moat never serves one near its end. A leaf in use by a
 * handshake holds its own reference and outlives its eviction.
 *
 * Context: moat-tls, which opens no file: tlsca_load() takes the bytes
 * that moat-tls read from descriptors the supervisor opened. Errors
 * are negative errnos; the set-up functions also write a reason into
 * @err. Single-threaded, as moat-tls is.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tlsca.h"

#define TLSCA_CN_MAX	 64 /* ub_common_name, RFC 5280 */
#define TLSCA_SERIAL_LEN 16 /* 128 random bits */
#define TLSCA_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20"

/* One cached leaf; an empty slot has cert == NULL. */
struct tlsca_slot {
	char name[TLSCA_NAME_MAX + 1]; /* normalised (tlsca_name_norm()) */
	X509 *cert;
	time_t minted;
	uint64_t used; /* tlsca.tick when last handed out */
};

struct tlsca {
	EVP_PKEY *key;	    /* the CA's */
	X509 *cert;	    /* the CA's */
	EVP_PKEY *leaf_key; /* every leaf's */
	SSL_CTX *ctx;	    /* tlsca_server_ctx() */
	uint64_t tick;
	size_t n_slots; /* slots in use: cache[0 .. n_slots) */
	struct tlsca_slot cache[TLSCA_CACHE_MAX];
};

/* The SSL ex_data slot of tlsca_expect_name(), made once per process. */
static CRYPTO_ONCE tlsca_idx_once = CRYPTO_ONCE_STATIC_INIT;
static int tlsca_idx = -1;

static void tlsca_idx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			   void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	OPENSSL_free(ptr);
}

static void tlsca_idx_init(void)
{
	tlsca_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tlsca_idx_free);
}

static int tlsca_idx_get(void)
{
	if (!CRYPTO_THREAD_run_once(&tlsca_idx_once, tlsca_idx_init))
		return -1;
	return tlsca_idx;
}

/* OpenSSL's reason for the last error on the queue, for an error message. */
static const char *tlsca_ossl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r ? r : "no further detail";
}

/* Write a reason into @err (when there is one) and return @ret. */
static int __attribute__((format(printf, 4, 5)))
tlsca_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	ERR_clear_error();
	return ret;
}

/**
 * tlsca_name_norm() - check a server name and put it in the form leaves and
 * the cache use
 * @name:	NUL-terminated, from the guest (SNI) or the proxy
 * @out:	the name lower-cased, or an IP literal in canonical form
 * @outlen:	bytes at @out: at least TLSCA_NAME_MAX + 1
 *
 * Context: pure; any thread.
 * Return: TLSCA_NAME_DNS or TLSCA_NAME_IP; -EINVAL for a name moat refuses
 * (empty, longer than TLSCA_NAME_MAX, a byte outside [A-Za-z0-9.-] in a
 * name that is no IP literal, an empty label or one longer than
 * TLSCA_LABEL_MAX), or when @outlen is too small.
 */
int tlsca_name_norm(const char *name, char *out, size_t outlen)
{
	unsigned char ip[16];
	size_t len, i, label = 0;

	if (!name || !out || outlen < TLSCA_NAME_MAX + 1)
		return -EINVAL;
	len = strnlen(name, TLSCA_NAME_MAX + 1);
	if (len == 0 || len > TLSCA_NAME_MAX)
		return -EINVAL;
	if (inet_pton(AF_INET, name, ip) == 1)
		return inet_ntop(AF_INET, ip, out, (socklen_t)outlen) ? TLSCA_NAME_IP : -EINVAL;
	if (inet_pton(AF_INET6, name, ip) == 1)
		return inet_ntop(AF_INET6, ip, out, (socklen_t)outlen) ? TLSCA_NAME_IP : -EINVAL;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
			label++;
		} else {
			return -EINVAL;
		}
		if (label > TLSCA_LABEL_MAX)
			return -EINVAL;
		out[i] = c;
	}
	if (label == 0) /* a trailing dot */
		return -EINVAL;
	out[len] = '\0';
	return TLSCA_NAME_DNS;
}

/* Add extension @nid = @value (OpenSSL's config syntax) to @x, issued by @issuer. */
static int tlsca_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX c;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &c, nid, value);
	if (!e)
		return -EINVAL;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -ENOMEM;
}

/* A random positive 128-bit serial number for @x. */
static int tlsca_serial(X509 *x)
{
	unsigned char b[TLSCA_SERIAL_LEN];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (!bn)
		return -ENOMEM;
	if (BN_is_zero(bn))
		BN_one(bn);
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

/* A version 3 certificate for @pub with a random serial, valid from an hour ago for @days. */
static X509 *tlsca_cert_new(EVP_PKEY *pub, int days)
{
	X509 *x = X509_new();

	if (!x)
		return NULL;
	if (!X509_set_version(x, X509_VERSION_3) || tlsca_serial(x) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -TLSCA_BACKDATE_S) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) || !X509_set_pubkey(x, pub)) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* The digest @key signs with: SHA-256, or none for the schemes that have their own. */
static const EVP_MD *tlsca_md(EVP_PKEY *key)
{
	if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
		return NULL;
	return EVP_sha256();
}

/* A fresh self-signed CA certificate for @key. */
static X509 *tlsca_ca_cert_new(EVP_PKEY *key)
{
	unsigned char rnd[8];
	char cn[TLSCA_CN_MAX];
	size_t off;
	X509_NAME *n;
	X509 *x;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	off = (size_t)snprintf(cn, sizeof(cn), "moat sandbox CA ");
	for (size_t i = 0; i < sizeof(rnd); i++)
		off += (size_t)snprintf(cn + off, sizeof(cn) - off, "%02x", rnd[i]);
	x = tlsca_cert_new(key, TLSCA_CA_DAYS);
	if (!x)
		return NULL;
	n = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
					0) ||
	    !X509_set_issuer_name(x, n) ||
	    tlsca_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    tlsca_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    tlsca_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
	    X509_sign(x, key, EVP_sha256()) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* A new leaf for @name (normalised, of @kind), signed by @ca. */
static X509 *tlsca_mint(const struct tlsca *ca, const char *name, int kind)
{
	char san[TLSCA_NAME_MAX + 16];
	bool long_name = strlen(name) > TLSCA_CN_MAX;
	X509 *x = tlsca_cert_new(ca->leaf_key, TLSCA_LEAF_DAYS);

	if (!x)
		return NULL;
	snprintf(san, sizeof(san), "%s%s:%s", long_name ? "critical," : "",
		 kind == TLSCA_NAME_IP ? "IP" : "DNS", name);
	if ((!long_name && !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
						       (const unsigned char *)name, -1, -1, 0)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    tlsca_ext(x, ca->cert, NID_subject_alt_name, san) < 0 ||
	    tlsca_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tlsca_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tlsca_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    /* keyid from the CA's subjectKeyIdentifier; a CA without one is
	     * named by issuer and serial instead */
	    tlsca_ext(x, ca->cert, NID_authority_key_identifier,
		      X509_get0_subject_key_id(ca->cert) ? "keyid:always" : "issuer:always") < 0 ||
	    X509_sign(x, ca->key, tlsca_md(ca->key)) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/**
 * tlsca_leaf() - the leaf certificate for a name, from the cache or minted
 * @ca:		the CA
 * @name:	the server name (checked and normalised as by tlsca_name_norm())
 * @out:	a new reference to the leaf (the caller X509_free()s it); NULL on
 *		error. Its key is the tlsca's leaf key.
 *
 * A cache hit makes the leaf the most recently used; a miss mints one and
 * puts it in a free slot or in place of the least recently used leaf.
 *
 * Context: moat-tls; called by the servername callback during a guest
 * handshake, and by tests.
 * Return: 0; -EINVAL for a refused name; -ENOMEM (or -EIO) when minting failed.
 */
int tlsca_leaf(struct tlsca *ca, const char *name, X509 **out)
{
	char norm[TLSCA_NAME_MAX + 1];
	struct tlsca_slot *s = NULL;
	time_t now = time(NULL);
	int kind;
	X509 *x;

	*out = NULL;
	kind = tlsca_name_norm(name, norm, sizeof(norm));
	if (kind < 0)
		return kind;
	for (size_t i = 0; i < ca->n_slots; i++) {
		if (strcmp(ca->cache[i].name, norm) == 0) {
			s = &ca->cache[i];
			break;
		}
	}
	/* A fresh hit; a stale one (or a clock that went back) is minted again. */
	if (s && now >= s->minted && now - s->minted < TLSCA_LEAF_REUSE_S) {
		s->used = ++ca->tick;
		if (!X509_up_ref(s->cert))
			return -ENOMEM;
		*out = s->cert;
		return 0;
	}
	x = tlsca_mint(ca, norm, kind);
	if (!x || !X509_up_ref(x)) {
		X509_free(x);
		ERR_clear_error();
		return -ENOMEM;
	}
	/* Where it goes: its own stale slot, a free one, or the least recently used. */
	if (!s && ca->n_slots < TLSCA_CACHE_MAX) {
		s = &ca->cache[ca->n_slots++];
	} else if (!s) {
		s = &ca->cache[0];
		for (size_t i = 1; i < ca->n_slots; i++)
			if (ca->cache[i].used < s->used)
				s = &ca->cache[i];
	}
	X509_free(s->cert);
	memcpy(s->name, norm, sizeof(norm));
	s->cert = x;
	s->minted = now;
	s->used = ++ca->tick;
	*out = x;
	return 0;
}

/**
 * tlsca_cache_size() - leaves in the cache now
 * @ca:		the CA
 *
 * Return: 0 to TLSCA_CACHE_MAX.
 */
size_t tlsca_cache_size(const struct tlsca *ca)
{
	return ca->n_slots;
}

/**
 * tlsca_expect_name() - say which server a guest-side connection is for
 * @ssl:	an SSL made from tlsca_server_ctx(), before its handshake
 * @name:	the connection's name (the SNI the proxy decided on); copied
 *
 * The servername callback then mints the leaf for @name when the guest
 * sends no SNI, and fails the handshake when the guest's SNI is another
 * name. On an SSL of another SSL_CTX it has no effect.
 *
 * Return: 0; -EINVAL for a name tlsca_name_norm() refuses; -ENOMEM.
 */
int tlsca_expect_name(SSL *ssl, const char *name)
{
	char norm[TLSCA_NAME_MAX + 1];
	int idx = tlsca_idx_get();
	char *copy;

	if (idx < 0)
		return -ENOMEM;
	if (tlsca_name_norm(name, norm, sizeof(norm)) < 0)
		return -EINVAL;
	copy = OPENSSL_strdup(norm);
	if (!copy)
		return -ENOMEM;
	/* The old copy, if any, is freed here; the last one by tlsca_idx_free(). */
	OPENSSL_free(SSL_get_ex_data(ssl, idx));
	if (!SSL_set_ex_data(ssl, idx, copy)) {
		OPENSSL_free(copy);
		return -ENOMEM;
	}
	return 0;
}

/*
 * The servername callback: check the name the guest asks for (or the
 * connection's, without SNI) and install its leaf. Runs inside SSL_do_handshake().
 */
static int tlsca_sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tlsca *ca = arg;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	int idx = tlsca_idx_get();
	const char *want = idx >= 0 ? SSL_get_ex_data(ssl, idx) : NULL;
	char norm[TLSCA_NAME_MAX + 1];
	X509 *leaf;
	int ok;

	*alert = SSL_AD_UNRECOGNIZED_NAME;
	if (!sni)
		sni = want;
	if (!sni || tlsca_name_norm(sni, norm, sizeof(norm)) < 0)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	if (want && strcmp(norm, want) != 0)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	if (tlsca_leaf(ca, norm, &leaf) < 0) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	ok = SSL_use_certificate(ssl, leaf) == 1 && SSL_use_PrivateKey(ssl, ca->leaf_key) == 1;
	X509_free(leaf);
	if (!ok) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* ALPN: "http/1.1" if the guest offers it, else none (never h2). */
static int tlsca_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			 const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "http/1.1";
	unsigned int i = 0;

	(void)ssl;
	(void)arg;
	/* OpenSSL has checked the list's framing; walk it bounds-checked anyway. */
	while (i < inlen) {
		unsigned int n = in[i];

		if (n == 0 || n > inlen - i - 1)
			break;
		if (n == sizeof(h11) - 1 && memcmp(in + i + 1, h11, n) == 0) {
			*out = h11;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* The leaf key and the guest-side SSL_CTX, once the CA's key and certificate are in. */
static int tlsca_finish(struct tlsca *ca, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ca->leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!ca->leaf_key)
		return tlsca_errf(err, errlen, -ENOMEM, "cannot make the leaf key: %s",
				  tlsca_ossl_reason());
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return tlsca_errf(err, errlen, -ENOMEM,
				  "cannot make the guest-side TLS context: %s",
				  tlsca_ossl_reason());
	ca->ctx = ctx;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLSCA_CIPHERS_12))
		return tlsca_errf(err, errlen, -EINVAL,
				  "cannot configure the guest-side TLS context: %s",
				  tlsca_ossl_reason());
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
					 SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/*
	 * One TLS 1.3 ticket, though it can never resume (no session is kept):
	 * it is data right after the client's Finished, so the client's TCP gets
	 * its ACK at once. Without it a client with Nagle on (Python's ssl, ab)
	 * holds its first request until the netstack's delayed ACK, 200 ms
	 * (measured with bench/tls.sh: 125 ms per connection, 2 ms with it).
	 */
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_tlsext_servername_callback(ctx, tlsca_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, ca);
	SSL_CTX_set_alpn_select_cb(ctx, tlsca_alpn_cb, NULL);
	if (tlsca_idx_get() < 0)
		return tlsca_errf(err, errlen, -ENOMEM, "cannot allocate an SSL ex_data index");
	ERR_clear_error();
	return 0;
}

/**
 * tlsca_generate() - make a fresh interception CA
 * @out:	the CA (tlsca_free() it), NULL on error
 * @err:	a reason on error (may be NULL)
 * @errlen:	bytes at @err
 *
 * The CA is described at the top of this file; its key never leaves the
 * process.
 *
 * Context: moat-tls, before it confines itself (OpenSSL may read its
 * configuration on first use).
 * Return: 0; -ENOMEM (or another negative errno) with @err set.
 */
int tlsca_generate(struct tlsca **out, char *err, size_t errlen)
{
	struct tlsca *ca = calloc(1, sizeof(*ca));
	int ret;

	*out = NULL;
	if (!ca)
		return tlsca_errf(err, errlen, -ENOMEM, "out of memory");
	ca->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!ca->key) {
		tlsca_free(ca);
		return tlsca_errf(err, errlen, -ENOMEM, "cannot make the CA key: %s",
				  tlsca_ossl_reason());
	}
	ca->cert = tlsca_ca_cert_new(ca->key);
	if (!ca->cert) {
		tlsca_free(ca);
		return tlsca_errf(err, errlen, -ENOMEM, "cannot make the CA certificate: %s",
				  tlsca_ossl_reason());
	}
	ret = tlsca_finish(ca, err, errlen);
	if (ret < 0) {
		tlsca_free(ca);
		return ret;
	}
	*out = ca;
	return 0;
}

/* No passphrase prompt: an encrypted key is an error, not a question on a terminal. */
static int tlsca_no_pass(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Read the first certificate (@cert) or private key (@key) in the PEM at @pem, from file @name. */
static int tlsca_read_pem(const char *pem, size_t len, const char *name, X509 **cert,
			  EVP_PKEY **key, char *err, size_t errlen)
{
	BIO *b = len <= INT_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;

	if (!b)
		return tlsca_errf(err, errlen, -ENOMEM, "%s: cannot read it (%s)", name,
				  len > INT_MAX ? "too large" : "out of memory");
	if (cert)
		*cert = PEM_read_bio_X509(b, NULL, tlsca_no_pass, NULL);
	else
		*key = PEM_read_bio_PrivateKey(b, NULL, tlsca_no_pass, NULL);
	BIO_free(b);
	if (cert && !*cert)
		return tlsca_errf(err, errlen, -EINVAL, "%s: no PEM certificate could be read (%s)",
				  name, tlsca_ossl_reason());
	if (!cert && !*key)
		return tlsca_errf(
			err, errlen, -EINVAL,
			"%s: no PEM private key could be read (%s; an encrypted key is not supported)",
			name, tlsca_ossl_reason());
	return 0;
}

/* Is @cert usable as the interception CA? */
static int tlsca_check_ca(X509 *cert, const char *path, char *err, size_t errlen)
{
	uint32_t flags = X509_get_extension_flags(cert);

	if (flags & EXFLAG_INVALID)
		return tlsca_errf(err, errlen, -EINVAL,
				  "%s: the certificate's extensions are invalid", path);
	if (!(flags & EXFLAG_CA))
		return tlsca_errf(err, errlen, -EINVAL,
				  "%s: not a CA certificate (no basicConstraints CA:TRUE)", path);
	if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
		return tlsca_errf(err, errlen, -EINVAL,
				  "%s: the certificate's keyUsage does not allow keyCertSign",
				  path);
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
		return tlsca_errf(err, errlen, -EINVAL, "%s: the certificate has expired", path);
	if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0)
		return tlsca_errf(err, errlen, -EINVAL, "%s: the certificate is not valid yet",
				  path);
	return 0;
}

/**
 * tlsca_load() - take an operator's interception CA
 * @out:	the CA (tlsca_free() it), NULL on error
 * @cert:	the CA certificate, PEM (the first one in it)
 * @key:	its private key, PEM, unencrypted
 * @err:	a reason naming the file at fault, on error (may be NULL)
 * @errlen:	bytes at @err
 *
 * The files' bytes, not their paths: the supervisor opens them and hands
 * moat-tls the descriptors, so moat-tls opens no file, and no other
 * process reads the key. Checks that the key matches the certificate and
 * that the certificate is a CA's (basicConstraints CA:TRUE, keyCertSign if
 * it has a keyUsage, valid now).
 *
 * Return: 0; -EINVAL for a bad file, or -ENOMEM, with @err set.
 */
int tlsca_load(struct tlsca **out, const struct tlsca_file *cert, const struct tlsca_file *key,
	       char *err, size_t errlen)
{
	struct tlsca *ca = calloc(1, sizeof(*ca));
	int ret;

	*out = NULL;
	if (!ca)
		return tlsca_errf(err, errlen, -ENOMEM, "out of memory");
	ret = tlsca_read_pem(cert->data, cert->len, cert->name, &ca->cert, NULL, err, errlen);
	if (ret == 0)
		ret = tlsca_read_pem(key->data, key->len, key->name, NULL, &ca->key, err, errlen);
	if (ret == 0 && X509_check_private_key(ca->cert, ca->key) != 1)
		ret = tlsca_errf(err, errlen, -EINVAL,
				 "%s: the key does not match the certificate in %s", key->name,
				 cert->name);
	if (ret == 0)
		ret = tlsca_check_ca(ca->cert, cert->name, err, errlen);
	if (ret == 0)
		ret = tlsca_finish(ca, err, errlen);
	if (ret < 0) {
		tlsca_free(ca);
		return ret;
	}
	*out = ca;
	return 0;
}

/**
 * tlsca_cert_pem() - the CA certificate in PEM, for the guest's trust store
 * @ca:		the CA
 * @buf:	where to write it, NUL-terminated
 * @len:	bytes at @buf
 *
 * Return: the PEM's length (without the NUL); -ENOSPC when @len is too
 * small (nothing useful is written); -ENOMEM.
 */
int tlsca_cert_pem(const struct tlsca *ca, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int ret;

	if (!b)
		return -ENOMEM;
	if (PEM_write_bio_X509(b, ca->cert) != 1) {
		BIO_free(b);
		ERR_clear_error();
		return -ENOMEM;
	}
	n = BIO_get_mem_data(b, &p);
	if (n <= 0 || n > INT32_MAX) {
		ret = -ENOMEM;
	} else if ((size_t)n >= len) {
		ret = -ENOSPC;
	} else {
		memcpy(buf, p, (size_t)n);
		buf[n] = '\0';
		ret = (int)n;
	}
	BIO_free(b);
	return ret;
}

/**
 * tlsca_server_ctx() - the SSL_CTX guest-side connections are accepted with
 * @ca:		the CA
 *
 * Its servername callback mints the leaf per SNI (see the top of this file).
 * It belongs to @ca: do not SSL_CTX_free() it, and free every SSL made from
 * it (every tlsflow) before tlsca_free(), whose state its callback uses.
 *
 * Return: the context (never NULL for a CA that tlsca_generate() or
 * tlsca_load() returned).
 */
SSL_CTX *tlsca_server_ctx(struct tlsca *ca)
{
	return ca->ctx;
}

/**
 * tlsca_free() - release a CA, its cache and its SSL_CTX
 * @ca:		the CA (NULL is fine)
 */
void tlsca_free(struct tlsca *ca)
{
	if (!ca)
		return;
	for (size_t i = 0; i < ca->n_slots; i++)
		X509_free(ca->cache[i].cert);
	SSL_CTX_free(ca->ctx);
	EVP_PKEY_free(ca->leaf_key);
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	free(ca);
}
