/* SPDX-License-Identifier: MIT */
/*
 * list.h - the one intrusive doubly linked list of moat
 *
 * A list head and a node are the same struct; an empty list points at
 * itself. A node is "unlinked" when it points at itself (after list_init()
 * or list_del()) or is all zero (a freshly calloc'd owner), so list_del()
 * and list_linked() are safe on either. list_add_tail() takes a node that
 * is not on a list (it does not look: a freshly malloc'd node holds
 * garbage); a caller whose node may already be queued asks list_linked()
 * first.
 * Owners embed a struct list_head and get back to themselves with
 * list_entry().
 */
#ifndef MOAT_COMMON_LIST_H
#define MOAT_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_head {
	struct list_head *next, *prev;
};

static inline void list_init(struct list_head *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const struct list_head *l)
{
	return l->next == l;
}

static inline bool list_linked(const struct list_head *n)
{
	return n->next != NULL && n->next != n;
}

static inline void list_add_tail(struct list_head *head, struct list_head *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_del(struct list_head *n)
{
	if (!list_linked(n))
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
