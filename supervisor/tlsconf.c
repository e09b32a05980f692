/* SPDX-License-Identifier: MIT */
/*
 * tlsconf.c - what the supervisor does for moat-tls (docs/tls.md)
 *
 * Theory of Operation
 * -------------------
 * When the policy has a "tls" section, the supervisor starts moat-tls and
 * is the only process that reads the secrets' values (policy_secrets_resolve():
 * environment variables and files, before anything is forked, so a missing
 * one is a usage error with nothing started). tlsconf_send() writes them,
 * after the normalized policy, into the pipe moat-tls reads at start
 * (length-prefixed, little-endian), then wipes its own copy: from then on
 * only moat-tls holds them. --tls-ca-out is opened here too, while we may
 * still write where the operator asked; moat-tls sends its CA certificate
 * (never the key) back on a pipe, and we write it there before moat says it
 * is ready.
 *
 * A reload that changes the tls or secrets sections reads the new secrets
 * the same way and writes the new configuration into the same pipe
 * (tlsconf_update()); moat-tls cuts its intercepted connections and takes
 * it. What moat-tls read as files at start (the CA, the upstream trust
 * store) cannot change without a restart.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/tlsconf.h"
#include "tls/http1.h"

static struct policy_secret_value *tlsconf_values;
static unsigned tlsconf_n;
static int tlsconf_ca_fd = -1;		    /* --tls-ca-out */
static int tlsconf_ca_pipe[2] = { -1, -1 }; /* moat-tls writes its CA certificate into [1] */
static int tlsconf_cfg_fd = -1;		    /* moat-tls's configuration pipe (reloads) */

#define TLSCONF_PIPE_SIZE  (1 << 20)  /* a whole configuration fits: written at once */
#define TLSCONF_CA_WAIT_MS 10000      /* moat-tls makes its CA within this, or moat fails */
#define TLSCONF_START_MAX  (4u << 20) /* the first configuration: any policy and its values */

static uint8_t *tlsconf_pending; /* a prepared reload (tlsconf_prepare()) */
static size_t tlsconf_pending_len;
static int tlsconf_pipe_size; /* what the kernel gave the configuration pipe */

/* The variables secrets name, taken out of our environment (tlsconf_hide_env()). */
static struct {
	char *name, *value;
} tlsconf_env[64];
static unsigned tlsconf_n_env;

/*
 * Take every variable a secret names out of the environment, keeping a
 * copy: nothing we exec (the roles, the `--` command, --on-violation) may
 * inherit a secret's value. The copies are put back only around a reload's
 * policy_secrets_resolve().
 */
static void tlsconf_hide_env(const struct policy *p)
{
	for (unsigned i = 0; i < policy_secret_count(p) && tlsconf_n_env < 64; i++) {
		bool is_file = false;
		const char *name = policy_secret_source(p, i, &is_file);
		const char *v = name && !is_file ? getenv(name) : NULL;
		bool dup = false;

		for (unsigned k = 0; k < tlsconf_n_env && v; k++)
			dup = dup || !strcmp(tlsconf_env[k].name, name);
		if (!v || dup)
			continue;
		tlsconf_env[tlsconf_n_env].name = strdup(name);
		tlsconf_env[tlsconf_n_env].value = strdup(v);
		if (!tlsconf_env[tlsconf_n_env].name || !tlsconf_env[tlsconf_n_env].value)
			fatalx(1, "out of memory");
		tlsconf_n_env++;
		/* overwrite the original bytes too: unsetenv() only unlinks them */
		explicit_bzero((char *)v, strlen(v));
		unsetenv(name);
	}
}

static void tlsconf_show_env(bool show)
{
	for (unsigned k = 0; k < tlsconf_n_env; k++) {
		if (show)
			setenv(tlsconf_env[k].name, tlsconf_env[k].value, 1);
		else
			unsetenv(tlsconf_env[k].name);
	}
}

/**
 * tlsconf_open() - read the secrets and open --tls-ca-out, before any fork
 * @p:		the policy (with or without a tls section)
 * @ca_out:	--tls-ca-out, or NULL
 * @err, @errlen: one line saying what to fix (never a secret's value)
 *
 * Return: 1 if moat-tls must run, 0 if not, -1 with @err set.
 */
