/* SPDX-License-Identifier: MIT */
/*
 * pins.c - the DNS pin table (address -> names it was resolved from)
 *
 * Theory of Operation
 * -------------------
 * DESIGN §8: a `domain` or `domain_suffix` rule matches a connection only
 * if its destination address was resolved, through the proxy's own
 * forwarder, from a matching name. The forwarder (dnsfwd.c) pins every
 * A/AAAA record of an allowed answer's CNAME chain here with each name of
 * the chain; the TCP, UDP and ICMP code look the destination up and pass
 * the names to policy_decide().
 *
 * The table is bounded (a guest cannot grow it: it is a fixed array of
 * entries allocated at start-up) and entries expire with the record's TTL,
 * clamped to [PINS_TTL_MIN_S, PINS_TTL_MAX_S]. When full, the entry pinned
 * or refreshed longest ago is evicted. One entry is one (address, name)
 * pair; a hash over the address chains the entries of one address.
 * Single-threaded: only the proxy's loop touches it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/pins.h"

static uint32_t hash_addr(uint8_t family, const uint8_t *addr)
{
	uint32_t h = 2166136261u ^ family;
	int n = family == 4 ? 4 : 16;

	for (int i = 0; i < n; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h;
}

static int addr_len(uint8_t family)
{
	return family == 4 ? 4 : 16;
}

static void age_unlink(struct pins *t, int32_t i)
{
	struct pin *p = &t->e[i];

	if (p->prev >= 0)
		t->e[p->prev].next = p->next;
	else
		t->oldest = p->next;
	if (p->next >= 0)
		t->e[p->next].prev = p->prev;
	else
		t->newest = p->prev;
	p->prev = p->next = -1;
}

static void age_append(struct pins *t, int32_t i)
{
	struct pin *p = &t->e[i];

	p->prev = t->newest;
	p->next = -1;
	if (t->newest >= 0)
		t->e[t->newest].next = i;
	else
		t->oldest = i;
	t->newest = i;
}

static void remove_entry(struct pins *t, int32_t i)
{
	struct pin *p = &t->e[i];
	int32_t *link = &t->bucket[hash_addr(p->family, p->addr) & (t->nbucket - 1)];

	while (*link >= 0 && *link != i)
		link = &t->e[*link].hnext;
	if (*link == i)
		*link = p->hnext;
	age_unlink(t, i);
	p->family = 0;
	p->next = t->free;
	t->free = i;
	t->count--;
}

/**
 * pins_init() - allocate an empty table
 * @t:		table
 * @max:	entries (0: PINS_DEFAULT_MAX)
 *
 * Return: 0 or -ENOMEM.
 */
int pins_init(struct pins *t, uint32_t max)
{
	memset(t, 0, sizeof(*t));
	if (!max)
		max = PINS_DEFAULT_MAX;
	t->max = max;
	t->nbucket = 1;
	while (t->nbucket < max)
		t->nbucket <<= 1;
	t->e = calloc(max, sizeof(*t->e));
	t->bucket = malloc(t->nbucket * sizeof(*t->bucket));
	if (!t->e || !t->bucket) {
		pins_fini(t);
		return -ENOMEM;
	}
	pins_clear(t);
	return 0;
}

/**
 * pins_clear() - forget every pin
 * @t:	table
 */
void pins_clear(struct pins *t)
{
	for (uint32_t i = 0; i < t->nbucket; i++)
		t->bucket[i] = -1;
	/*
	 * Every entry is free: the ones never used since are taken in order
	 * (@fresh) before the free list, so an idle table's pages are never
	 * touched (4096 entries are 1.2 MiB).
	 */
	t->free = -1;
	t->fresh = 0;
	t->oldest = t->newest = -1;
	t->count = 0;
}

/**
 * pins_fini() - free the table
 * @t:	table
 */
void pins_fini(struct pins *t)
{
	free(t->e);
	free(t->bucket);
	memset(t, 0, sizeof(*t));
}

