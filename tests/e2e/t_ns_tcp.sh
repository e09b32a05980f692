#!/bin/bash
# t_ns_tcp.sh — TCP through the netstack with a real guest kernel on both
# ends of it: bulk both ways with half-close, many connections at once,
# refused connects, and the netstack's flow counters afterwards; at MTU 1500
# and 65520.
#
# The server (in $SRV) echoes every connection until EOF and then closes; the
# guest's client sends pseudo-random bytes while reading, shuts down its
# writing side (the netstack turns the FIN into SHUT_WR), and must read back
# exactly what it sent before the server's FIN. A connect to a closed port
# must fail with ECONNREFUSED (connect before accept: the guest never sees a
# handshake complete for a dead upstream).
source "$(dirname "$0")/lib.sh"
need python3

cat >"$WORK/srv.py" <<'EOF'
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(256)
def echo(c):
    with c:
        while True:
            b = c.recv(262144)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = ls.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
EOF

cat >"$WORK/cli.py" <<'EOF'
import errno, hashlib, random, socket, sys, threading
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

def echo(n, seed):
    data = random.Random(seed).randbytes(n)
    s = socket.create_connection((host, port), timeout=60)
    def send():
        view = memoryview(data)
        while view:
            k = s.send(view[:65536])
            view = view[k:]
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    got = bytearray()
    while True:
        b = s.recv(262144)
        if not b:
            break
        got += b
    t.join()
    s.close()
    if bytes(got) != data:
        print(f"MISMATCH seed={seed} sent={n} got={len(got)}")
        return False
    return True

if mode == "echo":
    ok = echo(int(sys.argv[4]), 1)
    print("echo ok" if ok else "echo FAILED")
elif mode == "many":
    k, n = int(sys.argv[4]), int(sys.argv[5])
    res = [False] * k
    def one(i):
        try:
            res[i] = echo(n, 100 + i)
        except OSError as e:
            print(f"conn {i}: {e}")
    ts = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(f"many ok={sum(res)} of {k}")
elif mode == "refused":
    try:
        socket.create_connection((host, port), timeout=20)
        print("connected?!")
    except ConnectionRefusedError:
        print("refused")
    except OSError as e:
        print(f"other error: {e}")
EOF

topo_up
bg ip netns exec "$SRV" python3 "$WORK/srv.py" "$SRV_IP" 7000
wait_for 10 in_srv ss -ltn "sport = :7000" -H | grep -q 7000 || true

# run_mtu MTU: one moat with that MTU; the guest echoes through it.
run_mtu() {
	local mtu=$1 out
	guest_up "$mtu" static
	moat_start --mtu "$mtu" --metrics-file "$WORK/moat.prom"
	in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping at MTU $mtu"
	wait_for 10 in_guest python3 -c "import socket; socket.create_connection(('$SRV_IP', 7000), 5).close()" ||
		fail "echo server not reachable at MTU $mtu"

	out=$(in_guest python3 "$WORK/cli.py" echo "$SRV_IP" 7000 $((16 << 20)))
	[ "$out" = "echo ok" ] || fail "16 MiB echo at MTU $mtu: $out"
	out=$(in_guest python3 "$WORK/cli.py" many "$SRV_IP" 7000 64 200000)
	[ "$out" = "many ok=64 of 64" ] || fail "64 parallel echoes at MTU $mtu: $out"
	out=$(in_guest python3 "$WORK/cli.py" refused "$SRV_IP" 7001)
	[ "$out" = refused ] || fail "connect to a closed port at MTU $mtu: $out"

	sleep 1
	kill -TERM "$MOAT_PID"
	local rc=0
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ "$rc" -eq 0 ] || fail "moat exited with $rc at MTU $mtu"
	metric() { awk -v n="$1" '$1 == n { print $2 }' "$WORK/moat.prom"; }
	local opened closed active tx rx
	opened=$(metric moat_netstack_tcp_flows_opened_total)
	closed=$(metric moat_netstack_tcp_flows_closed_total)
	active=$(metric moat_netstack_tcp_flows_active)
	tx=$(metric moat_tcp_payload_tx_bytes_total)
	rx=$(metric moat_tcp_payload_rx_bytes_total)
	echo "MTU $mtu: opened=$opened closed=$closed active=$active tx=$tx rx=$rx"
	[ "$opened" -ge 66 ] || fail "flows opened $opened at MTU $mtu, want >= 66"
	[ "$active" -eq 0 ] || fail "$active flows still active after every client closed (MTU $mtu)"
	[ "$closed" -eq "$opened" ] || fail "opened $opened but closed $closed (MTU $mtu)"
	local want=$(((16 << 20) + 64 * 200000))
	[ "$tx" -ge "$want" ] || fail "tx payload $tx < $want (MTU $mtu)"
	[ "$rx" -ge "$want" ] || fail "rx payload $rx < $want (MTU $mtu)"
	ip netns del "$GUEST"
}

run_mtu 1500
run_mtu 65520
pass "echo 16 MiB and 64 parallel connections at MTU 1500 and 65520, refused connects, counters consistent"
