/* SPDX-License-Identifier: MIT */
/*
 * moat_shm.h - the layout of moat's shared-memory region (public header)
 *
 * Theory of Operation
 * -------------------
 * One memfd holds everything the three moat processes share: a header, one
 * counter block per writing process, four single-producer single-consumer
 * byte rings and the violation mailboxes. The supervisor creates it, writes
 * the header, seals its size and forks; nothing in it moves afterwards.
 *
 * This header is public: a VMM that runs with `--guest shm` includes it (and
 * nothing else of moat's) to be the producer of the g2s ring and the consumer
 * of the s2g ring, as libkrun's NetWorker is in microsandbox. It is
 * self-contained C11 with no moat dependencies; see docs/shm.md.
 *
 * Ring protocol (every ring)
 * --------------------------
 * - `head` is written only by the producer, `tail` only by the consumer; both
 *   are free-running 64-bit byte counters, position = counter & (capacity-1).
 * - A record is `struct moat_rec_hdr` (length of the payload, type) followed
 *   by the payload and padding to 8 bytes. A record never straddles the end
 *   of the data area: when it would not fit, the producer writes a header of
 *   type MOAT_REC_WRAP (length ignored) if at least 8 bytes remain, and
 *   starts the record at position 0 (the consumer skips the rest of the area
 *   on a WRAP record or when fewer than 8 bytes remain).
 * - The producer writes the record, then publishes `head` with a release
 *   store; the consumer reads `head` with an acquire load, copies the record
 *   out, then publishes `tail` with a release store.
 * - Wake suppression: a consumer about to sleep stores `cons_waiting = 1`,
 *   issues a full fence, re-checks `head`, and only then sleeps on its
 *   eventfd. A producer, after publishing, issues a full fence and writes the
 *   consumer's eventfd only if `cons_waiting` is set (and clears it). The
 *   same happens the other way round with `prod_waiting` when a producer
 *   finds the ring full and waits for space.
 * - Readers treat the ring as hostile: `head - tail` must not exceed the
 *   capacity, every length must fit in what was published, and a record is
 *   copied out before it is parsed.
 */
#ifndef MOAT_SHM_H
#define MOAT_SHM_H

#include <stdint.h>

#define MOAT_SHM_MAGIC	 0x314d48534154414dULL /* "MATASHM1" */
#define MOAT_SHM_VERSION 2
#define MOAT_CACHELINE	 64
#define MOAT_REC_ALIGN	 8
#define MOAT_REC_WRAP	 0xffffffffu

/* Parts of the region, in order. */
enum moat_part {
	MOAT_PART_HEADER,
	MOAT_PART_CNT_GUEST, /* guest port counters (supervisor or VMM) */
	MOAT_PART_CNT_NETSTACK,
	MOAT_PART_CNT_PROXY,
	MOAT_PART_RING_G2S,	 /* guest -> netstack Ethernet frames */
	MOAT_PART_RING_S2G,	 /* netstack -> guest Ethernet frames */
	MOAT_PART_RING_S2P,	 /* netstack -> proxy flow messages */
	MOAT_PART_RING_P2S,	 /* proxy -> netstack flow messages */
	MOAT_PART_MBOX_NETSTACK, /* violation mailbox: netstack -> supervisor */
	MOAT_PART_MBOX_PROXY,	 /* violation mailbox: proxy -> supervisor */
	MOAT_PART_COUNT
};

/*
 * Record types on the frame rings (g2s, s2g). MOAT_REC_FRAME is an Ethernet
 * frame of at most mtu + 14 bytes. MOAT_REC_FRAME_VNET is a struct
 * moat_vnet_hdr followed by an Ethernet frame of at most MOAT_FRAME_MAX_GSO
 * bytes; it is only written where the header's guest_offloads says the
 * guest port takes it (version 2 and later).
 */
#define MOAT_REC_FRAME	    1
#define MOAT_REC_FRAME_VNET 2

