/* SPDX-License-Identifier: MIT */
/*
 * fuzz_dns.c - libFuzzer harness for the proxy's DNS code (proxy/dnsmsg.c):
 * the input is parsed as a guest's query and as an upstream's answer to a
 * fixed query; every name in it is read; whatever parses is answered,
 * truncated and re-parsed. ASan/UBSan catch any out-of-bounds access; the
 * asserts catch inconsistent results.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dnsmsg_answer ans;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t fixed[] = { 0x12, 0x34, 0x01, 0x00, 0,   1,   0,	0,   0,	  0,   0,
					 0,    3,    'w',  'w',	 'w', 7,   'e', 'x', 'a', 'm', 'p',
					 'l',  'e',  3,	   'c',	 'o', 'm', 0,	0,   1,	  0,   1 };
	struct dnsmsg_query q, fq;
	uint8_t out[DNSMSG_UDP_MAX + 2];
	char name[DNSMSG_NAME_TEXT_MAX];
	uint8_t *copy = malloc(size ? size : 1);
	size_t n;
	int rc;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	/* As a query from the guest. */
	rc = dnsmsg_parse_query(copy, size, &q);
	if (rc == 0) {
		assert(q.q.end <= size);
		assert(q.udp_size >= DNSMSG_UDP_MIN);
		assert(strlen(q.q.name) < sizeof(q.q.name));
		n = dnsmsg_reply(copy, size, &q, DNSMSG_RCODE_NXDOMAIN, out, sizeof(out));
		assert(n > 0);
		/* Our own reply must parse as an answer to the query. */
		assert(dnsmsg_parse_answer(out, n, &q, q.id, &ans) == 0);
		n = dnsmsg_truncate(out, n, &q, out, sizeof(out));
		assert(n > 0);
	} else {
		n = dnsmsg_formerr(copy, size, out, sizeof(out));
		assert(n == 0 || n == DNSMSG_HDR_LEN);
	}
	/* As an upstream answer to a fixed query, with the id it carries. */
	assert(dnsmsg_parse_query(fixed, sizeof(fixed), &fq) == 0);
	if (size >= 2) {
		rc = dnsmsg_parse_answer(copy, size, &fq, (uint16_t)(copy[0] << 8 | copy[1]), &ans);
		if (rc == 0) {
			assert(ans.n_chain >= 1 && ans.n_chain <= DNSMSG_CHAIN_MAX + 1);
			assert(ans.n_addr >= 0 && ans.n_addr <= DNSMSG_ADDRS_MAX);
			for (int i = 0; i < ans.n_addr; i++)
				assert(ans.addr[i].family == 4 || ans.addr[i].family == 6);
		}
	}
	/* Every offset as the start of a name. */
	for (size_t off = 0; off < size && off < 512; off++) {
		size_t o = off;

		if (dnsmsg_name_read(copy, size, &o, name, sizeof(name)) == 0)
			assert(o > off && o <= size);
	}
	free(copy);
	return 0;
}
