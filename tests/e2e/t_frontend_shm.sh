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

# --pcap cannot see frames the VMM moves: refused rather than silently empty.
rc=0
ip netns exec "$HOST" "$MOAT" run --guest "shm:$SOCK" --pcap "$WORK/x.pcap" \
	>"$WORK/pcap.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--pcap with shm was accepted"
grep -q "not available with --guest shm" "$WORK/pcap.log" || fail "no reason given for --pcap"
pass "DHCP and ping over shm:, the next VMM reattaches"
