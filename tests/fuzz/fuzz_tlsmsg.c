/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tlsmsg.c - tlsmsg_check() on arbitrary datagrams, from both senders:
 * an accepted record's payload lies inside the datagram and has the size
 * its type requires, and rebuilding it gives the same bytes.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "tls/tlsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t again[TLSMSG_MAX];

	for (int from_proxy = 0; from_proxy < 2; from_proxy++) {
		struct tlsmsg m;

		if (tlsmsg_check(data, size, from_proxy, &m) < 0)
			continue;
		assert(m.payload == data + TLSMSG_HDR);
		assert(TLSMSG_HDR + (size_t)m.len == size);
		assert(m.len <= TLSMSG_SNI_MAX);
		assert(tlsmsg_build(again, m.flow, m.type, m.payload, m.len) == size);
		assert(!memcmp(again, data, size));
	}
	return 0;
}
