/* SPDX-License-Identifier: MIT */
/*
 * log.c - logging for all three processes
 *
 * Theory of Operation
 * -------------------
 * Formats into a stack buffer with vsnprintf and emits the line with one
 * write(2), so it allocates nothing and works inside the netstack's seccomp
 * filter (which allows write on fd 2). Callers avoid %f and strerror() of
 * unknown values on the netstack's packet path; see DESIGN §2.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"

int log_current_level = LOG_LVL_INFO;
static const char *log_role = "moat";
static const char *const level_names[] = { "error", "warn", "info", "debug" };

/**
 * log_init() - set the role name and the threshold
 * @role:	"moat", "moat-netstack", "moat-proxy"
 * @level:	enum log_level
 */
void log_init(const char *role, int level)
{
	log_role = role;
	log_current_level = level;
}

/**
 * log_level_parse() - parse a --log-level argument
 * @s:	error, warn, info or debug
 *
 * Return: enum log_level, or -1 if unknown.
 */
int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	if (!strcasecmp(s, "warning"))
		return LOG_LVL_WARN;
	return -1;
}

static void __attribute__((format(printf, 2, 0))) vlog(int level, const char *fmt, va_list ap)
{
	char buf[1024];
	int n, m;

	n = snprintf(buf, sizeof(buf), "%s %s: ", level_names[level], log_role);
	if (n < 0 || n >= (int)sizeof(buf))
		return;
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* stderr is gone: nothing useful left to do */
	}
}

/**
 * log_msg() - log one line if @level passes the threshold
 * @level:	enum log_level
 * @fmt:	printf format
 */
void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_current_level)
		return;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

/**
 * fatal() - log an error with errno's text and exit 1
 * @fmt:	printf format
 *
 * Context: process set-up only (DESIGN: process-level errors).
 */
void fatal(const char *fmt, ...)
{
	char buf[768];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(LOG_LVL_ERROR, "%s: %s", buf, strerror(saved));
	exit(1);
}

/**
 * fatalx() - log an error and exit with @status
 * @status:	exit status (1 runtime, 2 usage/config)
 * @fmt:	printf format
 */
void fatalx(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(status);
}
