/* SPDX-License-Identifier: MIT */
/*
 * stream_adapter.c - a stand-in VMM for moat's stream and dgram frontends
 *
 * Theory of Operation
 * -------------------
 * A test tool, not part of moat. It attaches to a tap device in the
 * current network namespace (run it under `ip netns exec GUEST`, where the
 * guest's kernel stack is the guest) and bridges it to moat's socket the
 * way a VMM would:
 *   -m stream	connect to moat's unix stream socket; every frame preceded
 *		by its length, 32-bit big-endian (QEMU -netdev stream,
 *		libkrun unixstream, passt)
 *   -m dgram	bind LOCAL, send one frame per datagram with sendto() to
 *		moat's socket (QEMU -netdev dgram)
 *   -m vfkit	bind LOCAL, connect() to moat's socket and send "VFKT"
 *		first (vfkit, krunkit, libkrun unixgram with the magic)
 * It exits 0 when moat closes the connection, 1 on errors. Blocking I/O
 * with poll() is enough for a test tool: moat never blocks on us.
 *
 * usage: stream_adapter [-m stream|dgram|vfkit] [-l LOCAL] [-w SECONDS] TAP SOCKET
 *   -w	wait up to SECONDS for SOCKET to appear (default 10)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXFRAME 65535

enum mode { M_STREAM, M_DGRAM, M_VFKIT };

static void die(const char *what)
{
	fprintf(stderr, "stream_adapter: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int tap_open(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("/dev/net/tun");
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		die(name);
	return fd;
}

static void addr_of(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t frame[MAXFRAME + 4], in[4 * (MAXFRAME + 4)];
	const char *local = NULL, *tap, *path;
	enum mode mode = M_STREAM;
	struct sockaddr_un moat;
	char localbuf[sizeof(moat.sun_path)];
	size_t have = 0;
	int c, tfd, sfd, wait_s = 10;

	while ((c = getopt(argc, argv, "m:l:w:")) != -1) {
		switch (c) {
		case 'm':
			mode = !strcmp(optarg, "stream") ? M_STREAM :
			       !strcmp(optarg, "dgram")	 ? M_DGRAM :
			       !strcmp(optarg, "vfkit")	 ? M_VFKIT :
							   (enum mode) - 1;
			if ((int)mode < 0) {
				fprintf(stderr, "stream_adapter: mode is stream, dgram or vfkit\n");
				return 1;
			}
			break;
		case 'l':
			local = optarg;
			break;
		case 'w':
			wait_s = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: stream_adapter [-m stream|dgram|vfkit] [-l LOCAL] "
					"[-w SECONDS] TAP SOCKET\n");
			return 1;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr,
			"usage: stream_adapter [-m stream|dgram|vfkit] [-l LOCAL] TAP SOCKET\n");
		return 1;
	}
	tap = argv[optind];
	path = argv[optind + 1];
	addr_of(&moat, path);
	for (int i = 0; i < wait_s * 10 && access(path, F_OK) < 0; i++)
		usleep(100000);

	tfd = tap_open(tap);
	sfd = socket(AF_UNIX, (mode == M_STREAM ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	if (sfd < 0)
		die("socket");
	if (mode == M_STREAM) {
		if (connect(sfd, (struct sockaddr *)&moat, sizeof(moat)) < 0)
			die(path);
	} else {
		struct sockaddr_un me;

		if (!local) {
			snprintf(localbuf, sizeof(localbuf), "%s.peer", path);
			local = localbuf;
		}
		unlink(local);
		addr_of(&me, local);
		if (bind(sfd, (struct sockaddr *)&me, sizeof(me)) < 0)
			die(local);
		if (mode == M_VFKIT) {
			if (connect(sfd, (struct sockaddr *)&moat, sizeof(moat)) < 0)
				die(path);
			if (send(sfd, "VFKT", 4, 0) != 4)
				die("VFKT");
		}
	}
	fprintf(stderr, "stream_adapter: %s <-> %s (%s)\n", tap, path,
		mode == M_STREAM ? "stream" :
		mode == M_DGRAM	 ? "dgram" :
				   "vfkit");

	for (;;) {
		struct pollfd p[2] = { { .fd = tfd, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[0].revents & POLLIN) {
			n = read(tfd, frame + 4, MAXFRAME);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				die("tap read");
			if (n > 0 && mode == M_STREAM) {
				uint32_t be = htonl((uint32_t)n);

				memcpy(frame, &be, 4);
				if (write_all(sfd, frame, (size_t)n + 4) < 0) {
					fprintf(stderr, "stream_adapter: moat closed the socket\n");
					return 0;
				}
			} else if (n > 0) {
				if (sendto(sfd, frame + 4, (size_t)n, 0,
					   mode == M_DGRAM ? (struct sockaddr *)&moat : NULL,
					   mode == M_DGRAM ? sizeof(moat) : 0) < 0 &&
				    errno != EAGAIN)
					die("send");
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (mode != M_STREAM) {
				n = recv(sfd, frame, MAXFRAME, 0);
				if (n < 0)
					die("recv");
				if (write(tfd, frame, (size_t)n) < 0 && errno != EIO)
					die("tap write");
				continue;
			}
			n = read(sfd, in + have, sizeof(in) - have);
			if (n <= 0) {
				fprintf(stderr, "stream_adapter: moat closed the connection\n");
				return 0;
			}
			have += (size_t)n;
			for (;;) {
				uint32_t be, len;

				if (have < 4)
					break;
				memcpy(&be, in, 4);
				len = ntohl(be);
				if (len > MAXFRAME) {
					fprintf(stderr, "stream_adapter: bad length %u from moat\n",
						len);
					return 1;
				}
				if (have < 4 + len)
					break;
				if (write(tfd, in + 4, len) < 0 && errno != EIO)
					die("tap write");
				memmove(in, in + 4 + len, have - 4 - len);
				have -= 4 + len;
			}
		}
	}
}
