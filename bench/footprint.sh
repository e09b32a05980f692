#!/bin/bash
# bench/footprint.sh — start-up time and memory per sandbox: moat, slirp4netns
# and pasta side by side, in one run.
#
# usage: sudo bench/footprint.sh [-n ROUNDS] [-t SECONDS] [-m MTU] [-p "moat slirp4netns pasta"]
#   MOAT=path/to/moat   the binary (default: a Release build in build-bench/, built here)
#
# Layout: ../shared/bench/topology.sh's moat-srv (servers on 203.0.113.10) and
# moat-host (where every provider runs; its only route leads to moat-srv), and
# a fresh, empty guest namespace `moat-guest` per start (the names peers.sh
# uses: run one benchmark at a time). Nothing leaves these namespaces.
#   moat         tap0 made in moat-guest (10.0.2.15/24 via 10.0.2.2), then
#                `moat run --guest tap:tap0@/run/netns/moat-guest --ready-fd N`
#   slirp4netns  `slirp4netns --configure --netns-type=path --ready-fd N
#                /run/netns/moat-guest tap0` (it makes and configures tap0)
#   pasta        `pasta -f --config-net --runas 0 --netns /run/netns/moat-guest`
#                (this pasta drops to nobody when run as root and then cannot
#                enter a root-owned namespace; --runas 0 keeps root — the
#                data path and memory are the same either way)
#
# Each round starts every provider once (providers alternate inside a round, so
# drift on a noisy machine hits all alike) and measures:
#   ready ms   exec -> the line on --ready-fd (moat, slirp4netns; pasta has none)
#   reach ms   exec -> the first TCP connect from the guest namespace to the
#              server that succeeds (a prober started in moat-guest before the
#              exec starts a new non-blocking connect every ~1 ms and keeps the
#              pending ones; moat only answers the guest's SYN once its proxy
#              has connected upstream, so this is end to end for all three).
#              moat's tap0 exists before moat does, so the gateway's MAC is
#              entered statically: an ARP request sent before moat holds the
#              tap would otherwise be retried only a kernel second later.
#   PSS MiB    sum of Pss over /proc/PID/smaps_rollup of the provider's
#              processes (moat: supervisor, netstack, proxy; the shared memfd is
#              split between them by PSS, so the sum counts it once):
#              idle (1 s after reach), peak during iperf3 up then down
#              (-t SECONDS each, sampled every 100 ms), and 1 s after. In
#              brackets: Pss_Anon + Pss_Shmem, i.e. without file pages (code
#              and libraries, whose PSS depends on how many other processes on
#              the machine map the same files), so it is what one more sandbox
#              costs.
#   CPU s/GB   user + system CPU of the provider's processes during each iperf3
#              run, per GB received: what the data path costs, which on a
#              shared 2-core machine is steadier than Gbit/s (the kernel's tap
#              work on the guest's behalf lands on the provider, for all three).
# The table shows the median over rounds (start-up also min..max).
# Only numbers from the same run compare: the machine is small and shared.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
shared=${MOAT_SHARED:-$top/../shared}
N=5 T=3 MTU=1500 PROVIDERS="moat slirp4netns pasta"
lib_options "$(sed -n '4,5p' "$0")" n=N t=T m=MTU p=PROVIDERS -- "$@"
lib_need_root footprint "network namespaces"
[ -x "$shared/bench/topology.sh" ] || { echo "footprint: $shared/bench/topology.sh not found" >&2; exit 2; }
for t in ip iperf3 python3; do
	command -v $t >/dev/null || { echo "footprint: needs $t" >&2; exit 2; }
done

if [[ " $PROVIDERS " == *" moat "* && -z "${MOAT:-}" ]]; then
	lib_build_moat footprint
fi
export MOAT="${MOAT:-}"

SRV_IP=203.0.113.10 IPERF_PORT=5298 PROBE_PORT=5300
work=$(mktemp -d /tmp/footprint.XXXXXX); chmod 755 "$work"
pids=""
cleanup() {
	set +e
	[ -n "$pids" ] && kill $pids 2>/dev/null
	[ -f "$work/iperf.pid" ] && kill "$(cat "$work/iperf.pid")" 2>/dev/null
	wait 2>/dev/null
	ip netns del moat-guest 2>/dev/null
	"$shared/bench/topology.sh" down
	rm -rf "$work"
}
trap cleanup EXIT
"$shared/bench/topology.sh" up
ip netns exec moat-srv iperf3 -s -B $SRV_IP -p $IPERF_PORT -D --pidfile "$work/iperf.pid"
# The probe target: accept, close, repeat.
ip netns exec moat-srv python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
while True:
    c, _ = s.accept(); c.close()' $SRV_IP $PROBE_PORT & pids="$pids $!"
sleep 0.5

