/* SPDX-License-Identifier: MIT */
/*
 * fuzz_frame.c - libFuzzer harness for the netstack's guest input path
 *
 * Each input is one guest frame. It goes through the validator
 * (frame_check, and frame_check_l4 on the transport part), the DHCP parser
 * and reply builder on the UDP payload, and then through a whole netstack
 * (lwIP included) over rings in process memory, as the first guest frame of
 * a flow would: whatever comes out toward the guest or the proxy is read
 * and dropped. A held SYN that reaches the proxy side gets a CONNECT_RESULT
 * ok now and then, so lwIP's TCP input sees fuzzed segments too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "netstack/dhcp.h"
#include "netstack/frame.h"
#include "../unit/netstack_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[70000];
static bool ready;

static void drain(void)
{
	uint32_t type;
	int n;

	while (nh_guest_recv_any(out, sizeof(out)) >= 0)
		;
	while ((n = nh_proxy_recv(&type, out, sizeof(out))) >= 0) {
		if (type == FLOW_CONNECT && (size_t)n == sizeof(struct flow_connect)) {
			struct flow_connect fc;
			struct flow_connect_result r;

			memcpy(&fc, out, sizeof(fc));
			r.id = fc.id;
			r.result = fc.dst.port & 1 ? MOAT_CONN_OK : MOAT_CONN_REFUSED;
			nh_proxy_send(FLOW_CONNECT_RESULT, &r, sizeof(r));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct frame_cfg cfg = {
		.mtu = 9000, .our_mac = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 },
	};
	struct frame_info fi;
	struct dhcps_msg m;

	if (!ready) {
		nh_init_cfg(9000, 64, 0, 1u << 20);	/* anti-spoofing off: any MAC gets in */
		ready = true;
	}
	if (frame_check(&cfg, data, size, &fi) == FRAME_OK && fi.ethertype != ETHTYPE_ARP &&
	    fi.l4_proto == IPPROTO_UDP_ && !fi.fragment && size >= 14u + fi.l4_off + 8u) {
		const uint8_t *udp = data + 14 + fi.l4_off;
		size_t ulen = rd16(udp + 4);

		if (ulen >= 8 && 14u + fi.l4_off + ulen <= size &&
		    dhcps_parse(udp + 8, ulen - 8, &m) == 0) {
			static const struct dhcps_lease l = {
				.ip = { 10, 0, 2, 15 }, .mask = { 255, 255, 255, 0 },
				.router = { 10, 0, 2, 2 }, .dns = { 10, 0, 2, 3 },
				.server = { 10, 0, 2, 2 }, .lease_s = 60, .mtu = 1500,
			};
			uint8_t reply[DHCPS_REPLY_MAX];
			int t = dhcps_decide(&l, &m);

			if (t)
				dhcps_build(&l, &m, t, reply, sizeof(reply));
		}
	}
	/* Also the raw bytes as a DHCP payload, whatever the headers said. */
	dhcps_parse(data, size, &m);

	/* And through the whole netstack. */
	if (size <= 9014 + 100 && nh_guest_try_send(data, size)) {
		nh_poll();
		drain();
		nh_poll();
		drain();
	}
	if (H.ns.violation)
		__builtin_trap();	/* guest input must never be a violation */
	return 0;
}
