/* SPDX-License-Identifier: MIT */
/*
 * lwipopts.h - moat's lwIP 2.1.3 configuration (moat-netstack only)
 *
 * Theory of Operation
 * -------------------
 * lwIP runs single-threaded without an OS (NO_SYS) inside the confined
 * netstack, which may not call brk or mmap once its seccomp filter is on.
 * All of lwIP's memory - the heap and every pool (MEMP_MEM_MALLOC) - comes
 * from one arena that the netstack maps before confinement with a size
 * derived from the region header (arena.c); mem_clib_* point at it. An
 * exhausted arena makes lwIP return ERR_MEM, which the glue counts.
 *
 * lwIP sees only what moat's own input path hands it: ARP, DHCP, ICMP and
 * UDP never reach lwIP (netstack/arp.c, dhcps.c, icmpgw.c, dgram.c parse them);
 * TCP segments are validated and then given to tcp_input() directly for
 * any destination address (netstack/guestif.c), and IPv4/IPv6 fragments go
 * through lwIP's bounded reassembly first. Checksums of guest input are not
 * checked (every length is validated by netstack/frame.c instead, and a
 * guest's virtual link does not corrupt bits); checksums of output are
 * always generated.
 */
#ifndef MOAT_LWIPOPTS_H
#define MOAT_LWIPOPTS_H

#include <stddef.h>
#include <stdint.h>

/* ---- system ------------------------------------------------------------ */
#define NO_SYS				1
#define SYS_LIGHTWEIGHT_PROT		0
#define LWIP_TIMERS			1
#define LWIP_NETCONN			0
#define LWIP_SOCKET			0
#define LWIP_SINGLE_NETIF		1
#define LWIP_NETIF_API			0
#define LWIP_NETIF_STATUS_CALLBACK	0
#define LWIP_NETIF_LINK_CALLBACK	0

/* ---- memory: everything from the pre-mapped arena ---------------------- */
void *arena_lwip_malloc(size_t size);
void *arena_lwip_calloc(size_t count, size_t size);
void arena_lwip_free(void *ptr);
#define MEM_LIBC_MALLOC			1
#define MEMP_MEM_MALLOC			1
#define mem_clib_malloc			arena_lwip_malloc
#define mem_clib_calloc			arena_lwip_calloc
#define mem_clib_free			arena_lwip_free
#define MEM_ALIGNMENT			8
/* Unused by moat's input path (frames are copied into exact-size PBUF_RAM). */
#define PBUF_POOL_SIZE			8
#define PBUF_POOL_BUFSIZE		1600

/* Statistics the netstack exports as counters. */
#define LWIP_STATS			1
#define LWIP_STATS_DISPLAY		0
#define LWIP_STATS_LARGE		1
#define MEMP_STATS			1
#define MEM_STATS			0
#define IPFRAG_STATS			1
#define TCP_STATS			0
#define UDP_STATS			0
#define ICMP_STATS			0
#define IP_STATS			0
#define IP6_STATS			0
#define ICMP6_STATS			0
#define IP6_FRAG_STATS			1
#define ND6_STATS			0
#define MLD6_STATS			0
#define LINK_STATS			0
#define ETHARP_STATS			0
#define SYS_STATS			0
#define MIB2_STATS			0

/* ---- link ------------------------------------------------------------- */
#define LWIP_ARP			0	/* arp.c answers for the gateway */
#define LWIP_ETHERNET			1
#define PBUF_LINK_HLEN			14
#define PBUF_LINK_ENCAPSULATION_HLEN	0
#define LWIP_NETIF_TX_SINGLE_PBUF	0

/* ---- IPv4 ------------------------------------------------------------- */
#define LWIP_IPV4			1
#define IP_FORWARD			0
#define IP_OPTIONS_ALLOWED		0
#define IP_REASSEMBLY			1
#define IP_FRAG				1
#define IP_REASS_MAXAGE			5	/* seconds a partial datagram may wait */
#define IP_REASS_MAX_PBUFS		128	/* fragments held over all datagrams */
#define IP_DEFAULT_TTL			64
#define LWIP_ICMP			1
#define LWIP_BROADCAST_PING		0
#define LWIP_MULTICAST_PING		0
#define LWIP_RAW			0
#define LWIP_DHCP			0	/* moat serves DHCP itself (dhcps.c) */
#define LWIP_AUTOIP			0
#define LWIP_IGMP			0
#define LWIP_DNS			0
#define LWIP_UDP			0	/* dgram.c builds and parses datagrams itself */

