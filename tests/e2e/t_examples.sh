#!/bin/bash
# t_examples.sh — the integration examples run as an operator runs them
# (examples/README.md): QEMU on -netdev stream, dgram and vhost-user, and a
# network-namespace guest. Each must exit 0 and show what it promises.
source "$(dirname "$0")/lib.sh"
need busybox curl python3 timeout

out=$WORK/out
MOAT=$MOAT bash "$MOAT_SRC/examples/netns.sh" >"$out" 2>&1 || { tail -30 "$out" >&2; fail "netns.sh"; }
grep -q '^lease: 10.0.2.15 via 10.0.2.2' "$out" && grep -q '^public page' "$out" &&
	grep -q '^tcp   egress   10.0.2.15:' "$out" && grep -q '127.0.0.1:8022' "$out" ||
	{ cat "$out" >&2; fail "netns.sh did not show the lease, the fetch, the flow and the port"; }
for mode in stream dgram vhost-user; do
	rc=0
	MOAT=$MOAT timeout 300 bash "$MOAT_SRC/examples/qemu.sh" $mode >"$out" 2>&1 || rc=$?
	if [ $rc -ne 0 ] && grep -q 'build-initramfs: ' "$out" && ! grep -q 'guest ready' "$out"; then
		skip "cannot prepare the QEMU guest here"
	fi
	[ $rc = 0 ] || { tail -30 "$out" >&2; fail "qemu.sh $mode exited $rc"; }
	grep -q '^MOAT-DONE pass=4 fail=0' "$out" && grep -q 'frontend '$mode "$out" ||
		{ cat "$out" >&2; fail "qemu.sh $mode: the guest's steps or ctl status are missing"; }
done
pass "netns.sh, qemu.sh stream, dgram and vhost-user"
