/* SPDX-License-Identifier: MIT */
/*
 * httpd.h - libmicrohttpd, loaded only where an HTTP endpoint is asked for
 *
 * moat's binary does not link libmicrohttpd: the netstack and the proxy are
 * the same executable, and a linked library (with GnuTLS behind it) would be
 * mapped into all three processes, for a metrics endpoint only the
 * supervisor serves and most sandboxes do not ask for. httpd_load() opens it
 * with dlopen() when --metrics is given, before the supervisor confines
 * itself, and fills `httpd` with the functions moat calls. Types and
 * constants still come from <microhttpd.h>.
 */
#ifndef MOAT_HTTPD_H
#define MOAT_HTTPD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <seccomp.h>

/* The soname Debian 12 ships (libmicrohttpd12); "libmicrohttpd.so" is tried next. */
#define HTTPD_SONAME "libmicrohttpd.so.12"

/**
 * struct httpd_lib - the libmicrohttpd functions moat uses, each with the
 * prototype <microhttpd.h> gives it (NULL until httpd_load() succeeded)
 */
struct httpd_lib {
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_create_response_from_buffer_with_free_callback_cls)
		*create_response_from_buffer_with_free_callback_cls;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_run) *run;
	__typeof__(MHD_get_timeout) *get_timeout;
	__typeof__(MHD_get_daemon_info) *get_daemon_info;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_suspend_connection) *suspend_connection;
	__typeof__(MHD_resume_connection) *resume_connection;
};

extern struct httpd_lib httpd;

int httpd_load(char *err, size_t errlen);
void httpd_seccomp(scmp_filter_ctx ctx);
void __attribute__((format(printf, 2, 0))) httpd_log(void *cls, const char *fmt, va_list ap);

#endif /* MOAT_HTTPD_H */
