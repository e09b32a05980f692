/* SPDX-License-Identifier: MIT */
/*
 * test_confine.c - the confinement stages of common/confine.c
 *
 * Every stage is irreversible, so each test confines a forked child and
 * looks at how it ends: the child reports through its exit status or a
 * pipe, and only the parent (the Criterion worker) asserts.
 *
 * The seccomp tests use the netstack's allowlist twice: a copy of its
 * ALLOW() lines (netstack/netstack.c, netstack_seccomp()) for a unit test
 * that runs everywhere, and the real moat binary started as the netstack
 * role with the test trigger set in the region header (builds with
 * -DMOAT_TEST_TRIGGERS=ON only), which calls socket() right after its own
 * filter went on.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "shm/region.h"

/* The netstack's allowlist, as in netstack_seccomp() (keep in step). */
static void netstack_like_filter(void)
{
	scmp_filter_ctx ctx = confine_seccomp_init();

	ALLOW(ctx, read);
	ALLOW(ctx, write);
	ALLOW(ctx, ppoll);
	ALLOW(ctx, clock_gettime);
	ALLOW(ctx, rt_sigprocmask);
	confine_seccomp_load(ctx);
}

static void become_nobody(void)
{
	if (geteuid() == 0) {
		/* An ordinary user: RLIMIT_NPROC does not bind uid 0; root needs no user namespace. */
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(60);
	}
}

