/* SPDX-License-Identifier: MIT */
/*
 * flowmsg.h - the one check of a flow record (shm/flow.h) before either role
 * uses it: the netstack for p2s, the proxy for s2p
 */
#ifndef MOAT_SHM_FLOWMSG_H
#define MOAT_SHM_FLOWMSG_H

#include <stdint.h>

#include "shm/flow.h"

/* Which ring a record came from: each carries its own set of types. */
enum flowmsg_dir {
	FLOWMSG_S2P, /* netstack -> proxy */
	FLOWMSG_P2S, /* proxy -> netstack */
};

/* A record's fixed header, copied out and checked by flowmsg_check(). */
union flowmsg {
	struct flow_connect connect; /* CONNECT, ACCEPTED */
	struct flow_connect_result result;
	struct flow_data data;
	struct flow_credit credit;
	struct flow_shut shut;
	struct flow_close close;
	struct flow_dgram dgram;
	struct flow_echo echo; /* ECHO, ECHO_REPLY */
	struct flow_unreach unreach;
};

int flowmsg_check(enum flowmsg_dir dir, uint32_t type, const void *rec, uint32_t len,
		  union flowmsg *out, uint32_t *hdr_len, const char **why);
const char *flowmsg_name(uint32_t type);

#endif /* MOAT_SHM_FLOWMSG_H */
