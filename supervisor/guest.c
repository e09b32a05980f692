/* SPDX-License-Identifier: MIT */
/*
 * guest.c - the guest port: spec parsing, frontend dispatch, ring plumbing
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor. The guest port moves Ethernet frames between the
 * guest and the two frame rings of the shared region: it is the producer of
 * g2s (guest -> netstack) and the consumer of s2g (netstack -> guest). It
 * does no parsing beyond the frame length (DESIGN §4).
 *
 * Each frontend lives in its own file and fills a struct guest_ops:
 *   guest_tap.c	tap:IFNAME[@NETNS], tap-fd:N	one frame per read/write
 *   guest_stream.c	stream:PATH, stream-fd:N	u32 big-endian length + frame
 *   guest_dgram.c	dgram:PATH, dgram-fd:N		one frame per datagram
 *   guest_shm.c	shm:PATH			the VMM maps the rings itself
 * This file parses --guest, opens the frontend before the children are
 * forked (so every mistake is reported with exit status 2 and one line
 * saying what to fix), attaches the rings, opens --pcap, and watches our
 * eventfd, which the netstack writes when s2g gets data or g2s gets space.
 *
 * Batching rules every frontend follows: frames move in batches of up to
 * GUEST_BATCH; a batch into g2s is published with one ring_flush() (at most
 * one wake of the netstack), a batch out of s2g is handed back with one
 * ring_release(). Every failed push into g2s goes to guest_g2s_blocked():
 * when g2s is full the frontend stops reading the guest (the kernel's
 * queue or the socket buffer holds the rest) and resumes on our eventfd;
 * when the guest side is full it stops draining s2g and resumes on
 * EPOLLOUT. Nothing is dropped for lack of space, with one exception: a
 * datagram already received when g2s turns out full (only a netstack that
 * moves its tail back can cause that) is counted as MOAT_DROP_RING_FULL.
 *
 * Trust: the guest and the netstack are both untrusted. Frames from the
 * guest are only length-checked. Records in s2g are length-checked and
 * written to the guest without being parsed (so they are not copied out
 * first). A ring that fails validation on either side - an impossible
 * head in s2g, an impossible tail in g2s - means the netstack (or whoever
 * else can write the region) is compromised: it is reported once through
 * guest_on_violation() as "s2g ring corrupt" / "g2s ring corrupt" and never
 * touched again; input or output stops instead of retrying, so a forged
 * ring can never make the supervisor spin.
 *
 * Errors: the guest port's functions (here and in the guest_*.c frontends)
 * return -1 with a reason, in @err or in the log. guest_s2g_next() alone
 * returns a status its callers tell apart: -EAGAIN (s2g is empty) or
 * -EBADMSG (s2g is corrupt).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/confine.h"
#include "common/log.h"
#include "supervisor/guest_int.h"

/**
 * guest_spec_parse() - parse a --guest argument
 * @s:		the argument
 * @out:	parsed spec
 * @err:	error text
 * @errlen:	size of @err
 *
 * Return: 0 or -1.
 */
