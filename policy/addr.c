/* SPDX-License-Identifier: MIT */
/*
 * addr.c - "ADDR:PORT" and "[V6]:PORT" as moat writes them everywhere
 *
 * Theory of Operation
 * -------------------
 * One grammar for an address with a port, shared by every place that reads
 * one: the policy file's nameservers (parse.c), the proxy's control document
 * (proxy/control.c), `moat run --metrics` and `--publish`, and
 * `moat policy explain --dst`. Callers differ only in what they let go
 * (a missing port, port 0, an empty host), chosen with POLICY_HOSTPORT_*
 * flags; each caller keeps its own error messages, told apart by the
 * negative POLICY_HOSTPORT_BAD_* return.
 *
 * The grammar is strict: an IPv6 address with a port is always in brackets,
 * the port is decimal digits only, nothing may follow it. Addresses are
 * numeric (policy_addr_parse(), match.c): no names, no zone ("%eth0"), so a
 * scoped link-local address is refused, as it always was.
 *
 * Pure string work: no allocation, may run in any process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy.h"

/* Decimal digits only, no sign or blanks, value in @lo..65535. */
static int port_parse(const char *s, unsigned lo, uint16_t *out)
{
	unsigned long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	if (v < lo)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* Copy @n bytes of @s into @buf (of @len) and parse them as an address. */
static int addr_from_text(const char *s, size_t n, char *buf, size_t len, struct policy_addr *a)
{
	if (n >= len)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return policy_addr_parse(buf, a);
}

/**
 * policy_hostport_parse() - parse "ADDR:PORT" or "[V6]:PORT"
 * @s:		the text, NUL-terminated; nothing may follow the port
 * @flags:	POLICY_HOSTPORT_PORT_OPTIONAL: "ADDR", "V6" (no brackets) or
 *		"[V6]" alone is accepted and @port is left untouched (so the
 *		caller's default stays); POLICY_HOSTPORT_PORT_ZERO: port 0 is
 *		accepted; POLICY_HOSTPORT_HOST_OPTIONAL: ":PORT" is accepted
 *		and @addr is AF_UNSPEC (all zero)
 * @addr:	the address; an IPv4 one unless it was in brackets
 * @port:	the port, 1..65535 (0..65535 with POLICY_HOSTPORT_PORT_ZERO)
 *
 * Without brackets the port follows the last colon and the address must be
 * IPv4: "::1:53" is not ::1 port 53 (it is the address ::1:53 when the port
 * is optional). Addresses are numeric; zones ("fe80::1%eth0") are refused.
 * On failure @addr and @port may have been written.
 *
 * Return: 0 with a port, 1 without one (only with
 * POLICY_HOSTPORT_PORT_OPTIONAL), or POLICY_HOSTPORT_BAD_FORM (no port
 * where one is needed, "[" without "]", bytes after "]" that are not
 * ":PORT"), POLICY_HOSTPORT_BAD_HOST (not a numeric address, or IPv4 in
 * brackets) or POLICY_HOSTPORT_BAD_PORT (not digits, or out of range).
 */
int policy_hostport_parse(const char *s, unsigned flags, struct policy_addr *addr, uint16_t *port)
{
	unsigned lo = (flags & POLICY_HOSTPORT_PORT_ZERO) ? 0 : 1;
	char buf[INET6_ADDRSTRLEN];
	const char *colon;

	memset(addr, 0, sizeof(*addr));
	if (!s)
		return POLICY_HOSTPORT_BAD_FORM;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end)
			return POLICY_HOSTPORT_BAD_FORM;
		if (end[1] != ':' && !(end[1] == '\0' && (flags & POLICY_HOSTPORT_PORT_OPTIONAL)))
			return POLICY_HOSTPORT_BAD_FORM;
		if (addr_from_text(s + 1, (size_t)(end - s - 1), buf, sizeof(buf), addr) < 0 ||
		    addr->family != AF_INET6)
			return POLICY_HOSTPORT_BAD_HOST;
		if (!end[1])
			return 1;
		return port_parse(end + 2, lo, port) < 0 ? POLICY_HOSTPORT_BAD_PORT : 0;
	}
	if ((flags & POLICY_HOSTPORT_PORT_OPTIONAL) && policy_addr_parse(s, addr) == 0)
		return 1;
	colon = strrchr(s, ':');
	if (!colon)
		return POLICY_HOSTPORT_BAD_FORM;
	if (colon == s && (flags & POLICY_HOSTPORT_HOST_OPTIONAL))
		memset(addr, 0, sizeof(*addr));
	else if (addr_from_text(s, (size_t)(colon - s), buf, sizeof(buf), addr) < 0 ||
		 addr->family != AF_INET)
		return POLICY_HOSTPORT_BAD_HOST;
	return port_parse(colon + 1, lo, port) < 0 ? POLICY_HOSTPORT_BAD_PORT : 0;
}

