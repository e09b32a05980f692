/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - Prometheus exposition of the shared counters (DESIGN §10)
 *
 * Included by the supervisor only. Every metric is listed in
 * docs/metrics.md.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>

#include "shm/region.h"

/* Room for one rendering; the worst case (every counter at UINT64_MAX) fits. */
#define METRICS_BUF_SIZE	 (32u << 10)
/* How often --metrics-file is rewritten. */
#define METRICS_FILE_INTERVAL_MS 5000
/* Concurrent HTTP connections (each may hold one rendered response). */
#define METRICS_HTTP_CONNECTIONS 8
/* The Content-Type of text format 0.0.4. */
#define METRICS_CONTENT_TYPE	 "text/plain; version=0.0.4; charset=utf-8"

struct metrics;

int metrics_start(struct metrics **out, const char *addr, const char *file, const struct region *r,
		  char *err, size_t errlen);
int metrics_tick(struct metrics *m);
void metrics_final(struct metrics *m);
const char *metrics_address(const struct metrics *m);
void metrics_seccomp(scmp_filter_ctx ctx, const struct metrics *m);
size_t metrics_render_buf(const struct region *r, bool up, char *buf, size_t cap);
char *metrics_render(const struct region *r, size_t *len);

#endif /* MOAT_METRICS_H */
