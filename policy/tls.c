/* SPDX-License-Identifier: MIT */
/*
 * tls.c - the "tls" and "secrets" sections: what is intercepted, where each
 * secret may go, and reading the secrets' values
 *
 * Theory of Operation
 * -------------------
 * moat-tls (the process that terminates the guest's TLS toward the names
 * the policy intercepts) asks policy_tls_intercepts() of each connection's
 * SNI, and policy_secret_host_allowed() before it puts a secret's value in
 * the place of its placeholder. Both are walks over short lists with the
 * rules' own name matcher, policy_name_matches() (match.c): no allocation,
 * any process. parse.c builds the sections and holds every secret's hosts
 * to policy_tls_cover() here, so that a secret can never name a host its
 * value could not reach.
 *
 * The values are not part of the policy: parsing records where each one is
 * (an environment variable's name, a file's path), and the normalized text
 * the supervisor sends the proxy carries no more than that.
 * policy_secrets_resolve() reads them once, when the supervisor asks at its
 * start, into memory the caller owns; every message it writes names the
 * secret by placeholder and its source, never the value. The files are the
 * operator's (bounded to POLICY_SECRET_VALUE_MAX, regular files only, so a
 * FIFO or a device named by mistake is refused rather than read forever).
 *
 * Library code: never exits; policy_secrets_resolve() returns -1 with the
 * reason in the caller's buffer, the accessors return false, NULL or 0 for
 * a policy without the section or an index out of range.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "policy/policy_int.h"

/**
 * policy_names_match() - does a name match any entry of a tls or secrets list
 * @list:	the entries
 * @n:		how many
 * @name:	a name as it came from the wire (any case, trailing dot allowed)
 *
 * Return: true if some entry matches, as a domain or domain_suffix rule would.
 */
bool policy_names_match(const struct policy_name *list, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (policy_name_matches(name, list[i].name, list[i].suffix))
			return true;
	return false;
}

/* Does @e match every name @h covers? (A suffix is covered only by a suffix at or above it.) */
static bool name_covers(const struct policy_name *e, const struct policy_name *h)
{
	if (h->suffix && !e->suffix)
		return false;
	return policy_name_matches(h->name, e->name, e->suffix);
}

/* Does @e match some name @h covers? */
static bool name_overlaps(const struct policy_name *e, const struct policy_name *h)
{
	return policy_name_matches(h->name, e->name, e->suffix) ||
	       (h->suffix && policy_name_matches(e->name, h->name, true));
}

/**
 * policy_tls_cover() - is every name of a secret's host intercepted
 * @t:		the tls section
 * @h:		a host of a secret
 * @bypass:	with POLICY_TLS_BYPASSED, set to the index of the bypass entry
 *
 * A domain is covered when policy_tls_intercepts() would say yes of it; a
 * domain_suffix when an intercept domain_suffix at or above it matches all
 * of its names and no bypass entry matches any of them.
 *
 * Return: POLICY_TLS_COVERED, POLICY_TLS_NOT_INTERCEPTED (no intercept
 * entry covers all of @h) or POLICY_TLS_BYPASSED (a bypass entry takes
 * some of it).
 */
enum policy_tls_cover policy_tls_cover(const struct policy_tls *t, const struct policy_name *h,
				       int *bypass)
{
	bool covered = false;

	for (int i = 0; i < t->n_intercept && !covered; i++)
		covered = name_covers(&t->intercept[i], h);
	if (!covered)
		return POLICY_TLS_NOT_INTERCEPTED;
	for (int i = 0; i < t->n_bypass; i++)
		if (name_overlaps(&t->bypass[i], h)) {
			*bypass = i;
			return POLICY_TLS_BYPASSED;
		}
	return POLICY_TLS_COVERED;
}

/**
 * policy_has_tls() - was the "tls" section given
 * @p:	the policy
 *
 * Return: true if moat-tls has work: the section was in the file (even empty).
 */
bool policy_has_tls(const struct policy *p)
{
	return p && p->has_tls;
}

/**
 * policy_tls_intercepts() - is a connection to this name intercepted
 * @p:		the policy
 * @sni:	the name the client sent (TLS SNI), any case, trailing dot allowed
 *
 * Context: moat-tls, per connection; no allocation.
 * Return: true if a tls.intercept entry matches @sni and no tls.bypass entry
 * does (bypass wins); false without a tls section or a name.
 */
bool policy_tls_intercepts(const struct policy *p, const char *sni)
{
	if (!p || !p->has_tls || !sni || !*sni)
		return false;
	if (policy_names_match(p->tls.bypass, p->tls.n_bypass, sni))
		return false;
	return policy_names_match(p->tls.intercept, p->tls.n_intercept, sni);
}

/**
 * policy_tls_has_ca() - did the tls section name a CA
 * @p:	the policy
 *
 * Return: true if tls.ca was given (then policy_tls_ca_cert() and
 * policy_tls_ca_key() are both set).
 */
bool policy_tls_has_ca(const struct policy *p)
{
	return p && p->has_tls && p->tls.ca_cert;
}

