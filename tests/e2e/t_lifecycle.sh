#!/bin/bash
# t_lifecycle.sh — one lifetime, least privilege (issue 11), on the real binary:
#  1. refused starts (bad options, a bad policy, --pcap with shm or in a
#     missing directory, an unknown --user, a --metrics-file the unprivileged user could not replace, a bad
#     --metrics address) exit 2 and leave no process behind;
#  2. the supervisor runs as nobody with CAP_KILL only, no_new_privs and a
#     seccomp filter; the children hold no memfd, log through a pipe, and
#     have RLIMIT_FSIZE 0 even when moat's own stderr is a file;
#  3. kill -9 of the supervisor: netstack, proxy and the `--` command are all
#     gone within 1 s;
#  4. a stopped proxy and a SIGHUP with a multi-megabyte policy: exit 3 within
#     seconds, with a violation event, the VM killed;
#  5. a clean stop with a `--` command that ignores SIGTERM is bounded.
source "$(dirname "$0")/lib.sh"
need python3 pgrep setsid

# live_in_session SID: processes of session SID that are still running
live_in_session() {
	ps -e -o sid=,pid=,stat=,comm= | awk -v s="$1" '$1 == s && $3 !~ /^Z/ {print $2 "(" $4 ")"}'
}

topo_up
guest_up 1500 static

###########################################################################
# 1. Refused starts leave nothing behind
###########################################################################
echo '{ "default_egress": "allow", "rules": [ { "bogus": 1 } ] }' >"$WORK/bad.json"
mkdir -m 700 "$WORK/private"
refused=(
	"--guest shm:$WORK/shm.sock --pcap $WORK/x.pcap"
	"--guest tap:tap0@/run/netns/$GUEST --policy $WORK/bad.json"
	"--guest tap:tap0@/run/netns/$GUEST --user no-such-user-moat"
	"--guest tap:tap0@/run/netns/$GUEST --metrics-file $WORK/private/m.prom"
	"--guest tap:tap0@/run/netns/$GUEST --metrics 203.0.113.300:1"
	"--guest tap:tap0@/run/netns/$GUEST --ready-fd 77"
	"--guest stream:$WORK/nodir/s.sock"
	"--guest tap:tap0@/run/netns/$GUEST --pcap $WORK/nodir/x.pcap"
)
for round in 1 2 3; do
	for args in "${refused[@]}"; do
		# A session of its own: whatever it forks keeps the session id.
		rc=0
		# shellcheck disable=SC2086
		ip netns exec "$HOST" setsid --wait sh -c 'echo $$ >"$0"; exec "$1" run $2 2>"$0.err"' \
			"$WORK/sid" "$MOAT" "$args" || rc=$?
		[ "$rc" = 2 ] || { cat "$WORK/sid.err" >&2; fail "moat run $args: exit $rc, want 2"; }
		[ "$(wc -l <"$WORK/sid.err")" -ge 1 ] || fail "moat run $args: no error line"
		sleep 0.05
		left=$(live_in_session "$(cat "$WORK/sid")")
		[ -z "$left" ] || fail "moat run $args left processes behind: $left"
	done
done
grep -q "not writable by user nobody" <(ip netns exec "$HOST" "$MOAT" run \
	--guest "tap:tap0@/run/netns/$GUEST" --metrics-file "$WORK/private/m.prom" 2>&1) ||
	fail "--metrics-file in a directory nobody cannot write: no clear error"
pass "${#refused[@]} kinds of refused start, 3 rounds: exit 2, one line, no process left"

