#!/bin/bash
# t_badframes.sh — malformed guest frames are counted and dropped, never fatal
# (issue 4).
#
# From inside the guest namespace a python3 script writes raw frames to tap0
# with AF_PACKET: frames shorter than 14 bytes (the kernel pads them to 14),
# longer than MTU+14 (the tap's MTU is raised for that), truncated IPv4, TCP,
# UDP and ICMP headers, IP options, fragments that cannot be reassembled,
# DHCP messages with overlong, truncated and overloaded ("looping") options,
# frames for another MAC, an unknown protocol and ethertype, a spoofed source
# address, and then a flood of 100,000 junk frames. Afterwards moat and both
# children are still alive, the gateway still answers ping, the DHCP server
# still answers, and the final --metrics-file shows each kind of drop under
# its reason, and at least as many drops as junk frames reached moat.
source "$(dirname "$0")/lib.sh"
need python3 busybox ping

cat >"$WORK/badframes.py" <<'EOF'
import os, random, socket, struct, sys

IF = "tap0"
GW_MAC = bytes.fromhex("52550a000202")
MAC = bytes.fromhex(open(f"/sys/class/net/{IF}/address").read().strip().replace(":", ""))
GUEST, GW, REMOTE = (socket.inet_aton(a) for a in ("10.0.2.15", "10.0.2.2", "203.0.113.10"))

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((IF, 0))
sent = {"ok": 0, "fail": 0}

def send(frame):
    try:
        s.send(frame)
        sent["ok"] += 1
    except OSError:
        sent["fail"] += 1

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def eth(payload, ethertype=0x0800, dst=GW_MAC, src=MAC):
    return dst + src + struct.pack("!H", ethertype) + payload

def ip4(payload, proto=17, src=GUEST, dst=REMOTE, frag=0x4000, tot=None, opts=b""):
    ihl = 5 + len(opts) // 4
    tot = 4 * ihl + len(payload) if tot is None else tot
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 0x1234, frag, 64, proto, 0, src, dst) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload

def udp(payload, sport=40000, dport=53):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload

def dhcp(options):
    b = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0x8000,
                    bytes(4), bytes(4), bytes(4), bytes(4), MAC + bytes(10), bytes(64), bytes(128))
    return b + bytes([99, 130, 83, 99]) + options

def repeat(n, frame):
    for _ in range(n):
        send(frame)

