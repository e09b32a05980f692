#!/bin/bash
# t_dns.sh — the DNS forwarder at 10.0.2.3:53 (issue 7).
#
# dnsmasq in $SRV is the upstream (a test zone from --host-record), named in
# the policy's dns.nameservers. From the guest, with dig:
#  - an allowed name is answered over UDP and over TCP;
#  - a denied name gets NXDOMAIN and never reaches dnsmasq (its query log),
#    and a dns_denial event is written;
#  - rebind protection: a name resolving to a private address gets NXDOMAIN,
#    unless an address rule allows that address;
#  - a big answer comes back truncated (TC) over UDP and dig's TCP retry
#    gets all of it through the forwarder's TCP path;
#  - failover: with a dead first nameserver (blackholed) the second answers;
#  - a domain_suffix rule allows a connection only once the name was
#    resolved through the forwarder (the address is pinned);
#  - a malformed query gets FORMERR and the forwarder keeps working;
#  - DNS interception (issue 13): queries to any other resolver (dnsmasq's
#    own address, or an address where nothing listens) are taken by the
#    forwarder and decided the same way: a denied name gets NXDOMAIN from the
#    address asked and never reaches dnsmasq, an allowed one is answered and
#    pinned; over UDP and TCP;
#  - host names on connections (issue 13): to the pinned address, TLS with
#    the SNI of the allowed name works and with another SNI is reset, the
#    same for an HTTP Host header; a server-first banner reaches the guest
#    before it sends anything (the proxy holds only the guest's bytes).
source "$(dirname "$0")/lib.sh"
need dig dnsmasq curl python3 openssl

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }
DIG="dig @10.0.2.3 +time=5 +tries=1"
policy() { # policy NAMESERVERS_JSON
	cat >"$WORK/policy.json" <<P
{ "default_egress": "deny", "default_ingress": "allow",
  "dns": { "nameservers": $1, "timeout_ms": 1000 },
  "rules": [
    { "direction": "egress", "destination": { "domain": "blocked.test" }, "action": "deny" },
    { "direction": "egress", "destination": { "domain_suffix": "pinned.test" },
      "protocols": ["tcp"], "action": "allow" },
    { "direction": "egress", "destination": { "cidr": "10.88.0.11/32" }, "action": "allow" },
    { "direction": "egress", "destination": { "group": "host" }, "protocols": ["udp", "tcp"],
      "ports": [{ "start": 53, "end": 53 }], "action": "allow" } ] }
P
}

topo_up
guest_up 1500 static
ip -n "$SRV" route add blackhole 198.51.100.0/24
many=()
for i in $(seq 1 40); do many+=(--host-record="many.test,203.0.113.$((100 + i))"); done
bg ip netns exec "$SRV" dnsmasq --no-daemon --no-resolv --no-hosts --user=root \
	--listen-address=203.0.113.10 --bind-interfaces --log-queries --log-facility=- \
	--host-record=public.test,203.0.113.10 --host-record=www.pinned.test,203.0.113.10 \
	--host-record=evil.test,10.88.0.10 --host-record=ok.test,10.88.0.11 \
	--host-record=blocked.test,203.0.113.10 --host-record=direct.test,203.0.113.10 \
	"${many[@]}" 2>"$WORK/dnsmasq.log"
echo hi >"$WORK/hi.txt"
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
wait_for 10 in_srv dig @203.0.113.10 +time=1 +tries=1 public.test || fail "dnsmasq did not start"
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080" || fail "http server did not start"
policy '["203.0.113.10"]'
moat_start --policy "$WORK/policy.json" --events "$WORK/events.jsonl" --metrics "unix:$WORK/metrics.sock"

r=$(in_guest $DIG +short public.test)
[ "$r" = 203.0.113.10 ] || fail "public.test over UDP: '$r'"
r=$(in_guest $DIG +tcp +short public.test)
[ "$r" = 203.0.113.10 ] || fail "public.test over TCP: '$r'"
echo "allowed name: answered over UDP and TCP"