static int wait_child(pid_t pid)
{
	int status = 0;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static void assert_sigsys(int status, const char *what)
{
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
		  "%s: child did not die of SIGSYS (%s %d)", what,
		  WIFSIGNALED(status) ? "signal" : "exit status",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/*
 * Child: filter on, prove an allowed call still works (write a byte to the
 * pipe), then @forbidden(). Returns the status; *@wrote is whether the byte
 * came, so a death before the forbidden call cannot pass for the right one.
 */
static int run_filtered(void (*forbidden)(void), bool *wrote)
{
	int p[2];
	char c = 0;
	pid_t pid;
	int status;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		netstack_like_filter();
		if (write(p[1], "x", 1) != 1)
			_exit(20);
		forbidden();
		_exit(0);
	}
	close(p[1]);
	*wrote = read(p[0], &c, 1) == 1 && c == 'x';
	close(p[0]);
	status = wait_child(pid);
	return status;
}

static void call_socket(void)
{
	(void)socket(AF_INET, SOCK_STREAM, 0);
}

static void call_socket_raw(void)
{
	syscall(SYS_socket, AF_UNIX, SOCK_DGRAM, 0);
}

static void __attribute__((unused)) call_openat(void)
{
	(void)open("/etc/hostname", O_RDONLY);
}

static void call_fork(void)
{
	syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

static void call_execve(void)
{
	char *argv[] = { "true", NULL };

	syscall(SYS_execve, "/bin/true", argv, NULL);
}

static void __attribute__((unused)) call_mmap(void)
{
	/* Release builds: no mmap after start (sanitizer builds need it). */
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void call_ptrace(void)
{
	syscall(SYS_ptrace, 0, 0, 0, 0);
}

Test(confine_seccomp, netstack_filter_kills_socket)
{
	bool wrote;
	int status = run_filtered(call_socket, &wrote);

	cr_assert(wrote, "the filter killed an allowed write()");
	assert_sigsys(status, "socket()");
	status = run_filtered(call_socket_raw, &wrote);
	cr_assert(wrote);
	assert_sigsys(status, "syscall(SYS_socket)");
}

Test(confine_seccomp, netstack_filter_kills_other_calls)
{
	static const struct {
		void (*call)(void);
		const char *name;
	} calls[] = {
		{ call_fork, "clone" },
		{ call_execve, "execve" },
		{ call_ptrace, "ptrace" },
#ifndef MOAT_SANITIZE
		/* Sanitizer builds allow these for the ASan runtime (confine.c). */
		{ call_openat, "openat" },
		{ call_mmap, "mmap" },
#endif
	};

	for (unsigned i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		bool wrote;
		int status = run_filtered(calls[i].call, &wrote);

		cr_assert(wrote);
		assert_sigsys(status, calls[i].name);
	}
}

static void do_nothing(void)
{
}

Test(confine_seccomp, allowed_calls_survive)
{
	bool wrote;
	int status = run_filtered(do_nothing, &wrote);

	cr_assert(wrote);
	/* _exit() is exit_group: allowed for everybody. */
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
}

#if defined(__x86_64__)
/* A 32-bit syscall through int 0x80 is a foreign architecture: killed. */
static void call_i386_getpid(void)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
	(void)ret;
}

/* An x32 syscall (bit 30 set): the native filter must not let it through. */
static void call_x32_getpid(void)
{
	syscall(0x40000000L | SYS_getpid);
}

Test(confine_seccomp, foreign_architecture_is_killed)
{
	bool wrote;
	int status = run_filtered(call_i386_getpid, &wrote);

	cr_assert(wrote);
	assert_sigsys(status, "i386 getpid via int 0x80");
	status = run_filtered(call_x32_getpid, &wrote);
	cr_assert(wrote);
	assert_sigsys(status, "x32 getpid");
}
#endif

/* The real netstack, started as the moat binary would start it. */
Test(confine_seccomp, real_netstack_dies_of_sigsys_on_socket, .timeout = 60)
{
#ifndef MOAT_TEST_TRIGGERS
	cr_skip_test("needs -DMOAT_TEST_TRIGGERS=ON");
#else
	struct region_config cfg = { .frame_ring_bytes = 1u << 16, .flow_ring_bytes = 1u << 16 };
	struct moat_shm_header proto = {
		.mtu = 1500,
		.guest_ip4 = { 10, 0, 2, 15 }, .gateway_ip4 = { 10, 0, 2, 2 },
		.dns_ip4 = { 10, 0, 2, 3 }, .netmask4 = { 255, 255, 255, 0 },
		.gateway_mac = { 0x52, 0x55, 10, 0, 2, 2 }, .prefix4 = 24,
		.anti_spoof = 1, .log_level = 1, .max_tcp_connections = 16, .max_udp_flows = 16,
		.connect_timeout_ms = 1000, .tcp_idle_timeout_s = 60, .udp_idle_timeout_s = 60,
		.flags = MOAT_HDR_F_TEST_TRIGGERS,
	};
	struct region r;
	int efd[4], status;
	pid_t pid;

	cr_assert_eq(region_create(&cfg, &proto, &r), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_geq(efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int from[5] = { r.fd, efd[0], efd[1], efd[2], efd[3] };
		char *argv[] = { "moat-netstack", "__netstack", NULL };

		for (int i = 0; i < 5; i++)
			if ((from[i] = fcntl(from[i], F_DUPFD, 64)) < 0)
				_exit(30);
		for (int i = 0; i < 5; i++)
			if (dup2(from[i], FD_REGION + i) < 0)
				_exit(31);
		execv(MOAT_BINARY, argv);
		_exit(32);
	}
	status = wait_child(pid);
	assert_sigsys(status, "moat-netstack with the seccomp test trigger");
	for (int i = 0; i < 4; i++)
		close(efd[i]);
	munmap(r.part[MOAT_PART_HEADER], r.hdr.region_size);
	close(r.fd);
#endif
}

/* ------------------------------------------------------------------ */
/* Parent death                                                         */
/* ------------------------------------------------------------------ */

/* Child's stderr to /dev/null: confine_parent_death() logs before it exits. */
static void quiet_stderr(void)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
		_exit(120);
	close(fd);
}

Test(confine_parent_death, right_supervisor_arms_sigkill)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int sig = 0;

		confine_parent_death(getppid());
		if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) < 0 || sig != SIGKILL)
			_exit(121);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
}

Test(confine_parent_death, wrong_supervisor_exits_at_once)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		quiet_stderr();
		confine_parent_death(getpid());		/* never our own parent */
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		  "a child whose parent is not the supervisor went on (status 0x%x)", status);
}

/*
 * The supervisor dies: its child must be killed. T (a subreaper, so that
 * the orphan is reparented to it and T can wait for it) forks A, the
 * "supervisor"; A forks B, which calls confine_parent_death(A) and sleeps;
 * A exits. B must be dead of SIGKILL within 1 s.
 * T's status: 0 ok, 2 B ended otherwise, 3 B still alive after 1 s, >= 10 set-up.
 */
