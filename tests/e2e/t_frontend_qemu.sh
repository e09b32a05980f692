#!/bin/bash
# A real VMM: QEMU (7.2, TCG) boots Debian's kernel with a busybox
# initramfs, its virtio-net NIC attached to moat with -netdev stream (and
# then -netdev dgram). Inside the VM, udhcpc must lease 10.0.2.15 and
# `ping -c 3 10.0.2.2` must get 3 replies; the VM prints what it saw on its
# serial console.
source "$(dirname "$0")/lib.sh"
need qemu-system-x86_64 busybox cpio gzip

KVER=${MOAT_VM_KERNEL_VERSION:-$(ls /lib/modules 2>/dev/null | sort -V | tail -n1)}
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER/kernel
[ -n "$KVER" ] && [ -r "$KERNEL" ] && [ -d "$MODDIR" ] ||
	skip "needs a Debian kernel and its modules (apt-get install linux-image-amd64)"
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"

# build_initramfs: busybox, its libraries, the virtio-net modules and /init.
build_initramfs() {
	local root=$WORK/root m f
	mkdir -p "$root"/{bin,sbin,proc,sys,dev,etc,mods,lib64,usr/share/udhcpc}
	cp /bin/busybox "$root/bin/"
	for f in $(ldd /bin/busybox | grep -o '/[^ ]*'); do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
	done
	for m in $MODS; do
		f=$(find "$MODDIR" -name "$m.ko*" | head -n1)
		[ -n "$f" ] || skip "kernel module $m not found in $MODDIR"
		case "$f" in
		*.ko.xz) xz -dc "$f" >"$root/mods/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$root/mods/$m.ko" ;;
		*) cp "$f" "$root/mods/$m.ko" ;;
		esac
	done
	cat >"$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/busybox sh
case "$1" in
bound|renew)
	busybox ip addr flush dev "$interface"
	busybox ip addr add "$ip/$subnet" dev "$interface"
	busybox ip route add default via "$router" dev "$interface"
	echo "MOATVM lease $ip router $router"
	;;
esac
EOF
	cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $MODS; do /bin/busybox insmod /mods/\$m.ko || echo "MOATVM insmod \$m failed"; done
/bin/busybox ip link set lo up
/bin/busybox ip link set eth0 up
/bin/busybox udhcpc -i eth0 -n -q -t 10 -T 2 -s /usr/share/udhcpc/default.script
/bin/busybox ping -c 3 -W 5 10.0.2.2 | /bin/busybox sed 's/^/MOATVM ping: /'
echo MOATVM done
/bin/busybox poweroff -f
EOF
	chmod 755 "$root/init" "$root/usr/share/udhcpc/default.script"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"
}

# boot NAME NETDEV: boot the VM with -netdev NETDEV; console in $WORK/NAME.console.
boot() {
	local name=$1 netdev=$2
	timeout 300 qemu-system-x86_64 -machine pc,accel=tcg -cpu max -m 256 -smp 1 \
		-nographic -no-reboot -serial "file:$WORK/$name.console" -monitor none \
		-kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3" \
		-netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile= \
		>"$WORK/$name.qemu.log" 2>&1 || true
	grep -q "MOATVM done" "$WORK/$name.console" ||
		{ tail -n 30 "$WORK/$name.console" "$WORK/$name.qemu.log" >&2; fail "$name: the VM did not finish"; }
	grep -q "MOATVM lease 10.0.2.15 router 10.0.2.2" "$WORK/$name.console" ||
		{ grep MOATVM "$WORK/$name.console" >&2; fail "$name: no DHCP lease in the VM"; }
	grep -q "MOATVM ping: 3 packets transmitted, 3 packets received" "$WORK/$name.console" ||
		{ grep MOATVM "$WORK/$name.console" >&2; fail "$name: ping from the VM failed"; }
	echo "$name: $(grep -c MOATVM "$WORK/$name.console") MOATVM lines, lease and 3 replies"
}

# moat_start_guest SPEC: moat in $HOST with --guest SPEC, ready.
moat_start_guest() {
	rm -f "$WORK/ready"
	mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "$1" --ready-fd 9 \
		9>"$WORK/ready" >>"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	read -r -t 20 _ <"$WORK/ready" || fail "moat did not become ready"
}

moat_stop_ok() {
	local rc=0
	kill -TERM "$MOAT_PID" 2>/dev/null || true
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ "$rc" -eq 0 ] || fail "moat exited with $rc on SIGTERM"
}

topo_up
build_initramfs
SOCK=$WORK/net.sock

moat_start_guest "stream:$SOCK"
boot stream "stream,id=n0,server=off,addr.type=unix,addr.path=$SOCK"
moat_stop_ok

moat_start_guest "dgram:$SOCK"
boot dgram "dgram,id=n0,local.type=unix,local.path=$WORK/qemu.sock,remote.type=unix,remote.path=$SOCK"
moat_stop_ok
pass "QEMU's virtio-net over -netdev stream and -netdev dgram: DHCP lease and ping"
