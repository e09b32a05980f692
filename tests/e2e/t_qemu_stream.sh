#!/bin/bash
# t_qemu_stream.sh — a real VMM on the stream frontend.
#
# Debian's qemu-system-x86 boots Debian's kernel with the busybox initramfs
# of tests/qemu/ under TCG; its only network card is virtio-net on
# `-netdev stream` (QEMU connects as the client to moat's stream:PATH). The
# guest kernel's own stack must get the DHCP lease 10.0.2.15, get 3 ping
# replies from the gateway 10.0.2.2, and fetch a random token over HTTP from
# a server in the server namespace through moat's netstack and proxy, and a
# 4 MiB random file whose sha256 must match. moat must still be running when
# the guest has powered off, and stop cleanly.
# Skipped (77) when QEMU or the kernel cannot be installed or prepared.
source "$(dirname "$0")/lib.sh"
source "$MOAT_SRC/tests/qemu/e2e_lib.sh"

qemu_prepare
topo_up
http_up
SOCK=$WORK/moat.sock

qemu_network_run "stream:$SOCK" \
	"stream,id=n0,server=off,addr.type=unix,addr.path=$SOCK"
grep -q "client connected" "$WORK/moat.log" || fail "moat did not log QEMU's connection"
[ ! -e "$SOCK" ] || fail "moat left its socket behind"
pass "QEMU guest over -netdev stream: DHCP 10.0.2.15, 3 ping replies, HTTP token and 4 MiB intact through moat"
