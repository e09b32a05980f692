#!/bin/bash
# build-initramfs.sh — a tiny bootable guest for the QEMU end-to-end tests.
#
#   tests/qemu/build-initramfs.sh OUTDIR
#
# Theory of Operation
#
# The t_qemu_*.sh tests boot a real Linux guest under a real VMM (Debian's
# qemu-system-x86 7.2, TCG) whose only network card is a virtio-net device
# attached to moat through -netdev stream or -netdev dgram. The guest is
# Debian's own kernel (linux-image-amd64) plus the initramfs built here:
#
#   /bin/busybox          busybox-static (every applet installed as a link)
#   /lib/modules/*.ko     the virtio-net modules of the installed kernel and
#                         their dependencies, uncompressed, with the order to
#                         insmod them in /etc/modules.order (worked out from
#                         modules.dep, so virtio_pci_legacy_dev and friends are
#                         included exactly when this kernel needs them)
#   /etc/udhcpc.sh        applies the lease: address, router, MTU
#   /init                 tests/qemu/init.sh: mounts, loads the modules,
#                         runs DHCP on eth0, then the steps named on the
#                         kernel command line, printing MOAT-RESULT lines to
#                         the serial console, and powers off
#
# OUTDIR receives initramfs.cpio.gz, vmlinuz (a copy of the kernel) and
# guest.env (QEMU=, KERNEL=, INITRD=, KVER= for the tests to source). It also
# caches the busybox-static package; a second run with the same kernel and the
# same inputs finds a stamp and returns at once.
#
# Packages: qemu-system-x86 and linux-image-amd64 are installed with apt-get
# if missing. busybox-static conflicts with Debian's (dynamic) busybox, which
# other tests use, so it is not installed: its .deb is fetched with
# `apt-get download` and unpacked into OUTDIR (an installed busybox-static is
# used as it is). cpio is installed if missing.
#
# Exit status: 0 ready, 77 when the guest cannot be prepared (no root, no
# apt, package missing), 1 on other errors — the tests turn non-zero into a
# skip with the reason printed here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-initramfs.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

say() { echo "build-initramfs: $*" >&2; }
give_up() { say "$*"; exit 77; }

# One builder at a time per OUTDIR (tests may start together).
exec 8>"$out/.lock"
flock -w 600 8 || give_up "timed out waiting for $out/.lock"

apt_updated=
apt_install() {
	[ "$(id -u)" -eq 0 ] || give_up "not root: cannot install $*"
	command -v apt-get >/dev/null || give_up "no apt-get: install $* by hand"
	say "installing $*"
	local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
	if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >"$out/apt.log" 2>&1; then
		if [ -z "$apt_updated" ]; then
			apt_updated=1
			apt-get update -q >>"$out/apt.log" 2>&1 || true
			DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$out/apt.log" 2>&1 ||
				give_up "apt-get install $* failed (see $out/apt.log)"
		else
			give_up "apt-get install $* failed (see $out/apt.log)"
		fi
	fi
}

# The newest installed kernel that has its modules directory.
find_kernel() {
	local k v best=
	for k in /boot/vmlinuz-*; do
		[ -f "$k" ] || continue
		v=${k#/boot/vmlinuz-}
		[ -f "/lib/modules/$v/modules.dep" ] || continue
		if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n1)" = "$v" ]; then
			best=$v
		fi
	done
	echo "$best"
}

# --- packages -------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
command -v qemu-system-x86_64 >/dev/null || give_up "qemu-system-x86_64 not found after install"
command -v cpio >/dev/null || apt_install cpio
KVER=$(find_kernel)
if [ -z "$KVER" ]; then
	apt_install linux-image-amd64
	KVER=$(find_kernel)
fi
[ -n "$KVER" ] || give_up "no kernel with modules under /boot and /lib/modules"
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || give_up "$KERNEL is not readable"

