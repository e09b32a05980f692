#!/bin/bash
# The datagram frontend: vfkit's way (connect + "VFKT" handshake) and QEMU's
# (-netdev dgram: sendto, no handshake). The guest gets a DHCP lease and
# pings the gateway through each; the second VMM replaces the first once
# the first has gone, as a restarted VMM would.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/frontend_lib.sh"
need busybox ping python3

topo_up
guest_up
SOCK=$WORK/guest.sock

moat_start_guest "dgram:$SOCK" --pcap "$WORK/guest.pcap"
vmm vfkit "$TOOLS/stream_adapter" -m vfkit -l "$WORK/vfkit.sock" tap0 "$SOCK"
dhcp_and_ping
grep -q "peer is $WORK/vfkit.sock" "$WORK/moat.log" || fail "vfkit peer not learned"

vmm_stop
vmm qemu "$TOOLS/stream_adapter" -m dgram -l "$WORK/qemu.sock" tap0 "$SOCK"
dhcp_and_ping
grep -q "peer is $WORK/qemu.sock" "$WORK/moat.log" || fail "second peer not learned"
grep -q "peer $WORK/vfkit.sock gone" "$WORK/moat.log" || fail "first peer's end not noticed"
moat_stop_ok "end of test"
pcap_check "$WORK/guest.pcap"
pass "DHCP and ping over dgram: with and without VFKT; a restarted VMM reattaches"
