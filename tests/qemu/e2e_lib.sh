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
# `moat run --` bounds moat instead).
qemu_cmd() {
	local netdev=$1; shift
	QEMU_CMD=("$QEMU" -accel tcg -m 256 -smp 1
		-nodefaults -no-user-config -display none -no-reboot
		-serial "file:$SERIAL"
		-kernel "$KERNEL" -initrd "$INITRD"
		-append "console=ttyS0 quiet loglevel=3 panic=-1 $*"
		-netdev "$netdev"
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=")
}

# qemu_start NETDEV APPEND...: boot the guest in $HOST in the background.
qemu_start() {
	qemu_cmd "$@"
	: >"$SERIAL"
	QEMU_T0=$SECONDS
	ip netns exec "$HOST" timeout -k 5 "$QEMU_TIMEOUT" "${QEMU_CMD[@]}" >"$WORK/qemu.log" 2>&1 &
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
