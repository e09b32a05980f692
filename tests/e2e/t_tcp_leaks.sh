#!/bin/bash
# t_tcp_leaks.sh — 10,000 short connections leave nothing behind (issue 5).
#
# ab makes 10,000 HTTP/1.0 requests (a new connection each, 20 at a time)
# from the guest to a server in $SRV. All must succeed. Then, once idle:
# the proxy has as many descriptors open as before the run, no TCP
# connection open (moat_tcp_connections_active 0), and the netstack no
# flow (moat_netstack_tcp_flows_active 0) and no more lwIP pbufs than at
# start; every connection was counted ok.
source "$(dirname "$0")/lib.sh"
need ab curl python3

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
N=10000
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }
proxy_fds() { ls "/proc/$(child_pid moat-proxy)/fd" | wc -l; }

topo_up
guest_up 1500 static
echo small >"$WORK/small"
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080" || fail "server did not start"
moat_start --metrics "unix:$WORK/metrics.sock"

# One request first so that every lazily made resource exists.
in_guest curl -sS -m 10 -o /dev/null http://203.0.113.10:8080/small || fail "first request failed"
sleep 1
fds0=$(proxy_fds)
pbufs0=$(metric moat_netstack_pbufs_in_use)
echo "idle before: proxy fds=$fds0 pbufs=$pbufs0"

in_guest ab -q -n $N -c 20 -s 30 http://203.0.113.10:8080/small >"$WORK/ab.txt" 2>&1 ||
	{ cat "$WORK/ab.txt"; fail "ab failed"; }
complete=$(awk '/^Complete requests:/ {print $3}' "$WORK/ab.txt")
failed=$(awk '/^Failed requests:/ {print $3}' "$WORK/ab.txt")
rps=$(awk '/^Requests per second:/ {print $4}' "$WORK/ab.txt")
[ "$complete" = $N ] && [ "$failed" = 0 ] || { cat "$WORK/ab.txt"; fail "ab: $complete complete, $failed failed"; }
echo "ab: $N connections, 0 failed, $rps requests/s"

idle() {
	[ "$(metric moat_tcp_connections_active)" = 0 ] &&
		[ "$(metric moat_netstack_tcp_flows_active)" = 0 ] &&
		[ "$(proxy_fds)" -le "$fds0" ] &&
		[ "$(metric moat_netstack_pbufs_in_use)" -le "${pbufs0:-0}" ]
}
wait_for 60 idle || fail "not back at idle: proxy fds=$(proxy_fds) (was $fds0)" \
	"active=$(metric moat_tcp_connections_active)" \
	"netstack flows=$(metric moat_netstack_tcp_flows_active)" \
	"pbufs=$(metric moat_netstack_pbufs_in_use) (was $pbufs0)"
ok=$(metric 'moat_tcp_connections_total{result="ok"}')
[ "$ok" -ge $((N + 1)) ] || fail "moat_tcp_connections_total{result=ok} = $ok, want >= $((N + 1))"
echo "idle after: proxy fds=$(proxy_fds) pbufs=$(metric moat_netstack_pbufs_in_use) connections ok=$ok"
pass "$N short connections, nothing left behind"
