/* SPDX-License-Identifier: MIT */
/*
 * fuzz_frame.c - libFuzzer harness for the netstack's guest input path
 *
 * An input whose first byte has the top bit clear is one guest frame, as
 * is. Otherwise it patches one of a dozen valid template frames (TCP SYN and
 * data, UDP, DHCP, echo, ARP, fragments, IPv6 UDP/NS/fragment): byte 1 picks
 * the template, byte 2 trims or extends it, and the rest are (offset, value)
 * pairs written into it - so even a short run without a corpus gets past the
 * validator into DHCP, ICMP, reassembly and lwIP's TCP input.
 *
 * The frame goes through the validator
 * (frame_check, and frame_check_l4 on the transport part), the DHCP parser
 * and reply builder on the UDP payload, and then through a whole netstack
 * (lwIP included) over rings in process memory, as the first guest frame of
 * a flow would: whatever comes out toward the guest or the proxy is read
 * and dropped. A held SYN that reaches the proxy side gets a CONNECT_RESULT
 * ok now and then, so lwIP's TCP input sees fuzzed segments too.
 *
 * An input whose first byte is 0x40..0x7f carries offload metadata: bytes
 * 1..10 are a struct moat_vnet_hdr and the rest is the frame, checked by
 * frame_check_vnet() and sent as a MOAT_REC_FRAME_VNET record to a
 * netstack that negotiated checksum and segmentation offloads.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "netstack/dhcps.h"
#include "netstack/frame.h"
#include "../unit/netstack_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[70000];
static bool ready;

#define NT 12
static uint8_t tmpl[NT][1600];
static size_t tmpl_len[NT];

static size_t ip6_frame(uint8_t *f, uint8_t next, const uint8_t *dst, const void *l4, size_t len)
{
	memcpy(f, nh_gw_mac, 6);
	memcpy(f + 6, nh_guest_mac, 6);
	nh_put16(f + 12, 0x86dd);
	memset(f + 14, 0, 40);
	f[14] = 0x60;
	nh_put16(f + 18, (uint16_t)len);
	f[20] = next;
	f[21] = 255;
	f[22] = 0xfe, f[23] = 0x80, f[37] = 0x15;
	memcpy(f + 38, dst, 16);
	memcpy(f + 54, l4, len);
	return 54 + len;
}

static void make_templates(void)
{
	static const uint8_t opts[] = { 2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0 };
	static const uint8_t r6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x10 };
	static const uint8_t ll_gw[16] = { 0xfe, 0x80, [8] = 0x50, 0x55, 0x0a,
					   0xff, 0xfe, 0x00,	   0x02, 0x02 };
	uint8_t dhcp[300] = { 1, 1, 6 }, l4[64];
	int i = 0;

	tmpl_len[i] = nh_tcp4(tmpl[i], NH_GUEST_IP, 1234, NH_REMOTE_IP, 81, 1, 0, 0x02, 0xffff,
			      opts, sizeof(opts), NULL, 0);
	i++;
	tmpl_len[i] = nh_tcp4(tmpl[i], NH_GUEST_IP, 1234, NH_REMOTE_IP, 81, 2, 1, 0x18, 0xffff,
			      NULL, 0, "GET / HTTP/1.0\r\n\r\n", 18);
	i++;
	tmpl_len[i] = nh_udp4(tmpl[i], nh_guest_mac, NH_GUEST_IP, 5353, NH_REMOTE_IP, 53, "query",
			      5);
	i++;
	memcpy(dhcp + 28, nh_guest_mac, 6);
	dhcp[236] = 99, dhcp[237] = 130, dhcp[238] = 83, dhcp[239] = 99;
	dhcp[240] = 53, dhcp[241] = 1, dhcp[242] = 3;
	dhcp[243] = 50, dhcp[244] = 4, dhcp[245] = 10, dhcp[247] = 2, dhcp[248] = 15;
	dhcp[249] = 255;
	tmpl_len[i] = nh_udp4(tmpl[i], nh_guest_mac, 0, 68, 0xffffffffu, 67, dhcp, sizeof(dhcp));
	memset(tmpl[i], 0xff, 6);
	i++;
	tmpl_len[i] = nh_echo4(tmpl[i], NH_GUEST_IP, NH_GW_IP, 1, 1, "ping", 4);
	i++;
	tmpl_len[i] = nh_echo4(tmpl[i], NH_GUEST_IP, NH_REMOTE_IP, 1, 1, "ping", 4);
	i++;
	memset(tmpl[i], 0xff, 6);
	memcpy(tmpl[i] + 6, nh_guest_mac, 6);
	nh_put16(tmpl[i] + 12, 0x0806);
	nh_put16(tmpl[i] + 14, 1);
	nh_put16(tmpl[i] + 16, 0x0800);
	tmpl[i][18] = 6, tmpl[i][19] = 4;
	nh_put16(tmpl[i] + 20, 1);
	memcpy(tmpl[i] + 22, nh_guest_mac, 6);
	nh_put32(tmpl[i] + 28, NH_GUEST_IP);
	nh_put32(tmpl[i] + 38, NH_GW_IP);
	tmpl_len[i++] = 42;
	tmpl_len[i] = nh_udp4(tmpl[i], nh_guest_mac, NH_GUEST_IP, 7, NH_REMOTE_IP, 9,
			      "0123456789abcdef", 16);
	nh_put16(tmpl[i] + 20, 0x2000); /* first fragment */
	i++;
	memset(l4, 0, sizeof(l4));
	nh_put16(l4, 5353), nh_put16(l4 + 2, 53), nh_put16(l4 + 4, 16);
	tmpl_len[i] = ip6_frame(tmpl[i], 17, r6, l4, 16);
	i++;
	memset(l4, 0, sizeof(l4));
	l4[0] = 135;
	memcpy(l4 + 8, ll_gw, 16);
	l4[24] = 1, l4[25] = 1;
	memcpy(l4 + 26, nh_guest_mac, 6);
	tmpl_len[i] = ip6_frame(tmpl[i], 58, ll_gw, l4, 32);
	i++;
	memset(l4, 0, sizeof(l4));
	l4[0] = 17;	     /* fragment header, then UDP */
	nh_put16(l4 + 2, 1); /* offset 0, M */
	nh_put32(l4 + 4, 77);
	nh_put16(l4 + 8, 1), nh_put16(l4 + 10, 2), nh_put16(l4 + 12, 40);
	tmpl_len[i] = ip6_frame(tmpl[i], 44, r6, l4, 24);
	i++;
	memset(l4, 0, sizeof(l4));
	l4[0] = 133;
	tmpl_len[i] = ip6_frame(tmpl[i], 58, (const uint8_t[16]){ 0xff, 2, [15] = 2 }, l4, 8);
	i++;
}

