#!/bin/bash
# The stream frontend (QEMU -netdev stream, libkrun unixstream, passt's
# framing): a guest namespace behind a stand-in VMM gets a DHCP lease and
# pings the gateway; --pcap records both directions. Then bad length
# prefixes (0, 13, 65536, 2^31) each drop their client, and the next client
# is served.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/frontend_lib.sh"
need busybox ping python3

topo_up
guest_up
SOCK=$WORK/guest.sock

moat_start_guest "stream:$SOCK" --pcap "$WORK/guest.pcap" --metrics-file "$WORK/metrics.prom"
vmm adapter "$TOOLS/stream_adapter" -m stream tap0 "$SOCK"
dhcp_and_ping
grep -q "stream:$SOCK: client connected" "$WORK/moat.log" || fail "no client connected line"

# Bad length prefixes: each drops the client (it sees EOF) and is logged.
vmm_stop
for len in 0 13 65536 2147483648; do
	python3 - "$SOCK" "$len" <<'PY' || fail "length $len: client was not dropped"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(struct.pack("!I", int(sys.argv[2])) + b"\xab" * 64)
try:
    sys.exit(0 if s.recv(100) == b"" else 1)
except ConnectionResetError:
    sys.exit(0)
PY
done
wait_for 5 grep -q "bad length prefix 2147483648" "$WORK/moat.log" || fail "drop not logged"
for len in 0 13 65536 2147483648; do
	grep -q "client dropped (bad length prefix $len)" "$WORK/moat.log" ||
		fail "no drop logged for length $len"
done

# A good client after them: served as before.
vmm adapter2 "$TOOLS/stream_adapter" -m stream tap0 "$SOCK"
dhcp_and_ping
moat_stop_ok "end of test"
[ ! -e "$SOCK" ] || fail "moat left its socket behind"
pcap_check "$WORK/guest.pcap"

# The counters (the last --metrics-file is written at stop).
[ "$(metric 'moat_guest_dropped_frames_total{stage="guest_port",reason="bad_length"}')" = 4 ] ||
	fail "bad_length drops: '$(metric 'moat_guest_dropped_frames_total{stage="guest_port",reason="bad_length"}')', want 4"
[ "$(metric moat_guest_clients_accepted_total)" = 6 ] ||
	fail "clients accepted: '$(metric moat_guest_clients_accepted_total)', want 6"
[ "$(metric moat_guest_clients_dropped_total)" = 5 ] ||
	fail "clients dropped: '$(metric moat_guest_clients_dropped_total)', want 5"
[ "$(metric moat_guest_tx_frames_total)" -ge 10 ] && [ "$(metric moat_guest_rx_frames_total)" -ge 10 ] ||
	fail "frame counters did not move"
pass "DHCP and ping over stream:, bad prefixes dropped, pcap holds both directions"
