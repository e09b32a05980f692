/* SPDX-License-Identifier: MIT */
/*
 * test_netstack_dhcp.c - the DHCP server's parser and replies
 * (netstack/dhcps.c), called directly and through a whole netstack.
 */
#include <criterion/criterion.h>

#include "netstack/dhcps.h"
#include "netstack_harness.h"

static uint8_t m[1024];

/* A client message with options @opts (END appended); returns its length. */
static size_t msg(uint8_t type, const uint8_t *opts, size_t optlen)
{
	size_t n = DHCPS_FIXED_LEN;

	memset(m, 0, sizeof(m));
	m[0] = 1;
	m[1] = 1;
	m[2] = 6;
	m[4] = 0xde, m[5] = 0xad, m[6] = 0xbe, m[7] = 0xef;
	memcpy(m + 28, nh_guest_mac, 6);
	m[236] = 99, m[237] = 130, m[238] = 83, m[239] = 99;
	if (type) {
		m[n++] = 53;
		m[n++] = 1;
		m[n++] = type;
	}
	if (optlen)
		memcpy(m + n, opts, optlen);
	n += optlen;
	m[n++] = 255;
	return n;
}

static const struct dhcps_lease lease = {
	.ip = { 10, 0, 2, 15 },
	.mask = { 255, 255, 255, 0 },
	.router = { 10, 0, 2, 2 },
	.dns = { 10, 0, 2, 3 },
	.server = { 10, 0, 2, 2 },
	.lease_s = 86400,
	.mtu = 1500,
};

Test(netstack_dhcp, discover_gets_offer)
{
	struct dhcps_msg d;
	size_t n = msg(DHCPS_DISCOVER, NULL, 0);

	cr_assert_eq(dhcps_parse(m, n, &d), 0);
	cr_assert_eq(d.type, DHCPS_DISCOVER);
	cr_assert(!memcmp(d.chaddr, nh_guest_mac, 6));
	cr_assert_eq(dhcps_decide(&lease, &d), DHCPS_OFFER);
}

Test(netstack_dhcp, request_ack_or_nak)
{
	const uint8_t ours[] = { 50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 2 };
	const uint8_t other[] = { 50, 4, 10, 0, 2, 99 };
	const uint8_t other_server[] = { 50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 1 };
	struct dhcps_msg d;

	cr_assert_eq(dhcps_parse(m, msg(DHCPS_REQUEST, ours, sizeof(ours)), &d), 0);
	cr_assert_eq(dhcps_decide(&lease, &d), DHCPS_ACK);
	cr_assert_eq(dhcps_parse(m, msg(DHCPS_REQUEST, other, sizeof(other)), &d), 0);
	cr_assert_eq(dhcps_decide(&lease, &d), DHCPS_NAK);
	cr_assert_eq(dhcps_parse(m, msg(DHCPS_REQUEST, other_server, sizeof(other_server)), &d), 0);
	cr_assert_eq(dhcps_decide(&lease, &d), 0, "a request to another server is ignored");
	/* renewing: ciaddr, no option 50 */
	msg(DHCPS_REQUEST, NULL, 0);
	m[12] = 10, m[13] = 0, m[14] = 2, m[15] = 15;
	cr_assert_eq(dhcps_parse(m, 244, &d), 0);
	cr_assert_eq(dhcps_decide(&lease, &d), DHCPS_ACK);
	cr_assert_eq(dhcps_parse(m, msg(DHCPS_RELEASE, NULL, 0), &d), 0);
	cr_assert_eq(dhcps_decide(&lease, &d), 0);
}

Test(netstack_dhcp, reply_contents)
{
	static const uint8_t want[][6] = {
		{ 53, 1, DHCPS_ACK },	     { 54, 4, 10, 0, 2, 2 }, { 1, 4, 255, 255, 255, 0 },
		{ 3, 4, 10, 0, 2, 2 },	     { 6, 4, 10, 0, 2, 3 },  { 26, 2, 0x05, 0xdc },
		{ 51, 4, 0, 1, 0x51, 0x80 },
	};
	uint8_t out[DHCPS_REPLY_MAX];
	struct dhcps_msg d;
	size_t n;

	dhcps_parse(m, msg(DHCPS_DISCOVER, NULL, 0), &d);
	n = dhcps_build(&lease, &d, DHCPS_ACK, out, sizeof(out));
	cr_assert_geq(n, 300);
	cr_assert_eq(out[0], 2);
	cr_assert(!memcmp(out + 4, "\xde\xad\xbe\xef", 4));
	cr_assert(!memcmp(out + 16, lease.ip, 4), "yiaddr");
	cr_assert(!memcmp(out + 28, nh_guest_mac, 6));
	for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
		bool found = false;

		for (size_t i = DHCPS_FIXED_LEN; i < n && out[i] != 255; i += 2u + out[i + 1])
			if (out[i] == want[w][0] && !memcmp(out + i, want[w], 2u + want[w][1]))
				found = true;
		cr_assert(found, "option %u missing or wrong", want[w][0]);
	}
	cr_assert_eq(dhcps_build(&lease, &d, DHCPS_ACK, out, 100), 0);
}

