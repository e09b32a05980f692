#!/bin/sh
# init.sh — /init of the QEMU test guest (see build-initramfs.sh).
#
# Theory of Operation
#
# Runs as PID 1 in a busybox-static initramfs with the serial console
# (console=ttyS0) as stdio. It mounts proc/sys/dev, insmods the virtio-net
# modules in the order of /etc/modules.order, waits for eth0, and then runs
# the steps listed in moat.steps= (comma separated, default
# "dhcp,ping,http,fetch,connect,sh"); a step whose parameter is not on the command
# line is skipped. Parameters, all from /proc/cmdline:
#
#   moat.steps=a,b,...   which steps, in this order
#   moat.ping=ADDR       ping -c 3 ADDR (default: the DHCP router)
#   moat.http=HOST:PORT[/PATH]  wget the URL; each body line is echoed as
#                        "MOAT-BODY <line>"
#   moat.fetch=HOST:PORT/PATH  wget a (binary) file; only its size and
#                        sha256 are printed
#   moat.connect=HOST:PORT  nc to HOST:PORT and send one HTTP request line
#   moat.sh=BASE64       a shell script, base64-encoded (no spaces needed)
#
# Every step prints "MOAT-STEP <name> ..." when it starts and
# "MOAT-RESULT <name> PASS|FAIL <details>" when it ends; "MOAT-DONE pass=N
# fail=M" closes the run, and then the guest powers off (QEMU runs with
# -no-reboot, so it exits). Timestamps are the guest's uptime, for the boot
# time report. If anything hangs, the caller's timeout kills QEMU.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /run
mount -t tmpfs tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "MOAT-$*"; }
PASSED=0
FAILED=0
result() { # result STEP PASS|FAIL DETAILS...
	step=$1 verdict=$2
	shift 2
	say "RESULT $step $verdict $* (t=$(up))"
	if [ "$verdict" = PASS ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
finish() {
	say "DONE pass=$PASSED fail=$FAILED (t=$(up))"
	sync
	poweroff -f
	sleep 5
}

STEPS=dhcp,ping,http,fetch,connect,sh
PING="" HTTP="" FETCH="" CONNECT="" SH=""
for w in $(cat /proc/cmdline); do
	case "$w" in
	moat.steps=*) STEPS=${w#moat.steps=} ;;
	moat.ping=*) PING=${w#moat.ping=} ;;
	moat.http=*) HTTP=${w#moat.http=} ;;
	moat.fetch=*) FETCH=${w#moat.fetch=} ;;
	moat.connect=*) CONNECT=${w#moat.connect=} ;;
	moat.sh=*) SH=${w#moat.sh=} ;;
	esac
done
say "BOOT init started (t=$(up)) kernel $(uname -r)"

# --- modules and the link --------------------------------------------------
ok=1
for m in $(cat /etc/modules.order); do
	insmod "/lib/modules/$m" || { ok=; echo "insmod $m failed"; }
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ -z "$ok" ] || [ ! -e /sys/class/net/eth0 ]; then
	result link FAIL "no eth0 (modules: $(tr '\n' ' ' </etc/modules.order))"
	finish
fi
ip link set lo up
ip link set eth0 up
result link PASS "eth0 $(cat /sys/class/net/eth0/address)"

# --- steps -----------------------------------------------------------------
step_dhcp() {
	rm -f /tmp/lease
	udhcpc -i eth0 -n -q -t 5 -T 2 -s /etc/udhcpc.sh 2>&1
	if [ -s /tmp/lease ]; then
		. /tmp/lease
		result dhcp PASS "lease=$ip/$mask router=$router dns=$dns mtu=$(cat /sys/class/net/eth0/mtu)"
		[ -n "$PING" ] || PING=${router%% *}
	else
		result dhcp FAIL "no lease"
	fi
}

step_ping() {
	[ -n "$PING" ] || { say "STEP ping skipped (no moat.ping and no router)"; return; }
	say "STEP ping $PING"
	out=$(ping -c 3 -W 3 "$PING" 2>&1)
	echo "$out"
	rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
	if [ "${rx:-0}" -eq 3 ]; then
		result ping PASS "received=3 target=$PING"
	else
		result ping FAIL "received=${rx:-0} target=$PING"
	fi
}

step_http() {
	[ -n "$HTTP" ] || { say "STEP http skipped (no moat.http)"; return; }
	say "STEP http http://$HTTP"
	rm -f /tmp/body
	# Not wget -T: busybox-static 1.35's wget segfaults with it.
	if timeout 20 wget -q -O /tmp/body "http://$HTTP" 2>/tmp/wget.err; then
		sed 's/^/MOAT-BODY /' /tmp/body
		result http PASS "bytes=$(wc -c </tmp/body) sha256=$(sha256sum /tmp/body | cut -c1-64)"
	else
		cat /tmp/wget.err
		result http FAIL "wget http://$HTTP failed"
	fi
}

step_fetch() {
	[ -n "$FETCH" ] || { say "STEP fetch skipped (no moat.fetch)"; return; }
	say "STEP fetch http://$FETCH"
	rm -f /tmp/fetch
	if timeout 60 wget -q -O /tmp/fetch "http://$FETCH" 2>/tmp/wget.err; then
		result fetch PASS "bytes=$(wc -c </tmp/fetch) sha256=$(sha256sum /tmp/fetch | cut -c1-64)"
	else
		cat /tmp/wget.err
		result fetch FAIL "wget http://$FETCH failed"
	fi
	rm -f /tmp/fetch
}

step_connect() {
	[ -n "$CONNECT" ] || { say "STEP connect skipped (no moat.connect)"; return; }
	h=${CONNECT%:*} p=${CONNECT##*:}
	say "STEP connect $h:$p"
	if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc -w 5 "$h" "$p" >/tmp/conn 2>&1; then
		result connect PASS "connected to $h:$p, $(wc -c </tmp/conn) bytes back"
	else
		result connect FAIL "nc $h:$p failed: $(head -c 200 /tmp/conn)"
	fi
}

step_sh() {
	[ -n "$SH" ] || return 0
	say "STEP sh"
	echo "$SH" | base64 -d >/tmp/test.sh || { result sh FAIL "bad base64"; return; }
	if sh /tmp/test.sh; then result sh PASS; else result sh FAIL "status $?"; fi
}

for s in $(echo "$STEPS" | tr ',' ' '); do
	case "$s" in
	dhcp | ping | http | fetch | connect | sh) "step_$s" ;;
	*) result "$s" FAIL "unknown step" ;;
	esac
done
finish
