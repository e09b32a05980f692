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

rm -f "$WORK/ready"
mkfifo "$WORK/ready"
ip netns exec "$HOST" "$MOAT" run --guest "stream:$SOCK" --ready-fd 9 \
	--metrics-file "$WORK/metrics.prom" 9>"$WORK/ready" >"$WORK/moat.log" 2>&1 &
MOAT_PID=$!
read -r -t 20 _ <"$WORK/ready" || fail "moat did not become ready"

qemu_start "stream,id=n0,server=off,addr.type=unix,addr.path=$SOCK" \
	"moat.steps=dhcp,ping,http,fetch" "moat.http=$SRV_IP:8080/token.txt" \
	"moat.fetch=$SRV_IP:8080/blob.bin"
qemu_wait
guest_report

serial_has '^MOAT-RESULT link PASS' "the guest found no virtio-net eth0"
serial_has '^MOAT-RESULT dhcp PASS lease=10\.0\.2\.15/24 router=10\.0\.2\.2 ' \
	"the guest did not get the lease 10.0.2.15/24 via 10.0.2.2"
serial_has '^MOAT-RESULT ping PASS received=3 target=10\.0\.2\.2 ' "ping 10.0.2.2 did not get 3 replies"
serial_has "^MOAT-BODY $TOKEN\$" "the guest did not fetch the token through moat"
serial_has '^MOAT-RESULT http PASS' "the HTTP step failed"
serial_has "^MOAT-RESULT fetch PASS bytes=4194304 sha256=$BLOB_SHA " \
	"the guest's copy of the 4 MiB file differs (or the fetch failed)"
serial_has '^MOAT-DONE pass=5 fail=0' "not every guest step passed"
grep -q "GET /token.txt" "$WORK/http.log" || fail "the server did not see the request"
grep -q "client connected" "$WORK/moat.log" || fail "moat did not log QEMU's connection"

kill -0 "$MOAT_PID" 2>/dev/null || fail "moat is not running after the guest powered off"
moat_stop_rc=0
kill -TERM "$MOAT_PID"
wait "$MOAT_PID" || moat_stop_rc=$?
MOAT_PID=
[ $moat_stop_rc -eq 0 ] || fail "moat exited with $moat_stop_rc on SIGTERM"
[ ! -e "$SOCK" ] || fail "moat left its socket behind"
pass "QEMU guest over -netdev stream: DHCP 10.0.2.15, 3 ping replies, HTTP token and 4 MiB intact through moat"