/**
 * policy_tls_ca_cert() - tls.ca.cert
 * @p:	the policy
 *
 * The policy only records the path; it never opens the file.
 *
 * Return: the absolute path, or NULL without tls.ca. Valid as long as @p is.
 */
const char *policy_tls_ca_cert(const struct policy *p)
{
	return p && p->has_tls ? p->tls.ca_cert : NULL;
}

/**
 * policy_tls_ca_key() - tls.ca.key
 * @p:	the policy
 *
 * Return: the absolute path, or NULL without tls.ca. Valid as long as @p is.
 */
const char *policy_tls_ca_key(const struct policy *p)
{
	return p && p->has_tls ? p->tls.ca_key : NULL;
}

/**
 * policy_tls_upstream_ca() - tls.upstream_ca
 * @p:	the policy
 *
 * Return: the CA bundle moat-tls checks servers against
 * (POLICY_TLS_UPSTREAM_CA_DEFAULT unless given), or NULL without a tls
 * section. Valid as long as @p is.
 */
const char *policy_tls_upstream_ca(const struct policy *p)
{
	return p && p->has_tls ? p->tls.upstream_ca : NULL;
}

/**
 * policy_secret_count() - the number of secrets
 * @p:	the policy
 *
 * Return: the length of secrets[] (0 for NULL or without the section).
 */
unsigned int policy_secret_count(const struct policy *p)
{
	return p ? (unsigned int)p->n_secrets : 0;
}

static const struct policy_secret *secret_at(const struct policy *p, unsigned int i)
{
	return p && i < (unsigned int)p->n_secrets ? &p->secrets[i] : NULL;
}

/**
 * policy_secret_find() - the index of the secret with this placeholder
 * @p:			the policy
 * @placeholder:	a placeholder (compared exactly: placeholders are case-sensitive)
 *
 * Return: the index, or -1 if no secret has it.
 */
int policy_secret_find(const struct policy *p, const char *placeholder)
{
	for (int i = 0; p && placeholder && i < p->n_secrets; i++)
		if (!strcmp(p->secrets[i].placeholder, placeholder))
			return i;
	return -1;
}

/**
 * policy_secret_placeholder() - what the guest writes in a secret's place
 * @p:		the policy
 * @secret:	its index
 *
 * Return: the placeholder (unique, no other's substring), or NULL if
 * @secret is out of range. Valid as long as @p is.
 */
const char *policy_secret_placeholder(const struct policy *p, unsigned int secret)
{
	const struct policy_secret *s = secret_at(p, secret);

	return s ? s->placeholder : NULL;
}

/**
 * policy_secret_on_violation() - what to do when the placeholder goes elsewhere
 * @p:		the policy
 * @secret:	its index
 *
 * Return: the secret's on_violation; POLICY_SECRET_BLOCK if @secret is out
 * of range.
 */
enum policy_secret_violation policy_secret_on_violation(const struct policy *p, unsigned int secret)
{
	const struct policy_secret *s = secret_at(p, secret);

	return s ? s->on_violation : POLICY_SECRET_BLOCK;
}

/**
 * policy_secret_violation_name() - the schema's word for an on_violation
 * @v:	the value
 *
 * Return: "block", "block_and_log", "terminate", or "?" out of range.
 */
const char *policy_secret_violation_name(enum policy_secret_violation v)
{
	switch (v) {
	case POLICY_SECRET_BLOCK:
		return "block";
	case POLICY_SECRET_BLOCK_AND_LOG:
		return "block_and_log";
	case POLICY_SECRET_TERMINATE:
		return "terminate";
	}
	return "?";
}

/**
 * policy_secret_source() - where a secret's value is read from
 * @p:		the policy
 * @secret:	its index
 * @is_file:	set to true for value_file, false for value_env (may be NULL)
 *
 * Return: the environment variable's name or the file's path (never the
 * value), or NULL if @secret is out of range. Valid as long as @p is.
 */
const char *policy_secret_source(const struct policy *p, unsigned int secret, bool *is_file)
{
	const struct policy_secret *s = secret_at(p, secret);

	if (!s)
		return NULL;
	if (is_file)
		*is_file = s->value_file != NULL;
	return s->value_file ? s->value_file : s->value_env;
}

/**
 * policy_secret_host_allowed() - may a secret's value be sent to this host
 * @p:		the policy
 * @secret:	its index
 * @host:	the connection's name (SNI), any case, trailing dot allowed
 *
 * parse.c lets a secret name only hosts that are intercepted, so the
 * second test below never decides today; it keeps this answer right
 * whatever a caller believes about the connection.
 *
 * Context: moat-tls, per request; no allocation.
 * Return: true if one of the secret's hosts matches @host and @host is
 * intercepted; false otherwise or if @secret is out of range.
 */