/**
 * struct moat_vnet_hdr - offload metadata of one frame: the layout of
 * virtio-net's struct virtio_net_hdr (little-endian, 10 bytes), which a tap
 * opened with IFF_VNET_HDR reads and writes in front of each frame
 * @flags:	MOAT_VNET_F_*
 * @gso_type:	MOAT_VNET_GSO_*: the frame is one segment to be cut into
 *		pieces of @gso_size payload bytes (the receiver may keep it whole)
 * @hdr_len:	bytes of Ethernet + IP + TCP headers in front of the payload
 * @gso_size:	payload bytes per piece
 * @csum_start:	with MOAT_VNET_F_NEEDS_CSUM: the checksum covers the frame
 *		from this offset on; the field holds the pseudo-header sum
 * @csum_offset: ... and the checksum is stored at csum_start + csum_offset
 */
struct moat_vnet_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
};

#define MOAT_VNET_F_NEEDS_CSUM 1u /* the L4 checksum is partial */
#define MOAT_VNET_F_DATA_VALID 2u /* the checksum was verified already */
#define MOAT_VNET_GSO_NONE     0u
#define MOAT_VNET_GSO_TCPV4    1u
#define MOAT_VNET_GSO_TCPV6    4u
#define MOAT_VNET_GSO_ECN      0x80u /* flag: the segment carries ECN's CWR */

/* The largest frame of a MOAT_REC_FRAME_VNET record (lwIP's 16-bit lengths). */
#define MOAT_FRAME_MAX_GSO 65535u

/* guest_offloads: what the guest port takes and sends (MOAT_REC_FRAME_VNET). */
#define MOAT_OFFLOAD_CSUM 1u /* partial checksums (MOAT_VNET_F_NEEDS_CSUM) */
#define MOAT_OFFLOAD_TSO4 2u /* MOAT_VNET_GSO_TCPV4 segments */
#define MOAT_OFFLOAD_TSO6 4u /* MOAT_VNET_GSO_TCPV6 segments */

struct moat_part_desc {
	uint64_t off; /* from the start of the region, page-aligned */
	uint64_t size;
};

/**
 * struct moat_shm_header - written once by the supervisor before any fork
 * @magic:	MOAT_SHM_MAGIC
 * @version:	MOAT_SHM_VERSION
 * @region_size: total size of the memfd
 * @part:	offset and size of each part (enum moat_part)
 * @mtu:	IP MTU toward the guest (frames are at most mtu + 14 bytes)
 * @guest_ip4, @gateway_ip4, @dns_ip4, @netmask4: network order
 * @gateway_mac: the MAC the netstack answers with
 * @ring_capacity: data bytes of each ring (power of two), same order as parts
 * @guest_offloads: MOAT_OFFLOAD_*: the guest port reads and writes
 *		MOAT_REC_FRAME_VNET records with these offloads (0: plain frames
 *		only)
 */
struct moat_shm_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint64_t region_size;
	struct moat_part_desc part[MOAT_PART_COUNT];
	uint32_t mtu;
	uint8_t guest_ip4[4];
	uint8_t gateway_ip4[4];
	uint8_t dns_ip4[4];
	uint8_t netmask4[4];
	uint8_t gateway_mac[6];
	uint8_t pad[2];
	uint8_t guest_ip6[16];
	uint8_t gateway_ip6[16];
	uint8_t prefix4;    /* netmask length */
	uint8_t anti_spoof; /* 0 off, 1 drop, 2 terminate */
	uint8_t log_level;  /* 0 error .. 3 debug */
	uint8_t pad2;
	uint32_t max_tcp_connections;
	uint32_t max_udp_flows;
	uint32_t connect_timeout_ms;
	uint32_t tcp_idle_timeout_s; /* 0: MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S */
	uint32_t udp_idle_timeout_s;
	uint32_t flags; /* MOAT_HDR_F_* */
	uint32_t guest_offloads;
	uint32_t pad3;
};

