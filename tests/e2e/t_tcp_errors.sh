#!/bin/bash
# t_tcp_errors.sh — how TCP connections fail and end through moat (issue 5).
#
# With the guest's kernel as the client:
#  - a connect to a closed port in $SRV fails with ECONNREFUSED (the proxy
#    connects before the guest's SYN is accepted, so the guest sees the RST);
#  - a connect to an address that never answers (a blackhole route in $SRV)
#    fails with EHOSTUNREACH or ETIMEDOUT from moat after --connect-timeout,
#    well before the client's own 30 s timeout;
#  - half-close: the client shuts its write side, the server answers only
#    after EOF and the client reads every byte;
#  - a server RST gives the client ECONNRESET; a client RST gives the server
#    ECONNRESET;
#  - 10.0.2.2:PORT reaches a server on 127.0.0.1:PORT in $HOST when the
#    policy allows the host group.
source "$(dirname "$0")/lib.sh"
need curl python3

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"

topo_up
guest_up 1500 static
ip -n "$SRV" route add blackhole 198.51.100.0/24
echo "from-the-host" >"$WORK/host.txt"
bg ip netns exec "$SRV" $PY halfclose 203.0.113.10 9001
bg ip netns exec "$SRV" $PY rst 203.0.113.10 9002
bg ip netns exec "$SRV" $PY watchrst 203.0.113.10 9003 "$WORK/rst.txt"
bg ip netns exec "$HOST" $PY http 127.0.0.1 7000 "$WORK"
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/9001 && echo >/dev/tcp/203.0.113.10/9002" ||
	fail "servers did not start"
wait_for 10 in_host bash -c "echo >/dev/tcp/127.0.0.1/7000" || fail "host server did not start"
rm -f "$WORK/rst.txt"
cat >"$WORK/policy.json" <<'P'
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [
    { "direction": "egress", "destination": { "group": "public" }, "action": "allow" },
    { "direction": "egress", "destination": { "group": "host" }, "protocols": ["tcp"],
      "ports": [{ "start": 7000, "end": 7000 }], "action": "allow" } ] }
P
moat_start --policy "$WORK/policy.json" --connect-timeout 2000

r=$(in_guest $CLIENT connect 203.0.113.10 9 30)
[ "$r" = ECONNREFUSED ] || fail "closed port: $r, want ECONNREFUSED"
echo "closed port: ECONNREFUSED"

t0=$(date +%s%N)
r=$(in_guest $CLIENT connect 198.51.100.7 80 30)
ms=$((($(date +%s%N) - t0) / 1000000))
case "$r" in
EHOSTUNREACH | ETIMEDOUT) ;;
*) fail "silent address: $r after $ms ms, want EHOSTUNREACH or ETIMEDOUT from moat" ;;
esac
echo "silent address: $r after $ms ms (--connect-timeout 2000, client timeout 30000)"

r=$(in_guest $CLIENT halfclose 203.0.113.10 9001)
[ "$r" = "got 1000 100009" ] || fail "half-close: '$r', want 'got 1000 100009'"
echo "half-close: server saw EOF after 1000 bytes, client read all 100009"

r=$(in_guest $CLIENT readrst 203.0.113.10 9002)
[ "$r" = reset ] || fail "server RST: client saw '$r', want reset"
echo "server RST: client ECONNRESET"

r=$(in_guest $CLIENT clientrst 203.0.113.10 9003)
wait_for 5 test -s "$WORK/rst.txt" || fail "the server saw nothing of the client's RST"
[ "$(cat "$WORK/rst.txt")" = reset ] || fail "client RST: server saw '$(cat "$WORK/rst.txt")', want reset"
echo "client RST: server ECONNRESET"

r=$(in_guest curl -sS -m 10 http://10.0.2.2:7000/host.txt)
[ "$r" = from-the-host ] || fail "10.0.2.2:7000 gave '$r'"
r=$(in_guest $CLIENT connect 10.0.2.2 7001 10)
[ "$r" = ECONNREFUSED ] || fail "10.0.2.2:7001 (denied by the policy): $r, want ECONNREFUSED"
echo "10.0.2.2:7000 reaches 127.0.0.1:7000 in the host namespace; 7001 is denied"
pass "refused, unreachable, half-close, resets both ways, host access"
