/* SPDX-License-Identifier: MIT */
/*
 * fuzz_sniff.c - libFuzzer harness for proxy/sniff.c: any bytes, whole and in
 * every prefix, never crash or read out of bounds; a name that comes back is
 * a lowercase DNS name, and a prefix that says NAME or NONE says the same of
 * the whole input (more bytes never change an answer that was given).
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[SNIFF_NAME_MAX + 1], first[SNIFF_NAME_MAX + 1];
	enum sniff_kind kind;
	enum sniff_result whole, r;
	size_t step = size > 64 ? size / 64 : 1;

	if (size > SNIFF_MAX_BYTES)
		size = SNIFF_MAX_BYTES;
	whole = sniff_hostname(data, size, first, &kind);
	if (whole == SNIFF_NAME) {
		size_t n = strlen(first);

		assert(n > 0 && n <= SNIFF_NAME_MAX);
		for (size_t i = 0; i < n; i++)
			assert(!(first[i] >= 'A' && first[i] <= 'Z') && first[i] != ' ');
	}
	for (size_t i = 0; i < size; i += step) {
		r = sniff_hostname(data, i, name, &kind);
		if (r == SNIFF_NAME) {
			assert(whole == SNIFF_NAME && !strcmp(name, first));
			break;
		}
		if (r == SNIFF_NONE) {
			assert(whole == SNIFF_NONE);
			break;
		}
	}
	return 0;
}
