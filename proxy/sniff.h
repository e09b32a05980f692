/* SPDX-License-Identifier: MIT */
/*
 * sniff.h - the host name a TCP client names in its first bytes: a TLS
 * ClientHello's SNI or an HTTP/1.x request's Host (see sniff.c)
 */
#ifndef MOAT_PROXY_SNIFF_H
#define MOAT_PROXY_SNIFF_H

#include <stddef.h>
#include <stdint.h>

#define SNIFF_MAX_BYTES 16384 /* the most of the client's first bytes we look at */
#define SNIFF_NAME_MAX	253   /* a DNS name without its root dot */

enum sniff_result {
	SNIFF_MORE, /* could be a ClientHello or a request: need more bytes */
	SNIFF_NAME, /* the name is in the caller's buffer */
	SNIFF_NONE, /* another protocol, no name in it, or malformed */
};

enum sniff_kind { SNIFF_KIND_NONE, SNIFF_KIND_TLS, SNIFF_KIND_HTTP };

enum sniff_result sniff_hostname(const uint8_t *buf, size_t len, char name[SNIFF_NAME_MAX + 1],
				 enum sniff_kind *kind);

#endif