#define MOAT_HDR_F_TLS		 2u /* moat-tls runs: the proxy has its channel at FD_PROXY_TLS */
#define MOAT_HDR_F_TEST_TRIGGERS 1u /* test builds only: honour test triggers */

/*
 * Idle TCP flows are reset after this many seconds: the supervisor writes it
 * to the header, and the netstack and the proxy fall back to it if the header
 * says 0. Two hours, like the kernel's tcp_keepalive_time.
 */
#define MOAT_TCP_IDLE_TIMEOUT_DEFAULT_S 7200u

/**
 * struct moat_ring_ctl - the control part at the start of each ring part;
 * the data area (capacity bytes) follows at offset MOAT_RING_DATA_OFF.
 */
struct moat_ring_ctl {
	_Alignas(MOAT_CACHELINE) uint64_t head; /* producer */
	uint32_t prod_waiting;			/* producer: waiting for space */
	_Alignas(MOAT_CACHELINE) uint64_t tail; /* consumer */
	uint32_t cons_waiting;			/* consumer: waiting for data */
};

#define MOAT_RING_DATA_OFF 4096

struct moat_rec_hdr {
	uint32_t len; /* payload bytes, header excluded */
	uint32_t type;
};

/*
 * Counter blocks: 64-bit counters, each written by exactly one process with
 * relaxed atomic stores, read by the supervisor. tx = from the guest,
 * rx = to the guest (microsandbox's convention).
 */

/* Why a guest frame was dropped at the guest port or the netstack's input. */
enum moat_drop_reason {
	MOAT_DROP_TOO_SHORT,   /* < 14 bytes */
	MOAT_DROP_TOO_LONG,    /* > MTU + 14 */
	MOAT_DROP_RING_FULL,   /* g2s full (never for s2g: backpressure) */
	MOAT_DROP_BAD_LENGTH,  /* stream length prefix out of range */
	MOAT_DROP_MALFORMED,   /* truncated or inconsistent L3/L4 header */
	MOAT_DROP_ETHERTYPE,   /* unsupported ethertype */
	MOAT_DROP_FRAGMENT,    /* IP fragment that could not be reassembled */
	MOAT_DROP_IP_OPTIONS,  /* IPv4 options */
	MOAT_DROP_SPOOFED,     /* source MAC/IP is not the guest's */
	MOAT_DROP_NOT_FOR_US,  /* destination MAC neither ours nor broadcast */
	MOAT_DROP_PROTOCOL,    /* unsupported L4 protocol */
	MOAT_DROP_DHCP,	       /* malformed DHCP message */
	MOAT_DROP_NO_MEMORY,   /* lwIP pool exhausted */
	MOAT_DROP_BAD_OFFLOAD, /* impossible offload metadata (moat_vnet_hdr) */
	MOAT_DROP_REASON_COUNT
};

struct moat_guest_counters {
	uint64_t tx_frames, tx_bytes; /* guest -> moat */
	uint64_t rx_frames, rx_bytes; /* moat -> guest */
	uint64_t drops[MOAT_DROP_REASON_COUNT];
	uint64_t clients_accepted; /* stream/dgram frontends */
	uint64_t clients_dropped;
	uint64_t wakes_sent;
	uint64_t offloads_refused; /* the tap refused IFF_VNET_HDR or TUNSETOFFLOAD */
	/* vhost-user (moat-vhost); appended, so a shm VMM's view stays as it was. */
	uint64_t vring_bad_chains;   /* descriptor chains refused (handed back unused) */
	uint64_t vring_bad_messages; /* VMMs dropped for a broken message or queue */
	uint64_t rx_no_buffers;	     /* frames for the guest dropped: no receive buffer fit */
	uint64_t rx_segmented;	     /* segments cut in software for a guest without TSO */
};

