/* SPDX-License-Identifier: MIT */
/*
 * guest_dgram.c - the datagram frontend: dgram:PATH and dgram-fd:N
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's loop (guest.c dispatches here). One frame per
 * datagram, as vfkit, krunkit, libkrun's unixgram and QEMU's `-netdev
 * dgram` send them. Frames move with recvmmsg()/sendmmsg(), a batch per
 * system call: received datagrams land in a private batch buffer and are
 * copied into g2s (recvmmsg needs every buffer up front, and a g2s
 * reservation is one record at a time), one flush per batch; frames toward
 * the guest go out straight from s2g, no copy.
 *
 * dgram:PATH binds a unix datagram socket at PATH and learns the peer from
 * the first datagram that carries a sender address (the VMM must bind its
 * own socket, or we could not answer). A path alone is a weak name: once
 * its owner is gone anyone who can write the directory may bind it again
 * and would get the guest's frames. So the socket has SO_PASSCRED on, every
 * datagram carries its sender's pid and uid (SCM_CREDENTIALS, filled in by
 * the kernel, not by the sender), and the peer is the triple (path, pid,
 * uid) of its first datagram, plus the inode of the socket file at that
 * path. While the peer lives:
 *   - a datagram from another address, or from the peer's path with other
 *     credentials, is dropped (MOAT_DROP_SPOOFED; an impostor on the peer's
 *     path is logged once);
 *   - the peer process is watched through a pidfd, and its exit ends the
 *     peer at once; before each output pass the socket file at the path
 *     must still be the one we learned (a re-bound path is a new inode),
 *     so frames never go to a process that re-bound the path of a peer
 *     that died or closed its socket. A send refused because nobody serves
 *     the path ends the peer too.
 * When the peer has gone, the next sender becomes the peer, so a restarted
 * VMM reattaches - but only one with the uid of the first peer, the owner
 * of the link: a sender with another uid is dropped as spoofed. A datagram
 * of exactly "VFKT" is vfkit's old handshake, sent first to announce the
 * sender: it is consumed, never a frame. With no peer, frames toward the
 * guest are discarded (a link without a peer).
 *
 * We do not connect() the bound socket to the peer: that would make the
 * kernel refuse a restarted VMM until we happened to send something (a
 * connected unix datagram socket learns that its peer died only from a
 * refused send). The price is that poll() does not report when the peer's
 * receive queue has room again (Linux does that for connected sockets
 * only), so when a send is refused with EAGAIN we retry from a timer: 50 us,
 * doubling up to 2 ms while nothing goes out. The queue limit
 * (net.unix.max_dgram_qlen, often 10) does not apply to a peer that
 * connect()ed its socket to ours, as vfkit and libkrun do; a peer that
 * only uses sendto() (QEMU's -netdev dgram) meets it. dgram-fd:N is a
 * connected socket (a socketpair end): the peer is implicit, EPOLLOUT
 * works, and a refused send means the peer closed, which stops moat
 * (nobody can come back on an inherited descriptor).
 *
 * g2s: before each recvmmsg() we take only as many datagrams as surely fit
 * (a datagram cannot be left in the socket once received). A push that
 * still fails goes to guest_g2s_blocked(): full (only a netstack moving its
 * tail back can do that) drops the datagram as MOAT_DROP_RING_FULL and
 * pauses input; corrupt is a violation and input stops for good.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/guest_int.h"

#define DGRAM_READS	   4	   /* recvmmsg calls per wake */
#define DGRAM_RETRY_MIN_NS 50000   /* peer queue full: first retry after 50 us, */
#define DGRAM_RETRY_MAX_NS 2000000 /* doubling while nothing goes out, up to 2 ms */

