/* SPDX-License-Identifier: MIT */
/*
 * test_events.c - the JSON-lines event stream of supervisor/events.c
 *
 * events_from_proxy() takes untrusted JSON from the proxy: it must reject
 * non-objects, unknown kinds, invalid UTF-8, duplicate keys and documented
 * fields of the wrong type, and drop non-scalar fields and odd keys. Every
 * line written must be one valid JSON object with "ts" (RFC 3339 UTC,
 * microseconds) and "event". events_reader_input() must reassemble
 * length-prefixed messages however the stream is cut, and report a length
 * of 0 or above CHANNEL_EVENT_MAX as -EPROTO (the framing itself is tested
 * in test_channel.c). Criterion runs each test in its
 * own process, so the module's static state starts fresh every time.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "supervisor/events.h"

static char dir[64], path[128];

static void setup(void)
{
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/moat-test-ev.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	cr_assert_eq(events_open(path, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	events_close();
	unlink(path);
	rmdir(dir);
}

TestSuite(events, .init = setup, .fini = teardown);

/* Read every line written so far; each must be a JSON object with ts and event. */
static json_t *lines(void)
{
	json_t *all = json_array();
	FILE *f = fopen(path, "r");
	regex_t ts_re;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	cr_assert_not_null(f);
	cr_assert_eq(regcomp(&ts_re,
			     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	while ((n = getline(&line, &cap, f)) > 0) {
		json_error_t e;
		json_t *o;

		cr_assert_eq(line[n - 1], '\n', "line without a newline: %s", line);
		cr_assert_null(memchr(line, '\n', (size_t)n - 1), "two lines in one");
		o = json_loadb(line, (size_t)n - 1, JSON_REJECT_DUPLICATES, &e);
		cr_assert_not_null(o, "not JSON (%s): %s", e.text, line);
		cr_assert(json_is_object(o), "not an object: %s", line);
		cr_assert(json_is_string(json_object_get(o, "ts")), "no ts: %s", line);
		cr_assert(json_is_string(json_object_get(o, "event")), "no event: %s", line);
		cr_assert_eq(regexec(&ts_re, json_string_value(json_object_get(o, "ts")), 0, NULL,
				     0),
			     0, "bad ts: %s", line);
		json_array_append_new(all, o);
	}
	free(line);
	regfree(&ts_re);
	fclose(f);
	return all;
}

static int proxy(const char *s)
{
	return events_from_proxy(s, strlen(s));
}

Test(events, supervisor_events_are_json_lines)
{
	struct moat_mailbox m = { .reason = MOAT_VIOL_POLICY_TERMINATE,
				  .rule = 2,
				  .flow = 9,
				  .dst_family = 4,
				  .dst_addr = { 169, 254, 169, 254 },
				  .dst_port = 80 };
	json_t *all, *o;

	snprintf(m.detail, sizeof(m.detail), "rule 2 \"terminate\"\n\\ matched");
	events_start(100, 101);
	events_violation("policy_terminate", "moat-proxy", &m, 1234);
	events_child_exit("moat-netstack", -1, 31);
	events_reload("/etc/moat/p.json", false, "line 3: \"x\" unknown");
	events_reload("/etc/moat/p.json", true, NULL);
	events_stop(0);
	all = lines();
	cr_assert_eq(json_array_size(all), 7);
	o = json_array_get(all, 0);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "start");
	cr_assert_eq(json_integer_value(json_object_get(o, "netstack_pid")), 100);
	o = json_array_get(all, 1);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "violation");
	cr_assert_str_eq(json_string_value(json_object_get(o, "reason")), "policy_terminate");
	cr_assert_str_eq(json_string_value(json_object_get(o, "dst")), "169.254.169.254");
	cr_assert_eq(json_integer_value(json_object_get(o, "dst_port")), 80);
	cr_assert_eq(json_integer_value(json_object_get(o, "rule")), 2);
	cr_assert_str_eq(json_string_value(json_object_get(o, "detail")), m.detail);
	o = json_array_get(all, 2);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "termination");
	cr_assert_eq(json_integer_value(json_object_get(o, "kill_us")), 1234);
	o = json_array_get(all, 3);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "child_exit");
	cr_assert_eq(json_integer_value(json_object_get(o, "signal")), 31);
	o = json_array_get(all, 4);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "policy_reload");
	cr_assert(json_is_false(json_object_get(o, "ok")));
	o = json_array_get(all, 6);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "stop");
	json_decref(all);
}