enum moat_conn_result {
	MOAT_CONN_OK,
	MOAT_CONN_REFUSED,
	MOAT_CONN_UNREACHABLE,
	MOAT_CONN_DENIED,
	MOAT_CONN_TIMEOUT,
	MOAT_CONN_LIMIT,
	MOAT_CONN_RESULT_COUNT
};

struct moat_netstack_counters {
	uint64_t drops[MOAT_DROP_REASON_COUNT];
	uint64_t arp_replies, icmp_echo_replies, dhcp_offers, dhcp_acks, dhcp_naks;
	uint64_t tcp_syns, tcp_flows_opened, tcp_flows_closed, tcp_flows_active;
	uint64_t tcp_table_full;
	uint64_t icmp_echo_relayed; /* UDP flows are the proxy's: no counters here */
	uint64_t lwip_mem_errors;
	uint64_t pcbs_in_use, pbufs_in_use, listeners;
	uint64_t spoofed_frames;
	uint64_t wakes_sent;
	uint64_t tx_bytes_tcp, rx_bytes_tcp; /* TCP payload bytes */
	uint64_t guest_mac; /* the guest's MAC once learned (low 48 bits), else 0 */
};

enum moat_proto_idx { MOAT_P_TCP, MOAT_P_UDP, MOAT_P_ICMP, MOAT_P_COUNT };
enum moat_dns_result {
	MOAT_DNS_FORWARDED,
	MOAT_DNS_DENIED,
	MOAT_DNS_REBIND,
	MOAT_DNS_FORMERR,
	MOAT_DNS_SERVFAIL,
	MOAT_DNS_TRUNCATED,
	MOAT_DNS_UPSTREAM_BAD,
	MOAT_DNS_RESULT_COUNT
};

/* The proxy's fixed pools (proxy/pool.c, docs/proxy.md "Memory"). */
enum moat_pool {
	MOAT_POOL_TCP_WRITE,   /* guest bytes on their way to a host socket */
	MOAT_POOL_P2S_CONTROL, /* control records waiting for p2s ring space */
	MOAT_POOL_P2S_DGRAM,   /* datagrams waiting for p2s ring space */
	MOAT_POOL_DNS_QUERY,   /* DNS queries being forwarded */
	MOAT_POOL_DNS_STREAM,  /* guest DNS-over-TCP connections */
	MOAT_POOL_DNS_ANSWER,  /* DNS-over-TCP answers waiting for the guest's window */
	MOAT_POOL_SNIFF,       /* a connection's first bytes, held until its host name is known */
	MOAT_POOL_TLS,	       /* intercepted connections' pipes to moat-tls (proxy/tlsrelay.c) */
	MOAT_POOL_COUNT
};

/* Reasons an intercepted connection fails (tls/tlsmsg.h's enum tlsmsg_reason). */
#define MOAT_TLS_REASONS 7

struct moat_proxy_counters {
	uint64_t tcp_connections[MOAT_CONN_RESULT_COUNT];
	uint64_t tcp_active;
	uint64_t denials_egress[MOAT_P_COUNT];
	uint64_t denials_ingress[MOAT_P_COUNT];
	uint64_t udp_flows_opened, udp_flows_active, udp_flows_refused;
	uint64_t udp_unreachable; /* ICMP unreachables relayed to the guest for its UDP flows */
	uint64_t dns_queries[MOAT_DNS_RESULT_COUNT];
	uint64_t dns_pins;
	uint64_t dns_intercepted; /* queries the guest sent to an address other than the DNS address */
	uint64_t upstream_tx_bytes, upstream_rx_bytes; /* socket bytes */
	uint64_t icmp_echo_sent, icmp_echo_replies;
	uint64_t limit_exceeded;
	uint64_t reload_cuts;	   /* open TCP connections and UDP flows a reload denied and cut */
	uint64_t hostname_denials; /* connections reset for the SNI/Host their client sent */
	uint64_t bad_messages;
	uint64_t policy_generation;
	uint64_t wakes_sent;
	uint64_t pool_size[MOAT_POOL_COUNT], pool_in_use[MOAT_POOL_COUNT];
	uint64_t pool_refused[MOAT_POOL_COUNT];
	/* TLS interception (proxy/tlsrelay.c, moat-tls's answers) */
	uint64_t tls_intercepted;		    /* connections handed to moat-tls */
	uint64_t tls_opened;			    /* of those, both handshakes done */
	uint64_t tls_failures[2][MOAT_TLS_REASONS]; /* [side: guest, server][enum tlsmsg_reason] */
	uint64_t tls_secrets_injected;	/* requests in which a placeholder was replaced */
	uint64_t tls_secret_violations; /* placeholders sent to a host they are not for */
};

