#!/bin/bash
# t_ns_spoof.sh — anti-spoofing in its three modes (--anti-spoof).
#
# The guest sends frames with a source address that is not its own (another
# IPv4 source, then another source MAC) from a raw socket:
#   drop (default):  counted as spoofed and dropped; moat keeps serving;
#   off:             let through (no spoofed drops counted);
#   terminate:       a fatal violation: the "VM" (a sleep given as --vm-pid)
#                    is SIGKILLed, the event log names the spoof, moat exits 3.
source "$(dirname "$0")/lib.sh"
need python3 ping

cat >"$WORK/spoof.py" <<'EOF'
import socket, struct, sys
IF = "tap0"
mac = bytes.fromhex(open(f"/sys/class/net/{IF}/address").read().strip().replace(":", ""))
gw = bytes.fromhex("52550a000202")
def csum(b):
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def frame(src_ip, src_mac):
    udp = struct.pack("!HHHH", 4000, 53, 12, 0) + b"spam"
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                    socket.inet_aton(src_ip), socket.inet_aton("203.0.113.10"))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return gw + src_mac + b"\x08\x00" + h + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((IF, 0))
for _ in range(int(sys.argv[1])):
    s.send(frame("10.0.2.99", mac))
    s.send(frame("10.0.2.15", bytes.fromhex("020000000bad")))
EOF

metric() { awk -v n="$1" '$1 == n { print $2 }' "$WORK/moat.prom"; }
spoofed() { awk '$1 == "moat_guest_dropped_frames_total{stage=\"netstack\",reason=\"spoofed\"}" { print $2 }' "$WORK/moat.prom"; }

stop_ok() {
	local rc=0
	kill -TERM "$MOAT_PID"
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ "$rc" -eq 0 ] || fail "moat exited with $rc ($1)"
}

topo_up
guest_up 1500 static

# drop: counted and dropped, still serving
moat_start --metrics-file "$WORK/moat.prom"
in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping"
in_guest python3 "$WORK/spoof.py" 5
in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping after spoofed frames (drop)"
stop_ok drop
[ "$(spoofed)" -eq 10 ] || fail "spoofed drops $(spoofed), want 10 (drop)"
[ "$(metric moat_netstack_spoofed_frames_total)" -eq 10 ] || fail "spoofed_frames counter (drop)"

# off: nothing counted as spoofed
moat_start --anti-spoof off --metrics-file "$WORK/moat.prom"
in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping (off)"
in_guest python3 "$WORK/spoof.py" 5
stop_ok off
[ "$(spoofed)" -eq 0 ] || fail "spoofed drops $(spoofed) with --anti-spoof off"

# terminate: the VM is killed, moat exits 3
sleep 1000 &
VM=$!
moat_start --anti-spoof terminate --vm-pid "$VM" --events "$WORK/events.jsonl"
in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping (terminate)"
in_guest python3 "$WORK/spoof.py" 1
rc=0
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ "$rc" -eq 3 ] || fail "moat exited $rc after a spoofed frame with terminate, want 3"
vmrc=0
wait "$VM" || vmrc=$?
[ "$vmrc" -eq 137 ] || fail "the VM ended with $vmrc, want 137 (SIGKILL)"
grep '"violation"' "$WORK/events.jsonl" | grep -q spoof ||
	fail "no spoof violation event: $(cat "$WORK/events.jsonl")"

pass "spoofed frames: dropped and counted (drop), let through (off), VM killed (terminate)"