Test(events, violation_detail_is_bounded_and_utf8_checked)
{
	struct moat_mailbox m = { .reason = MOAT_VIOL_RING_CORRUPT, .rule = -1 };
	struct events_stats st;
	json_t *all;

	/* No terminating NUL and a byte that is not UTF-8: a hostile mailbox. */
	memset(m.detail, 'A', sizeof(m.detail));
	m.detail[5] = (char)0xff;
	m.reason = 1000; /* out of range */
	events_violation("none", "moat-netstack", &m, 1);
	all = lines();
	cr_assert_eq(json_array_size(all), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 0), "detail")),
			 "(not UTF-8)");
	json_decref(all);
	events_stats(&st);
	cr_assert_eq(st.violations[0], 1, "an out-of-range reason counts as none");
	cr_assert_eq(st.emitted[EVENTS_VIOLATION], 1);
	cr_assert_eq(st.emitted[EVENTS_TERMINATION], 1);
}

Test(events, proxy_rejects_what_is_not_a_known_event)
{
	static const char *const bad[] = {
		"",
		"[]",
		"42",
		"\"denial\"",
		"null",
		"{}",
		"{\"event\":3}",
		"{\"event\":\"bogus\"}",
		"{\"event\":\"start\"}",
		"{\"event\":\"violation\"}",
		"{\"event\":\"denial\"",
		"{\"event\":\"denial\"} trailing",
		"{\"event\":\"denial\",\"event\":\"denial\"}",
		"{\"event\":\"denial\",\"dst\":\"\xff\xfe\"}",
		"{\"event\":\"den\xc3ial\"}",
		"{\"event\":\"denial\",\"dst\":\"a\\u0000b\"}",
		"{\"event\":\"denial\",\"dst_port\":\"443\"}",
		"{\"event\":\"denial\",\"rule\":1.5}",
		"{\"event\":\"denial\",\"dst\":[\"1.2.3.4\"]}",
		"{\"event\":\"dns_denial\",\"name\":7}",
		"{\"event\":\"dns_denial\",\"terminate\":\"yes\"}",
		"{\"event\":\"limit\",\"action\":1}",
		"{\"event\":\"denial\",\"guest_port\":true}",
	};
	struct events_stats st;
	json_t *all;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(proxy(bad[i]), -1, "accepted: %s", bad[i]);
	/* Also with the exact length (no NUL inside the message). */
	cr_assert_eq(events_from_proxy("{\"event\":\"denial\"}xx", 20), -1);
	all = lines();
	cr_assert_eq(json_array_size(all), 0, "a rejected event was written");
	json_decref(all);
	events_stats(&st);
	cr_assert_eq(st.proxy_rejected, sizeof(bad) / sizeof(bad[0]) + 1);
}

