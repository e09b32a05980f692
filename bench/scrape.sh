#!/bin/bash
# bench/scrape.sh — what does scraping /metrics cost? iperf3 through moat with
# and without a Prometheus-style scrape of GET /metrics every 10 ms, side by side.
#
# usage: sudo bench/scrape.sh [-t SECONDS] [-r ROUNDS] [-m MTU] [-i INTERVAL_MS]
#   MOAT=path/to/moat   the binary (default: a Release build in build-bench/)
#
# Self-contained: its own namespaces bx-srv (iperf3 server on 203.0.113.10),
# bx-host (moat, --metrics 127.0.0.1:9464, default route into bx-srv only) and
# bx-guest (tap0, 10.0.2.15/24 via 10.0.2.2) — the layout of
# ../shared/bench/topology.sh under another prefix, so it never collides with
# the tests or peers.sh. Nothing leaves these namespaces.
#
# Each round runs, in this order, up and down (up = guest -> server) without
# scraping and then with a scraper: a Python client in bx-host on one
# keep-alive connection, one GET every INTERVAL_MS (default 10). Rounds
# alternate so drift on a noisy machine hits both modes alike; the table shows
# the median over rounds. Also shown: the supervisor's CPU seconds during the
# transfer (the HTTP thread's cost lands there), scrapes made, scrape latency
# (mean, p99) and the scraper's own CPU seconds (it runs on the same small
# machine, so part of any throughput drop is the scraper's CPU, not moat's).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
T=10 R=3 MTU=1500 IV=10
lib_options "$(sed -n '4,5p' "$0")" t=T r=R m=MTU i=IV -- "$@"
lib_need_root scrape.sh "network namespaces"
for t in ip iperf3 python3; do
	command -v $t >/dev/null || { echo "scrape.sh: needs $t" >&2; exit 2; }
done
[ -n "${MOAT:-}" ] || lib_build_moat scrape.sh

SRV=bx-srv HOST=bx-host GUEST=bx-guest SRV_IP=203.0.113.10 PORT=5301 MPORT=9464
work=$(mktemp -d /tmp/moat-scrape.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del $GUEST 2>/dev/null || true
	ip netns del $HOST 2>/dev/null || true
	ip netns del $SRV 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for ns in $GUEST $HOST $SRV; do ip netns del $ns 2>/dev/null || true; done
lib_topology $SRV $HOST $GUEST bx $SRV_IP
ip -n $GUEST link set tap0 mtu "$MTU" up
ip -n $GUEST addr add 10.0.2.15/24 dev tap0
ip -n $GUEST route add default via 10.0.2.2

ip netns exec $SRV iperf3 -s -B $SRV_IP -p $PORT >/dev/null 2>&1 &
pids+=($!)
mkfifo "$work/ready"
ip netns exec $HOST "$MOAT" run --guest tap:tap0@/run/netns/$GUEST --mtu "$MTU" \
	--metrics 127.0.0.1:$MPORT --ready-fd 9 9>"$work/ready" >"$work/moat.log" 2>&1 &
moat=$!
pids+=($moat)
read -r -t 20 _ <"$work/ready" || { echo "moat did not start:" >&2; cat "$work/moat.log" >&2; exit 1; }
sleep 0.5

cat >"$work/scraper.py" <<'PY'
import http.client, resource, signal, sys, time
port, iv = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
conn, lat, errors, size = None, [], 0, 0
nxt = time.monotonic()
while not stop:
    t0 = time.monotonic()
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(r.status)
        size = len(body)
        lat.append(time.monotonic() - t0)
    except Exception:
        errors += 1
        conn = None
    nxt += iv
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
    else:
        nxt = time.monotonic()
lat.sort()
ru = resource.getrusage(resource.RUSAGE_SELF)
mean = sum(lat) / len(lat) * 1e6 if lat else 0
p99 = lat[int(len(lat) * 0.99)] * 1e6 if lat else 0
print("%d %d %.0f %.0f %.2f %d" % (len(lat), errors, mean, p99, ru.ru_utime + ru.ru_stime, size))
PY

alive() { kill -0 "$moat" 2>/dev/null; }
# the supervisor's utime + stime in ticks (0 once it is gone)
cpu() { awk '{ print $14 + $15 }' "/proc/$moat/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
gbps() { python3 -c 'import json, sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("fail")'; }

# one MODE DIR: one transfer; prints "MODE DIR gbps sup_cpu_s [scrapes errors mean_us p99_us scraper_cpu_s bytes]"
one() {
	local mode=$1 dir=$2 sp= c0 c1 g s=""
	alive || { echo "scrape.sh: moat is gone; its log:" >&2; tail -n 20 "$work/moat.log" >&2; exit 1; }
	if [ "$mode" = on ]; then
		ip netns exec $HOST python3 "$work/scraper.py" $MPORT "$IV" >"$work/scr.out" &
		sp=$!
		sleep 0.2
	fi
	c0=$(cpu)
	g=$(ip netns exec $GUEST iperf3 -J -c $SRV_IP -p $PORT -t "$T" $([ "$dir" = down ] && echo -R) \
		2>/dev/null | gbps)
	c1=$(cpu)
	if [ -n "$sp" ]; then
		kill -TERM $sp
		wait $sp || true
		s=$(cat "$work/scr.out")
	fi
	alive || g=fail
	echo "$mode $dir $g $(python3 -c "print('%.2f' % ((${c1:-0} - ${c0:-0}) / $hz))") $s"
}

echo "moat $MOAT, MTU $MTU, $T s per transfer, $R rounds, scrape every $IV ms" >&2
for r in $(seq "$R"); do
	for mode in off on; do
		for dir in up down; do
			line=$(one $mode $dir)
			echo "round $r: $line" >&2
			echo "$line" >>"$work/results"
		done
	done
done

python3 - "$work/results" "$T" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
T = float(sys.argv[2])
def med(xs):
    xs = [float(x) for x in xs if x != "fail"]
    return st.median(xs) if xs else float("nan")
print()
print("| direction | Gbit/s, no scrape | Gbit/s, scrape | change | supervisor CPU s, no scrape | supervisor CPU s, scrape | scrapes/s | scrape mean µs | scrape p99 µs | scraper CPU s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for d in ("up", "down"):
    off = [r for r in rows if r[0] == "off" and r[1] == d]
    on = [r for r in rows if r[0] == "on" and r[1] == d]
    g0, g1 = med(r[2] for r in off), med(r[2] for r in on)
    change = (g1 - g0) / g0 * 100 if g0 == g0 and g0 else float("nan")
    c0, c1 = med(r[3] for r in off), med(r[3] for r in on)
    sc = med(float(r[4]) / T for r in on if len(r) > 4)
    mean = med(r[6] for r in on if len(r) > 6)
    p99 = med(r[7] for r in on if len(r) > 7)
    scpu = med(r[8] for r in on if len(r) > 8)
    print(f"| {d} | {g0:.2f} | {g1:.2f} | {change:+.1f}% | {c0:.2f} | {c1:.2f} | {sc:.0f} | {mean:.0f} | {p99:.0f} | {scpu:.2f} |")
errs = sum(int(r[5]) for r in rows if r[0] == "on" and len(r) > 5)
size = max((int(r[9]) for r in rows if r[0] == "on" and len(r) > 9), default=0)
print(f"\nscrape errors: {errs}; exposition size: {size} bytes")
PY
