/* SPDX-License-Identifier: MIT */
/*
 * test_tlsmsg.c - the proxy <-> moat-tls records: each type built and
 * checked, and every malformed form refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tls/tlsmsg.h"

static uint8_t buf[TLSMSG_MAX + 512];

Test(tlsmsg, records_round_trip)
{
	struct tlsmsg m;
	size_t n = tlsmsg_build(buf, 7, TLSMSG_OPEN, "api.example.com", 15);

	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), 0);
	cr_assert_eq(m.flow, 7);
	cr_assert_eq(m.type, TLSMSG_OPEN);
	cr_assert_eq(m.len, 15);
	cr_assert(!memcmp(m.payload, "api.example.com", 15));
	n = tlsmsg_build2(buf, 9, TLSMSG_FAIL, 1, TLSMSG_R_VERIFY);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), 0);
	cr_assert_eq(m.a, 1);
	cr_assert_eq(m.b, TLSMSG_R_VERIFY);
	n = tlsmsg_build2(buf, 9, TLSMSG_SECRET, 3, TLSMSG_SECRET_VIOLATION);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), 0);
	cr_assert_eq(m.a, 3);
	n = tlsmsg_build2(buf, 9, TLSMSG_OPENED, 0, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), 0);
	memset(buf + 300, 'a', TLSMSG_SNI_MAX);
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, buf + 300, TLSMSG_SNI_MAX);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), 0, "the longest name");
}

Test(tlsmsg, malformed_records_are_refused)
{
	struct tlsmsg m;
	size_t n;

	cr_assert_eq(tlsmsg_check(buf, 11, 1, &m), -EBADMSG, "short header");
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, "abc", 3);
	cr_assert_eq(tlsmsg_check(buf, n - 1, 1, &m), -EBADMSG, "length says more");
	cr_assert_eq(tlsmsg_check(buf, n + 1, 1, &m), -EBADMSG, "length says less");
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "OPEN sent by moat-tls");
	n = tlsmsg_build2(buf, 1, TLSMSG_FAIL, 0, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), -EBADMSG, "FAIL sent by the proxy");
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, "a_b.example", 11);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), 0, "'_' is moat-tls's to refuse (FAIL NAME)");
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, "bad name", 8);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), -EBADMSG, "SNI with a space");
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, NULL, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), -EBADMSG, "empty SNI");
	memset(buf + 300, 'a', TLSMSG_SNI_MAX + 1);
	n = tlsmsg_build(buf, 1, TLSMSG_OPEN, buf + 300, TLSMSG_SNI_MAX + 1);
	cr_assert_eq(tlsmsg_check(buf, n, 1, &m), -EBADMSG, "SNI of 254 bytes");
	n = tlsmsg_build2(buf, 1, TLSMSG_OPENED, 1, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "OPENED with values");
	n = tlsmsg_build2(buf, 1, TLSMSG_FAIL, 2, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "side 2");
	n = tlsmsg_build2(buf, 1, TLSMSG_FAIL, 0, TLSMSG_R_COUNT);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "reason out of range");
	n = tlsmsg_build2(buf, 1, TLSMSG_SECRET, 0, 2);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "outcome 2");
	n = tlsmsg_build(buf, 1, TLSMSG_SECRET, "1234", 4);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "short outcome");
	n = tlsmsg_build(buf, 1, 99, NULL, 0);
	cr_assert_eq(tlsmsg_check(buf, n, 0, &m), -EBADMSG, "unknown type");
}
