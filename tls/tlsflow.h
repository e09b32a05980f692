/* SPDX-License-Identifier: MIT */
/*
 * tlsflow.h - one intercepted TLS connection in moat-tls, as a byte pump
 * between memory buffers (see tlsflow.c for the flow-control contract)
 *
 * Context: moat-tls. Private to tls/ (and its unit tests). Needs tlsca.c
 * (tlsca_name_norm(), tlsca_expect_name()).
 */
#ifndef MOAT_TLS_TLSFLOW_H
#define MOAT_TLS_TLSFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "tls/tlsca.h"

/* Per flow and side (tlsflow.c, "Flow control"): */
#define TLSFLOW_IN_MAX	   (256u * 1024)      /* ciphertext taken in, not yet decrypted */
#define TLSFLOW_OUT_MAX	   (64u * 1024)	      /* pending output that pauses decryption */
#define TLSFLOW_EMIT_MAX   (4u * 1024 * 1024) /* pending toward the server: filter's limit */
#define TLSFLOW_CHUNK	   16384u	      /* plaintext per SSL_read: one TLS record */
#define TLSFLOW_DETAIL_MAX 128u		      /* bytes of tlsflow_error_detail(), NUL included */

/* The two ends of a flow: sides of tlsflow_error(), tlsflow_unread(). */
enum tlsflow_side {
	TLSFLOW_GUEST = 0,    /* the guest's connection: moat-tls is its TLS server */
	TLSFLOW_UPSTREAM = 1, /* the server's connection: moat-tls is its TLS client */
};

enum tlsflow_state {
	TLSFLOW_HANDSHAKE, /* one or both handshakes still going; no plaintext has moved */
	TLSFLOW_OPEN,	   /* both open, the server's certificate verified: plaintext moves */
	TLSFLOW_FAILED,	   /* final: tlsflow_error() says why; nothing more is decrypted */
	TLSFLOW_CLOSED,	   /* final: both plaintext streams ended; drain to_*, then close */
};

/* Why a flow failed: stable codes (for records and metrics); tlsflow_reason_str(). */
enum tlsflow_reason {
	TLSFLOW_R_NONE = 0,
	TLSFLOW_R_GUEST_HANDSHAKE,    /* "guest handshake failed" */
	TLSFLOW_R_GUEST_CLOSED,	      /* "guest closed during the handshake" */
	TLSFLOW_R_GUEST_RECORD,	      /* "guest sent a bad record" */
	TLSFLOW_R_FILTER_REFUSED,     /* "filter refused" */
	TLSFLOW_R_FILTER_OVERFLOW,    /* "filter output exceeds the flow's bound" */
	TLSFLOW_R_UPSTREAM_VERIFY,    /* "upstream certificate does not verify" */
	TLSFLOW_R_UPSTREAM_HANDSHAKE, /* "upstream handshake failed" */
	TLSFLOW_R_UPSTREAM_CLOSED,    /* "upstream closed during the handshake" */
	TLSFLOW_R_UPSTREAM_RECORD,    /* "upstream sent a bad record" */
	TLSFLOW_R_INTERNAL,	      /* "internal error" (out of memory, an OpenSSL failure) */
	TLSFLOW_R_COUNT
};

/**
 * typedef tlsflow_filter_fn - what the guest's plaintext goes through
 * @arg:	tlsflow_set_filter()'s @arg
 * @in, @len:	the next bytes of the guest's decrypted stream (1 to
 *		TLSFLOW_CHUNK bytes, in order, cut anywhere)
 * @emit:	call it with the bytes to encrypt toward the server, any number
 *		of times; it returns 0, or a negative errno once the flow has
 *		failed (the filter should then return that value)
 * @emit_arg:	@emit's first argument
 *
 * Return: >= 0 to go on; negative to refuse: the flow fails ("filter
 * refused", side guest). Whatever was emitted before stays emitted.
 */
typedef int (*tlsflow_filter_fn)(void *arg, const uint8_t *in, size_t len,
				 int (*emit)(void *emit_arg, const uint8_t *buf, size_t len),
				 void *emit_arg);

struct tlsflow;

SSL_CTX *tlsflow_upstream_ctx(const struct tlsca_file *bundle, char *err, size_t errlen);
struct tlsflow *tlsflow_new(SSL_CTX *guest_side, SSL_CTX *upstream_side, const char *sni, char *err,
			    size_t errlen);
void tlsflow_set_filter(struct tlsflow *f, tlsflow_filter_fn fn, void *arg);
int tlsflow_reply_guest(struct tlsflow *f, const void *buf, size_t len);
int tlsflow_from_guest(struct tlsflow *f, const void *buf, size_t len);
int tlsflow_from_upstream(struct tlsflow *f, const void *buf, size_t len);
size_t tlsflow_to_guest(struct tlsflow *f, void *buf, size_t cap);
size_t tlsflow_to_upstream(struct tlsflow *f, void *buf, size_t cap);
void tlsflow_eof_from_guest(struct tlsflow *f);
void tlsflow_eof_from_upstream(struct tlsflow *f);
bool tlsflow_guest_done(const struct tlsflow *f);
bool tlsflow_upstream_done(const struct tlsflow *f);
size_t tlsflow_unread(const struct tlsflow *f, enum tlsflow_side side);
enum tlsflow_state tlsflow_state(const struct tlsflow *f);
const char *tlsflow_error(const struct tlsflow *f, int *side);
enum tlsflow_reason tlsflow_reason(const struct tlsflow *f);
const char *tlsflow_error_detail(const struct tlsflow *f);
const char *tlsflow_reason_str(unsigned reason);
const char *tlsflow_alpn(const struct tlsflow *f);
void tlsflow_free(struct tlsflow *f);

#endif /* MOAT_TLS_TLSFLOW_H */
