/* SPDX-License-Identifier: MIT */
/*
 * mailbox.c - violation mailboxes
 *
 * Theory of Operation
 * -------------------
 * A confined process that detects a fatal violation fills its own mailbox
 * (a part of the region only it and the supervisor map), bumps the sequence
 * number with a release store and writes the supervisor's eventfd. The
 * supervisor copies the mailbox out, NUL-terminates the detail itself and
 * treats every field as untrusted words for the event log: the decision to
 * kill the VM was already made by the fact that a mailbox changed.
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "shm/mailbox.h"

/**
 * mailbox_post() - report a violation and wake the supervisor
 * @mb:			this process's mailbox
 * @supervisor_efd:	the supervisor's eventfd
 * @rep:		what happened
 *
 * Context: netstack or proxy; async-signal-safe, allocation-free.
 */
void mailbox_post(struct moat_mailbox *mb, int supervisor_efd, const struct mailbox_report *rep)
{
	uint64_t one = 1;
	uint32_t seq = atomic_load_explicit((_Atomic uint32_t *)&mb->seq, memory_order_relaxed);

	mb->reason = rep->reason;
	mb->rule = rep->rule;
	mb->flow = rep->flow;
	mb->proto = rep->proto;
	mb->dst_family = rep->dst_family;
	mb->dst_port = rep->dst_port;
	memcpy(mb->dst_addr, rep->dst_addr, sizeof(mb->dst_addr));
	memset(mb->detail, 0, sizeof(mb->detail));
	if (rep->detail)
		strncpy(mb->detail, rep->detail, sizeof(mb->detail) - 1);
	atomic_store_explicit((_Atomic uint32_t *)&mb->seq, seq + 1, memory_order_release);
	if (write(supervisor_efd, &one, sizeof(one)) < 0) {
		/* Nothing to do: the supervisor also sees the sequence on its next wake. */
	}
}

/**
 * mailbox_take() - copy out a new report, if any
 * @mb:		a child's mailbox
 * @last_seq:	the sequence seen last; updated
 * @out:	copy of the mailbox, detail NUL-terminated
 *
 * Context: supervisor.
 * Return: 1 if a new report was copied, 0 if none.
 */
int mailbox_take(struct moat_mailbox *mb, uint32_t *last_seq, struct moat_mailbox *out)
{
	uint32_t seq = atomic_load_explicit((_Atomic uint32_t *)&mb->seq, memory_order_acquire);

	if (seq == *last_seq)
		return 0;
	*last_seq = seq;
	memcpy(out, mb, sizeof(*out));
	out->detail[sizeof(out->detail) - 1] = '\0';
	if (out->reason >= MOAT_VIOL_COUNT)
		out->reason = MOAT_VIOL_BAD_MESSAGE;
	return 1;
}
