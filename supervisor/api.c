/* SPDX-License-Identifier: MIT */
/*
 * api.c - the operator's control API: HTTP/1.1 and JSON on a unix socket
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor, in its own loop: libmicrohttpd (loaded by
 * httpd.c) without a thread of its own, in its epoll mode, so every request
 * is handled in the loop thread that owns the policy and the control
 * channel, and nothing needs a lock. The daemon's epoll descriptor is one
 * more watch in the loop; api_timeout_ms() gives the loop the time of the
 * next connection timeout.
 *
 * The socket (PATH) is bound before the supervisor confines itself, mode
 * 0600, owned by the user moat runs as afterwards; a stale socket file is
 * replaced, a live one refused (guest_unix_listen()).
 *
 * Routes (docs/api.md): GET /status, GET /policy, POST /policy, GET /flows,
 * GET/POST/DELETE /publish.
 * The flows and the published ports live in the proxy: those requests go to
 * it over the
 * control channel (ops->flows_request, tagged with an id), suspends the
 * connection, collects the proxy's reply messages (api_proxy_reply()) and
 * resumes it to answer; without an answer in API_PROXY_TIMEOUT_MS it is a
 * 503. A body is
 * read up to API_BODY_MAX bytes (more: 413, the rest is not read); a
 * client that sends nothing is closed after API_CONN_TIMEOUT_S; at most
 * API_CONNECTIONS at once. Unknown paths are 404, other methods 405 with
 * Allow. Every answer is JSON; an error is {"error": "..."}.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/list.h"
#include "common/log.h"
#include "supervisor/api.h"
#include "supervisor/guest_int.h"
#include "supervisor/httpd.h"

#define API_CONNECTIONS	   8
#define API_CONN_TIMEOUT_S 10u

struct api {
	struct MHD_Daemon *mhd;
	struct loop *loop;
	struct loop_watch w;
	const struct api_ops *ops;
	struct list_head pending; /* GET /flows waiting for the proxy */
	unsigned long long next_id;
	char path[108];
};

/*
 * One request: its body so far; for GET /flows the proxy's answer as it
 * comes (@flows), the protocol asked for (@proto, "" for all), and where it
 * stands.
 */
struct api_req {
	char *body;
	size_t len;
	bool too_big;
	bool waiting, done, timed_out;
	enum { REQ_FLOWS = 1, REQ_PUBLISH } kind;
	json_t *entry;	/* the publish request's entry (its event) */
	json_t *answer; /* the proxy's publish answer */
	struct MHD_Connection *conn;
	struct list_head node;
	unsigned long long id;
	uint64_t deadline_ms;
	json_t *flows;
	char proto[4];
};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/*
 * The answer is complete (or will not come): let MHD call on_request again.
 * Without a thread of its own MHD acts on the resume at its next run, so
 * the caller runs it (req_resumed()).
 */
static void req_resume(struct api_req *q)
{
	list_del(&q->node);
	q->waiting = false;
	httpd.resume_connection(q->conn);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, json_t *obj,
			     const char *allow)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t n;

	json_decref(obj);
	if (!text)
		return MHD_NO;
	n = strlen(text);
	r = httpd.create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	httpd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (allow)
		httpd.add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = httpd.queue_response(c, status, r);
	httpd.destroy_response(r);
	return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
				   const char *allow)
{
	return reply(c, status, json_pack("{s:s}", "error", msg), allow);
}

static enum MHD_Result post_policy(struct api *a, struct MHD_Connection *c, struct api_req *q)
{
	unsigned long long gen = 0;
	char err[512];

	if (q->too_big)
		return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "the policy is over 1 MiB", NULL);
	if (!q->len)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, "no policy in the body", NULL);
	if (a->ops->policy_set(q->body, q->len, &gen, err, sizeof(err)) < 0)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, err, NULL);
	return reply(c, MHD_HTTP_OK, json_pack("{s:I}", "generation", (json_int_t)gen), NULL);
}

/*
 * Hand @doc (stolen) to the proxy as request q->id and suspend the
 * connection until the answer (or the timeout) resumes it.
 */