Test(confine_parent_death, child_dies_with_its_supervisor)
{
	pid_t t = fork();
	int status;

	cr_assert_geq(t, 0);
	if (t == 0) {
		int ready[2], report[2], st = 0;
		pid_t a, b = 0;

		if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 || pipe(ready) < 0 ||
		    pipe(report) < 0)
			_exit(10);
		a = fork();
		if (a < 0)
			_exit(11);
		if (a == 0) {
			pid_t bb = fork();

			if (bb < 0)
				_exit(12);
			if (bb == 0) {
				pid_t me = getpid();

				confine_parent_death(getppid());
				if (write(ready[1], &me, sizeof(me)) != sizeof(me))
					_exit(13);
				for (;;)
					pause();
			}
			/* The "supervisor": wait until B is armed, tell T, die. */
			if (read(ready[0], &bb, sizeof(bb)) != sizeof(bb) ||
			    write(report[1], &bb, sizeof(bb)) != sizeof(bb))
				_exit(14);
			_exit(0);
		}
		close(report[1]);
		if (read(report[0], &b, sizeof(b)) != sizeof(b) || b <= 0)
			_exit(15);
		if (waitpid(a, &st, 0) != a)
			_exit(16);
		for (int ms = 0; ms < 1000; ms += 10) {
			pid_t w = waitpid(b, &st, WNOHANG);

			if (w == b)
				_exit(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : 2);
			if (w < 0)
				_exit(17);
			usleep(10000);
		}
		kill(b, SIGKILL);
		waitpid(b, &st, 0);
		_exit(3);
	}
	status = wait_child(t);
	cr_assert(WIFEXITED(status), "status 0x%x", status);
	cr_assert_neq(WEXITSTATUS(status), 2, "the child ended, but not of SIGKILL");
	cr_assert_neq(WEXITSTATUS(status), 3, "the child outlived its supervisor by 1 s");
	cr_assert_eq(WEXITSTATUS(status), 0, "set-up failed (%d)", WEXITSTATUS(status));
}

/*
 * An unprivileged netstack makes a user namespace, a credential change that
 * clears the parent-death signal (prctl(2)); the second call re-arms it,
 * and getppid() inside the new namespace still names the supervisor.
 */
Test(confine_parent_death, rearmed_after_the_user_namespace)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pid_t parent = getppid();
		int sig = -1;

		become_nobody();	/* itself a credential change: arm after it */
		confine_parent_death(parent);
		if (confine_netns() < 0)
			_exit(77);
		if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) < 0)
			_exit(122);
		confine_parent_death(parent);
		if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) < 0 || sig != SIGKILL)
			_exit(123);
		_exit(0);
	}
	status = wait_child(pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("no user namespace here");
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
}

/* ------------------------------------------------------------------ */
/* Capabilities, no_new_privs, dumpable                                 */
/* ------------------------------------------------------------------ */

