/* SPDX-License-Identifier: MIT */
/*
 * loop.h - the supervisor's epoll loop (guest port, signals, children)
 */
#ifndef MOAT_LOOP_H
#define MOAT_LOOP_H

#include <stdint.h>

struct loop_watch;
typedef void (*loop_cb)(struct loop_watch *w, uint32_t events);

/**
 * struct loop_watch - one watched fd; owned by the caller, must outlive the watch
 * @fd:		descriptor
 * @cb:		called with the epoll events
 * @arg:	caller's data
 */
struct loop_watch {
	int fd;
	loop_cb cb;
	void *arg;
};

struct loop {
	int epfd;
	int stop;
};

int loop_init(struct loop *l);
int loop_add(struct loop *l, struct loop_watch *w, uint32_t events);
int loop_mod(struct loop *l, struct loop_watch *w, uint32_t events);
void loop_del(struct loop *l, struct loop_watch *w);
int loop_run_once(struct loop *l, int timeout_ms);

#endif /* MOAT_LOOP_H */
