#!/bin/bash
# t_forged_rings.sh — hostile ring and mailbox state ends in a violation,
# never in a spin or a crash (issue 11). For each case moat is started with
# a guest that keeps traffic flowing in every direction (ping: g2s and s2g;
# TCP connects to the server: s2p and p2s), then tests/tools/shm_forge,
# as root, opens the supervisor's memfd through /proc/PID/fd and forges
# one thing: a head beyond tail + capacity (seen by the consumer), a tail
# ahead of the head (seen by the producer), a record longer than the ring,
# or a mailbox report with an unknown reason and a detail of control bytes.
# Each must end with exit status 3 within a few seconds, one clear line
# naming the ring, fewer than 100 log lines, and little CPU time in moat's
# processes (a spin would burn a core for the whole window).
source "$(dirname "$0")/lib.sh"
need ping pgrep date

TOOLS=${MOAT_TOOLS:-$(dirname "$MOAT")/tests/tools}
FORGE=$TOOLS/shm_forge
[ -x "$FORGE" ] || skip "test tool shm_forge not built in $TOOLS (set MOAT_TOOLS)"

HZ=$(getconf CLK_TCK)
MAX_TICKS=$((HZ / 2))	# 0.5 s of CPU over the whole case, all processes
MAX_LINES=100

topo_up
guest_up 1500 static

# state PID: the process state letter, empty once it is gone
state() { awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null || true; }
running() { local st; st=$(state "$1"); [ -n "$st" ] && [ "$st" != Z ]; }

# sample_cpu PID...: remember each live process's utime + stime (ticks);
# a process that is gone keeps its last sample.
declare -A CPU0 CPU1
sample_cpu() {
	local v
	for p in "$@"; do
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
		[ -n "$v" ] || continue
		[ -n "${CPU0[$p]:-}" ] || CPU0[$p]=$v
		CPU1[$p]=$v
	done
}
cpu_used() {
	local t=0
	for p in "${!CPU1[@]}"; do t=$((t + CPU1[$p] - CPU0[$p])); done
	echo "$t"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# traffic_start / traffic_stop: the guest pings the gateway and keeps
# opening TCP connections to the server (refused there: a CONNECT out, a
# result back).
TRAFFIC=()
traffic_start() {
	in_guest ping -q -i 0.05 10.0.2.2 >/dev/null 2>&1 &
	TRAFFIC+=($!)
	in_guest bash -c 'while :; do (exec 3<>/dev/tcp/203.0.113.10/81); sleep 0.05; done' \
		>/dev/null 2>&1 &
	TRAFFIC+=($!)
	BG_PIDS+=("${TRAFFIC[@]}")
}
traffic_stop() {
	for p in "${TRAFFIC[@]}"; do
		pkill -TERM -P "$p" 2>/dev/null || true
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	TRAFFIC=()
}

# forge_case WHAT PROCESS DETAIL_RE: forge WHAT; moat must exit 3 within
# 5 s with a fatal violation line from PROCESS matching DETAIL_RE.
forge_case() {
	local what=$1 who=$2 detail=$3 rc=0 t0 ms lines np px forger
	CPU0=() CPU1=()
	: >"$WORK/moat.log"
	moat_start
	np=$(child_pid moat-netstack || true)
	px=$(child_pid moat-proxy || true)
	traffic_start
	sleep 0.5
	sample_cpu "$MOAT_PID" $np $px
	t0=$(now_ms)
	"$FORGE" "$MOAT_PID" "$what" 5 >"$WORK/forge.log" 2>&1 &
	forger=$!
	while running "$MOAT_PID" && [ $(($(now_ms) - t0)) -lt 8000 ]; do
		sample_cpu "$MOAT_PID" $np $px
		sleep 0.05
	done
	ms=$(($(now_ms) - t0))
	if running "$MOAT_PID"; then
		sample_cpu "$MOAT_PID" $np $px
		traffic_stop
		cat "$WORK/forge.log" >&2
		fail "$what: moat still runs 8 s after the forging began ($(cpu_used) CPU ticks meanwhile)"
	fi
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	wait "$forger" 2>/dev/null || true
	traffic_stop
	lines=$(wc -l <"$WORK/moat.log")
	[ "$rc" -eq 3 ] || { cat "$WORK/forge.log" >&2; fail "$what: exit status $rc, want 3"; }
	grep "fatal violation: .*process=$who " "$WORK/moat.log" | grep -E "$detail" >"$WORK/line" ||
		fail "$what: no fatal violation line from $who matching '$detail'"
	[ "$ms" -le 5000 ] || fail "$what: moat took $ms ms to stop"
	[ "$lines" -lt "$MAX_LINES" ] || fail "$what: $lines log lines (a spin?)"
	[ "$(cpu_used)" -le "$MAX_TICKS" ] || fail "$what: $(cpu_used) CPU ticks while forging (a spin?)"
	if grep -q $'\x1b' "$WORK/moat.log"; then
		fail "$what: a raw escape byte reached the log"
	fi
	echo "ok $what: exit 3 after $ms ms, $lines lines, $(cpu_used) ticks: $(cut -c1-150 "$WORK/line")"
	for p in $np $px; do
		wait_for 2 test ! -e "/proc/$p" || fail "$what: child $p still runs after moat exited"
	done
}

# Producer side (the tail is checked by whoever writes the ring) and
# consumer side (the head and the records, by whoever reads it).
# The line names the ring in its detail ("g2s ring corrupt", the proxy's
# "ring s2p failed validation"). A forged record may also reach a reader
# as a well-framed record of garbage (the tail it was written at can lag
# the reader's own): then it is a malformed message on that ring.
ring_re() { echo "reason=ring_corrupt .*detail=\"[^\"]*$1"; }
rec_re() { echo "reason=(ring_corrupt|bad_message) .*detail=\"[^\"]*$1"; }
forge_case g2s:tail moat "$(ring_re g2s)"		# the guest port pushes
forge_case s2g:head moat "$(ring_re s2g)"		# the guest port pops
forge_case s2g:len moat "$(rec_re s2g)"
forge_case g2s:head moat-netstack "$(ring_re g2s)"	# the netstack pops
forge_case g2s:len moat-netstack "$(rec_re g2s)"
forge_case s2g:tail moat-netstack "$(ring_re s2g)"	# the netstack pushes
forge_case s2p:tail moat-netstack "$(ring_re s2p)"
forge_case p2s:head moat-netstack "$(ring_re p2s)"
forge_case p2s:len moat-netstack "$(rec_re p2s)"
forge_case s2p:head moat-proxy "$(ring_re s2p)"	# the proxy pops
forge_case s2p:len moat-proxy "$(rec_re s2p)"
forge_case p2s:tail moat-proxy "$(ring_re p2s)"	# the proxy pushes
# Mailboxes: an unknown reason becomes bad_message; the detail is escaped.
forge_case mbox:netstack moat-netstack 'reason=bad_message.*forged\\x0a\\x1b\[31mred'
forge_case mbox:proxy moat-proxy 'reason=bad_message.*\\"quoted\\" back\\\\slash'
pass "forged g2s/s2g/s2p/p2s heads, tails and records and forged mailboxes each end in exit 3 without a spin"