python3 - "$work" "$N" "$T" "$MTU" "$SRV_IP" "$IPERF_PORT" "$PROBE_PORT" $PROVIDERS <<'PY'
import ctypes, json, os, select, signal, statistics, subprocess, sys, threading, time

work, N, T, MTU, SRV, IPORT, PPORT = sys.argv[1:8]
N, T, MTU, IPORT, PPORT = int(N), int(T), int(MTU), int(IPORT), int(PPORT)
providers = sys.argv[8:]
GNS = "moat-guest"
GPATH = "/run/netns/" + GNS

# The driver itself enters moat-host, so the providers it starts run there
# without an `ip netns exec` in the timed path.
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/run/netns/moat-host", os.O_RDONLY)
if libc.setns(fd, 0x40000000) != 0:          # CLONE_NEWNET
    sys.exit("footprint: setns moat-host: %s" % os.strerror(ctypes.get_errno()))
os.close(fd)

def sh(*a, check=True):
    return subprocess.run(a, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

PROBER = r'''
import errno, os, select, socket, sys, time
dst = (sys.argv[1], int(sys.argv[2]))
print("armed", flush=True)
pending = []
while True:
    s = socket.socket(); s.setblocking(False)
    e = s.connect_ex(dst)
    if e in (0, errno.EINPROGRESS):
        pending.append(s)
        if len(pending) > 256:
            pending.pop(0).close()
    else:
        s.close()
    if not pending:
        time.sleep(0.001)
        continue
    _, w, _ = select.select([], pending, [], 0.001)
    for s in w:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            print("%.6f" % time.monotonic(), flush=True)
            sys.exit(0)
        pending.remove(s); s.close()
'''

def guest_up(p):
    sh("ip", "netns", "del", GNS, check=False)
    sh("ip", "netns", "add", GNS)
    sh("ip", "-n", GNS, "link", "set", "lo", "up")
    if p == "moat":
        sh("ip", "-n", GNS, "tuntap", "add", "dev", "tap0", "mode", "tap")
        # Probes start before moat holds the tap, so an ARP request would be
        # lost and retried a kernel second later: the gateway's MAC (fixed,
        # 52:55 + its address, as slirp) is entered by hand instead.
        # (slirp4netns and pasta make their device and route when they are
        # already serving, so their ARP is answered at once.)
        sh("ip", "-n", GNS, "neigh", "add", "10.0.2.2", "lladdr", "52:55:0a:00:02:02",
           "nud", "permanent", "dev", "tap0")
        sh("ip", "-n", GNS, "link", "set", "tap0", "mtu", str(MTU), "up")
        sh("ip", "-n", GNS, "addr", "add", "10.0.2.15/24", "dev", "tap0")
        sh("ip", "-n", GNS, "route", "add", "default", "via", "10.0.2.2")

def argv(p, rfd):
    if p == "moat":
        return [os.environ["MOAT"], "run", "--guest", "tap:tap0@" + GPATH, "--mtu", str(MTU),
                "--ready-fd", str(rfd)]
    if p == "slirp4netns":
        return ["slirp4netns", "--configure", "--mtu", str(MTU), "--netns-type=path",
                "--ready-fd", str(rfd), GPATH, "tap0"]
    if p == "pasta":
        return ["pasta", "-f", "--config-net", "-m", str(MTU), "--runas", "0",
                "--netns", GPATH]
    raise SystemExit("footprint: unknown provider " + p)

def tree(root):
    """root and all its descendants"""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        x = todo.pop()
        out.append(x)
        todo.extend(kids.get(x, []))
    return out

def pss_kib(root):
    """(Pss, Pss_Anon + Pss_Shmem) in KiB, summed over root and its descendants"""
    total = own = 0
    for pid in tree(root):
        try:
            for line in open("/proc/%d/smaps_rollup" % pid):
                f = line.split()
                if f[0] == "Pss:":
                    total += int(f[1])
                elif f[0] in ("Pss_Anon:", "Pss_Shmem:"):
                    own += int(f[1])
        except OSError:
            pass
    return (total, own)

HZ = os.sysconf("SC_CLK_TCK")

def cpu_s(root):
    """user + system CPU seconds of root and its descendants"""
    total = 0
    for pid in tree(root):
        try:
            st = open("/proc/%d/stat" % pid).read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        total += int(f[11]) + int(f[12])
    return total / HZ

def iperf(extra, root, peak):
    """one iperf3 run from the guest; samples the provider's PSS meanwhile.
    Returns the provider's CPU seconds per GB moved, or None."""
    c0 = cpu_s(root)
    proc = subprocess.Popen(["ip", "netns", "exec", GNS, "iperf3", "-J", "-c", SRV, "-p",
                             str(IPORT), "-t", str(T)] + extra,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = []
    threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True).start()
    while proc.poll() is None:
        peak[0] = max(peak[0], pss_kib(root))	# (Pss, anon+shmem), compared as a pair
        time.sleep(0.1)
    c1 = cpu_s(root)
    time.sleep(0.1)
    try:
        moved = json.loads(out[0])["end"]["sum_received"]["bytes"]
    except Exception:
        return None
    return (c1 - c0) / (moved / 1e9) if proc.returncode == 0 and moved else None

res = {p: {"ready": [], "reach": [], "nproc": [], "idle": [], "peak": [], "after": [],
           "cpu_up": [], "cpu_down": [], "fail": []} for p in providers}

for rnd in range(N):
    for p in providers:
        r = res[p]
        guest_up(p)
        prober = subprocess.Popen(["ip", "netns", "exec", GNS, "python3", "-c", PROBER,
                                   SRV, str(PPORT)], stdout=subprocess.PIPE, text=True)
        assert prober.stdout.readline().strip() == "armed"
        rd, wr = os.pipe()
        log = open(os.path.join(work, "%s.%d.log" % (p, rnd)), "w")
        t0 = time.monotonic()
        prov = subprocess.Popen(argv(p, wr), pass_fds=(wr,), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
        os.close(wr)
        t_ready = None
        if p != "pasta":
            if select.select([rd], [], [], 10)[0] and os.read(rd, 64):
                t_ready = time.monotonic()
        os.close(rd)
        line = ""
        if select.select([prober.stdout], [], [], 10)[0]:
            line = prober.stdout.readline().strip()
        if line:
            r["reach"].append((float(line) - t0) * 1e3)
            if t_ready is not None:
                r["ready"].append((t_ready - t0) * 1e3)
            time.sleep(1)
            r["nproc"].append(len(tree(prov.pid)))
            r["idle"].append(pss_kib(prov.pid))
            peak = [(0, 0)]
            up = iperf([], prov.pid, peak)
            down = iperf(["-R"], prov.pid, peak) if up is not None else None
            time.sleep(1)
            if up is not None and down is not None:
                r["cpu_up"].append(up)
                r["cpu_down"].append(down)
                r["peak"].append(peak[0])
                r["after"].append(pss_kib(prov.pid))
            else:
                r["fail"].append("round %d: iperf3 failed" % rnd)
        else:
            r["fail"].append("round %d: guest never reached the server" % rnd)
        if prober.poll() is None:
            prober.kill()
        prober.wait()
        prov.send_signal(signal.SIGTERM)
        try:
            prov.wait(5)
        except subprocess.TimeoutExpired:
            prov.kill(); prov.wait()
        log.close()
        if r["fail"] and r["fail"][-1].startswith("round %d:" % rnd):
            keep = "/tmp/footprint-%s-%d.log" % (p, rnd)
            os.replace(log.name, keep)
            r["fail"][-1] += " (its log: %s)" % keep
        print("%-12s round %d: %s" % (p, rnd + 1, " ".join(
            "%s=%s" % (k, ("%.2f" % v[-1]) if isinstance(v[-1], float) else
                       ("%d/%d" % v[-1]) if isinstance(v[-1], tuple) else v[-1])
            for k, v in r.items() if v and k != "fail")), file=sys.stderr)
    sh("ip", "netns", "del", GNS, check=False)

def ms(v):
    if not v:
        return "-"
    return "%.1f (%.1f..%.1f)" % (statistics.median(v), min(v), max(v))

def sec(v):
    return "%.2f" % statistics.median(v) if v else "-"

def mib(v):
    """median Pss (median anon + shmem)"""
    if not v:
        return "-"
    return "%.1f (%.1f)" % (statistics.median(x[0] for x in v) / 1024,
                            statistics.median(x[1] for x in v) / 1024)

rows = [
    ("processes", lambda r: str(max(r["nproc"])) if r["nproc"] else "-"),
    ("start: exec -> ready-fd, ms", lambda r: ms(r["ready"])),
    ("start: exec -> guest reaches server, ms", lambda r: ms(r["reach"])),
    ("PSS idle, MiB (without file pages)", lambda r: mib(r["idle"])),
    ("PSS peak during iperf3 up+down, MiB (without file pages)", lambda r: mib(r["peak"])),
    ("PSS after the transfer, MiB (without file pages)", lambda r: mib(r["after"])),
    ("CPU s per GB, up (guest -> server)", lambda r: sec(r["cpu_up"])),
    ("CPU s per GB, down (server -> guest)", lambda r: sec(r["cpu_down"])),
]
print()
print("MTU %d, %d rounds, iperf3 -t %d each way; median (min..max)" % (MTU, N, T))
print()
print("| measurement | " + " | ".join(providers) + " |")
print("|---|" + "---|" * len(providers))
for name, f in rows:
    print("| %s | %s |" % (name, " | ".join(f(res[p]) for p in providers)))
for p in providers:
    for f in res[p]["fail"]:
        print("%s: %s" % (p, f), file=sys.stderr)
PY