in_guest $DIG blocked.test >"$WORK/dig.txt" || fail "dig blocked.test failed: $(cat "$WORK/dig.txt")"
grep -q 'status: NXDOMAIN' "$WORK/dig.txt" || fail "blocked.test: $(grep status "$WORK/dig.txt")"
in_guest $DIG +tcp blocked.test | grep -q 'status: NXDOMAIN' || fail "blocked.test over TCP not NXDOMAIN"
sleep 0.5
grep -q 'blocked.test' "$WORK/dnsmasq.log" && fail "the denied name reached dnsmasq"
grep -q 'public.test' "$WORK/dnsmasq.log" || fail "dnsmasq logs no queries at all (the check above is void)"
wait_for 5 grep -q '"event":"dns_denial".*"name":"blocked.test"' "$WORK/events.jsonl" ||
	fail "no dns_denial event"
echo "denied name: NXDOMAIN, never upstream, event written"

grep -q 'status: NXDOMAIN' <(in_guest $DIG evil.test) || fail "evil.test (10.88.0.10) was not blocked"
r=$(in_guest $DIG +short ok.test)
[ "$r" = 10.88.0.11 ] || fail "ok.test (allowed by a cidr rule): '$r'"
[ "$(metric 'moat_dns_queries_total{result="rebind"}')" -ge 1 ] || fail "rebind counter"
echo "rebind: private answer NXDOMAIN unless an address rule allows it"

in_guest dig @10.0.2.3 +time=5 +tries=1 +noedns many.test >"$WORK/many.txt" || fail "dig many.test failed"
grep -q 'Truncated, retrying in TCP mode' "$WORK/many.txt" || fail "no truncation: $(head -20 "$WORK/many.txt")"
n=$(grep -c '^many.test\..*IN.*A.*203.0.113' "$WORK/many.txt")
[ "$n" = 40 ] || fail "many.test over TCP: $n records, want 40"
echo "big answer: TC over UDP, all 40 records after the TCP retry"

# Pins: www.pinned.test's address is allowed only after it was resolved.
r=$(in_guest $CLIENT connect 203.0.113.10 8080 10)
[ "$r" = ECONNREFUSED ] || fail "connect before resolving: $r, want ECONNREFUSED (denied)"
[ "$(in_guest $DIG +short www.pinned.test)" = 203.0.113.10 ] || fail "www.pinned.test not resolved"
[ "$(in_guest curl -sS -m 10 http://203.0.113.10:8080/hi.txt)" = hi ] ||
	fail "connect after resolving a pinned.test name was not allowed"
[ "$(metric moat_dns_pinned_addresses)" -ge 1 ] || fail "no pinned addresses in the metrics"
echo "domain_suffix: denied before resolving, allowed after (pinned)"

# Host names on connections: the pin lets 203.0.113.10 in for *.pinned.test only.
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=www.pinned.test -days 1 \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"
bg ip netns exec "$SRV" $PY tls 203.0.113.10 8443 "$WORK/cert.pem" "$WORK/key.pem"
bg ip netns exec "$SRV" $PY banner 203.0.113.10 2222
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8443 && echo >/dev/tcp/203.0.113.10/2222" ||
	fail "tls/banner servers did not start"
tls_try() { # SNI -> "tls hello x" or the error's name
	in_guest python3 -c '
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    s = ctx.wrap_socket(socket.create_connection(("203.0.113.10", 8443), timeout=10), server_hostname=sys.argv[1])
    s.sendall(b"x"); print(s.recv(100).decode().strip())
except ConnectionResetError: print("reset")
except (OSError, ssl.SSLError) as e: print(type(e).__name__, e)
' "$1"
}
r=$(tls_try www.pinned.test)
[ "$r" = "tls hello x" ] || fail "TLS with SNI www.pinned.test: '$r'"
r=$(tls_try other.example)
[ "$r" = reset ] || fail "TLS with SNI other.example to the pinned address: '$r', want reset"
wait_for 5 grep -q '"reason":"sni_mismatch"' "$WORK/events.jsonl" || fail "no sni_mismatch denial event"
grep '"reason":"sni_mismatch"' "$WORK/events.jsonl" | grep -q '"name":"other.example"' || fail "the event does not name the SNI"
[ "$(in_guest curl -sS -m 10 -H 'Host: www.pinned.test' http://203.0.113.10:8080/hi.txt)" = hi ] ||
	fail "HTTP with Host www.pinned.test"