/* Template mode: patch a valid frame with the input's (offset, value) pairs. */
static size_t patch(const uint8_t *data, size_t size, uint8_t *f)
{
	int t = data[1] % NT;
	size_t len = tmpl_len[t];

	memcpy(f, tmpl[t], sizeof(tmpl[t]));
	if (size > 2 && data[2] != 0x80)
		len = (size_t)((int)len + (int8_t)data[2]) > sizeof(tmpl[t]) ?
			      len :
			      (size_t)((int)len + (int8_t)data[2]);
	for (size_t i = 3; i + 1 < size; i += 2)
		f[data[i] % (len ? len : 1)] = data[i + 1];
	return len;
}

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

/* Let the netstack take what was pushed, twice, reading what comes out. */
static void run_netstack(void)
{
	nh_poll();
	drain();
	nh_poll();
	drain();
	if (H.ns.violation)
		__builtin_trap(); /* guest input must never be a violation */
}

/* A frame with offload metadata: the validator, then the whole netstack. */
static void vnet_input(const uint8_t *vh, const uint8_t *frame, size_t len)
{
	static const struct frame_cfg vcfg = {
		.mtu = 9000,
		.offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6,
		.our_mac = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 },
	};
	struct moat_vnet_hdr h;
	struct frame_vnet v;
	struct frame_info fi;

	frame_check_vnet(&vcfg, vh, frame, len, &v, &fi);
	memcpy(&h, vh, sizeof(h));
	if (len <= MOAT_FRAME_MAX_GSO && nh_guest_send_vnet(&h, frame, len))
		run_netstack();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct frame_cfg cfg = {
		.mtu = 9000,
		.our_mac = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 },
	};
	struct frame_info fi;
	struct dhcps_msg m;

	static uint8_t pf[1600];

	if (!ready) {
		nh_offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6;
		nh_init_cfg(9000, 64, 0, 1u << 20); /* anti-spoofing off: any MAC gets in */
		make_templates();
		ready = true;
	}
	if (size >= 1 + FRAME_VNET_LEN && (data[0] & 0xc0) == 0x40) {
		vnet_input(data + 1, data + 1 + FRAME_VNET_LEN, size - 1 - FRAME_VNET_LEN);
		return 0;
	}
	if (size >= 2 && (data[0] & 0x80)) {
		size = patch(data, size, pf);
		data = pf;
	}
	if (frame_check(&cfg, data, size, &fi) == FRAME_OK && fi.ethertype != ETHTYPE_ARP &&
	    fi.l4_proto == IPPROTO_UDP_ && !fi.fragment && size >= 14u + fi.l4_off + 8u) {
		const uint8_t *udp = data + 14 + fi.l4_off;
		size_t ulen = rd16(udp + 4);

		if (ulen >= 8 && 14u + fi.l4_off + ulen <= size &&
		    dhcps_parse(udp + 8, ulen - 8, &m) == 0) {
			static const struct dhcps_lease l = {
				.ip = { 10, 0, 2, 15 },
				.mask = { 255, 255, 255, 0 },
				.router = { 10, 0, 2, 2 },
				.dns = { 10, 0, 2, 3 },
				.server = { 10, 0, 2, 2 },
				.lease_s = 60,
				.mtu = 1500,
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
	if (size <= 9014 + 100 && nh_guest_try_send(data, size))
		run_netstack();
	return 0;
}
