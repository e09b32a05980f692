/* SPDX-License-Identifier: MIT */
/*
 * control.c - the proxy's end of the control channel (FD_CONTROL)
 *
 * Theory of Operation
 * -------------------
 * One stream socket to the supervisor. The protocol (framing, limits, the
 * documents and the events) is common/channel.h; the framing and the
 * non-blocking I/O are common/channel.c, shared with the supervisor.
 *
 * Supervisor -> proxy: configuration documents, one at start-up and one
 * per successful SIGHUP reload. Each is parsed strictly (duplicate keys and
 * unknown keys are errors; the policy goes through policy_parse(), the
 * same code as a policy file, with the gateway, DNS and gateway-v6
 * addresses of the region header as the "host" group) and only then put in
 * force: the policy pointer is swapped in one step, so every decision made
 * afterwards (new connections, new UDP flows, DNS queries) uses the new
 * policy while established flows carry on. Nameservers and published
 * ports are taken from the first document. A document that fails to parse
 * changes nothing; at start-up that is fatal (no policy, no proxy), and so
 * is a framing error (a length of 0 or above CHANNEL_CONFIG_MAX).
 * A document {"request": "flows", "id": N} (the control API's GET /flows)
 * changes nothing: it is answered with reply messages on the event side,
 * {"reply": "flows", "id": N, "flows": [...], "more": bool}, 128 flows
 * each, the last with more = false.
 * Documents are reassembled by a channel_in whose one buffer of
 * CHANNEL_CONFIG_MAX is allocated at init and touched only as far as the
 * largest document really sent.
 *
 * Proxy -> supervisor: events, one compact JSON object each ("denial",
 * "dns_denial", "limit"), which the supervisor validates, stamps and
 * writes to --events. This side never blocks: events go into a channel_out
 * of CHANNEL_PROXY_QUEUE_MAX bytes written whenever the socket takes them
 * (UV_WRITABLE is armed only while bytes wait); a full queue drops the
 * event and counts it (logged once in a while). The supervisor does not
 * depend on these events, so a dropped one costs a line in --events, never
 * a decision.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/channel.h"
#include "common/log.h"
#include "proxy/proxy_internal.h"

/**
 * struct control - the proxy's end of the control channel
 * @poll:	libuv watch on px->control_fd
 * @in:		configuration documents being reassembled
 * @out:	events waiting for the supervisor
 * @px:		back pointer, for the channel callback
 * @reject:	why the last document was refused (for the start-up error)
 * @dropped, @dropped_logged: events dropped for a full queue; last logged count
 * @writable_armed: UV_WRITABLE is in the poll mask
 * @out_dead:	a write failed: the supervisor is gone; events are dropped
 * @dead:	the channel is closed; nothing more is read or written
 */
struct control {
	uv_poll_t poll;
	struct channel_in in;
	struct channel_out out;
	struct proxy *px;
	char reject[512];
	uint64_t dropped, dropped_logged;
	bool writable_armed, out_dead, dead;
};