static enum MHD_Result ask_proxy(struct api *a, struct MHD_Connection *c, struct api_req *q,
				 json_t *doc)
{
	int rc;

	q->id = ++a->next_id;
	json_object_set_new(doc, "id", json_integer((json_int_t)q->id));
	rc = a->ops->proxy_request(doc);
	json_decref(doc);
	if (rc < 0)
		return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the proxy is busy", NULL);
	q->conn = c;
	q->waiting = true;
	q->deadline_ms = now_ms() + API_PROXY_TIMEOUT_MS;
	list_add_tail(&a->pending, &q->node);
	httpd.suspend_connection(c);
	return MHD_YES;
}

static enum MHD_Result get_flows(struct api *a, struct MHD_Connection *c, struct api_req *q)
{
	const char *proto;

	if (q->done)
		return reply(c, MHD_HTTP_OK, json_incref(q->flows), NULL);
	proto = httpd.lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "protocol");
	if (proto && strcmp(proto, "tcp") && strcmp(proto, "udp"))
		return reply_error(c, MHD_HTTP_BAD_REQUEST, "protocol is tcp or udp", NULL);
	snprintf(q->proto, sizeof(q->proto), "%s", proto ? proto : "");
	q->kind = REQ_FLOWS;
	q->flows = json_array();
	return ask_proxy(a, c, q, json_pack("{s:s}", "request", "flows"));
}

/*
 * The body of POST or DELETE /publish, checked and completed: protocol
 * (default "tcp"), host_address (default "127.0.0.1"), host_port, and
 * guest_port (POST only). Return: the entry, or NULL with @why set.
 */
static json_t *publish_entry(const struct api_req *q, bool add, const char **why)
{
	static const char *const keys[] = { "protocol", "host_address", "host_port", "guest_port" };
	json_t *in = q->len ? json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *out = json_object(), *v;
	const char *key;

	*why = "the body must be {\"protocol\", \"host_address\", \"host_port\", \"guest_port\"}";
	if (!json_is_object(in))
		goto bad;
	json_object_foreach(in, key, v)
	{
		bool known = false;

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			known |= !strcmp(key, keys[i]);
		if (!known)
			goto bad;
		json_object_set(out, key, v);
	}
	if (!json_object_get(out, "protocol"))
		json_object_set_new(out, "protocol", json_string("tcp"));
	if (!json_object_get(out, "host_address"))
		json_object_set_new(out, "host_address", json_string("127.0.0.1"));
	if (!json_is_integer(json_object_get(out, "host_port")) ||
	    (add && !json_is_integer(json_object_get(out, "guest_port")))) {
		*why = add ? "host_port and guest_port are required" : "host_port is required";
		goto bad;
	}
	if (!add && !json_object_get(out, "guest_port"))
		json_object_set_new(out, "guest_port", json_integer(1)); /* not compared */
	json_decref(in);
	return out;
bad:
	json_decref(in);
	json_decref(out);
	return NULL;
}

static enum MHD_Result do_publish(struct api *a, struct MHD_Connection *c, struct api_req *q,
				  const char *method)
{
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET),
	     add = !strcmp(method, MHD_HTTP_METHOD_POST);
	const char *why;

	if (q->done) {
		json_t *ans = q->answer;

		if (!json_is_true(json_object_get(ans, "ok"))) {
			json_int_t st = json_integer_value(json_object_get(ans, "status"));
			const char *e = json_string_value(json_object_get(ans, "error"));

			return reply_error(c, st >= 400 && st < 600 ? (unsigned)st : 500,
					   e ? e : "refused", NULL);
		}
		if (!get)
			a->ops->published(add ? "add" : "delete", q->entry);
		return reply(c, add ? MHD_HTTP_CREATED : MHD_HTTP_OK,
			     json_incref(json_object_get(ans, "publish")), NULL);
	}
	if (!get && !add && strcmp(method, MHD_HTTP_METHOD_DELETE))
		return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, POST or DELETE",
				   "GET, POST, DELETE");
	if (q->too_big)
		return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is over 1 MiB", NULL);
	q->kind = REQ_PUBLISH;
	if (get)
		return ask_proxy(a, c, q, json_pack("{s:s}", "request", "publish_list"));
	q->entry = publish_entry(q, add, &why);
	if (!q->entry)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, why, NULL);
	return ask_proxy(a, c, q,
			 json_pack("{s:s,s:O}", "request", add ? "publish_add" : "publish_del",
				   "publish", q->entry));
}

