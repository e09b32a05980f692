/* SPDX-License-Identifier: MIT */
/*
 * flow.h - messages between the netstack and the proxy (rings s2p, p2s)
 *
 * Theory of Operation
 * -------------------
 * Every connection and datagram flow the guest has crosses the s2p / p2s
 * rings as these fixed-layout records (record type = enum flow_msg, payload =
 * the struct, followed by data bytes where noted). All integers are in host
 * order; addresses are 16 bytes, IPv4 in the first four with family 4.
 *
 * Flow ids: egress flows (opened by the guest) get ids from the netstack in
 * [1, FLOW_ID_INGRESS); ingress flows (published ports) get ids from the
 * proxy with FLOW_ID_INGRESS set. Id 0 is never used.
 *
 * TCP, egress:
 *   s2p CONNECT(id, src, dst)        guest SYN held, lwIP has not answered
 *   p2s CONNECT_RESULT(id, result)   ok -> lwIP accepts the SYN; else RST/ICMP
 *   both DATA(id, bytes)             payload follows the struct
 *   both CREDIT(id, n)               the receiver of CREDIT may send n more
 *                                    payload bytes on that flow
 *   both SHUT_WR(id)                 sender will send no more data (FIN)
 *   both CLOSE(id, reset)            flow is gone; reset = abort (RST)
 * Credits: the proxy starts with 0 credit toward the guest and gets the
 * first CREDIT from the netstack once the guest's connection is established
 * (tcp_sndbuf()); it returns CREDIT to the netstack for every byte of DATA
 * it has written to the host socket, and the netstack calls tcp_recved() for
 * exactly those bytes. Neither side queues more than the credit it gave.
 * After CLOSE from either side the id is dead for both; messages for a dead
 * or unknown id are ignored (they can cross a CLOSE in flight), but a
 * message with a wrong size or an impossible field is a violation.
 *
 * TCP, ingress (published ports):
 *   p2s ACCEPTED(id, src, dst)       a host client connected; dst port is the
 *                                    guest port. The netstack connects to the
 *                                    guest and answers
 *   s2p CONNECT_RESULT(id, result)   then DATA/CREDIT/SHUT_WR/CLOSE as above.
 *
 * UDP: DGRAM(src, dst, bytes) both ways. s2p: src = guest, dst = remote;
 * p2s: src = remote (the reply's source, which the netstack uses as the
 * source toward the guest), dst = guest. Flows are the proxy's business.
 * p2s UNREACH(src = remote, dst = guest, kind): the remote's host answered
 * the guest's datagrams on that flow with an ICMP port, host or network
 * unreachable; the netstack sends the guest the matching ICMP error, from
 * the remote, quoting a datagram of the flow.
 *
 * ICMP echo: s2p ECHO(dst, ident, seq, bytes) for destinations other than
 * the gateway; p2s ECHO_REPLY(src = original destination, ident, seq, bytes).
 */
#ifndef MOAT_FLOW_H
#define MOAT_FLOW_H

#include <stdint.h>

#define FLOW_ID_INGRESS	    0x80000000u
#define FLOW_DATA_MAX	    65536 /* payload bytes in one DATA/DGRAM/ECHO */
/*
 * The most guest bytes the netstack has sent on one TCP flow and the proxy
 * has not credited back: the netstack's receive window (it calls
 * tcp_recved() only for credited bytes). The proxy sizes its write pool
 * from it and treats more as a violation.
 */
#define FLOW_TCP_WINDOW_MAX (512u << 10)

enum flow_msg {
	FLOW_CONNECT = 16,
	FLOW_CONNECT_RESULT,
	FLOW_DATA,
	FLOW_CREDIT,
	FLOW_SHUT_WR,
	FLOW_CLOSE,
	FLOW_DGRAM,
	FLOW_ECHO,
	FLOW_ECHO_REPLY,
	FLOW_ACCEPTED,
	FLOW_UNREACH,
	FLOW_MSG_END
};

struct flow_endpoint {
	uint8_t family; /* 4 or 6 */
	uint8_t pad;
	uint16_t port;
	uint8_t addr[16];
};

struct flow_connect { /* CONNECT, ACCEPTED */
	uint32_t id;
	uint32_t pad;
	struct flow_endpoint src, dst;
};

struct flow_connect_result {
	uint32_t id;
	uint32_t result; /* enum moat_conn_result */
};

struct flow_data { /* DATA: followed by 1..FLOW_DATA_MAX bytes */
	uint32_t id;
	uint32_t pad;
};

struct flow_credit {
	uint32_t id;
	uint32_t bytes;
};

struct flow_shut { /* SHUT_WR */
	uint32_t id;
	uint32_t pad;
};

struct flow_close {
	uint32_t id;
	uint32_t reset; /* 0 or 1 */
};

struct flow_dgram { /* DGRAM: followed by 0..FLOW_DATA_MAX bytes */
	struct flow_endpoint src, dst;
};

struct flow_echo {		    /* ECHO, ECHO_REPLY: followed by 0..FLOW_DATA_MAX bytes */
	struct flow_endpoint peer;  /* ECHO: destination; ECHO_REPLY: who answered */
	struct flow_endpoint guest; /* the guest's address (reply destination) */
	uint16_t ident, seq;
	uint32_t pad;
};

enum flow_unreach_kind {
	FLOW_UNREACH_PORT, /* ICMP port unreachable, ICMPv6 port unreachable */
	FLOW_UNREACH_HOST, /* host unreachable, ICMPv6 address unreachable */
	FLOW_UNREACH_NET,  /* network unreachable, ICMPv6 no route */
	FLOW_UNREACH_KIND_COUNT
};

struct flow_unreach {		       /* UNREACH */
	struct flow_endpoint src, dst; /* the flow: remote, guest */
	uint32_t kind;		       /* enum flow_unreach_kind */
	uint32_t pad;
};

/* Biggest record on s2p/p2s: a DATA/DGRAM/ECHO header plus FLOW_DATA_MAX. */
#define FLOW_RECORD_MAX (sizeof(struct flow_echo) + FLOW_DATA_MAX)

#endif /* MOAT_FLOW_H */
