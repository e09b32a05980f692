#!/bin/bash
# The shm frontend: a stand-in VMM (tests/tools/shm_vmm.c, built from
# shm/moat_shm.h alone) receives the region and the eventfds over shm:PATH
# and moves the frames itself; the guest gets a DHCP lease and pings the
# gateway. A second VMM gets the rings after the first leaves.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/frontend_lib.sh"
need busybox ping

topo_up
guest_up
SOCK=$WORK/guest.sock

moat_start_guest "shm:$SOCK"
vmm vmm1 "$TOOLS/shm_vmm" tap0 "$SOCK"
dhcp_and_ping
grep -q "VMM connected" "$WORK/moat.log" || fail "VMM not accepted"

vmm_stop
wait_for 5 grep -q "the VMM left" "$WORK/moat.log" || fail "VMM leaving not noticed"
vmm vmm2 "$TOOLS/shm_vmm" tap0 "$SOCK"
dhcp_and_ping
moat_stop_ok "end of test"
grep -q "moat closed the connection" "$WORK/vmm2.log" || fail "VMM not told that moat stopped"

# --offload on: the VMM is promised segments and partial checksums (the
# header's guest_offloads) and bridges them to a tap with IFF_VNET_HDR; a
# 16 MiB download arrives intact in frames larger than the MTU.
need curl sha256sum ethtool python3
head -c 16777216 /dev/urandom >"$WORK/big"
want=$(sha256sum <"$WORK/big" | cut -d' ' -f1)
bg ip netns exec "$SRV" python3 "$MOAT_SRC/tests/e2e/proxy_servers.py" http 203.0.113.10 8080 "$WORK"
wait_for 10 in_srv bash -c "echo >/dev/tcp/203.0.113.10/8080" || fail "server did not start"
moat_start_guest "shm:$SOCK" --offload on --metrics-file "$WORK/metrics.prom"
vmm vmm3 "$TOOLS/shm_vmm" tap0 "$SOCK"
dhcp_and_ping
in_guest ethtool -k tap0 | grep -q '^tcp-segmentation-offload: on' ||
	fail "--offload on: the VMM's tap0 does not segment"
got=$(in_guest curl -sS --max-time 120 http://203.0.113.10:8080/big | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "--offload on: download sha256 $got, want $want"
sleep 6 # the metrics file is rewritten every 5 s
frames=$(metric moat_guest_rx_frames_total) bytes=$(metric moat_guest_rx_bytes_total)
[ "${frames:-0}" -gt 0 ] && [ $((bytes / frames)) -gt 1514 ] ||
	fail "--offload on: $bytes bytes in $frames frames to the guest: no segments"
moat_stop_ok "offloads"
echo "shm with offloads: 16 MiB intact, $((bytes / frames)) bytes per frame to the guest"

# --pcap cannot see frames the VMM moves: refused rather than silently empty.
rc=0
ip netns exec "$HOST" "$MOAT" run --guest "shm:$SOCK" --pcap "$WORK/x.pcap" \
	>"$WORK/pcap.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--pcap with shm was accepted"
grep -q "not available with --guest shm" "$WORK/pcap.log" || fail "no reason given for --pcap"
pass "DHCP and ping over shm:, the next VMM reattaches, segments with --offload on"