/* The request is complete: answer it. */
static enum MHD_Result route(struct api *a, struct MHD_Connection *c, const char *url,
			     const char *method, struct api_req *q)
{
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET);
	json_t *obj;

	if (!strcmp(url, "/status")) {
		if (!get)
			return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only", "GET");
		obj = json_object();
		a->ops->status(obj);
		return reply(c, MHD_HTTP_OK, obj, NULL);
	}
	if (!strcmp(url, "/policy")) {
		if (get)
			return reply(c, MHD_HTTP_OK, a->ops->policy_get(), NULL);
		if (!strcmp(method, MHD_HTTP_METHOD_POST))
			return post_policy(a, c, q);
		return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or POST", "GET, POST");
	}
	if (q->timed_out)
		return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the proxy did not answer",
				   NULL);
	if (!strcmp(url, "/flows")) {
		if (!get)
			return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only", "GET");
		return get_flows(a, c, q);
	}
	if (!strcmp(url, "/publish"))
		return do_publish(a, c, q, method);
	return reply_error(c, MHD_HTTP_NOT_FOUND, "no such path (see docs/api.md)", NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct api_req *q = *con_cls;

	(void)version;
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		*con_cls = q;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!q->too_big && q->len + *upload_size <= API_BODY_MAX) {
			char *nb = realloc(q->body, q->len + *upload_size + 1);

			if (!nb)
				return MHD_NO;
			memcpy(nb + q->len, upload, *upload_size);
			q->body = nb;
			q->len += *upload_size;
		} else {
			q->too_big = true; /* read on, keep nothing */
		}
		*upload_size = 0;
		return MHD_YES;
	}
	return route(cls, c, url, method, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct api_req *q = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (q) {
		if (q->waiting)
			list_del(&q->node);
		json_decref(q->flows);
		json_decref(q->entry);
		json_decref(q->answer);
		free(q->body);
		free(q);
		*con_cls = NULL;
	}
}

static void on_events(struct loop_watch *w, uint32_t events)
{
	struct api *a = w->arg;

	(void)events;
	httpd.run(a->mhd);
}

/**
 * api_start() - serve the control API on a unix socket
 * @out:	set to the API, or NULL when @path is NULL
 * @path:	--api, or NULL
 * @uid, @gid:	the socket's owner (the user moat becomes)
 * @l:		the supervisor's loop
 * @ops:	the supervisor's side of the requests
 * @err:	one line saying what to fix
 * @errlen:	size of @err
 *
 * Context: supervisor set-up, before confinement (binds, loads
 * libmicrohttpd).
 * Return: 0, or -1 with @err set and nothing left behind.
 */
int api_start(struct api **out, const char *path, uid_t uid, gid_t gid, struct loop *l,
	      const struct api_ops *ops, char *err, size_t errlen)
{
	const union MHD_DaemonInfo *info;
	struct api *a;
	int fd;

	*out = NULL;
	if (!path)
		return 0;
	if (httpd_load(err, errlen) < 0)
		return -1;
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fd = guest_unix_listen(path, SOCK_STREAM, err, errlen);
	if (fd < 0) {
		free(a);
		return -1;
	}
	snprintf(a->path, sizeof(a->path), "%s", path);
	if (fchmod(fd, 0600) < 0 || chmod(path, 0600) < 0 || chown(path, uid, gid) < 0) {
		snprintf(err, errlen, "%s: cannot make it 0600 for uid %u: %s", path, (unsigned)uid,
			 strerror(errno));
		goto fail;
	}
	a->loop = l;
	a->ops = ops;
	list_init(&a->pending);
	a->mhd = httpd.start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0,
				    NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
				    httpd_log, (void *)"api", MHD_OPTION_LISTEN_SOCKET, fd,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONNECTIONS,
				    MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				    MHD_OPTION_END);
	if (!a->mhd) {
		snprintf(err, errlen, "%s: cannot start the HTTP server", path);
		goto fail;
	}
	fd = -1; /* MHD's now */
	info = httpd.get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	a->w = (struct loop_watch){ .fd = info ? info->epoll_fd : -1, .cb = on_events, .arg = a };
	if (!info || loop_add(l, &a->w, EPOLLIN) < 0) {
		snprintf(err, errlen, "%s: cannot watch the HTTP server", path);
		goto fail;
	}
	log_info("api: serving on unix:%s", path);
	*out = a;
	return 0;