/* "1.2.3.4:53" or "[2001:db8::1]:53", as a socket address */
static int parse_hostport(const char *s, struct sockaddr_storage *ss)
{
	struct policy_addr a;
	uint16_t port;

	memset(ss, 0, sizeof(*ss));
	if (policy_hostport_parse(s, 0, &a, &port) < 0)
		return -EINVAL;
	if (a.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		memcpy(&sin->sin_addr, a.addr, 4);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		memcpy(&sin6->sin6_addr, a.addr, 16);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return 0;
}

static int parse_publish(json_t *arr, struct policy_publish *out, int *n, char *err, size_t errlen)
{
	size_t i;
	json_t *v;

	*n = 0;
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "control document: publish: not an array");
		return -EINVAL;
	}
	json_array_foreach(arr, i, v)
	{
		struct policy_publish *p = &out[*n];
		const char *key;
		json_t *f;
		int seen = 0;

		if (*n >= POLICY_MAX_PUBLISH) {
			snprintf(err, errlen, "control document: publish: too many entries");
			return -EINVAL;
		}
		if (!json_is_object(v)) {
			snprintf(err, errlen, "control document: publish[%zu]: not an object", i);
			return -EINVAL;
		}
		memset(p, 0, sizeof(*p));
		json_object_foreach(v, key, f)
		{
			if (!strcmp(key, "host_address") && json_is_string(f)) {
				if (policy_addr_parse(json_string_value(f), &p->host_addr) < 0) {
					snprintf(err, errlen,
						 "control document: publish[%zu]: bad host_address",
						 i);
					return -EINVAL;
				}
				seen |= 1;
			} else if ((!strcmp(key, "host_port") || !strcmp(key, "guest_port")) &&
				   json_is_integer(f) && json_integer_value(f) >= 1 &&
				   json_integer_value(f) <= 65535) {
				if (key[0] == 'h')
					p->host_port = (uint16_t)json_integer_value(f);
				else
					p->guest_port = (uint16_t)json_integer_value(f);
				seen |= key[0] == 'h' ? 2 : 4;
			} else if (!strcmp(key, "protocol") && json_is_string(f) &&
				   (!strcmp(json_string_value(f), "tcp") ||
				    !strcmp(json_string_value(f), "udp"))) {
				p->proto = json_string_value(f)[0] == 't' ? POLICY_PROTO_TCP :
									    POLICY_PROTO_UDP;
				seen |= 8;
			} else {
				snprintf(
					err, errlen,
					"control document: publish[%zu]: bad or unknown field '%s'",
					i, key);
				return -EINVAL;
			}
		}
		if (seen != 15) {
			snprintf(err, errlen, "control document: publish[%zu]: a field is missing",
				 i);
			return -EINVAL;
		}
		(*n)++;
	}
	return 0;
}

/* One configuration document from the supervisor, parsed and not yet in force. */
struct control_doc {
	struct policy *policy;
	uint64_t generation;
	struct sockaddr_storage ns[POLICY_MAX_NAMESERVERS];
	int n_ns; /* -1: not given (keep ours) */
	struct policy_publish pub[POLICY_MAX_PUBLISH];
	int n_pub; /* -1: not given */
};

static int parse_nameservers(json_t *v, struct control_doc *d, char *err, size_t errlen)
{
	size_t i;
	json_t *s;

	d->n_ns = 0;
	json_array_foreach(v, i, s)
	{
		struct sockaddr_storage one;

		if (!json_is_string(s) || parse_hostport(json_string_value(s), &one) < 0) {
			snprintf(err, errlen, "control document: bad nameserver entry %zu", i);
			return -EINVAL;
		}
		/* Beyond the policy's own bound: the first ones are enough. */
		if (d->n_ns < POLICY_MAX_NAMESERVERS)
			d->ns[d->n_ns++] = one;
	}
	return 0;
}

/* The policy member, through the same parser as a policy file. */
static int parse_policy_member(struct proxy *px, json_t *pol, struct control_doc *d, char *err,
			       size_t errlen)
{
	char *text = json_dumps(pol, JSON_COMPACT);
	int rc;

	if (!text) {
		snprintf(err, errlen, "control document: cannot re-serialize the policy");
		return -EINVAL;
	}
	rc = policy_parse(text, strlen(text), "control", &px->env, &d->policy, err, errlen);
	free(text);
	return rc < 0 ? -1 : 0;
}

static int control_doc_parse(struct proxy *px, json_t *doc, struct control_doc *d, char *err,
			     size_t errlen)
{
	json_t *v, *pol = NULL;
	const char *key;

	if (!json_is_object(doc)) {
		snprintf(err, errlen, "control document: not an object");
		return -EINVAL;
	}
	json_object_foreach(doc, key, v)
	{
		int rc = 0;

		if (!strcmp(key, "policy") && json_is_object(v)) {
			pol = v;
		} else if (!strcmp(key, "generation") && json_is_integer(v) &&
			   json_integer_value(v) >= 0) {
			d->generation = (uint64_t)json_integer_value(v);
		} else if (!strcmp(key, "nameservers") && json_is_array(v)) {
			rc = parse_nameservers(v, d, err, errlen);
		} else if (!strcmp(key, "publish")) {
			rc = parse_publish(v, d->pub, &d->n_pub, err, errlen);
		} else {
			snprintf(err, errlen, "control document: bad or unknown key '%s'", key);
			rc = -1;
		}
		if (rc < 0)
			return -EINVAL;
	}
	if (!pol) {
		snprintf(err, errlen, "control document: no policy");
		return -EINVAL;
	}
	return parse_policy_member(px, pol, d, err, errlen);
}

