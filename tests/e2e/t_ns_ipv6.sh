#!/bin/bash
# t_ns_ipv6.sh — the guest's IPv6: router advertisement and SLAAC, neighbour
# discovery and ping of the gateway, and TCP over IPv6 through the netstack.
#
# The guest's tap has no IPv6 configuration: the netstack's Router
# Advertisement must give it an address in fd00::/64 (SLAAC) and a default
# route through the gateway's link-local address; `ping -6 fd00::2` must be
# answered; a TCP echo to a server at 2001:db8::10 (an IPv6 route between the
# host and server namespaces is added here) must come back intact.
source "$(dirname "$0")/lib.sh"
need python3 ping

cat >"$WORK/echo.py" <<'EOF'
import random, socket, sys, threading
if sys.argv[1] == "server":
    ls = socket.socket(socket.AF_INET6)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((sys.argv[2], int(sys.argv[3])))
    ls.listen(16)
    def echo(c):
        with c:
            while (b := c.recv(65536)):
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
else:
    data = random.Random(6).randbytes(int(sys.argv[4]))
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=30)
    t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    t.start()
    got = bytearray()
    while (b := s.recv(65536)):
        got += b
    t.join()
    print("ok" if bytes(got) == data else f"mismatch {len(got)}/{len(data)}")
EOF

topo_up
ip -n "$HOST" addr add fd77::1/64 dev mh0 nodad
ip -n "$SRV" addr add fd77::fe/64 dev ms0 nodad
ip -n "$SRV" addr add 2001:db8::10/128 dev lo
ip -n "$HOST" -6 route add default via fd77::fe dev mh0
ip -n "$SRV" -6 route add default via fd77::1 dev ms0
bg ip netns exec "$SRV" python3 "$WORK/echo.py" server 2001:db8::10 7006
wait_for 10 listening "$SRV" tcp 7006 || fail "the server did not start"

guest_up 1500
moat_start

# SLAAC from our Router Advertisement.
# (past duplicate address detection: a tentative address cannot be used yet)
global6() { in_guest ip -6 -o addr show dev tap0 scope global | grep "inet6 fd00::" | grep -vq tentative; }
wait_for 15 global6 || fail "no SLAAC address in fd00::/64: $(in_guest ip -6 addr show dev tap0)"
wait_for 10 bash -c "ip netns exec $GUEST ip -6 route show default | grep -q 'via fe80::5055:aff:fe00:202'" ||
	fail "no default route via the gateway: $(in_guest ip -6 route)"

out=$(in_guest ping -6 -c 3 -W 2 fd00::2) || { echo "$out" >&2; fail "ping -6 fd00::2 failed"; }
grep -q "3 received" <<<"$out" || { echo "$out" >&2; fail "ping -6 lost replies"; }
in_guest ip -6 neigh show dev tap0 | grep -qi "lladdr 52:55:0a:00:02:02" ||
	fail "no neighbour entry for the gateway: $(in_guest ip -6 neigh show dev tap0)"

out=$(in_guest python3 "$WORK/echo.py" client 2001:db8::10 7006 $((4 << 20)))
[ "$out" = ok ] || fail "TCP echo over IPv6: $out ($(tail -n 5 "$WORK/moat.log"))"

pass "IPv6: SLAAC in fd00::/64, default route via the gateway, ping -6, 4 MiB TCP echo"
