#!/bin/bash
# t_api.sh — the control API (issue 16): `moat run --api PATH` and `moat ctl`.
#
# Every route, each success and each error: GET /status, GET /policy,
# POST /policy (a good policy is put in force with an event; bad JSON, a
# bad policy, deep nesting and a 2 MiB body are refused with 4xx and change
# nothing), unknown paths (404), other methods (405 with Allow), a client
# that never finishes its request (closed after the timeout while others
# are served), the socket's mode and owner, and `moat ctl` in both output
# forms with its exit statuses. moat keeps running and stops with 0.
source "$(dirname "$0")/lib.sh"
need curl python3

API=$WORK/api.sock
api() { curl -s --max-time 10 --unix-socket "$API" "$@"; }
code() { curl -s --max-time 10 -o "$WORK/body" -w '%{http_code}' --unix-socket "$API" "$@"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

topo_up
guest_up 1500 static
moat_start --api "$API" --events "$WORK/events.jsonl"

# The socket: 0600, the user moat runs as.
[ "$(stat -c '%a %U' "$API")" = "600 nobody" ] || fail "socket is $(stat -c '%a %U' "$API")"

# GET /status
s=$(api http://moat/status)
[ "$(jget '["guest"]["address"]' <<<"$s")" = 10.0.2.15 ] || fail "status: $s"
[ "$(jget '["pid"]' <<<"$s")" = "$MOAT_PID" ] || fail "status pid: $s (moat is $MOAT_PID)"
[ "$(jget '["policy_generation"]' <<<"$s")" = 1 ] || fail "status generation: $s"
in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null 2>&1 || true # a frame, so the MAC is known
mac=$(in_guest cat /sys/class/net/tap0/address)
[ "$(api http://moat/status | jget '["guest"]["mac"]')" = "$mac" ] ||
	fail "status guest mac: $(api http://moat/status), want $mac"
for k in netstack_pid proxy_pid uptime_s counts; do
	jget "[\"$k\"]" <<<"$s" >/dev/null || fail "status has no $k: $s"
done

# GET /policy
p=$(api http://moat/policy)
[ "$(jget '["generation"]' <<<"$p")" = 1 ] || fail "policy: $p"
[ "$(jget '["policy"]["default_egress"]' <<<"$p")" = deny ] || fail "policy: $p"

# GET /flows: a TCP connection held open and a UDP flow, as they are.
bg ip netns exec "$SRV" python3 "$MOAT_SRC/tests/e2e/proxy_servers.py" udpecho 203.0.113.10 7000
bg ip netns exec "$SRV" python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 8081)); s.listen(4)
c, _ = s.accept(); c.recv(100); c.send(b"pong" * 10); time.sleep(60)'
wait_for 10 listening "$SRV" tcp 8081 && wait_for 10 listening "$SRV" udp 7000 ||
	fail "the servers did not start"
bg in_guest python3 -c '
import socket, time
s = socket.create_connection(("203.0.113.10", 8081), timeout=10)
s.send(b"ping!"); s.recv(100)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"x" * 33, ("203.0.113.10", 7000)); u.recvfrom(100)
time.sleep(60)'
wait_for 10 bash -c "curl -s --unix-socket $API http://moat/flows | grep -q '\"dport\":7000'" ||
	fail "GET /flows: $(api http://moat/flows)"
