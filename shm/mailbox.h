/* SPDX-License-Identifier: MIT */
/*
 * mailbox.h - reporting a fatal violation to the supervisor
 */
#ifndef MOAT_MAILBOX_H
#define MOAT_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "shm/moat_shm.h"

/**
 * struct mailbox_report - what a confined process reports
 * @reason:	enum moat_violation
 * @rule:	policy rule index or -1
 * @flow:	flow id or 0
 * @proto:	enum moat_proto_idx or 0xff
 * @dst_family: 4, 6 or 0; @dst_addr, @dst_port: destination if any
 * @detail:	words, may be NULL
 */
struct mailbox_report {
	uint32_t reason;
	int32_t rule;
	uint32_t flow;
	uint8_t proto;
	uint8_t dst_family;
	uint16_t dst_port;
	uint8_t dst_addr[16];
	const char *detail;
};

void mailbox_post(struct moat_mailbox *mb, int supervisor_efd, const struct mailbox_report *rep);
int mailbox_take(struct moat_mailbox *mb, uint32_t *last_seq, struct moat_mailbox *out);
void mailbox_escape(char *dst, size_t dstlen, const char *src, size_t srclen);

#endif /* MOAT_MAILBOX_H */
