/* SPDX-License-Identifier: MIT */
/*
 * tlsmsg.h - the records between moat-proxy and moat-tls (issue 17)
 *
 * One SOCK_SEQPACKET socketpair between them, one record per datagram: a
 * 12-byte header (flow id, type, payload length) and a short payload. The
 * proxy opens a flow with OPEN and two unix stream sockets (SCM_RIGHTS):
 * moat-tls speaks TLS with the guest on one and with the server on the
 * other, and the proxy relays them to the netstack and to the real server.
 * moat-tls answers what became of the flow. docs/tls.md.
 */
#ifndef MOAT_TLSMSG_H
#define MOAT_TLSMSG_H

#include <stddef.h>
#include <stdint.h>

/*
 * Intercepted connections at once: the proxy's pool of splices holds this
 * many; moat-tls's table twice as many, so that flows the proxy has closed
 * and moat-tls has not yet seen hang up never make it refuse a new one.
 */
#define TLSMSG_MAX_FLOWS 256

#define TLSMSG_HDR     12u
#define TLSMSG_SNI_MAX 253u
#define TLSMSG_MAX     (TLSMSG_HDR + TLSMSG_SNI_MAX)
#define TLSMSG_FDS     2u /* with OPEN: the guest side's and the server side's socket */

enum tlsmsg_type {
	/* proxy -> moat-tls */
	TLSMSG_OPEN = 1, /* a new flow; payload: the SNI; TLSMSG_FDS descriptors */
	/* moat-tls -> proxy: what became of a flow; payload u32 a, u32 b */
	TLSMSG_OPENED = 16, /* both handshakes done (a, b: 0) */
	TLSMSG_FAIL,	    /* a: side (0 guest, 1 server), b: enum tlsmsg_reason */
	TLSMSG_SECRET,	    /* b: TLSMSG_SECRET_*; a: the secret's index (a violation) or
			     * how many requests were rewritten (injections) */
};

enum tlsmsg_reason {
	TLSMSG_R_HANDSHAKE, /* the TLS handshake failed */
	TLSMSG_R_VERIFY,    /* the server's certificate does not verify for the name */
	TLSMSG_R_NAME,	    /* no certificate can be made for the name */
	TLSMSG_R_HTTP,	    /* the guest's requests are not HTTP/1.1 moat can follow */
	TLSMSG_R_TOO_MANY,  /* moat-tls has no room for another flow */
	TLSMSG_R_IO,	    /* a socket error, or the peer went away mid-handshake */
	TLSMSG_R_RELOAD,    /* cut by a reload that changed the secrets */
	TLSMSG_R_COUNT
};

/* TLSMSG_SECRET outcomes. */
enum { TLSMSG_SECRET_INJECTED = 0, TLSMSG_SECRET_VIOLATION = 1 };

/**
 * struct tlsmsg - a record that passed tlsmsg_check()
 * @flow:	the proxy's id of the connection
 * @type:	enum tlsmsg_type
 * @payload, @len: its payload (inside the caller's buffer)
 * @a, @b:	the two u32 of OPENED, FAIL and SECRET
 */
struct tlsmsg {
	uint32_t flow, type;
	const uint8_t *payload;
	uint32_t len;
	uint32_t a, b;
};

int tlsmsg_check(const uint8_t *buf, size_t len, int from_proxy, struct tlsmsg *m);
size_t tlsmsg_build(uint8_t *buf, uint32_t flow, uint32_t type, const void *payload, uint32_t len);
const char *tlsmsg_reason_name(uint32_t r);
size_t tlsmsg_build2(uint8_t *buf, uint32_t flow, uint32_t type, uint32_t a, uint32_t b);

#endif /* MOAT_TLSMSG_H */