int guest_spec_parse(const char *s, struct guest_spec *out, char *err, size_t errlen)
{
	const char *colon = strchr(s, ':');
	const char *arg = colon ? colon + 1 : "";
	size_t kl = colon ? (size_t)(colon - s) : strlen(s);

	memset(out, 0, sizeof(*out));
	out->fd = -1;
#define KIND(name) (kl == strlen(name) && !strncmp(s, name, kl))
	if (KIND("tap")) {
		const char *at = strchr(arg, '@');
		size_t il = at ? (size_t)(at - arg) : strlen(arg);

		out->kind = GUEST_TAP;
		if (il == 0 || il >= IFNAMSIZ) {
			snprintf(err, errlen,
				 "'%s': tap needs an interface name of 1..%d characters", s,
				 IFNAMSIZ - 1);
			return -1;
		}
		memcpy(out->ifname, arg, il);
		if (at) {
			if (!at[1] || strlen(at + 1) >= sizeof(out->netns)) {
				snprintf(err, errlen, "'%s': bad namespace path after '@'", s);
				return -1;
			}
			strcpy(out->netns, at + 1);
		}
		return 0;
	}
	if (KIND("tap-fd") || KIND("stream-fd") || KIND("dgram-fd")) {
		char *end;
		long v = strtol(arg, &end, 10);

		if (!*arg || *end || v < 0 || v > 65535) {
			snprintf(err, errlen, "'%s': expected a descriptor number", s);
			return -1;
		}
		out->fd = (int)v;
		out->kind = KIND("tap-fd")    ? GUEST_TAP_FD :
			    KIND("stream-fd") ? GUEST_STREAM_FD :
						GUEST_DGRAM_FD;
		return 0;
	}
	if (KIND("stream") || KIND("dgram") || KIND("shm") || KIND("vhost-user")) {
		if (!*arg || strlen(arg) >= sizeof(out->path)) {
			snprintf(err, errlen, "'%s': expected a socket path of 1..%zu characters",
				 s, sizeof(out->path) - 1);
			return -1;
		}
		strcpy(out->path, arg);
		out->kind = KIND("stream") ? GUEST_STREAM :
			    KIND("dgram")  ? GUEST_DGRAM :
			    KIND("shm")	   ? GUEST_SHM :
					     GUEST_VHOST_USER;
		return 0;
	}
#undef KIND
	snprintf(err, errlen,
		 "'%s': unknown frontend (tap:, tap-fd:, stream:, stream-fd:, "
		 "dgram:, dgram-fd:, shm:, vhost-user:)",
		 s);
	return -1;
}

static const struct guest_ops *ops_for(enum guest_kind k)
{
	switch (k) {
	case GUEST_TAP:
	case GUEST_TAP_FD:
		return &guest_tap_ops;
	case GUEST_STREAM:
	case GUEST_STREAM_FD:
		return &guest_stream_ops;
	case GUEST_DGRAM:
	case GUEST_DGRAM_FD:
		return &guest_dgram_ops;
	case GUEST_SHM:
		return &guest_shm_ops;
	case GUEST_VHOST_USER:
		return &guest_vhost_ops;
	}
	return NULL;
}

static const char *type_name(int type)
{
	switch (type) {
	case SOCK_STREAM:
		return "stream";
	case SOCK_DGRAM:
		return "datagram";
	case SOCK_SEQPACKET:
		return "seqpacket";
	}
	return "other";
}

/**
 * guest_check_fd() - check an inherited descriptor and make it ours
 * @fd:		the descriptor
 * @want_type:	SOCK_STREAM, SOCK_DGRAM (SOCK_SEQPACKET accepted too), or -1
 *		for anything (a tap)
 * @spec:	the --guest text, for the message
 * @err:	one line saying what to fix
 * @errlen:	size of @err
 *
 * Sets O_NONBLOCK and FD_CLOEXEC (the children must not inherit it).
 * Return: 0 or -1 with @err set.
 */
int guest_check_fd(int fd, int want_type, const char *spec, char *err, size_t errlen)
{
	int type = 0, fl;
	socklen_t tl = sizeof(type);

	if (fcntl(fd, F_GETFD) < 0) {
		snprintf(err, errlen,
			 "%s: descriptor %d is not open (moat must inherit it: "
			 "clear its close-on-exec flag)",
			 spec, fd);
		return -1;
	}
	if (want_type >= 0) {
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) {
			snprintf(err, errlen, "%s: descriptor %d is not a socket", spec, fd);
			return -1;
		}
		if (type != want_type && !(want_type == SOCK_DGRAM && type == SOCK_SEQPACKET)) {
			snprintf(err, errlen, "%s: descriptor %d is a %s socket, not a %s socket",
				 spec, fd, type_name(type), type_name(want_type));
			return -1;
		}
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s: descriptor %d: %s", spec, fd, strerror(errno));
		return -1;
	}
	return 0;
}

