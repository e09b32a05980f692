#!/bin/bash
# bench/tls.sh — an intercepted HTTPS flow against the same flow not
# intercepted, side by side in one run (issue 17).
#
# usage: bench/tls.sh [-n ROUNDS] [-s MIB] [-r REQUESTS]
#   MOAT=path/to/moat   the binary (default: a Release build in build-bench/)
#
# One moat (a tap guest namespace, the e2e namespaces of tests/e2e/lib.sh:
# nothing leaves them) with a policy that intercepts tls.bench.test and not
# plain.bench.test; nginx in the server namespace serves both names from one
# certificate of a CA made here. Per round and name:
#   MiB/s   curl downloading MIB MiB (default 256) over one connection
#   req/s   ab -n REQUESTS -c 4: HTTPS requests with a new connection (and a
#           full handshake, on both legs when intercepted) each
# The names alternate within each round, so both see the same machine.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
rounds=3 mib=256 reqs=400
lib_options "usage: $0 [-n ROUNDS] [-s MIB] [-r REQUESTS]" n=rounds s=mib r=reqs -- "$@"
lib_need_root bench
"$top/scripts/setup.sh" >/dev/null
lib_need_packages nginx-light apache2-utils
[ -n "${MOAT:-}" ] || lib_build_moat bench
export MOAT MOAT_SRC=$top
set --
# shellcheck source=../tests/e2e/lib.sh
. "$top/tests/e2e/lib.sh"
topo_up
guest_up 1500 static
printf '203.0.113.10 tls.bench.test plain.bench.test\n' >"/etc/netns/$GUEST/hosts"

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=bench CA" -keyout ca.key -out ca.pem >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench" \
	-keyout srv.key -out srv.csr >/dev/null 2>&1
printf 'subjectAltName=DNS:tls.bench.test,DNS:plain.bench.test\n' >srv.ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
	-extfile srv.ext -out srv.pem >/dev/null 2>&1
mkdir -p www
head -c $((mib << 20)) /dev/urandom >www/big.bin
echo small >www/small.txt
cat >nginx.conf <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	server {
		listen 203.0.113.10:443 ssl;
		ssl_certificate $WORK/srv.pem;
		ssl_certificate_key $WORK/srv.key;
		root $WORK/www;
		keepalive_requests 1;
	}
}
EOF
cd - >/dev/null
bg ip netns exec "$SRV" nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_for 10 listening "$SRV" tcp 443 || fail "nginx did not start"

cat >"$WORK/policy.json" <<JSON
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [ { "direction": "egress", "destination": { "group": "public" }, "action": "allow" } ],
  "tls": { "intercept": [ { "domain": "tls.bench.test" } ], "upstream_ca": "$WORK/ca.pem" } }
JSON
moat_start --policy "$WORK/policy.json" --tls-ca-out "$WORK/moat-ca.pem"

one() { # one NAME CAFILE: print "NAME MiB/s req/s"
	local n=$1 ca=$2 bps rps
	bps=$(in_guest curl -sS --max-time 300 --cacert "$ca" -o /dev/null -w '%{speed_download}' \
		"https://$n/big.bin")
	rps=$(in_guest ab -q -n "$reqs" -c 4 "https://$n/small.txt" 2>/dev/null |
		awk '/^Requests per second/ {print $4}')
	printf '%-18s %8.1f %8.1f\n' "$n" "$(echo "$bps / 1048576" | bc -l)" "${rps:-0}"
}

out=$WORK/results
printf '%-18s %8s %8s\n' name "MiB/s" "req/s"
for ((r = 1; r <= rounds; r++)); do
	one tls.bench.test "$WORK/moat-ca.pem" >>"$out"
	one plain.bench.test "$WORK/ca.pem" >>"$out"
	tail -n 2 "$out"
done
moat_stop
echo
echo "median of $rounds rounds ($mib MiB downloads, $reqs requests with -c 4):"
python3 - "$out" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rows[f[0]].append((float(f[1]), float(f[2])))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
for k, (b, r) in med.items():
    print("%-18s %8.1f MiB/s %8.1f req/s" % (k, b, r))
t, p = med.get("tls.bench.test"), med.get("plain.bench.test")
if t and p:
    print("intercepted / not: %.2fx the throughput, %.2fx the connection rate" % (t[0] / p[0], t[1] / p[1]))
PY
