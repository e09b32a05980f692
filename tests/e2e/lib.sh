#!/bin/bash
# lib.sh — shared helpers for the end-to-end tests (sourced, not run).
#
# Each test gets namespaces of its own, named after a per-run prefix, laid
# out like ../shared/bench/topology.sh:
#   $SRV   the "outside world": 203.0.113.10 (public) and 10.88.0.10 (private) on lo
#   $HOST  where moat runs; its only route leads into $SRV
#   $GUEST the guest: a tap device tap0, attached to moat with tap:tap0@/run/netns/$GUEST
# Nothing is routed anywhere else, so no test packet can leave the machine.
# Exit status 77 means "skipped" to ctest.
set -euo pipefail

: "${MOAT:?MOAT must point at the moat binary}"
: "${MOAT_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

E2E_NAME=$(basename "$0" .sh)
P=${E2E_PREFIX:-mt$$}
SRV=$P-srv HOST=$P-host GUEST=$P-guest
SRV_IP=203.0.113.10 PRIV_IP=10.88.0.10
WORK=$(mktemp -d /tmp/moat-e2e.XXXXXX)
# moat's supervisor runs as nobody after set-up and rewrites --metrics-file
# (PATH.tmp renamed over PATH) in this directory.
chmod 777 "$WORK"
MOAT_PID=
BG_PIDS=()

skip() { echo "SKIP $E2E_NAME: $*"; exit 77; }
fail() { echo "FAIL $E2E_NAME: $*" >&2; [ -f "$WORK/moat.log" ] && tail -n 30 "$WORK/moat.log" >&2; exit 1; }
pass() { echo "PASS $E2E_NAME: $*"; }
need() { for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "needs $t"; done; }

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
need ip

cleanup() {
	local rc=$?
	[ -n "$MOAT_PID" ] && kill "$MOAT_PID" 2>/dev/null && wait "$MOAT_PID" 2>/dev/null
	# A background shell function runs in a subshell: end its children too.
	for p in "${BG_PIDS[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$GUEST" 2>/dev/null || true
	ip netns del "$HOST" 2>/dev/null || true
	ip netns del "$SRV" 2>/dev/null || true
	rm -rf "/etc/netns/$SRV" "/etc/netns/$HOST" "/etc/netns/$GUEST"
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
	return $rc
}
trap cleanup EXIT

# topo_up: the server and host namespaces of topology.sh, under our prefix.
# Each namespace gets its own resolv.conf (`ip netns exec` bind-mounts
# /etc/netns/NS/resolv.conf): the machine's resolver is unreachable from
# them, and a server doing a reverse lookup at start (python3 -m http.server
# does) would hang for its timeout. $SRV asks 127.0.0.1 (fails at once);
# $HOST, whose resolv.conf moat reads at start for its upstreams, asks
# 203.0.113.10, where a DNS test can run dnsmasq.
topo_up() {
	mkdir -p "/etc/netns/$SRV" "/etc/netns/$HOST"
	echo "nameserver 127.0.0.1" >"/etc/netns/$SRV/resolv.conf"
	echo "nameserver $SRV_IP" >"/etc/netns/$HOST/resolv.conf"
	ip netns add "$SRV"
	ip netns add "$HOST"
	ip -n "$SRV" link set lo up
	ip -n "$HOST" link set lo up
	ip link add mh0 netns "$HOST" type veth peer name ms0 netns "$SRV"
	ip -n "$HOST" addr add 10.77.0.1/24 dev mh0
	ip -n "$SRV" addr add 10.77.0.254/24 dev ms0
	ip -n "$HOST" link set mh0 up
	ip -n "$SRV" link set ms0 up
	ip -n "$HOST" route add default via 10.77.0.254 dev mh0
	ip -n "$SRV" addr add $SRV_IP/32 dev lo
	ip -n "$SRV" addr add $PRIV_IP/32 dev lo
	ip -n "$SRV" route add default via 10.77.0.1 dev ms0
}

# guest_up [MTU] [static]: a guest namespace with tap0; "static" configures
# 10.0.2.15/24 via 10.0.2.2 by hand (otherwise the test runs a DHCP client).
guest_up() {
	local mtu=${1:-1500}
	mkdir -p "/etc/netns/$GUEST"
	echo "nameserver 10.0.2.3" >"/etc/netns/$GUEST/resolv.conf"
	ip netns add "$GUEST"
	ip -n "$GUEST" link set lo up
	ip -n "$GUEST" tuntap add dev tap0 mode tap
	ip -n "$GUEST" link set tap0 mtu "$mtu" up
	if [ "${2:-}" = static ]; then
		ip -n "$GUEST" addr add 10.0.2.15/24 dev tap0
		ip -n "$GUEST" route add default via 10.0.2.2
	fi
}

in_guest() { ip netns exec "$GUEST" "$@"; }
in_srv() { ip netns exec "$SRV" "$@"; }
in_host() { ip netns exec "$HOST" "$@"; }

# moat_start ARGS...: start moat in $HOST attached to the guest's tap0 and
# wait until it says it is ready (--ready-fd). Output goes to $WORK/moat.log.
moat_start() {
	rm -f "$WORK/ready"
	mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "tap:tap0@/run/netns/$GUEST" --ready-fd 9 "$@" \
		9>"$WORK/ready" >"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	local line
	if ! read -r -t 20 line <"$WORK/ready"; then
		fail "moat did not become ready"
	fi
}

# moat_stop: SIGTERM and wait; the exit status is left in MOAT_RC.
# (Call it directly, not as $(moat_stop): a subshell cannot wait for moat.)
moat_stop() {
	MOAT_RC=0
	kill -TERM "$MOAT_PID" 2>/dev/null || true
	wait "$MOAT_PID" || MOAT_RC=$?
	MOAT_PID=
}

# bg CMD...: run a helper process (a server) in the background; killed at exit.
bg() { "$@" & BG_PIDS+=($!); }

# wait_for SECONDS CMD...: retry CMD until it succeeds or time runs out.
wait_for() {
	local t=$1; shift
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}

# listening NS tcp|udp PORT: something in namespace NS has PORT bound (a TCP
# listener, or a UDP socket). Checked with ss, so nothing is connected to it.
listening() {
	local opt=-ltn
	[ "$2" = udp ] && opt=-lun
	ip netns exec "$1" ss -H "$opt" "sport = :$3" | grep -q .
}

# proc_status PID FIELD: a field of /proc/PID/status
proc_status() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# moat_children: pids of moat-netstack and moat-proxy under $MOAT_PID
child_pid() { pgrep -P "$MOAT_PID" -x "$1" | head -n1; }

# moat_child NAME: the pid of moat's child NAME, waiting up to 5 s for it
moat_child() {
	local pid=
	for _ in $(seq 50); do
		pid=$(child_pid "$1" || true)
		[ -n "$pid" ] && break
		sleep 0.1
	done
	[ -n "$pid" ] || fail "no $1 process under moat ($MOAT_PID)"
	echo "$pid"
}

# gone PID: true once /proc/PID no longer exists or is a zombie
gone() {
	[ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}
