/* SPDX-License-Identifier: MIT */
/*
 * shm_forge.c - play a hostile process writing moat's shared region
 *
 * Theory of Operation
 * -------------------
 * A test tool, not part of moat (tests/e2e/t_forged_rings.sh runs it as
 * root). Every process that maps the region may be compromised, and
 * moat's readers must take whatever is written there as a violation, never
 * as a reason to crash or spin. This tool finds the supervisor's memfd in
 * /proc/PID/fd (a link to "/memfd:moat (deleted)"), opens it through that
 * link, maps it shared, checks the header, and forges one thing:
 *
 *   RING:head	the producer's head, a capacity and a page beyond the tail
 *		(the consumer sees more published than the ring holds)
 *   RING:tail	the consumer's tail, a page ahead of the head (the producer
 *		sees space released that was never written)
 *   RING:len	a record at the tail claiming a payload larger than the
 *		ring, with the head just past its header
 *   mbox:netstack, mbox:proxy
 *		a report in that mailbox with an unknown reason and a detail
 *		of control bytes, quotes, backslashes and no NUL
 *
 * RING is g2s, s2g, s2p or p2s. The rightful writer keeps publishing its
 * own value, so a ring is forged again every 100 us until PID has exited
 * (or is a zombie) or SECONDS have passed; a mailbox is written once. It
 * includes nothing of moat's but the public header shm/moat_shm.h.
 *
 * usage: shm_forge PID WHAT [SECONDS]
 * Exit: 0 when PID ended, 1 on errors, 2 if PID still lives at the end.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/moat_shm.h"

static void die(const char *what)
{
	fprintf(stderr, "shm_forge: %s: %s\n", what, errno ? strerror(errno) : "invalid");
	exit(1);
}

/* Open PID's memfd "moat" through /proc. Return: the fd. */
static int open_region(int pid)
{
	char dir[64], path[384], link[256];
	struct dirent *e;
	DIR *d;
	int fd = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d)
		die(dir);
	while ((e = readdir(d)) && fd < 0) {
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		if (!strncmp(link, "/memfd:moat ", 12) || !strcmp(link, "/memfd:moat"))
			fd = open(path, O_RDWR | O_CLOEXEC);
	}
	closedir(d);
	if (fd < 0) {
		errno = ENOENT;
		die("no /memfd:moat among the process's descriptors");
	}
	return fd;
}

/* Has PID exited (gone, or a zombie nobody reaped yet)? */
static int ended(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t load(uint64_t *p)
{
	return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}

static void store(uint64_t *p, uint64_t v)
{
	atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}

static void forge_mailbox(struct moat_mailbox *mb)
{
	static const char junk[] = "forged\n\x1b[31mred\x1b[0m \"quoted\" back\\slash \x7f\xff\x01";
	uint32_t seq = atomic_load_explicit((_Atomic uint32_t *)&mb->seq, memory_order_relaxed);

	mb->reason = 0xdead;
	mb->rule = -1;
	mb->flow = 0;
	mb->proto = 0xff;
	mb->dst_family = 0;
	for (size_t i = 0; i < sizeof(mb->detail); i++) /* no NUL anywhere */
		mb->detail[i] = junk[i % (sizeof(junk) - 1)];
	atomic_store_explicit((_Atomic uint32_t *)&mb->seq, seq + 1, memory_order_release);
}

int main(int argc, char **argv)
{
	static const char *const rings[] = { "g2s", "s2g", "s2p", "p2s" };
	struct moat_shm_header hdr;
	const char *what, *colon;
	double secs = 5, end;
	struct stat st;
	uint8_t *base;
	int pid, fd, part = -1;

	if (argc < 3) {
		fprintf(stderr, "usage: shm_forge PID WHAT [SECONDS]\n");
		return 1;
	}
	pid = atoi(argv[1]);
	what = argv[2];
	if (argc > 3)
		secs = atof(argv[3]);
	colon = strchr(what, ':');
	if (!colon) {
		errno = EINVAL;
		die("WHAT is RING:head|tail|len or mbox:netstack|proxy");
	}
	fd = open_region(pid);
	if (fstat(fd, &st) < 0)
		die("fstat");
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		die("mmap");
	memcpy(&hdr, base, sizeof(hdr));
	if (hdr.magic != MOAT_SHM_MAGIC || hdr.version != MOAT_SHM_VERSION ||
	    hdr.region_size != (uint64_t)st.st_size) {
		errno = EPROTO;
		die("not a moat region of this version");
	}
	for (int i = 0; i < MOAT_PART_COUNT; i++)
		if (hdr.part[i].off + hdr.part[i].size > hdr.region_size) {
			errno = EPROTO;
			die("a part lies outside the region");
		}

	if (!strncmp(what, "mbox:", 5)) {
		if (!strcmp(colon + 1, "netstack"))
			part = MOAT_PART_MBOX_NETSTACK;
		else if (!strcmp(colon + 1, "proxy"))
			part = MOAT_PART_MBOX_PROXY;
		else {
			errno = EINVAL;
			die("mbox:netstack or mbox:proxy");
		}
		forge_mailbox((struct moat_mailbox *)(base + hdr.part[part].off));
		printf("shm_forge: forged a report in %s\n", what);
		fflush(stdout);
	} else {
		struct moat_ring_ctl *ctl;
		uint8_t *data;
		uint64_t cap;
		const char *field = colon + 1;

		for (int i = 0; i < 4; i++)
			if (!strncmp(what, rings[i], 3) && colon - what == 3)
				part = MOAT_PART_RING_G2S + i;
		if (part < 0 ||
		    (strcmp(field, "head") && strcmp(field, "tail") && strcmp(field, "len"))) {
			errno = EINVAL;
			die("RING is g2s, s2g, s2p or p2s; the field head, tail or len");
		}
		ctl = (struct moat_ring_ctl *)(base + hdr.part[part].off);
		data = base + hdr.part[part].off + MOAT_RING_DATA_OFF;
		cap = hdr.part[part].size - MOAT_RING_DATA_OFF;
		printf("shm_forge: forging %s (capacity %llu) for %.1f s\n", what,
		       (unsigned long long)cap, secs);
		fflush(stdout);
		end = now() + secs;
		while (!ended(pid) && now() < end) {
			if (!strcmp(field, "head")) {
				store(&ctl->head, load(&ctl->tail) + cap + 4096);
			} else if (!strcmp(field, "tail")) {
				store(&ctl->tail, load(&ctl->head) + 4096);
			} else {
				uint64_t tail = load(&ctl->tail);
				struct moat_rec_hdr h = { .len = (uint32_t)cap, .type = 1 };

				memcpy(data + (tail & (cap - 1)), &h, sizeof(h));
				store(&ctl->head, tail + 64);
			}
			usleep(100);
		}
	}
	end = now() + secs;
	while (!ended(pid) && now() < end)
		usleep(10000);
	return ended(pid) ? 0 : 2;
}
