#!/bin/bash
# e2e_lib.sh — helpers for the real-VMM tests (tests/e2e/t_qemu_*.sh),
# sourced after tests/e2e/lib.sh.
#
# Theory of Operation
#
# qemu_prepare builds (or finds cached) the guest of build-initramfs.sh in
# $MOAT_QEMU_DIR (default: a qemu/ folder next to the moat binary) and skips
# the test when that is impossible. qemu_cmd fills the QEMU_CMD array with a
# command line that boots that guest under TCG with one virtio-net card on
# the given -netdev, the serial console in $WORK/serial.log, and -no-reboot
# so the guest's poweroff ends QEMU. Every QEMU runs under `timeout`, so a
# hung guest costs at most $QEMU_TIMEOUT seconds and never hangs the suite.
# The assertions read the MOAT-RESULT lines init.sh prints.

QEMU_DIR=${MOAT_QEMU_DIR:-$(dirname "$MOAT")/qemu}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-120}
QEMU_PID=
SERIAL=$WORK/serial.log

# qemu_prepare: build the guest (kernel + initramfs) or skip the test.
qemu_prepare() {
	need timeout python3
	local rc=0
	bash "$MOAT_SRC/tests/qemu/build-initramfs.sh" "$QEMU_DIR" >"$WORK/build.log" 2>&1 || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$WORK/build.log" >&2
		skip "cannot prepare the QEMU guest (build-initramfs.sh exit $rc)"
	fi
	# shellcheck disable=SC1091
	source "$QEMU_DIR/guest.env"
	if [ ! -x "$QEMU" ] || [ ! -f "$KERNEL" ] || [ ! -f "$INITRD" ]; then skip "guest.env is incomplete"; fi
}

# qemu_cmd NETDEV APPEND...: QEMU_CMD = a QEMU command line with
# "-netdev NETDEV" as its network and APPEND added to the kernel command line
# (no timeout: qemu_start adds one; a caller that hands QEMU_CMD to
# `moat run --` bounds moat instead). QEMU_EXTRA (an array) goes in front of
# the netdev (vhost-user: the shared memory backend and the chardev), and
# QEMU_NIC_OPTS after the card's own options (",guest_tso4=off", ...).
QEMU_EXTRA=()
QEMU_NIC_OPTS=
qemu_cmd() {
	local netdev=$1; shift
	QEMU_CMD=("$QEMU" -accel "${QEMU_ACCEL:-tcg}" -m 256 -smp 1 "${QEMU_EXTRA[@]}"
		-nodefaults -no-user-config -display none -no-reboot
		-serial "file:$SERIAL"
		-kernel "$KERNEL" -initrd "$INITRD"
		-append "console=ttyS0 quiet loglevel=3 panic=-1 $*"
		-netdev "$netdev"
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=$QEMU_NIC_OPTS")
}

# qemu_start NETDEV APPEND...: boot the guest in $HOST in the background.
qemu_start() {
	qemu_cmd "$@"
	: >"$SERIAL"
	QEMU_T0=$SECONDS
	# umask 0: with -netdev dgram, moat's unprivileged supervisor sends to
	# QEMU's socket, so it must be writable by it (docs/frontends.md).
	(umask 000; exec ip netns exec "$HOST" timeout -k 5 "$QEMU_TIMEOUT" "${QEMU_CMD[@]}") \
		>"$WORK/qemu.log" 2>&1 &
	QEMU_PID=$!
	BG_PIDS+=("$QEMU_PID")
}

# qemu_wait: wait for the guest to power off; fails on the timeout.
qemu_wait() {
	local rc=0
	wait "$QEMU_PID" || rc=$?
	QEMU_PID=
	echo "qemu: exit $rc after $((SECONDS - QEMU_T0)) s"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		serial_dump
		fail "the guest did not power off within ${QEMU_TIMEOUT}s"
	fi
	[ $rc -eq 0 ] || { cat "$WORK/qemu.log" >&2; serial_dump; fail "qemu exited with $rc"; }
}

serial_dump() {
	echo "--- serial console ---" >&2
	tail -n 60 "$SERIAL" >&2 || true
	if [ -s "$WORK/qemu.log" ]; then
		echo "--- qemu ---" >&2
		tail -n 20 "$WORK/qemu.log" >&2 || true
	fi
}

# serial_has PATTERN WHAT: the serial log holds a line matching PATTERN (ERE).
# The console ends lines with CR LF; the CRs are dropped first.
serial_has() {
	tr -d '\r' <"$SERIAL" | grep -E "$1" >/dev/null || { serial_dump; fail "$2"; }
}

# http_up: a python3 http.server on $SRV_IP:8080 serving $WORK/www, with a
# random token in $WORK/www/token.txt (TOKEN) and 4 MiB of random bytes in
# $WORK/www/blob.bin (sha256 BLOB_SHA).
http_up() {
	mkdir -p "$WORK/www"
	TOKEN=moat-qemu-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$TOKEN" >"$WORK/www/token.txt"
	head -c $((4 << 20)) /dev/urandom >"$WORK/www/blob.bin"
	# shellcheck disable=SC2034  # used by the tests that source this file
	BLOB_SHA=$(sha256sum "$WORK/www/blob.bin" | cut -c1-64)
	# Not `python3 -m http.server --bind`: its server_bind() does a reverse
	# DNS lookup of the address, which times out in the namespaces.
	bg ip netns exec "$SRV" python3 -u -c '
import functools, http.server, socketserver, sys
socketserver.TCPServer.allow_reuse_address = True
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
socketserver.TCPServer((sys.argv[1], 8080), h).serve_forever()
' "$SRV_IP" "$WORK/www" >"$WORK/http.log" 2>&1
	wait_for 10 ip netns exec "$SRV" python3 -c "
import socket; socket.create_connection(('$SRV_IP', 8080), 1).close()" ||
		fail "http.server did not start"
}

# guest_report: the guest's timeline, for the log.
guest_report() {
	tr -d '\r' <"$SERIAL" | grep -E '^MOAT-(BOOT|RESULT|DONE)' || true
}

# qemu_network_run FRONTEND NETDEV: start moat in $HOST with --guest FRONTEND,
# boot the guest with `-netdev NETDEV` running the steps dhcp, ping, http and
# fetch, and check every step on the serial console: the lease 10.0.2.15/24
# via 10.0.2.2, 3 ping replies, the HTTP token, the 4 MiB file intact. moat
# must outlive the guest and stop cleanly (exit 0) on SIGTERM.
qemu_network_run() {
	local frontend=$1 netdev=$2 rc=0

	rm -f "$WORK/ready"
	mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "$frontend" --ready-fd 9 ${MOAT_RUN_ARGS:-} \
		--metrics-file "$WORK/metrics.prom" 9>"$WORK/ready" >"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	read -r -t 20 _ <"$WORK/ready" || fail "moat did not become ready"

	qemu_start "$netdev" "moat.steps=dhcp,ping,http,fetch" "moat.http=$SRV_IP:8080/token.txt" \
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
	kill -TERM "$MOAT_PID"
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ $rc -eq 0 ] || fail "moat exited with $rc on SIGTERM"
}