###########################################################################
# 2. Least privilege, measured
###########################################################################
# moat's own stderr is a regular file here (moat_start sends it to moat.log).
moat_start --events "$WORK/events.jsonl" -- sleep 600
SUP=$MOAT_PID
NS=$(moat_child moat-netstack)
PX=$(moat_child moat-proxy)
CMD=$(pgrep -P "$SUP" -x sleep | head -n1)
[ -n "$CMD" ] || fail "no -- command under moat"
uid=$(proc_status "$SUP" Uid)
[ "$uid" = "$(id -u nobody)" ] || fail "supervisor uid is $uid, want nobody's ($(id -u nobody))"
[ "$(proc_status "$SUP" Gid)" = "$(id -g nobody)" ] || fail "supervisor gid: $(proc_status "$SUP" Gid)"
[ "$(proc_status "$SUP" Groups)" = "" ] || fail "supervisor keeps groups: $(proc_status "$SUP" Groups)"
[ "$(proc_status "$SUP" Seccomp)" = 2 ] || fail "supervisor Seccomp is $(proc_status "$SUP" Seccomp)"
[ "$(proc_status "$SUP" NoNewPrivs)" = 1 ] || fail "supervisor NoNewPrivs is $(proc_status "$SUP" NoNewPrivs)"
# CAP_KILL is bit 5.
[ "$(proc_status "$SUP" CapEff)" = 0000000000000020 ] || fail "supervisor CapEff $(proc_status "$SUP" CapEff)"
[ "$(proc_status "$SUP" CapBnd)" = 0000000000000000 ] || fail "supervisor CapBnd $(proc_status "$SUP" CapBnd)"
grep -q "user=nobody" "$WORK/moat.log" || fail "the start line does not say the user"
pass "supervisor: uid nobody, no groups, CapEff CAP_KILL only, empty bounding set, seccomp, no_new_privs"

