/* SPDX-License-Identifier: MIT */
/*
 * guest_shm.c - the shm frontend: the VMM maps the frame rings itself
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor's loop (guest.c dispatches here). With
 * `--guest shm:PATH` the VMM is the producer of g2s and the consumer of
 * s2g, as libkrun's NetWorker is in microsandbox, and the supervisor moves
 * no frames at all. It listens on the unix stream socket PATH and, to the
 * VMM that connects, sends one struct moat_shm_hello with three
 * descriptors (SCM_RIGHTS): the region's memfd, the VMM's wake eventfd (the
 * one the netstack writes when s2g has data or g2s has space: the eventfd
 * the supervisor would otherwise use for the guest port) and the netstack's
 * eventfd. The protocol is in shm/moat_shm.h and docs/shm.md.
 *
 * Then we only hold the connection to notice the VMM leaving (EOF or an
 * error; bytes it sends are read and ignored). One VMM at a time: while one
 * is connected the listening socket is not watched, so a second waits in
 * the backlog and gets the region when the first has gone; the rings keep
 * their positions, so it carries on where the first stopped. We count
 * clients_accepted and clients_dropped; the frame counters of the guest
 * block belong to the VMM.
 *
 * Trust: the memfd cannot be handed out by part, so the VMM can write the
 * whole region. It is therefore as untrusted as the netstack, which every
 * reader of the region already assumes (rings and mailboxes are validated;
 * the proxy decides every flow). docs/shm.md says what that means.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/guest_int.h"

struct shm {
	int lfd, cfd;
	struct loop_watch wl, wc;
	char what[128];
};

static int guest_shm_open_port(struct guest *g, char *err, size_t errlen)
{
	struct shm *s = guest_fe_alloc(g, sizeof(*s), err, errlen);

	if (!s)
		return -1;
	s->cfd = -1;
	snprintf(s->what, sizeof(s->what), "shm:%s", g->spec.path);
	/* Nothing to negotiate with: --offload on is the orchestrator's word. */
	if (g->spec.offload == GUEST_OFFLOAD_ON)
		g->offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6;
	s->lfd = guest_unix_listen(g->spec.path, SOCK_STREAM, err, errlen);
	return s->lfd < 0 ? -1 : 0;
}

/* Hand the region and the two eventfds to the VMM on @fd. */
static int guest_shm_send_hello(struct guest *g, int fd)
{
	struct moat_shm_hello h = {
		.magic = MOAT_SHM_HELLO_MAGIC,
		.version = MOAT_SHM_VERSION,
		.nfds = MOAT_SHM_NFDS,
		.region_size = g->region->hdr.region_size,
	};
	int fds[MOAT_SHM_NFDS];
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	ssize_t n;

	fds[MOAT_SHM_FD_REGION] = g->region->fd;
	fds[MOAT_SHM_FD_VMM] = g->guest_efd;
	fds[MOAT_SHM_FD_NETSTACK] = g->netstack_efd;
	memset(u.buf, 0, sizeof(u.buf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	/* A fresh socket's buffer always takes 24 bytes: no partial send. */
	n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n != (ssize_t)sizeof(h))
		return n < 0 ? -errno : -EIO;
	return 0;
}

static void guest_shm_on_client(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	struct shm *s = g->fe;
	char buf[256];
	ssize_t n;

	(void)events;
	do {
		n = read(s->cfd, buf, sizeof(buf));
	} while (n > 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	loop_del(g->loop, &s->wc);
	close(s->cfd);
	s->cfd = -1;
	guest_count(&g->cnt->clients_dropped, 1);
	log_info("guest port: %s: the VMM left (%s); waiting for the next", s->what,
		 n == 0 ? "closed" : strerror(errno));
	loop_add(g->loop, &s->wl, EPOLLIN);
}

static void guest_shm_on_listen(struct loop_watch *w, uint32_t events)
{
	struct guest *g = w->arg;
	struct shm *s = g->fe;
	int fd, rc;

	(void)events;
	if (s->cfd >= 0)
		return;
	fd = guest_unix_accept(s->lfd, s->what);
	if (fd < 0)
		return;
	rc = guest_shm_send_hello(g, fd);
	if (rc < 0) {
		log_warn("guest port: %s: cannot hand the region to the VMM: %s", s->what,
			 strerror(-rc));
		close(fd);
		return;
	}
	s->cfd = fd;
	s->wc = (struct loop_watch){ .fd = fd, .cb = guest_shm_on_client, .arg = g };
	loop_del(g->loop, &s->wl);
	loop_add(g->loop, &s->wc, EPOLLIN | EPOLLRDHUP);
	guest_count(&g->cnt->clients_accepted, 1);
	log_info("guest port: %s: VMM connected; it has the rings", s->what);
}

static int guest_shm_start(struct guest *g)
{
	struct shm *s = g->fe;

	return guest_unix_watch_listener(g, &s->wl, s->lfd, guest_shm_on_listen, s->what);
}

static void guest_shm_close(struct guest *g)
{
	struct shm *s = g->fe;

	if (!s)
		return;
	guest_unix_close(g, s->cfd, s->lfd);
}

const struct guest_ops guest_shm_ops = {
	.name = "shm",
	.open = guest_shm_open_port,
	.start = guest_shm_start,
	.close = guest_shm_close,
};
