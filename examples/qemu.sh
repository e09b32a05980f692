#!/bin/bash
# examples/qemu.sh — a QEMU VM behind moat, as an orchestrator would start it.
#
#   examples/qemu.sh [stream|dgram|vhost-user]     (as root; default stream)
#
# Builds moat and the small test guest (Debian's kernel and a busybox
# initramfs, tests/qemu/build-initramfs.sh), makes two network namespaces —
# ex-srv (a web server on 203.0.113.10) and ex-host (where moat and QEMU
# run; its only route leads to ex-srv) — and runs
#
#   moat run --guest stream:SOCK --policy examples/public-only.json \
#            --api API --metrics-file M -- qemu-system-x86_64 ... \
#            -netdev stream,id=n0,server=off,addr.type=unix,addr.path=SOCK
#
# (or -netdev dgram with --guest dgram:SOCK; or with --guest vhost-user:SOCK,
# -netdev vhost-user over a chardev on SOCK and the guest's memory in a
# shared memfd, which moat-vhost maps). moat runs QEMU as its `--`
# command: the VM is killed if it commits a fatal violation, and moat stops
# when it powers off. The guest takes a DHCP lease, pings the gateway and
# fetches a page through moat; the script prints what the guest saw, what
# `moat ctl status` said while it ran, and the metrics. Nothing leaves the
# namespaces. Under TCG the boot takes 10-30 s.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
mode=${1:-stream}
case $mode in stream | dgram | vhost-user) ;; *) echo "usage: $0 [stream|dgram|vhost-user]" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (network namespaces)" >&2; exit 2; }
SRV=ex-srv HOST=ex-host GUEST=ex-guest SRV_IP=203.0.113.10

[ -n "${MOAT:-}" ] || lib_build_moat "$0"
qdir=${MOAT_QEMU_DIR:-$(dirname "$MOAT")/qemu} # shared with the QEMU tests
bash "$top/tests/qemu/build-initramfs.sh" "$qdir" >/dev/null
. "$qdir/guest.env"

lib_example_begin
lib_topology $SRV $HOST $GUEST ex $SRV_IP

mkdir -p "$work/www"
echo "hello from 203.0.113.10, fetched by the VM through moat" >"$work/www/index.html"
lib_http_server $SRV $SRV_IP 8080 "$work/www"

sock=$work/vm.sock
mem=() nic=
case $mode in
stream) netdev="stream,id=n0,server=off,addr.type=unix,addr.path=$sock" ;;
dgram) netdev="dgram,id=n0,local.type=unix,local.path=$work/qemu.sock,remote.type=unix,remote.path=$sock" ;;
vhost-user)
	netdev="vhost-user,id=n0,chardev=chr0"
	mem=(-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem
		-chardev "socket,id=chr0,path=$sock")
	nic=,vectors=0 ;; # QEMU 7.2 under TCG: MSI-X and vhost-user crash (docs/frontends.md)
esac
qemu=("$QEMU" -accel tcg -m 256 -smp 1 "${mem[@]}" -nodefaults -no-user-config -display none -no-reboot
	-serial "file:$work/serial.log" -kernel "$KERNEL" -initrd "$INITRD"
	-append "console=ttyS0 quiet loglevel=3 panic=-1 moat.steps=dhcp,ping,http moat.http=$SRV_IP:8080/index.html"
	-netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=$nic")

echo "== moat run --guest $mode:$sock --policy examples/public-only.json -- qemu (-netdev $mode)"
(umask 000; exec ip netns exec $HOST timeout 180 "$MOAT" run --guest "$mode:$sock" \
	--policy "$top/examples/public-only.json" --api "$work/api.sock" \
	--metrics-file "$work/metrics.prom" --events "$work/events.jsonl" -- "${qemu[@]}") \
	>"$work/moat.log" 2>&1 &
moat=$!
for _ in $(seq 100); do [ -S "$work/api.sock" ] && break; sleep 0.1; done
echo "== moat ctl status (while the VM boots)"
"$MOAT" ctl "$work/api.sock" status || true
rc=0
wait $moat || rc=$?
echo "== the guest's serial console"
tr -d '\r' <"$work/serial.log" | grep -E '^MOAT-(RESULT|BODY|DONE)' || true
echo "== metrics (moat_ lines with values > 0)"
grep -E '^moat_' "$work/metrics.prom" | awk '$NF != 0' | head -25 || true
echo "== moat exited with status $rc (0: the VM powered off)"
tr -d '\r' <"$work/serial.log" | grep -q '^MOAT-DONE pass=4 fail=0' || { tail -20 "$work/moat.log" >&2; exit 1; }
exit $rc
