#!/bin/bash
# t_icmp.sh — ICMP echo through the proxy's ping sockets (issue 7).
#
# The proxy sends echo requests on unprivileged ping sockets
# (SOCK_DGRAM/IPPROTO_ICMP), which the kernel allows only to groups in
# net.ipv4.ping_group_range, a per-namespace sysctl that is "1 0" (nobody)
# by default: the test opens it for gid 0 in $HOST, where moat runs as root.
#  - ping to a public address in $SRV (allowed) gets every reply;
#  - ping to 10.88.0.10 (private: denied by the default policy) gets none,
#    and the denial is counted and reported once as an event;
#  - ping to the gateway is answered by the netstack itself.
source "$(dirname "$0")/lib.sh"
need ping curl

metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }

topo_up
guest_up 1500 static
ip netns exec "$HOST" sysctl -qw net.ipv4.ping_group_range="0 0"
moat_start --events "$WORK/events.jsonl" --metrics "unix:$WORK/metrics.sock"

in_guest ping -c 3 -i 0.2 -W 2 203.0.113.10 >"$WORK/ping.txt" || fail "ping 203.0.113.10: $(cat "$WORK/ping.txt")"
grep -q '3 received' "$WORK/ping.txt" || fail "ping 203.0.113.10: $(tail -2 "$WORK/ping.txt")"
[ "$(metric moat_icmp_echo_upstream_replies_total)" -ge 3 ] || fail "echo replies not counted"
echo "ping 203.0.113.10: 3 of 3 replies through the proxy"

in_guest ping -c 2 -i 0.2 -W 1 10.88.0.10 >"$WORK/ping2.txt" && fail "ping to a denied address got replies"
grep -q ' 0 received' "$WORK/ping2.txt" || fail "ping 10.88.0.10: $(tail -2 "$WORK/ping2.txt")"
[ "$(metric 'moat_policy_denials_total{direction="egress",protocol="icmp"}')" -ge 1 ] || fail "no icmp denial counted"
wait_for 5 grep -q '"event":"denial".*"protocol":"icmp".*"dst":"10.88.0.10"' "$WORK/events.jsonl" ||
	fail "no icmp denial event"
[ "$(grep -c '"protocol":"icmp"' "$WORK/events.jsonl")" = 1 ] || fail "more than one event for one ping session"
echo "ping 10.88.0.10: denied, counted, one event"

in_guest ping -c 2 -i 0.2 -W 2 10.0.2.2 >/dev/null || fail "ping to the gateway failed"
echo "ping 10.0.2.2: answered by the netstack"
pass "allowed and denied echo"