Test(netstack_dhcp, malformed_messages)
{
	static const uint8_t overlong[] = { 12, 200, 'a', 'b' };
	static const uint8_t overload[] = { 52, 1, 3 };
	static const uint8_t bad_type_len[] = { 53, 2, 1, 1 };
	static const uint8_t bad_req_len[] = { 50, 3, 10, 0, 2 };
	struct dhcps_msg d;
	size_t n;

	/* shorter than the fixed part, no magic cookie */
	n = msg(DHCPS_DISCOVER, NULL, 0);
	cr_assert_eq(dhcps_parse(m, 239, &d), -EINVAL);
	m[236] = 0;
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	/* no END: truncated options */
	n = msg(DHCPS_DISCOVER, NULL, 0);
	cr_assert_eq(dhcps_parse(m, n - 1, &d), -EINVAL);
	cr_assert_eq(dhcps_parse(m, n - 2, &d), -EINVAL);
	/* an option running past the end */
	n = msg(DHCPS_DISCOVER, overlong, sizeof(overlong));
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	/* option overload is refused, so there is nothing to loop on */
	n = msg(DHCPS_DISCOVER, overload, sizeof(overload));
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	/* wrong option lengths, duplicate or missing message type */
	n = msg(0, bad_type_len, sizeof(bad_type_len));
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	n = msg(DHCPS_REQUEST, bad_req_len, sizeof(bad_req_len));
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	n = msg(DHCPS_DISCOVER, (const uint8_t[]){ 53, 1, 3 }, 3);
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	n = msg(0, NULL, 0);
	cr_assert_eq(dhcps_parse(m, n, &d), -EINVAL);
	/* only padding to the end */
	(void)msg(DHCPS_DISCOVER, NULL, 0);
	memset(m + DHCPS_FIXED_LEN, 0, sizeof(m) - DHCPS_FIXED_LEN);
	cr_assert_eq(dhcps_parse(m, sizeof(m), &d), -EINVAL);
	/* a reply from the guest is ignored, not an error */
	n = msg(DHCPS_OFFER, NULL, 0);
	m[0] = 2;
	cr_assert_eq(dhcps_parse(m, n, &d), 1);
}

/* Through the netstack: DISCOVER -> OFFER; malformed -> counted. */
Test(netstack_dhcp, served_by_the_netstack)
{
	static uint8_t f[2048], r[2048];
	struct nh_pkt p;
	size_t n;
	int k;

	nh_init();
	n = msg(DHCPS_DISCOVER, NULL, 0);
	n = nh_udp4(f, nh_guest_mac, 0, 68, 0xffffffffu, 67, m, n);
	memset(f, 0xff, 6);
	nh_guest_send(f, n);
	nh_poll();
	k = nh_guest_recv(r, sizeof(r));
	cr_assert_gt(k, 0, "no OFFER");
	cr_assert(nh_parse4(r, (size_t)k, &p));
	cr_assert_eq(p.proto, 17);
	cr_assert_eq(p.sport, 67);
	cr_assert_eq(p.dport, 68);
	cr_assert_eq(p.src, NH_GW_IP);
	cr_assert(p.csum_ok);
	cr_assert_geq(p.dlen, 300);
	cr_assert_eq(p.data[0], 2);
	cr_assert_eq(nh_cnt()->dhcp_offers, 1);

	n = msg(DHCPS_DISCOVER, (const uint8_t[]){ 12, 200 }, 2);
	n = nh_udp4(f, nh_guest_mac, 0, 68, 0xffffffffu, 67, m, n);
	memset(f, 0xff, 6);
	nh_guest_send(f, n);
	n = msg(DHCPS_REQUEST, (const uint8_t[]){ 50, 4, 10, 0, 2, 7 }, 6);
	n = nh_udp4(f, nh_guest_mac, 0, 68, 0xffffffffu, 67, m, n);
	memset(f, 0xff, 6);
	nh_guest_send(f, n);
	nh_poll();
	cr_assert_eq(nh_cnt()->drops[MOAT_DROP_DHCP], 1);
	cr_assert_eq(nh_cnt()->dhcp_naks, 1);
}
