/* SPDX-License-Identifier: MIT */
/*
 * test_rate.c - common/rate.c: the token bucket that bounds what less
 * trusted processes make moat write (the proxy's events, the children's log)
 */
#include <criterion/criterion.h>

#include "common/rate.h"

Test(rate, a_full_bucket_gives_its_burst_then_refuses)
{
	struct rate r = RATE_INIT(10, 100);

	cr_assert(rate_take_at(&r, 60, 1000));
	cr_assert(rate_take_at(&r, 40, 1000));
	cr_assert_not(rate_take_at(&r, 1, 1000), "more than the burst passed");
}

Test(rate, a_refusal_spends_nothing)
{
	struct rate r = RATE_INIT(10, 100);

	cr_assert_not(rate_take_at(&r, 101, 1000));
	cr_assert(rate_take_at(&r, 100, 1000), "the refused take spent tokens");
}

Test(rate, tokens_come_back_at_the_rate)
{
	struct rate r = RATE_INIT(10, 100);

	cr_assert(rate_take_at(&r, 100, 1000));
	cr_assert_not(rate_take_at(&r, 1, 1050), "a token came back before 100 ms");
	cr_assert(rate_take_at(&r, 1, 1100), "no token after 100 ms at 10/s");
	cr_assert_not(rate_take_at(&r, 1, 1100));
	cr_assert(rate_take_at(&r, 10, 2100), "one second gives 10 tokens");
	cr_assert_not(rate_take_at(&r, 1, 2100));
}

Test(rate, slow_rates_do_not_round_to_nothing)
{
	struct rate r = RATE_INIT(1, 1);

	cr_assert(rate_take_at(&r, 1, 1));
	/* 999 calls a millisecond apart: one token in all, not zero. */
	for (uint64_t t = 2; t < 1001; t++)
		cr_assert_not(rate_take_at(&r, 1, t));
	cr_assert(rate_take_at(&r, 1, 1001));
}

Test(rate, the_bucket_never_holds_more_than_its_burst)
{
	struct rate r = RATE_INIT(1000000, 5);

	cr_assert(rate_take_at(&r, 5, 1));
	/* Years later: still 5 at most, and no overflow. */
	cr_assert(rate_take_at(&r, 5, 1 + 100ull * 365 * 86400 * 1000));
	cr_assert_not(rate_take_at(&r, 1, 1 + 100ull * 365 * 86400 * 1000));
}

Test(rate, a_clock_that_goes_back_gives_nothing)
{
	struct rate r = RATE_INIT(10, 10);

	cr_assert(rate_take_at(&r, 10, 5000));
	cr_assert_not(rate_take_at(&r, 1, 4000));
	cr_assert_not(rate_take_at(&r, 1, 5000));
	cr_assert(rate_take_at(&r, 1, 5100));
}

Test(rate, the_real_clock_refuses_a_flood)
{
	struct rate r = RATE_INIT(64 << 10, 1 << 20);
	uint64_t passed = 0;

	for (int i = 0; i < 1000; i++)
		if (rate_take(&r, 16384))
			passed += 16384;
	/* 16 MB offered at once: the burst passes, hardly more. */
	cr_assert(passed >= (1u << 20) && passed < (2u << 20), "%llu bytes passed",
		  (unsigned long long)passed);
}
