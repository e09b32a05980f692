/* SPDX-License-Identifier: MIT */
/*
 * fuzz_netstack_p2s.c - libFuzzer harness for the proxy -> netstack messages
 *
 * The input is a sequence of records `u8 type-offset, u16 length, bytes`
 * pushed into p2s (type = FLOW_CONNECT + offset, so most inputs hit real
 * message types; ids in the bytes are patched toward live flows half of the
 * time). Before the first input a guest TCP connection is opened and one
 * SYN is left pending, so DATA/CREDIT/SHUT_WR/CLOSE/CONNECT_RESULT reach
 * live state. A malformed message is a violation: the harness checks that
 * one was reported (not crashed on), then clears it and resets p2s so the
 * next input starts clean - the real netstack would stop instead.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../unit/netstack_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t frame[2048], out[FLOW_RECORD_MAX];
static uint32_t ids[4];
static bool ready;
static uint16_t next_port = 30000;

static void drain(void)
{
	uint32_t type;
	int n;

	while (nh_guest_recv_any(out, sizeof(out)) >= 0)
		;
	while ((n = nh_proxy_recv(&type, out, sizeof(out))) >= 0)
		if (type == FLOW_CONNECT && (size_t)n >= sizeof(uint32_t))
			memcpy(&ids[next_port % 4], out, 4);
}

/* A guest SYN to a new port; its CONNECT id is remembered in ids[]. */
static void syn(void)
{
	static const uint8_t opts[] = { 2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0 };
	size_t n = nh_tcp4(frame, NH_GUEST_IP, next_port, NH_REMOTE_IP, 80, 1000, 0, 0x02, 0xffff,
			   opts, sizeof(opts), NULL, 0);

	nh_guest_try_send(frame, n);
	nh_poll();
	drain();
	next_port++;
}

static void reset_after_violation(void)
{
	struct region *r = &H.ns.region;

	H.ns.violation = false;
	H.ns.p2s_paused = false;
	H.ns.p2s_skip = 0;
	ring_attach(&H.p2s, r->part[MOAT_PART_RING_P2S],
		    region_ring_capacity(r, MOAT_PART_RING_P2S), -1, -1, NULL);
	/* Drop whatever is left in p2s: the consumer catches up with the producer. */
	ring_attach(&H.ns.p2s, r->part[MOAT_PART_RING_P2S],
		    region_ring_capacity(r, MOAT_PART_RING_P2S), -1, -1, NULL);
	H.ns.p2s.tail = H.ns.p2s.head = H.p2s.head;
	H.ns.p2s.pub = H.p2s.head;
	H.ns.p2s.ctl->tail = H.p2s.head;
	H.p2s.tail = H.p2s.head;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	uint32_t seq;

	if (!ready) {
		struct flow_connect_result r = { .result = MOAT_CONN_OK };

		nh_init_cfg(1500, 16, 1, 1u << 20);
		syn();
		r.id = ids[(next_port - 1) % 4];
		nh_proxy_send(FLOW_CONNECT_RESULT, &r, sizeof(r));
		nh_poll();
		drain();
		syn(); /* left pending */
		ready = true;
	}
	seq = H.ns.mbox->seq;
	while (off + 3 <= size) {
		uint32_t type = FLOW_CONNECT + (data[off] % (FLOW_MSG_END - FLOW_CONNECT + 1));
		size_t len = (size_t)(data[off + 1] | data[off + 2] << 8);
		uint8_t rec[70000];

		off += 3;
		if (len > size - off)
			len = size - off;
		memcpy(rec, data + off, len);
		if (len >= 4 && (data[off - 3] & 0x80))
			memcpy(rec, &ids[data[off - 3] & 3], 4); /* a live id */
		off += len;
		if (ring_push(&H.p2s, type, rec, (uint32_t)len) < 0)
			break;
	}
	ring_flush(&H.p2s);
	nh_poll();
	drain();
	if (H.ns.violation) {
		if (H.ns.mbox->seq == seq)
			__builtin_trap(); /* stopped without reporting */
		reset_after_violation();
	}
	if (next_port % 64 == 0)
		syn();
	return 0;
}
