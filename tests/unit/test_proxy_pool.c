/* SPDX-License-Identifier: MIT */
/* test_proxy_pool.c - proxy/pool.c: the bound, reuse, lazy pages, trimming */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/pool.h"

/* Pages of [p, p + len) backed by memory now. */
static size_t resident(const void *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page, r = 0;
	unsigned char v[256];

	cr_assert_leq(n, sizeof(v));
	cr_assert_eq(mincore((void *)p, len, v), 0);
	for (size_t i = 0; i < n; i++)
		r += v[i] & 1;
	return r;
}

Test(pool, bound_refusal_and_reuse)
{
	struct pool p;
	void *o[8];

	cr_assert_eq(pool_init(&p, "t", 100, 8), 0);
	cr_assert_eq(p.size, 112, "sizes round up to 16");
	for (int i = 0; i < 8; i++) {
		o[i] = pool_get(&p);
		cr_assert_not_null(o[i]);
		memset(o[i], 0xa5, 100);
		for (int k = 0; k < i; k++)
			cr_assert_neq(o[i], o[k]);
	}
	cr_assert_null(pool_get(&p), "a ninth object from a pool of eight");
	cr_assert_eq(p.refused, 1);
	cr_assert_eq(p.used, 8);
	pool_put(&p, o[3]);
	pool_put(&p, o[5]);
	pool_put(&p, NULL);
	cr_assert_eq(p.used, 6);
	cr_assert_eq(pool_get(&p), o[5], "the most recently given back comes first");
	cr_assert_eq(pool_get(&p), o[3]);
	cr_assert_null(pool_get(&p));
	cr_assert_eq(p.refused, 2);
	cr_assert_eq(p.peak, 8);
	pool_fini(&p);
	cr_assert_null(p.base);
}

Test(pool, pages_are_touched_as_used_and_given_back)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct pool p;
	void *a, *b;

	cr_assert_eq(pool_init(&p, "t", 64 * page, 4), 0);
	cr_assert_eq(resident(p.base, 4 * 64 * page), 0, "a new pool holds no memory");
	a = pool_get(&p);
	b = pool_get(&p);
	memset(a, 1, 64 * page);
	memset(b, 1, page);
	cr_assert_eq(resident(p.base, 4 * 64 * page), 65);
	pool_trim(&p); /* in use: nothing happens */
	cr_assert_eq(resident(p.base, 4 * 64 * page), 65);
	pool_put(&p, a);
	pool_put(&p, b);
	pool_trim(&p);
	cr_assert_eq(resident(p.base, 4 * 64 * page), 0, "an idle pool gives its pages back");
	cr_assert_eq(p.fresh, 0);
	a = pool_get(&p);
	cr_assert_eq(a, p.base, "after a trim the pool starts over");
	cr_assert_eq(((unsigned char *)a)[0], 0, "trimmed pages come back zeroed");
	pool_put(&p, a);
	pool_fini(&p);
}

Test(pool, bad_sizes)
{
	struct pool p;

	cr_assert_eq(pool_init(&p, "t", 16, 0), -EINVAL);
	cr_assert_eq(pool_init(&p, "t", SIZE_MAX / 2, 4), -EINVAL);
	cr_assert_eq(pool_init(&p, "t", 1, 1), 0);
	cr_assert_eq(p.size, 16, "at least a pointer, rounded to 16");
	pool_fini(&p);
	pool_fini(&p); /* twice is harmless */
}
