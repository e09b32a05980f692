/* SPDX-License-Identifier: MIT */
/*
 * flowmsg.c - the one check of a flow record before it is used
 *
 * Theory of Operation
 * -------------------
 * Both roles read records the other wrote (DESIGN §5): the proxy s2p records
 * from the netstack, which parses the guest's packets and is the less
 * trusted; the netstack p2s records from the proxy. Whatever reads a record
 * calls flowmsg_check() first, and only then looks at it. The check is
 * everything that can be said of a record without a flow table:
 *  - the type travels on that ring (ECHO and CONNECT only s2p; ECHO_REPLY and
 *    ACCEPTED only p2s);
 *  - the size: exact for fixed-size records, header plus 1..FLOW_DATA_MAX
 *    bytes for DATA, plus 0..FLOW_DATA_MAX for DGRAM and ECHO;
 *  - ids in the right half of the space: the netstack opens egress ids
 *    (CONNECT, no FLOW_ID_INGRESS bit), the proxy ingress ids (ACCEPTED, the
 *    bit set), and a CONNECT_RESULT answers the other side's kind; no id is 0
 *    or FLOW_ID_INGRESS alone;
 *  - fields with few values: families 4 or 6 and the same on both ends, ports
 *    not 0 where a port is needed, a result below MOAT_CONN_RESULT_COUNT, a
 *    reset of 0 or 1.
 * The header is copied out (@out) before it is checked, so that a writer that
 * changes the record in shared memory afterwards changes nothing the reader
 * acts on; the reader uses @out, and the data after @hdr_len bytes. What
 * needs a flow table (an id in use, credit beyond what was sent, an address
 * that is not the guest's) stays with the reader.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "shm/flowmsg.h"
#include "shm/moat_shm.h"

enum { DIR_S2P = 1u << FLOWMSG_S2P, DIR_P2S = 1u << FLOWMSG_P2S, DIR_BOTH = DIR_S2P | DIR_P2S };

/* Per type: the ring(s) it travels, its header, how much data may follow. */
static const struct {
	const char *name;
	uint8_t dirs;
	uint8_t hdr;
	uint32_t data_min, data_max;
} kinds[FLOW_MSG_END - FLOW_CONNECT] = {
	/* NOLINTNEXTLINE(misc-redundant-expression): the first index, written like the others */
	[FLOW_CONNECT - FLOW_CONNECT] = { "CONNECT", DIR_S2P, sizeof(struct flow_connect), 0, 0 },
	[FLOW_CONNECT_RESULT - FLOW_CONNECT] = { "CONNECT_RESULT", DIR_BOTH,
						 sizeof(struct flow_connect_result), 0, 0 },
	[FLOW_DATA -
		FLOW_CONNECT] = { "DATA", DIR_BOTH, sizeof(struct flow_data), 1, FLOW_DATA_MAX },
	[FLOW_CREDIT - FLOW_CONNECT] = { "CREDIT", DIR_BOTH, sizeof(struct flow_credit), 0, 0 },
	[FLOW_SHUT_WR - FLOW_CONNECT] = { "SHUT_WR", DIR_BOTH, sizeof(struct flow_shut), 0, 0 },
	[FLOW_CLOSE - FLOW_CONNECT] = { "CLOSE", DIR_BOTH, sizeof(struct flow_close), 0, 0 },
	[FLOW_DGRAM -
		FLOW_CONNECT] = { "DGRAM", DIR_BOTH, sizeof(struct flow_dgram), 0, FLOW_DATA_MAX },
	[FLOW_ECHO -
		FLOW_CONNECT] = { "ECHO", DIR_S2P, sizeof(struct flow_echo), 0, FLOW_DATA_MAX },
	[FLOW_ECHO_REPLY - FLOW_CONNECT] = { "ECHO_REPLY", DIR_P2S, sizeof(struct flow_echo), 0,
					     FLOW_DATA_MAX },
	[FLOW_ACCEPTED - FLOW_CONNECT] = { "ACCEPTED", DIR_P2S, sizeof(struct flow_connect), 0, 0 },
	[FLOW_UNREACH - FLOW_CONNECT] = { "UNREACH", DIR_P2S, sizeof(struct flow_unreach), 0, 0 },
};

/**
 * flowmsg_name() - a record type's name, for logs and violation details
 * @type:	record type
 *
 * Return: the name, or "unknown".
 */
