#!/bin/bash
# t_policy_enforce.sh — the proxy enforces the policy (issue 6).
#
#  - allowed connects work; a denied one fails at once with ECONNREFUSED and
#    shows up in the events (--events) and the counters;
#  - SIGHUP with a new policy file changes the decision for new connections
#    and resets a held connection the new policy denies;
#    a broken file on SIGHUP changes nothing;
#  - a connect to 169.254.169.254:80 (a "terminate" rule) kills the process
#    given by --vm-pid (a `sleep 1000` standing in for the VM), runs
#    --on-violation with MOAT_VIOLATION_* set, and moat exits 3. The time
#    from the guest's connect() to the kill is measured and printed (the
#    violation event's timestamp minus the client's clock right before its
#    connect(); both namespaces share the clock).
source "$(dirname "$0")/lib.sh"
need curl python3

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }
policy() { # policy DENIED_PORT [broken]
	cat >"$WORK/policy.json" <<P
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [
    { "direction": "egress", "destination": { "cidr": "203.0.113.10/32" },
      "protocols": ["tcp"], "ports": [{ "start": $1, "end": $1 }], "action": "deny" },
    { "direction": "egress", "destination": { "group": "metadata" }, "action": "deny",
      "terminate": true },
    { "direction": "egress", "destination": { "group": "public" }, "action": "allow" } ]${2:+,}
}
P
}
conn() { in_guest $CLIENT connect 203.0.113.10 "$1" 10; }

topo_up
guest_up 1500 static
echo ok >"$WORK/ok.txt"
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
bg ip netns exec "$SRV" $PY http 203.0.113.10 8081 "$WORK"
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080 && echo >/dev/tcp/203.0.113.10/8081" ||
	fail "servers did not start"
sleep 1000 &
VM=$!
disown "$VM"
BG_PIDS+=($VM)
cat >"$WORK/hook.sh" <<'H'
#!/bin/sh
env | grep '^MOAT_VIOLATION_' | sort >"$(dirname "$0")/hook.env"
H
chmod +x "$WORK/hook.sh"
policy 8081
moat_start --policy "$WORK/policy.json" --events "$WORK/events.jsonl" --vm-pid "$VM" \
	--on-violation "$WORK/hook.sh" --metrics "unix:$WORK/metrics.sock"

# Allowed and denied.
[ "$(in_guest curl -sS -m 10 http://203.0.113.10:8080/ok.txt)" = ok ] || fail "allowed 8080 failed"
r=$(conn 8081)
[ "$r" = ECONNREFUSED ] || fail "denied 8081: $r, want ECONNREFUSED"
wait_for 5 grep -q '"event":"denial".*"dst_port":8081' "$WORK/events.jsonl" ||
	fail "no denial event: $(cat "$WORK/events.jsonl")"
grep '"event":"denial"' "$WORK/events.jsonl" | grep -q '"rule":0' || fail "denial event without rule 0"
[ "$(metric 'moat_policy_denials_total{direction="egress",protocol="tcp"}')" = 1 ] ||
	fail "denial counter is $(metric 'moat_policy_denials_total{direction="egress",protocol="tcp"}')"
[ "$(metric 'moat_tcp_connections_total{result="denied"}')" = 1 ] || fail "denied connections counter"
echo "8080 allowed, 8081 denied: ECONNREFUSED, event and counters"

# Reload: the decision flips for new connections, and a held connection the new
# policy denies is reset (issue 13: reload cuts off).
in_guest python3 -c '
import socket, sys, time
s = socket.create_connection(("203.0.113.10", 8080), timeout=10)
open(sys.argv[1], "w").write("up")
s.settimeout(20)
try:
    r = "data" if s.recv(1) else "eof"
except ConnectionResetError:
    r = "reset"
except socket.timeout:
    r = "timeout"
open(sys.argv[2], "w").write("%s %.6f\n" % (r, time.time()))
' "$WORK/held.up" "$WORK/held.out" &
HELD=$!
wait_for 10 test -s "$WORK/held.up" || fail "the held connection did not open"
policy 8080
t0=$(date +%s.%N)
kill -HUP "$MOAT_PID"
wait_for 5 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_policy_generation\" {print \$2}')\" = 2 ]" || fail "the proxy did not take generation 2"
wait_for 5 test -s "$WORK/held.out" || fail "the held connection was not cut by the reload"
wait "$HELD" 2>/dev/null
read -r how t1 <"$WORK/held.out"
[ "$how" = reset ] || fail "the held connection ended with '$how', want reset"
grep -q '"event":"denial".*"dst_port":8080.*"reason":"policy_reload"' "$WORK/events.jsonl" ||
	fail "no policy_reload denial event: $(grep denial "$WORK/events.jsonl")"
[ "$(metric moat_policy_reload_cuts_total)" = 1 ] || fail "reload cuts: $(metric moat_policy_reload_cuts_total)"
echo "reload: the held connection to 8080 was reset $(python3 -c "print(round(($t1 - $t0) * 1000))") ms after SIGHUP"
[ "$(conn 8080)" = ECONNREFUSED ] || fail "after reload 8080 should be denied"
[ "$(conn 8081)" = ok ] || fail "after reload 8081 should be allowed"
echo "SIGHUP: 8080 now denied, 8081 allowed"

# A broken file changes nothing.
policy 8081 broken
kill -HUP "$MOAT_PID"
wait_for 5 grep -q '"event":"policy_reload".*"ok":false' "$WORK/events.jsonl" ||
	fail "no failed reload event: $(cat "$WORK/events.jsonl")"
[ "$(metric moat_policy_generation)" = 2 ] || fail "a broken file changed the generation"
[ "$(conn 8080)" = ECONNREFUSED ] || fail "after a broken reload 8080 should still be denied"
[ "$(conn 8081)" = ok ] || fail "after a broken reload 8081 should still be allowed"
echo "SIGHUP with a broken file: nothing changed"

# Terminate: the VM dies, moat exits 3.
in_guest timeout 5 bash -c 'echo $EPOCHREALTIME >'"$WORK/t0"'; exec 3<>/dev/tcp/169.254.169.254/80' \
	>/dev/null 2>&1 &
rc=0
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ "$rc" = 3 ] || fail "moat exited with $rc, want 3"
wait_for 5 bash -c "! kill -0 $VM 2>/dev/null" || fail "the VM (pid $VM) is still alive"
grep -q '"event":"violation"' "$WORK/events.jsonl" || fail "no violation event"
[ -s "$WORK/hook.env" ] || fail "--on-violation did not run"
grep -qx 'MOAT_VIOLATION_REASON=policy_terminate' "$WORK/hook.env" || fail "hook: $(cat "$WORK/hook.env")"
grep -qx 'MOAT_VIOLATION_RULE=1' "$WORK/hook.env" || fail "hook rule: $(cat "$WORK/hook.env")"
grep -qx 'MOAT_VIOLATION_DESTINATION=169.254.169.254:80' "$WORK/hook.env" ||
	fail "hook destination: $(cat "$WORK/hook.env")"
ts=$(grep '"event":"violation"' "$WORK/events.jsonl" | head -n1 |
	python3 -c 'import json,sys,datetime; e=json.load(sys.stdin); print(datetime.datetime.fromisoformat(e["ts"].replace("Z","+00:00")).timestamp())')
ms=$(python3 -c "print(round(($ts - $(cat "$WORK/t0")) * 1000, 2))")
echo "terminate: VM killed, hook ran, exit 3; connect() -> violation event $ms ms (includes the guest's SYN, netstack, proxy, supervisor)"
pass "allow, deny with events and counters, reload, broken reload, terminate"