/* ---- IPv6 ------------------------------------------------------------- */
#define LWIP_IPV6			1
#define LWIP_IPV6_NUM_ADDRESSES		3
#define LWIP_IPV6_SCOPES		0
#define LWIP_IPV6_FORWARD		0
#define LWIP_IPV6_FRAG			1
#define LWIP_IPV6_REASS			1
#define IPV6_FRAG_COPYHEADER		1	/* 64-bit pointers do not fit in 8 bytes */
#define LWIP_IPV6_MLD			0
#define LWIP_IPV6_AUTOCONFIG		0
#define LWIP_IPV6_DHCP6			0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT	0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS	0
#define LWIP_ICMP6			1
#define LWIP_ND6_QUEUEING		0
#define LWIP_ND6_ALLOW_RA_UPDATES	0

/* ---- checksums: generate, do not check (see above) -------------------- */
#define CHECKSUM_GEN_IP			1
#define CHECKSUM_GEN_UDP		1
#define CHECKSUM_GEN_TCP		1
#define CHECKSUM_GEN_ICMP		1
#define CHECKSUM_GEN_ICMP6		1
#define CHECKSUM_CHECK_IP		0
#define CHECKSUM_CHECK_UDP		0
#define CHECKSUM_CHECK_TCP		0
#define CHECKSUM_CHECK_ICMP		0
#define CHECKSUM_CHECK_ICMP6		0
#define LWIP_CHECKSUM_ON_COPY		1

/* ---- TCP -------------------------------------------------------------- */
#define LWIP_TCP			1
#define LWIP_CALLBACK_API		1
#define LWIP_EVENT_API			0
#define TCP_LISTEN_BACKLOG		0
#define SO_REUSE			1	/* SOF_REUSEADDR on listeners (conn.c) */
/*
 * The largest MSS an MTU of 65520 allows; the MSS actually used is derived
 * from the netif MTU and the guest's SYN (TCP_CALCULATE_EFF_SEND_MSS).
 */
#define TCP_MSS				65480
#define TCP_CALCULATE_EFF_SEND_MSS	1
#define LWIP_WND_SCALE			1
#define TCP_RCV_SCALE			3
#define TCP_WND				(384 * 1024)
#define TCP_SND_BUF			(384 * 1024)
/*
 * Per-connection segment queue: far above what the credit scheme needs
 * (credit never exceeds snd_buf); a full queue makes tcp_write() fail with
 * ERR_MEM, which the flow code handles by pausing, never by dropping.
 */
#define TCP_SND_QUEUELEN		8192
#define TCP_SNDQUEUELOWAT		4096
/* Only lwIP's sequential APIs use it; the default trips init.c's check. */
#define TCP_SNDLOWAT			4096
#define TCP_OVERSIZE			TCP_MSS
#define TCP_QUEUE_OOSEQ			1
#define TCP_OOSEQ_MAX_BYTES		(256 * 1024)
#define TCP_OOSEQ_MAX_PBUFS		256
#define LWIP_TCP_SACK_OUT		1
#define LWIP_TCP_MAX_SACK_NUM		4
#define LWIP_TCP_TIMESTAMPS		0
#define LWIP_TCP_KEEPALIVE		0
#define TCP_MSL				2000UL	/* TIME_WAIT lasts 4 s */
#define TCP_MAXRTX			12
#define TCP_SYNMAXRTX			6
#define TCP_DEFAULT_LISTEN_BACKLOG	0xff
/* init.c's checks assume a small MSS; moat's values are checked here instead. */
#define LWIP_DISABLE_TCP_SANITY_CHECKS	1
_Static_assert(TCP_WND <= (0xffffUL << TCP_RCV_SCALE), "TCP_WND needs a bigger TCP_RCV_SCALE");
_Static_assert(TCP_SNDQUEUELOWAT < TCP_SND_QUEUELEN, "TCP_SNDQUEUELOWAT");
_Static_assert(TCP_SNDLOWAT < TCP_SND_BUF, "TCP_SNDLOWAT");

/* RFC 6528 initial sequence numbers, keyed with a secret from getrandom(). */
struct ip_addr;
uint32_t sys_arch_tcp_isn(const struct ip_addr *local_ip, uint16_t local_port,
			  const struct ip_addr *remote_ip, uint16_t remote_port);
#define LWIP_HOOK_TCP_ISN		sys_arch_tcp_isn

/* ---- debugging: LWIP_DEBUG stays undefined (lwIP tests #ifdef) --------- */

#endif /* MOAT_LWIPOPTS_H */
