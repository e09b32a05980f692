/* SPDX-License-Identifier: MIT */
/*
 * fuzz_guest_stream.c - libFuzzer harness for the stream frontend's input
 * (supervisor/guest_stream.c): the input is the byte stream a hostile VMM
 * sends, cut into pieces at places the input itself chooses (so length
 * prefixes and frames straddle reads). The real guest port runs on a
 * private loop against a real region; the harness drains g2s as the
 * netstack would. Checked: no crash (ASan/UBSan), every frame that reaches
 * g2s is 14..MTU+14 bytes, and the port keeps accepting clients.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/region.h"
#include "shm/ring.h"
#include "supervisor/guest.h"
#include "supervisor/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct region r;
static struct loop lp;
static struct ring g2s;
static struct guest *g;
static struct sockaddr_un sa = { .sun_family = AF_UNIX };
static uint8_t frame[65536];

static void pump(void)
{
	for (int i = 0; i < 64; i++)
		if (loop_run_once(&lp, 0) == 0)
			break;
}

static void drain(void)
{
	uint32_t type;
	int n;

	while ((n = ring_pop(&g2s, &type, frame, sizeof(frame))) >= 0) {
		assert(type == MOAT_REC_FRAME);
		assert(n >= 14 && (uint32_t)n <= r.hdr.mtu + 14);
	}
	assert(n == -EAGAIN);
	ring_release(&g2s);
}

static void fini(void)
{
	guest_close(g); /* removes the socket file */
}

static void init(void)
{
	struct moat_shm_header proto = { .mtu = 1500 };
	struct region_config rc = { .frame_ring_bytes = 65536, .flow_ring_bytes = 65536 };
	struct guest_spec spec;
	char err[256], s[160];
	int gefd, nefd;

	log_init("fuzz", LOG_LVL_ERROR);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/moat-fuzz-stream.%d", (int)getpid());
	snprintf(s, sizeof(s), "stream:%s", sa.sun_path);
	gefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	nefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (region_create(&rc, &proto, &r) < 0 || gefd < 0 || nefd < 0 || loop_init(&lp) < 0 ||
	    guest_spec_parse(s, &spec, err, sizeof(err)) < 0)
		abort();
	g = guest_open(&spec, err, sizeof(err));
	if (!g || guest_start(g, &lp, &r, gefd, nefd) < 0)
		abort();
	ring_attach(&g2s, r.part[MOAT_PART_RING_G2S], region_ring_capacity(&r, MOAT_PART_RING_G2S),
		    -1, gefd, NULL);
	atexit(fini);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int c;

	if (!g)
		init();
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	fcntl(c, F_SETFL, O_NONBLOCK);
	pump();
	/* The first byte of each piece says how long the piece is. */
	while (off < size) {
		size_t piece = (size_t)data[off++] * 7 + 1;

		if (piece > size - off)
			piece = size - off;
		if (send(c, data + off, piece, MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
		    errno != EPIPE && errno != ECONNRESET)
			abort();
		off += piece;
		pump();
		drain();
		pump();
	}
	close(c);
	pump();
	drain();
	return 0;
}