r=$(in_guest curl -sS -m 10 -H 'Host: other.example' http://203.0.113.10:8080/hi.txt 2>&1 || true)
case "$r" in *reset*) ;; *) fail "HTTP with Host other.example: '$r', want a reset" ;; esac
wait_for 5 grep -q '"reason":"host_mismatch"' "$WORK/events.jsonl" || fail "no host_mismatch denial event"
[ "$(metric moat_hostname_denials_total)" = 2 ] || fail "hostname denials: $(metric moat_hostname_denials_total)"
r=$(in_guest python3 -c '
import socket
s = socket.create_connection(("203.0.113.10", 2222), timeout=10)
print(s.recv(100).decode().strip())
')
[ "$r" = SSH-2.0-moat-test ] || fail "server-first banner: '$r'"
echo "host names: SNI and Host must match the pinned name; a server-first banner is not held"

# Malformed query: FORMERR, and the forwarder goes on.
in_guest python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc", ("10.0.2.3", 53))
r = s.recv(512)
assert r[:2] == b"\x12\x34" and r[3] & 15 == 1, r
' || fail "a malformed query did not get FORMERR"
[ "$(in_guest $DIG +short public.test)" = 203.0.113.10 ] || fail "the forwarder stopped after FORMERR"
echo "malformed query: FORMERR"

# Interception: the guest asks dnsmasq directly, and an address where no resolver is.
# The rules allow no flow to either (default deny; only the host group on 53).
for ns in 203.0.113.10 198.51.100.99; do
	for t in +notcp +tcp; do
		in_guest dig @$ns +time=5 +tries=1 $t blocked.test >"$WORK/dig.txt" ||
			fail "dig @$ns $t blocked.test failed: $(cat "$WORK/dig.txt")"
		grep -q 'status: NXDOMAIN' "$WORK/dig.txt" || fail "@$ns $t blocked.test: $(grep status "$WORK/dig.txt")"
		grep -q "SERVER: $ns#53" "$WORK/dig.txt" || fail "@$ns $t: the answer did not come from $ns"
		r=$(in_guest dig @$ns +time=5 +tries=1 $t +short direct.test)
		[ "$r" = 203.0.113.10 ] || fail "@$ns $t direct.test: '$r'"
	done
done
sleep 0.5
grep -q 'blocked.test' "$WORK/dnsmasq.log" && fail "a denied name asked of dnsmasq directly reached it"
[ "$(metric moat_dns_intercepted_total)" -ge 8 ] || fail "intercepted: $(metric moat_dns_intercepted_total)"
[ "$(metric moat_udp_flows_opened_total)" = 0 ] || fail "a UDP flow was opened for port 53"
echo "interception: any resolver, UDP and TCP: denied names NXDOMAIN from the address asked, allowed ones answered"

# Failover: the first nameserver is blackholed.
policy '["198.51.100.53", "203.0.113.10"]'
kill -HUP "$MOAT_PID"
wait_for 5 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_policy_generation\" {print \$2}')\" = 2 ]" || fail "reload not taken"
t0=$(date +%s%N)
r=$(in_guest $DIG +short public.test)
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$r" = 203.0.113.10 ] || fail "failover: '$r'"
echo "failover: answered by the second nameserver after $ms ms (timeout_ms 1000)"
pass "forward, deny, rebind, truncation + TCP, pins, FORMERR, interception, failover"