fail:
	if (a->mhd)
		httpd.stop_daemon(a->mhd);
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(a);
	return -1;
}

/**
 * api_timeout_ms() - when the loop must call the API next
 * @a:	the API, or NULL
 *
 * Return: milliseconds until a connection's timeout, or -1 for none.
 */
int api_timeout_ms(struct api *a)
{
	MHD_UNSIGNED_LONG_LONG t = 60000, m;
	uint64_t now = now_ms();
	struct list_head *n, *next;

	if (!a)
		return -1;
	for (n = a->pending.next; n != &a->pending; n = next) {
		struct api_req *q = list_entry(n, struct api_req, node);

		next = n->next;
		if (now >= q->deadline_ms) {
			q->timed_out = true;
			req_resume(q);
			t = 0; /* MHD answers it in the run below */
		} else if (q->deadline_ms - now < t) {
			t = q->deadline_ms - now;
		}
	}
	if (t && httpd.get_timeout(a->mhd, &m) == MHD_YES && m < t)
		t = m;
	if (!t) { /* due now: a resumed request, or a connection's timeout */
		httpd.run(a->mhd);
		if (httpd.get_timeout(a->mhd, &m) == MHD_YES && m < 60000)
			return (int)m;
		return !list_empty(&a->pending) ? 10 : 60000;
	}
	return (int)t;
}

/**
 * api_proxy_reply() - one of the proxy's answers to a GET /flows
 * @a:		the API, or NULL
 * @msg:	{"reply": "flows", "id": N, "flows": [...], "more": bool}
 *		(untrusted: anything else is ignored)
 */
void api_proxy_reply(struct api *a, json_t *msg)
{
	json_t *flows = json_object_get(msg, "flows"), *f;
	json_int_t id = json_integer_value(json_object_get(msg, "id"));
	struct list_head *n;
	size_t i;

	if (!a)
		return;
	for (n = a->pending.next; n != &a->pending; n = n->next) {
		struct api_req *q = list_entry(n, struct api_req, node);

		if ((json_int_t)q->id != id)
			continue;
		if (q->kind == REQ_PUBLISH) {
			q->answer = json_incref(msg);
			q->done = true;
			req_resume(q);
			httpd.run(a->mhd);
			return;
		}
		if (!json_is_array(flows))
			return;
		json_array_foreach(flows, i, f)
		{
			const char *p = json_string_value(json_object_get(f, "protocol"));

			if (json_is_object(f) && p && (!q->proto[0] || !strcmp(p, q->proto)))
				json_array_append(q->flows, f);
		}
		if (!json_is_true(json_object_get(msg, "more"))) {
			q->done = true;
			req_resume(q);
			httpd.run(a->mhd);
		}
		return;
	}
}

/**
 * api_seccomp() - the system calls the API's requests make in the loop
 * @ctx:	the supervisor's filter
 * @a:		the API, or NULL (nothing is added)
 */
void api_seccomp(scmp_filter_ctx ctx, const struct api *a)
{
	if (!a)
		return;
	httpd_seccomp(ctx);
	ALLOW(ctx, epoll_wait); /* MHD_run() looks at its own epoll set */
}

/**
 * api_stop() - close every connection and the socket (its file is removed)
 * @a:	the API, or NULL
 */
void api_stop(struct api *a)
{
	if (!a)
		return;
	/* libmicrohttpd wants no connection suspended when it stops. */
	while (!list_empty(&a->pending)) {
		struct api_req *q = list_entry(a->pending.next, struct api_req, node);

		q->timed_out = true;
		req_resume(q);
	}
	httpd.run(a->mhd);
	loop_del(a->loop, &a->w);
	httpd.stop_daemon(a->mhd);
	guest_unix_unlink(a->path);
	free(a);
}
