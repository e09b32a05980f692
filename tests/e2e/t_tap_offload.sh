#!/bin/bash
# t_tap_offload.sh — checksum and segmentation offloads on a tap (issue 14).
#
# With the default (--offload on) moat opens the tap with IFF_VNET_HDR and
# TUNSETOFFLOAD: the guest's tap0 then shows TCP segmentation on (ethtool
# -k), frames larger than the MTU cross the guest port both ways (the pcap
# shows them), and 64 MiB each way arrive intact. With --offload off the
# same transfers work with plain frames no larger than MTU + 14.
source "$(dirname "$0")/lib.sh"
need curl nc python3 sha256sum ethtool

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }

# The largest frame in a pcap (the supervisor writes both directions).
pcap_max() {
	python3 - "$1" <<'PYEOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
off, big = 24, 0
while off + 16 <= len(d):
    incl, orig = struct.unpack_from('<II', d, off + 8)
    big = max(big, orig)
    off += 16 + incl
print(big)
PYEOF
}

topo_up
guest_up 1500 static
head -c 67108864 /dev/urandom >"$WORK/big"
want=$(sha256sum <"$WORK/big" | cut -d' ' -f1)
bg ip netns exec "$SRV" $PY http 203.0.113.10 8080 "$WORK"
bg ip netns exec "$SRV" $PY sink 203.0.113.10 9000
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080 && echo >/dev/tcp/203.0.113.10/9000" ||
	fail "servers did not start"

# transfer LABEL: 64 MiB down (curl) and up (nc), both checked by sha256.
transfer() {
	local got reply
	got=$(in_guest curl -sS --max-time 300 http://203.0.113.10:8080/big | sha256sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || fail "$1: download sha256 $got, want $want"
	reply=$(in_guest timeout 300 nc -N 203.0.113.10 9000 <"$WORK/big")
	[ "$reply" = "67108864 $want" ] || fail "$1: upload: server got '$reply'"
}

# Offloads on (the default).
moat_start --metrics "unix:$WORK/metrics.sock" --pcap "$WORK/on.pcap"
in_guest ethtool -k tap0 | grep -q '^tcp-segmentation-offload: on' ||
	fail "offloads on: tap0 has no TCP segmentation: $(in_guest ethtool -k tap0 | grep segmentation)"
transfer "offloads on"
[ "$(metric moat_guest_offloads_refused_total)" = 0 ] || fail "offloads were refused"
bad=$(metric 'moat_guest_dropped_frames_total{stage="netstack",reason="bad_offload"}')
[ "$bad" = 0 ] || fail "bad_offload drops: '$bad' (want 0, and the metric must exist)"
moat_stop
[ "$MOAT_RC" = 0 ] || fail "moat exited $MOAT_RC"
big_on=$(pcap_max "$WORK/on.pcap")
[ "$big_on" -gt 1514 ] || fail "offloads on: the largest frame was $big_on bytes, want > 1514"
echo "offloads on: tso on, 64 MiB each way intact, frames up to $big_on bytes"

# Offloads off.
moat_start --metrics "unix:$WORK/metrics.sock" --pcap "$WORK/off.pcap" --offload off
in_guest ethtool -k tap0 | grep -q '^tcp-segmentation-offload: off' ||
	fail "offloads off: tap0 still segments: $(in_guest ethtool -k tap0 | grep segmentation)"
transfer "offloads off"
moat_stop
[ "$MOAT_RC" = 0 ] || fail "moat exited $MOAT_RC"
big_off=$(pcap_max "$WORK/off.pcap")
[ "$big_off" -le 1514 ] || fail "offloads off: a frame of $big_off bytes, want <= 1514"
pass "tso on: frames up to $big_on bytes, off: up to $big_off; 64 MiB each way intact both"
