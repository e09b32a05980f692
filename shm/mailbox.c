/* SPDX-License-Identifier: MIT */
/*
 * mailbox.c - violation mailboxes
 *
 * Theory of Operation
 * -------------------
 * A confined process that detects a fatal violation fills its own mailbox
 * (a part of the region only it and the supervisor map), bumps the sequence
 * number with a release store and writes the supervisor's eventfd. The
 * supervisor copies the mailbox out and treats every field as untrusted
 * words for the log and the event stream: the detail is read once, from
 * the copy, up to its first NUL or the end of the field, and rewritten
 * printable - control bytes, bytes above 0x7e, the double quote and the
 * backslash become \xNN, \" and \\ escapes - so a compromised child
 * cannot forge log lines, terminal sequences or the quoting around it. The
 * decision to kill the VM was already made by the fact that a mailbox
 * changed.
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
 * mailbox_escape() - make untrusted detail bytes safe to log
 * @dst:	output, always NUL-terminated
 * @dstlen:	size of @dst (at least 1)
 * @src:	the raw bytes (need not be NUL-terminated)
 * @srclen:	at most this many are read; a NUL ends them earlier
 *
 * Printable ASCII passes through, except `"` and `\`, which are escaped
 * with a backslash; every other byte becomes \xNN. An escape that would
 * not fit is left out whole (the text is cut, never an escape in half).
 */
void mailbox_escape(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < srclen && src[i]; i++) {
		unsigned char c = (unsigned char)src[i];
		char e[4];
		size_t n;

		if (c == '"' || c == '\\') {
			e[0] = '\\', e[1] = (char)c, n = 2;
		} else if (c < 0x20 || c > 0x7e) {
			e[0] = '\\', e[1] = 'x', e[2] = hex[c >> 4], e[3] = hex[c & 15], n = 4;
		} else {
			e[0] = (char)c, n = 1;
		}
		if (o + n >= dstlen)
			break;
		memcpy(dst + o, e, n);
		o += n;
	}
	dst[o] = '\0';
}

/**
 * mailbox_take() - copy out a new report, if any
 * @mb:		a child's mailbox
 * @last_seq:	the sequence seen last; updated
 * @out:	copy of the mailbox; its detail escaped (mailbox_escape()) and
 *		NUL-terminated, its reason one of enum moat_violation
 *
 * Context: supervisor.
 * Return: 1 if a new report was copied, 0 if none.
 */
int mailbox_take(struct moat_mailbox *mb, uint32_t *last_seq, struct moat_mailbox *out)
{
	uint32_t seq = atomic_load_explicit((_Atomic uint32_t *)&mb->seq, memory_order_acquire);
	char raw[sizeof(out->detail)];

	if (seq == *last_seq)
		return 0;
	*last_seq = seq;
	memcpy(out, mb, sizeof(*out));
	/* Escaped from our copy: the child may be rewriting the shared one. */
	memcpy(raw, out->detail, sizeof(raw));
	mailbox_escape(out->detail, sizeof(out->detail), raw, sizeof(raw));
	if (out->reason >= MOAT_VIOL_COUNT)
		out->reason = MOAT_VIOL_BAD_MESSAGE;
	return 1;
}