/* Is someone serving @path? 1 yes, 0 no (stale), -1 can't tell. */
static int unix_in_use(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return -1;
	memcpy(sa.sun_path, path, strlen(path));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc == 0)
		rc = 1;
	else if (errno == ECONNREFUSED)
		rc = 0;
	else if (errno == EPROTOTYPE)
		rc = 1; /* bound by a socket of another type: live */
	else
		rc = -1;
	close(fd);
	return rc;
}

static void dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/**
 * guest_unix_listen() - create the socket a VMM connects or sends to
 * @path:	filesystem path (at most 107 bytes)
 * @type:	SOCK_STREAM (listens) or SOCK_DGRAM (only binds)
 * @err:	one line saying what to fix
 * @errlen:	size of @err
 *
 * A stale socket file (nobody serves it any more) is replaced; a live one,
 * or anything that is not a socket, is left alone and reported.
 *
 * Return: the non-blocking, close-on-exec descriptor, or -1 with @err set.
 */
int guest_unix_listen(const char *path, int type, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	CLEANUP_CLOSE int fd = -1;
	struct stat st;
	char dir[sizeof(sa.sun_path)];
	int e;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: the socket path is longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen,
				 "%s exists and is not a socket; remove it or choose "
				 "another path",
				 path);
			return -1;
		}
		e = unix_in_use(path, type);
		if (e == 1) {
			snprintf(err, errlen, "%s is in use by another process", path);
			return -1;
		}
		if (e == 0 && unlink(path) < 0) {
			snprintf(err, errlen, "%s: cannot remove the stale socket: %s", path,
				 strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", path, strerror(errno));
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		dir_of(path, dir, sizeof(dir));
		if (e == ENOENT || e == ENOTDIR)
			snprintf(err, errlen,
				 "cannot create socket %s: directory %s does not exist", path, dir);
		else if (e == EACCES || e == EROFS)
			snprintf(err, errlen,
				 "cannot create socket %s: no permission to write in "
				 "%s",
				 path, dir);
		else if (e == EADDRINUSE)
			snprintf(err, errlen, "%s is in use", path);
		else
			snprintf(err, errlen, "cannot create socket %s: %s", path, strerror(e));
		return -1;
	}
	if (type == SOCK_STREAM && listen(fd, 4) < 0) {
		snprintf(err, errlen, "%s: listen: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return cleanup_take_fd(&fd);
}

/**
 * guest_unix_unlink() - remove a socket file we created, if it still is one
 * @path:	the path given to guest_unix_listen()
 */
void guest_unix_unlink(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

/**
 * guest_unix_close() - close a unix-socket frontend's client and listener,
 * and remove the socket file it created
 * @g:		the port (its spec names the path)
 * @cfd:	the connected client, or -1
 * @lfd:	the listening socket, or -1
 */
void guest_unix_close(struct guest *g, int cfd, int lfd)
{
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0) {
		close(lfd);
		guest_unix_unlink(g->spec.path);
	}
}

/**
 * guest_fe_alloc() - the frontend's zeroed private state, as g->fe
 * @g:		the port
 * @size:	bytes of the frontend's struct
 * @err:	"out of memory" on failure
 * @errlen:	size of @err
 *
 * Return: the state (freed by guest_close()), or NULL with @err set.
 */
void *guest_fe_alloc(struct guest *g, size_t size, char *err, size_t errlen)
{
	g->fe = calloc(1, size);
	if (!g->fe)
		snprintf(err, errlen, "out of memory");
	return g->fe;
}

/**
 * guest_unix_watch_listener() - wait for a VMM to connect to a listener
 * @g:		the port
 * @wl:		the listener's watch (the frontend's)
 * @lfd:	the listening socket
 * @cb:		called when a connection waits
 * @what:	the socket, for the message
 *
 * Return: 0, or -1 (logged).
 */
int guest_unix_watch_listener(struct guest *g, struct loop_watch *wl, int lfd, loop_cb cb,
			      const char *what)
{
	*wl = (struct loop_watch){ .fd = lfd, .cb = cb, .arg = g };
	if (loop_add(g->loop, wl, EPOLLIN) < 0) {
		log_error("guest port: cannot watch %s: %s", what, strerror(errno));
		return -1;
	}
	return 0;
}

/**
 * guest_unix_accept() - take the connection waiting on a listener
 * @lfd:	the listening socket
 * @what:	the socket, for the message
 *
 * A connection that went away before it was taken, or none at all, is not
 * worth a message; other failures are logged.
 *
 * Return: the non-blocking, close-on-exec descriptor, or -1.
 */
int guest_unix_accept(int lfd, const char *what)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		log_warn("guest port: %s: accept: %s", what, strerror(errno));
	return fd;
}

/**
 * guest_open() - open the guest side before the children are forked
 * @spec:	parsed --guest
 * @err:	error text (one line, says what to fix)
 * @errlen:	size of @err
 *
 * Context: supervisor, still privileged.
 * Return: the port, or NULL with @err set.
 */
struct guest *guest_open(const struct guest_spec *spec, char *err, size_t errlen)
{
	struct guest *g = calloc(1, sizeof(*g));

	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->spec = *spec;
	g->ops = ops_for(spec->kind);
	g->guest_efd = g->netstack_efd = -1;
	if (!g->ops) {
		snprintf(err, errlen, "unknown frontend");
		free(g);
		return NULL;
	}
	if (g->ops->open(g, err, errlen) < 0) {
		if (g->fe)
			g->ops->close(g);
		free(g->fe);
		free(g);
		return NULL;
	}
	return g;
}

/**
 * guest_g2s_pause() - g2s has no room for @len: pause input if it stays full
 * @g:		port
 * @len:	payload length that did not fit
 *
 * Return: true if input must pause (->waiting_g2s is set; our eventfd
 * fires when the netstack releases space), false if room appeared meanwhile.
 */
bool guest_g2s_pause(struct guest *g, uint32_t len)
{
	if (ring_wait_space(&g->g2s, len))
		return false;
	g->waiting_g2s = true;
	return true;
}

static void g2s_corrupt(struct guest *g)
{
	if (g->g2s_broken)
		return;
	g->g2s_broken = true;
	g->waiting_g2s = false;
	log_error("g2s ring corrupt (the netstack published an impossible tail); input from "
		  "the guest stops");
	if (g->on_violation)
		g->on_violation("g2s ring corrupt");
}

/**
 * guest_g2s_blocked() - a push into g2s failed: retry, or stop reading?
 * @g:		port
 * @rc:		what ring_reserve() / ring_push() returned (not 0)
 * @len:	payload length that did not go in
 *
 * The one place a frontend takes a failed push to, so that every frontend
 * tells the cases apart the same way: -ENOBUFS (full) pauses input until
 * the netstack releases space (guest_g2s_pause()); -EBADMSG (the netstack
 * wrote an impossible tail) is reported once through guest_on_violation()
 * as "g2s ring corrupt", and input stays off for good (->g2s_broken), so a
 * frontend that is called again can never spin on a ring it may not
 * touch. Anything else cannot happen (guest_start() checked that a frame
 * fits) and stops moat as a runtime error.
 *
 * Return: false if the push may be retried now (room appeared meanwhile),
 * true if the frontend must stop reading the guest (guest_input_off()).
 */
bool guest_g2s_blocked(struct guest *g, int rc, uint32_t len)
{
	if (rc == -ENOBUFS && !g->g2s.corrupt) {
		if (guest_g2s_pause(g, len))
			return true;
		if (!g->g2s.corrupt)
			return false;
	}
	if (rc == -EBADMSG || g->g2s.corrupt) {
		g2s_corrupt(g);
		return true;
	}
	g->g2s_broken = true;
	guest_fail(g, "g2s ring", strerror(-rc));
	return true;
}

/* Count a batch of @frames (@bytes) in @n_frames and @n_bytes; flush the pcap. */
static void batch_done(struct guest *g, uint64_t *n_frames, uint64_t *n_bytes, uint64_t frames,
		       uint64_t bytes)
{
	if (frames) {
		guest_count(n_frames, frames);
		guest_count(n_bytes, bytes);
	}
	if (g->pcap)
		pcap_flush(g->pcap);
}

/**
 * guest_g2s_done() - end of an input batch: publish, count, flush the pcap
 * @g:		port
 * @frames:	frames committed to g2s in this batch
 * @bytes:	their bytes
 */
void guest_g2s_done(struct guest *g, uint64_t frames, uint64_t bytes)
{
	ring_flush(&g->g2s);
	batch_done(g, &g->cnt->tx_frames, &g->cnt->tx_bytes, frames, bytes);
}

/**
 * guest_s2g_done() - end of an output batch: hand space back, count
 * @g:		port
 * @frames:	frames written to the guest
 * @bytes:	their bytes
 */
void guest_s2g_done(struct guest *g, uint64_t frames, uint64_t bytes)
{
	ring_release(&g->s2g);
	batch_done(g, &g->cnt->rx_frames, &g->cnt->rx_bytes, frames, bytes);
}

static void s2g_corrupt(struct guest *g)
{
	if (g->s2g_broken)
		return;
	g->s2g_broken = true;
	log_error("s2g ring corrupt; the netstack is not trusted any more");
	if (g->on_violation)
		g->on_violation("s2g ring corrupt");
}

/**
 * guest_s2g_next() - the next frame for the guest, in place
 * @g:		port
 * @frame:	set to the record inside the ring
 * @vnet:	set to true if the record is a MOAT_REC_FRAME_VNET (a struct
 *		moat_vnet_hdr, then the frame), false for a plain frame; NULL
 *		for a frontend that negotiated no offloads
 *
 * The records ring_next_frame() takes (frames of 14..MTU+14 bytes, and with
 * a port that negotiated offloads vnet records); the rest are stepped over.
 * Follow with ring_consume() once the frame is taken, and guest_s2g_done()
 * at the end of the batch.
 *
 * Return: the record length, -EAGAIN if s2g is empty (the consumer flag is
 * set: the netstack will write our eventfd), -EBADMSG if s2g is corrupt.
 */
int guest_s2g_next(struct guest *g, const uint8_t **frame, bool *vnet)
{
	bool v;
	int n = ring_next_frame(&g->s2g, g->max_frame, vnet && g->offloads, frame, &v);

	if (n == -EBADMSG)
		s2g_corrupt(g);
	else if (n > 0 && vnet)
		*vnet = v;
	return n;
}

/**
 * guest_s2g_discard() - empty s2g while no guest is attached
 * @g:	port
 *
 * A link without a peer behaves like a NIC without a cable: frames toward
 * it are dropped, so a guest that connects later does not get stale ones.
 */
void guest_s2g_discard(struct guest *g)
{
	const uint8_t *p;
	uint64_t n = 0;

	while (guest_s2g_next(g, &p, NULL) > 0) {
		ring_consume(&g->s2g);
		n++;
	}
	ring_release(&g->s2g);
	if (n)
		log_debug("no guest attached: %llu frames toward the guest discarded",
			  (unsigned long long)n);
}

/**
 * guest_watch_set() - make a frontend's watch on the guest wait for @ev
 * @g:		port
 * @w:		the watch: in the loop's set unless *@parked
 * @events:	what @w waits for now; set to @ev
 * @parked:	@w is out of the set; set when @ev is empty
 * @ev:		EPOLLIN and EPOLLOUT as wanted, or 0
 *
 * epoll reports EPOLLERR and EPOLLHUP even with an empty mask (a tap
 * whose device was deleted is always in error, a stream peer that hung up
 * always readable): with nothing to wait for, the watch leaves the set
 * instead of waking the loop for nothing.
 */
void guest_watch_set(struct guest *g, struct loop_watch *w, uint32_t *events, bool *parked,
		     uint32_t ev)
{
	if (!ev) {
		if (!*parked)
			loop_del(g->loop, w);
		*parked = true;
	} else if (*parked) {
		loop_add(g->loop, w, ev);
		*parked = false;
	} else if (ev != *events) {
		loop_mod(g->loop, w, ev);
	}
	*events = ev;
}

/**
 * guest_on_fd() - the loop callback of a frontend's watch on the guest
 * @w:		the watch; its arg is the port
 * @events:	what epoll reported
 *
 * Output first: it may free the room the guest waits for. An error or a
 * hang-up is input's to read and report.
 */
void guest_on_fd(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;

	if (events & EPOLLOUT)
		g->ops->output(g);
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !guest_input_off(g))
		g->ops->input(g);
}

