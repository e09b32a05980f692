/* SPDX-License-Identifier: MIT */
/*
 * test_confine.c - the confinement stages of common/confine.c and the
 * roles' own allowlists
 *
 * Every stage is irreversible, so each test confines a forked child and
 * looks at how it ends: the child reports through its exit status or a
 * pipe, and only the parent (the Criterion worker) asserts.
 *
 * The seccomp tests apply the real allowlists, netstack_seccomp() and
 * proxy_seccomp(), to a forked child that holds descriptors at the numbers
 * of common/fds.h (and a few others a role must not touch). The last
 * section starts the real moat binary as each role, as the supervisor
 * would: it checks the command line, the descriptor table of a confined
 * role, the lifeline and, in builds with -DMOAT_TEST_TRIGGERS=ON, that the
 * netstack's own filter kills it when it calls socket().
 *
 * Sanitizer builds (MOAT_SANITIZE) allow read, write and mmap on every
 * descriptor for the ASan runtime (common/confine.c): the tests of the
 * argument filters on them are skipped there.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
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
#include <time.h>
#include <unistd.h>

#include "common/confine.h"
#include "common/fds.h"
#include "common/log.h"
#include "netstack/netstack.h"
#include "proxy/proxy.h"
#include "shm/region.h"

/* Descriptors of the filtered child beyond those of common/fds.h. */
enum {
	FD_T_OTHER_W = FD_CONTROL, /* a pipe's write end: "another fd" for the netstack */
	FD_T_OTHER_R,		   /* its read end, one byte in it */
	FD_T_MEMFD,		   /* a 4 KiB memfd, like the region */
	FD_T_FILE,		   /* a regular file (the test binary) */
};

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

/* Wait up to @ms for @pid; 0 and *@status, or -1 (still running). */
static int wait_child_ms(pid_t pid, int ms, int *status)
{
	for (int t = 0; t <= ms; t += 10) {
		pid_t w = waitpid(pid, status, WNOHANG);

		cr_assert_geq(w, 0);
		if (w == pid)
			return 0;
		usleep(10000);
	}
	return -1;
}

static void assert_sigsys(int status, const char *what)
{
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
		  "%s: child did not die of SIGSYS (%s %d)", what,
		  WIFSIGNALED(status) ? "signal" : "exit status",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* Child: move @fd above the numbers we place (so no placement clobbers it). */
static int high_fd(int fd)
{
	int high = fd < 0 ? -1 : fcntl(fd, F_DUPFD, 100);

	if (high < 0)
		_exit(21);
	close(fd);
	return high;
}

/* Child: put @high (from high_fd()) at @target. */
static void place_fd(int high, int target)
{
	if (dup2(high, target) < 0)
		_exit(22);
	close(high);
}

/*
 * Child, before the filter: the descriptors a role holds (eventfds with a
 * count at 4..6, @report at FD_EFD_PROXY, the lifeline's read end with a
 * byte in it at FD_LIFELINE), and some it must not use (see FD_T_*).
 */
static void child_fds(int report)
{
	int p[2], high = high_fd(report), r, w;

	if (syscall(SYS_close_range, 3U, 99U, 0U) < 0)
		_exit(24);
	for (int fd = FD_EFD_SUPERVISOR; fd <= FD_EFD_NETSTACK; fd++)
		place_fd(high_fd(eventfd(1, EFD_NONBLOCK)), fd);
	place_fd(high, FD_EFD_PROXY);
	if (pipe(p) < 0 || write(p[1], "l", 1) != 1)
		_exit(25);
	close(p[1]); /* it hangs up too: readable and POLLHUP */
	place_fd(high_fd(p[0]), FD_LIFELINE);
	if (pipe(p) < 0 || write(p[1], "o", 1) != 1)
		_exit(26);
	r = high_fd(p[0]);
	w = high_fd(p[1]);
	place_fd(w, FD_T_OTHER_W);
	place_fd(r, FD_T_OTHER_R);
	place_fd(high_fd(memfd_create("confine-test", 0)), FD_T_MEMFD);
	if (ftruncate(FD_T_MEMFD, 4096) < 0)
		_exit(27);
	place_fd(high_fd(open("/proc/self/exe", O_RDONLY)), FD_T_FILE);
}

/*
 * Child: descriptors as a role has them, @filter on, prove an allowed call
 * still works (write a byte to the pipe at FD_EFD_PROXY), then @call().
 * Returns the status; *@wrote is whether the byte came, so a death before
 * @call cannot pass for the right one.
 */
static int run_filtered(void (*filter)(void), void (*call)(void), bool *wrote)
{
	int p[2];
	char c = 0;
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		child_fds(p[1]);
		filter();
		if (write(FD_EFD_PROXY, "x", 1) != 1)
			_exit(20);
		call();
		_exit(0);
	}
	close(p[1]);
	*wrote = read(p[0], &c, 1) == 1 && c == 'x';
	close(p[0]);
	return wait_child(pid);
}

