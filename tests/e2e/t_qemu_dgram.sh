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

rm -f "$WORK/ready"
mkfifo "$WORK/ready"
ip netns exec "$HOST" "$MOAT" run --guest "dgram:$SOCK" --ready-fd 9 \
	--metrics-file "$WORK/metrics.prom" 9>"$WORK/ready" >"$WORK/moat.log" 2>&1 &
MOAT_PID=$!
read -r -t 20 _ <"$WORK/ready" || fail "moat did not become ready"

qemu_start "dgram,id=n0,local.type=unix,local.path=$QSOCK,remote.type=unix,remote.path=$SOCK" \
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

kill -0 "$MOAT_PID" 2>/dev/null || fail "moat is not running after the guest powered off"
moat_stop_rc=0
kill -TERM "$MOAT_PID"
wait "$MOAT_PID" || moat_stop_rc=$?
MOAT_PID=
[ $moat_stop_rc -eq 0 ] || fail "moat exited with $moat_stop_rc on SIGTERM"
rx=$(awk '$1 == "moat_guest_rx_frames_total" {print $2}' "$WORK/metrics.prom" 2>/dev/null)
[ "${rx:-0}" -ge 10 ] || fail "moat_guest_rx_frames_total is '${rx:-}', want >= 10"
pass "QEMU guest over -netdev dgram: DHCP 10.0.2.15, 3 ping replies, HTTP token and 4 MiB intact through moat"
