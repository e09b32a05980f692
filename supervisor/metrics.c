/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - Prometheus text exposition of the shared counters
 *
 * Theory of Operation
 * -------------------
 * Placeholder until the metrics issue: renders a few counters for
 * --metrics-file. The HTTP endpoint arrives with issue 8.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/metrics.h"

struct metrics {
	int unused;
};

char *metrics_render(const struct region *r, size_t *len)
{
	const struct moat_guest_counters *g = r->part[MOAT_PART_CNT_GUEST];
	char *buf = NULL;
	size_t sz = 0;
	FILE *f = open_memstream(&buf, &sz);

	if (!f)
		return NULL;
	fprintf(f, "moat_guest_tx_bytes_total %llu\n", (unsigned long long)g->tx_bytes);
	fprintf(f, "moat_guest_rx_bytes_total %llu\n", (unsigned long long)g->rx_bytes);
	fclose(f);
	*len = sz;
	return buf;
}

int metrics_start(struct metrics **out, const char *addr, const char *file,
		  const struct region *r, char *err, size_t errlen)
{
	(void)file;
	(void)r;
	*out = NULL;
	if (addr) {
		snprintf(err, errlen, "not available yet");
		return -1;
	}
	return 0;
}

int metrics_tick(struct metrics *m)
{
	(void)m;
	return -1;
}

void metrics_final(struct metrics *m)
{
	(void)m;
}
