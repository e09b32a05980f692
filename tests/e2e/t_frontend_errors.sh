#!/bin/bash
# A --guest that cannot be opened stops moat before anything starts: exit
# status 2 and one line that says what to fix.
source "$(dirname "$0")/lib.sh"

ip netns add "$HOST"
ip netns add "$GUEST"
ip -n "$GUEST" tuntap add dev tap0 mode tap

# expect_usage NEEDLE SPEC: moat run --guest SPEC exits 2 with NEEDLE.
expect_usage() {
	local needle=$1 spec=$2 rc=0 out
	out=$(ip netns exec "$HOST" "$MOAT" run --guest "$spec" 7</dev/null 2>&1 >/dev/null) || rc=$?
	[ $rc -eq 2 ] || fail "--guest $spec: exit status $rc, want 2 ($out)"
	[ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "--guest $spec: not one line: $out"
	printf '%s\n' "$out" | grep -qF -- "$needle" || fail "--guest $spec: '$out' lacks '$needle'"
	echo "ok: $spec -> $out"
}

expect_usage "tap nosuch0 does not exist in /run/netns/$GUEST" "tap:nosuch0@/run/netns/$GUEST"
expect_usage "network namespace /run/netns/$P-nosuch does not exist" "tap:tap0@/run/netns/$P-nosuch"
expect_usage "directory $WORK/nodir does not exist" "stream:$WORK/nodir/g.sock"
expect_usage "directory $WORK/nodir does not exist" "dgram:$WORK/nodir/g.sock"
expect_usage "directory $WORK/nodir does not exist" "shm:$WORK/nodir/g.sock"
expect_usage "descriptor 55 is not open" "stream-fd:55"
expect_usage "descriptor 7 is not a socket" "dgram-fd:7"
expect_usage "directory $WORK/nodir does not exist" "vhost-user:$WORK/nodir/g.sock"
expect_usage "unknown frontend" "vsock:/x"
# moat-vhost moves the frames: the supervisor has none to record.
rc=0
out=$(ip netns exec "$HOST" "$MOAT" run --guest "vhost-user:$WORK/v.sock" --pcap "$WORK/p.pcap" 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q -- "--pcap is not available with --guest vhost-user:" <<<"$out" ||
	fail "--pcap with vhost-user: exit $rc: $out"
[ ! -e "$WORK/v.sock" ] || fail "a refused vhost-user start left its socket"
touch "$WORK/file"
expect_usage "exists and is not a socket" "stream:$WORK/file"

# tap0 is fine: moat gets past the guest port (and is stopped right away).
moat_start_tap() {
	rm -f "$WORK/ready"; mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "tap:tap0@/run/netns/$GUEST" --ready-fd 9 \
		9>"$WORK/ready" >"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	read -r -t 20 _ <"$WORK/ready" || fail "moat with a good tap did not become ready"
}
moat_start_tap
# A second moat on the same tap: it is busy.
expect_usage "tap tap0 in /run/netns/$GUEST is already attached to another process" \
	"tap:tap0@/run/netns/$GUEST"
rc=0
kill -TERM "$MOAT_PID"
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ $rc -eq 0 ] || fail "moat exited with $rc on SIGTERM"
pass "bad --guest specs exit 2 with one line each"
