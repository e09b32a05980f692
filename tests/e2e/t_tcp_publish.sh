#!/bin/bash
# t_tcp_publish.sh — published ports: host clients reach guest servers (DESIGN §5).
#
# moat runs with --publish 127.0.0.1:8088:80 and --publish 127.0.0.1:8089:81.
# A server in the guest listens on port 80 only. From $HOST (where moat runs):
#  - curl http://127.0.0.1:8088/ gets the guest's file, 50 times in a row,
#    and a 20 MiB file arrives intact;
#  - 8089 (guest port 81) is denied by the policy's ingress rules: the client's
#    connection is reset, a denial event with direction ingress is written;
#  - with a policy allowing 81 (SIGHUP), 8089 reaches the guest, where nothing
#    listens: the connection is reset too, but nothing is denied.
source "$(dirname "$0")/lib.sh"
need curl python3 sha256sum

PY="python3 $MOAT_SRC/tests/e2e/proxy_servers.py"
metric() { curl -s --unix-socket "$WORK/metrics.sock" http://moat/metrics | awk -v m="$1" '$1 == m {print $2}'; }
policy() {
	cat >"$WORK/policy.json" <<P
{ "default_egress": "deny", "default_ingress": "deny",
  "rules": [ { "direction": "ingress", "destination": "any", "protocols": ["tcp"],
               "ports": [{ "start": 80, "end": $1 }], "action": "allow" } ] }
P
}

topo_up
guest_up 1500 static
mkdir -p "$WORK/www"
echo "from-the-guest" >"$WORK/www/hello.txt"
head -c 20971520 /dev/urandom >"$WORK/www/big"
want=$(sha256sum <"$WORK/www/big" | cut -d' ' -f1)
bg ip netns exec "$GUEST" $PY http 0.0.0.0 80 "$WORK/www"
wait_for 10 in_guest bash -c "echo >/dev/tcp/127.0.0.1/80" || fail "guest server did not start"
policy 80
moat_start --policy "$WORK/policy.json" --publish 127.0.0.1:8088:80 --publish 127.0.0.1:8089:81 \
	--events "$WORK/events.jsonl" --metrics "unix:$WORK/metrics.sock"
wait_for 5 in_host bash -c "echo >/dev/tcp/127.0.0.1/8088" || fail "nothing listens on 8088"

for i in $(seq 1 50); do
	r=$(in_host curl -sS -m 10 http://127.0.0.1:8088/hello.txt) || fail "request $i failed"
	[ "$r" = from-the-guest ] || fail "request $i: '$r'"
done
got=$(in_host curl -sS -m 60 http://127.0.0.1:8088/big | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "20 MiB from the guest: sha256 $got, want $want"
echo "127.0.0.1:8088 -> guest:80: 50 requests and 20 MiB intact"

in_host curl -sS -m 10 http://127.0.0.1:8089/ >/dev/null 2>&1 && fail "8089 (guest port 81, denied) answered"
wait_for 5 grep -q '"event":"denial".*"direction":"ingress".*"guest_port":81' "$WORK/events.jsonl" ||
	fail "no ingress denial event: $(cat "$WORK/events.jsonl")"
[ "$(metric 'moat_policy_denials_total{direction="ingress",protocol="tcp"}')" = 1 ] || fail "ingress denial not counted"
echo "127.0.0.1:8089 -> guest:81: denied by the policy, event written"

policy 81
kill -HUP "$MOAT_PID"
wait_for 5 bash -c "[ \"\$(curl -s --unix-socket $WORK/metrics.sock http://moat/metrics |
	awk '\$1 == \"moat_policy_generation\" {print \$2}')\" = 2 ]" || fail "reload not taken"
in_host curl -sS -m 10 http://127.0.0.1:8089/ >/dev/null 2>&1 && fail "8089 answered with nothing in the guest"
[ "$(metric 'moat_policy_denials_total{direction="ingress",protocol="tcp"}')" = 1 ] || fail "denied again after the reload"
echo "127.0.0.1:8089 after the reload: allowed, the guest refuses (nothing listens on 81)"
pass "published ports: relay, denial, guest refusal"
