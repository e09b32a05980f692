/* SPDX-License-Identifier: MIT */
/*
 * tlsconf.c - what the supervisor does for moat-tls (docs/tls.md)
 *
 * Theory of Operation
 * -------------------
 * When the policy has a "tls" section, the supervisor starts moat-tls and
 * is the only process that reads the secrets' values (policy_secrets_resolve():
 * environment variables and files, before anything is forked, so a missing
 * one is a usage error with nothing started). It opens the files the tls
 * section names (the CA certificate and key, the upstream trust store) but
 * never reads them: moat-tls gets the descriptors. Each configuration is
 * one exchange (tls/tls.h): the supervisor writes the tls and secrets
 * sections and the values into moat-tls's pipe (length-prefixed,
 * little-endian) and wipes its own copy; it sends OFFER with the files'
 * descriptors; moat-tls answers OK with its CA certificate, or REFUSED with
 * why; COMMIT puts it in force. At start (tlsconf_start()) the CA
 * certificate goes to --tls-ca-out, opened here too while we may still
 * write where the operator asked, before moat says it is ready.
 *
 * A reload (tlsconf_prepare()) makes the same offer, confined, and commits
 * it (tlsconf_commit()) only once the proxy has taken the new policy, or
 * aborts it (tlsconf_discard()): a reload either refuses changes nothing.
 * moat-tls compares what it was offered with what it has (a digest of the
 * bytes, the files' included): the same changes nothing, anything else cuts
 * its intercepted connections. A new CA is written to --tls-ca-out again.
 * A tls section removed leaves moat-tls running with nothing to intercept
 * and no secrets; one added needs moat-tls, so only a moat started with a
 * tls section (an empty one will do) takes it.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/log.h"
#include "supervisor/tlsconf.h"
#include "tls/http1.h"
#include "tls/tls.h"

static struct policy_secret_value *tlsconf_values;
static unsigned tlsconf_n;
static int tlsconf_ca_fd = -1;		      /* --tls-ca-out, kept to write a new CA on reload */
static int tlsconf_sock[2] = { -1, -1 };      /* [0] ours, [1] moat-tls's FD_TLS_SUPERVISOR */
static int tlsconf_cfg_fd = -1;		      /* moat-tls's configuration pipe */
static int tlsconf_files[3] = { -1, -1, -1 }; /* the next offer's, by TLS_FILE_* bit */
static uint32_t tlsconf_seq;		      /* the last offer's number */
static bool tlsconf_offered;		      /* it waits for COMMIT or ABORT */
static int tlsconf_pipe_size;		      /* what the kernel gave the pipe */

static char tlsconf_pem[TLS_CTL_TEXT_MAX]; /* the CA certificate in --tls-ca-out */
static size_t tlsconf_pem_len;
static char tlsconf_offer_pem[TLS_CTL_TEXT_MAX]; /* the one the offer's answer brought */
static size_t tlsconf_offer_pem_len;

#define TLSCONF_PIPE_SIZE (1 << 20)  /* a whole configuration fits: written at once */
#define TLSCONF_START_MS  10000	     /* moat-tls answers its first offer within this */
#define TLSCONF_RELOAD_MS 5000	     /* and a reload's within this */
#define TLSCONF_START_MAX (4u << 20) /* the first configuration: any policy and its values */

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

static void tlsconf_close_files(void)
{
	for (int i = 0; i < 3; i++) {
		if (tlsconf_files[i] >= 0)
			close(tlsconf_files[i]);
		tlsconf_files[i] = -1;
	}
}

/*
 * Open the files @p's tls section names, for the next offer (never read
 * here: the CA key is moat-tls's alone). Return: the TLS_FILE_* bits of
 * those opened, or -1 with @err set.
 */
static int tlsconf_open_files(const struct policy *p, char *err, size_t errlen)
{
	const char *path[3] = { policy_tls_ca_cert(p), policy_tls_ca_key(p),
				policy_tls_upstream_ca(p) };
	static const char *const field[3] = { "tls.ca.cert", "tls.ca.key", "tls.upstream_ca" };
	int bits = 0;

	tlsconf_close_files();
	for (int i = 0; i < 3; i++) {
		struct stat st;
		int fd;

		if (!path[i])
			continue;
		fd = open(path[i], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_size > (off_t)TLS_FILE_MAX) {
			snprintf(err, errlen, "%s %s: %s", field[i], path[i],
				 fd < 0		      ? strerror(errno) :
				 !S_ISREG(st.st_mode) ? "not a regular file" :
							"larger than 8 MiB");
			if (fd >= 0)
				close(fd);
			tlsconf_close_files();
			return -1;
		}
		tlsconf_files[i] = fd;
		bits |= 1 << i;
	}
	return bits;
}

