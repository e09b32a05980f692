/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vhost.c - libFuzzer harness for moat-vhost as a hostile VMM and its
 * guest drive it (vhost/vhostuser.c, vhostnet.c, and under them vring.c,
 * vhostmsg.c, gso.c)
 *
 * The input is a script of steps. A step is a vhost-user message written
 * to a real unix socket (any request, flags and payload, with eventfds,
 * the guest's memfd or fresh memfds of a chosen size attached as
 * SCM_RIGHTS, or cut short by EOF), a write into guest memory, a
 * descriptor or avail entry of the queues as the set-up step laid them
 * out, a record the netstack puts into s2g (raw, or a real TCP segment
 * for the offload paths), the whole handshake QEMU makes, a stalled
 * netstack, or a new connection. After each step moat-vhost reads what
 * arrived (vhostuser_input()), then moves one batch each way
 * (vhostnet_tx(), vhostnet_rx()); a VMM it drops or that closes is
 * replaced by a new connection after what vhost_vmm_gone() does.
 *
 * ASan and UBSan catch an access outside guest memory, the rings or the
 * stack. The harness traps (__builtin_trap()) on what they cannot see: a
 * reply that is not a reply, a g2s record of a type or size moat may not
 * write, a descriptor or a mapping a reset left behind, and a descriptor
 * an input opened and left open. The state is built as vhost_start()
 * builds it, without the confinement; the harness's own descriptors live
 * at 100 and above, clear of the numbers moat-vhost moves its own to.
 *
 * Built with -fsanitize=fuzzer,memory instead, it also reports bytes read
 * before they were written: the input 00 00 80 02 01 00 00 07 (a
 * SET_FEATURES header whose payload never comes) shows the known bug that
 * tests/unit/test_vhost.c (eof_after_a_header_is_not_a_message) describes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "shm/region.h"
#include "shm/ring.h"
#include "vhost/vhost_int.h"
#include "vhost/vhostmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Guest memory: 64 KiB at guest physical 0x100000; the queues at its start. */
#define GPA	  0x100000ull
#define GMEM	  0x10000u
#define UVA	  0x7f0000000000ull
#define QDESC(q)  (GPA + 0x2000ull * (q)) /* up to 256 descriptors */
#define QAVAIL(q) (QDESC(q) + 0x1000u)
#define QUSED(q)  (QDESC(q) + 0x1400u)
#define MEMFD	  "moat-fuzz-guest"
#define FRESHFD	  "moat-fuzz-fresh"
#define MAX_FDS	  10 /* more than moat takes in one message: the rest is MSG_CTRUNC */
#define MAX_STEPS 64

enum step {
	STEP_MSG,
	STEP_MEM,
	STEP_DESC,
	STEP_AVAIL,
	STEP_AVAIL_IDX,
	STEP_S2G,
	STEP_SEGMENT,
	STEP_HANDSHAKE,
	STEP_STALL,
	STEP_RECONNECT,
	STEP_COUNT
};

static struct vhost v;

static struct {
	int vmm;	      /* the VMM's end of the connection, or -1 */
	int memfd;	      /* guest memory */
	uint8_t *mem;	      /* ... as the guest sees it */
	int nefd, gefd;	      /* the frame rings' eventfds */
	struct ring g2s, s2g; /* the netstack's views: consumer, producer */
	bool stalled;	      /* the netstack does not read g2s */
	unsigned qnum[2];     /* queue sizes of the last handshake */
	unsigned long runs;
	uint8_t buf[MOAT_FRAME_MAX_GSO + 64];
} h = { .vmm = -1 };

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint8_t get8(struct cursor *c)
{
	if (!c->n)
		return 0;
	c->n--;
	return *c->p++;
}

static uint16_t get16(struct cursor *c)
{
	uint16_t lo = get8(c);

	return (uint16_t)(lo | get8(c) << 8);
}

/* Up to @want bytes of input; *@got says how many there were. */
static const uint8_t *take(struct cursor *c, size_t want, size_t *got)
{
	const uint8_t *p = c->p;

	*got = want < c->n ? want : c->n;
	c->p += *got;
	c->n -= *got;
	return p;
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_vhost: %s\n", what);
		__builtin_trap();
	}
}

