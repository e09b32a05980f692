#!/bin/bash
# t_policy_limits.sh — the policy's "limits" in the proxy (issue 6).
#
# Three runs of moat, each with one limit:
#  1. new_connections_per_second 2, on_exceed refuse: of 20 connects in a
#     row some are refused (ECONNREFUSED, a "limit" event each, counted as
#     result "limit"); after a second new connections work again;
#     (max_tcp_connections is checked by test_proxy_relay: the supervisor
#     also sizes the netstack's table with it, which refuses first);
#  2. ingress_bytes_per_second 4 MiB/s, refuse (shaping): an 8 MiB download
#     arrives intact and takes at least ~1 s (bucket of one second's worth;
#     noise can only make it slower, so the bound is safe);
#  3. max_udp_flows 2, on_exceed terminate: a third UDP flow kills the VM
#     (--vm-pid) and moat exits 3.
source "$(dirname "$0")/lib.sh"
need curl python3 sha256sum

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }
policy() {
	cat >"$WORK/policy.json" <<P
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [ { "direction": "egress", "destination": { "group": "public" }, "action": "allow" } ],
  "limits": { $1 } }
P
}
stop() { kill -TERM "$MOAT_PID"; wait "$MOAT_PID" || true; MOAT_PID=; }

topo_up
guest_up 1500 static
head -c 8388608 /dev/urandom >"$WORK/8m"
want=$(sha256sum <"$WORK/8m" | cut -d' ' -f1)
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
bg ip netns exec "$SRV" $PY sink 203.0.113.10 9000
bg ip netns exec "$SRV" $PY udpecho 203.0.113.10 7000
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080 && echo >/dev/tcp/203.0.113.10/9000" ||
	fail "servers did not start"

# 1. Connection rate.
policy '"new_connections_per_second": { "limit": 2, "on_exceed": "refuse" }'
moat_start --policy "$WORK/policy.json" --events "$WORK/events.jsonl" --metrics "unix:$WORK/metrics.sock"
ok=$(in_guest $CLIENT burst 203.0.113.10 8080 20)
[ "$ok" -ge 2 ] && [ "$ok" -lt 20 ] || fail "20 connects at 2/s: $ok worked"
wait_for 5 grep -q '"event":"limit".*"limit":"new_connections_per_second".*"action":"refuse"' \
	"$WORK/events.jsonl" || fail "no limit event: $(cat "$WORK/events.jsonl")"
[ "$(metric 'moat_tcp_connections_total{result="limit"}')" = $((20 - ok)) ] || fail "limit results not counted"
sleep 1.2
[ "$(in_guest $CLIENT connect 203.0.113.10 8080 10)" = ok ] || fail "no connection after the bucket refilled"
echo "new_connections_per_second 2: $ok of 20 quick connects worked, the rest refused with events"
stop

# 2. Ingress shaping.
policy '"ingress_bytes_per_second": { "limit": 4194304, "on_exceed": "refuse" }'
moat_start --policy "$WORK/policy.json" --metrics "unix:$WORK/metrics.sock"
t0=$(date +%s%N)
got=$(in_guest curl -sS --max-time 60 http://203.0.113.10:8080/8m | sha256sum | cut -d' ' -f1)
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$got" = "$want" ] || fail "shaped download: sha256 $got, want $want"
[ "$ms" -ge 800 ] || fail "8 MiB at 4 MiB/s (4 MiB burst) took only $ms ms: not shaped"
echo "ingress 4 MiB/s: 8 MiB intact in $ms ms"
stop

# 3. A terminate limit.
sleep 1000 &
VM=$!
disown "$VM"
BG_PIDS+=($VM)
policy '"max_udp_flows": { "limit": 2, "on_exceed": "terminate" }'
moat_start --policy "$WORK/policy.json" --vm-pid "$VM" --events "$WORK/events3.jsonl"
in_guest timeout 10 $CLIENT udp 203.0.113.10 7000 3 >/dev/null 2>&1 || true
rc=0
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ "$rc" = 3 ] || fail "moat exited with $rc, want 3"
wait_for 5 bash -c "! kill -0 $VM 2>/dev/null" || fail "the VM is still alive"
grep -q '"event":"violation".*"limit"' "$WORK/events3.jsonl" || fail "no limit violation event: $(cat "$WORK/events3.jsonl")"
echo "max_udp_flows 2 terminate: the third flow killed the VM, exit 3"
pass "refuse, shape, terminate"
