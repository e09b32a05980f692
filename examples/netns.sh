#!/bin/bash
# examples/netns.sh — a network-namespace guest (a container) behind moat.
#
#   examples/netns.sh      (as root)
#
# A container runtime gives its sandbox a network namespace with a tap in
# it; moat attaches to the tap from the host side. This script makes that
# namespace (ex-guest, tap0), a server namespace (ex-srv, 203.0.113.10 and
# 10.88.0.10) and moat's (ex-host), runs
#
#   moat run --guest tap:tap0@/run/netns/ex-guest --policy examples/public-only.json \
#            --api API --publish 127.0.0.1:8022:22
#
# and in the guest: a DHCP lease from moat, a fetch from the public server
# (allowed), one from the private one (denied), while `moat ctl` shows the
# status, the open flows and the published ports. Nothing leaves the
# namespaces.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (network namespaces)" >&2; exit 2; }
SRV=ex-srv HOST=ex-host GUEST=ex-guest SRV_IP=203.0.113.10 PRIV_IP=10.88.0.10

[ -n "${MOAT:-}" ] || lib_build_moat "$0"
lib_example_begin
lib_topology $SRV $HOST $GUEST ex $SRV_IP $PRIV_IP
ip -n $GUEST link set tap0 up
mkdir -p "$work/www"
echo "public page" >"$work/www/index.html"
for ip in $SRV_IP $PRIV_IP; do lib_http_server $SRV $ip 80 "$work/www"; done

ip netns exec $HOST "$MOAT" run --guest tap:tap0@/run/netns/$GUEST \
	--policy "$top/examples/public-only.json" --api "$work/api.sock" \
	--publish 127.0.0.1:8022:22 --ready-fd 9 9>"$work/ready" >"$work/moat.log" 2>&1 &
moat=$!
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done

cat >"$work/udhcpc.sh" <<'S'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
ip route add default via "$router" dev "$interface"
echo "lease: $ip via $router, dns $dns"
S
chmod +x "$work/udhcpc.sh"
echo "== the guest: DHCP from moat"
ip netns exec $GUEST busybox udhcpc -i tap0 -n -q -f -s "$work/udhcpc.sh" 2>/dev/null
echo "== the guest: curl http://$SRV_IP/ (public: allowed)"
ip netns exec $GUEST curl -sS -m 5 "http://$SRV_IP/"
echo "== the guest: curl http://$PRIV_IP/ (private: denied, the connection is refused)"
ip netns exec $GUEST curl -sS -m 5 "http://$PRIV_IP/" || true
ip netns exec $GUEST python3 -c '
import socket, time
s = socket.create_connection(("203.0.113.10", 80)); time.sleep(3)' &
pids+=($!)
sleep 0.5
echo "== moat ctl status / flows / publish"
"$MOAT" ctl "$work/api.sock" status
"$MOAT" ctl "$work/api.sock" flows
"$MOAT" ctl "$work/api.sock" publish