/* Violation reasons (mailbox and events). */
enum moat_violation {
	MOAT_VIOL_NONE,
	MOAT_VIOL_POLICY_TERMINATE, /* a "terminate": true rule matched */
	MOAT_VIOL_LIMIT,	    /* a limit with on_exceed terminate */
	MOAT_VIOL_SPOOF,	    /* spoofed guest source, --anti-spoof terminate */
	MOAT_VIOL_RING_CORRUPT,	    /* a ring failed validation */
	MOAT_VIOL_BAD_MESSAGE,	    /* a malformed flow message */
	MOAT_VIOL_CHILD_EXIT,	    /* a child process died */
	MOAT_VIOL_CHILD_STALLED,    /* the proxy took no control document in time */
	MOAT_VIOL_SECRET,	    /* a secret's placeholder sent to another host (terminate) */
	MOAT_VIOL_COUNT
};

/**
 * struct moat_mailbox - one per reporting process (netstack, proxy), each in
 * its own part so that neither can write the other's
 * @seq:	bumped (release) after the other fields are written; the
 *		supervisor acts when it changes
 * @reason:	enum moat_violation
 * @rule:	policy rule index, -1 if none
 * @flow:	flow id, 0 if none
 * @proto:	enum moat_proto_idx, or 0xff
 * @dst_family, @dst_addr, @dst_port: the offending destination, if any
 * @detail:	NUL-terminated words
 */
struct moat_mailbox {
	_Alignas(MOAT_CACHELINE) uint32_t seq;
	uint32_t reason;
	int32_t rule;
	uint32_t flow;
	uint8_t proto;
	uint8_t dst_family; /* 4 or 6, 0 if none */
	uint16_t dst_port;
	uint8_t dst_addr[16];
	char detail[160];
};

/*
 * The `--guest shm:PATH` handshake (docs/shm.md). moat listens on the unix
 * stream socket PATH. To a VMM that connects it sends one message: a
 * struct moat_shm_hello as data and MOAT_SHM_NFDS descriptors as
 * SCM_RIGHTS, in the order of enum moat_shm_fd. The VMM maps the region,
 * validates the header, and from then on is the producer of g2s and the
 * consumer of s2g. It keeps the connection open while it uses the rings
 * and sends nothing on it; closing it tells moat the VMM has gone (the next
 * VMM that connects gets the same region, rings where they were).
 */
#define MOAT_SHM_HELLO_MAGIC 0x4f4c454854414f4dULL /* "MOATHELO" */

enum moat_shm_fd {
	MOAT_SHM_FD_REGION,   /* the memfd: map all of it, shared, read-write */
	MOAT_SHM_FD_VMM,      /* the VMM sleeps on it: s2g has data, g2s has space */
	MOAT_SHM_FD_NETSTACK, /* the VMM writes it: g2s has data, s2g has space */
	MOAT_SHM_NFDS
};

struct moat_shm_hello {
	uint64_t magic;	      /* MOAT_SHM_HELLO_MAGIC */
	uint32_t version;     /* MOAT_SHM_VERSION */
	uint32_t nfds;	      /* MOAT_SHM_NFDS */
	uint64_t region_size; /* size of the memfd, as in the header */
};

#endif /* MOAT_SHM_H */