/**
 * pins_add() - record that @addr was resolved from @name
 * @t:		table
 * @family:	4 or 6
 * @addr:	address (4 or 16 bytes)
 * @name:	name in the forwarder's text form
 * @ttl_s:	the record's TTL
 * @now_ms:	current time
 *
 * An existing pin of the same pair is refreshed (its expiry only grows).
 *
 * Return: 0, -EINVAL for a bad family, -ENAMETOOLONG for a name that is
 * not pinned.
 */
int pins_add(struct pins *t, uint8_t family, const uint8_t *addr, const char *name, uint32_t ttl_s,
	     uint64_t now_ms)
{
	size_t nlen = strlen(name);
	uint32_t b;
	uint64_t exp;
	int32_t i;

	if (family != 4 && family != 6)
		return -EINVAL;
	if (nlen >= PINS_NAME_MAX)
		return -ENAMETOOLONG;
	if (ttl_s < PINS_TTL_MIN_S)
		ttl_s = PINS_TTL_MIN_S;
	if (ttl_s > PINS_TTL_MAX_S)
		ttl_s = PINS_TTL_MAX_S;
	exp = now_ms + (uint64_t)ttl_s * 1000;
	b = hash_addr(family, addr) & (t->nbucket - 1);
	for (i = t->bucket[b]; i >= 0; i = t->e[i].hnext) {
		struct pin *p = &t->e[i];

		if (p->family == family && !memcmp(p->addr, addr, (size_t)addr_len(family)) &&
		    !strcmp(p->name, name)) {
			if (exp > p->expires_ms)
				p->expires_ms = exp;
			age_unlink(t, i);
			age_append(t, i);
			return 0;
		}
	}
	if (t->free < 0 && t->fresh < t->max) {
		i = (int32_t)t->fresh++;
	} else {
		if (t->free < 0)
			remove_entry(t, t->oldest);
		i = t->free;
		t->free = t->e[i].next;
	}
	{
		struct pin *p = &t->e[i];

		memset(p->addr, 0, sizeof(p->addr));
		p->family = family;
		memcpy(p->addr, addr, (size_t)addr_len(family));
		memcpy(p->name, name, nlen + 1);
		p->expires_ms = exp;
		p->hnext = t->bucket[b];
		t->bucket[b] = i;
		age_append(t, i);
	}
	t->count++;
	return 0;
}

/**
 * pins_lookup() - the names an address was resolved from
 * @t:		table
 * @family:	4 or 6
 * @addr:	address
 * @now_ms:	current time (expired pins are dropped on the way)
 * @names:	filled with pointers into the table, valid until the next
 *		change of the table
 * @max:	room in @names
 *
 * Return: the number of names (0 if none).
 */
int pins_lookup(struct pins *t, uint8_t family, const uint8_t *addr, uint64_t now_ms,
		const char **names, int max)
{
	int n = 0;
	int32_t i, nx;

	if ((family != 4 && family != 6) || !t->e)
		return 0;
	for (i = t->bucket[hash_addr(family, addr) & (t->nbucket - 1)]; i >= 0; i = nx) {
		struct pin *p = &t->e[i];

		nx = p->hnext;
		if (p->expires_ms <= now_ms) {
			remove_entry(t, i);
			continue;
		}
		if (p->family == family && !memcmp(p->addr, addr, (size_t)addr_len(family)) &&
		    n < max)
			names[n++] = p->name;
	}
	return n;
}

/**
 * pins_expire() - drop every expired pin
 * @t:		table
 * @now_ms:	current time
 */
void pins_expire(struct pins *t, uint64_t now_ms)
{
	int32_t i, nx;

	for (i = t->oldest; i >= 0; i = nx) {
		nx = t->e[i].next;
		if (t->e[i].expires_ms <= now_ms)
			remove_entry(t, i);
	}
}
