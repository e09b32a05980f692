/* SPDX-License-Identifier: MIT */
/*
 * arch/cc.h - lwIP's platform glue for moat-netstack (Linux, any CPU)
 *
 * Diagnostics go to moat's logger. Assertions exist only in debug builds
 * (everything else defines LWIP_NOASSERT): when one fires the process logs
 * and aborts, which the supervisor treats as the child's death, i.e. a
 * fatal violation. lwIP's random numbers come from a generator seeded with
 * getrandom() before confinement (sys_arch.c).
 */
#ifndef MOAT_LWIP_ARCH_CC_H
#define MOAT_LWIP_ARCH_CC_H

#include <endian.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef BYTE_ORDER		/* <endian.h> defines it with _DEFAULT_SOURCE */
#if __BYTE_ORDER == __LITTLE_ENDIAN
#define BYTE_ORDER LITTLE_ENDIAN
#else
#define BYTE_ORDER BIG_ENDIAN
#endif
#endif

#define LWIP_NO_INTTYPES_H	0
#define LWIP_ERRNO_INCLUDE	<errno.h>

void sys_arch_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sys_arch_assert(const char *msg, const char *file, int line) __attribute__((noreturn));
uint32_t sys_arch_rand(void);

#define LWIP_PLATFORM_DIAG(x)	do { sys_arch_diag x; } while (0)
#define LWIP_PLATFORM_ASSERT(x)	sys_arch_assert((x), __FILE__, __LINE__)
#define LWIP_RAND()		sys_arch_rand()

#endif /* MOAT_LWIP_ARCH_CC_H */