/* Published ports are taken once, at start: the document's, then the policy's. */
static void publish_at_start(struct proxy *px, const struct control_doc *d)
{
	const struct policy_publish *pp;
	int n = policy_publish(px->policy, &pp);

	if (d->n_pub > 0) {
		memcpy(px->publish, d->pub, sizeof(d->pub[0]) * (size_t)d->n_pub);
		px->n_publish = d->n_pub;
	}
	for (int i = 0; i < n && px->n_publish < POLICY_MAX_PUBLISH; i++)
		px->publish[px->n_publish++] = pp[i];
	for (int i = 0; i < px->n_publish; i++)
		publish_listen(px, &px->publish[i]);
}

/* ---- requests from the control API (supervisor/api.c) ---------------- */

static void emit(struct proxy *px, json_t *o);

/* Flows per reply message: each well under CHANNEL_EVENT_MAX. */
#define CONTROL_FLOWS_PER_REPLY 128

struct flows_reply {
	struct proxy *px;
	json_int_t id;
	json_t *flows;
};

static void flows_flush(struct flows_reply *r, bool more)
{
	emit(r->px, json_pack("{s:s,s:I,s:o,s:b}", "reply", "flows", "id", r->id, "flows", r->flows,
			      "more", more));
	r->flows = json_array();
}

static void flows_add(void *arg, const struct relay_flow_info *fi)
{
	struct flows_reply *r = arg;
	uint64_t now = uv_now(&r->px->loop);
	char src[INET6_ADDRSTRLEN] = "?", dst[INET6_ADDRSTRLEN] = "?";

	inet_ntop(fi->src->family == 6 ? AF_INET6 : AF_INET, fi->src->addr, src, sizeof(src));
	inet_ntop(fi->dst->family == 6 ? AF_INET6 : AF_INET, fi->dst->addr, dst, sizeof(dst));
	json_array_append_new(
		r->flows,
		json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:o,s:I,s:I,s:I}", "protocol",
			  policy_proto_name(fi->proto), "direction",
			  fi->ingress ? "ingress" : "egress", "src", src, "sport",
			  (int)fi->src->port, "dst", dst, "dport", (int)fi->dst->port, "state",
			  fi->state, "rule", fi->rule >= 0 ? json_integer(fi->rule) : json_null(),
			  "tx_bytes", (json_int_t)fi->tx, "rx_bytes", (json_int_t)fi->rx, "age_s",
			  (json_int_t)((now - fi->born_ms) / 1000)));
	if (json_array_size(r->flows) == CONTROL_FLOWS_PER_REPLY)
		flows_flush(r, true);
}

static void publish_add_json(void *arg, const struct policy_publish *pub)
{
	char a[INET6_ADDRSTRLEN] = "?";

	policy_addr_format(&pub->host_addr, a, sizeof(a));
	json_array_append_new(arg, json_pack("{s:s,s:s,s:i,s:i}", "protocol",
					     policy_proto_name(pub->proto), "host_address", a,
					     "host_port", (int)pub->host_port, "guest_port",
					     (int)pub->guest_port));
}

/* The answer to a publish request: ok with the ports now, or an HTTP status and why. */
static void publish_reply(struct proxy *px, json_int_t id, int status, const char *why)
{
	json_t *list;

	if (status) {
		emit(px, json_pack("{s:s,s:I,s:b,s:i,s:s}", "reply", "publish", "id", id, "ok", 0,
				   "status", status, "error", why));
		return;
	}
	list = json_array();
	publish_list(px, publish_add_json, list);
	emit(px, json_pack("{s:s,s:I,s:b,s:o}", "reply", "publish", "id", id, "ok", 1, "publish",
			   list));
}

/*
 * {"request": "publish_add" | "publish_del" | "publish_list", "id": N,
 * "publish": {...}}: a port published, unpublished, or the list. Nothing is
 * half done: a port in use or a duplicate changes nothing (409), a port not
 * published is 404, a bad entry 400.
 */
