/* SPDX-License-Identifier: MIT */
/*
 * api.h - the operator's control API (`moat run --api PATH`)
 */
#ifndef MOAT_API_H
#define MOAT_API_H

#include <jansson.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/types.h>

#include "supervisor/loop.h"

struct api;

/* The largest request body (a policy document): a bigger one is a 413. */
#define API_BODY_MAX (1u << 20)

/**
 * struct api_ops - what the API asks of the supervisor (run.c)
 * @status:	fill @obj with the running moat's state (pids, uptime,
 *		guest, counts)
 * @policy_get:	the policy in force, normalized, and its generation
 * @policy_set:	put the policy document @doc in force as a reload would;
 *		0 (its generation in @generation) or -1 with @err set
 * @proxy_request: send the proxy the request document @doc (it carries
 *		its "id"); 0, or -1 if it cannot be sent now
 *		(api_proxy_reply() brings the answer)
 * @published:	a port was published or unpublished ("add", "delete"):
 *		the event
 */
struct api_ops {
	void (*status)(json_t *obj);
	json_t *(*policy_get)(void);
	int (*policy_set)(const char *doc, size_t len, unsigned long long *generation, char *err,
			  size_t errlen);
	int (*proxy_request)(json_t *doc);
	void (*published)(const char *action, json_t *entry);
};

/* How long a request the proxy answers waits before a 503. */
#define API_PROXY_TIMEOUT_MS 2000

int api_start(struct api **out, const char *path, uid_t uid, gid_t gid, struct loop *l,
	      const struct api_ops *ops, char *err, size_t errlen);
int api_timeout_ms(struct api *a);
void api_proxy_reply(struct api *a, json_t *msg);
void api_seccomp(scmp_filter_ctx ctx, const struct api *a);
void api_stop(struct api *a);

#endif /* MOAT_API_H */