/* @call must kill a child under @filter with SIGSYS. */
static void assert_killed(void (*filter)(void), void (*call)(void), const char *what)
{
	bool wrote;
	int status = run_filtered(filter, call, &wrote);

	cr_assert(wrote, "%s: the filter killed the allowed write() before the call", what);
	assert_sigsys(status, what);
}

/* @call must leave a child under @filter alive, ending with _exit(0). */
static void assert_survives(void (*filter)(void), void (*call)(void), const char *what)
{
	bool wrote;
	int status = run_filtered(filter, call, &wrote);

	cr_assert(wrote, "%s: the filter killed the allowed write()", what);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status 0x%x%s", what, status,
		  WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS ? " (SIGSYS)" : "");
}

static void call_socket(void)
{
	(void)socket(AF_INET, SOCK_STREAM, 0);
}

static void call_socket_unix(void)
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

static void call_ptrace(void)
{
	syscall(SYS_ptrace, 0, 0, 0, 0);
}

/* Release builds: no mmap at all in the netstack (sanitizer builds need it). */
static void __attribute__((unused)) call_mmap_anon(void)
{
	void *m = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		_exit(30);
	syscall(SYS_munmap, m, 4096);
	m = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		_exit(31);
	syscall(SYS_munmap, m, 4096);
}

static void __attribute__((unused)) call_mmap_memfd(void)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, FD_T_MEMFD, 0);
}

static void __attribute__((unused)) call_mmap_memfd_private(void)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_PRIVATE, FD_T_MEMFD, 0);
}

static void __attribute__((unused)) call_mmap_file(void)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_PRIVATE, FD_T_FILE, 0);
}

static void __attribute__((unused)) call_mmap_exec(void)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* What the netstack does: eventfds, ppoll on the lifeline, its log. */
static void call_netstack_io(void)
{
	struct pollfd pfd = { .fd = FD_LIFELINE, .events = POLLIN };
	struct timespec zero = { 0, 0 };
	uint64_t one = 1, v;

	if (syscall(SYS_read, FD_EFD_NETSTACK, &v, sizeof(v)) != sizeof(v) || v != 1)
		_exit(32);
	if (ppoll(&pfd, 1, &zero, NULL) != 1 || !(pfd.revents & POLLHUP))
		_exit(33);
	if (syscall(SYS_write, FD_EFD_SUPERVISOR, &one, sizeof(one)) != sizeof(one) ||
	    syscall(SYS_write, FD_EFD_GUEST, &one, sizeof(one)) != sizeof(one))
		_exit(34);
	if (syscall(SYS_write, STDERR_FILENO, "", 0) != 0)
		_exit(35);
}

static void __attribute__((unused)) call_write_stdout(void)
{
	syscall(SYS_write, STDOUT_FILENO, "", 0);
}

static void __attribute__((unused)) call_write_other(void)
{
	syscall(SYS_write, FD_T_OTHER_W, "w", 1);
}

static void __attribute__((unused)) call_write_memfd(void)
{
	syscall(SYS_write, FD_T_MEMFD, "w", 1);
}

static void __attribute__((unused)) call_write_own_eventfd(void)
{
	uint64_t one = 1;

	syscall(SYS_write, FD_EFD_NETSTACK, &one, sizeof(one));
}

static void __attribute__((unused)) call_read_other(void)
{
	char c;

	syscall(SYS_read, FD_T_OTHER_R, &c, 1);
}

static void __attribute__((unused)) call_read_lifeline(void)
{
	char c;

	syscall(SYS_read, FD_LIFELINE, &c, 1);
}

static void __attribute__((unused)) call_read_memfd(void)
{
	char c;

	syscall(SYS_read, FD_T_MEMFD, &c, 1);
}

static void __attribute__((unused)) call_read_stdin(void)
{
	char c;

	syscall(SYS_read, STDIN_FILENO, &c, 0);
}

static void do_nothing(void)
{
}

