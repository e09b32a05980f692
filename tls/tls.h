/* SPDX-License-Identifier: MIT */
/*
 * tls.h - the moat-tls role: TLS interception and secret injection
 * (docs/tls.md)
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdint.h>
#include <sys/types.h>

/*
 * The supervisor and moat-tls (docs/tls.md, "Configuration"). FD_TLS_CONFIG
 * is a pipe that carries configurations: the policy's tls and secrets
 * sections as JSON, then each secret's value (each part behind a
 * little-endian u32 length; the value count too). FD_TLS_SUPERVISOR is a
 * seqpacket pair that carries struct tls_ctl both ways: the supervisor
 * writes a configuration into the pipe, then sends OFFER with the
 * descriptors of the files the policy names attached (one per TLS_FILE_*
 * bit in @files, in bit order); moat-tls reads both and answers OK (the
 * CA certificate in PEM follows the header) or REFUSED (the reason
 * follows); the supervisor then sends COMMIT or ABORT with the same @seq.
 */
enum tls_ctl_kind {
	TLS_CTL_OFFER = 1, /* supervisor: a configuration is in the pipe */
	TLS_CTL_COMMIT,	   /* supervisor: put offer @seq in force */
	TLS_CTL_ABORT,	   /* supervisor: forget offer @seq */
	TLS_CTL_OK,	   /* moat-tls: offer @seq is usable; its CA certificate follows */
	TLS_CTL_REFUSED,   /* moat-tls: offer @seq is not; why follows */
};

enum {
	TLS_FILE_CA_CERT = 1u,	/* tls.ca.cert */
	TLS_FILE_CA_KEY = 2u,	/* tls.ca.key */
	TLS_FILE_UPSTREAM = 4u, /* tls.upstream_ca */
};

struct tls_ctl {
	uint32_t kind, seq, files;
};

#define TLS_CTL_TEXT_MAX 16384u	    /* bytes after a reply's header */
#define TLS_FILE_MAX	 (8u << 20) /* bytes in one file moat-tls is handed */

int tls_main(pid_t supervisor);

#endif /* MOAT_TLS_H */