const char *flowmsg_name(uint32_t type)
{
	return type >= FLOW_CONNECT && type < FLOW_MSG_END ? kinds[type - FLOW_CONNECT].name :
							     "unknown";
}

static bool family_ok(uint8_t f)
{
	return f == 4 || f == 6;
}

/* Two endpoints of one flow: known families, the same on both, ports if @ports. */
static bool pair_ok(const struct flow_endpoint *a, const struct flow_endpoint *b, bool ports)
{
	return family_ok(a->family) && a->family == b->family && (!ports || (a->port && b->port));
}

/* An id of a flow that exists: not 0, not FLOW_ID_INGRESS alone. */
static bool id_ok(uint32_t id)
{
	return id && id != FLOW_ID_INGRESS;
}

/* The fields of the copied header @m, for a record of @type on @dir. */
static const char *fields_bad(enum flowmsg_dir dir, uint32_t type, const union flowmsg *m)
{
	/* Ids opened on this ring's sending side carry its half of the space. */
	bool ingress_here = dir == FLOWMSG_P2S;

	switch (type) {
	case FLOW_CONNECT:
	case FLOW_ACCEPTED:
		if (!id_ok(m->connect.id) || !!(m->connect.id & FLOW_ID_INGRESS) != ingress_here)
			return "id";
		return pair_ok(&m->connect.src, &m->connect.dst, true) ? NULL : "addresses";
	case FLOW_CONNECT_RESULT:
		/* An answer to the other side's opening: the other half. */
		if (!id_ok(m->result.id) || !!(m->result.id & FLOW_ID_INGRESS) == ingress_here)
			return "id";
		return m->result.result < MOAT_CONN_RESULT_COUNT ? NULL : "result";
	case FLOW_DATA:
		return id_ok(m->data.id) ? NULL : "id";
	case FLOW_CREDIT:
		return id_ok(m->credit.id) ? NULL : "id";
	case FLOW_SHUT_WR:
		return id_ok(m->shut.id) ? NULL : "id";
	case FLOW_CLOSE:
		if (!id_ok(m->close.id))
			return "id";
		return m->close.reset <= 1 ? NULL : "reset";
	case FLOW_DGRAM:
		return pair_ok(&m->dgram.src, &m->dgram.dst, true) ? NULL : "addresses";
	case FLOW_UNREACH:
		if (!pair_ok(&m->unreach.src, &m->unreach.dst, true))
			return "addresses";
		return m->unreach.kind < FLOW_UNREACH_KIND_COUNT ? NULL : "kind";
	default: /* FLOW_ECHO, FLOW_ECHO_REPLY */
		return pair_ok(&m->echo.peer, &m->echo.guest, false) ? NULL : "addresses";
	}
}

/**
 * flowmsg_check() - copy out and check one flow record before it is used
 * @dir:	the ring it came from
 * @type:	its type, as the ring gave it
 * @rec:	the record (may be shared memory: read once, into @out)
 * @len:	its length
 * @out:	the header, copied; valid on success
 * @hdr_len:	the header's size; the data are @rec + @hdr_len, @len - @hdr_len bytes
 * @why:	on failure, what was wrong: "type", "ring", "size", "id",
 *		"addresses", "result", "reset" or "kind" (with flowmsg_name(), a
 *		violation's detail)
 *
 * Return: 0, or -EBADMSG.
 */
int flowmsg_check(enum flowmsg_dir dir, uint32_t type, const void *rec, uint32_t len,
		  union flowmsg *out, uint32_t *hdr_len, const char **why)
{
	unsigned k;

	if (type < FLOW_CONNECT || type >= FLOW_MSG_END) {
		*why = "type";
		return -EBADMSG;
	}
	k = type - FLOW_CONNECT;
	if (!(kinds[k].dirs & (1u << dir))) {
		*why = "ring";
		return -EBADMSG;
	}
	if (len < kinds[k].hdr || len - kinds[k].hdr < kinds[k].data_min ||
	    len - kinds[k].hdr > kinds[k].data_max) {
		*why = "size";
		return -EBADMSG;
	}
	memcpy(out, rec, kinds[k].hdr);
	*hdr_len = kinds[k].hdr;
	*why = fields_bad(dir, type, out);
	return *why ? -EBADMSG : 0;
}
