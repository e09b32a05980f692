/* SPDX-License-Identifier: MIT */
/*
 * control.c - the proxy's end of the control channel (FD_CONTROL)
 *
 * Theory of Operation
 * -------------------
 * One stream socket to the supervisor (shm/control.h), both ways framed as
 * a 32-bit length in host order followed by that many bytes of JSON.
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
 * changes nothing; at start-up that is fatal (no policy, no proxy).
 *
 * Proxy -> supervisor: events, one compact JSON object each ("denial",
 * "dns_denial", "limit"), which the supervisor validates, stamps and
 * writes to --events. This side never blocks: events go into a bounded
 * buffer written whenever the socket takes them; a full buffer drops the
 * event and counts it (logged once in a while).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/relay.h"
#include "shm/control.h"

#define CONTROL_OUT_MAX	(1u << 20)	/* event bytes waiting for the supervisor */

struct control {
	uv_poll_t poll;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len;
	uint64_t dropped, dropped_logged;
	bool writable_armed, dead;
};

/* "1.2.3.4:53" or "[2001:db8::1]:53" */
static int parse_hostport(const char *s, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	char *end;
	unsigned long port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || !colon[1] || port == 0 || port > 65535)
		return -EINVAL;
	if (s[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
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
		return -1;
	}
	json_array_foreach(arr, i, v) {
		struct policy_publish *p = &out[*n];
		const char *key;
		json_t *f;
		int seen = 0;

		if (*n >= POLICY_MAX_PUBLISH) {
			snprintf(err, errlen, "control document: publish: too many entries");
			return -1;
		}
		if (!json_is_object(v)) {
			snprintf(err, errlen, "control document: publish[%zu]: not an object", i);
			return -1;
		}
		memset(p, 0, sizeof(*p));
		json_object_foreach(v, key, f) {
			if (!strcmp(key, "host_address") && json_is_string(f)) {
				if (policy_addr_parse(json_string_value(f), &p->host_addr) < 0) {
					snprintf(err, errlen, "control document: publish[%zu]: bad host_address", i);
					return -1;
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
				snprintf(err, errlen, "control document: publish[%zu]: bad or unknown field '%s'", i, key);
				return -1;
			}
		}
		if (seen != 15) {
			snprintf(err, errlen, "control document: publish[%zu]: a field is missing", i);
			return -1;
		}
		(*n)++;
	}
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
 * Return: 0 or -1.
 */
int control_apply(struct proxy *px, const char *json, size_t len, char *err, size_t errlen)
{
	struct sockaddr_storage ns[POLICY_MAX_NAMESERVERS];
	struct policy_publish pub[POLICY_MAX_PUBLISH];
	int n_ns = -1, n_pub = -1, rc = -1;
	json_int_t generation = 0;
	struct policy *np = NULL;
	json_error_t jerr;
	json_t *doc, *v, *pol = NULL;
	const char *key;
	bool first = px->policy == NULL;

	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(err, errlen, "control document: line %d column %d: %s", jerr.line,
			 jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "control document: not an object");
		goto out;
	}
	json_object_foreach(doc, key, v) {
		if (!strcmp(key, "policy") && json_is_object(v)) {
			pol = v;
		} else if (!strcmp(key, "generation") && json_is_integer(v) &&
			   json_integer_value(v) >= 0) {
			generation = json_integer_value(v);
		} else if (!strcmp(key, "nameservers") && json_is_array(v)) {
			size_t i;
			json_t *s;

			n_ns = 0;
			json_array_foreach(v, i, s) {
				struct sockaddr_storage one;

				if (!json_is_string(s) || parse_hostport(json_string_value(s), &one) < 0) {
					snprintf(err, errlen, "control document: bad nameserver entry %zu", i);
					goto out;
				}
				/* Beyond the policy's own bound: the first ones are enough. */
				if (n_ns < POLICY_MAX_NAMESERVERS)
					ns[n_ns++] = one;
			}
		} else if (!strcmp(key, "publish")) {
			if (parse_publish(v, pub, &n_pub, err, errlen) < 0)
				goto out;
		} else {
			snprintf(err, errlen, "control document: bad or unknown key '%s'", key);
			goto out;
		}
	}
	if (!pol) {
		snprintf(err, errlen, "control document: no policy");
		goto out;
	}
	{
		char *text = json_dumps(pol, JSON_COMPACT);

		if (!text) {
			snprintf(err, errlen, "control document: cannot re-serialize the policy");
			goto out;
		}
		rc = policy_parse(text, strlen(text), "control", &px->env, &np, err, errlen);
		free(text);
		if (rc < 0)
			goto out;
		rc = -1;
	}

	/* Everything parsed: put it in force. */
	{
		struct policy *old = px->policy;

		px->policy = np;
		np = NULL;
		px->generation = (uint64_t)generation;
		policy_free(old);
	}
	if (n_ns >= 0) {
		memcpy(px->nameservers, ns, sizeof(ns[0]) * (size_t)n_ns);
		px->n_nameservers = n_ns;
	}
	relay_policy_changed(px);
	if (first) {
		const struct policy_publish *pp;
		int n = policy_publish(px->policy, &pp);

		if (n_pub > 0) {
			memcpy(px->publish, pub, sizeof(pub[0]) * (size_t)n_pub);
			px->n_publish = n_pub;
		}
		for (int i = 0; i < n && px->n_publish < POLICY_MAX_PUBLISH; i++)
			px->publish[px->n_publish++] = pp[i];
		for (int i = 0; i < px->n_publish; i++)
			tcp_publish(px, &px->publish[i]);
	} else if (n_pub > 0) {
		log_warn("control: published ports are only taken at start-up");
	}
	log_info("policy generation %llu in force (%d rules)", (unsigned long long)px->generation,
		 policy_rule_count(px->policy));
	rc = 0;
out:
	if (np)
		policy_free(np);
	json_decref(doc);
	return rc;
}

static void on_control(uv_poll_t *h, int status, int events);

static void arm(struct proxy *px)
{
	struct control *c = px->ctl;
	int ev = UV_READABLE | (c->out_len ? UV_WRITABLE : 0);

	if (c->dead)
		return;
	if (c->writable_armed != (c->out_len != 0)) {
		c->writable_armed = c->out_len != 0;
		uv_poll_start(&c->poll, ev, on_control);
	}
}

static void flush_out(struct proxy *px)
{
	struct control *c = px->ctl;

	while (c->out_len && !c->dead) {
		ssize_t n = send(px->control_fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				c->out_len = 0;	/* the supervisor is gone; reading sees EOF */
			break;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

/**
 * control_event() - send one event object to the supervisor, never blocking
 * @px:		proxy
 * @json:	compact JSON object
 */
void control_event(struct proxy *px, const char *json)
{
	struct control *c = px->ctl;
	size_t len = strlen(json);
	uint32_t l32 = (uint32_t)len;

	if (!c || c->dead)
		return;
	if (c->out_len + sizeof(l32) + len > CONTROL_OUT_MAX) {
		c->dropped++;
		return;
	}
	memcpy(c->out + c->out_len, &l32, sizeof(l32));
	memcpy(c->out + c->out_len + sizeof(l32), json, len);
	c->out_len += sizeof(l32) + len;
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
			  enum policy_proto proto, const struct flow_endpoint *dst, const char *name,
			  int rule, bool terminate, uint32_t flow)
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

/* Parse every complete document in the input buffer. */
static int consume(struct proxy *px)
{
	struct control *c = px->ctl;
	size_t off = 0;

	while (c->in_len - off >= sizeof(uint32_t)) {
		uint32_t len;
		char err[512];

		memcpy(&len, c->in + off, sizeof(len));
		if (len == 0 || len > CONTROL_MSG_MAX) {
			log_error("control: bad frame length %u", len);
			return -1;
		}
		if (c->in_len - off - sizeof(len) < len)
			break;
		if (control_apply(px, (const char *)c->in + off + sizeof(len), len, err,
				  sizeof(err)) < 0) {
			if (!px->policy) {
				log_error("control: start-up configuration rejected: %s", err);
				return -1;
			}
			log_error("control: configuration rejected, the old policy stays: %s", err);
		}
		off += sizeof(len) + len;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return 0;
}

static void on_control(uv_poll_t *h, int status, int events)
{
	struct proxy *px = h->data;
	struct control *c = px->ctl;

	if (status < 0 || (events & UV_DISCONNECT && !(events & UV_READABLE))) {
		c->dead = true;
		uv_poll_stop(h);
		uv_stop(&px->loop);
		return;
	}
	if (events & UV_WRITABLE) {
		flush_out(px);
		arm(px);
	}
	if (!(events & UV_READABLE))
		return;
	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < 65536 && c->in_cap < CONTROL_MSG_MAX + 8) {
			size_t ncap = c->in_cap ? c->in_cap * 2 : 65536;
			uint8_t *p;

			if (ncap > CONTROL_MSG_MAX + 8)
				ncap = CONTROL_MSG_MAX + 8;
			p = realloc(c->in, ncap);
			if (!p) {
				log_error("control: out of memory");
				uv_stop(&px->loop);
				return;
			}
			c->in = p;
			c->in_cap = ncap;
		}
		if (c->in_len == c->in_cap) {
			log_error("control: document too large");
			uv_stop(&px->loop);
			return;
		}
		n = recv(px->control_fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			log_error("control: read: %s", strerror(errno));
			n = 0;
		}
		if (n == 0) {
			/* The supervisor is gone or stopping us: so are we. */
			log_info("control channel closed; stopping");
			c->dead = true;
			uv_poll_stop(h);
			uv_stop(&px->loop);
			return;
		}
		c->in_len += (size_t)n;
		if (consume(px) < 0) {
			c->dead = true;
			uv_poll_stop(h);
			px->violation = true;	/* stop processing */
			px->exit_status = 1;
			uv_stop(&px->loop);
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
	c->out = malloc(CONTROL_OUT_MAX);
	if (!c->out) {
		free(c);
		return -ENOMEM;
	}
	px->ctl = c;
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
	free(c->in);
	free(c->out);
	free(c);
	px->ctl = NULL;
}