int tlsconf_open(const struct policy *p, const char *ca_out, char *err, size_t errlen)
{
	unsigned n = policy_secret_count(p);
	int rc;

	if (!policy_has_tls(p)) {
		if (ca_out) {
			snprintf(err, errlen, "--tls-ca-out: the policy has no tls section");
			return -1;
		}
		return 0;
	}
	tlsconf_values = calloc(n ? n : 1, sizeof(*tlsconf_values));
	if (!tlsconf_values) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = policy_secrets_resolve(p, tlsconf_values, n, err, errlen);
	if (rc < 0)
		return -1;
	tlsconf_n = (unsigned)rc;
	tlsconf_hide_env(p);
	for (unsigned i = 0; i < tlsconf_n; i++) {
		if (tlsconf_values[i].len > HTTP1_VALUE_MAX) {
			snprintf(err, errlen,
				 "secrets[%u] (%s): the value is longer than %u bytes, more than a "
				 "request header moat rewrites may hold",
				 i, policy_secret_placeholder(p, i), HTTP1_VALUE_MAX);
			tlsconf_wipe();
			return -1;
		}
	}
	if (ca_out) {
		tlsconf_ca_fd = open(ca_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
				     0644);
		if (tlsconf_ca_fd < 0) {
			snprintf(err, errlen, "--tls-ca-out %s: %s", ca_out, strerror(errno));
			tlsconf_wipe();
			return -1;
		}
	}
	if (pipe2(tlsconf_ca_pipe, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		tlsconf_wipe();
		return -1;
	}
	return 1;
}

/**
 * tlsconf_ca_out_fd() - where moat-tls writes its CA certificate
 *
 * Return: the write end of a pipe the supervisor reads (tlsconf_send()).
 */
int tlsconf_ca_out_fd(void)
{
	return tlsconf_ca_pipe[1];
}

static int tlsconf_write(int fd, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len) {
		ssize_t n = write(fd, b, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * The CA certificate moat-tls wrote, to --tls-ca-out: before moat is ready,
 * so that an orchestrator that waits for the ready line finds it whole.
 */
static int tlsconf_take_ca(void)
{
	static char pem[65536];
	size_t len = 0;
	int rc = 0;

	close(tlsconf_ca_pipe[1]);
	tlsconf_ca_pipe[1] = -1;
	for (int waited = 0;;) {
		struct pollfd pfd = { .fd = tlsconf_ca_pipe[0], .events = POLLIN };
		ssize_t n;

		/* Bounded: a moat-tls that hangs before its CA must not hang our start. */
		if (poll(&pfd, 1, 100) == 0) {
			if ((waited += 100) >= TLSCONF_CA_WAIT_MS)
				break;
			continue;
		}
		n = read(tlsconf_ca_pipe[0], pem + len, sizeof(pem) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) == sizeof(pem))
			break;
	}
	close(tlsconf_ca_pipe[0]);
	tlsconf_ca_pipe[0] = -1;
	if (len < 64 || strncmp(pem, "-----BEGIN CERTIFICATE-----", 27))
		rc = -1; /* moat-tls failed before it had a CA: its exit says why */
	else if (tlsconf_ca_fd >= 0 && tlsconf_write(tlsconf_ca_fd, pem, len) < 0)
		rc = -1;
	if (tlsconf_ca_fd >= 0)
		close(tlsconf_ca_fd);
	tlsconf_ca_fd = -1;
	return rc;
}

/* Append @len bytes to @buf (of @cap, at *@at). Return: 0 or -1 when full. */
static int tlsconf_put(uint8_t *buf, size_t cap, size_t *at, const void *src, size_t len)
{
	if (len > cap - *at)
		return -1;
	memcpy(buf + *at, src, len);
	*at += len;
	return 0;
}

static int tlsconf_put32(uint8_t *buf, size_t cap, size_t *at, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	return tlsconf_put(buf, cap, at, b, 4);
}

/*
 * moat-tls's configuration, as tls.c reads it: the normalized policy, then
 * each value of tlsconf_values, length-prefixed (little-endian u32), into
 * @buf of @cap bytes. Return: the length, or 0 if it does not fit.
 */
static size_t tlsconf_build(const struct policy *p, uint8_t *buf, size_t cap)
{
	char *json = policy_to_json(p);
	size_t at = 0;
	bool bad;

	if (!json)
		return 0;
	bad = tlsconf_put32(buf, cap, &at, (uint32_t)strlen(json)) < 0 ||
	      tlsconf_put(buf, cap, &at, json, strlen(json)) < 0 ||
	      tlsconf_put32(buf, cap, &at, tlsconf_n) < 0;
	for (unsigned i = 0; i < tlsconf_n && !bad; i++)
		bad = tlsconf_put32(buf, cap, &at, (uint32_t)tlsconf_values[i].len) < 0 ||
		      tlsconf_put(buf, cap, &at, tlsconf_values[i].value, tlsconf_values[i].len) <
			      0;
	free(json);
	return bad ? 0 : at;
}

/**
 * tlsconf_send() - give moat-tls its configuration, then forget the secrets
 * @p:	the policy
 * @fd:	the write end of moat-tls's configuration pipe (kept for reloads)
 *
 * Then it waits for moat-tls's CA certificate and writes it to --tls-ca-out.
 *
 * Return: 0, or -1 (moat-tls is gone: its exit is the violation).
 */
int tlsconf_send(const struct policy *p, int fd)
{
	size_t cap = TLSCONF_START_MAX, len;
	uint8_t *buf = malloc(cap);
	int rc = -1;

	/* Room for any later configuration at once, so a reload never blocks
	 * (tlsconf_prepare() refuses one larger than what the pipe got). */
	(void)fcntl(fd, F_SETPIPE_SZ, TLSCONF_PIPE_SIZE);
	tlsconf_pipe_size = fcntl(fd, F_GETPIPE_SZ);
	len = buf ? tlsconf_build(p, buf, cap) : 0;
	/* blocking: moat-tls reads it at start, before anything else */
	if (len && tlsconf_write(fd, buf, len) == 0)
		rc = 0;
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
	tlsconf_wipe();
	if (tlsconf_take_ca() < 0)
		rc = -1;
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		rc = -1;
	tlsconf_cfg_fd = fd;
	return rc;
}

/* The same file, or both absent? */
static bool tlsconf_same_path(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/**
 * tlsconf_prepare() - a reload: make moat-tls's new configuration, or refuse
 * @old:	the policy in force
 * @np:		the one a reload offers
 * @err, @errlen: why it is refused (never a secret's value)
 *
 * moat-tls cuts its open intercepted connections (their requests were
 * checked against the old secrets) and takes the new ones. What it read as
 * files at start cannot change: a tls section added or removed, another
 * tls.ca or tls.upstream_ca, is refused. The new secrets are read here,
 * as at start; tlsconf_commit() writes it once the proxy has taken the
 * new policy, so that a reload refused there changes nothing.
 *
 * Context: the supervisor, confined (reload_seccomp()).
 * Return: 0 (ready, or nothing to hand over), -1 with @err set.
 */
int tlsconf_prepare(const struct policy *old, const struct policy *np, char *err, size_t errlen)
{
	unsigned n = policy_secret_count(np);
	size_t cap = TLSCONF_PIPE_SIZE, at = 0;
	uint8_t *buf = NULL;
	int queued = 0, rc = -1;

	if (policy_has_tls(old) != policy_has_tls(np)) {
		snprintf(err, errlen,
			 "a tls section is added or removed only at start (restart moat)");
		return -1;
	}
	tlsconf_discard();
	if (!policy_has_tls(np) || tlsconf_same(old, np))
		return 0;
	if (!tlsconf_same_path(policy_tls_ca_cert(old), policy_tls_ca_cert(np)) ||
	    !tlsconf_same_path(policy_tls_ca_key(old), policy_tls_ca_key(np)) ||
	    !tlsconf_same_path(policy_tls_upstream_ca(old), policy_tls_upstream_ca(np))) {
		snprintf(
			err, errlen,
			"tls.ca and tls.upstream_ca are read at start (restart moat to change them)");
		return -1;
	}
	if (tlsconf_cfg_fd < 0 || ioctl(tlsconf_cfg_fd, FIONREAD, &queued) < 0 || queued) {
		snprintf(err, errlen, "moat-tls has not taken the previous configuration yet");
		return -1;
	}
	tlsconf_values = calloc(n ? n : 1, sizeof(*tlsconf_values));
	buf = malloc(cap);
	if (!tlsconf_values || !buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	tlsconf_show_env(true);
	rc = policy_secrets_resolve(np, tlsconf_values, n, err, errlen);
	tlsconf_show_env(false);
	if (rc < 0)
		goto out;
	rc = -1;
	tlsconf_n = n;
	for (unsigned i = 0; i < n; i++) {
		if (tlsconf_values[i].len > HTTP1_VALUE_MAX) {
			snprintf(err, errlen, "secrets[%u] (%s): the value is longer than %u bytes",
				 i, policy_secret_placeholder(np, i), HTTP1_VALUE_MAX);
			goto out;
		}
	}
	at = tlsconf_build(np, buf,
			   (size_t)tlsconf_pipe_size < cap ? (size_t)tlsconf_pipe_size : cap);
	if (!at)
		goto too_big;
	tlsconf_pending = buf;
	tlsconf_pending_len = at;
	buf = NULL;
	rc = 0;
	goto out;
too_big:
	snprintf(err, errlen,
		 "the policy and its secrets are larger than moat-tls's pipe (%d bytes)",
		 tlsconf_pipe_size);
out:
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
	tlsconf_wipe();
	return rc;
}

/**
 * tlsconf_wipe() - forget the secrets' values (explicit_bzero)
 */
void tlsconf_wipe(void)
{
	if (tlsconf_values)
		policy_secrets_wipe(tlsconf_values, tlsconf_n);
	free(tlsconf_values);
	tlsconf_values = NULL;
	tlsconf_n = 0;
}

/* The "tls" and "secrets" members of @p's normalized form. */
static json_t *tlsconf_sections(const struct policy *p)
{
	char *text = policy_to_json(p);
	json_t *o = text ? json_loads(text, 0, NULL) : NULL;
	json_t *out = json_object();

	free(text);
	if (o && out) {
		json_object_set(out, "tls", json_object_get(o, "tls"));
		json_object_set(out, "secrets", json_object_get(o, "secrets"));
	}
	json_decref(o);
	return out;
}

/**
 * tlsconf_same() - do two policies agree on interception and secrets?
 * @a:	the policy in force
 * @b:	the one a reload offers
 *
 * Return: true if their tls and secrets sections are the same (a reload
 * may then go ahead: moat-tls keeps what it read at start).
 */
bool tlsconf_same(const struct policy *a, const struct policy *b)
{
	json_t *x = tlsconf_sections(a), *y = tlsconf_sections(b);
	bool same = x && y && json_equal(x, y);

	json_decref(x);
	json_decref(y);
	return same;
}

/**
 * tlsconf_discard() - forget a prepared configuration (its bytes wiped)
 */
void tlsconf_discard(void)
{
	if (tlsconf_pending)
		explicit_bzero(tlsconf_pending, TLSCONF_PIPE_SIZE);
	free(tlsconf_pending);
	tlsconf_pending = NULL;
	tlsconf_pending_len = 0;
}

/**
 * tlsconf_commit() - write the configuration tlsconf_prepare() made
 *
 * The pipe is empty (checked) and large enough (checked), so the write is
 * whole; anything else leaves moat-tls with a cut configuration, which it
 * could not tell from a slow one: moat stops (fail closed).
 *
 * Context: after the proxy took the new policy.
 */
void tlsconf_commit(void)
{
	ssize_t n;

	if (!tlsconf_pending)
		return;
	n = write(tlsconf_cfg_fd, tlsconf_pending, tlsconf_pending_len);
	if (n != (ssize_t)tlsconf_pending_len)
		fatalx(1, "cannot hand the reloaded configuration to moat-tls (%s)",
		       n < 0 ? strerror(errno) : "a partial write");
	tlsconf_discard();
}
