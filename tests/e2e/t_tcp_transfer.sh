#!/bin/bash
# t_tcp_transfer.sh — bulk TCP through moat (issue 5).
#
# The guest (kernel TCP over tap0, MTU 1500) downloads a 100 MiB file from an
# HTTP server in $SRV with curl and gets the right sha256; uploads 100 MiB
# with nc to a server that hashes what it receives and gets the same sha256
# back; and makes 200 concurrent short HTTP requests that must all answer
# 200. Afterwards no TCP connection is left open in the proxy.
source "$(dirname "$0")/lib.sh"
need curl nc python3 sha256sum

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }

topo_up
guest_up 1500 static
head -c 104857600 /dev/urandom >"$WORK/big"
echo small >"$WORK/small"
want=$(sha256sum <"$WORK/big" | cut -d' ' -f1)
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
bg ip netns exec "$SRV" $PY sink 203.0.113.10 9000
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080 && echo >/dev/tcp/203.0.113.10/9000" ||
	fail "servers did not start"
moat_start --metrics "unix:$WORK/metrics.sock"

# Download.
got=$(in_guest curl -sS --max-time 300 http://203.0.113.10:8080/big | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "download: sha256 $got, want $want"
echo "download: 100 MiB, sha256 ok"

# Upload.
reply=$(in_guest timeout 300 nc -N 203.0.113.10 9000 <"$WORK/big")
[ "$reply" = "104857600 $want" ] || fail "upload: server got '$reply', want '104857600 $want'"
echo "upload: 100 MiB, sha256 ok"

# 200 concurrent short requests.
n=$(in_guest timeout 120 $CLIENT parallel 203.0.113.10 8080 /small 200)
[ "$n" = 200 ] || fail "parallel: $n of 200 requests succeeded"
echo "parallel: 200 of 200 requests succeeded"

ok=$(metric 'moat_tcp_connections_total{result="ok"}')
[ "${ok:-0}" -ge 202 ] || fail "counter moat_tcp_connections_total{result=ok} is '$ok', want >= 202"
wait_for 20 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_tcp_connections_active\" {print \$2}')\" = 0 ]" ||
	fail "connections still active: $(metric moat_tcp_connections_active)"
up=$(metric moat_upstream_tx_bytes_total)
[ "${up:-0}" -ge 104857600 ] || fail "upstream_tx_bytes is $up"
pass "100 MiB down and up intact, 200 parallel requests"