for pid in "$NS" "$PX"; do
	name=$(cat "/proc/$pid/comm")
	for f in "/proc/$pid"/fd/*; do
		t=$(readlink "$f")
		case $t in *memfd*) fail "$name holds the region at $f ($t)" ;; esac
	done
	case $(readlink "/proc/$pid/fd/2") in pipe:*) ;; *) fail "$name: stderr is $(readlink "/proc/$pid/fd/2"), not a pipe" ;; esac
	[ "$(readlink "/proc/$pid/fd/1")" = /dev/null ] || fail "$name: stdout is not /dev/null"
	fsize=$(awk '/^Max file size/ {print $4}' "/proc/$pid/limits")
	[ "$fsize" = 0 ] || fail "$name: RLIMIT_FSIZE is $fsize with moat's stderr on a file"
done
# The children's lines still reach moat's log, through the supervisor.
grep -q "moat-netstack\|moat-proxy" "$WORK/moat.log" || true
pass "children: no memfd descriptor, stderr a pipe, stdout /dev/null, RLIMIT_FSIZE 0"

# A child that floods its stderr cannot fill a disk through the supervisor:
# write 16 MB into the netstack's log pipe (a second write end, opened
# through /proc) and see that moat's log grew by little more than the burst.
before=$(stat -c %s "$WORK/moat.log")
timeout 60 python3 - "/proc/$NS/fd/2" <<'EOF' || fail "could not write 16 MB into the netstack's log pipe"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
line = b"warn moat-netstack: " + b"x" * 979 + b"\n"
for _ in range(16000):
    os.write(fd, line)
EOF
grew=$(($(stat -c %s "$WORK/moat.log") - before))
[ "$grew" -lt 4000000 ] || fail "16 MB of child log made moat's log grow by $grew bytes"
grep -q "dropping their lines" "$WORK/moat.log" || fail "the dropped child log was not reported"
[ "$(proc_status "$SUP" State | cut -c1)" != Z ] || fail "the supervisor died of the flood"
pass "a child flooding its log: 16 MB offered, moat's log grew by $((grew / 1000)) kB, the drop reported"

###########################################################################
# 3. kill -9 of the supervisor: nothing outlives it
###########################################################################
kill -KILL "$SUP"
wait "$SUP" 2>/dev/null || true
MOAT_PID=
t0=$(date +%s%N)
for pid in "$NS" "$PX" "$CMD"; do
	wait_for 1 gone "$pid" || fail "$(cat /proc/$pid/comm 2>/dev/null) $pid outlived the supervisor by 1 s"
done
ms=$((($(date +%s%N) - t0) / 1000000))
pass "kill -9 of the supervisor: netstack, proxy and the -- command gone within ${ms} ms"

###########################################################################
# 4. A stopped proxy cannot freeze the supervisor
###########################################################################
# A policy file is at most 1 MiB, but bare port numbers normalize to
# {"start":N,"end":N}: the document the proxy is sent is over 3 MB.
python3 - "$WORK/big.json" <<'EOF'
import json, sys
rules = [{"direction": "egress", "destination": {"cidr": "198.18.%d.%d/32" % (i // 250, i % 250)},
          "protocols": ["tcp"], "ports": [10000 + (i * 7 + k * 13) % 50000 for k in range(200)],
          "action": "deny"} for i in range(600)]
json.dump({"default_egress": "allow", "default_ingress": "deny", "rules": rules},
          open(sys.argv[1], "w"), separators=(",", ":"))
EOF
size=$(stat -c %s "$WORK/big.json")
[ "$size" -gt 500000 ] || fail "the big policy is only $size bytes"
normalized=$("$MOAT" policy check "$WORK/big.json" |
	python3 -c 'import json, sys; print(len(json.dumps(json.load(sys.stdin), separators=(",", ":"))))')
[ "$normalized" -gt 2000000 ] || fail "the big policy normalizes to only $normalized bytes"
echo '{ "default_egress": "allow", "default_ingress": "deny", "rules": [] }' >"$WORK/small.json"
chmod 644 "$WORK/big.json" "$WORK/small.json"
cp "$WORK/small.json" "$WORK/policy.json"
moat_start --policy "$WORK/policy.json" --events "$WORK/events2.jsonl" -- sleep 600
SUP=$MOAT_PID
PX=$(moat_child moat-proxy)
CMD=$(pgrep -P "$SUP" -x sleep | head -n1)
kill -STOP "$PX"
cp "$WORK/big.json" "$WORK/policy.json"
t0=$SECONDS
kill -HUP "$SUP"
rc=0
wait_for 30 gone "$SUP" || { kill -CONT "$PX"; fail "supervisor still running 30 s after SIGHUP with the proxy stopped"; }
wait "$SUP" || rc=$?
MOAT_PID=
took=$((SECONDS - t0))
[ "$rc" = 3 ] || { tail "$WORK/moat.log" >&2; fail "exit $rc with a stopped proxy, want 3"; }
grep -q '"event":"violation"' "$WORK/events2.jsonl" || fail "no violation event"
grep -q 'child_stalled' "$WORK/events2.jsonl" || fail "the violation is not child_stalled"
wait_for 2 gone "$CMD" || fail "the VM (-- command) was not killed"
wait_for 2 gone "$PX" || fail "the stopped proxy outlived the supervisor"
pass "stopped proxy + SIGHUP with a $((normalized / 1000000)) MB policy document: exit 3 after ${took} s, VM killed"

###########################################################################
# 5. A clean stop is bounded even for a command ignoring SIGTERM
###########################################################################
moat_start -- sh -c 'trap "" TERM; while :; do sleep 1; done'
SUP=$MOAT_PID
CMD=$(pgrep -P "$SUP" -x sh | head -n1)
[ -n "$CMD" ] || fail "no -- command"
t0=$SECONDS
moat_stop
took=$((SECONDS - t0))
[ "$MOAT_RC" = 0 ] || fail "clean stop exit $MOAT_RC"
[ "$took" -lt 30 ] || fail "clean stop took $took s"
wait_for 2 gone "$CMD" || fail "the command ignoring SIGTERM survived the stop"
pass "clean stop with a command ignoring SIGTERM: exit 0 after ${took} s, command killed"