Test(events, proxy_events_are_stamped_and_filtered)
{
	json_t *all, *o;
	char big[1200];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(proxy("{\"event\":\"denial\",\"ts\":\"forged\",\"direction\":\"egress\","
			   "\"protocol\":\"tcp\",\"dst\":\"10.88.0.10\",\"dst_port\":8080,"
			   "\"rule\":-1,\"flow\":5,\"nested\":{\"a\":1},\"list\":[1,2],"
			   "\"Bad-Key\":\"x\",\"note\":\"caf\xc3\xa9\",\"n\":null,\"f\":1.5}"),
		     0);
	cr_assert_eq(
		proxy("{\"event\":\"dns_denial\",\"direction\":\"egress\",\"protocol\":\"udp\","
		      "\"name\":\"evil.example.\",\"rule\":3}"),
		0);
	cr_assert_eq(proxy("{\"event\":\"dns_denial\",\"name\":\"a.example.\",\"qtype\":28}"), 0);
	cr_assert_eq(proxy("{\"event\":\"limit\",\"limit\":\"max_tcp_connections\","
			   "\"action\":\"refuse\",\"protocol\":\"tcp\",\"max\":64,\"flow\":3}"),
		     0);
	{
		char msg[1400];

		snprintf(msg, sizeof(msg), "{\"event\":\"limit\",\"comment\":\"%s\"}", big);
		cr_assert_eq(proxy(msg), 0, "an over-long unknown field is dropped, not fatal");
		snprintf(msg, sizeof(msg), "{\"event\":\"denial\",\"dst\":\"%s\"}", big);
		cr_assert_eq(proxy(msg), -1, "an over-long documented field rejects the event");
	}

	all = lines();
	cr_assert_eq(json_array_size(all), 5);
	o = json_array_get(all, 0);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "denial");
	cr_assert_str_neq(json_string_value(json_object_get(o, "ts")), "forged");
	cr_assert_str_eq(json_string_value(json_object_get(o, "dst")), "10.88.0.10");
	cr_assert_eq(json_integer_value(json_object_get(o, "dst_port")), 8080);
	cr_assert_eq(json_integer_value(json_object_get(o, "rule")), -1);
	cr_assert_str_eq(json_string_value(json_object_get(o, "note")), "caf\xc3\xa9");
	cr_assert_null(json_object_get(o, "nested"), "an object field was copied");
	cr_assert_null(json_object_get(o, "list"), "an array field was copied");
	cr_assert_null(json_object_get(o, "Bad-Key"), "an odd key was copied");
	cr_assert_null(json_object_get(o, "n"), "null is not copied");
	cr_assert_null(json_object_get(o, "f"), "reals are not copied");
	o = json_array_get(all, 1);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "dns_denial");
	cr_assert_str_eq(json_string_value(json_object_get(o, "name")), "evil.example.");
	o = json_array_get(all, 3);
	cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "limit");
	cr_assert_eq(json_integer_value(json_object_get(o, "max")), 64);
	o = json_array_get(all, 4);
	cr_assert_null(json_object_get(o, "comment"));
	json_decref(all);
}

Test(events, proxy_fields_are_capped)
{
	char msg[4096];
	size_t off;
	json_t *all;

	off = (size_t)snprintf(msg, sizeof(msg), "{\"event\":\"denial\"");
	for (int i = 0; i < 100; i++)
		off += (size_t)snprintf(msg + off, sizeof(msg) - off, ",\"k%d\":%d", i, i);
	snprintf(msg + off, sizeof(msg) - off, "}");
	cr_assert_eq(proxy(msg), 0);
	all = lines();
	cr_assert_eq(json_array_size(all), 1);
	cr_assert_leq(json_object_size(json_array_get(all, 0)), 2 + 32);
	json_decref(all);
}

Test(events, proxy_flood_is_rate_limited)
{
	struct events_stats st;
	json_t *all;
	int n = 3 * EVENTS_PROXY_BURST;

	for (int i = 0; i < n; i++)
		cr_assert_eq(proxy("{\"event\":\"denial\",\"dst_port\":1}"), 0);
	events_stats(&st);
	all = lines();
	cr_assert_gt(st.proxy_suppressed, 0, "no event was suppressed");
	cr_assert_eq(json_array_size(all) + st.proxy_suppressed, (size_t)n);
	cr_assert_geq(json_array_size(all), EVENTS_PROXY_BURST, "the burst was not written");
	cr_assert_eq(st.emitted[EVENTS_DENIAL], json_array_size(all));
	json_decref(all);
}

/* ---- the framed channel --------------------------------------------------- */

static void frame(char *out, size_t *off, const char *json)
{
	uint32_t len = (uint32_t)strlen(json);

	memcpy(out + *off, &len, 4);
	memcpy(out + *off + 4, json, len);
	*off += 4 + len;
}

Test(events, reader_reassembles_cut_messages)
{
	static struct events_reader rd;
	char stream[1024], err[128];
	size_t len = 0;
	int sp[2];
	json_t *all;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	frame(stream, &len, "{\"event\":\"denial\",\"flow\":1}");
	frame(stream, &len, "not json at all");
	frame(stream, &len, "{\"event\":\"dns_denial\",\"name\":\"x.\"}");
	frame(stream, &len, "{\"event\":\"limit\",\"limit\":\"max_udp_flows\"}");
	/* Nothing there yet: still open. */
	cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), 1);
	/* One byte at a time: every cut point, the length prefix included. */
	for (size_t i = 0; i < len; i++) {
		cr_assert_eq(write(sp[1], stream + i, 1), 1);
		cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), 1);
	}
	cr_assert_eq(channel_in_pending(&rd.in), 0);
	/* All of it at once, twice. */
	cr_assert_eq(write(sp[1], stream, len), (ssize_t)len);
	cr_assert_eq(write(sp[1], stream, len), (ssize_t)len);
	cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), 1);
	close(sp[1]);
	cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), 0, "EOF");
	close(sp[0]);
	all = lines();
	cr_assert_eq(json_array_size(all), 9);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 8), "event")),
			 "limit");
	json_decref(all);
}

