#!/bin/bash
# demo.sh — set everything up and show moat's main job on an embedded default.
#
#   scripts/demo.sh      (as root)
#
# Builds moat, then makes three network namespaces (the layout of
# ../shared/bench/topology.sh, under the prefix "moat-demo"):
#   moat-demo-srv    the "outside world": a web server and a DNS server on
#                    203.0.113.10 (public), another web server on 10.88.0.10 (private)
#   moat-demo-host   where moat runs; its only route leads to moat-demo-srv
#   moat-demo-guest  the guest: a tap device, configured by moat's DHCP server
# and runs moat with the DEFAULT policy (public internet and DNS allowed,
# private/host/metadata denied), metrics and events. The guest then fetches a
# page from the public server (allowed), tries the private one (denied), and
# looks a name up. The metrics and events that show it are printed, and
# everything is torn down. Nothing leaves the machine. Safe to run twice.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
P=moat-demo SRV=moat-demo-srv HOST=moat-demo-host GUEST=moat-demo-guest
SRV_IP=203.0.113.10 PRIV_IP=10.88.0.10 METRICS=127.0.0.1:9464

"$top/scripts/setup.sh"
cmake -S "$top" -B "$top/build-demo" -G Ninja >/dev/null
ninja -C "$top/build-demo" moat >/dev/null
MOAT=$top/build-demo/moat

work=$(mktemp -d /tmp/moat-demo.XXXXXX)
chmod 755 "$work"
pids=()
moat_pid=
cleanup() {
	[ -n "$moat_pid" ] && kill "$moat_pid" 2>/dev/null && wait "$moat_pid" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for ns in $GUEST $HOST $SRV; do ip netns del $ns 2>/dev/null || true; done
	rm -rf "/etc/netns/$HOST" "/etc/netns/$SRV" "$work"
}
trap cleanup EXIT
for ns in $GUEST $HOST $SRV; do ip netns del $ns 2>/dev/null || true; done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "topology: $SRV (servers) <- $HOST (moat) <- $GUEST (guest, tap0)"
lib_topology $SRV $HOST $GUEST m $SRV_IP $PRIV_IP
ip -n $GUEST link set tap0 up

# Servers in the "outside world". Each namespace gets its own resolv.conf
# (`ip netns exec` shows /etc/netns/NS/resolv.conf): python's http.server
# looks its address up at start and would wait for the machine's resolver.
mkdir -p /etc/netns/$SRV
echo "nameserver 127.0.0.1" >/etc/netns/$SRV/resolv.conf
mkdir -p "$work/www"
echo "hello from the public internet (203.0.113.10)" >"$work/www/index.html"
ip netns exec $SRV python3 -m http.server 80 --bind $SRV_IP --directory "$work/www" \
	>/dev/null 2>&1 &
pids+=($!)
ip netns exec $SRV python3 -m http.server 80 --bind $PRIV_IP --directory "$work/www" \
	>/dev/null 2>&1 &
pids+=($!)
ip netns exec $SRV dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=$SRV_IP \
	--bind-interfaces --address=/www.demo.example/$SRV_IP --pid-file="$work/dnsmasq.pid" \
	>/dev/null 2>&1 &
pids+=($!)
# moat reads the host's resolv.conf at start; `ip netns exec` shows it this one.
mkdir -p /etc/netns/$HOST
echo "nameserver $SRV_IP" >/etc/netns/$HOST/resolv.conf
for ip in $SRV_IP $PRIV_IP; do
	for _ in $(seq 100); do
		ip netns exec $SRV curl -sf -o /dev/null "http://$ip/" && break
		sleep 0.1
	done
done
for _ in $(seq 100); do
	[ -n "$(ip netns exec $SRV dig +short +time=1 +tries=1 @$SRV_IP www.demo.example)" ] && break
	sleep 0.1
done

say "moat run (default policy) with metrics on $METRICS and events on $work/events.jsonl"
mkfifo "$work/ready"
ip netns exec $HOST "$MOAT" run --guest tap:tap0@/run/netns/$GUEST \
	--metrics $METRICS --events "$work/events.jsonl" --ready-fd 9 \
	9>"$work/ready" 2>"$work/moat.log" &
moat_pid=$!
read -r -t 20 _ <"$work/ready" || { cat "$work/moat.log"; exit 1; }
sv=$moat_pid
printf '%-16s %-8s %s\n' PROCESS PID "SECCOMP NO_NEW_PRIVS CAP_EFF"
for pid in $sv $(pgrep -P $sv); do
	printf '%-16s %-8s %s %s %s\n' "$(cat /proc/$pid/comm)" $pid \
		"$(awk '/^Seccomp:/{print $2}' /proc/$pid/status)" \
		"$(awk '/^NoNewPrivs:/{print $2}' /proc/$pid/status)" \
		"$(awk '/^CapEff:/{print $2}' /proc/$pid/status)"
done

say "guest: DHCP from moat"
cat >"$work/udhcpc.sh" <<'EOF2'
#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	for r in $router; do ip route add default via "$r" dev "$interface"; done
	echo "lease: ip=$ip router=$router dns=$dns mtu=${mtu:-}" ;;
esac
EOF2
chmod +x "$work/udhcpc.sh"
ip netns exec $GUEST busybox udhcpc -i tap0 -n -q -f -s "$work/udhcpc.sh" 2>/dev/null

say "guest: ping the gateway 10.0.2.2"
ip netns exec $GUEST ping -c 2 -W 2 10.0.2.2 || true

say "guest: curl http://$SRV_IP/ (public: allowed)"
ip netns exec $GUEST curl -sS -m 5 http://$SRV_IP/ || true

say "guest: curl http://$PRIV_IP/ (private: denied by the default policy)"
ip netns exec $GUEST curl -sS -m 5 http://$PRIV_IP/ || true

say "guest: dig @10.0.2.3 www.demo.example (DNS through moat's forwarder)"
ip netns exec $GUEST dig +short +time=3 +tries=2 @10.0.2.3 www.demo.example || true

say "metrics (curl http://$METRICS/metrics, moat_ lines with values > 0)"
ip netns exec $HOST curl -sS -m 5 "http://$METRICS/metrics" |
	grep -E '^moat_' | awk '$NF != 0' || true

say "events ($work/events.jsonl)"
cat "$work/events.jsonl" 2>/dev/null || true

say "stopping moat (SIGTERM)"
kill -TERM $moat_pid
rc=0
wait $moat_pid || rc=$?
moat_pid=
echo "moat exited with status $rc"