static void control_publish(struct proxy *px, const char *what, json_int_t id, json_t *doc)
{
	struct policy_publish pub;
	char why[160];
	int n, rc;

	if (!strcmp(what, "publish_list")) {
		publish_reply(px, id, 0, NULL);
		return;
	}
	{
		json_t *arr = json_array();

		json_array_append(arr, json_object_get(doc, "publish"));
		rc = parse_publish(arr, &pub, &n, why, sizeof(why));
		json_decref(arr);
	}
	if (rc < 0 || n != 1) {
		publish_reply(px, id, 400, rc < 0 ? why : "no publish entry");
		return;
	}
	if (!strcmp(what, "publish_del")) {
		if (publish_remove(px, &pub) < 0)
			publish_reply(px, id, 404, "that port is not published");
		else
			publish_reply(px, id, 0, NULL);
		return;
	}
	if (publish_find(px, &pub)) {
		publish_reply(px, id, 409, "that host address and port are published already");
		return;
	}
	rc = publish_listen(px, &pub);
	if (rc == -EADDRINUSE || rc == -EACCES) {
		snprintf(why, sizeof(why), "cannot use the host port: %s", strerror(-rc));
		publish_reply(px, id, 409, why);
	} else if (rc < 0) {
		snprintf(why, sizeof(why), "cannot publish: %s", strerror(-rc));
		publish_reply(px, id, 400, why);
	} else {
		publish_reply(px, id, 0, NULL);
	}
}

/*
 * A request document: {"request": "flows", "id": N}, or a publish request
 * (control_publish()). The answer goes back as events {"reply": "flows",
 * "id": N, "flows": [...], "more": bool}, as many as the flows need.
 * Return: 0, or -EINVAL for a request we do not know.
 */
static int control_request(struct proxy *px, json_t *doc, char *err, size_t errlen)
{
	const char *what = json_string_value(json_object_get(doc, "request"));
	json_t *id = json_object_get(doc, "id");
	struct flows_reply r = { .px = px };

	if (what && json_is_integer(id) && !strncmp(what, "publish_", 8) &&
	    (!strcmp(what, "publish_add") || !strcmp(what, "publish_del") ||
	     !strcmp(what, "publish_list"))) {
		control_publish(px, what, json_integer_value(id), doc);
		return 0;
	}
	if (!what || strcmp(what, "flows") || !json_is_integer(id)) {
		snprintf(err, errlen, "control request: unknown or without an id");
		return -EINVAL;
	}
	r.id = json_integer_value(id);
	log_debug("control: flows request %lld", (long long)r.id);
	r.flows = json_array();
	tcpflow_list(px, flows_add, &r);
	udpflow_list(px, flows_add, &r);
	udppub_list(px, flows_add, &r);
	flows_flush(&r, false);
	json_decref(r.flows);
	return 0;
}

/**
 * control_apply() - parse one configuration document and put it in force
 * @px:		proxy
 * @json:	the document (not NUL-terminated)
 * @len:	its length
 * @err:	reason on failure
 * @errlen:	size of @err
 *
 * Nothing changes unless the whole document is valid.
 *
 * Return: 0, or -EINVAL (the reason in @err).
 */
int control_apply(struct proxy *px, const char *json, size_t len, char *err, size_t errlen)
{
	struct control_doc d = { .n_ns = -1, .n_pub = -1 };
	bool first = px->policy == NULL;
	struct policy *old;
	json_error_t jerr;
	json_t *doc;
	int rc;

	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(err, errlen, "control document: line %d column %d: %s", jerr.line,
			 jerr.column, jerr.text);
		return -EINVAL;
	}
	if (json_object_get(doc, "request")) {
		rc = control_request(px, doc, err, errlen);
		json_decref(doc);
		return rc;
	}
	rc = control_doc_parse(px, doc, &d, err, errlen);
	json_decref(doc);
	if (rc < 0) {
		policy_free(d.policy);
		return -EINVAL;
	}

	/* Everything parsed: put it in force. */
	old = px->policy;
	px->policy = d.policy;
	px->generation = d.generation;
	policy_free(old);
	if (d.n_ns >= 0) {
		memcpy(px->nameservers, d.ns, sizeof(d.ns[0]) * (size_t)d.n_ns);
		px->n_nameservers = d.n_ns;
	}
	relay_policy_changed(px);
	if (!first && !policy_reload_keeps_flows(px->policy)) {
		/* A reload cuts off what the new policy denies (docs/policy.md). */
		tcpflow_reevaluate(px);
		udpflow_reevaluate(px);
		udppub_reevaluate(px);
	}
	if (first)
		publish_at_start(px, &d);
	else if (d.n_pub > 0)
		log_warn("control: published ports are only taken at start-up");
	log_info("policy generation %llu in force (%d rules)", (unsigned long long)px->generation,
		 policy_rule_count(px->policy));
	return 0;
}