bb=$out/busybox-static/bin/busybox
if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' &&
	[ -x /bin/busybox ]; then
	bb=/bin/busybox		# installed after all (it replaced busybox)
elif [ ! -x "$bb" ]; then
	rm -rf "$out/busybox-static" "$out/deb"
	mkdir -p "$out/deb"
	command -v apt-get >/dev/null || give_up "no apt-get to fetch busybox-static"
	if ! (cd "$out/deb" && apt-get download -q busybox-static >"$out/apt-download.log" 2>&1); then
		apt-get update -q >>"$out/apt-download.log" 2>&1 || true
		(cd "$out/deb" && apt-get download -q busybox-static >>"$out/apt-download.log" 2>&1) ||
			give_up "apt-get download busybox-static failed (see $out/apt-download.log)"
	fi
	dpkg-deb -x "$out/deb"/busybox-static_*.deb "$out/busybox-static"
	rm -rf "$out/deb"
	[ -x "$bb" ] || give_up "busybox-static has no bin/busybox"
fi

# --- cache check ----------------------------------------------------------
stamp=$(cat "$here/build-initramfs.sh" "$here/init.sh" "$here/udhcpc.sh" | sha256sum | cut -c1-16)
stamp="$stamp $KVER $(stat -c %s.%Y "$KERNEL") $(sha256sum "$bb" | cut -c1-16)"
if [ -f "$out/initramfs.cpio.gz" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/guest.env" ] &&
	[ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

# --- the module list ------------------------------------------------------
# Depth-first over modules.dep: a module's dependencies come before it.
moddir=/lib/modules/$KVER
declare -A deps seen
while IFS=: read -r mod rest; do
	deps[$mod]=$rest
done <"$moddir/modules.dep"
# name -> path (modules.dep uses paths; names may spell - as _)
declare -A bypath
for mod in "${!deps[@]}"; do
	n=$(basename "$mod")
	n=${n%%.ko*}
	bypath[${n//-/_}]=$mod
done
order=()
visit() {
	local m=$1 d
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	for d in ${deps[$m]}; do
		visit "$d"
	done
	order+=("$m")
}
builtin_has() { grep -q "/$1.ko\$" "$moddir/modules.builtin" 2>/dev/null; }
for want in virtio_net virtio_pci; do
	if [ -n "${bypath[$want]:-}" ]; then
		visit "${bypath[$want]}"
	elif builtin_has "$want"; then
		:
	else
		give_up "kernel $KVER has no $want module and does not build it in"
	fi
done

# --- the tree -------------------------------------------------------------
root=$out/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,usr/bin,usr/sbin}
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list-full); do
	[ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
: >"$root/etc/modules.order"
for m in "${order[@]}"; do
	name=$(basename "$m")
	case "$name" in
	*.ko) cp "$moddir/$m" "$root/lib/modules/$name" ;;
	*.ko.xz) xz -dc "$moddir/$m" >"$root/lib/modules/${name%.xz}" ;;
	*.ko.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/${name%.zst}" ;;
	*.ko.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/${name%.gz}" ;;
	*) give_up "unknown module format: $m" ;;
	esac
	echo "${name%%.ko*}.ko" >>"$root/etc/modules.order"
done
install -m 755 "$here/init.sh" "$root/init"
install -m 755 "$here/udhcpc.sh" "$root/etc/udhcpc.sh"
echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
# /dev/console must exist before devtmpfs is mounted: the kernel opens it
# for init's stdio.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --owner 0:0 --quiet) | gzip -1 >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$KERNEL" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
cat >"$out/guest.env" <<EOF
QEMU=$(command -v qemu-system-x86_64)
KERNEL=$out/vmlinuz
INITRD=$out/initramfs.cpio.gz
KVER=$KVER
EOF
cp "$root/etc/modules.order" "$out/modules.order"
rm -rf "$root"
echo "$stamp" >"$out/stamp"
say "guest ready in $out (kernel $KVER; modules: $(tr '\n' ' ' <"$out/modules.order"))"
