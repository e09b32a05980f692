#!/bin/bash
# t_stop_resets — SIGTERM stops moat cleanly (exit 0) and resets the guest's
# open connections, so they fail at once instead of hanging until a timeout;
# the final counters are in the metrics file (moat_up 0).
source "$(dirname "$0")/lib.sh"
need python3
topo_up
guest_up 1500 static
# A server that accepts and then says nothing: the connection stays open.
bg in_srv python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 7777)); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
'
wait_for 10 in_srv python3 -c 'import socket; socket.create_connection(("203.0.113.10", 7777), 1)' ||
	fail "server did not start"
moat_start --metrics-file "$WORK/metrics.prom" ${MOAT_ARGS:-}
# The guest's client waits for data that never comes; it prints how its read ended.
in_guest python3 -c '
import socket, sys
c = socket.create_connection(("203.0.113.10", 7777), 5)
c.settimeout(20)
print("connected", flush=True)
try:
    d = c.recv(1)
    print("eof" if not d else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
except socket.timeout:
    print("timeout", flush=True)
' >"$WORK/client.out" 2>&1 &
client=$!
wait_for 10 grep -q connected "$WORK/client.out" || fail "guest could not connect: $(cat "$WORK/client.out")"
moat_stop
[ "$MOAT_RC" -eq 0 ] || fail "moat exited $MOAT_RC on SIGTERM, want 0"
wait $client || true
out=$(tail -n1 "$WORK/client.out")
[ "$out" = reset ] || fail "guest connection ended with '$out', want reset"
grep -q '^moat_up 0' "$WORK/metrics.prom" || fail "final metrics file does not say moat_up 0"
grep -q '^moat_tcp_connections_total{result="ok"} 1' "$WORK/metrics.prom" ||
	fail "final metrics file lacks the connection: $(grep tcp_connections "$WORK/metrics.prom")"
pass "SIGTERM: exit 0, the guest's open connection was reset, final counters written"