struct dgram {
	int fd;
	struct loop_watch w;
	uint32_t events;
	bool parked;
	bool bound; /* dgram:PATH: learn the peer */
	bool have_peer;
	bool seqpacket; /* dgram-fd:N may be a seqpacket socket */
	int alive;	/* peer liveness probed this batch: -1 unknown */
	struct sockaddr_un peer;
	socklen_t peer_len;
	struct ucred peer_cred; /* dgram:PATH: the peer's pid and uid */
	bool have_owner;	/* a peer was learned once: @owner_uid is set */
	uid_t owner_uid;	/* uid every later peer must have */
	bool peer_ino_known;	/* the socket file at the peer's path, if any */
	dev_t peer_dev;
	ino_t peer_ino;
	struct timespec peer_mtime; /* inode numbers are reused at once: with the time */
	int pidfd;		    /* the peer process, -1 if none */
	struct loop_watch wp;
	uint64_t impostors; /* peer's path, other credentials */
	int tfd;	    /* retry timer (dgram:PATH) */
	struct loop_watch wt;
	bool timer_armed;
	bool denied_logged; /* the peer's socket refused us (EACCES): said once */
	long retry_ns;	    /* next retry delay */
	uint64_t foreign;   /* datagrams dropped from strangers */
	char what[128];
	uint8_t *in; /* GUEST_BATCH buffers of max_frame + 1 */
	struct mmsghdr msgs[GUEST_BATCH];
	struct iovec iov[GUEST_BATCH];
	struct sockaddr_un from[GUEST_BATCH];
	union { /* SCM_CREDENTIALS of each datagram */
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} cmsg[GUEST_BATCH];
};

