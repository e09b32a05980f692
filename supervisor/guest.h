/* SPDX-License-Identifier: MIT */
/*
 * guest.h - the supervisor's guest port: frames between the guest and the
 * g2s/s2g rings (DESIGN §4, docs/frontends.md)
 */
#ifndef MOAT_GUEST_H
#define MOAT_GUEST_H

#include <limits.h>
#include <net/if.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>

#include "shm/region.h"
#include "supervisor/loop.h"

enum guest_kind {
	GUEST_TAP,
	GUEST_TAP_FD,
	GUEST_STREAM,
	GUEST_STREAM_FD,
	GUEST_DGRAM,
	GUEST_DGRAM_FD,
	GUEST_SHM,
	GUEST_VHOST_USER
};

/**
 * struct guest_spec - a parsed --guest argument
 * @kind:	frontend
 * @ifname:	tap name (tap)
 * @netns:	namespace path the tap lives in, "" for ours (tap)
 * @path:	unix socket path (stream, dgram, shm, vhost-user)
 * @fd:		inherited descriptor (*-fd)
 */
/*
 * --offload: AUTO (the default) lets a tap negotiate and gives shm: none (the
 * VMM cannot say what it takes); ON also promises a shm: VMM segments and
 * partial checksums; OFF asks for nothing anywhere.
 */
enum guest_offload { GUEST_OFFLOAD_AUTO, GUEST_OFFLOAD_ON, GUEST_OFFLOAD_OFF };

struct guest_spec {
	enum guest_kind kind;
	char ifname[IFNAMSIZ];
	char netns[PATH_MAX];
	char path[108];
	int fd;
	enum guest_offload offload; /* --offload */
};

struct guest;

/*
 * Called once per frame ring (g2s, s2g) that fails validation (the netstack,
 * or whoever else writes the region, is compromised): the supervisor treats
 * it as a MOAT_VIOL_RING_CORRUPT violation. @detail names the ring
 * ("g2s ring corrupt", "s2g ring corrupt").
 */
typedef void (*guest_violation_fn)(const char *detail);

int guest_spec_parse(const char *s, struct guest_spec *out, char *err, size_t errlen);
struct guest *guest_open(const struct guest_spec *spec, char *err, size_t errlen);
int guest_open_pcap(struct guest *g, const char *path, unsigned mtu, char *err, size_t errlen);
int guest_start(struct guest *g, struct loop *l, struct region *r, int guest_efd, int netstack_efd);
uint32_t guest_offloads(const struct guest *g);
const char *guest_kind_name(const struct guest *g);
void guest_on_violation(struct guest *g, guest_violation_fn fn);
void guest_flush(struct guest *g);
bool guest_failed(const struct guest *g);
void guest_seccomp(scmp_filter_ctx ctx, const struct guest *g);
int guest_vhost_listener(const struct guest *g);
void guest_close(struct guest *g);

#endif /* MOAT_GUEST_H */
