/* SPDX-License-Identifier: MIT */
/*
 * test_mailbox.c - violation mailboxes (shm/mailbox.c)
 *
 * A confined child posts into shared memory and writes the supervisor's
 * eventfd; the supervisor copies the mailbox out and must not trust a byte
 * of it: the detail is NUL-terminated by the reader, and a reason it does
 * not know is mapped to one it does.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/mailbox.h"

static struct moat_mailbox *shared_mailbox(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert(p != MAP_FAILED);
	return p;
}

static int wait_efd(int efd)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	uint64_t v = 0;

	if (poll(&pfd, 1, 30000) != 1)
		return -1;
	if (read(efd, &v, sizeof(v)) != sizeof(v))
		return -1;
	return (int)v;
}

Test(mailbox, nothing_new_nothing_taken)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct moat_mailbox out;
	uint32_t last = 0;

	memset(&out, 0x77, sizeof(out));
	cr_assert_eq(mailbox_take(mb, &last, &out), 0);
	cr_assert_eq(last, 0);
	munmap(mb, 4096);
}

Test(mailbox, post_and_take_across_fork)
{
	struct moat_mailbox *mb = shared_mailbox();
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct moat_mailbox out;
	uint32_t last = 0;
	int status;
	pid_t pid;

	cr_assert_geq(efd, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct mailbox_report rep = {
			.reason = MOAT_VIOL_POLICY_TERMINATE,
			.rule = 2,
			.flow = 0x12345,
			.proto = MOAT_P_TCP,
			.dst_family = 4,
			.dst_port = 443,
			.dst_addr = { 169, 254, 169, 254 },
			.detail = "egress to metadata",
		};

		mailbox_post(mb, efd, &rep);
		_exit(0);
	}
	cr_assert_eq(wait_efd(efd), 1, "the child did not wake the supervisor");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(last, 1);
	cr_assert_eq(out.seq, 1);
	cr_assert_eq(out.reason, MOAT_VIOL_POLICY_TERMINATE);
	cr_assert_eq(out.rule, 2);
	cr_assert_eq(out.flow, 0x12345);
	cr_assert_eq(out.proto, MOAT_P_TCP);
	cr_assert_eq(out.dst_family, 4);
	cr_assert_eq(out.dst_port, 443);
	cr_assert_eq(out.dst_addr[0], 169);
	cr_assert_eq(out.dst_addr[3], 254);
	cr_assert_str_eq(out.detail, "egress to metadata");
	/* Taken once: nothing new until the next post. */
	cr_assert_eq(mailbox_take(mb, &last, &out), 0);

	/* A second report (another process, a later violation) is seen as new. */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct mailbox_report rep = { .reason = MOAT_VIOL_RING_CORRUPT,
					      .rule = -1,
					      .proto = 0xff };

		mailbox_post(mb, efd, &rep);
		_exit(0);
	}
	cr_assert_eq(wait_efd(efd), 1);
	waitpid(pid, NULL, 0);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(last, 2);
	cr_assert_eq(out.reason, MOAT_VIOL_RING_CORRUPT);
	cr_assert_eq(out.rule, -1);
	cr_assert_eq(out.flow, 0);
	cr_assert_eq(out.dst_family, 0);
	cr_assert_str_eq(out.detail, "", "a NULL detail leaves no stale words behind");
	close(efd);
	munmap(mb, 4096);
}

Test(mailbox, long_detail_is_truncated_and_terminated)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct moat_mailbox out;
	char longtext[400];
	struct mailbox_report rep = { .reason = MOAT_VIOL_LIMIT, .rule = 0, .detail = longtext };
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint32_t last = 0;

	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	mailbox_post(mb, efd, &rep);
	/* The writer terminates it in the shared copy... */
	cr_assert_eq(mb->detail[sizeof(mb->detail) - 1], '\0');
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(strlen(out.detail), sizeof(out.detail) - 1);
	close(efd);
	munmap(mb, 4096);
}

/* A hostile child writes the mailbox by hand: no NUL anywhere in the detail. */
Test(mailbox, forged_detail_without_nul)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct moat_mailbox out;
	uint32_t last = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		memset(mb, 'A', sizeof(*mb));
		__atomic_store_n(&mb->seq, 7, __ATOMIC_RELEASE);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(last, 7);
	cr_assert_eq(out.detail[sizeof(out.detail) - 1], '\0');
	cr_assert_eq(strlen(out.detail), sizeof(out.detail) - 1);
	/* Every field that indexes a table is safe to use. */
	cr_assert_lt(out.reason, MOAT_VIOL_COUNT);
	/* The shared copy is left as the child wrote it: only ours is fixed. */
	cr_assert_eq(mb->detail[sizeof(mb->detail) - 1], 'A');
	munmap(mb, 4096);
}