# Shorter than an Ethernet header (the kernel pads these to 14 bytes).
repeat(3, GW_MAC + MAC[:4])
# Truncated headers: Ethernet only, IPv4 cut short, total length beyond the
# frame, UDP/TCP/ICMP headers cut short (the IP length says so).
repeat(3, eth(b""))
repeat(3, eth(ip4(udp(b"x"))[:12]))
repeat(3, eth(ip4(udp(b"hello"), tot=200)))
repeat(3, eth(ip4(b"\0" * 4, proto=17)))
repeat(3, eth(ip4(b"\0" * 12, proto=6)))
repeat(3, eth(ip4(b"\x08\0\0", proto=1, dst=GW)))
# IP options (a router alert), an unknown protocol (GRE), an unknown ethertype.
repeat(3, eth(ip4(udp(b"opts"), opts=b"\x94\x04\0\0")))
repeat(3, eth(ip4(b"\0" * 16, proto=47)))
repeat(3, eth(b"\0" * 46, ethertype=0x88b5))
# Fragments that can never be reassembled: they end beyond 64 KiB.
repeat(3, eth(ip4(b"\0" * 64, frag=0x1ff8 | 0x2000)))
# A fragmented datagram that is fine (reassembled, then sent on to the proxy).
whole = udp(bytes(range(256)) * 8)
send(eth(ip4(whole[:1480], frag=0x2000)))
send(eth(ip4(whole[1480:], frag=1480 // 8)))
# DHCP with an overlong option, no END (truncated) and option overload (52).
for opts in (bytes([53, 1, 1, 12, 250]) + b"ab" + bytes([255]),
             bytes([53, 1, 1, 12, 2]) + b"ab",
             bytes([53, 1, 1, 52, 1, 3, 255])):
    send(eth(ip4(udp(dhcp(opts), 68, 67), src=bytes(4), dst=b"\xff" * 4), dst=b"\xff" * 6))
# Not for us (another unicast MAC), and a spoofed source address.
repeat(3, eth(ip4(udp(b"x")), dst=bytes.fromhex("020000000099")))
repeat(3, eth(ip4(udp(b"x"), src=socket.inet_aton("10.0.2.99"))))
# Longer than MTU + 14 (the tap's MTU was raised for this).
repeat(3, eth(ip4(udp(b"\0" * 8000))))
base = dict(sent)

# The flood: junk that can never pass the validator (an unknown ethertype,
# or an IPv4 header with version 0), random lengths and bytes.
rnd = random.Random(4)
for i in range(100000):
    body = rnd.randbytes(rnd.randint(0, 1486))
    if i % 2:
        send(eth(body, ethertype=rnd.choice((0x9000, 0x88b6, 0xabcd, 0x1234))))
    else:
        send(eth(b"\x05" + body, ethertype=0x0800))
print(f"categories_sent={base['ok']} flood_sent={sent['ok'] - base['ok']} send_failed={sent['fail']}")
EOF

topo_up
guest_up 1500 static
moat_start --metrics-file "$WORK/moat.prom"

in_guest ping -c 1 -W 2 10.0.2.2 >/dev/null || fail "no ping before the bad frames"
in_guest ip link set tap0 mtu 9000
drop0=$(cat /sys/class/net/tap0/statistics/tx_dropped 2>/dev/null || in_guest cat /sys/class/net/tap0/statistics/tx_dropped)
out=$(in_guest python3 "$WORK/badframes.py") || fail "badframes.py failed"
echo "$out"
in_guest ip link set tap0 mtu 1500
drop1=$(in_guest cat /sys/class/net/tap0/statistics/tx_dropped)
flood=$(sed -n 's/.*flood_sent=\([0-9]*\).*/\1/p' <<<"$out")
[ "$flood" -gt 90000 ] || fail "only $flood junk frames could be sent"
delivered=$((flood - (drop1 - drop0)))
echo "junk frames sent $flood, dropped by the kernel's tap queue $((drop1 - drop0))"

# Still alive: moat, the netstack and the proxy.
kill -0 "$MOAT_PID" 2>/dev/null || fail "moat died"
[ -n "$(child_pid moat-netstack)" ] || fail "moat-netstack died"
[ -n "$(child_pid moat-proxy)" ] || fail "moat-proxy died"
# Still answering: ping and DHCP.
pong=$(in_guest ping -c 3 -W 2 10.0.2.2) || { echo "$pong" >&2; fail "no ping after the bad frames"; }
grep -q "3 received" <<<"$pong" || fail "ping after the bad frames lost replies"
cat >"$WORK/udhcpc.sh" <<'EOF'
#!/bin/sh
[ "$1" = bound ] && echo "$ip" >"$(dirname "$0")/lease"
exit 0
EOF
chmod +x "$WORK/udhcpc.sh"
in_guest timeout 20 busybox udhcpc -i tap0 -n -q -f -t 5 -T 1 -s "$WORK/udhcpc.sh" >/dev/null 2>&1 ||
	fail "no DHCP lease after the bad frames"
[ "$(cat "$WORK/lease")" = 10.0.2.15 ] || fail "DHCP after the bad frames leased $(cat "$WORK/lease")"

# Stop cleanly; the final metrics file holds the final counts.
kill -TERM "$MOAT_PID"
rc=0
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ "$rc" -eq 0 ] || fail "moat exited with $rc"
[ -s "$WORK/moat.prom" ] || fail "no metrics file"

# drops STAGE REASON: a value from moat_guest_dropped_frames_total
drops() {
	awk -v l="moat_guest_dropped_frames_total{stage=\"$1\",reason=\"$2\"}" \
		'$1 == l { print $2 }' "$WORK/moat.prom"
}
grep 'moat_guest_dropped_frames_total{' "$WORK/moat.prom" | grep -v ' 0$' || true
for want in malformed:15 ip_options:3 protocol:3 ethertype:3 fragment:3 dhcp:3 not_for_us:3 spoofed:3; do
	reason=${want%%:*} min=${want##*:}
	got=$(drops netstack "$reason")
	[ -n "$got" ] || fail "no netstack drop counter for $reason in the metrics"
	[ "$got" -ge "$min" ] || fail "netstack drops for $reason: $got, want at least $min"
done
long=$(( $(drops guest_port too_long) + $(drops netstack too_long) ))
[ "$long" -ge 3 ] || fail "frames longer than MTU+14 dropped: $long, want 3"
total=$(awk '/^moat_guest_dropped_frames_total\{/ { s += $2 } END { print s + 0 }' "$WORK/moat.prom")
[ "$total" -ge "$delivered" ] || fail "$total drops counted for $delivered junk frames delivered"
grep -q '^moat_up 0' "$WORK/moat.prom" || true

pass "bad frames and a flood of $flood junk frames counted ($total drops), moat still serving"