/* Read "Field:\tvalue" from /proc/self/status into @out. */
static int status_field(const char *field, char *out, size_t outlen)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	size_t fl = strlen(field);
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, fl) && line[fl] == ':') {
			char *v = line + fl + 1;

			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			snprintf(out, outlen, "%s", v);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

Test(confine_caps, drop_caps_clears_everything)
{
	struct {
		char capeff[32], capprm[32], capinh[32], capamb[32], capbnd[32], nnp[8];
		int dumpable;
		int had_caps;
	} *res = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int status;
	pid_t pid;

	cr_assert(res != MAP_FAILED);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char before[32] = "";

		status_field("CapEff", before, sizeof(before));
		res->had_caps = strcmp(before, "0000000000000000") != 0;
		confine_drop_caps();
		if (status_field("CapEff", res->capeff, sizeof(res->capeff)) ||
		    status_field("CapPrm", res->capprm, sizeof(res->capprm)) ||
		    status_field("CapInh", res->capinh, sizeof(res->capinh)) ||
		    status_field("CapAmb", res->capamb, sizeof(res->capamb)) ||
		    status_field("CapBnd", res->capbnd, sizeof(res->capbnd)) ||
		    status_field("NoNewPrivs", res->nnp, sizeof(res->nnp)))
			_exit(40);
		res->dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
	cr_assert_str_eq(res->capeff, "0000000000000000");
	cr_assert_str_eq(res->capprm, "0000000000000000");
	cr_assert_str_eq(res->capinh, "0000000000000000");
	cr_assert_str_eq(res->capamb, "0000000000000000");
	cr_assert_str_eq(res->nnp, "1");
	cr_assert_eq(res->dumpable, 0);
	if (res->had_caps)	/* with CAP_SETPCAP the bounding set goes too */
		cr_assert_str_eq(res->capbnd, "0000000000000000");
	munmap(res, 4096);
}

/* Root without capabilities is an ordinary user: what root could do, it cannot. */
Test(confine_caps, root_powers_are_gone)
{
	char path[] = "/tmp/moat-confine-XXXXXX";
	pid_t pid;
	int status, fd;

	if (geteuid() != 0)
		cr_skip_test("needs root to have something to lose");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fchmod(fd, 0), 0);
	close(fd);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		confine_drop_caps();
		/* CAP_SYS_ADMIN: no new namespaces. */
		if (unshare(CLONE_NEWNET) == 0)
			_exit(50);
		/* CAP_DAC_OVERRIDE: a mode-000 file cannot be opened. */
		if (open(path, O_RDONLY) >= 0)
			_exit(51);
		/* CAP_SYS_NICE: no raising our priority. */
		if (setpriority(PRIO_PROCESS, 0, -5) == 0)
			_exit(52);
		/* CAP_SETUID: no changing uid. */
		if (setuid(1) == 0)
			_exit(53);
		_exit(0);
	}
	status = wait_child(pid);
	unlink(path);
	cr_assert(WIFEXITED(status), "status 0x%x", status);
	cr_assert_eq(WEXITSTATUS(status), 0, "a capability survived (check %d)", WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ */
/* Resource limits                                                      */
/* ------------------------------------------------------------------ */

Test(confine_limits, limits_are_set)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct rlimit rl;
		int p[2];

		/* stderr a pipe (journald, a supervisor's log collector). */
		if (pipe(p) < 0 || dup2(p[1], STDERR_FILENO) < 0 || dup2(p[1], STDOUT_FILENO) < 0)
			_exit(60);
		confine_limits(20);
		if (getrlimit(RLIMIT_NPROC, &rl) || rl.rlim_cur != 0 || rl.rlim_max != 0)
			_exit(61);
		if (getrlimit(RLIMIT_FSIZE, &rl) || rl.rlim_cur != 0 || rl.rlim_max != 0)
			_exit(62);
		if (getrlimit(RLIMIT_CORE, &rl) || rl.rlim_cur != 0 || rl.rlim_max != 0)
			_exit(63);
		if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur != 20 || rl.rlim_max != 20)
			_exit(64);
		/* Hard limits: they cannot be raised again. */
		rl.rlim_cur = rl.rlim_max = 100;
		if (geteuid() != 0 && setrlimit(RLIMIT_NPROC, &rl) == 0)
			_exit(65);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d", WEXITSTATUS(status));
}

Test(confine_limits, nproc_zero_forbids_fork)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pid_t c;

		become_nobody();
		confine_limits(64);
		c = fork();
		if (c == 0)
			_exit(0);
		if (c > 0) {
			waitpid(c, NULL, 0);
			_exit(70);	/* the fork succeeded */
		}
		_exit(errno == EAGAIN ? 0 : 71);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status), "status 0x%x", status);
	cr_assert_neq(WEXITSTATUS(status), 60, "could not become an ordinary user");
	cr_assert_neq(WEXITSTATUS(status), 70, "fork() succeeded under RLIMIT_NPROC 0");
	cr_assert_eq(WEXITSTATUS(status), 0, "exit %d", WEXITSTATUS(status));
}

Test(confine_limits, fsize_zero_forbids_file_writes)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = memfd_create("fsize", MFD_CLOEXEC), p[2];

		if (fd < 0 || pipe(p) < 0 || dup2(p[1], STDERR_FILENO) < 0 ||
		    dup2(p[1], STDOUT_FILENO) < 0)
			_exit(80);
		confine_limits(64);
		/* Default action of SIGXFSZ is to die; that is what we expect. */
		signal(SIGXFSZ, SIG_DFL);
		if (write(fd, "x", 1) == 1)
			_exit(81);
		_exit(82);
	}
	status = wait_child(pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
		  "writing a file under RLIMIT_FSIZE 0 did not raise SIGXFSZ (status 0x%x)", status);
}

