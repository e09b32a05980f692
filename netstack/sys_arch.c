/* SPDX-License-Identifier: MIT */
/*
 * sys_arch.c - what lwIP needs from the system in NO_SYS mode
 *
 * Theory of Operation
 * -------------------
 * Runs in moat-netstack. sys_now() is CLOCK_MONOTONIC in milliseconds (the
 * vDSO answers without a syscall; clock_gettime is in the allowlist for the
 * fallback). Initial sequence numbers follow RFC 6528: ISN = M + F(4-tuple,
 * secret), with M a 4-microsecond clock and F SipHash-2-4 keyed with 128
 * bits from getrandom(). lwIP's LWIP_RAND (ephemeral ports of ingress
 * connections) is a xorshift generator from the same seed. The secret is
 * drawn by sys_arch_init() before confinement: getrandom is not allowed
 * afterwards.
 *
 * Names: this file is lwIP's port layer, named as lwIP names it, and is
 * the one exception to the netstack's rule that a file's non-static
 * functions carry the file's name and never lwIP's. sys_now() is lwIP's
 * own port API (lwip/sys.h declares it, lwIP calls it); the others are
 * sys_arch_* after the file, called by stack.c and by the hooks and
 * macros of lwipopts.h and arch/cc.h. sys_arch.c is compiled with lwIP's
 * objects, and sys_now() is made local with them (netstack/CMakeLists.txt).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "lwip/ip_addr.h"
#include "lwip/sys.h"
#include "netstack/stack.h"

static uint64_t isn_key[2];
static uint64_t rand_state = 0x9e3779b97f4a7c15ULL;

/**
 * sys_arch_init() - draw the ISN secret and the random seed
 *
 * Context: before confinement.
 * Return: 0, or -1 if getrandom() failed (the caller refuses to start).
 */
int sys_arch_init(void)
{
	uint64_t seed[3];
	size_t got = 0;

	while (got < sizeof(seed)) {
		ssize_t n = getrandom((uint8_t *)seed + got, sizeof(seed) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	isn_key[0] = seed[0];
	isn_key[1] = seed[1];
	rand_state = seed[2] | 1;
	return 0;
}

/**
 * sys_now() - lwIP's clock
 *
 * Return: milliseconds of CLOCK_MONOTONIC (wraps, as lwIP expects).
 */
u32_t sys_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/**
 * sys_arch_rand() - LWIP_RAND()
 *
 * Return: 32 pseudo-random bits (xorshift64*).
 */
uint32_t sys_arch_rand(void)
{
	rand_state ^= rand_state >> 12;
	rand_state ^= rand_state << 25;
	rand_state ^= rand_state >> 27;
	return (uint32_t)((rand_state * 0x2545f4914f6cdd1dULL) >> 32);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                   \
	do {                       \
		v0 += v1;          \
		v1 = ROTL(v1, 13); \
		v1 ^= v0;          \
		v0 = ROTL(v0, 32); \
		v2 += v3;          \
		v3 = ROTL(v3, 16); \
		v3 ^= v2;          \
		v0 += v3;          \
		v3 = ROTL(v3, 21); \
		v3 ^= v0;          \
		v2 += v1;          \
		v1 = ROTL(v1, 17); \
		v1 ^= v2;          \
		v2 = ROTL(v2, 32); \
	} while (0)

/* SipHash-2-4 of @len bytes (a multiple of 8 is not required). */
static uint64_t siphash(const uint8_t *in, size_t len, const uint64_t k[2])
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&m, in + i, 8);
		m = le64toh(m);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < left; j++)
		b |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/**
 * sys_arch_tcp_isn() - LWIP_HOOK_TCP_ISN: RFC 6528 initial sequence number
 * @local_ip:		our address of the connection
 * @local_port:		our port
 * @remote_ip:		the guest's address
 * @remote_port:	the guest's port
 *
 * Return: ISN = 4-microsecond clock + SipHash(4-tuple, secret).
 */
uint32_t sys_arch_tcp_isn(const struct ip_addr *local_ip, uint16_t local_port,
			  const struct ip_addr *remote_ip, uint16_t remote_port)
{
	uint8_t buf[2 * 16 + 2 * 2 + 2];
	struct timespec ts;
	uint64_t m;

	memset(buf, 0, sizeof(buf));
	if (IP_IS_V6(local_ip)) {
		memcpy(buf, ip_2_ip6(local_ip)->addr, 16);
		memcpy(buf + 16, ip_2_ip6(remote_ip)->addr, 16);
		buf[36] = 6;
	} else {
		memcpy(buf, &ip_2_ip4(local_ip)->addr, 4);
		memcpy(buf + 16, &ip_2_ip4(remote_ip)->addr, 4);
		buf[36] = 4;
	}
	memcpy(buf + 32, &local_port, 2);
	memcpy(buf + 34, &remote_port, 2);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	m = ((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u) / 4u;
	return (uint32_t)(m + siphash(buf, sizeof(buf), isn_key));
}

/**
 * sys_arch_diag() - LWIP_PLATFORM_DIAG: lwIP's diagnostics, at debug level
 * @fmt:	printf format
 */
void sys_arch_diag(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	size_t n;

	if (log_current_level < LOG_LVL_DEBUG)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	log_debug("lwip: %s", buf);
}

/**
 * sys_arch_assert() - LWIP_PLATFORM_ASSERT (debug builds only)
 * @msg:	the failed assertion
 * @file:	source file
 * @line:	source line
 *
 * Logs and ends the process; the supervisor sees a child die.
 */
void sys_arch_assert(const char *msg, const char *file, int line)
{
	log_error("lwip assertion failed: %s at %s:%d", msg, file, line);
	_exit(70);
}
