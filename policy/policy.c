/* SPDX-License-Identifier: MIT */
/*
 * policy.c - the policy module's front door: files, the default, lifetime
 *
 * Theory of Operation
 * -------------------
 * The supervisor loads the policy file here (at start-up and on SIGHUP)
 * or, without --policy, builds the default; both go through
 * policy_parse() (parse.c), so the built-in default is held to the same
 * schema as any file. A struct policy is immutable once built: readers
 * get const pointers into it (limits, dns, publish, the tls paths) that
 * live as long as it does, and a reload builds a new one and frees the
 * old. The secrets' values are never in it (tls.c).
 *
 * Reading a file is bounded: at most POLICY_MAX_FILE_SIZE + 1 bytes are
 * read, so a FIFO or /dev/zero given as the policy is refused rather than
 * read forever. Library code: never exits; errors go to the caller's
 * buffer as one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "policy/policy_int.h"

/* microsandbox's "public" profile; examples/default.json is the same. */
static const char default_text[] = "{\n"
				   "  \"default_egress\": \"deny\",\n"
				   "  \"default_ingress\": \"allow\",\n"
				   "  \"rules\": [\n"
				   "    {\n"
				   "      \"direction\": \"egress\",\n"
				   "      \"destination\": { \"group\": \"host\" },\n"
				   "      \"protocols\": [\"udp\", \"tcp\"],\n"
				   "      \"ports\": [{ \"start\": 53, \"end\": 53 }],\n"
				   "      \"action\": \"allow\"\n"
				   "    },\n"
				   "    {\n"
				   "      \"direction\": \"egress\",\n"
				   "      \"destination\": { \"group\": \"public\" },\n"
				   "      \"action\": \"allow\"\n"
				   "    }\n"
				   "  ]\n"
				   "}\n";

/**
 * policy_load_file() - read and parse a policy file
 * @path:	the file (also its name in error messages)
 * @env:	as for policy_parse()
 * @out:	as for policy_parse()
 * @err:	as for policy_parse(); also "PATH: <strerror>" if unreadable
 * @errlen:	size of @err
 *
 * Reads at most POLICY_MAX_FILE_SIZE + 1 bytes, so a huge or endless file
 * (a FIFO, /dev/zero) is refused without being read to its end.
 *
 * Return: 0, or -1 with @err filled.
 */
int policy_load_file(const char *path, const struct policy_env *env, struct policy **out, char *err,
		     size_t errlen)
{
	size_t cap = POLICY_MAX_FILE_SIZE + 1, n = 0;
	CLEANUP_FREE char *buf = NULL;
	CLEANUP_CLOSE int fd = -1;
	struct stat st;

	if (out)
		*out = NULL;
	if (!path) {
		if (err && errlen)
			snprintf(err, errlen, "policy: no file name");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: is a directory", path);
		return -1;
	}
	buf = malloc(cap);
	if (!buf) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (err && errlen)
				snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	return policy_parse(buf, n, path, env, out, err, errlen);
}

/**
 * policy_default_text() - the built-in default policy as JSON
 *
 * microsandbox's "public" profile: DNS to the gateway (udp and tcp 53 to
 * the host group) and the public internet allowed; everything else -- the
 * host's other ports, private, loopback, link-local, metadata, multicast --
 * falls to the egress default, deny. Ingress (published ports) is allowed.
 *
 * Return: a static NUL-terminated string.
 */
const char *policy_default_text(void)
{
	return default_text;
}

/**
 * policy_default() - build the default policy
 * @env:	the "host" group's addresses (may be NULL)
 *
 * The text of policy_default_text(), through the same parser.
 *
 * Return: a new policy (free with policy_free()), or NULL if out of memory.
 */
struct policy *policy_default(const struct policy_env *env)
{
	struct policy *p = NULL;

	if (policy_parse(default_text, sizeof(default_text) - 1, "<default>", env, &p, NULL, 0) < 0)
		return NULL;
	return p;
}

/**
 * policy_free() - free a policy
 * @p:	the policy, or NULL
 */
void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_rules; i++) {
		free(p->rules[i].name);
		free(p->rules[i].ports);
	}
	free(p->rules);
	free(p->publish);
	for (int i = 0; i < p->tls.n_intercept; i++)
		free(p->tls.intercept[i].name);
	for (int i = 0; i < p->tls.n_bypass; i++)
		free(p->tls.bypass[i].name);
	free(p->tls.intercept);
	free(p->tls.bypass);
	free(p->tls.ca_cert);
	free(p->tls.ca_key);
	free(p->tls.upstream_ca);
	for (int i = 0; i < p->n_secrets; i++) {
		struct policy_secret *s = &p->secrets[i];

		free(s->placeholder);
		free(s->value_env);
		free(s->value_file);
		for (int k = 0; k < s->n_hosts; k++)
			free(s->hosts[k].name);
		free(s->hosts);
	}
	free(p->secrets);
	free(p);
}

/**
 * policy_limits() - the "limits" section
 * @p:	the policy
 *
 * Return: the limits; a limit not in the file has set == false. Valid as
 * long as @p is.
 */
const struct policy_limits *policy_limits(const struct policy *p)
{
	return &p->limits;
}

/**
 * policy_dns() - the "dns" section, with its defaults filled in
 * @p:	the policy
 *
 * Return: the DNS settings; n_nameservers == 0 means "the host's
 * /etc/resolv.conf". Valid as long as @p is.
 */
const struct policy_dns *policy_dns(const struct policy *p)
{
	return &p->dns;
}

/**
 * policy_publish() - the "publish" section
 * @p:		the policy
 * @out:	set to the array (NULL if empty), valid as long as @p is
 *
 * Return: the number of published ports.
 */
int policy_publish(const struct policy *p, const struct policy_publish **out)
{
	if (out)
		*out = p->n_publish ? p->publish : NULL;
	return p->n_publish;
}
