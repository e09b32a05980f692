/* SPDX-License-Identifier: MIT */
/*
 * pcap.c - --pcap: record guest frames in a classic pcap file
 *
 * Theory of Operation
 * -------------------
 * Runs in the supervisor, called by the guest port for every frame it moves
 * in either direction (frames it drops are not recorded). The file is the
 * classic libpcap format that every tool reads: a 24-byte global header in
 * host byte order (magic 0xa1b2c3d4, version 2.4, LINKTYPE_ETHERNET) and a
 * 16-byte record header (microsecond timestamp, captured and original
 * length) before each frame.
 *
 * Writes are buffered in a private 256 KiB buffer and reach the file when it
 * fills or when the guest port finishes a batch (pcap_flush()), so a batch
 * of frames costs one write(2) and the file is current after every batch.
 * A write error (disk full, ...) is logged once and turns recording off:
 * the capture is a debugging aid and must never stop the data path. With
 * --pcap absent the guest port holds a NULL pointer and tests only that.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/pcap.h"

#define PCAP_MAGIC	       0xa1b2c3d4u /* microsecond timestamps */
#define PCAP_LINKTYPE_ETHERNET 1
#define PCAP_BUF	       (256u << 10)

struct pcap_file_hdr {
	uint32_t magic;
	uint16_t major, minor;
	int32_t thiszone;
	uint32_t sigfigs;
	uint32_t snaplen;
	uint32_t linktype;
};

struct pcap_rec_hdr {
	uint32_t ts_sec, ts_usec;
	uint32_t incl_len, orig_len;
};

struct pcap {
	int fd;
	bool failed;
	uint32_t snaplen;
	uint32_t used;
	uint64_t frames;
	char path[4096];
	uint8_t buf[PCAP_BUF];
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/**
 * pcap_open() - create (or truncate) a pcap file and write its header
 * @path:	file to write, created with mode 0600 (it holds guest traffic)
 * @snaplen:	largest frame that will be recorded
 * @err:	one line saying what went wrong
 * @errlen:	size of @err
 *
 * Context: supervisor, before the loop runs.
 * Return: the recorder (free with pcap_close()), or NULL with @err set.
 */
struct pcap *pcap_open(const char *path, uint32_t snaplen, char *err, size_t errlen)
{
	struct pcap_file_hdr h = {
		.magic = PCAP_MAGIC,
		.major = 2,
		.minor = 4,
		.snaplen = snaplen,
		.linktype = PCAP_LINKTYPE_ETHERNET,
	};
	struct pcap *p = calloc(1, sizeof(*p));
	int rc;

	if (snaplen > PCAP_BUF - sizeof(struct pcap_rec_hdr))
		snaplen = PCAP_BUF - sizeof(struct pcap_rec_hdr);
	h.snaplen = snaplen;

	if (!p) {
		snprintf(err, errlen, "--pcap %s: out of memory", path);
		return NULL;
	}
	p->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (p->fd < 0) {
		snprintf(err, errlen, "--pcap %s: cannot create the file: %s", path,
			 strerror(errno));
		free(p);
		return NULL;
	}
	rc = write_all(p->fd, (const uint8_t *)&h, sizeof(h));
	if (rc < 0) {
		snprintf(err, errlen, "--pcap %s: cannot write: %s", path, strerror(-rc));
		close(p->fd);
		free(p);
		return NULL;
	}
	p->snaplen = snaplen;
	snprintf(p->path, sizeof(p->path), "%s", path);
	return p;
}

/**
 * pcap_flush() - write what is buffered
 * @p:	recorder
 *
 * Return: 0, or -errno once recording failed (it stays off).
 */
int pcap_flush(struct pcap *p)
{
	int rc;

	if (p->failed)
		return -EIO;
	if (!p->used)
		return 0;
	rc = write_all(p->fd, p->buf, p->used);
	p->used = 0;
	if (rc < 0) {
		p->failed = true;
		log_error("--pcap %s: %s; frames are no longer recorded", p->path, strerror(-rc));
		return rc;
	}
	return 0;
}

/**
 * pcap_frame() - record one frame, stamped now
 * @p:		recorder
 * @frame:	the Ethernet frame
 * @len:	its length (frames above the snap length are cut)
 *
 * Buffered: the bytes reach the file on the next pcap_flush() or when the
 * buffer fills.
 */
void pcap_frame(struct pcap *p, const void *frame, uint32_t len)
{
	struct pcap_rec_hdr r;
	struct timespec ts;
	uint32_t incl = len < p->snaplen ? len : p->snaplen;

	if (p->failed)
		return;
	if (p->used + sizeof(r) + incl > sizeof(p->buf) && pcap_flush(p) < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.ts_sec = (uint32_t)ts.tv_sec;
	r.ts_usec = (uint32_t)(ts.tv_nsec / 1000);
	r.incl_len = incl;
	r.orig_len = len;
	memcpy(p->buf + p->used, &r, sizeof(r));
	memcpy(p->buf + p->used + sizeof(r), frame, incl);
	p->used += (uint32_t)(sizeof(r) + incl);
	p->frames++;
}

/**
 * pcap_frames() - frames recorded so far
 * @p:	recorder
 *
 * Return: count.
 */
uint64_t pcap_frames(const struct pcap *p)
{
	return p->frames;
}

/**
 * pcap_close() - flush and close
 * @p:	recorder (may be NULL)
 */
void pcap_close(struct pcap *p)
{
	if (!p)
		return;
	pcap_flush(p);
	close(p->fd);
	free(p);
}
