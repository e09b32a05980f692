/* SPDX-License-Identifier: MIT */
/*
 * dnsmsg.h - DNS message parsing and building for the proxy's forwarder.
 * Private to proxy/ (and its unit tests and fuzzer). Pure code: no I/O, no
 * libuv, no allocation.
 */
#ifndef MOAT_PROXY_DNSMSG_H
#define MOAT_PROXY_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSMSG_HDR_LEN	     12
#define DNSMSG_WIRE_NAME_MAX 255 /* RFC 1035 2.3.4, length octets included */
#define DNSMSG_LABEL_MAX     63
#define DNSMSG_NAME_TEXT_MAX 1024 /* text form: every byte may need a \DDD escape */
#define DNSMSG_UDP_MIN	     512  /* RFC 1035 4.2.1 */
#define DNSMSG_UDP_MAX	     65535
#define DNSMSG_CHAIN_MAX     16	 /* CNAME hops followed */
#define DNSMSG_ADDRS_MAX     128 /* A/AAAA records per answer (more: refused) */

enum dnsmsg_type {
	DNSMSG_TYPE_A = 1,
	DNSMSG_TYPE_CNAME = 5,
	DNSMSG_TYPE_AAAA = 28,
	DNSMSG_TYPE_OPT = 41
};

enum dnsmsg_rcode {
	DNSMSG_RCODE_NOERROR = 0,
	DNSMSG_RCODE_FORMERR = 1,
	DNSMSG_RCODE_SERVFAIL = 2,
	DNSMSG_RCODE_NXDOMAIN = 3,
	DNSMSG_RCODE_NOTIMP = 4,
	DNSMSG_RCODE_REFUSED = 5
};

#define DNSMSG_FLAG_QR	 0x8000
#define DNSMSG_FLAG_AA	 0x0400
#define DNSMSG_FLAG_TC	 0x0200
#define DNSMSG_FLAG_RD	 0x0100
#define DNSMSG_FLAG_RA	 0x0080
#define DNSMSG_OPCODE(f) (((f) >> 11) & 0xf)
#define DNSMSG_RCODE(f)	 ((f)&0xf)

/**
 * struct dnsmsg_question - the one question of a query or an answer
 * @name:	text form, lower case, no trailing dot ("" for the root), bytes
 *		other than [a-z0-9-_*] escaped as \DDD
 * @wire:	the name in uncompressed, lower-cased wire form
 * @wire_len:	bytes in @wire (the final zero octet included)
 * @qtype, @qclass: as on the wire
 * @end:	offset just after the question in the message
 */
struct dnsmsg_question {
	char name[DNSMSG_NAME_TEXT_MAX];
	uint8_t wire[DNSMSG_WIRE_NAME_MAX];
	size_t wire_len;
	uint16_t qtype, qclass;
	size_t end;
};

/**
 * struct dnsmsg_query - what the forwarder needs from a client's query
 * @id, @flags:	header fields
 * @q:		the question
 * @udp_size:	the largest UDP answer the client takes (512, or EDNS0's)
 * @edns:	the query carried an OPT record
 */
struct dnsmsg_query {
	uint16_t id, flags;
	struct dnsmsg_question q;
	uint16_t udp_size;
	bool edns;
};

/**
 * struct dnsmsg_addr_rr - an A or AAAA record of an answer
 * @family:	4 or 6
 * @addr:	address bytes (IPv4 in the first four)
 * @ttl:	seconds (values above 2^31 read as 0, RFC 2181 8)
 * @in_chain:	owned by the question's name or a CNAME target of its chain,
 *		in the answer section (the records a stub resolver uses)
 */
struct dnsmsg_addr_rr {
	uint8_t family;
	uint8_t addr[16];
	uint32_t ttl;
	bool in_chain;
};

/* Scratch for one answer-section record while the chain is worked out. */
struct dnsmsg_rr_scratch {
	uint8_t owner[DNSMSG_WIRE_NAME_MAX];
	uint8_t target[DNSMSG_WIRE_NAME_MAX]; /* CNAME target */
	uint16_t type;
	int16_t addr_idx; /* index in ->addr, or -1 */
};

#define DNSMSG_ANSWER_RRS_MAX 128 /* answer-section records considered */

/**
 * struct dnsmsg_answer - what the forwarder needs from an upstream answer
 * @flags:	header flags (rcode, TC, ...)
 * @chain:	the question's name, then each CNAME target followed (text)
 * @n_chain:	names in @chain (>= 1)
 * @addr:	every A/AAAA record of the answer and additional sections
 *		(rebind protection looks at all of them)
 * @n_addr:	records in @addr
 * @rr:		scratch
 */
struct dnsmsg_answer {
	uint16_t flags;
	char chain[DNSMSG_CHAIN_MAX + 1][DNSMSG_NAME_TEXT_MAX];
	int n_chain;
	struct dnsmsg_addr_rr addr[DNSMSG_ADDRS_MAX];
	int n_addr;
	struct dnsmsg_rr_scratch rr[DNSMSG_ANSWER_RRS_MAX];
};

int dnsmsg_name_read(const uint8_t *msg, size_t len, size_t *off, char *out, size_t outsz);
int dnsmsg_parse_query(const uint8_t *msg, size_t len, struct dnsmsg_query *out);
int dnsmsg_parse_answer(const uint8_t *msg, size_t len, const struct dnsmsg_query *query,
			uint16_t id, struct dnsmsg_answer *out);
size_t dnsmsg_reply(const uint8_t *query, size_t qlen, const struct dnsmsg_query *q, int rcode,
		    uint8_t *out, size_t outsz);
size_t dnsmsg_formerr(const uint8_t *query, size_t qlen, uint8_t *out, size_t outsz);
size_t dnsmsg_truncate(const uint8_t *answer, size_t alen, const struct dnsmsg_query *q,
		       uint8_t *out, size_t outsz);
void dnsmsg_set_id(uint8_t *msg, size_t len, uint16_t id);
bool dnsmsg_name_equal(const char *a, const char *b);

#endif /* MOAT_PROXY_DNSMSG_H */
