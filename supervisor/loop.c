/* SPDX-License-Identifier: MIT */
/*
 * loop.c - a minimal epoll dispatcher for the supervisor
 *
 * Theory of Operation
 * -------------------
 * The supervisor's main thread waits here for: the guest port's fds (tap,
 * socket) and its eventfd, the supervisor eventfd (mailboxes), a signalfd
 * and the children's pidfds. Each watch carries its callback; the loop has
 * no timers (callers pass a timeout) and allocates nothing.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "supervisor/loop.h"

/**
 * loop_init() - create the epoll instance
 * @l:	loop
 *
 * Return: 0 or -errno.
 */
int loop_init(struct loop *l)
{
	l->stop = 0;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

/**
 * loop_add() - watch @w->fd for @events
 * @l:		loop
 * @w:		watch (caller-owned)
 * @events:	EPOLLIN etc.
 *
 * Return: 0 or -errno.
 */
int loop_add(struct loop *l, struct loop_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0 ? -errno : 0;
}

/**
 * loop_mod() - change the events of a watch
 * @l:		loop
 * @w:		watch
 * @events:	new events
 *
 * Return: 0 or -errno.
 */
int loop_mod(struct loop *l, struct loop_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

/**
 * loop_del() - stop watching
 * @l:	loop
 * @w:	watch
 */
void loop_del(struct loop *l, struct loop_watch *w)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

/**
 * loop_run_once() - wait up to @timeout_ms and dispatch what is ready
 * @l:		loop
 * @timeout_ms:	-1 forever
 *
 * Return: number of events dispatched, or -errno (EINTR is 0).
 */
int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event ev[32];
	int n = epoll_wait(l->epfd, ev, 32, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n && !l->stop; i++) {
		struct loop_watch *w = ev[i].data.ptr;

		w->cb(w, ev[i].events);
	}
	return n;
}