/* Move a descriptor of the harness's to 100 and above. */
static int hi(int fd)
{
	int n;

	check(fd >= 0, "cannot make a descriptor");
	n = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	check(n >= 0, "cannot move a descriptor");
	close(fd);
	return n;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	check(d != NULL, "no /proc/self/fd");
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Mappings of a guest memory file other than the harness's own. */
static int guest_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	check(f != NULL, "no /proc/self/maps");
	while (fgets(line, sizeof(line), f))
		if ((strstr(line, "/memfd:" MEMFD) &&
		     strtoull(line, NULL, 16) != (unsigned long long)(uintptr_t)h.mem) ||
		    strstr(line, "/memfd:" FRESHFD))
			n++;
	fclose(f);
	return n;
}

/* The region, the rings and guest memory: once per process. */
static void init(void)
{
	struct moat_shm_header proto = { .mtu = 1500 };
	struct region_config rc = { .frame_ring_bytes = 1u << 20, .flow_ring_bytes = 65536 };
	struct region *r = &v.region;

	log_init("fuzz", LOG_LVL_ERROR);
	for (int fd = VHOST_FD_CONN; fd <= VHOST_FD_CALL1; fd++)
		check(!fd_open(fd), "a descriptor moat-vhost moves its own to is taken");
	check(region_create(&rc, &proto, r) == 0, "region_create");
	close(r->fd);
	r->fd = -1;
	v.cnt = r->part[MOAT_PART_CNT_GUEST];
	v.max_frame = r->hdr.mtu + 14;
	v.lfd = -1;
	v.cfd = -1;
	v.q[0].kick = v.q[0].call = v.q[1].kick = v.q[1].call = -1;
	vhostuser_reset(&v);
	h.nefd = hi(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	h.gefd = hi(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	ring_attach(&v.g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), h.nefd, h.gefd,
		    &v.cnt->wakes_sent);
	ring_attach(&v.s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), h.gefd, h.nefd,
		    &v.cnt->wakes_sent);
	ring_attach(&h.g2s, r->part[MOAT_PART_RING_G2S],
		    region_ring_capacity(r, MOAT_PART_RING_G2S), -1, h.gefd, NULL);
	ring_attach(&h.s2g, r->part[MOAT_PART_RING_S2G],
		    region_ring_capacity(r, MOAT_PART_RING_S2G), h.gefd, -1, NULL);
	check((uint32_t)sizeof(struct moat_vnet_hdr) + MOAT_FRAME_MAX_GSO <=
		      RING_MAX_RECORD(v.g2s.cap),
	      "g2s too small");
	h.memfd = hi(memfd_create(MEMFD, MFD_CLOEXEC));
	check(ftruncate(h.memfd, GMEM) == 0, "ftruncate");
	h.mem = mmap(NULL, GMEM, PROT_READ | PROT_WRITE, MAP_SHARED, h.memfd, 0);
	check(h.mem != MAP_FAILED, "mmap");
}

/* A VMM connects (vhost_accept()). */
static void vmm_connect(void)
{
	int sv[2];

	check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
	      "socketpair");
	check(dup3(sv[0], VHOST_FD_CONN, O_CLOEXEC) == VHOST_FD_CONN, "dup3");
	close(sv[0]);
	v.cfd = VHOST_FD_CONN;
	vhostuser_reset(&v);
	h.vmm = hi(sv[1]);
	h.qnum[0] = h.qnum[1] = 0;
}

/* The VMM left or was dropped (vhost_vmm_gone()): nothing of it may stay. */
static void vmm_gone(void)
{
	close(v.cfd);
	v.cfd = -1;
	v.drop = false;
	vhostuser_reset(&v);
	if (h.vmm >= 0)
		close(h.vmm);
	h.vmm = -1;
	for (int fd = VHOST_FD_CONN; fd <= VHOST_FD_CALL1; fd++)
		check(!fd_open(fd), "a descriptor of the last VMM is still open");
	for (int i = 0; i < VRING_MAX_REGIONS; i++)
		check(v.map[i] == NULL, "guest memory of the last VMM is still mapped");
	check(v.mem.n == 0, "a memory table survived the reset");
}

