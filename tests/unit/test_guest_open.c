/* SPDX-License-Identifier: MIT */
/*
 * test_guest_open.c - --guest specs that cannot work are refused before
 * anything starts, with one line that says what to fix; socket paths are
 * created, reused when stale, and never stolen from a live owner.
 */
#include "guest_harness.h"

static char err[512];
static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/moat-go.XXXXXX");
	cr_assert(mkdtemp(dir));
	log_init("test", LOG_LVL_ERROR);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(guest_open, .init = setup, .fini = teardown, .timeout = 30);

/* Open @spec; expect failure with @needle in the message. */
static void refused(const char *spec, const char *needle)
{
	struct guest_spec gs;
	struct guest *g;

	cr_assert_eq(guest_spec_parse(spec, &gs, err, sizeof(err)), 0, "%s: %s", spec, err);
	g = guest_open(&gs, err, sizeof(err));
	cr_assert_null(g, "%s was accepted", spec);
	cr_assert(strstr(err, needle), "%s: message '%s' lacks '%s'", spec, err, needle);
	cr_assert_null(strchr(err, '\n'), "one line please: %s", err);
}

static struct guest *opened(const char *spec)
{
	struct guest_spec gs;
	struct guest *g;

	cr_assert_eq(guest_spec_parse(spec, &gs, err, sizeof(err)), 0, "%s: %s", spec, err);
	g = guest_open(&gs, err, sizeof(err));
	cr_assert(g, "%s: %s", spec, err);
	return g;
}

Test(guest_open, bad_specs_do_not_parse)
{
	static const char *const bad[] = {
		"",
		"tap",
		"tap:",
		"tap:@/x",
		"tap:averyveryverylongname0",
		"tap:t0@",
		"stream",
		"stream:",
		"dgram:",
		"shm:",
		"tap-fd:",
		"tap-fd:x",
		"stream-fd:-1",
		"dgram-fd:99999999",
		"vhost:foo",
		"stream:/a/very/long/path/that/goes/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/x.sock",
	};
	struct guest_spec gs;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(guest_spec_parse(bad[i], &gs, err, sizeof(err)), -1, "'%s' parsed",
			     bad[i]);
}

Test(guest_open, good_specs_parse)
{
	struct guest_spec gs;

	cr_assert_eq(guest_spec_parse("tap:tap0@/run/netns/g", &gs, err, sizeof(err)), 0);
	cr_assert_eq(gs.kind, GUEST_TAP);
	cr_assert_str_eq(gs.ifname, "tap0");
	cr_assert_str_eq(gs.netns, "/run/netns/g");
	cr_assert_eq(guest_spec_parse("stream-fd:7", &gs, err, sizeof(err)), 0);
	cr_assert_eq(gs.kind, GUEST_STREAM_FD);
	cr_assert_eq(gs.fd, 7);
	cr_assert_eq(guest_spec_parse("dgram:/tmp/x.sock", &gs, err, sizeof(err)), 0);
	cr_assert_eq(gs.kind, GUEST_DGRAM);
	cr_assert_eq(guest_spec_parse("shm:/tmp/x.sock", &gs, err, sizeof(err)), 0);
	cr_assert_eq(gs.kind, GUEST_SHM);
}

Test(guest_open, socket_in_missing_directory)
{
	refused("stream:/nonexistent-moat-dir/g.sock",
		"directory /nonexistent-moat-dir does not exist");
	refused("dgram:/nonexistent-moat-dir/g.sock", "does not exist");
	refused("shm:/nonexistent-moat-dir/g.sock", "does not exist");
}

Test(guest_open, bad_descriptors)
{
	int sp[2], fd;

	refused("stream-fd:987", "descriptor 987 is not open");
	refused("dgram-fd:987", "not open");
	refused("tap-fd:987", "not open");
	fd = open("/dev/null", O_RDONLY);
	{
		char spec[32];

		snprintf(spec, sizeof(spec), "stream-fd:%d", fd);
		refused(spec, "is not a socket");
		cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp), 0);
		snprintf(spec, sizeof(spec), "stream-fd:%d", sp[0]);
		refused(spec, "is a datagram socket, not a stream socket");
		close(sp[0]);
		close(sp[1]);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
		snprintf(spec, sizeof(spec), "dgram-fd:%d", sp[0]);
		refused(spec, "is a stream socket, not a datagram socket");
	}
}

Test(guest_open, missing_tap_and_namespace)
{
	refused("tap:moatnosuch0", "tap moatnosuch0 does not exist");
	refused("tap:tap0@/nonexistent-moat-netns",
		"network namespace /nonexistent-moat-netns does not exist");
	refused("tap:tap0@/etc/hostname", "not a network namespace");
}

Test(guest_open, path_that_is_not_a_socket_is_left_alone)
{
	char path[128], spec[160];
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/file", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fclose(f);
	snprintf(spec, sizeof(spec), "stream:%s", path);
	refused(spec, "exists and is not a socket");
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
}

Test(guest_open, stale_socket_replaced_live_one_refused)
{
	char path[128], spec[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct guest *g;
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/g.sock", dir);
	memcpy(sa.sun_path, path, strlen(path));
	/* A stale socket: bound, then its owner went away. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	snprintf(spec, sizeof(spec), "stream:%s", path);
	g = opened(spec);
	/* Now it is live: a second moat must not take it. */
	refused(spec, "in use by another process");
	snprintf(spec, sizeof(spec), "dgram:%s", path);
	refused(spec, "in use");
	guest_close(g);
	cr_assert_neq(stat(path, &st), 0, "the socket file should be removed at close");
}

Test(guest_open, refused_open_leaves_someone_elses_socket)
{
	char path[128], spec[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/d.sock", dir);
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(spec, sizeof(spec), "dgram:%s", path);
	refused(spec, "in use");
	cr_assert_eq(stat(path, &st), 0, "someone else's socket was removed");
	close(fd);
}
