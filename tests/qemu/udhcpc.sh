#!/bin/sh
# udhcpc.sh — the udhcpc event script of the QEMU test guest: applies the
# lease (address, router, MTU) to the interface and records it in /tmp/lease
# for /init to report.
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	{
		echo "ip='$ip'"
		echo "mask='${mask:-24}'"
		echo "router='$router'"
		echo "dns='$dns'"
	} >/tmp/lease
	;;
esac
exit 0