/*
 * The detail goes into the log and the events as words: a hostile child's
 * control bytes, terminal escapes, newlines, quotes and backslashes come
 * out escaped, printable and NUL-terminated.
 */
Test(mailbox, detail_is_escaped)
{
	static const char forged[] = "ring\ncorrupt\x1b[31m \"q\" back\\slash \x7f\xff\x01 ok";
	struct moat_mailbox *mb = shared_mailbox();
	struct moat_mailbox out;
	uint32_t last = 0;

	memcpy(mb->detail, forged, sizeof(forged));
	__atomic_store_n(&mb->seq, 1, __ATOMIC_RELEASE);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_str_eq(out.detail,
			 "ring\\x0acorrupt\\x1b[31m \\\"q\\\" back\\\\slash \\x7f\\xff\\x01 ok");
	for (const char *c = out.detail; *c; c++)
		cr_assert(*c >= 0x20 && *c <= 0x7e, "byte 0x%02x left in the detail",
			  (unsigned char)*c);
	munmap(mb, 4096);
}

/* A detail of nothing but escapes is cut at a whole escape, never in one. */
Test(mailbox, escaped_detail_cut_at_a_whole_escape)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct moat_mailbox out;
	uint32_t last = 0;
	size_t len;

	memset(mb->detail, 0x1b, sizeof(mb->detail)); /* and no NUL */
	__atomic_store_n(&mb->seq, 1, __ATOMIC_RELEASE);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	len = strlen(out.detail);
	cr_assert_lt(len, sizeof(out.detail));
	cr_assert_eq(len % 4, 0, "an escape was cut: %zu bytes", len);
	cr_assert_eq(len, (sizeof(out.detail) - 1) / 4 * 4);
	for (size_t i = 0; i < len; i += 4)
		cr_assert(!memcmp(out.detail + i, "\\x1b", 4), "escape %zu is wrong", i / 4);
	/* The same rules straight through the helper, into a tiny buffer. */
	{
		char small[6];

		mailbox_escape(small, sizeof(small), "ab\"cd", 5);
		cr_assert_str_eq(small, "ab\\\"c");
		mailbox_escape(small, sizeof(small), "\x01\x02", 2);
		cr_assert_str_eq(small, "\\x01");
		mailbox_escape(small, 1, "abc", 3);
		cr_assert_str_eq(small, "");
	}
	munmap(mb, 4096);
}

Test(mailbox, unknown_reason_is_mapped_safely)
{
	static const uint32_t bad[] = { MOAT_VIOL_COUNT, MOAT_VIOL_COUNT + 1, 1000, 0x80000000u,
					0xffffffffu };
	struct moat_mailbox *mb = shared_mailbox();
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint32_t last = 0;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mailbox_report rep = { .reason = bad[i], .rule = -1, .detail = "?" };
		struct moat_mailbox out;

		mailbox_post(mb, efd, &rep);
		cr_assert_eq(mailbox_take(mb, &last, &out), 1);
		cr_assert_eq(out.reason, MOAT_VIOL_BAD_MESSAGE, "reason %u came out as %u", bad[i],
			     out.reason);
	}
	/* Known reasons pass through unchanged. */
	for (uint32_t r = 0; r < MOAT_VIOL_COUNT; r++) {
		struct mailbox_report rep = { .reason = r, .rule = -1 };
		struct moat_mailbox out;

		mailbox_post(mb, efd, &rep);
		cr_assert_eq(mailbox_take(mb, &last, &out), 1);
		cr_assert_eq(out.reason, r);
	}
	close(efd);
	munmap(mb, 4096);
}

/* The sequence may wrap around: any change is a new report. */
Test(mailbox, sequence_wraps)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct mailbox_report rep = { .reason = MOAT_VIOL_SPOOF, .rule = -1 };
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct moat_mailbox out;
	uint32_t last = 0xffffffffu;

	mb->seq = 0xffffffffu;
	cr_assert_eq(mailbox_take(mb, &last, &out), 0);
	mailbox_post(mb, efd, &rep);
	cr_assert_eq(mb->seq, 0);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(out.reason, MOAT_VIOL_SPOOF);
	close(efd);
	munmap(mb, 4096);
}

/* Posting must work with a closed or bogus eventfd (the report is still there). */
Test(mailbox, post_without_eventfd)
{
	struct moat_mailbox *mb = shared_mailbox();
	struct mailbox_report rep = { .reason = MOAT_VIOL_LIMIT, .rule = 3, .detail = "limit" };
	struct moat_mailbox out;
	uint32_t last = 0;

	mailbox_post(mb, -1, &rep);
	cr_assert_eq(mailbox_take(mb, &last, &out), 1);
	cr_assert_eq(out.rule, 3);
	cr_assert_str_eq(out.detail, "limit");
	munmap(mb, 4096);
}