static void vmm_replace(void)
{
	vmm_gone();
	vmm_connect();
}

/* Send one message; a full socket is the VMM's problem (it is not read). */
static void vmm_send(uint32_t req, uint32_t flags, uint32_t size, const uint8_t *payload,
		     size_t len, const int *fds, unsigned nfds)
{
	static uint8_t buf[VHOSTMSG_HDR + 65536];
	uint32_t hdr[3] = { req, flags, size };
	union {
		char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { buf, VHOSTMSG_HDR + len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (h.vmm < 0)
		return;
	memcpy(buf, hdr, sizeof(hdr));
	if (len)
		memcpy(buf + VHOSTMSG_HDR, payload, len);
	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	(void)sendmsg(h.vmm, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Read what moat answered: every reply is whole, flagged, and its own size. */
static void vmm_read_replies(void)
{
	static uint8_t buf[65536];
	ssize_t n;

	if (h.vmm < 0)
		return;
	while ((n = recv(h.vmm, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		size_t off = 0;

		while (off < (size_t)n) {
			uint32_t hdr[3];

			check((size_t)n - off >= VHOSTMSG_HDR, "a reply shorter than its header");
			memcpy(hdr, buf + off, sizeof(hdr));
			check(hdr[1] == (VHOSTMSG_VERSION | VHOSTMSG_F_REPLY), "reply flags");
			check(hdr[2] <= 12 + VHOSTMSG_CONFIG_MAX, "a reply larger than any");
			check((size_t)n - off - VHOSTMSG_HDR >= hdr[2], "a reply cut short");
			off += VHOSTMSG_HDR + hdr[2];
		}
	}
}

/* The netstack's side of g2s: every record is one moat-vhost may write. */
static void netstack_read_g2s(bool force)
{
	uint32_t type;
	int n;

	if (h.stalled && !force)
		return;
	while ((n = ring_pop(&h.g2s, &type, h.buf, sizeof(h.buf))) >= 0) {
		if (type == MOAT_REC_FRAME)
			check(n >= 14 && (uint32_t)n <= v.max_frame, "a plain g2s frame's size");
		else if (type == MOAT_REC_FRAME_VNET)
			check(v.offloads && n >= 24 && n <= 10 + (int)MOAT_FRAME_MAX_GSO,
			      "a g2s offload record moat may not write");
		else
			check(false, "a g2s record of a type moat never writes");
	}
	check(n == -EAGAIN, "g2s corrupt");
	ring_release(&h.g2s);
}

/* moat-vhost's turn: what arrived on the connection, then one batch each way. */
static void moat_turn(void)
{
	for (int i = 0; i < 8 && v.cfd >= 0; i++) {
		struct pollfd p = { .fd = v.cfd, .events = POLLIN };
		int rc;

		if (poll(&p, 1, 0) <= 0)
			break;
		rc = vhostuser_input(&v);
		check(rc >= -1 && rc <= 1, "vhostuser_input() out of range");
		check(rc >= 0 || v.drop, "dropped without ->drop");
		vmm_read_replies();
		if (rc != 0 || v.drop) {
			vmm_replace();
			break;
		}
	}
	vhostnet_tx(&v);
	vhostnet_rx(&v);
	if (v.drop)
		vmm_replace();
	vmm_read_replies();
	netstack_read_g2s(false);
}

static int new_eventfd(void)
{
	return hi(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

static int new_memfd(size_t len)
{
	int fd = hi(memfd_create(FRESHFD, MFD_CLOEXEC));

	check(ftruncate(fd, (off_t)len) == 0, "ftruncate");
	return fd;
}

/*
 * A message: control (descriptor kind and count, cut short), request,
 * flags, payload length and payload. The size field says what is sent
 * unless the message is cut short, which ends the connection: moat never
 * waits for bytes that will not come.
 */
static void step_msg(struct cursor *c)
{
	uint8_t ctl = get8(c), req = get8(c), flags = get8(c);
	unsigned kind = ctl & 3, nfds = kind ? (ctl >> 2) % (MAX_FDS + 1) : 0;
	size_t want = get16(c) % (VHOSTMSG_MAX + 16), len;
	uint32_t size;
	const uint8_t *p;
	int fds[MAX_FDS];

	for (unsigned i = 0; i < nfds; i++) {
		if (kind == 1)
			fds[i] = new_eventfd();
		else if (kind == 2)
			fds[i] = h.memfd;
		else
			fds[i] = new_memfd((size_t)get16(c) * 4 + (get8(c) & 3));
	}
	p = take(c, want, &len);
	size = (uint32_t)len;
	if (ctl & 0x80)
		size += 1u + get8(c);
	vmm_send(req, flags, size, p, len, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] != h.memfd)
			close(fds[i]);
	if ((ctl & 0x80) && h.vmm >= 0)
		shutdown(h.vmm, SHUT_WR);
}

static unsigned qsize(int q)
{
	return h.qnum[q] ? h.qnum[q] : 256;
}

/* A descriptor of queue @q, as the handshake laid the queues out. */
static void step_desc(struct cursor *c)
{
	int q = get8(c) & 1;
	unsigned i = get8(c);
	uint16_t off = get16(c), len = get16(c);
	uint8_t fl = get8(c), next = get8(c);
	struct vring_desc d = { .addr = GPA + off, .len = len, .flags = fl & 7, .next = next };

	if (fl & 0x80)
		d.addr = off & 1 ? UVA + off : (uint64_t)off << 48; /* far outside */
	if (fl & 0x40)
		d.len = (uint32_t)len << 16;
	memcpy(h.mem + (QDESC(q) - GPA) + 16u * i, &d, sizeof(d));
}

static void step_avail(struct cursor *c)
{
	int q = get8(c) & 1;
	uint16_t head = get16(c);
	uint16_t *a = (uint16_t *)(void *)(h.mem + (QAVAIL(q) - GPA));
	uint16_t idx = __atomic_load_n(&a[1], __ATOMIC_RELAXED);

	a[2 + (idx & (qsize(q) - 1))] = head;
	__atomic_store_n(&a[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static void step_avail_idx(struct cursor *c)
{
	int q = get8(c) & 1;
	uint16_t *a = (uint16_t *)(void *)(h.mem + (QAVAIL(q) - GPA));

	a[0] = get16(c); /* flags: NO_INTERRUPT */
	__atomic_store_n(&a[1], get16(c), __ATOMIC_RELEASE);
}

static void step_mem(struct cursor *c)
{
	size_t off = get16(c) % GMEM, len;
	const uint8_t *p = take(c, get8(c), &len);

	if (len > GMEM - off)
		len = GMEM - off;
	memcpy(h.mem + off, p, len);
}

/* A record from the netstack, zero-padded to the length asked for. */
static void step_s2g(struct cursor *c)
{
	uint8_t t = get8(c);
	size_t want = get16(c), vlen = (t & 3) == 3 ? sizeof(struct moat_vnet_hdr) : 0, len;
	const uint8_t *p;
	uint32_t type = (t & 3) == 0 ? MOAT_REC_FRAME :
			(t & 3) == 2 ? (uint32_t)t << 4 : /* a type moat-vhost skips */
				       MOAT_REC_FRAME_VNET;

	if (want + vlen > sizeof(h.buf))
		want = sizeof(h.buf) - vlen;
	memset(h.buf, 0, vlen + want);
	p = take(c, want, &len);
	memcpy(h.buf + vlen, p, len);
	if (ring_push(&h.s2g, type, h.buf, (uint32_t)(vlen + want)) == 0)
		ring_flush(&h.s2g);
}

static void put16(uint8_t *p, unsigned x)
{
	p[0] = (uint8_t)(x >> 8);
	p[1] = (uint8_t)x;
}

/*
 * A TCP segment as the netstack hands it on with TSO: a VNET record with a
 * partial checksum, IPv4 or IPv6, of a chosen payload and piece size.
 */
static void step_segment(struct cursor *c)
{
	uint8_t t = get8(c);
	bool v6 = t & 1;
	size_t l3 = v6 ? 40 : 20, hdrs = 14 + l3 + 20;
	size_t payload = get16(c) % (MOAT_FRAME_MAX_GSO - hdrs + 1);
	uint16_t mss = get16(c);
	uint8_t *vh = h.buf, *f = h.buf + sizeof(struct moat_vnet_hdr), *ip = f + 14;
	uint8_t *th = ip + l3;
	struct moat_vnet_hdr hdr = { .flags = MOAT_VNET_F_NEEDS_CSUM,
				     .gso_type = v6 ? MOAT_VNET_GSO_TCPV6 : MOAT_VNET_GSO_TCPV4,
				     .hdr_len = (uint16_t)hdrs,
				     .gso_size = mss ? mss : 1448,
				     .csum_start = (uint16_t)(14 + l3),
				     .csum_offset = 16 };

	if (t & 2)
		hdr.gso_type = MOAT_VNET_GSO_NONE;
	if (t & 4)
		hdr.gso_type |= MOAT_VNET_GSO_ECN;
	if (t & 8)
		hdr.flags = (uint8_t)(t >> 4); /* whatever the netstack claims */
	memset(f, 0, hdrs);
	memcpy(f, "\x52\x54\x00\x12\x34\x56\x02\x00\x00\x00\x00\x01", 12);
	put16(f + 12, v6 ? 0x86dd : 0x0800);
	if (v6) {
		ip[0] = 0x60;
		put16(ip + 4, (unsigned)(20 + payload));
		ip[6] = 6;
		ip[7] = 64;
		ip[8] = 0xfd, ip[23] = 1;
		ip[24] = 0xfd, ip[39] = 2;
	} else {
		ip[0] = 0x45;
		put16(ip + 2, (unsigned)(40 + payload));
		put16(ip + 6, 0x4000);
		ip[8] = 64;
		ip[9] = 6;
		memcpy(ip + 12, "\x0a\x00\x02\x02\x0a\x00\x02\x0f", 8);
	}
	put16(th, 443);
	put16(th + 2, 51000);
	th[12] = 5 << 4;
	th[13] = (uint8_t)(0x10 | (t & 0xc9)); /* ACK; FIN, PSH, CWR as asked */
	memset(f + hdrs, t, payload);
	memcpy(vh, &hdr, sizeof(hdr));
	if (ring_push(&h.s2g, MOAT_REC_FRAME_VNET, h.buf,
		      (uint32_t)(sizeof(hdr) + hdrs + payload)) == 0)
		ring_flush(&h.s2g);
}

/* One request with a u64 or two u32s, acked when REPLY_ACK is on. */
static void vmm_u64(uint32_t req, uint64_t x, int fd)
{
	vmm_send(req, VHOSTMSG_VERSION | VHOSTMSG_F_NEED_REPLY, 8, (const uint8_t *)&x, 8, &fd,
		 fd >= 0);
	if (fd >= 0 && fd != h.memfd)
		close(fd);
	moat_turn();
}

static void vmm_state(uint32_t req, uint32_t q, uint32_t num)
{
	vmm_u64(req, (uint64_t)num << 32 | q, -1);
}

/* The handshake QEMU makes: features from the input, both queues. */
static void step_handshake(struct cursor *c)
{
	static const uint64_t pick[8] = {
		VHOST_BIT(VIRTIO_F_VERSION_1),
		VHOST_BIT(VIRTIO_NET_F_MRG_RXBUF),
		VHOST_BIT(VIRTIO_RING_F_INDIRECT_DESC),
		VHOST_BIT(VHOST_USER_F_PROTOCOL_FEATURES),
		VHOST_BIT(VIRTIO_NET_F_CSUM) | VHOST_BIT(VIRTIO_NET_F_HOST_TSO4) |
			VHOST_BIT(VIRTIO_NET_F_HOST_TSO6),
		VHOST_BIT(VIRTIO_NET_F_GUEST_CSUM),
		VHOST_BIT(VIRTIO_NET_F_GUEST_TSO4),
		VHOST_BIT(VIRTIO_NET_F_GUEST_TSO6),
	};
	uint8_t fb = get8(c), nb = get8(c), pb = get8(c);
	uint64_t features = 0;

	for (int i = 0; i < 8; i++)
		if (fb & (1u << i))
			features |= pick[i];
	features &= vhostuser_offered(&v);
	vmm_send(VHOSTMSG_GET_FEATURES, VHOSTMSG_VERSION, 0, NULL, 0, NULL, 0);
	moat_turn();
	vmm_u64(VHOSTMSG_SET_PROTOCOL_FEATURES,
		pb & 1 ? VHOST_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) : 0, -1);
	vmm_send(VHOSTMSG_SET_OWNER, VHOSTMSG_VERSION, 0, NULL, 0, NULL, 0);
	vmm_u64(VHOSTMSG_SET_FEATURES, features, -1);
	{
		uint64_t table[5] = { 1, GPA, GMEM, UVA, 0 };

		vmm_send(VHOSTMSG_SET_MEM_TABLE, VHOSTMSG_VERSION | VHOSTMSG_F_NEED_REPLY,
			 sizeof(table), (const uint8_t *)table, sizeof(table), &h.memfd, 1);
		moat_turn();
	}
	for (uint32_t q = 0; q < 2; q++) {
		unsigned num = 1u << ((q ? nb >> 4 : nb & 15) % 9);
		uint64_t addr[5] = { q, UVA + (QDESC(q) - GPA), UVA + (QUSED(q) - GPA),
				     UVA + (QAVAIL(q) - GPA), 0 };

		h.qnum[q] = num;
		vmm_state(VHOSTMSG_SET_VRING_NUM, q, num);
		vmm_state(VHOSTMSG_SET_VRING_BASE, q, pb & 2 ? get16(c) : 0);
		vmm_send(VHOSTMSG_SET_VRING_ADDR, VHOSTMSG_VERSION, sizeof(addr),
			 (const uint8_t *)addr, sizeof(addr), NULL, 0);
		moat_turn();
		vmm_u64(VHOSTMSG_SET_VRING_CALL, q, new_eventfd());
		vmm_u64(VHOSTMSG_SET_VRING_KICK, q, new_eventfd());
		vmm_state(VHOSTMSG_SET_VRING_ENABLE, q, !(pb & 4));
	}
}

static void step(struct cursor *c)
{
	switch (get8(c) % STEP_COUNT) {
	case STEP_MSG:
		step_msg(c);
		break;
	case STEP_MEM:
		step_mem(c);
		break;
	case STEP_DESC:
		step_desc(c);
		break;
	case STEP_AVAIL:
		step_avail(c);
		break;
	case STEP_AVAIL_IDX:
		step_avail_idx(c);
		break;
	case STEP_S2G:
		step_s2g(c);
		break;
	case STEP_SEGMENT:
		step_segment(c);
		break;
	case STEP_HANDSHAKE:
		step_handshake(c);
		break;
	case STEP_STALL:
		h.stalled = !h.stalled;
		break;
	case STEP_RECONNECT:
		vmm_replace();
		break;
	}
	moat_turn();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = { data, size };
	uint8_t cfg;
	int fds;

	if (!h.mem)
		init();
	/*
	 * Counted per input: libFuzzer opens descriptors of its own between
	 * inputs (the symbolizer's pipes, the first time it names a function).
	 */
	fds = fd_count();
	cfg = get8(&c);
	v.offloads = cfg & (MOAT_OFFLOAD_CSUM | MOAT_OFFLOAD_TSO4 | MOAT_OFFLOAD_TSO6);
	h.stalled = false;
	memset(h.mem, 0, GMEM);
	vmm_connect();
	if (cfg & 0x80) {
		/* Every feature moat offers, two queues of 256, REPLY_ACK; or the input's. */
		static const uint8_t all[3] = { 0xff, 0x88, 0x01 };
		struct cursor dflt = { all, sizeof(all) };

		step_handshake(cfg & 0x40 ? &c : &dflt);
	}
	for (int i = 0; i < MAX_STEPS && c.n; i++)
		step(&c);

	/* The VMM goes; without one, what the netstack sends is dropped. */
	vmm_gone();
	vhostnet_discard(&v);
	netstack_read_g2s(true);
	check(ring_used_bytes(h.s2g.ctl, h.s2g.cap) == 0, "s2g kept records without a VMM");
	check(fd_count() == fds, "a descriptor leaked");
	if (++h.runs % 512 == 0)
		check(guest_mappings() == 0, "guest memory still mapped after the VMM went");
	return 0;
}
