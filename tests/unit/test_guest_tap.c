/* SPDX-License-Identifier: MIT */
/*
 * test_guest_tap.c - the tap frontend (tap-fd:N) on a real tap device in a
 * private network namespace: frames both ways, a full g2s pauses reading
 * (the tap's queue holds the rest) and a corrupt g2s is a violation, not a
 * spin. Needs root (CAP_NET_ADMIN for the tap); skipped otherwise.
 */
#include "guest_harness.h"

#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>

static struct harness h;
static int tapfd = -1, pkt = -1, ifindex;

static void teardown(void)
{
	h_teardown(&h);
	if (pkt >= 0)
		close(pkt);
}

TestSuite(guest_tap, .fini = teardown, .timeout = 60);

/*
 * A tap "mt0" (up, no addresses) in a fresh namespace, attached with
 * tap-fd:N, and a packet socket on it: what the packet socket sends, the
 * kernel hands to moat through the tap.
 */
static void tap_setup(uint64_t ring_bytes)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	char spec[32];
	int s;

	if (geteuid() != 0)
		cr_skip_test("needs root for a tap device");
	cr_assert_eq(unshare(CLONE_NEWNET), 0, "unshare: %s", strerror(errno));
	tapfd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (tapfd < 0)
		cr_skip_test("no /dev/net/tun");
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "mt0");
	cr_assert_eq(ioctl(tapfd, TUNSETIFF, &ifr), 0, "TUNSETIFF: %s", strerror(errno));
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert(s >= 0);
	cr_assert_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	cr_assert_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0, "link up: %s", strerror(errno));
	close(s);
	ifindex = (int)if_nametoindex("mt0");
	cr_assert(ifindex > 0);
	pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	cr_assert(pkt >= 0, "packet socket: %s", strerror(errno));
	ll.sll_ifindex = ifindex;
	cr_assert_eq(bind(pkt, (struct sockaddr *)&ll, sizeof(ll)), 0);
	memset(&h, 0, sizeof(h));
	h_region(&h, 1500, ring_bytes);
	snprintf(spec, sizeof(spec), "tap-fd:%d", tapfd);
	h_start(&h, spec, NULL);
}

/* The "guest" sends one frame: out of the packet socket, into moat's tap. */
static void guest_send(uint32_t len, uint32_t seq)
{
	uint8_t f[2000];

	h_frame(f, len, seq);
	cr_assert_eq(send(pkt, f, len, 0), (ssize_t)len, "send: %s", strerror(errno));
}

/* Our own frames only: the kernel may send IPv6 solicitations of its own. */
static int pop_ours(uint8_t *buf, uint32_t size)
{
	int n;

	while ((n = h_pop(&h, buf, size)) > 0)
		if (buf[12] == 0x88 && buf[13] == 0xb5)
			return n;
	return -1;
}

Test(guest_tap, frames_both_ways)
{
	uint8_t f[2000], buf[2000];
	int n;

	tap_setup(1 << 20);
	for (uint32_t i = 0; i < 10; i++)
		guest_send(60 + i, i);
	h_pump(&h);
	for (uint32_t i = 0; i < 10; i++) {
		n = pop_ours(buf, sizeof(buf));
		cr_assert(n > 0, "frame %u missing", i);
		h_check_frame(buf, (uint32_t)n, 60 + i, i);
	}
	h_release(&h);
	/* Toward the guest: the packet socket sees what moat writes to the tap. */
	cr_assert_eq(h_push(&h, f, h_frame(f, 80, 500)), 0);
	h_flush(&h);
	h_pump(&h);
	for (;;) {
		struct pollfd pfd = { .fd = pkt, .events = POLLIN };

		cr_assert_eq(poll(&pfd, 1, 2000), 1, "the frame toward the guest did not arrive");
		n = (int)recv(pkt, buf, sizeof(buf), 0);
		if (n == 80 && buf[12] == 0x88 && buf[13] == 0xb5)
			break;
	}
	h_check_frame(buf, 80, 80, 500);
	cr_assert_eq(h_cnt(&h.cnt->rx_frames), 1);
}

/* g2s full: moat stops reading (the tap queues), loses nothing, resumes. */
Test(guest_tap, full_g2s_pauses_without_spinning)
{
	enum { N = 100, LEN = 1500 };
	uint8_t buf[2000];
	uint32_t got = 0;

	tap_setup(65536); /* room for about 40 frames of 1500 */
	for (uint32_t i = 0; i < N; i++)
		guest_send(LEN, i);
	h_pump(&h);
	cr_assert_lt(h_cnt(&h.cnt->tx_frames), N, "g2s should have filled");
	cr_assert_eq(h_busy_turns(&h, 200), 0, "a paused tap must not wake the loop");
	while (got < N) {
		int n, k = 0;

		while ((n = pop_ours(buf, sizeof(buf))) > 0) {
			h_check_frame(buf, (uint32_t)n, LEN, got);
			got++;
			k++;
		}
		h_release(&h);
		h_pump(&h);
		cr_assert(k > 0 || got == N, "no progress after %u frames", got);
	}
	cr_assert_eq(h_cnt(&h.cnt->drops[MOAT_DROP_RING_FULL]), 0);
	cr_assert_eq(h_violations, 0);
}

Test(guest_tap, forged_g2s_tail_is_a_violation_not_a_spin)
{
	uint8_t buf[2000];

	tap_setup(1 << 20);
	h_forge_g2s_tail(&h);
	for (uint32_t i = 0; i < 20; i++)
		guest_send(60, i);
	h_pump(&h);
	cr_assert_eq(h_violations, 1, "%d violations reported", h_violations);
	cr_assert_str_eq(h_violation, "g2s ring corrupt");
	cr_assert_eq(h_busy_turns(&h, 200), 0, "the port spins on a corrupt g2s");
	guest_send(60, 99);
	cr_assert_eq(write(h.gefd, &(uint64_t){ 1 }, 8), 8);
	cr_assert_leq(h_busy_turns(&h, 200), 1);
	cr_assert_eq(h_violations, 1);
	cr_assert_eq(h_cnt(&h.cnt->tx_frames), 0);
	cr_assert_eq(pop_ours(buf, sizeof(buf)), -1);
}