/*
 * `moat run 2>moat.log`: the supervisor logs to the file, but its children
 * get a pipe on stderr (common/fds.h). RLIMIT_FSIZE is 0 whatever stderr
 * is: a child handed a regular file dies of SIGXFSZ at its first line there
 * instead of writing it.
 */
Test(confine_limits, fsize_is_zero_even_with_a_regular_file_on_stderr)
{
	int fd = memfd_create("log", MFD_CLOEXEC);
	char buf[64] = "";
	pid_t pid;
	int status;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "earlier lines\n", 14), 14);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct rlimit rl;

		if (dup2(fd, STDERR_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(85);
		confine_limits(64);
		if (getrlimit(RLIMIT_FSIZE, &rl) || rl.rlim_cur != 0 || rl.rlim_max != 0)
			_exit(86);
		signal(SIGXFSZ, SIG_DFL);
		log_init("moat-test", LOG_LVL_INFO);
		log_warn("this line must not reach the file");
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 86),
		  "RLIMIT_FSIZE is not 0 with a regular file on stderr");
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
		  "logging to a regular file under RLIMIT_FSIZE 0 did not raise SIGXFSZ (status 0x%x)",
		  status);
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 14, "the file grew: %s", buf);
	close(fd);
}

Test(confine_limits, nofile_bounds_descriptors)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		confine_close_fds(2);
		confine_limits(8);
		for (int i = 3; i < 8; i++)
			if (open("/dev/null", O_RDONLY) != i)
				_exit(90);
		if (open("/dev/null", O_RDONLY) >= 0 || errno != EMFILE)
			_exit(91);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d", WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ */
/* Descriptors and the network namespace                                */
/* ------------------------------------------------------------------ */

Test(confine_fds, close_fds_keeps_only_the_low_ones)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int hi;

		for (int i = 0; i < 6; i++)
			if (open("/dev/null", O_RDONLY) < 0)
				_exit(100);
		hi = fcntl(0, F_DUPFD, 900);
		if (hi < 900)
			_exit(101);
		if (dup2(0, FD_LAST_PROXY) < 0)
			_exit(102);
		confine_close_fds(FD_LAST_PROXY);
		for (int fd = 0; fd <= FD_LAST_PROXY; fd++)
			if (fcntl(fd, F_GETFD) < 0 && fd > 2)
				_exit(103);
		for (int fd = FD_LAST_PROXY + 1; fd < 1024; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				_exit(104);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d", WEXITSTATUS(status));
}

static int netns_child(bool as_nobody)
{
	struct stat before, after;
	pid_t pid;
	int status;

	cr_assert_eq(stat("/proc/self/ns/net", &before), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct if_nameindex *ifs, *i;
		int n = 0, rc;

		if (as_nobody)
			become_nobody();
		rc = confine_netns();

		if (rc == -EPERM || rc == -ENOSPC || rc == -EACCES)
			_exit(77);
		if (rc < 0)
			_exit(110);
		if (stat("/proc/self/ns/net", &after) < 0)
			_exit(111);
		if (after.st_ino == before.st_ino)
			_exit(112);
		/* Empty: only a loopback that is down. */
		ifs = if_nameindex();
		if (!ifs)
			_exit(113);
		for (i = ifs; i->if_index; i++, n++)
			if (strcmp(i->if_name, "lo"))
				_exit(114);
		if_freenameindex(ifs);
		if (n != 1)
			_exit(115);
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert(WIFEXITED(status), "status 0x%x", status);
	return WEXITSTATUS(status);
}

Test(confine_netns, root_gets_an_empty_namespace)
{
	int rc;

	if (geteuid() != 0)
		cr_skip_test("needs root");
	rc = netns_child(false);
	cr_assert_eq(rc, 0, "exit %d", rc);
}

Test(confine_netns, unprivileged_gets_an_empty_namespace_through_a_user_namespace)
{
	int rc = netns_child(true);

	if (rc == 77)
		cr_skip_test("unprivileged user namespaces are disabled here");
	cr_assert_eq(rc, 0, "exit %d", rc);
}
