/* SPDX-License-Identifier: MIT */
/*
 * test_guest_shm.c - the shm frontend's handshake: a VMM that connects gets
 * the region and the two eventfds, one VMM at a time, and the next one gets
 * them when it leaves.
 */
#include <sys/mman.h>

#include "guest_harness.h"

static struct harness h;

static void teardown(void)
{
	h_teardown(&h);
}

TestSuite(guest_shm, .fini = teardown, .timeout = 30);

/* Receive the hello; fills @fds. Return: 0, or -1 if nothing came. */
static int recv_hello(int c, struct moat_shm_hello *hello, int fds[MOAT_SHM_NFDS])
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MOAT_SHM_NFDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { hello, sizeof(*hello) };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t n = recvmsg(c, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return -1;
	cr_assert_eq(n, (ssize_t)sizeof(*hello));
	cm = CMSG_FIRSTHDR(&mh);
	cr_assert(cm && cm->cmsg_type == SCM_RIGHTS);
	cr_assert_eq(cm->cmsg_len, CMSG_LEN(sizeof(int) * MOAT_SHM_NFDS));
	memcpy(fds, CMSG_DATA(cm), sizeof(int) * MOAT_SHM_NFDS);
	return 0;
}

/* Is @a the same eventfd as @b? Write one, read the other. */
static bool same_eventfd(int a, int b)
{
	uint64_t v = 5, r = 0;

	cr_assert_eq(write(a, &v, 8), 8);
	if (read(b, &r, 8) != 8) {
		cr_assert_eq(read(a, &r, 8), 8); /* undo */
		return false;
	}
	return r == 5;
}

Test(guest_shm, vmm_gets_region_and_eventfds)
{
	struct moat_shm_hello hello;
	const struct moat_shm_header *hdr;
	int c, fds[MOAT_SHM_NFDS];
	void *m;

	h_setup(&h, "shm", 1500, 1 << 20, NULL);
	c = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	cr_assert_eq(recv_hello(c, &hello, fds), 0, "no hello");
	cr_assert_eq(hello.magic, MOAT_SHM_HELLO_MAGIC);
	cr_assert_eq(hello.version, MOAT_SHM_VERSION);
	cr_assert_eq(hello.nfds, MOAT_SHM_NFDS);
	cr_assert_eq(hello.region_size, h.r.hdr.region_size);

	m = mmap(NULL, hello.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fds[MOAT_SHM_FD_REGION], 0);
	cr_assert(m != MAP_FAILED);
	hdr = m;
	cr_assert_eq(hdr->magic, MOAT_SHM_MAGIC);
	cr_assert_eq(hdr->mtu, 1500);
	/* The VMM's eventfd is the guest-port one, the other the netstack's. */
	cr_assert(same_eventfd(fds[MOAT_SHM_FD_VMM], h.gefd));
	cr_assert(same_eventfd(fds[MOAT_SHM_FD_NETSTACK], h.nefd));
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 1);

	/* A frame the netstack queues is visible through the VMM's mapping. */
	{
		uint8_t f[100];
		const struct moat_ring_ctl *ctl = (const void *)((const uint8_t *)m +
								 hdr->part[MOAT_PART_RING_S2G].off);

		h_push(&h, f, h_frame(f, 60, 1));
		h_flush(&h);
		cr_assert_gt(__atomic_load_n(&ctl->head, __ATOMIC_ACQUIRE), 0);
	}
	munmap(m, hello.region_size);
	for (int i = 0; i < MOAT_SHM_NFDS; i++)
		close(fds[i]);
	close(c);
}

Test(guest_shm, one_vmm_at_a_time_next_after_leave)
{
	struct moat_shm_hello hello;
	int a, b, fds[MOAT_SHM_NFDS];

	h_setup(&h, "shm", 1500, 1 << 20, NULL);
	a = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	cr_assert_eq(recv_hello(a, &hello, fds), 0);
	for (int i = 0; i < MOAT_SHM_NFDS; i++)
		close(fds[i]);
	b = h_connect(h.path, SOCK_STREAM);
	h_pump(&h);
	cr_assert_eq(recv_hello(b, &hello, fds), -1,
		     "second VMM got the rings while the first has them");
	close(a);
	h_pump(&h);
	cr_assert_eq(h_cnt(&h.cnt->clients_dropped), 1);
	cr_assert_eq(recv_hello(b, &hello, fds), 0, "the next VMM did not get the rings");
	for (int i = 0; i < MOAT_SHM_NFDS; i++)
		close(fds[i]);
	cr_assert_eq(h_cnt(&h.cnt->clients_accepted), 2);
	close(b);
}

Test(guest_shm, pcap_is_refused)
{
	struct guest_spec gs;
	char spec[160], pcap[160];

	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, 1 << 20);
	h_dir(&h);
	log_init("test", LOG_LVL_ERROR + 0);
	snprintf(spec, sizeof(spec), "shm:%s", h.path);
	snprintf(pcap, sizeof(pcap), "%s/x.pcap", h.dir);
	cr_assert_eq(guest_spec_parse(spec, &gs, h.err, sizeof(h.err)), 0);
	h.g = guest_open(&gs, h.err, sizeof(h.err));
	cr_assert(h.g);
	cr_assert_eq(guest_open_pcap(h.g, pcap, 1500, h.err, sizeof(h.err)), -1);
	cr_assert(strstr(h.err, "not available with --guest shm"), "%s", h.err);
	cr_assert_eq(access(pcap, F_OK), -1, "the refused pcap was created");
}