static int guest_dgram_open(struct guest *g, char *err, size_t errlen)
{
	struct dgram *d = guest_fe_alloc(g, sizeof(*d), err, errlen);

	if (!d)
		return -1;
	d->fd = d->tfd = d->pidfd = -1;
	if (g->spec.kind == GUEST_DGRAM_FD) {
		snprintf(d->what, sizeof(d->what), "dgram-fd:%d", g->spec.fd);
		if (guest_check_fd(g->spec.fd, SOCK_DGRAM, d->what, err, errlen) < 0)
			return -1;
		d->fd = g->spec.fd;
		d->have_peer = true;
		{
			int type = 0;
			socklen_t tl = sizeof(type);

			getsockopt(d->fd, SOL_SOCKET, SO_TYPE, &type, &tl);
			d->seqpacket = type == SOCK_SEQPACKET;
		}
		return 0;
	}
	snprintf(d->what, sizeof(d->what), "dgram:%s", g->spec.path);
	d->bound = true;
	d->fd = guest_unix_listen(g->spec.path, SOCK_DGRAM, err, errlen);
	if (d->fd < 0)
		return -1;
	/* Every datagram then names its sender's pid and uid (set by the kernel). */
	if (setsockopt(d->fd, SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)) < 0) {
		snprintf(err, errlen, "%s: SO_PASSCRED: %s", d->what, strerror(errno));
		return -1;
	}
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->tfd < 0) {
		snprintf(err, errlen, "timerfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void guest_dgram_set_events(struct guest *g)
{
	struct dgram *d = g->fe;
	/* An unconnected socket's EPOLLOUT says nothing about the peer: timer. */
	uint32_t ev = (guest_input_off(g) ? 0 : EPOLLIN) |
		      (g->waiting_out && !d->bound ? EPOLLOUT : 0);

	guest_watch_set(g, &d->w, &d->events, &d->parked, ev);
}

/* Retry a send the peer's full queue refused; back off while nothing moves. */
static void guest_dgram_arm_retry(struct guest *g, bool progress)
{
	struct dgram *d = g->fe;
	struct itimerspec its = { 0 };

	if (progress || d->retry_ns < DGRAM_RETRY_MIN_NS)
		d->retry_ns = DGRAM_RETRY_MIN_NS;
	else if (d->retry_ns < DGRAM_RETRY_MAX_NS)
		d->retry_ns *= 2;
	its.it_value.tv_nsec = d->retry_ns;
	if (!d->timer_armed && timerfd_settime(d->tfd, 0, &its, NULL) == 0)
		d->timer_armed = true;
}

/* For logs: @buf must hold sizeof(sun_path) + 1 bytes. */
static const char *addr_str(const struct sockaddr_un *sa, socklen_t len, char *buf)
{
	size_t n = len > offsetof(struct sockaddr_un, sun_path) ?
			   len - offsetof(struct sockaddr_un, sun_path) :
			   0;

	if (!n)
		return "(unbound)";
	if (sa->sun_path[0] == '\0') { /* abstract */
		snprintf(buf, sizeof(sa->sun_path) + 1, "@%.*s", (int)(n - 1), sa->sun_path + 1);
		return buf;
	}
	snprintf(buf, sizeof(sa->sun_path) + 1, "%.*s", (int)strnlen(sa->sun_path, n),
		 sa->sun_path);
	return buf;
}

/* Is the socket file at the peer's path still the one we learned? */
static bool peer_same_socket(const struct dgram *d)
{
	struct stat st;

	if (!d->peer_ino_known)
		return true; /* abstract address, or not ours to stat: pidfd only */
	if (lstat(d->peer.sun_path, &st) < 0)
		return errno != ENOENT && errno != ENOTDIR; /* can't tell: keep it */
	return S_ISSOCK(st.st_mode) && st.st_dev == d->peer_dev && st.st_ino == d->peer_ino &&
	       st.st_mtim.tv_sec == d->peer_mtime.tv_sec &&
	       st.st_mtim.tv_nsec == d->peer_mtime.tv_nsec;
}

/* Does the peer's socket still serve the peer's address? */
static bool peer_alive(struct dgram *d)
{
	int fd, rc;

	if (d->alive >= 0)
		return d->alive;
	if (!peer_same_socket(d)) {
		d->alive = 0;
		return false;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	rc = connect(fd, (struct sockaddr *)&d->peer, d->peer_len);
	/* EPERM: alive, but connected to someone (us, as vfkit does). */
	d->alive = rc == 0 || (errno != ECONNREFUSED && errno != ENOENT);
	close(fd);
	return d->alive;
}

static void peer_lost(struct guest *g, const char *why)
{
	struct dgram *d = g->fe;
	char a[sizeof(d->peer.sun_path) + 1];

	if (!d->bound) {
		guest_gone(g, d->what, why);
		return;
	}
	log_info("guest port: %s: peer %s gone (%s); waiting for the next", d->what,
		 addr_str(&d->peer, d->peer_len, a), why);
	d->have_peer = false;
	d->denied_logged = false;
	d->peer_ino_known = false;
	if (d->pidfd >= 0) {
		loop_del(g->loop, &d->wp);
		close(d->pidfd);
		d->pidfd = -1;
	}
	g->waiting_out = false;
	guest_count(&g->cnt->clients_dropped, 1);
	guest_s2g_discard(g);
}

/* The peer process exited: nothing it left bound at its path is the peer. */
static void guest_dgram_on_pidfd(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;

	(void)events;
	peer_lost(g, "its process exited");
}

/* Remember what makes the peer the peer, beyond its path. */
static void peer_learn_identity(struct guest *g, const struct ucred *cred)
{
	struct dgram *d = g->fe;
	struct stat st;
	int fd;

	d->peer_cred = *cred;
	d->have_owner = true;
	d->owner_uid = cred->uid;
	d->peer_ino_known = d->peer.sun_path[0] != '\0' && lstat(d->peer.sun_path, &st) == 0 &&
			    S_ISSOCK(st.st_mode);
	if (d->peer_ino_known) {
		d->peer_dev = st.st_dev;
		d->peer_ino = st.st_ino;
		d->peer_mtime = st.st_mtim;
	}
	/* pid 0: the sender is in a pid namespace we cannot see; the path checks remain. */
	fd = cred->pid > 0 ? (int)syscall(SYS_pidfd_open, cred->pid, 0) : -1;
	if (fd < 0)
		return;
	d->pidfd = fd;
	d->wp = (struct loop_watch){ .fd = fd, .cb = guest_dgram_on_pidfd, .arg = g };
	if (loop_add(g->loop, &d->wp, EPOLLIN) < 0) {
		close(fd);
		d->pidfd = -1;
	}
}

static bool same_cred(const struct ucred *a, const struct ucred *b)
{
	return a->pid == b->pid && a->uid == b->uid;
}

/* The sender's credentials from a received datagram; false if there are none. */
static bool guest_dgram_cred(struct msghdr *mh, struct ucred *out)
{
	bool found = false;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(*out))) {
			memcpy(out, CMSG_DATA(c), sizeof(*out));
			found = true;
		} else if (c->cmsg_type == SCM_RIGHTS) {
			/* Our buffer has no room for any, but never keep a sender's fds. */
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < n; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
	}
	return found;
}

/* dgram:PATH: may a datagram from @from, sent by @cred, be taken? Learns the peer. */
static bool guest_dgram_accept_sender(struct guest *g, const struct sockaddr_un *from,
				      socklen_t len, const struct ucred *cred)
{
	struct dgram *d = g->fe;
	char a[sizeof(d->peer.sun_path) + 1], b[sizeof(d->peer.sun_path) + 1];

	if (len <= offsetof(struct sockaddr_un, sun_path)) {
		if (d->foreign++ == 0)
			log_warn("guest port: %s: datagram from an unbound socket dropped (the "
				 "VMM must bind its socket so moat can answer)",
				 d->what);
		guest_count(&g->cnt->drops[MOAT_DROP_SPOOFED], 1);
		return false;
	}
	if (d->have_peer && len == d->peer_len && !memcmp(from, &d->peer, len)) {
		if (same_cred(cred, &d->peer_cred))
			return true;
		if (peer_alive(d)) {
			if (d->impostors++ == 0)
				log_warn(
					"guest port: %s: datagram from the peer's path %s by pid %d "
					"uid %u dropped: the peer is pid %d uid %u",
					d->what, addr_str(from, len, a), (int)cred->pid,
					(unsigned)cred->uid, (int)d->peer_cred.pid,
					(unsigned)d->peer_cred.uid);
			guest_count(&g->cnt->drops[MOAT_DROP_SPOOFED], 1);
			return false;
		}
	}
	if (d->have_peer && peer_alive(d)) {
		if (d->foreign++ % 1024 == 0)
			log_warn("guest port: %s: datagrams from %s dropped: the peer is %s",
				 d->what, addr_str(from, len, a),
				 addr_str(&d->peer, d->peer_len, b));
		guest_count(&g->cnt->drops[MOAT_DROP_SPOOFED], 1);
		return false;
	}
	if (d->have_owner && cred->uid != d->owner_uid) {
		if (d->foreign++ % 1024 == 0)
			log_warn("guest port: %s: datagrams from %s (uid %u) dropped: only uid %u, "
				 "the first peer's, may attach",
				 d->what, addr_str(from, len, a), (unsigned)cred->uid,
				 (unsigned)d->owner_uid);
		guest_count(&g->cnt->drops[MOAT_DROP_SPOOFED], 1);
		return false;
	}
	if (d->have_peer)
		peer_lost(g, "no longer bound");
	memset(&d->peer, 0, sizeof(d->peer)); /* sun_path is used as a C string */
	memcpy(&d->peer, from, len);
	d->peer_len = len;
	d->have_peer = true;
	d->alive = 1;
	d->impostors = 0;
	peer_learn_identity(g, cred);
	guest_count(&g->cnt->clients_accepted, 1);
	log_info("guest port: %s: peer is %s (pid %d uid %u)", d->what, addr_str(from, len, a),
		 (int)cred->pid, (unsigned)cred->uid);
	/* Whatever s2g holds now was meant for nobody. */
	guest_s2g_discard(g);
	return true;
}

/* How many max-size frames surely fit in g2s now (a wrap may waste one). */
static unsigned g2s_room(struct guest *g)
{
	uint64_t rec = (sizeof(struct moat_rec_hdr) + g->max_frame + MOAT_REC_ALIGN - 1) &
		       ~(uint64_t)(MOAT_REC_ALIGN - 1);
	uint64_t free_bytes = ring_free_bytes(&g->g2s);

	if (free_bytes < 2 * rec)
		return 0;
	free_bytes = (free_bytes - rec) / rec;
	return free_bytes > GUEST_BATCH ? GUEST_BATCH : (unsigned)free_bytes;
}

static void guest_dgram_prepare(struct dgram *d, unsigned want, uint32_t bufsz)
{
	for (unsigned i = 0; i < want; i++) {
		d->iov[i] = (struct iovec){ d->in + (size_t)i * bufsz, bufsz };
		d->msgs[i].msg_hdr = (struct msghdr){
			.msg_name = d->bound ? &d->from[i] : NULL,
			.msg_namelen = d->bound ? sizeof(d->from[i]) : 0,
			.msg_iov = &d->iov[i],
			.msg_iovlen = 1,
			.msg_control = d->bound ? d->cmsg[i].buf : NULL,
			.msg_controllen = d->bound ? sizeof(d->cmsg[i].buf) : 0,
		};
	}
}

enum dgram_taken { DGRAM_NEXT, DGRAM_RING_FULL, DGRAM_STOP };

/* Datagram @i of a recvmmsg() batch: a frame into g2s, or a counted drop. */
static enum dgram_taken guest_dgram_take(struct guest *g, struct dgram *d, int i, uint64_t *frames,
					 uint64_t *bytes)
{
	const uint8_t *p = d->iov[i].iov_base;
	uint32_t len = d->msgs[i].msg_len;
	int rc;

	if (d->bound) {
		/*
		 * Absent only if the kernel ignored SO_PASSCRED: such
		 * datagrams all look alike and are told apart by path.
		 */
		struct ucred cred = { .pid = -1, .uid = (uid_t)-1, .gid = (gid_t)-1 };

		guest_dgram_cred(&d->msgs[i].msg_hdr, &cred);
		if (!guest_dgram_accept_sender(g, &d->from[i], d->msgs[i].msg_hdr.msg_namelen,
					       &cred))
			return DGRAM_NEXT;
	}
	if (len == 4 && !memcmp(p, "VFKT", 4))
		return DGRAM_NEXT; /* vfkit's handshake */
	if (d->seqpacket && len == 0) {
		peer_lost(g, "closed"); /* end of a seqpacket connection */
		return DGRAM_STOP;
	}
	if ((d->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len > g->max_frame) {
		guest_count(&g->cnt->drops[MOAT_DROP_TOO_LONG], 1);
		return DGRAM_NEXT;
	}
	if (len < 14) {
		guest_count(&g->cnt->drops[MOAT_DROP_TOO_SHORT], 1);
		return DGRAM_NEXT;
	}
	rc = ring_push(&g->g2s, MOAT_REC_FRAME, p, len);
	if (rc == -ENOBUFS) {
		/* Received already: it cannot wait in the socket any more. */
		guest_count(&g->cnt->drops[MOAT_DROP_RING_FULL], 1);
		return DGRAM_RING_FULL;
	}
	if (rc < 0) {
		guest_g2s_blocked(g, rc, len);
		return DGRAM_STOP;
	}
	if (g->pcap)
		pcap_frame(g->pcap, p, len);
	(*frames)++;
	*bytes += len;
	return DGRAM_NEXT;
}

static void guest_dgram_input(struct guest *g)
{
	struct dgram *d = g->fe;
	uint64_t frames = 0, bytes = 0;
	uint32_t bufsz = g->max_frame + 1;

	d->alive = -1;
	for (int round = 0; round < DGRAM_READS && !guest_input_off(g); round++) {
		unsigned want = g2s_room(g);
		bool full = false;
		int n;

		if (!want) {
			/* ring_free_bytes() said 0: full, or an impossible tail. */
			if (guest_g2s_blocked(g, g->g2s.corrupt ? -EBADMSG : -ENOBUFS,
					      g->max_frame))
				break;
			want = 1;
		}
		guest_dgram_prepare(d, want, bufsz);
		n = recvmmsg(d->fd, d->msgs, want, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
		if (n < 0) {
			if (errno == ECONNREFUSED && !d->bound)
				peer_lost(g, "closed");
			else if (errno != EAGAIN && errno != EINTR)
				log_warn("guest port: %s: recvmmsg: %s", d->what, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			enum dgram_taken t = guest_dgram_take(g, d, i, &frames, &bytes);

			if (t == DGRAM_STOP)
				goto out;
			full |= t == DGRAM_RING_FULL;
		}
		if (full && guest_g2s_blocked(g, -ENOBUFS, g->max_frame))
			break;
		if ((unsigned)n < want)
			break;
	}
out:
	guest_g2s_done(g, frames, bytes);
	guest_dgram_set_events(g);
}

static void guest_dgram_output(struct guest *g)
{
	struct dgram *d = g->fe;
	uint64_t frames = 0, bytes = 0;

	g->waiting_out = false;
	/* A path re-bound by someone else since we learned it is not the peer. */
	if (d->bound && d->have_peer && !peer_same_socket(d))
		peer_lost(g, "its socket file was replaced");
	if (!d->have_peer) {
		guest_s2g_discard(g);
		guest_dgram_set_events(g);
		return;
	}
	while (frames < GUEST_OUT_MAX) {
		struct mmsghdr msgs[GUEST_BATCH];
		struct iovec iov[GUEST_BATCH];
		uint64_t start[GUEST_BATCH];
		const uint8_t *p;
		int k = 0, n, sent;

		while (k < GUEST_BATCH && (n = guest_s2g_next(g, &p, NULL)) > 0) {
			start[k] = g->s2g.tail;
			iov[k] = (struct iovec){ (void *)p, (size_t)n };
			msgs[k].msg_hdr = (struct msghdr){
				.msg_name = d->bound ? &d->peer : NULL,
				.msg_namelen = d->bound ? d->peer_len : 0,
				.msg_iov = &iov[k],
				.msg_iovlen = 1,
			};
			ring_consume(&g->s2g);
			k++;
		}
		if (!k)
			break;
		sent = sendmmsg(d->fd, msgs, (unsigned)k, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (sent < 0) {
			int e = errno;

			if (e == EAGAIN || e == ENOBUFS || e == EINTR) {
				g->s2g.tail = start[0];
				g->waiting_out = true;
				if (d->bound)
					guest_dgram_arm_retry(g, frames > 0);
			} else if (e == ECONNREFUSED || e == ENOENT || e == ENOTCONN ||
				   e == EPIPE) {
				peer_lost(g, strerror(e));
			} else {
				/* This frame cannot be sent (EMSGSIZE, ...): skip it, like a wire. */
				if ((e == EACCES || e == EPERM) && !d->denied_logged) {
					d->denied_logged = true;
					log_warn(
						"guest port: %s: the VMM's socket refuses moat (%s): moat "
						"runs as uid %u after set-up; make the VMM's socket "
						"writable for it (umask 0) or use --user",
						d->what, strerror(e), (unsigned)geteuid());
				}
				log_debug("guest port: %s: send: %s", d->what, strerror(e));
				if (k > 1) {
					g->s2g.tail = start[1];
					continue;
				}
			}
			break;
		}
		for (int i = 0; i < sent; i++) {
			if (g->pcap)
				pcap_frame(g->pcap, iov[i].iov_base, (uint32_t)iov[i].iov_len);
			bytes += iov[i].iov_len;
		}
		frames += (uint64_t)sent;
		if (sent < k) {
			g->s2g.tail = start[sent]; /* the next call reports why */
			continue;
		}
		if (k < GUEST_BATCH)
			break;
	}
	if (frames >= GUEST_OUT_MAX && !g->waiting_out)
		guest_yield(g);
	guest_s2g_done(g, frames, bytes);
	guest_dgram_set_events(g);
}

static void guest_dgram_on_timer(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	struct dgram *d = g->fe;
	uint64_t v;

	(void)events;
	if (read(d->tfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	d->timer_armed = false;
	if (g->waiting_out)
		guest_dgram_output(g);
}

static int guest_dgram_start(struct guest *g)
{
	struct dgram *d = g->fe;

	d->in = malloc((size_t)GUEST_BATCH * (g->max_frame + 1));
	if (!d->in) {
		log_error("guest port: out of memory");
		return -1;
	}
	d->w = (struct loop_watch){ .fd = d->fd, .cb = guest_on_fd, .arg = g };
	d->events = EPOLLIN;
	if (loop_add(g->loop, &d->w, EPOLLIN) < 0) {
		log_error("guest port: cannot watch %s: %s", d->what, strerror(errno));
		return -1;
	}
	if (d->tfd >= 0) {
		d->wt = (struct loop_watch){ .fd = d->tfd, .cb = guest_dgram_on_timer, .arg = g };
		if (loop_add(g->loop, &d->wt, EPOLLIN) < 0)
			return -1;
	}
	if (!d->bound)
		guest_count(&g->cnt->clients_accepted, 1);
	return 0;
}

static void guest_dgram_close(struct guest *g)
{
	struct dgram *d = g->fe;

	if (!d)
		return;
	if (d->fd >= 0) {
		close(d->fd);
		if (d->bound)
			guest_unix_unlink(g->spec.path);
	}
	if (d->tfd >= 0)
		close(d->tfd);
	if (d->pidfd >= 0)
		close(d->pidfd);
	free(d->in);
}

const struct guest_ops guest_dgram_ops = {
	.name = "dgram",
	.open = guest_dgram_open,
	.start = guest_dgram_start,
	.input = guest_dgram_input,
	.output = guest_dgram_output,
	.close = guest_dgram_close,
};