static const struct {
	void (*call)(void);
	const char *name;
} always_killed[] = {
	{ call_socket_unix, "socket(AF_UNIX)" },
	{ call_fork, "clone" },
	{ call_execve, "execve" },
	{ call_ptrace, "ptrace" },
};

Test(confine_seccomp, netstack_filter_kills_socket)
{
	assert_killed(netstack_seccomp, call_socket, "netstack: socket(AF_INET)");
	assert_killed(netstack_seccomp, call_socket_unix, "netstack: syscall(SYS_socket)");
}

Test(confine_seccomp, netstack_filter_kills_other_calls)
{
	for (unsigned i = 0; i < sizeof(always_killed) / sizeof(always_killed[0]); i++)
		assert_killed(netstack_seccomp, always_killed[i].call, always_killed[i].name);
#ifndef MOAT_SANITIZE
	assert_killed(netstack_seccomp, call_mmap_anon, "netstack: mmap");
#endif
}

Test(confine_seccomp, netstack_filter_allows_its_own_io)
{
	assert_survives(netstack_seccomp, do_nothing, "netstack: _exit (exit_group)");
	assert_survives(netstack_seccomp, call_netstack_io, "netstack: eventfds, lifeline, log");
}

Test(confine_seccomp, netstack_filter_kills_io_on_other_fds)
{
#ifdef MOAT_SANITIZE
	cr_skip_test("sanitizer builds allow read and write on every fd (common/confine.c)");
#else
	static const struct {
		void (*call)(void);
		const char *name;
	} calls[] = {
		{ call_write_stdout, "write(1)" },
		{ call_write_other, "write to another pipe" },
		{ call_write_memfd, "write to a memfd" },
		{ call_write_own_eventfd, "write to its own eventfd" },
		{ call_read_other, "read from another pipe" },
		{ call_read_lifeline, "read from the lifeline (ppoll only)" },
		{ call_read_memfd, "read from a memfd" },
		{ call_read_stdin, "read(0)" },
	};

	for (unsigned i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		assert_killed(netstack_seccomp, calls[i].call, calls[i].name);
#endif
}

/* The proxy's filter refuses openat (libuv's EMFILE trick) instead of dying. */
static void __attribute__((unused)) call_openat_refused(void)
{
	int fd = open("/etc/hostname", O_RDONLY);

	if (fd >= 0 || errno != EACCES)
		_exit(3);
}

Test(confine_seccomp, openat_kills_the_netstack_and_fails_in_the_proxy)
{
#ifdef MOAT_SANITIZE
	cr_skip_test("sanitizer builds allow openat for the ASan runtime (common/confine.c)");
#else
	assert_killed(netstack_seccomp, call_openat, "netstack: openat");
	assert_survives(proxy_seccomp, call_openat_refused, "proxy: openat fails with EACCES");
#endif
}

Test(confine_seccomp, proxy_filter_allows_anonymous_mmap)
{
	assert_survives(proxy_seccomp, do_nothing, "proxy: _exit (exit_group)");
	assert_survives(proxy_seccomp, call_mmap_anon, "proxy: anonymous mmap");
}

Test(confine_seccomp, proxy_filter_kills_file_mappings)
{
#ifdef MOAT_SANITIZE
	cr_skip_test("sanitizer builds allow every mmap (common/confine.c)");
#else
	assert_killed(proxy_seccomp, call_mmap_memfd, "proxy: mmap of a memfd, shared");
	assert_killed(proxy_seccomp, call_mmap_memfd_private, "proxy: mmap of a memfd, private");
	assert_killed(proxy_seccomp, call_mmap_file, "proxy: mmap of a file");
	assert_killed(proxy_seccomp, call_mmap_exec, "proxy: executable anonymous mmap");
#endif
}

Test(confine_seccomp, proxy_filter_kills_other_calls)
{
	for (unsigned i = 0; i < sizeof(always_killed) / sizeof(always_killed[0]); i++)
		assert_killed(proxy_seccomp, always_killed[i].call, always_killed[i].name);
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

/* Does this kernel run i386 syscalls at all (CONFIG_IA32_EMULATION)? */
static bool have_ia32(void)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		call_i386_getpid();
		_exit(0);
	}
	return wait_child(pid) == 0;
}

