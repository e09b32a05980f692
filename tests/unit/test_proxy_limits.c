/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_limits.c - token buckets and the policy limits (proxy/limits.c)
 */
#include <criterion/criterion.h>

#include "proxy/limits.h"

Test(tbucket, refill_and_take)
{
	struct tbucket b;

	limits_tbucket_init(&b, 100, 100, 0); /* 100/s, one second of burst */
	cr_assert_eq(limits_tbucket_avail(&b, 0), 100);
	cr_assert(limits_tbucket_take(&b, 60, 0));
	cr_assert_not(limits_tbucket_take(&b, 41, 0));
	cr_assert(limits_tbucket_take(&b, 40, 0));
	cr_assert_eq(limits_tbucket_avail(&b, 0), 0);
	cr_assert_eq(limits_tbucket_avail(&b, 10), 1); /* 10 ms = 1 token */
	cr_assert_eq(limits_tbucket_avail(&b, 500), 50);
	cr_assert_eq(limits_tbucket_avail(&b, 100000), 100); /* never above the burst */
	cr_assert_eq(limits_tbucket_wait_ms(&b, 100, 100000), 0);
	cr_assert(limits_tbucket_take(&b, 100, 100000));
	cr_assert_eq(limits_tbucket_wait_ms(&b, 50, 100000), 500);
	/* capped at the burst */
	cr_assert_eq(limits_tbucket_wait_ms(&b, 1000, 100000), 1000);
}

Test(tbucket, off_and_overdraft)
{
	struct tbucket b;

	limits_tbucket_init(&b, 0, 1, 0);
	cr_assert_eq(limits_tbucket_avail(&b, 0), UINT64_MAX);
	cr_assert(limits_tbucket_take(&b, 1u << 30, 0));
	limits_tbucket_init(&b, 10, 10, 0);
	limits_tbucket_charge(&b, 25, 0);
	cr_assert_lt(b.milli, 0);
	cr_assert_eq(limits_tbucket_avail(&b, 0), 0);
	cr_assert_eq(limits_tbucket_avail(&b, 1500), 0); /* -15 + 15 */
	cr_assert_eq(limits_tbucket_avail(&b, 2000), 5);
	/* Absurd rates and long gaps do not overflow. */
	limits_tbucket_init(&b, UINT64_MAX, UINT64_MAX, 0);
	cr_assert(limits_tbucket_take(&b, 1000, 0));
	cr_assert_gt(limits_tbucket_avail(&b, UINT64_MAX / 2), 1000);
}

static struct policy_limits lim(void)
{
	struct policy_limits l = { 0 };

	return l;
}

Test(limits, counts)
{
	struct limits l;
	struct policy_limits p = lim();
	enum limit_kind k;

	limits_init(&l, 3, 0);
	limits_configure(&l, &p, 0);
	cr_assert_eq(limits_new_flow(&l, true, 2, 0, &k), LIMIT_OK);
	cr_assert_eq(limits_new_flow(&l, true, 3, 0, &k), LIMIT_REFUSE); /* command line cap */
	cr_assert_eq(k, LIMIT_TCP_CONNECTIONS);
	cr_assert_eq(limits_new_flow(&l, false, 100000, 0, &k), LIMIT_OK); /* no UDP cap */

	p.max_udp_flows = (struct policy_limit){ .value = 2,
						 .on_exceed = POLICY_EXCEED_TERMINATE,
						 .set = true };
	limits_configure(&l, &p, 0);
	cr_assert_eq(limits_new_flow(&l, false, 1, 0, &k), LIMIT_OK);
	cr_assert_eq(limits_new_flow(&l, false, 2, 0, &k), LIMIT_TERMINATE);
	cr_assert_eq(k, LIMIT_UDP_FLOWS);
	cr_assert_str_eq(limits_name(k), "max_udp_flows");
}

Test(limits, connection_rate)
{
	struct limits l;
	struct policy_limits p = lim();
	enum limit_kind k;
	int ok = 0;

	limits_init(&l, 0, 0);
	p.new_connections_per_second = (struct policy_limit){ .value = 5, .set = true };
	limits_configure(&l, &p, 0);
	for (int i = 0; i < 20; i++)
		ok += limits_new_flow(&l, true, 0, 0, &k) == LIMIT_OK;
	cr_assert_eq(ok, 5);
	cr_assert_eq(k, LIMIT_NEW_CONNECTIONS);
	cr_assert_eq(limits_new_flow(&l, true, 0, 200, &k), LIMIT_OK); /* one more after 200 ms */
	/* A reload with the same rate keeps the bucket's fill. */
	limits_configure(&l, &p, 200);
	cr_assert_eq(limits_new_flow(&l, true, 0, 200, &k), LIMIT_REFUSE);
	/* A new rate starts full. */
	p.new_connections_per_second.value = 6;
	limits_configure(&l, &p, 200);
	cr_assert_eq(limits_new_flow(&l, true, 0, 200, &k), LIMIT_OK);
}

Test(limits, bytes_shape_and_police)
{
	struct limits l;
	struct policy_limits p = lim();

	limits_init(&l, 0, 0);
	limits_configure(&l, &p, 0);
	cr_assert_eq(limits_bytes_allowed(&l, true, 70000, 0), 70000); /* no limit */
	p.ingress_bytes_per_second = (struct policy_limit){ .value = 100000, .set = true };
	p.egress_bytes_per_second = (struct policy_limit){ .value = 1000,
							   .on_exceed = POLICY_EXCEED_TERMINATE,
							   .set = true };
	limits_configure(&l, &p, 0);
	/* Shaping: allowed shrinks to the tokens, then waits. */
	cr_assert_eq(limits_bytes_allowed(&l, true, 65536, 0), 65536);
	cr_assert_eq(limits_bytes_done(&l, true, 65536, 0), LIMIT_OK);
	cr_assert_eq(limits_bytes_allowed(&l, true, 65536, 0), 100000 - 65536);
	limits_bytes_done(&l, true, 100000 - 65536, 0);
	cr_assert_eq(limits_bytes_allowed(&l, true, 65536, 0), 0);
	cr_assert_gt(limits_bytes_wait_ms(&l, true, 0), 0);
	cr_assert_eq(limits_bytes_allowed(&l, true, 65536, 500), 50000);
	/* Policing: everything passes, the overdraft is a violation. */
	cr_assert_eq(limits_bytes_allowed(&l, false, 5000, 0), 5000);
	cr_assert_eq(limits_bytes_done(&l, false, 1000, 0), LIMIT_OK);
	cr_assert_eq(limits_bytes_done(&l, false, 1, 0), LIMIT_TERMINATE);
}
