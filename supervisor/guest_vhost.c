/* SPDX-License-Identifier: MIT */
/*
 * guest_vhost.c - the vhost-user frontend's supervisor half: the socket
 *
 * Theory of Operation
 * -------------------
 * With `--guest vhost-user:PATH` the frames never pass through the
 * supervisor: moat-vhost (vhost/vhost.c), a confined child of its own,
 * accepts the VMM, maps guest memory and moves the frames between the
 * virtqueues and the rings. The supervisor's part is what needs its
 * privileges or its lifetime: binding PATH before anything is forked
 * (guest_unix_listen(): a live socket is refused, a stale one replaced),
 * handing the listening socket to moat-vhost (guest_vhost_listener()), and
 * removing PATH at the clean stop. It watches nothing: the counters are
 * moat-vhost's, and a moat-vhost that dies is a child's death like the
 * netstack's (a violation).
 *
 * The offloads: unless --offload off, the netstack is told it may send and
 * receive checksum and segmentation offloads; moat-vhost offers the
 * matching virtio-net features and finishes in software what a driver does
 * not take (vhost/vhostnet.c).
 */
#include <sys/socket.h>

#include "supervisor/guest_int.h"

struct vhost_port {
	int lfd;
};

static int guest_vhost_open_port(struct guest *g, char *err, size_t errlen)
{
	struct vhost_port *s = guest_fe_alloc(g, sizeof(*s), err, errlen);

	if (!s)
		return -1;
	if (g->spec.offload != GUEST_OFFLOAD_OFF)
		g->offloads = MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6;
	s->lfd = guest_unix_listen(g->spec.path, SOCK_STREAM, err, errlen);
	return s->lfd < 0 ? -1 : 0;
}

/**
 * guest_vhost_listener() - the socket moat-vhost accepts VMMs on
 * @g:	port from guest_open()
 *
 * Return: the listening descriptor for --guest vhost-user:, -1 for every
 * other frontend (no moat-vhost is started then).
 */
int guest_vhost_listener(const struct guest *g)
{
	const struct vhost_port *s = g->fe;

	return g->spec.kind == GUEST_VHOST_USER && s ? s->lfd : -1;
}

/* moat-vhost moves the frames: the supervisor has nothing to watch. */
static int guest_vhost_start(struct guest *g)
{
	(void)g;
	return 0;
}

static void guest_vhost_close(struct guest *g)
{
	struct vhost_port *s = g->fe;

	if (s)
		guest_unix_close(g, -1, s->lfd);
}

const struct guest_ops guest_vhost_ops = {
	.name = "vhost-user",
	.open = guest_vhost_open_port,
	.start = guest_vhost_start,
	.close = guest_vhost_close,
};