Test(confine_seccomp, foreign_architecture_is_killed)
{
	assert_killed(netstack_seccomp, call_x32_getpid, "x32 getpid");
	if (!have_ia32())
		cr_skip_test("x32 checked; this kernel has no i386 syscalls (int 0x80 faults)");
	assert_killed(netstack_seccomp, call_i386_getpid, "i386 getpid via int 0x80");
}
#endif

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
		confine_parent_death(getpid()); /* never our own parent */
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
 * A credential change may clear the parent-death signal (prctl(2): a new
 * euid does); the second call re-arms it. An unprivileged netstack calls it
 * inside its new user namespace, where getppid() must still name the
 * supervisor, or the role would exit.
 */
Test(confine_parent_death, rearmed_after_the_user_namespace)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pid_t parent = getppid();
		int sig = -1;

		confine_parent_death(parent);
		become_nobody(); /* as root: a new euid, which clears the setting */
		if (confine_netns() < 0)
			_exit(77);
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

/* Read "Field:\tvalue" from /proc/@pid/status (0: self) into @out. */
static int status_field_of(pid_t pid, const char *field, char *out, size_t outlen)
{
	char path[64], line[256];
	FILE *f;
	size_t fl = strlen(field);
	int found = -1;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "re");
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

static int status_field(const char *field, char *out, size_t outlen)
{
	return status_field_of(0, field, out, outlen);
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
	if (res->had_caps) /* with CAP_SETPCAP the bounding set goes too */
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
	cr_assert_eq(WEXITSTATUS(status), 0, "a capability survived (check %d)",
		     WEXITSTATUS(status));
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
			_exit(70); /* the fork succeeded */
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
		  "writing a file under RLIMIT_FSIZE 0 did not raise SIGXFSZ (status 0x%x)",
		  status);
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
	cr_assert(
		WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
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

/* ------------------------------------------------------------------ */
/* The real roles, started as the supervisor starts them                */
/* ------------------------------------------------------------------ */

/*
 * A role of the real binary, with the descriptors of common/fds.h: 0 and 1
 * /dev/null, 2 a pipe we read (@err), the region, the four eventfds, the
 * lifeline's read end (we hold the write end, @lifeline) and, for the
 * proxy, a socketpair (@control, our end).
 */
struct role {
	pid_t pid;
	int lifeline, control, err;
	struct region region;
	int efd[4];
};

static void role_start(struct role *ro, const char *role, const char *supervisor_arg,
		       uint32_t flags)
{
	struct region_config cfg = { .frame_ring_bytes = 1u << 16, .flow_ring_bytes = 1u << 16 };
	struct moat_shm_header proto = {
		.mtu = 1500,
		.guest_ip4 = { 10, 0, 2, 15 },
		.gateway_ip4 = { 10, 0, 2, 2 },
		.dns_ip4 = { 10, 0, 2, 3 },
		.netmask4 = { 255, 255, 255, 0 },
		.gateway_mac = { 0x52, 0x55, 10, 0, 2, 2 },
		.prefix4 = 24,
		.anti_spoof = 1,
		.log_level = 1,
		.max_tcp_connections = 16,
		.max_udp_flows = 16,
		.connect_timeout_ms = 1000,
		.tcp_idle_timeout_s = 60,
		.udp_idle_timeout_s = 60,
		.flags = flags,
	};
	bool proxy = !strcmp(role, "__proxy");
	int life[2], err[2], sp[2] = { -1, -1 }, devnull;
	char self[16];

	memset(ro, 0, sizeof(*ro));
	cr_assert_eq(region_create(&cfg, &proto, &ro->region), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_geq(ro->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), 0);
	cr_assert_eq(pipe2(life, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
	if (proxy)
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	cr_assert_geq(devnull = open("/dev/null", O_RDWR | O_CLOEXEC), 0);
	snprintf(self, sizeof(self), "%d", (int)getpid());
	ro->pid = fork();
	cr_assert_geq(ro->pid, 0);
	if (ro->pid == 0) {
		int from[] = { devnull,	   devnull,    err[1],	   ro->region.fd, ro->efd[0],
			       ro->efd[1], ro->efd[2], ro->efd[3], life[0],	  sp[1] };
		int n = proxy ? 10 : 9;
		char *argv[] = { proxy ? "moat-proxy" : "moat-netstack", (char *)role,
				 (char *)(supervisor_arg ? supervisor_arg : self), NULL };

		if (supervisor_arg && !supervisor_arg[0])
			argv[2] = NULL; /* no pid at all */
		for (int i = 0; i < n; i++)
			if ((from[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 64)) < 0)
				_exit(30);
		for (int i = 0; i < n; i++)
			if (dup2(from[i], i) < 0)
				_exit(31);
		execv(MOAT_BINARY, argv);
		_exit(32);
	}
	close(devnull);
	close(life[0]);
	close(err[1]);
	if (proxy)
		close(sp[1]);
	ro->lifeline = life[1];
	ro->err = err[0];
	ro->control = sp[0];
}

/* What the role wrote to stderr (it has exited: the pipe is at EOF). */
static void role_log(struct role *ro, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n < len - 1 && (r = read(ro->err, buf + n, len - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
}

static void role_end(struct role *ro)
{
	int status;

	if (ro->pid > 0 && waitpid(ro->pid, &status, WNOHANG) == 0) {
		kill(ro->pid, SIGKILL);
		waitpid(ro->pid, &status, 0);
	}
	if (ro->lifeline >= 0)
		close(ro->lifeline);
	if (ro->control >= 0)
		close(ro->control);
	close(ro->err);
	for (int i = 0; i < 4; i++)
		close(ro->efd[i]);
	munmap(ro->region.part[MOAT_PART_HEADER], ro->region.hdr.region_size);
	close(ro->region.fd);
}

/* Wait until the role's seccomp filter is on (it is then in its loop). */
static void role_wait_confined(struct role *ro)
{
	char v[16] = "";

	for (int t = 0; t < 5000; t += 10) {
		if (status_field_of(ro->pid, "Seccomp", v, sizeof(v)) == 0 && !strcmp(v, "2"))
			return;
		usleep(10000);
	}
	cr_assert_fail("the role did not confine itself within 5 s (Seccomp: %s)", v);
}

/*
 * The role's open descriptors: *@mask gets bit N for fd N < 64; no fd may be
 * the memfd. Returns false if /proc/PID/fd is closed to us (a non-dumpable
 * process of our uid, unless we are root).
 */
static bool role_fds(struct role *ro, uint64_t *mask)
{
	char dir[64], path[384], target[256];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)ro->pid);
	d = opendir(dir);
	if (!d && (errno == EACCES || errno == EPERM))
		return false;
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	*mask = 0;
	while ((de = readdir(d))) {
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue; /* closed meanwhile */
		target[n] = '\0';
		cr_assert(strncmp(target, "/memfd:", 7), "fd %d is still the region: %s", fd,
			  target);
		if (fd < 64)
			*mask |= 1ULL << fd;
	}
	closedir(d);
	return true;
}

static void assert_exit(int status, int code, const char *what)
{
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == code,
		  "%s: expected exit %d, got %s %d", what, code,
		  WIFSIGNALED(status) ? "signal" : "exit status",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

Test(confine_roles, netstack_dies_of_sigsys_on_socket, .timeout = 60)
{
#ifndef MOAT_TEST_TRIGGERS
	cr_skip_test("needs -DMOAT_TEST_TRIGGERS=ON");
#else
	struct role ro;

	role_start(&ro, "__netstack", NULL, MOAT_HDR_F_TEST_TRIGGERS);
	assert_sigsys(wait_child(ro.pid), "moat-netstack with the seccomp test trigger");
	ro.pid = 0;
	role_end(&ro);
#endif
}

/* A missing or malformed supervisor pid, or one that is not our parent: exit 1 at once. */
Test(confine_roles, a_role_refuses_a_bad_or_wrong_supervisor, .timeout = 60)
{
	static const char *roles[] = { "__netstack", "__proxy" };
	char wrong[16], log[4096];

	snprintf(wrong, sizeof(wrong), "%d", (int)getppid()); /* not the role's parent */
	for (unsigned r = 0; r < 2; r++) {
		const char *args[] = { "", "0", "-5", "+5", " 5", "05", "5x", "99999999999", wrong };

		for (unsigned i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
			struct role ro;
			int status;

			role_start(&ro, roles[r], args[i], 0);
			cr_assert_eq(wait_child_ms(ro.pid, 5000, &status), 0,
				     "%s '%s' still runs after 5 s", roles[r], args[i]);
			assert_exit(status, 1, args[i]);
			role_log(&ro, log, sizeof(log));
			cr_assert(strstr(log, i + 1 < sizeof(args) / sizeof(args[0]) ?
						      "supervisor's pid" :
						      "is gone"),
				  "%s '%s': no reason logged: %s", roles[r], args[i], log);
			ro.pid = 0;
			role_end(&ro);
		}
	}
}

/* Confined, the netstack holds its fds of common/fds.h and nothing else; no memfd. */
Test(confine_roles, netstack_keeps_only_its_fds_and_exits_with_the_lifeline, .timeout = 60)
{
	const uint64_t want = 0x7 | 1ULL << FD_EFD_SUPERVISOR | 1ULL << FD_EFD_GUEST |
			      1ULL << FD_EFD_NETSTACK | 1ULL << FD_EFD_PROXY | 1ULL << FD_LIFELINE;
	char log[4096];
	struct role ro;
	uint64_t fds;
	int status;

	role_start(&ro, "__netstack", NULL, 0);
	role_wait_confined(&ro);
	if (role_fds(&ro, &fds))
		cr_assert_eq(fds, want, "netstack fds 0x%llx, want 0x%llx", (unsigned long long)fds,
			     (unsigned long long)want);
	else
		cr_log_warn("/proc/PID/fd of a non-dumpable process needs root: fds not checked");
	close(ro.lifeline);
	ro.lifeline = -1;
	cr_assert_eq(wait_child_ms(ro.pid, 1000, &status), 0,
		     "the netstack outlived its lifeline by 1 s");
	assert_exit(status, 1, "netstack, lifeline closed");
	role_log(&ro, log, sizeof(log));
	cr_assert(strstr(log, "supervisor gone"), "no line about the lifeline: %s", log);
	ro.pid = 0;
	role_end(&ro);
}

/* SIGTERM is still a clean stop: the lifeline in the poll set does not fire on its own. */
Test(confine_roles, netstack_stops_cleanly_on_sigterm, .timeout = 60)
{
	struct role ro;
	int status;

	role_start(&ro, "__netstack", NULL, 0);
	role_wait_confined(&ro);
	usleep(200000); /* a few loop turns */
	cr_assert_eq(waitpid(ro.pid, &status, WNOHANG), 0, "the netstack ended by itself");
	cr_assert_eq(kill(ro.pid, SIGTERM), 0);
	cr_assert_eq(wait_child_ms(ro.pid, 5000, &status), 0, "no stop 5 s after SIGTERM");
	assert_exit(status, 0, "netstack, SIGTERM");
	ro.pid = 0;
	role_end(&ro);
}

Test(confine_roles, proxy_holds_no_memfd_and_exits_with_the_lifeline, .timeout = 60)
{
	char log[4096];
	struct role ro;
	uint64_t fds;
	int status;

	role_start(&ro, "__proxy", NULL, 0);
	role_wait_confined(&ro);
	if (role_fds(&ro, &fds)) {
		const uint64_t need = 0x7 | 1ULL << FD_EFD_SUPERVISOR | 1ULL << FD_EFD_GUEST |
				      1ULL << FD_EFD_NETSTACK | 1ULL << FD_EFD_PROXY |
				      1ULL << FD_LIFELINE | 1ULL << FD_CONTROL;

		cr_assert_eq(fds & need, need, "proxy fds 0x%llx", (unsigned long long)fds);
	} else {
		cr_log_warn("/proc/PID/fd of a non-dumpable process needs root: fds not checked");
	}
	close(ro.lifeline);
	ro.lifeline = -1;
	cr_assert_eq(wait_child_ms(ro.pid, 1000, &status), 0,
		     "the proxy outlived its lifeline by 1 s");
	assert_exit(status, 1, "proxy, lifeline closed");
	role_log(&ro, log, sizeof(log));
	cr_assert(strstr(log, "supervisor gone"), "no line about the lifeline: %s", log);
	ro.pid = 0;
	role_end(&ro);
}

/* A closed control channel still ends uv_run(): the lifeline's handle does not hold it. */
Test(confine_roles, proxy_stops_when_the_control_channel_closes, .timeout = 60)
{
	char log[4096];
	struct role ro;
	int status;

	role_start(&ro, "__proxy", NULL, 0);
	role_wait_confined(&ro);
	close(ro.control);
	ro.control = -1;
	cr_assert_eq(wait_child_ms(ro.pid, 5000, &status), 0,
		     "the proxy runs on 5 s after its control channel closed");
	role_log(&ro, log, sizeof(log));
	assert_exit(status, 0, "proxy, control channel closed");
	cr_assert_null(strstr(log, "supervisor gone"), "the lifeline fired: %s", log);
	ro.pid = 0;
	role_end(&ro);
}