static void on_control(uv_poll_t *h, int status, int events);

/* UV_WRITABLE only while events wait: a writable socket would wake us forever. */
static void arm(struct proxy *px)
{
	struct control *c = px->ctl;
	bool want = !c->out_dead && channel_out_pending(&c->out) != 0;

	if (c->dead || c->writable_armed == want)
		return;
	c->writable_armed = want;
	uv_poll_start(&c->poll, UV_READABLE | (want ? UV_WRITABLE : 0), on_control);
}

static void flush_out(struct proxy *px)
{
	struct control *c = px->ctl;
	int rc;

	if (c->out_dead)
		return;
	rc = channel_out_flush(&c->out, px->control_fd);
	if (rc < 0) {
		/* The supervisor is gone; reading sees EOF and stops the loop. */
		log_debug("control: cannot write events: %s", strerror(-rc));
		c->out_dead = true;
	}
}

/**
 * control_event() - send one event object to the supervisor, never blocking
 * @px:		proxy
 * @json:	compact JSON object, at most CHANNEL_EVENT_MAX bytes
 *
 * The event is queued and written as far as the socket takes it now; the
 * rest goes out when the socket is writable. When the queue is full (the
 * supervisor is not reading) or the event is too large, it is dropped and
 * counted.
 */
void control_event(struct proxy *px, const char *json)
{
	struct control *c = px->ctl;

	if (!c || c->dead || c->out_dead)
		return;
	if (channel_out_push(&c->out, json, strlen(json)) < 0) {
		c->dropped++;
		return;
	}
	flush_out(px);
	arm(px);
}

static const char *dir_name(enum policy_direction d)
{
	return d == POLICY_INGRESS ? "ingress" : "egress";
}

static void emit(struct proxy *px, json_t *o)
{
	char *s;

	if (!o)
		return;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s)
		control_event(px, s);
	free(s);
}

static void put_dst(json_t *o, const struct flow_endpoint *dst, enum policy_direction dir)
{
	char a[INET6_ADDRSTRLEN];

	if (!dst || (dst->family != 4 && dst->family != 6))
		return;
	inet_ntop(dst->family == 4 ? AF_INET : AF_INET6, dst->addr, a, sizeof(a));
	if (dir == POLICY_INGRESS) {
		json_object_set_new(o, "src", json_string(a));
		json_object_set_new(o, "guest_port", json_integer(dst->port));
	} else {
		json_object_set_new(o, "dst", json_string(a));
		json_object_set_new(o, "dst_port", json_integer(dst->port));
	}
}

/**
 * control_event_denial() - a "denial" or "dns_denial" event
 * @px:		proxy
 * @event:	"denial" or "dns_denial"
 * @dir:	direction
 * @proto:	protocol
 * @dst:	destination (ingress: the host-side peer, port = guest port), may be NULL
 * @name:	the query name for dns_denial, else NULL
 * @rule:	rule index or -1 (the default)
 * @terminate:	a terminate rule matched
 * @flow:	flow id or 0
 */
void control_event_denial(struct proxy *px, const char *event, enum policy_direction dir,
			  enum policy_proto proto, const struct flow_endpoint *dst,
			  const char *name, int rule, bool terminate, uint32_t flow,
			  const char *reason)
{
	json_t *o = json_object();

	if (!o)
		return;
	json_object_set_new(o, "event", json_string(event));
	json_object_set_new(o, "direction", json_string(dir_name(dir)));
	json_object_set_new(o, "protocol", json_string(policy_proto_name(proto)));
	put_dst(o, dst, dir);
	if (name)
		json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "rule", json_integer(rule));
	if (terminate)
		json_object_set_new(o, "terminate", json_true());
	if (flow)
		json_object_set_new(o, "flow", json_integer(flow));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	emit(px, o);
}

/**
 * control_event_limit() - a "limit" event
 * @px:		proxy
 * @limit:	the limit's name
 * @terminate:	its on_exceed was terminate
 * @flow:	flow id or 0
 * @proto:	enum moat_proto_idx or 0xff
 * @dst:	destination, may be NULL
 */
