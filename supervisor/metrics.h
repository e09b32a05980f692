/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - Prometheus exposition of the shared counters (DESIGN §10)
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <stddef.h>

#include "shm/region.h"

struct metrics;

int metrics_start(struct metrics **out, const char *addr, const char *file,
		  const struct region *r, char *err, size_t errlen);
int metrics_tick(struct metrics *m);
void metrics_final(struct metrics *m);
char *metrics_render(const struct region *r, size_t *len);

#endif /* MOAT_METRICS_H */
