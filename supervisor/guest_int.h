/* SPDX-License-Identifier: MIT */
/*
 * guest_int.h - private to the guest port: supervisor/guest*.c only
 *
 * The state every frontend shares (rings, counters, pcap, the paused flags)
 * and the table of operations each frontend file provides. guest.c parses
 * the spec, dispatches to a frontend and owns the eventfd watch; the
 * frontend owns its descriptors and moves the frames.
 */
#ifndef MOAT_GUEST_INT_H
#define MOAT_GUEST_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shm/ring.h"
#include "supervisor/guest.h"
#include "supervisor/pcap.h"

/* Frames moved per batch in either direction: one g2s flush, one s2g release. */
#define GUEST_BATCH   64
/* Frames written toward the guest before other events get a turn. */
#define GUEST_OUT_MAX (4 * GUEST_BATCH)

struct guest;

/**
 * struct guest_ops - one frontend
 * @name:	for logs ("tap", "stream", ...)
 * @open:	set up the guest side before the children are forked (may need
 *		privileges); fills @err with one line saying what to fix
 * @start:	add the frontend's watches to the loop (rings are attached)
 * @input:	guest -> g2s; called again when g2s has space after a pause
 * @output:	s2g -> guest; called on our eventfd and when the guest side
 *		can take more
 *		(@input and @output are NULL where the supervisor moves no
 *		frames: shm, vhost-user)
 * @close:	close descriptors, unlink socket paths
 */
struct guest_ops {
	const char *name;
	int (*open)(struct guest *g, char *err, size_t errlen);
	int (*start)(struct guest *g);
	void (*input)(struct guest *g);
	void (*output)(struct guest *g);
	void (*close)(struct guest *g);
};

/**
 * struct guest - the guest port
 * @spec:	what --guest said
 * @ops:	the frontend
 * @loop:	the supervisor's loop
 * @w_efd:	our eventfd: s2g has data, g2s has space
 * @g2s, @s2g:	our views (producer of g2s, consumer of s2g)
 * @cnt:	the guest counter block in the region
 * @region:	the supervisor's full view of the region (shm frontend)
 * @guest_efd, @netstack_efd: the two frame-ring eventfds
 * @max_frame:	MTU + 14
 * @offloads:	MOAT_OFFLOAD_* the frontend negotiated (tap: TUNSETOFFLOAD):
 *		g2s and s2g may then carry MOAT_REC_FRAME_VNET records
 * @offloads_refused: the tap refused them (counted once the counters exist)
 * @pcap:	--pcap, or NULL (the data path tests this one pointer)
 * @waiting_g2s: input paused because g2s is full
 * @waiting_out: output paused because the guest side is full
 * @g2s_broken:	g2s failed validation (an impossible tail): input is off for good
 * @s2g_broken:	s2g failed validation: the netstack is not trusted any more
 * @failed:	the guest side failed in a way that is a runtime error (a
 *		stream-fd peer out of step): guest_failed()
 * @fe:		the frontend's private state (guest_tap.c etc.)
 * @on_violation: guest_on_violation(), or NULL
 */
struct guest {
	struct guest_spec spec;
	const struct guest_ops *ops;
	struct loop *loop;
	struct loop_watch w_efd;
	struct ring g2s, s2g;
	struct moat_guest_counters *cnt;
	struct region *region;
	int guest_efd, netstack_efd;
	uint32_t max_frame;
	uint32_t offloads;
	bool offloads_refused;
	struct pcap *pcap;
	bool waiting_g2s;
	bool waiting_out;
	bool g2s_broken;
	bool s2g_broken;
	bool failed;
	void *fe;
	guest_violation_fn on_violation;
};

extern const struct guest_ops guest_tap_ops;
extern const struct guest_ops guest_stream_ops;
extern const struct guest_ops guest_dgram_ops;
extern const struct guest_ops guest_shm_ops;
extern const struct guest_ops guest_vhost_ops;

/* Relaxed add to a counter we are the only writer of. */
static inline void guest_count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* The largest g2s/s2g record payload: a frame, or a vnet header and a segment. */
static inline uint32_t guest_max_record(const struct guest *g)
{
	return (uint32_t)sizeof(struct moat_vnet_hdr) +
	       (g->offloads ? MOAT_FRAME_MAX_GSO : g->max_frame);
}

/* Must the frontend stop reading the guest (g2s full, or corrupt for good)? */
static inline bool guest_input_off(const struct guest *g)
{
	return g->waiting_g2s || g->g2s_broken;
}

int guest_s2g_next(struct guest *g, const uint8_t **frame, bool *vnet);
void guest_s2g_discard(struct guest *g);
void guest_yield(struct guest *g);
void guest_on_fd(struct loop_watch *w, uint32_t events);
void guest_watch_set(struct guest *g, struct loop_watch *w, uint32_t *events, bool *parked,
		     uint32_t ev);
void guest_gone(struct guest *g, const char *what, const char *why);
void guest_fail(struct guest *g, const char *what, const char *why);
void guest_g2s_done(struct guest *g, uint64_t frames, uint64_t bytes);
void guest_s2g_done(struct guest *g, uint64_t frames, uint64_t bytes);
bool guest_g2s_pause(struct guest *g, uint32_t len);
bool guest_g2s_blocked(struct guest *g, int rc, uint32_t len);
int guest_check_fd(int fd, int want_type, const char *spec, char *err, size_t errlen);
int guest_unix_listen(const char *path, int type, char *err, size_t errlen);
void guest_unix_unlink(const char *path);
void guest_unix_close(struct guest *g, int cfd, int lfd);
void *guest_fe_alloc(struct guest *g, size_t size, char *err, size_t errlen);
int guest_unix_watch_listener(struct guest *g, struct loop_watch *wl, int lfd, loop_cb cb,
			      const char *what);
int guest_unix_accept(int lfd, const char *what);

#endif /* MOAT_GUEST_INT_H */
