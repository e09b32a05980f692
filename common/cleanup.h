/* SPDX-License-Identifier: MIT */
/*
 * cleanup.h - scope-bound release of descriptors and heap memory
 *
 * A variable declared CLEANUP_CLOSE (an int descriptor, -1 when none) or
 * CLEANUP_FREE (a pointer, NULL when none) is closed or freed whenever it
 * goes out of scope, so a function with several early error returns needs
 * no close()/free() before each of them. What the function hands to its
 * caller it takes out first: cleanup_take_fd() for a descriptor, or the
 * pointer is set to NULL. gcc and clang implement the attribute; it is used
 * only where it removes error-path code (docs/hacking.md).
 */
#ifndef MOAT_CLEANUP_H
#define MOAT_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>

/* For CLEANUP_CLOSE: close *@fd unless it is negative. */
static inline void cleanup_close(const int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

/* For CLEANUP_FREE: free the pointer @p points to (NULL is fine). */
static inline void cleanup_free(void *p)
{
	free(*(void **)p);
}

/* Hand the descriptor in *@fd to the caller: the cleanup leaves it open. */
static inline int cleanup_take_fd(int *fd)
{
	int taken = *fd;

	*fd = -1;
	return taken;
}

#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))
#define CLEANUP_FREE  __attribute__((cleanup(cleanup_free)))

#endif /* MOAT_CLEANUP_H */