/**
 * guest_yield() - come back to s2g after the loop served other events
 * @g:	port
 *
 * An output pass stops after GUEST_OUT_MAX frames so that a busy netstack
 * cannot starve the guest -> netstack direction; writing our own eventfd
 * brings us back on the next loop turn.
 */
void guest_yield(struct guest *g)
{
	uint64_t one = 1;

	if (write(g->guest_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("guest port: eventfd: %s", strerror(errno));
}

/**
 * guest_gone() - a guest that cannot come back went away: stop moat
 * @g:		port
 * @what:	"the tap", "stream-fd:5", ...
 * @why:	the error or "closed"
 *
 * For a tap or an inherited descriptor there is no next client to wait
 * for, so moat stops cleanly (exit 0), as a command exiting would.
 */
void guest_gone(struct guest *g, const char *what, const char *why)
{
	log_info("guest port: %s went away (%s); stopping", what, why);
	g->loop->stop = 1;
}

/**
 * guest_fail() - the guest side failed for good: stop moat with an error
 * @g:		port
 * @what:	"stream-fd:5", ...
 * @why:	what went wrong, in words
 *
 * Like guest_gone(), but the stop is a runtime error, not a VMM leaving:
 * guest_failed() says so afterwards, and the supervisor exits 1.
 */
void guest_fail(struct guest *g, const char *what, const char *why)
{
	log_error("guest port: %s: %s; stopping", what, why);
	g->failed = true;
	g->loop->stop = 1;
}

/**
 * guest_failed() - did the guest port stop moat because of an error?
 * @g:	port (may be NULL)
 *
 * Context: the supervisor, after its loop stopped and before guest_close().
 * Return: true if the stop was a runtime error (exit 1): a stream-fd peer
 * sent a bad length prefix, or g2s could not be written for a reason that
 * is not a violation; false for a clean stop (the VMM left, SIGTERM).
 */
bool guest_failed(const struct guest *g)
{
	return g && g->failed;
}

/**
 * guest_flush() - pass everything now in s2g to the guest, without waiting
 * @g:	port (may be NULL)
 *
 * Context: the supervisor's clean stop, after the netstack has exited, so
 * that its last frames (the RSTs of open connections) reach the guest.
 */
void guest_flush(struct guest *g)
{
	if (g && g->ops->output && !g->waiting_out && !g->s2g_broken)
		g->ops->output(g);
}

static void on_efd(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	uint64_t v;

	(void)events;
	if (read(w->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (!g->waiting_out && !g->s2g_broken)
		g->ops->output(g);
	if (g->waiting_g2s && !g->g2s_broken) {
		g->waiting_g2s = false;
		g->ops->input(g);
	}
}

/**
 * guest_open_pcap() - open --pcap for the frames this port will move
 * @g:		port from guest_open()
 * @path:	--pcap
 * @mtu:	the guest's MTU (frames are captured whole: MTU + 14 bytes)
 * @err:	one line saying what to fix
 * @errlen:	size of @err
 *
 * Context: set-up, before anything is forked, so a bad path is refused
 * before a process exists.
 * Return: 0, or -1 with @err set (also for --guest shm:, where the VMM
 * moves the frames itself, and vhost-user:, where moat-vhost does).
 */
int guest_open_pcap(struct guest *g, const char *path, unsigned mtu, char *err, size_t errlen)
{
	if (g->spec.kind == GUEST_SHM || g->spec.kind == GUEST_VHOST_USER) {
		snprintf(err, errlen,
			 "--pcap is not available with --guest %s: (the supervisor never "
			 "sees the frames); remove --pcap",
			 g->ops->name);
		return -1;
	}
	/* Segments (offloads) are captured whole too. */
	g->pcap = pcap_open(path, g->offloads ? MOAT_FRAME_MAX_GSO : mtu + 14, err, errlen);
	return g->pcap ? 0 : -1;
}

/**
 * guest_kind_name() - the frontend's name, as --guest spells its kind
 * @g:	port from guest_open()
 *
 * Return: "tap", "stream", "dgram" or "shm".
 */
const char *guest_kind_name(const struct guest *g)
{
	return g->ops->name;
}

/**
 * guest_offloads() - the offloads the guest port negotiated
 * @g:	port from guest_open()
 *
 * Context: set-up: the supervisor writes it to the region's header
 * (guest_offloads) so that the netstack knows what it may send.
 * Return: MOAT_OFFLOAD_* bits, 0 for plain frames only.
 */
uint32_t guest_offloads(const struct guest *g)
{
	return g->offloads;
}

/**
 * guest_start() - attach the rings and start moving frames
 * @g:		port from guest_open()
 * @l:		the supervisor's loop
 * @r:		the region (supervisor's full mapping)
 * @guest_efd:	our eventfd (s2g data, g2s space)
 * @netstack_efd: the netstack's eventfd (g2s data, s2g space)
 *
 * Return: 0 or -1 (the reason is logged).
 */
int guest_start(struct guest *g, struct loop *l, struct region *r, int guest_efd, int netstack_efd)
{
	g->loop = l;
	g->region = r;
	g->cnt = r->part[MOAT_PART_CNT_GUEST];
	g->max_frame = r->hdr.mtu + 14;
	g->guest_efd = guest_efd;
	g->netstack_efd = netstack_efd;
	if (g->spec.kind == GUEST_SHM || g->spec.kind == GUEST_VHOST_USER)
		return g->ops->start(g);
	ring_attach(&g->g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), netstack_efd, guest_efd,
		    &g->cnt->wakes_sent);
	/* The tap reserves one byte more than a frame to see oversize reads. */
	if (guest_max_record(g) + 1 > RING_MAX_RECORD(g->g2s.cap)) {
		log_error("guest port: frames of %u bytes do not fit a g2s ring of %llu bytes",
			  guest_max_record(g), (unsigned long long)g->g2s.cap);
		return -1;
	}
	if (g->offloads_refused)
		guest_count(&g->cnt->offloads_refused, 1);
	ring_attach(&g->s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), guest_efd, netstack_efd,
		    &g->cnt->wakes_sent);
	g->w_efd = (struct loop_watch){ .fd = guest_efd, .cb = on_efd, .arg = g };
	if (loop_add(l, &g->w_efd, EPOLLIN) < 0) {
		log_error("guest port: cannot watch the eventfd: %s", strerror(errno));
		return -1;
	}
	if (g->ops->start(g) < 0)
		return -1;
	/* Frames may already wait in s2g; the flag makes the netstack wake us. */
	if (!g->waiting_out)
		g->ops->output(g);
	return 0;
}

/**
 * guest_on_violation() - say whom to tell when a frame ring is corrupt
 * @g:	port
 * @fn:	called once per ring ("g2s ring corrupt", "s2g ring corrupt");
 *	NULL to only log. The ring is not touched again either way.
 */
void guest_on_violation(struct guest *g, guest_violation_fn fn)
{
	g->on_violation = fn;
}

/**
 * guest_seccomp() - add the calls the guest port makes at run time
 * @ctx:	the supervisor's filter (sandbox_filter())
 * @g:		port from guest_open() (may be NULL: nothing to add)
 *
 * Every frontend's calls are added, whichever one runs: the list is short
 * and one list is easier to check (tests/unit/test_guest_seccomp.c runs
 * the stream, dgram and shm frontends and --pcap under it with nothing
 * else but the loop's wait; the tap only reads and writes). Nothing done
 * only before the filter goes on
 * is here: opening the tap, socket/bind/listen of the socket paths,
 * SO_PASSCRED, timerfd_create, fcntl on inherited descriptors, opening
 * --pcap, malloc of the frontends' buffers (guest_start()).
 *
 * Context: the supervisor, after guest_start() and before the filter is
 * loaded.
 */
void guest_seccomp(scmp_filter_ctx ctx, const struct guest *g)
{
	if (!g)
		return;
	/* Every frontend, and guest.c's eventfd watch. */
	ALLOW(ctx, read);      /* our eventfd; tap frames; stream bytes; timerfd; shm EOF */
	ALLOW(ctx, write);     /* the netstack's eventfd (ring wakes); tap frames; --pcap */
	ALLOW(ctx, writev);    /* tap with offloads: a zero virtio_net_hdr before a frame */
	ALLOW(ctx, epoll_ctl); /* watches paused and resumed (backpressure), clients */
	ALLOW(ctx, close);     /* clients that leave; probe sockets; a dead peer's pidfd */
	/* stream: and shm: serve the next VMM that connects. */
	ALLOW(ctx, accept4); /* a reconnecting VMM (one client at a time) */
	ALLOW(ctx, sendmsg); /* stream: a batch of frames; shm: the hello with the fds */
	ALLOW(ctx, sendto);  /* stream: the rest of a cut frame (send()) */
	/* dgram: */
	ALLOW(ctx, recvmmsg);	     /* a batch of datagrams with their credentials */
	ALLOW(ctx, sendmmsg);	     /* a batch of frames toward the peer */
	ALLOW(ctx, timerfd_settime); /* retry a send the peer's full queue refused */
	ALLOW(ctx, socket);	/* peer_alive(): a unix dgram socket to probe the peer's path */
	ALLOW(ctx, connect);	/* peer_alive(): does anyone still serve that path? */
	ALLOW(ctx, pidfd_open); /* watch the peer process: its exit ends the peer */
	ALLOW(ctx, newfstatat); /* lstat(): is the peer's socket file still the same? */
	ALLOW(ctx, lstat);	/* the same on libcs that still call lstat */
	/* At close (the clean stop, after the filter): our socket file goes. */
	ALLOW(ctx, unlink);   /* guest_unix_unlink() of stream:/dgram:/shm: PATH */
	ALLOW(ctx, unlinkat); /* the same where libc's unlink() is unlinkat (arm64) */
	ALLOW(ctx, munmap);   /* free() of the stream/dgram buffers (mmap-sized) */
	ALLOW(ctx, brk);      /* free() trimming the heap */
}

/**
 * guest_close() - close the guest side (sockets we created are unlinked)
 * @g:	port (may be NULL)
 */
void guest_close(struct guest *g)
{
	if (!g)
		return;
	g->ops->close(g);
	pcap_close(g->pcap);
	free(g->fe);
	free(g);
}