Test(events, reader_accepts_the_largest_message)
{
	static struct events_reader rd;
	static char stream[4 + CHANNEL_EVENT_MAX];
	char err[128];
	uint32_t len = CHANNEL_EVENT_MAX;
	size_t off = 0;
	int sp[2];
	json_t *all;

	/* {"event":"denial","pad":"xxxx...."} of exactly the maximum length */
	memcpy(stream, &len, 4);
	memset(stream + 4, 'x', len);
	memcpy(stream + 4, "{\"event\":\"denial\",\"pad\":\"", 25);
	memcpy(stream + 4 + len - 2, "\"}", 2);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	while (off < sizeof(stream)) {
		ssize_t n = write(sp[1], stream + off,
				  sizeof(stream) - off < 8192 ? sizeof(stream) - off : 8192);

		cr_assert_gt(n, 0);
		off += (size_t)n;
		cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), 1);
	}
	cr_assert_eq(channel_in_pending(&rd.in), 0);
	all = lines();
	cr_assert_eq(json_array_size(all), 1, "the maximum-size event was lost");
	cr_assert_null(json_object_get(json_array_get(all, 0), "pad"), "a 64 KiB field copied");
	json_decref(all);
	close(sp[0]);
	close(sp[1]);
}

Test(events, reader_reports_oversized_length_as_protocol_error)
{
	static struct events_reader rd;
	char stream[64], err[128] = "";
	uint32_t huge = CHANNEL_EVENT_MAX + 1;
	size_t len = 0;
	int sp[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	frame(stream, &len, "{\"event\":\"denial\"}");
	memcpy(stream + len, &huge, 4);
	len += 4;
	cr_assert_eq(write(sp[1], stream, len), (ssize_t)len);
	cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "bytes"), "%s", err);
	close(sp[0]);
	close(sp[1]);
	/* The good message before the bad length was still written. */
	json_t *all = lines();

	cr_assert_eq(json_array_size(all), 1);
	json_decref(all);
	events_reader_fini(&rd);
	events_reader_fini(&rd); /* twice is harmless */
}

Test(events, reader_reports_zero_length_as_protocol_error)
{
	static struct events_reader rd;
	char stream[64], err[128] = "";
	uint32_t zero = 0;
	size_t len = 0;
	int sp[2];

	/* An empty message cannot be an event: the stream is broken, not the JSON. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	frame(stream, &len, "{\"event\":\"denial\"}");
	memcpy(stream + len, &zero, 4);
	len += 4;
	cr_assert_eq(write(sp[1], stream, len), (ssize_t)len);
	cr_assert_eq(events_reader_input(&rd, sp[0], err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "control channel"), "%s", err);
	close(sp[0]);
	close(sp[1]);
	json_t *all = lines();

	cr_assert_eq(json_array_size(all), 1);
	json_decref(all);
	events_reader_fini(&rd);
}

Test(events, counted_without_a_stream)
{
	struct events_stats st;

	events_close(); /* no --events: nothing written, still counted */
	events_start(1, 2);
	cr_assert_eq(proxy("{\"event\":\"denial\"}"), 0);
	cr_assert_eq(proxy("[1]"), -1);
	events_stats(&st);
	cr_assert_eq(st.emitted[EVENTS_START], 1);
	cr_assert_eq(st.emitted[EVENTS_DENIAL], 1);
	cr_assert_eq(st.proxy_rejected, 1);
	cr_assert_str_eq(events_kind_name(EVENTS_DNS_DENIAL), "dns_denial");
	cr_assert_str_eq(events_kind_name(EVENTS_KIND_COUNT), "unknown");
	cr_assert_str_eq(events_violation_name(MOAT_VIOL_SPOOF), "spoof");
	cr_assert_str_eq(events_violation_name(999), "none");
}

Test(events, stdout_stream)
{
	char err[64];

	events_close();
	cr_assert_eq(events_open("-", err, sizeof(err)), 0);
	events_close();
	cr_assert_eq(events_open("/nonexistent-dir/e.jsonl", err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "/nonexistent-dir/e.jsonl"));
}