bool policy_secret_host_allowed(const struct policy *p, unsigned int secret, const char *host)
{
	const struct policy_secret *s = secret_at(p, secret);

	if (!s || !host || !*host)
		return false;
	return policy_names_match(s->hosts, s->n_hosts, host) && policy_tls_intercepts(p, host);
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

/*
 * Why @v (of @n bytes) cannot be a secret's value, or NULL. It goes into
 * HTTP header field values (tls/http1.c), which hold HTAB, SP and visible
 * bytes: a line break would end the field, any other control is refused
 * by the rewriter.
 */
static const char *value_refused(const char *v, size_t n)
{
	if (!n)
		return "is empty";
	if (memchr(v, '\0', n))
		return "holds a NUL byte";
	if (memchr(v, '\n', n) || memchr(v, '\r', n))
		return "holds a line break";
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return "holds a control character";
	return NULL;
}

static int value_err(char *err, size_t errlen, unsigned int i, const struct policy_secret *s,
		     const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "secrets[%u] (%s): %s %s: %s", i, s->placeholder,
			 s->value_file ? "value_file" : "value_env",
			 s->value_file ? s->value_file : s->value_env, why);
	return -1;
}

static int value_from_env(const struct policy_secret *s, struct policy_secret_value *out,
			  const char **why)
{
	const char *v = getenv(s->value_env);
	size_t n;

	if (!v) {
		*why = "is not set";
		return -1;
	}
	n = strlen(v);
	if (n > POLICY_SECRET_VALUE_MAX) {
		*why = "is longer than 64 KiB";
		return -1;
	}
	*why = value_refused(v, n);
	if (*why)
		return -1;
	memcpy(out->value, v, n);
	out->value[n] = '\0';
	out->len = n;
	return 0;
}

/* Read at most POLICY_SECRET_VALUE_MAX + 1 bytes, so a file that grows is still refused. */
static int value_from_file(const struct policy_secret *s, struct policy_secret_value *out,
			   const char **why)
{
	size_t cap = sizeof(out->value), n = 0;
	CLEANUP_CLOSE int fd = -1;
	struct stat st;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat() refuses it. */
	fd = open(s->value_file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*why = strerror(errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "is not a regular file";
		return -1;
	}
	if (st.st_size > (off_t)POLICY_SECRET_VALUE_MAX) {
		*why = "is larger than 64 KiB";
		return -1;
	}
	while (n < cap) {
		ssize_t r = read(fd, out->value + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > POLICY_SECRET_VALUE_MAX) {
		*why = "is larger than 64 KiB";
		return -1;
	}
	/* One trailing newline (as editors and `echo` leave it) is not part of the value. */
	if (n && out->value[n - 1] == '\n') {
		n--;
		if (n && out->value[n - 1] == '\r')
			n--;
	}
	*why = value_refused(out->value, n);
	if (*why)
		return -1;
	out->value[n] = '\0';
	out->len = n;
	return 0;
}

/**
 * policy_secrets_resolve() - read every secret's value
 * @p:		the policy
 * @out:	the caller's array, one entry per secret in order (index = id)
 * @max:	its length
 * @err:	on failure, one line naming the secret (secrets[N] and its
 *		placeholder) and its source, never the value (may be NULL)
 * @errlen:	size of @err
 *
 * value_env is read with getenv(); value_file must be a regular file of at
 * most 64 KiB, and one trailing newline ("\n" or "\r\n") is stripped. A
 * value that is empty, or holds a NUL byte, a line break or another control
 * character (tab aside), is refused: it goes into HTTP header fields.
 * On failure every entry of @out this call wrote is wiped.
 *
 * Context: the supervisor, once at start (reads the environment and files).
 * Ownership: @out is the caller's; wipe it with policy_secrets_wipe().
 * Return: the number of secrets (0 for none), or -1 with @err filled.
 */
int policy_secrets_resolve(const struct policy *p, struct policy_secret_value *out,
			   unsigned int max, char *err, size_t errlen)
{
	unsigned int n = policy_secret_count(p);

	if (err && errlen)
		err[0] = '\0';
	if (!p) {
		if (err && errlen)
			snprintf(err, errlen, "policy: no policy");
		return -1;
	}
	if (n > max || (n && !out)) {
		if (err && errlen)
			snprintf(err, errlen, "policy: %u secrets but room for %u values", n,
				 out ? max : 0);
		return -1;
	}
	for (unsigned int i = 0; i < n; i++) {
		const struct policy_secret *s = &p->secrets[i];
		const char *why = NULL;
		int rc = s->value_file ? value_from_file(s, &out[i], &why) :
					 value_from_env(s, &out[i], &why);

		if (rc < 0) {
			policy_secrets_wipe(out, i + 1);
			return value_err(err, errlen, i, s, why ? why : "cannot be read");
		}
	}
	return (int)n;
}

/**
 * policy_secrets_wipe() - overwrite secret values with zeros
 * @v:	the array (may be NULL)
 * @n:	its length
 *
 * explicit_bzero(): the compiler may not drop it as a dead store.
 */
void policy_secrets_wipe(struct policy_secret_value *v, unsigned int n)
{
	for (unsigned int i = 0; v && i < n; i++)
		explicit_bzero(&v[i], sizeof(v[i]));
}
