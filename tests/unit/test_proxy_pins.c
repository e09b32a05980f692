/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_pins.c - the DNS pin table (proxy/pins.c): TTLs and bounds
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy/pins.h"

static const uint8_t A1[16] = { 203, 0, 113, 7 };
static const uint8_t A2[16] = { 203, 0, 113, 8 };

Test(pins, add_lookup_refresh)
{
	struct pins t;
	const char *names[4];

	cr_assert_eq(pins_init(&t, 16), 0);
	cr_assert_eq(pins_add(&t, 4, A1, "www.example.com", 60, 1000), 0);
	cr_assert_eq(pins_add(&t, 4, A1, "cdn.example.net", 60, 1000), 0);
	cr_assert_eq(pins_add(&t, 4, A1, "www.example.com", 60, 1000), 0); /* same pair */
	cr_assert_eq(t.count, 2);
	cr_assert_eq(pins_lookup(&t, 4, A1, 2000, names, 4), 2);
	cr_assert_eq(pins_lookup(&t, 4, A2, 2000, names, 4), 0);
	/* An IPv6 address with the same first bytes is another address. */
	cr_assert_eq(pins_lookup(&t, 6, A1, 2000, names, 4), 0);
	/* max bounds what is returned. */
	cr_assert_eq(pins_lookup(&t, 4, A1, 2000, names, 1), 1);
	pins_fini(&t);
}

Test(pins, ttl_expiry_and_clamp)
{
	struct pins t;
	const char *names[4];

	cr_assert_eq(pins_init(&t, 16), 0);
	pins_add(&t, 4, A1, "short.example", 0, 0); /* clamped up to PINS_TTL_MIN_S */
	pins_add(&t, 4, A2, "long.example", 100, 0);
	cr_assert_eq(pins_lookup(&t, 4, A1, PINS_TTL_MIN_S * 1000 - 1, names, 4), 1);
	cr_assert_eq(pins_lookup(&t, 4, A1, PINS_TTL_MIN_S * 1000, names, 4), 0);
	cr_assert_eq(t.count, 1); /* dropped on the way */
	cr_assert_eq(pins_lookup(&t, 4, A2, 99999, names, 4), 1);
	pins_expire(&t, 100000);
	cr_assert_eq(t.count, 0);
	/* A huge TTL is clamped down. */
	pins_add(&t, 4, A1, "x.example", 0xffffffffu, 0);
	cr_assert_eq(pins_lookup(&t, 4, A1, (uint64_t)PINS_TTL_MAX_S * 1000, names, 4), 0);
	/* Refreshing never shortens. */
	pins_add(&t, 4, A2, "y.example", 100, 0);
	pins_add(&t, 4, A2, "y.example", 10, 50000);
	cr_assert_eq(pins_lookup(&t, 4, A2, 99000, names, 4), 1);
	pins_fini(&t);
}

Test(pins, bounded_evicts_oldest)
{
	struct pins t;
	const char *names[4];
	uint8_t a[16] = { 198, 51, 100, 0 };

	cr_assert_eq(pins_init(&t, 8), 0);
	for (int i = 0; i < 100; i++) {
		char n[32];

		a[3] = (uint8_t)i;
		snprintf(n, sizeof(n), "h%d.example", i);
		cr_assert_eq(pins_add(&t, 4, a, n, 3600, 0), 0);
		cr_assert_leq(t.count, 8);
	}
	a[3] = 99;
	cr_assert_eq(pins_lookup(&t, 4, a, 1, names, 4), 1);
	cr_assert_str_eq(names[0], "h99.example");
	a[3] = 91;
	cr_assert_eq(pins_lookup(&t, 4, a, 1, names, 4), 0); /* evicted */
	a[3] = 92;
	cr_assert_eq(pins_lookup(&t, 4, a, 1, names, 4), 1);
	pins_fini(&t);
}

Test(pins, rejects)
{
	struct pins t;
	char big[PINS_NAME_MAX + 10];

	cr_assert_eq(pins_init(&t, 4), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(pins_add(&t, 4, A1, big, 60, 0), -ENAMETOOLONG);
	cr_assert_eq(pins_add(&t, 5, A1, "a", 60, 0), -EINVAL);
	cr_assert_eq(t.count, 0);
	pins_clear(&t);
	pins_fini(&t);
}
