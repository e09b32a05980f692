#!/bin/bash
# setup.sh — install what moat needs to build, test and demo on Debian 12, and
# fetch lwIP 2.1.3's source from Debian's source package. Safe to run twice.
#
#   scripts/setup.sh            packages + lwIP
#   MOAT_SKIP_APT=1 ...         only lwIP (packages already there)
#
# lwIP comes from Debian's `lwip` source package through a private sources
# list, so the machine's own apt configuration is left alone (DESIGN §6). The
# orig tarball's sha256 is checked before it is unpacked into third_party/
# (git-ignored, never committed).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

LWIP_VERSION=2.1.3
LWIP_TARBALL=lwip_${LWIP_VERSION}+dfsg1.orig.tar.xz
LWIP_SHA256=0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24

PACKAGES=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
	libuv1-dev libseccomp-dev libcap-ng-dev libcriterion-dev libjansson-dev
	libmicrohttpd-dev clang-format clang-tidy cppcheck
	iproute2 iputils-ping curl iperf3 busybox dnsutils dnsmasq-base
	netcat-openbsd python3 xz-utils ca-certificates prometheus
	qemu-system-x86 linux-image-amd64 cpio procps apache2-utils ethtool libssl-dev openssl)

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: run as root (it installs packages and, for tests, makes network namespaces)" >&2
		exit 2
	fi
}

install_packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "setup: installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

fetch_lwip() {
	local dest=$top/third_party/lwip-$LWIP_VERSION
	if [ -f "$dest/src/Filelists.cmake" ]; then
		return 0
	fi
	local work=$top/third_party/.apt
	mkdir -p "$work/sources" "$work/lists/partial" "$work/dl"
	# Same mirror and key as the machine's deb entry, as deb-src.
	local uris="http://deb.debian.org/debian" signed=/usr/share/keyrings/debian-archive-keyring.gpg
	local sys=/etc/apt/sources.list.d/debian.sources
	if [ -f "$sys" ]; then
		uris=$(awk '/^URIs:/ {print $2; exit}' "$sys")
		signed=$(awk '/^Signed-By:/ {print $2; exit}' "$sys")
		[ -n "$signed" ] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
	fi
	cat >"$work/sources/moat-src.sources" <<EOF
Types: deb-src
URIs: $uris
Suites: bookworm
Components: main
Signed-By: $signed
EOF
	local apt=(apt-get -q -o Dir::Etc::SourceList=/dev/null
		-o Dir::Etc::SourceParts="$work/sources"
		-o Dir::State::Lists="$work/lists"
		-o Dir::Cache="$work/cache")
	mkdir -p "$work/cache/archives/partial"
	if [ ! -f "$work/dl/$LWIP_TARBALL" ]; then
		"${apt[@]}" update
		(cd "$work/dl" && "${apt[@]}" source --download-only lwip)
	fi
	echo "$LWIP_SHA256  $work/dl/$LWIP_TARBALL" | sha256sum -c --quiet - || {
		echo "setup: $LWIP_TARBALL checksum mismatch" >&2
		exit 1
	}
	rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
	tar -xJf "$work/dl/$LWIP_TARBALL" -C "$dest.tmp" --strip-components=1
	mv "$dest.tmp" "$dest"
	echo "setup: lwIP $LWIP_VERSION unpacked in $dest"
}

need_root
[ -n "${MOAT_SKIP_APT:-}" ] || install_packages
fetch_lwip
