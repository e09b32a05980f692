#!/bin/bash
# t_udp.sh — UDP flows through the proxy (issue 7).
#
# A UDP echo server in $SRV. From the guest:
#  - datagrams come back from the address the guest sent them to;
#  - 100 concurrent flows (100 sockets) all get their echo;
#  - the flow cap (--max-udp-flows 150): 100 more flows while the first 100
#    are alive fill the table to 150; the rest are counted refused and get
#    no echo;
#  - after the idle timeout (60 s) the flows are gone and 100 new flows work;
#  - a denied destination gets nothing, counted and reported as an event;
#  - 10.0.2.2:PORT reaches a UDP server on 127.0.0.1:PORT in $HOST.
source "$(dirname "$0")/lib.sh"
need curl python3

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
CLIENT="python3 $MOAT_SRC/tests/e2e/proxy_client.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }

topo_up
guest_up 1500 static
bg ip netns exec "$SRV" $PY udpecho 203.0.113.10 7000
bg ip netns exec "$HOST" $PY udpecho 127.0.0.1 7007
wait_for 10 listening "$SRV" udp 7000 && wait_for 10 listening "$HOST" udp 7007 ||
	fail "the echo servers did not start"
cat >"$WORK/policy.json" <<'P'
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [
    { "direction": "egress", "destination": { "group": "public" }, "action": "allow" },
    { "direction": "egress", "destination": { "group": "host" }, "protocols": ["udp"],
      "ports": [{ "start": 7007, "end": 7007 }], "action": "allow" } ] }
P
sleep 1
moat_start --policy "$WORK/policy.json" --max-udp-flows 150 --events "$WORK/events.jsonl" \
	--metrics "unix:$WORK/metrics.sock" --udp-timeout 20

wait_for 10 bash -c "[ \"\$(ip netns exec $GUEST $CLIENT udp 203.0.113.10 7000 1 1200)\" = 1 ]" ||
	fail "no echo"
in_guest python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"who", ("203.0.113.10", 7000))
data, peer = s.recvfrom(100)
assert data == b"who" and peer == ("203.0.113.10", 7000), (data, peer)
' || fail "the echo did not come from 203.0.113.10:7000"
echo "echo: from the address the guest sent to"

# The host through the gateway address.
n=$(in_guest $CLIENT udp 10.0.2.2 7007 1)
[ "$n" = 1 ] || fail "10.0.2.2:7007 did not reach 127.0.0.1:7007 in the host namespace"
echo "10.0.2.2:7007 reaches 127.0.0.1:7007"

# A closed port (before the cap test fills the flow table): the server's
# ICMP port unreachable reaches the guest, whose connected socket fails
# with ECONNREFUSED, as on a real network.
in_guest python3 -c '
import errno, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.connect(("203.0.113.10", 7999))
for i in range(3):
    s.send(b"anyone?")
    try:
        s.recv(100)
    except ConnectionRefusedError:
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit("no ECONNREFUSED")
' || fail "a connected UDP socket to a closed port did not get ECONNREFUSED"
[ "$(metric moat_udp_unreachable_total)" -ge 1 ] || fail "moat_udp_unreachable_total not counted"
echo "closed port: ECONNREFUSED in the guest (ICMP port unreachable relayed)"

n=$(in_guest $CLIENT udp 203.0.113.10 7000 100)
[ "$n" = 100 ] || fail "100 concurrent flows: $n echoes"
echo "100 concurrent flows: 100 echoes ($(metric moat_udp_flows_active) flows active)"

# 100 more while those are alive: only as many as the cap of 150 leaves are
# opened. (A new socket may reuse the source port of a closed one of the
# first round: that flow still exists and needs no room. So count flows.)
refused0=$(metric moat_udp_flows_refused_total)
n=$(in_guest $CLIENT udp 203.0.113.10 7000 100)
refused=$(($(metric moat_udp_flows_refused_total) - refused0))
active=$(metric moat_udp_flows_active)
[ "$active" = 150 ] || fail "over the cap: $active flows active, want 150"
[ "$refused" -ge 1 ] && [ $((n + refused)) = 100 ] ||
	fail "over the cap: $n echoes and $refused refused, want 100 in all and some refused"
echo "cap 150: $n of 100 more flows echoed, $refused refused, 150 active"

# Denied destination.
n=$(in_guest $CLIENT udp 10.88.0.10 7000 1)
[ "$n" = 0 ] || fail "a denied destination echoed"
[ "$(metric 'moat_policy_denials_total{direction="egress",protocol="udp"}')" -ge 1 ] || fail "no udp denial counted"
wait_for 5 grep -q '"event":"denial".*"protocol":"udp".*"dst":"10.88.0.10"' "$WORK/events.jsonl" ||
	fail "no udp denial event"
echo "denied destination: dropped, counted, event"

# Idle expiry (--udp-timeout 20: the header's udp_idle_timeout_s). Flows
# are still there well before it, gone a little after.
[ "$(metric moat_udp_flows_active)" -gt 0 ] || fail "a flow expired before --udp-timeout"
echo "waiting for the flows to expire..."
wait_for 30 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_udp_flows_active\" {print \$2}')\" = 0 ]" ||
	fail "flows did not expire: $(metric moat_udp_flows_active) active"
n=$(in_guest $CLIENT udp 203.0.113.10 7000 100)
[ "$n" = 100 ] || fail "after expiry: $n echoes of 100"
echo "idle expiry: all flows gone, 100 new flows work"
pass "echo, 100 flows, cap, denial, host, idle expiry"
