/* SPDX-License-Identifier: MIT */
/*
 * test_guest_pcap.c - --pcap records every frame crossing the guest port,
 * both ways, in a classic pcap file any tool reads; dropped frames are not
 * recorded.
 */
#include "guest_harness.h"
#include "supervisor/pcap.h"

static struct harness h;

static void teardown(void)
{
	h_teardown(&h);
}

TestSuite(guest_pcap, .fini = teardown, .timeout = 30);

struct rec {
	uint32_t len;
	uint8_t data[2000];
};

/* Parse @path fully; returns the number of records, fills @recs. */
static int read_pcap(const char *path, struct rec *recs, int max)
{
	FILE *f = fopen(path, "rb");
	uint32_t gh[6];
	int n = 0;

	cr_assert(f, "no pcap file");
	cr_assert_eq(fread(gh, 4, 6, f), 6);
	cr_assert_eq(gh[0], 0xa1b2c3d4u, "magic");
	cr_assert_eq(gh[1], 2u | 4u << 16, "version 2.4");
	cr_assert_geq(gh[4], 1514u, "snaplen");
	cr_assert_eq(gh[5], 1u, "LINKTYPE_ETHERNET");
	for (;;) {
		uint32_t rh[4];
		size_t k = fread(rh, 4, 4, f);

		if (k == 0)
			break;
		cr_assert_eq(k, 4, "truncated record header");
		cr_assert_lt(rh[1], 1000000u, "microseconds");
		cr_assert_eq(rh[2], rh[3], "frame cut");
		cr_assert_lt(n, max);
		cr_assert_leq(rh[2], sizeof(recs[n].data));
		recs[n].len = rh[2];
		cr_assert_eq(fread(recs[n].data, 1, rh[2], f), rh[2], "truncated frame");
		n++;
	}
	fclose(f);
	return n;
}

Test(guest_pcap, both_directions_recorded)
{
	static struct rec recs[64];
	uint8_t f[1600], buf[1600];
	char spec[32], pcap[160];
	int sp[2], n;

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	h_dir(&h);
	snprintf(pcap, sizeof(pcap), "%s/g.pcap", h.dir);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp), 0);
	snprintf(spec, sizeof(spec), "dgram-fd:%d", sp[0]);
	h_start(&h, spec, pcap);
	for (uint32_t i = 0; i < 10; i++)
		send(sp[1], f, h_frame(f, 60 + i, i), 0);
	send(sp[1], f, 10, 0); /* too short: dropped, not recorded */
	h_pump(&h);
	for (uint32_t i = 0; i < 10; i++)
		cr_assert_gt(h_pop(&h, buf, sizeof(buf)), 0);
	for (uint32_t i = 0; i < 5; i++)
		h_push(&h, f, h_frame(f, 1514, 100 + i));
	h_flush(&h);
	h_pump(&h);
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(recv(sp[1], buf, sizeof(buf), 0), 1514);
	/* The file is current after each batch, before close. */
	n = read_pcap(pcap, recs, 64);
	cr_assert_eq(n, 15);
	guest_close(h.g);
	h.g = NULL;
	n = read_pcap(pcap, recs, 64);
	cr_assert_eq(n, 15);
	for (int i = 0; i < 10; i++)
		h_check_frame(recs[i].data, recs[i].len, 60 + (uint32_t)i, (uint32_t)i);
	for (int i = 0; i < 5; i++)
		h_check_frame(recs[10 + i].data, recs[10 + i].len, 1514, 100 + (uint32_t)i);
	close(sp[1]);
}

Test(guest_pcap, many_frames_through_a_small_buffer)
{
	char path[] = "/tmp/moat-pcap.XXXXXX";
	char err[256];
	uint8_t f[1514];
	struct pcap *p;
	struct stat st;
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	close(fd);
	unlink(path); /* pcap_open() creates it, with mode 0600 */
	umask(022);
	p = pcap_open(path, 1514, err, sizeof(err));
	cr_assert(p, "%s", err);
	for (uint32_t i = 0; i < 1000; i++) /* ~1.5 MB: the buffer fills many times */
		pcap_frame(p, f, h_frame(f, 1514, i));
	cr_assert_eq(pcap_frames(p), 1000);
	pcap_close(p);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 24 + 1000 * (16 + 1514));
	cr_assert_eq(st.st_mode & 0777, 0600);
	unlink(path);
}

Test(guest_pcap, unwritable_path_is_an_error)
{
	char err[256];

	cr_assert_null(pcap_open("/nonexistent-moat-dir/x.pcap", 1514, err, sizeof(err)));
	cr_assert(strstr(err, "/nonexistent-moat-dir/x.pcap"), "%s", err);
}