/* A port number 1..65535 from all of @s. Return: it, or 0. */
static uint16_t port_number(const char *s)
{
	char *end;
	long v;

	if (!*s)
		return 0;
	v = strtol(s, &end, 10);
	return !*end && v >= 1 && v <= 65535 ? (uint16_t)v : 0;
}

/**
 * policy_publish_parse() - a published port as `--publish` and `moat ctl
 * publish` write it: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], or with
 * @guest false [HOSTIP:]HOSTPORT[/tcp|/udp]; HOSTIP may be [IPV6]
 * @s:		the spec
 * @guest:	whether GUESTPORT is there
 * @out:	filled: host address 127.0.0.1 when none is given, guest_port 0
 *		when @guest is false, protocol tcp unless /udp
 * @err:	what is wrong, on failure (without the option's name)
 * @errlen:	size of @err
 *
 * Return: 0, or -EINVAL with @err set.
 */
int policy_publish_parse(const char *s, bool guest, struct policy_publish *out, char *err,
			 size_t errlen)
{
	const char *form = guest ? "[HOSTIP:]HOSTPORT:GUESTPORT" : "[HOSTIP:]HOSTPORT";
	char buf[128], *proto, *last;
	uint16_t port;

	memset(out, 0, sizeof(*out));
	out->proto = POLICY_PROTO_TCP;
	if (strlen(s) >= sizeof(buf)) {
		snprintf(err, errlen, "'%.40s...' is too long", s);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	proto = strchr(buf, '/');
	if (proto) {
		*proto++ = '\0';
		if (!strcmp(proto, "udp")) {
			out->proto = POLICY_PROTO_UDP;
		} else if (strcmp(proto, "tcp")) {
			snprintf(err, errlen, "protocol '%s' is not tcp or udp", proto);
			return -EINVAL;
		}
	}
	if (guest) {
		/* GUESTPORT follows the last colon (HOSTIP may be [v6]). */
		last = strrchr(buf, ':');
		if (!last || !(out->guest_port = port_number(last + 1))) {
			snprintf(err, errlen, "'%s' is not %s (ports 1..65535)", s, form);
			return -EINVAL;
		}
		*last = '\0';
	}
	if (!strchr(buf, ':') && buf[0] != '[') {
		policy_addr_parse("127.0.0.1", &out->host_addr);
		out->host_port = port_number(buf);
		if (out->host_port)
			return 0;
		snprintf(err, errlen, "'%s' is not %s (ports 1..65535)", s, form);
		return -EINVAL;
	}
	switch (policy_hostport_parse(buf, 0, &out->host_addr, &port)) {
	case 0:
		out->host_port = port;
		return 0;
	case POLICY_HOSTPORT_BAD_PORT:
		snprintf(err, errlen, "host port in '%s' is not a number in 1..65535", s);
		return -EINVAL;
	case POLICY_HOSTPORT_BAD_HOST:
		snprintf(err, errlen, "bad address in '%s'", s);
		return -EINVAL;
	default:
		snprintf(err, errlen, "'%s' is not %s", s, form);
		return -EINVAL;
	}
}
