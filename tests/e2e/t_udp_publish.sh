#!/bin/bash
# t_udp_publish.sh — published UDP ports (issue 16): --publish H:G/udp.
#
# A UDP echo server in the guest listens on port 7000. moat runs with
# --publish 127.0.0.1:17000:7000/udp and --publish 127.0.0.1:17001:7001/udp,
# a policy that allows ingress UDP to 7000 only, and --udp-timeout 3:
#  - peers in $HOST (on loopback, so the guest sees the gateway address)
#    get their own datagrams back, from the port they sent to, 20 peers at
#    once, each its own flow, large datagrams included;
#  - the guest sees each loopback peer as the gateway with a port of its own;
#  - 17001 (guest port 7001) is denied: nothing comes back, a denial event
#    with direction ingress and protocol udp is written;
#  - after --udp-timeout the peers are forgotten and new ones work.
source "$(dirname "$0")/lib.sh"
need curl python3

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }

topo_up
guest_up 1500 static
cat >"$WORK/policy.json" <<'P'
{ "default_egress": "deny", "default_ingress": "deny",
  "rules": [ { "direction": "ingress", "destination": "any", "protocols": ["udp"],
               "ports": [{ "start": 7000, "end": 7000 }], "action": "allow" } ] }
P
# The guest's echo server also says who it saw (the address the guest answers).
cat >"$WORK/echo.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.15", int(sys.argv[1])))
while True:
    b, peer = s.recvfrom(65536)
    if b == b"who":
        b = ("%s:%d" % peer).encode()
    s.sendto(b, peer)
PY
bg ip netns exec "$GUEST" python3 "$WORK/echo.py" 7000
bg ip netns exec "$GUEST" python3 "$WORK/echo.py" 7001
wait_for 10 listening "$GUEST" udp 7000 && wait_for 10 listening "$GUEST" udp 7001 ||
	fail "the guest's echo servers did not start"
moat_start --policy "$WORK/policy.json" --events "$WORK/events.jsonl" \
	--metrics "unix:$WORK/metrics.sock" --udp-timeout 3 \
	--publish 127.0.0.1:17000:7000/udp --publish 127.0.0.1:17001:7001/udp

# client PORT PEERS SIZE: PEERS sockets each send one SIZE-byte datagram and
# wait for the same bytes back from 127.0.0.1:PORT; prints how many came.
client() {
	in_host python3 - "$@" <<'PY'
import os, socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok = 0
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.bind(("127.0.0.1", 0))
    msg = os.urandom(size)
    s.sendto(msg, ("127.0.0.1", port))
    socks.append((s, msg))
for s, msg in socks:
    try:
        b, peer = s.recvfrom(65536)
        if b == msg and peer == ("127.0.0.1", port):
            ok += 1
    except socket.timeout:
        pass
print(ok)
PY
}

wait_for 10 bash -c "[ \"\$(ip netns exec $HOST python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b\"x\", (\"127.0.0.1\", 17000)); print(s.recv(10).decode())' 2>/dev/null)\" = x ]" ||
	fail "no echo through 127.0.0.1:17000/udp"
n=$(client 17000 20 100)
[ "$n" = 20 ] || fail "20 peers: $n echoes"
n=$(client 17000 3 1400)
[ "$n" = 3 ] || fail "1400-byte datagrams: $n of 3 echoes"
echo "20 peers, each its own echo from the port it sent to"

who=$(in_host python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"who", ("127.0.0.1", 17000)); print(s.recv(100).decode())')
case "$who" in
10.0.2.2:*) echo "the guest sees a loopback peer as $who" ;;
*) fail "the guest saw the peer as '$who', want 10.0.2.2:PORT" ;;
esac
active=$(metric moat_udp_flows_active)
[ "${active:-0}" -ge 24 ] || fail "moat_udp_flows_active is $active, want >= 24 (one per peer)"

n=$(client 17001 2 10)
[ "$n" = 0 ] || fail "17001/udp (guest port 7001) is denied, but $n echoes came back"
wait_for 5 grep -q '"event":"denial","direction":"ingress","protocol":"udp"' "$WORK/events.jsonl" ||
	fail "no ingress udp denial event: $(cat "$WORK/events.jsonl")"
echo "denied port: no echo, an ingress denial event"

wait_for 15 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_udp_flows_active\" {print \$2}')\" = 0 ]" ||
	fail "peers did not expire: $(metric moat_udp_flows_active) active"
n=$(client 17000 5 100)
[ "$n" = 5 ] || fail "after expiry: $n of 5 echoes"
moat_stop
[ "$MOAT_RC" = 0 ] || fail "moat exited $MOAT_RC"
pass "echo for 20 peers through a published UDP port, gateway mapping, denial, expiry"
