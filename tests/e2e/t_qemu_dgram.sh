#!/bin/bash
# t_qemu_dgram.sh — a real VMM on the datagram frontend.
#
# As t_qemu_stream.sh, but QEMU's virtio-net card is on `-netdev dgram`:
# QEMU binds its own unix datagram socket and sends each frame as one
# datagram to moat's dgram:PATH, which learns QEMU as its peer from the
# first one. The guest kernel must get the DHCP lease 10.0.2.15, 3 ping
# replies from 10.0.2.2, a random token over HTTP through moat and a 4 MiB
# random file whose sha256 must match; moat must outlive the guest and stop
# cleanly. Skipped (77) when QEMU or the kernel cannot be installed or
# prepared.
source "$(dirname "$0")/lib.sh"
source "$MOAT_SRC/tests/qemu/e2e_lib.sh"

qemu_prepare
topo_up
http_up
SOCK=$WORK/moat.sock
QSOCK=$WORK/qemu.sock

qemu_network_run "dgram:$SOCK" \
	"dgram,id=n0,local.type=unix,local.path=$QSOCK,remote.type=unix,remote.path=$SOCK"
rx=$(awk '$1 == "moat_guest_rx_frames_total" {print $2}' "$WORK/metrics.prom" 2>/dev/null)
[ "${rx:-0}" -ge 10 ] || fail "moat_guest_rx_frames_total is '${rx:-}', want >= 10"
pass "QEMU guest over -netdev dgram: DHCP 10.0.2.15, 3 ping replies, HTTP token and 4 MiB intact through moat"
