/* SPDX-License-Identifier: MIT */
/*
 * dhcps.h - the netstack's DHCPv4 server: message parser and reply builder.
 * Pure functions without lwIP (unit tests and fuzzers call them directly).
 * Private to netstack/ and its tests.
 */
#ifndef MOAT_DHCP_H
#define MOAT_DHCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHCPS_SERVER_PORT 67
#define DHCPS_CLIENT_PORT 68
#define DHCPS_FIXED_LEN	  240  /* BOOTP fields and the magic cookie */
#define DHCPS_MAX_MSG	  4096 /* bigger requests are dropped as malformed */
#define DHCPS_REPLY_MAX	  576

enum dhcps_type {
	DHCPS_DISCOVER = 1,
	DHCPS_OFFER,
	DHCPS_REQUEST,
	DHCPS_DECLINE,
	DHCPS_ACK,
	DHCPS_NAK,
	DHCPS_RELEASE,
	DHCPS_INFORM
};

/**
 * struct dhcps_msg - the parts of a client message the server uses
 * @type:	option 53
 * @xid:	transaction id (network order, copied through)
 * @flags:	BOOTP flags (0x8000 = broadcast)
 * @ciaddr:	client address field
 * @giaddr:	relay address field
 * @chaddr:	client hardware address
 * @has_req_ip, @req_ip: option 50
 * @has_server_id, @server_id: option 54
 */
struct dhcps_msg {
	uint8_t type;
	uint8_t xid[4];
	uint16_t flags;
	uint8_t ciaddr[4], giaddr[4], chaddr[6];
	bool has_req_ip, has_server_id;
	uint8_t req_ip[4], server_id[4];
};

/**
 * struct dhcps_lease - what the server hands out (addresses network order)
 * @ip:		the guest's address
 * @mask, @router, @dns, @server: subnet mask, gateway, DNS server, our id
 * @lease_s:	lease time in seconds
 * @mtu:	interface MTU (option 26)
 */
struct dhcps_lease {
	uint8_t ip[4], mask[4], router[4], dns[4], server[4];
	uint32_t lease_s;
	uint16_t mtu;
};

int dhcps_parse(const uint8_t *d, size_t len, struct dhcps_msg *m);
int dhcps_decide(const struct dhcps_lease *l, const struct dhcps_msg *m);
size_t dhcps_build(const struct dhcps_lease *l, const struct dhcps_msg *m, int type, uint8_t *out,
		   size_t outsz);

#endif /* MOAT_DHCP_H */
