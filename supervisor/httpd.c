/* SPDX-License-Identifier: MIT */
/*
 * httpd.c - load libmicrohttpd on demand (see httpd.h for why)
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor during set-up, the first time an HTTP endpoint is
 * asked for (metrics_start()). dlopen() with RTLD_NOW | RTLD_LOCAL: every
 * symbol is resolved at once, so a library that lacks one is refused here
 * with its name, not found missing later; RTLD_LOCAL keeps its symbols out
 * of the global namespace. The library stays loaded for the life of the
 * process (it is never dlclose()d: its thread may still be running when
 * the endpoint stops). Loading happens before the seccomp filter is in
 * force, so the filter needs nothing for it (no openat or mmap of a file).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "common/confine.h"
#include "common/log.h"

#include "supervisor/httpd.h"

struct httpd_lib httpd;

/* Resolve @name into @slot. Return: 0, or -1 with @err set. */
static int resolve(void *lib, const char *name, void **slot, char *err, size_t errlen)
{
	*slot = dlsym(lib, name);
	if (*slot)
		return 0;
	snprintf(err, errlen, "the libmicrohttpd found has no %s (too old a version)", name);
	return -1;
}

/**
 * httpd_load() - open libmicrohttpd and resolve the functions in `httpd`
 * @err:	one line saying what is missing
 * @errlen:	size of @err
 *
 * Context: supervisor set-up, before confinement. Calling it again after it
 * succeeded does nothing.
 * Return: 0, or -1 with @err set (nothing is left loaded).
 */
int httpd_load(char *err, size_t errlen)
{
	struct {
		const char *name;
		void **slot;
	} const syms[] = {
		{ "MHD_start_daemon", (void **)&httpd.start_daemon },
		{ "MHD_stop_daemon", (void **)&httpd.stop_daemon },
		{ "MHD_queue_response", (void **)&httpd.queue_response },
		{ "MHD_create_response_from_buffer", (void **)&httpd.create_response_from_buffer },
		{ "MHD_create_response_from_buffer_with_free_callback_cls",
		  (void **)&httpd.create_response_from_buffer_with_free_callback_cls },
		{ "MHD_add_response_header", (void **)&httpd.add_response_header },
		{ "MHD_destroy_response", (void **)&httpd.destroy_response },
		{ "MHD_run", (void **)&httpd.run },
		{ "MHD_get_timeout", (void **)&httpd.get_timeout },
		{ "MHD_get_daemon_info", (void **)&httpd.get_daemon_info },
		{ "MHD_lookup_connection_value", (void **)&httpd.lookup_connection_value },
		{ "MHD_suspend_connection", (void **)&httpd.suspend_connection },
		{ "MHD_resume_connection", (void **)&httpd.resume_connection },
	};
	void *lib;

	if (httpd.start_daemon)
		return 0;
	lib = dlopen(HTTPD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		lib = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "cannot load libmicrohttpd (%s): install libmicrohttpd12",
			 dlerror());
		return -1;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		if (resolve(lib, syms[i].name, syms[i].slot, err, errlen) < 0) {
			for (size_t j = 0; j < sizeof(syms) / sizeof(syms[0]); j++)
				*syms[j].slot = NULL;
			dlclose(lib);
			return -1;
		}
	}
	return 0;
}

/**
 * httpd_log() - libmicrohttpd's error messages into moat's log
 * @cls:	the endpoint's name for the line ("metrics http", "api")
 * @fmt:	MHD's format
 * @ap:		its arguments
 *
 * For MHD_OPTION_EXTERNAL_LOGGER (give it first among the options).
 */
void httpd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warn("%s: %s", (const char *)cls, buf);
}

/**
 * httpd_seccomp() - what libmicrohttpd calls serving connections, in any
 * mode (the metrics thread and the API in the loop add their own)
 * @ctx:	the supervisor's filter
 */
void httpd_seccomp(scmp_filter_ctx ctx)
{
	ALLOW(ctx, accept4);	 /* clients' connections */
	ALLOW(ctx, accept);	 /* the same on builds without accept4 */
	ALLOW(ctx, recvfrom);	 /* requests */
	ALLOW(ctx, sendto);	 /* responses */
	ALLOW(ctx, sendmsg);	 /* responses (headers and body together) */
	ALLOW(ctx, writev);	 /* the same on some paths */
	ALLOW(ctx, setsockopt);	 /* TCP_NODELAY/TCP_CORK on responses */
	ALLOW(ctx, getsockopt);	 /* socket state checks */
	ALLOW(ctx, getsockname); /* the accepted socket's address family */
	ALLOW(ctx, fcntl);	 /* non-blocking, close-on-exec accepted sockets */
	ALLOW(ctx, shutdown);	 /* closing a connection */
}