f=$(api http://moat/flows)
python3 - "$f" <<'PY' || fail "GET /flows: $f"
import json, sys
flows = json.loads(sys.argv[1])
tcp = [x for x in flows if x["protocol"] == "tcp" and x["dport"] == 8081]
udp = [x for x in flows if x["protocol"] == "udp" and x["dport"] == 7000]
assert len(tcp) == 1 and len(udp) == 1, flows
t, u = tcp[0], udp[0]
assert t["src"] == "10.0.2.15" and t["dst"] == "203.0.113.10" and t["state"] == "open", t
assert t["direction"] == "egress" and t["tx_bytes"] == 5 and t["rx_bytes"] == 40, t
assert u["tx_bytes"] == 33 and u["rx_bytes"] == 33, u
for x in (t, u):
    assert set(x) >= {"protocol", "src", "sport", "dst", "dport", "state", "rule",
                      "tx_bytes", "rx_bytes", "age_s"}, x
PY
[ "$(api 'http://moat/flows?protocol=udp' | python3 -c 'import json,sys; print({x["protocol"] for x in json.load(sys.stdin)})')" = "{'udp'}" ] ||
	fail "?protocol=udp"
[ "$(code 'http://moat/flows?protocol=sctp')" = 400 ] || fail "?protocol=sctp is not a 400"
[ "$(code -X POST http://moat/flows)" = 405 ] || fail "POST /flows"
"$MOAT" ctl "$API" flows tcp | grep -q '^tcp   egress   10.0.2.15:[0-9]* *203.0.113.10:8081 *open' ||
	fail "ctl flows: $("$MOAT" ctl "$API" flows tcp)"
echo "flows: the open connection and flow with their bytes; filter; ctl flows"

# /publish: a port published at run time works at once; every refusal
# changes nothing.
bg ip netns exec "$GUEST" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.15", 8080)); s.listen(8)
while True:
    c, _ = s.accept(); c.recv(100); c.send(b"from-the-guest"); c.close()'
wait_for 10 listening "$GUEST" tcp 8080 || fail "the guest's server did not start"
[ "$(api http://moat/publish)" = "[]" ] || fail "GET /publish at start: $(api http://moat/publish)"
c=$(code -X POST http://moat/publish -d '{"host_port": 18080, "guest_port": 8080}')
[ "$c" = 201 ] && grep -q '"host_port":18080' "$WORK/body" || fail "POST /publish: $c $(cat "$WORK/body")"
got=$(in_host python3 -c '
import socket; s = socket.create_connection(("127.0.0.1", 18080), timeout=5)
s.send(b"hi"); print(s.recv(100).decode())')
[ "$got" = from-the-guest ] || fail "the published port does not reach the guest: '$got'"
c=$(code -X POST http://moat/publish -d '{"host_port": 18080, "guest_port": 9}')
[ "$c" = 409 ] || fail "a duplicate publish: $c $(cat "$WORK/body")"
bg in_host python3 -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 18081)); s.listen(1); time.sleep(60)'
wait_for 5 in_host bash -c "echo >/dev/tcp/127.0.0.1/18081" || fail "no squatter on 18081"
c=$(code -X POST http://moat/publish -d '{"host_port": 18081, "guest_port": 8080}')
[ "$c" = 409 ] && grep -q 'in use' "$WORK/body" || fail "a port in use: $c $(cat "$WORK/body")"
c=$(code -X POST http://moat/publish -d '{"host_port": 70000, "guest_port": 8080}')
[ "$c" = 400 ] || fail "host_port 70000: $c"
c=$(code -X POST http://moat/publish -d '{"host_port": 18082}')
[ "$c" = 400 ] || fail "no guest_port: $c"
c=$(code -X POST http://moat/publish -d '{"host_port": 18082, "guest_port": 1, "x": 1}')
[ "$c" = 400 ] || fail "an unknown field: $c"
c=$(code -X POST http://moat/publish -d '{"host_port": 18083, "guest_port": 7000, "protocol": "udp"}')
[ "$c" = 201 ] || fail "POST /publish udp: $c $(cat "$WORK/body")"
n=$(api http://moat/publish | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 2 ] || fail "GET /publish: $n ports, want 2: $(api http://moat/publish)"
[ "$(code -X DELETE http://moat/publish -d '{"host_port": 18080}')" = 200 ] || fail "DELETE /publish"
[ "$(code -X DELETE http://moat/publish -d '{"host_port": 18080}')" = 404 ] || fail "DELETE twice"
[ "$(code -X PUT http://moat/publish)" = 405 ] || fail "PUT /publish"
in_host bash -c "echo >/dev/tcp/127.0.0.1/18080" 2>/dev/null && fail "18080 still listens after DELETE"
grep -q '"event":"publish","action":"add".*"host_port":18080' "$WORK/events.jsonl" || fail "no publish add event"
grep -q '"event":"publish","action":"delete".*"host_port":18080' "$WORK/events.jsonl" ||
	fail "no publish delete event"
"$MOAT" ctl "$API" publish add 127.0.0.1:18090:8080 >/dev/null || fail "ctl publish add"
"$MOAT" ctl "$API" publish | grep -q '^tcp   127.0.0.1:18090 *8080' ||
	fail "ctl publish: $("$MOAT" ctl "$API" publish)"
rc=0
"$MOAT" ctl "$API" publish add 127.0.0.1:18090:8080 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "ctl publish add twice: exit $rc, want 1"
"$MOAT" ctl "$API" publish del 127.0.0.1:18090 >/dev/null || fail "ctl publish del"
"$MOAT" ctl "$API" publish del 18083/udp >/dev/null || fail "ctl publish del udp"
[ "$(api http://moat/publish)" = "[]" ] || fail "ports left: $(api http://moat/publish)"
echo "publish: add (works at once), duplicate, in use, bad bodies, udp, list, delete, events, ctl"

# POST /policy: in force, with an event.
c=$(code -X POST http://moat/policy -d '{"default_egress":"deny","default_ingress":"deny","rules":[]}')
[ "$c" = 200 ] && [ "$(jget '["generation"]' <"$WORK/body")" = 2 ] || fail "POST /policy: $c $(cat "$WORK/body")"
[ "$(api http://moat/policy | jget '["policy"]["default_ingress"]')" = deny ] || fail "not in force"
wait_for 5 grep -q '"event":"policy_reload","file":"api","ok":true' "$WORK/events.jsonl" ||
	fail "no policy_reload event"

# Refusals change nothing.
c=$(code -X POST http://moat/policy -d '{"default_egress": ')
[ "$c" = 400 ] && grep -q '"error"' "$WORK/body" || fail "bad JSON: $c $(cat "$WORK/body")"
c=$(code -X POST http://moat/policy -d '{"default_egress":"maybe"}')
[ "$c" = 400 ] && grep -q 'default_egress' "$WORK/body" || fail "bad policy: $c $(cat "$WORK/body")"
python3 -c 'print("[" * 100000 + "]" * 100000)' >"$WORK/deep.json"
c=$(code -X POST http://moat/policy --data-binary @"$WORK/deep.json")
[ "$c" = 400 ] || fail "deep nesting: $c $(head -c 200 "$WORK/body")"
head -c 2097152 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
c=$(code -X POST http://moat/policy --data-binary @"$WORK/big.json")
[ "$c" = 413 ] || fail "2 MiB body: $c"
c=$(code -X POST http://moat/policy)
[ "$c" = 400 ] || fail "empty body: $c"
[ "$(api http://moat/policy | jget '["generation"]')" = 2 ] || fail "a refused policy changed the generation"
grep -q '"event":"policy_reload","file":"api","ok":false' "$WORK/events.jsonl" ||
	fail "no failed policy_reload event"

# Paths and methods.
[ "$(code http://moat/nope)" = 404 ] || fail "unknown path"
[ "$(code -X DELETE http://moat/policy)" = 405 ] || fail "DELETE /policy"
curl -s -i -X PUT --unix-socket "$API" http://moat/status | grep -qi '^Allow: GET' || fail "no Allow"

# A client that never finishes: closed after the timeout, others still served.
python3 - "$API" >"$WORK/slow" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.send(b"POST /policy HTTP/1.1\r\nHost: moat\r\nContent-Length: 100\r\n\r\n{")
t = time.time()
s.settimeout(30)
b = s.recv(100)
print("closed after %.0f s" % (time.time() - t))
PY
slow=$!
sleep 1
[ "$(code http://moat/status)" = 200 ] || fail "a slow client stalled the API"
wait $slow
grep -q 'closed after' "$WORK/slow" || fail "the slow client was not closed: $(cat "$WORK/slow")"

# A proxy that does not answer: GET /flows is a 503 after 2 s, and the
# loop goes on (the proxy is stopped for less than the 5 s that would make
# it a stalled child).
proxy=$(pgrep -P "$MOAT_PID" -x moat-proxy)
kill -STOP "$proxy"
c=$(code http://moat/flows)
kill -CONT "$proxy"
[ "$c" = 503 ] || fail "GET /flows with a stopped proxy: $c"
[ "$(code http://moat/status)" = 200 ] || fail "the API after a 503"

# moat ctl
out=$("$MOAT" ctl "$API" status) || fail "ctl status failed"
grep -q 'guest 10.0.2.15/24 via 10.0.2.2' <<<"$out" || fail "ctl status: $out"
"$MOAT" ctl --json "$API" status | jget '["proxy_pid"]' >/dev/null || fail "ctl --json status"
"$MOAT" ctl "$API" policy | grep -q '^policy generation 2:' || fail "ctl policy"
out=$("$MOAT" ctl "$API" policy "$MOAT_SRC/examples/public-only.json") || fail "ctl policy FILE"
[ "$out" = "policy generation 3 in force" ] || fail "ctl policy FILE: $out"
rc=0
echo '{"rules": 5}' | "$MOAT" ctl "$API" policy - 2>"$WORK/ctl.err" || rc=$?
[ "$rc" = 1 ] && grep -q '400' "$WORK/ctl.err" || fail "ctl with a bad policy: exit $rc, $(cat "$WORK/ctl.err")"
rc=0
"$MOAT" ctl "$WORK/none.sock" status 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "ctl without a server: exit $rc, want 2"

moat_stop
[ "$MOAT_RC" = 0 ] || fail "moat exited $MOAT_RC"
[ ! -e "$API" ] || fail "the socket file was left behind"
pass "status, flows, publish, policy get/set, every refusal, 404/405, a slow client, moat ctl"
