/* SPDX-License-Identifier: MIT */
/*
 * tlsca.h - moat-tls's interception CA and the leaf certificates it mints
 * per server name (see tlsca.c)
 *
 * Context: moat-tls. Private to tls/ (and its unit tests). OpenSSL's types
 * appear only where an OpenSSL object is handed over: the guest-side
 * SSL_CTX, a leaf, the SSL a name is expected on.
 */
#ifndef MOAT_TLS_TLSCA_H
#define MOAT_TLS_TLSCA_H

#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TLSCA_NAME_MAX	   253u		  /* bytes in a server name (a DNS name's limit) */
#define TLSCA_LABEL_MAX	   63u		  /* bytes in one of its labels */
#define TLSCA_CACHE_MAX	   256u		  /* leaves kept; the least recently used goes */
#define TLSCA_CA_DAYS	   3652		  /* a generated CA: now - 1 h .. now + 10 years */
#define TLSCA_LEAF_DAYS	   7		  /* a leaf: now - 1 h .. now + 7 days */
#define TLSCA_BACKDATE_S   3600		  /* notBefore, for guests whose clock is behind */
#define TLSCA_LEAF_REUSE_S (24 * 60 * 60) /* a cached leaf older than this is minted again */

/* What tlsca_name_norm() found a name to be. */
enum tlsca_name_kind {
	TLSCA_NAME_DNS = 1, /* a host name: subjectAltName DNS */
	TLSCA_NAME_IP = 2,  /* an IPv4 or IPv6 literal: subjectAltName IP */
};

struct tlsca;

/**
 * struct tlsca_file - a file's bytes, as moat-tls read them from a descriptor
 * @name:	its path, for error messages
 * @data:	its bytes
 * @len:	bytes at @data
 */
struct tlsca_file {
	const char *name;
	const char *data;
	size_t len;
};

int tlsca_generate(struct tlsca **out, char *err, size_t errlen);
int tlsca_load(struct tlsca **out, const struct tlsca_file *cert, const struct tlsca_file *key,
	       char *err, size_t errlen);
int tlsca_cert_pem(const struct tlsca *ca, char *buf, size_t len);
SSL_CTX *tlsca_server_ctx(struct tlsca *ca);
int tlsca_leaf(struct tlsca *ca, const char *name, X509 **out);
size_t tlsca_cache_size(const struct tlsca *ca);
int tlsca_name_norm(const char *name, char *out, size_t outlen);
int tlsca_expect_name(SSL *ssl, const char *name);
void tlsca_free(struct tlsca *ca);

#endif /* MOAT_TLS_TLSCA_H */
