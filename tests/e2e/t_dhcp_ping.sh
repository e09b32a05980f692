#!/bin/bash
# t_dhcp_ping.sh — the guest configures itself by DHCP from moat's netstack
# and pings the gateway (issue 4).
#
# A guest namespace with tap0 and no address runs busybox udhcpc against
# moat. It must be offered and acknowledged 10.0.2.15/24 with router
# 10.0.2.2, DNS 10.0.2.3 and the interface MTU; the udhcpc script applies
# the lease. Then `ping -c 3 10.0.2.2` must get 3 replies and the guest's
# neighbour table must hold the gateway's MAC 52:55:0a:00:02:02 (ARP). A
# second run with --mtu 9000 must get the MTU option 9000.
source "$(dirname "$0")/lib.sh"
need busybox ping

# udhcpc hook: apply the lease and record what it said.
cat >"$WORK/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "$router" dev "$interface"
	echo "ip=$ip subnet=$subnet router=$router dns=$dns mtu=$mtu serverid=$serverid" \
		>"$(dirname "$0")/lease"
	;;
esac
exit 0
EOF
chmod +x "$WORK/udhcpc.sh"

# dhcp_run: udhcpc in the guest; the lease line ends up in $WORK/lease.
dhcp_run() {
	rm -f "$WORK/lease"
	in_guest timeout 20 busybox udhcpc -i tap0 -n -q -f -t 5 -T 1 -s "$WORK/udhcpc.sh" \
		>"$WORK/udhcpc.log" 2>&1 || { cat "$WORK/udhcpc.log" >&2; fail "udhcpc got no lease"; }
	[ -s "$WORK/lease" ] || fail "udhcpc script was not run with a lease"
	cat "$WORK/lease"
}

# stop_moat: SIGTERM, wait, and check the exit status (lib.sh's moat_stop
# cannot be used as $(moat_stop): a subshell cannot wait for our child).
stop_moat() {
	local rc=0
	kill -TERM "$MOAT_PID" 2>/dev/null || true
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ "$rc" -eq 0 ] || fail "moat exited with $rc on SIGTERM ($1)"
}

# lease_field NAME: one value from the recorded lease.
lease_field() { tr ' ' '\n' <"$WORK/lease" | sed -n "s/^$1=//p"; }

topo_up
guest_up 1500
moat_start

dhcp_run
[ "$(lease_field ip)" = 10.0.2.15 ] || fail "leased address is $(lease_field ip), want 10.0.2.15"
[ "$(lease_field subnet)" = 255.255.255.0 ] || fail "subnet mask is $(lease_field subnet)"
[ "$(lease_field router)" = 10.0.2.2 ] || fail "router is $(lease_field router), want 10.0.2.2"
[ "$(lease_field dns)" = 10.0.2.3 ] || fail "DNS is $(lease_field dns), want 10.0.2.3"
[ "$(lease_field mtu)" = 1500 ] || fail "MTU option is '$(lease_field mtu)', want 1500"
[ "$(lease_field serverid)" = 10.0.2.2 ] || fail "server id is $(lease_field serverid)"
in_guest ip -4 addr show dev tap0 | grep -q "inet 10.0.2.15/24" || fail "lease not applied"

out=$(in_guest ping -c 3 -W 2 10.0.2.2) || { echo "$out" >&2; fail "ping 10.0.2.2 failed"; }
echo "$out" | grep -q "3 received" || { echo "$out" >&2; fail "want 3 echo replies"; }
# The DNS address answers too (it is one of moat's own).
in_guest ping -c 1 -W 2 10.0.2.3 >/dev/null || fail "ping 10.0.2.3 failed"

neigh=$(in_guest ip neigh show 10.0.2.2 dev tap0)
echo "$neigh" | grep -qi "lladdr 52:55:0a:00:02:02" ||
	fail "gateway neighbour entry is '$neigh', want lladdr 52:55:0a:00:02:02"

stop_moat "mtu 1500"

# Jumbo frames: the MTU option follows --mtu.
ip netns del "$GUEST"
guest_up 9000
moat_start --mtu 9000
dhcp_run
[ "$(lease_field mtu)" = 9000 ] || fail "MTU option is '$(lease_field mtu)' with --mtu 9000"
out=$(in_guest ping -c 3 -W 2 -s 8000 10.0.2.2) || { echo "$out" >&2; fail "ping -s 8000 failed"; }
echo "$out" | grep -q "3 received" || { echo "$out" >&2; fail "want 3 jumbo echo replies"; }
stop_moat "mtu 9000"

pass "DHCP lease 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3 mtu 1500/9000, ping and ARP ok"
