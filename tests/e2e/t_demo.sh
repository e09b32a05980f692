#!/bin/bash
# t_demo.sh — the README's first quick-start command, scripts/demo.sh, as a
# user runs it: it builds moat as shipped (no test triggers, its own build
# folder), and the guest's allowed fetch, denied fetch, DNS lookup, metrics
# and events all show, and moat stops with status 0.
source "$(dirname "$0")/lib.sh"
need busybox curl dig dnsmasq python3

out=$WORK/demo.out
rc=0
timeout 600 bash "$MOAT_SRC/scripts/demo.sh" >"$out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -n 40 "$out" >&2; fail "scripts/demo.sh exited $rc"; }

expect() { # what, fixed string
	grep -qF -- "$2" "$out" || { tail -n 60 "$out" >&2; fail "demo: no $1 ('$2')"; }
}
expect "DHCP lease" "lease: ip=10.0.2.15"
expect "allowed page" "hello from the public internet"
expect "DNS answer" "203.0.113.10"
expect "denial event for the private server" '"event":"denial","direction":"egress","protocol":"tcp","dst":"10.88.0.10"'
expect "allowed connection in the metrics" 'moat_tcp_connections_total{result="ok"} 1'
expect "denied connection in the metrics" 'moat_tcp_connections_total{result="denied"} 1'
expect "clean stop" "moat exited with status 0"
pass "demo: lease, allowed fetch, denial, DNS, metrics, events, exit 0"