void control_event_limit(struct proxy *px, const char *limit, bool terminate, uint32_t flow,
			 uint8_t proto, const struct flow_endpoint *dst)
{
	static const char *const pn[MOAT_P_COUNT] = { "tcp", "udp", "icmp" };
	json_t *o = json_object();

	if (!o)
		return;
	json_object_set_new(o, "event", json_string("limit"));
	json_object_set_new(o, "limit", json_string(limit));
	json_object_set_new(o, "action", json_string(terminate ? "terminate" : "refuse"));
	if (proto < MOAT_P_COUNT)
		json_object_set_new(o, "protocol", json_string(pn[proto]));
	put_dst(o, dst, POLICY_EGRESS);
	if (flow)
		json_object_set_new(o, "flow", json_integer(flow));
	emit(px, o);
}

/* channel_msg_cb: one complete configuration document. */
static int on_document(void *arg, const char *msg, size_t len)
{
	struct control *c = arg;
	struct proxy *px = c->px;

	if (control_apply(px, msg, len, c->reject, sizeof(c->reject)) == 0)
		return 0;
	if (!px->policy)
		return -EINVAL; /* at start-up: no policy, no proxy */
	log_error("control: configuration rejected, the old policy stays: %s", c->reject);
	c->reject[0] = '\0'; /* only a start-up rejection is reported by on_control() */
	return 0;
}

/* The channel is gone or broken: stop the loop (with @status when non-zero). */
static void control_stop(struct proxy *px, int status)
{
	struct control *c = px->ctl;

	c->dead = true;
	uv_poll_stop(&c->poll);
	if (status) {
		px->violation = true; /* stop processing */
		px->exit_status = status;
	}
	uv_stop(&px->loop);
}

static void on_control(uv_poll_t *h, int status, int events)
{
	struct proxy *px = h->data;
	struct control *c = px->ctl;

	if (status < 0 || (events & UV_DISCONNECT && !(events & UV_READABLE))) {
		control_stop(px, 0);
		return;
	}
	if (events & UV_WRITABLE) {
		flush_out(px);
		arm(px);
	}
	if (events & UV_READABLE) {
		char err[256];
		int rc = channel_in_read(&c->in, px->control_fd, on_document, c, err, sizeof(err));

		if (rc == -EPROTO) {
			if (c->reject[0])
				log_error("control: start-up configuration rejected: %s",
					  c->reject);
			else
				log_error("control: %s", err);
			control_stop(px, 1);
			return;
		}
		if (rc < 0)
			log_error("control: read: %s", strerror(-rc));
		if (rc <= 0) {
			/* The supervisor is gone or stopping us: so are we. */
			log_info("control channel closed; stopping");
			control_stop(px, 0);
			return;
		}
	}
	if (c->dropped != c->dropped_logged) {
		log_warn("events dropped (supervisor not reading): %llu",
			 (unsigned long long)c->dropped);
		c->dropped_logged = c->dropped;
	}
}

/**
 * control_init() - start reading configuration from px->control_fd
 * @px:	proxy
 *
 * Return: 0 or a negative errno.
 */
int control_init(struct proxy *px)
{
	struct control *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	rc = channel_in_init(&c->in, CHANNEL_CONFIG_MAX);
	if (rc == 0)
		rc = channel_out_init(&c->out, CHANNEL_EVENT_MAX, CHANNEL_PROXY_QUEUE_MAX);
	if (rc < 0) {
		channel_in_fini(&c->in);
		free(c);
		return rc;
	}
	px->ctl = c;
	c->px = px;
	c->poll.data = px;
	rc = uv_poll_init(&px->loop, &c->poll, px->control_fd);
	if (rc < 0)
		return rc;
	return uv_poll_start(&c->poll, UV_READABLE, on_control);
}

static void ctl_closed(uv_handle_t *h)
{
	(void)h;
}

/**
 * control_fini() - stop and free the control channel state
 * @px:	proxy
 */
void control_fini(struct proxy *px)
{
	struct control *c = px->ctl;

	if (!c)
		return;
	uv_close((uv_handle_t *)&c->poll, ctl_closed);
	uv_run(&px->loop, UV_RUN_NOWAIT);
	channel_in_fini(&c->in);
	channel_out_fini(&c->out);
	free(c);
	px->ctl = NULL;
}