/* Check each value's length against what the rewriter holds. Return: 0, -1 with @err. */
static int tlsconf_check_values(const struct policy *p, char *err, size_t errlen)
{
	for (unsigned i = 0; i < tlsconf_n; i++) {
		if (tlsconf_values[i].len > HTTP1_VALUE_MAX) {
			snprintf(err, errlen,
				 "secrets[%u] (%s): the value is longer than %u bytes, more than a "
				 "request header moat rewrites may hold",
				 i, policy_secret_placeholder(p, i), HTTP1_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

/* Read @p's secrets into tlsconf_values. Return: 0, -1 with @err set. */
static int tlsconf_resolve(const struct policy *p, char *err, size_t errlen)
{
	unsigned n = policy_secret_count(p);
	int rc;

	tlsconf_wipe();
	tlsconf_values = calloc(n ? n : 1, sizeof(*tlsconf_values));
	if (!tlsconf_values) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = policy_secrets_resolve(p, tlsconf_values, n, err, errlen);
	if (rc < 0)
		return -1;
	tlsconf_n = (unsigned)rc;
	return tlsconf_check_values(p, err, errlen);
}

/**
 * tlsconf_open() - read the secrets, open the tls files and --tls-ca-out,
 * before any fork
 * @p:		the policy (with or without a tls section)
 * @ca_out:	--tls-ca-out, or NULL
 * @err, @errlen: one line saying what to fix (never a secret's value)
 *
 * Return: 1 if moat-tls must run, 0 if not, -1 with @err set.
 */
int tlsconf_open(const struct policy *p, const char *ca_out, char *err, size_t errlen)
{
	if (!policy_has_tls(p)) {
		if (ca_out) {
			snprintf(err, errlen, "--tls-ca-out: the policy has no tls section");
			return -1;
		}
		return 0;
	}
	if (tlsconf_resolve(p, err, errlen) < 0) {
		tlsconf_wipe();
		return -1;
	}
	tlsconf_hide_env(p);
	if (tlsconf_open_files(p, err, errlen) < 0) {
		tlsconf_wipe();
		return -1;
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
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, tlsconf_sock) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		tlsconf_wipe();
		return -1;
	}
	return 1;
}

/**
 * tlsconf_child_fd() - moat-tls's end of its channel to us
 *
 * Return: the descriptor the supervisor puts at FD_TLS_SUPERVISOR.
 */
int tlsconf_child_fd(void)
{
	return tlsconf_sock[1];
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
 * The "tls" and "secrets" members of @p's normalized form: all moat-tls is
 * told of the policy. A policy without a tls section gives an empty one
 * (nothing intercepted, no secrets). Return: the JSON text (free() it).
 */
static char *tlsconf_sections(const struct policy *p)
{
	char *text = policy_has_tls(p) ? policy_to_json(p) : NULL;
	json_t *o = text ? json_loads(text, 0, NULL) : NULL;
	json_t *out = json_object();
	char *dump = NULL;

	free(text);
	if (out && o) {
		json_object_set(out, "tls", json_object_get(o, "tls"));
		json_object_set(out, "secrets", json_object_get(o, "secrets"));
	} else if (out && !policy_has_tls(p)) {
		json_object_set_new(out, "tls", json_object());
	}
	if (out && json_object_size(out))
		dump = json_dumps(out, JSON_COMPACT);
	json_decref(o);
	json_decref(out);
	return dump;
}

/*
 * moat-tls's configuration, as tls.c reads it: @p's tls and secrets
 * sections, then each value of tlsconf_values, length-prefixed
 * (little-endian u32), into @buf of @cap bytes. Return: the length, or 0
 * if it does not fit.
 */
static size_t tlsconf_build(const struct policy *p, uint8_t *buf, size_t cap)
{
	char *json = tlsconf_sections(p);
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

/* One message to moat-tls, with the offer's files when @files. Return: 0, -1. */
static int tlsconf_ctl(uint32_t kind, uint32_t files)
{
	struct tls_ctl h = { .kind = kind, .seq = tlsconf_seq, .files = files };
	int fds[3], n = 0;
	union {
		char b[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	for (int i = 0; i < 3; i++)
		if (files & (1u << i))
			fds[n++] = tlsconf_files[i];
	if (n) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
	}
	while (sendmsg(tlsconf_sock[0], &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/*
 * Wait up to @ms for moat-tls's answer to the last offer (answers to older
 * ones are passed over). Return: 1 OK (its CA in tlsconf_offer_pem), 0
 * REFUSED (why in @err), -1 no answer (@err says so).
 */
static int tlsconf_answer(int ms, char *err, size_t errlen)
{
	static char msg[sizeof(struct tls_ctl) + TLS_CTL_TEXT_MAX];
	struct tls_ctl h;

	for (int waited = 0; waited < ms;) {
		struct pollfd pfd = { .fd = tlsconf_sock[0], .events = POLLIN };
		ssize_t n;
		int r = poll(&pfd, 1, 100);

		if (r == 0 || (r < 0 && errno == EINTR)) {
			waited += 100;
			continue;
		}
		n = recv(tlsconf_sock[0], msg, sizeof(msg), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < (ssize_t)sizeof(h))
			break; /* gone, or broken: its exit says why */
		memcpy(&h, msg, sizeof(h));
		if (h.seq != tlsconf_seq)
			continue;
		n -= (ssize_t)sizeof(h);
		if (h.kind == TLS_CTL_OK && n >= 27 &&
		    !strncmp(msg + sizeof(h), "-----BEGIN CERTIFICATE-----", 27)) {
			memcpy(tlsconf_offer_pem, msg + sizeof(h), (size_t)n);
			tlsconf_offer_pem_len = (size_t)n;
			return 1;
		}
		if (h.kind == TLS_CTL_REFUSED) {
			snprintf(err, errlen, "moat-tls: %.*s", (int)n, msg + sizeof(h));
			return 0;
		}
		break;
	}
	snprintf(err, errlen, "moat-tls did not answer");
	return -1;
}

/*
 * Offer @p to moat-tls: the configuration into the pipe, OFFER with the
 * files opened for it, and its answer within @ms. The values are wiped
 * either way. Return: 0 (answered OK), -1 with @err set.
 */
static int tlsconf_offer(const struct policy *p, uint32_t files, int ms, char *err, size_t errlen)
{
	size_t cap = (size_t)tlsconf_pipe_size < TLSCONF_START_MAX ? (size_t)tlsconf_pipe_size :
								     TLSCONF_START_MAX;
	uint8_t *buf = malloc(cap);
	size_t len = buf ? tlsconf_build(p, buf, cap) : 0;
	int rc = -1;

	if (!len)
		snprintf(err, errlen,
			 "the policy's tls and secrets sections and the values are larger than "
			 "moat-tls's pipe (%d bytes)",
			 tlsconf_pipe_size);
	else if (tlsconf_write(tlsconf_cfg_fd, buf, len) < 0)
		snprintf(err, errlen, "cannot write to moat-tls (%s)", strerror(errno));
	else if (tlsconf_seq++, tlsconf_ctl(TLS_CTL_OFFER, files) < 0)
		snprintf(err, errlen, "cannot write to moat-tls (%s)", strerror(errno));
	else
		rc = tlsconf_answer(ms, err, errlen) == 1 ? 0 : -1;
	tlsconf_offered = rc == 0;
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
	tlsconf_wipe();
	tlsconf_close_files();
	return rc;
}

/* Put the offer's CA in --tls-ca-out if it is not the one there. Return: 0, -1. */
static int tlsconf_write_ca(void)
{
	if (tlsconf_ca_fd < 0 || (tlsconf_pem_len == tlsconf_offer_pem_len &&
				  !memcmp(tlsconf_pem, tlsconf_offer_pem, tlsconf_pem_len)))
		return 0;
	if (ftruncate(tlsconf_ca_fd, 0) < 0 ||
	    pwrite(tlsconf_ca_fd, tlsconf_offer_pem, tlsconf_offer_pem_len, 0) !=
		    (ssize_t)tlsconf_offer_pem_len)
		return -1;
	memcpy(tlsconf_pem, tlsconf_offer_pem, tlsconf_offer_pem_len);
	tlsconf_pem_len = tlsconf_offer_pem_len;
	return 0;
}

/**
 * tlsconf_start() - give moat-tls its first configuration, then forget the secrets
 * @p:		the policy
 * @cfg_fd:	the write end of moat-tls's configuration pipe (kept for reloads)
 * @err, @errlen: why moat-tls did not take it
 *
 * The CA certificate of its answer goes to --tls-ca-out before this returns,
 * so an orchestrator that waits for moat's ready line finds it whole.
 *
 * Return: 0, or -1 with @err set (moat must stop).
 */
int tlsconf_start(const struct policy *p, int cfg_fd, char *err, size_t errlen)
{
	int files = 0;

	close(tlsconf_sock[1]);
	tlsconf_sock[1] = -1;
	/* Room for any later configuration at once (tlsconf_offer() refuses one larger). */
	(void)fcntl(cfg_fd, F_SETPIPE_SZ, TLSCONF_PIPE_SIZE);
	tlsconf_pipe_size = fcntl(cfg_fd, F_GETPIPE_SZ);
	tlsconf_cfg_fd = cfg_fd;
	for (int i = 0; i < 3; i++)
		files |= tlsconf_files[i] >= 0 ? 1 << i : 0;
	/* blocking: moat-tls reads it at start, before anything else */
	if (tlsconf_offer(p, (uint32_t)files, TLSCONF_START_MS, err, errlen) < 0)
		return -1;
	if (tlsconf_write_ca() < 0) {
		snprintf(err, errlen, "--tls-ca-out: %s", strerror(errno));
		return -1;
	}
	tlsconf_commit();
	if (fcntl(cfg_fd, F_SETFL, O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/**
 * tlsconf_running() - does moat-tls run (a tls section at start)?
 *
 * Return: true once tlsconf_start() has handed it its first configuration.
 */
bool tlsconf_running(void)
{
	return tlsconf_cfg_fd >= 0;
}

/**
 * tlsconf_prepare() - a reload: offer moat-tls the new configuration, or refuse
 * @old:	the policy in force
 * @np:		the one a reload offers
 * @err, @errlen: why it is refused (never a secret's value)
 *
 * The new secrets are read and the files opened here, as at start; moat-tls
 * checks the offer (a CA that is not one, a trust store without a
 * certificate) and keeps it until tlsconf_commit() or tlsconf_discard().
 * Refused: a tls section added to a moat that started without one (no
 * moat-tls runs), tls.ca removed (moat-tls would have to make a CA that
 * the guest does not trust).
 *
 * Context: the supervisor, confined (reload_seccomp(), tlsconf_seccomp()).
 * Return: 0 (offered, or nothing to offer), -1 with @err set.
 */
int tlsconf_prepare(const struct policy *old, const struct policy *np, char *err, size_t errlen)
{
	int files = 0, queued = 0;

	tlsconf_discard();
	if (!tlsconf_running()) {
		if (!policy_has_tls(np))
			return 0;
		snprintf(err, errlen,
			 "a tls section can be added by a reload only when moat started with one "
			 "(start it with \"tls\": {} to add interception later)");
		return -1;
	}
	if (policy_tls_has_ca(old) && policy_has_tls(np) && !policy_tls_has_ca(np)) {
		snprintf(err, errlen,
			 "tls.ca is removed: moat-tls would make a new CA that the guest does not "
			 "trust (restart moat to change to a generated CA)");
		return -1;
	}
	if (ioctl(tlsconf_cfg_fd, FIONREAD, &queued) < 0 || queued) {
		snprintf(err, errlen, "moat-tls has not taken the previous configuration yet");
		return -1;
	}
	if (policy_has_tls(np)) {
		int rc;

		tlsconf_show_env(true);
		rc = tlsconf_resolve(np, err, errlen);
		tlsconf_show_env(false);
		files = rc < 0 ? -1 : tlsconf_open_files(np, err, errlen);
		if (files < 0) {
			tlsconf_wipe();
			return -1;
		}
	} else {
		tlsconf_wipe(); /* no secrets: moat-tls forgets them */
	}
	return tlsconf_offer(np, (uint32_t)files, TLSCONF_RELOAD_MS, err, errlen);
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

/**
 * tlsconf_discard() - abort the offer tlsconf_prepare() made, if any
 */
void tlsconf_discard(void)
{
	if (tlsconf_offered)
		(void)tlsconf_ctl(TLS_CTL_ABORT, 0);
	tlsconf_offered = false;
}

/**
 * tlsconf_commit() - put the offer tlsconf_prepare() made in force
 *
 * Context: after the proxy took the new policy. A new CA goes to
 * --tls-ca-out; a moat-tls that cannot be told is gone (its exit stops moat).
 */
void tlsconf_commit(void)
{
	if (!tlsconf_offered)
		return;
	tlsconf_offered = false;
	if (tlsconf_ctl(TLS_CTL_COMMIT, 0) < 0)
		log_error("cannot commit moat-tls's configuration: %s", strerror(errno));
	else if (tlsconf_write_ca() < 0)
		log_error("--tls-ca-out: cannot write the new CA certificate: %s", strerror(errno));
}

/**
 * tlsconf_seccomp() - what tlsconf_prepare() and tlsconf_commit() call once confined
 * @ctx:	the supervisor's filter
 */
void tlsconf_seccomp(scmp_filter_ctx ctx)
{
	if (tlsconf_sock[0] < 0)
		return;
	/* offers with their files' descriptors, COMMIT, ABORT */
	ALLOW_ARG(ctx, sendmsg, SCMP_A0(SCMP_CMP_EQ, tlsconf_sock[0]));
	ALLOW_ARG(ctx, recvfrom, SCMP_A0(SCMP_CMP_EQ, tlsconf_sock[0])); /* the answers */
	ALLOW(ctx, poll); /* waiting for an answer, bounded */
	if (tlsconf_ca_fd >= 0) {
		/* a new CA into --tls-ca-out */
		ALLOW_ARG(ctx, ftruncate, SCMP_A0(SCMP_CMP_EQ, tlsconf_ca_fd));
		ALLOW_ARG(ctx, pwrite64, SCMP_A0(SCMP_CMP_EQ, tlsconf_ca_fd));
	}
}
