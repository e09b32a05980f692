#!/bin/bash
# t_tls.sh — TLS interception and secret injection (issue 17, docs/tls.md).
#
# The server namespace runs an HTTPS server with its own CA (made here with
# the openssl CLI) for four names; it records every request's headers. The
# policy intercepts three of them, with one secret for api.example.test. The
# guest (curl, trusting moat's CA from --tls-ca-out) checks that:
#   - a request to api.example.test carrying the placeholder reaches the
#     server with the real value instead (and the guest gets the answer);
#   - the placeholder sent to other.example.test (intercepted, not the
#     secret's host) gets a 403 from moat, never reaches the server, and is
#     a secret_violation event;
#   - bad.example.test, whose certificate is for another name, is refused
#     (reset, a "tls" event with side server, reason verify);
#   - plain.example.test is not intercepted: the guest sees the server's own
#     certificate;
#   - QUIC (UDP 443) to an intercepted name (looked up through moat) is
#     denied, so that clients fall back to TCP;
#   - a reload that changes the secret (to a value_file) injects the new
#     value; a reload changes upstream_ca (a store without the server's CA
#     refuses it, the right one takes it again), tls.ca (--tls-ca-out gets
#     the new CA, the guest trusting it gets through), refuses an unusable
#     store with moat-tls's reason (the old one stays), and removes and
#     adds the tls section (not intercepted in between);
#   - a server that half-closes first still gets what the guest sends after;
#   - moat-tls runs confined (Seccomp 2, no capabilities), the values
#     appear in no log line, event or metric, and no process of moat's keeps
#     the one from the environment in its environment;
#   - with on_violation "terminate", the placeholder to another host kills
#     the VM (exit 3).
source "$(dirname "$0")/lib.sh"
need curl python3 openssl dnsmasq dig

topo_up
guest_up 1500 static
SECRET=s3cr3t-Value-$RANDOM$RANDOM-xyzzy
PH=MOAT_SECRET_TEST1

# --- the server's CA and certificates --------------------------------------
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=e2e server CA" -keyout ca.key -out ca.pem >/dev/null 2>&1
for n in api other plain wrong half; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n.example.test" \
		-keyout "$n.key" -out "$n.csr" >/dev/null 2>&1
	printf 'subjectAltName=DNS:%s.example.test\n' "$n" >"$n.ext"
	openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-extfile "$n.ext" -out "$n.pem" >/dev/null 2>&1
done
cd - >/dev/null

# An HTTPS server for every name (bad.example.test gets wrong.example.test's
# certificate); it logs "host|header: value" lines and answers "ok".
cat >"$WORK/srv.py" <<'PY'
import http.server, socketserver, ssl, sys
work = sys.argv[1]
ctxs = {}
for n in ("api", "other", "plain", "wrong"):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(f"{work}/{n}.pem", f"{work}/{n}.key")
    ctxs[n] = c
def pick(sock, name, ctx):
    n = (name or "").split(".")[0]
    sock.context = ctxs["wrong" if n == "bad" else n if n in ctxs else "api"]
base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
base.load_cert_chain(f"{work}/api.pem", f"{work}/api.key")
base.sni_callback = pick
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with open(f"{work}/seen.txt", "a") as f:
            for k, v in self.headers.items():
                f.write(f"{self.headers.get('Host')}|{k}: {v}\n")
            f.write(f"{self.headers.get('Host')}|path: {self.path}\n")
        body = b"ok from " + (self.headers.get("Host") or "").encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
s = S(("203.0.113.10", 443), H)
s.socket = base.wrap_socket(s.socket, server_side=True)
s.serve_forever()
PY
bg ip netns exec "$SRV" python3 "$WORK/srv.py" "$WORK"
wait_for 10 listening "$SRV" tcp 443 || fail "the HTTPS server did not start"
# half.example.test:8443 half-closes first: it answers, sends its
# close_notify and its FIN, then records everything the guest still sends
# (TLS 1.3 lets each side close its own direction).
cat >"$WORK/half.py" <<'PY'
import os, socket, ssl, sys
work = sys.argv[1]
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(f"{work}/half.pem", f"{work}/half.key")
ls = socket.create_server(("203.0.113.10", 8443))
while True:
    raw, _ = ls.accept()
    s = c.wrap_socket(raw, server_side=True)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
    s.setblocking(False)
    try:
        s.unwrap()  # sends close_notify, then would wait for the guest's
    except ssl.SSLWantReadError:
        pass
    s.setblocking(True)
    socket.socket(fileno=os.dup(s.fileno())).shutdown(socket.SHUT_WR)
    rest = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            rest += d
    except (ssl.SSLError, OSError):
        pass
    with open(f"{work}/half.txt", "ab") as f:
        f.write(rest)
    s.close()
PY
bg ip netns exec "$SRV" python3 "$WORK/half.py" "$WORK"
wait_for 10 listening "$SRV" tcp 8443 || fail "the half-closing server did not start"
# DNS for the QUIC check: a name the guest looks up through moat is pinned.
bg ip netns exec "$SRV" dnsmasq --no-daemon --no-resolv --no-hosts --user=root \
	--listen-address=203.0.113.10 --bind-interfaces \
	--host-record=api.example.test,203.0.113.10 2>"$WORK/dnsmasq.log"
wait_for 10 listening "$SRV" udp 53 || fail "dnsmasq did not start"

# policy ACTION [SOURCE]: SOURCE is the secret's value_env/value_file member;
# UPSTREAM is tls.upstream_ca, CA a "ca" member; NO_TLS=1 leaves both sections out
policy() {
	local src=${2:-'"value_env": "MOAT_E2E_SECRET"'}
	if [ -n "${NO_TLS:-}" ]; then
		cat <<JSON
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [ { "direction": "egress", "destination": { "group": "public" }, "action": "allow" } ] }
JSON
		return
	fi
	cat <<JSON
{ "default_egress": "deny", "default_ingress": "allow",
  "rules": [ { "direction": "egress", "destination": { "group": "host" }, "protocols": ["udp", "tcp"],
               "ports": [{ "start": 53, "end": 53 }], "action": "allow" },
             { "direction": "egress", "destination": { "group": "public" }, "action": "allow" } ],
  "tls": {
    "intercept": [ { "domain": "api.example.test" }, { "domain": "other.example.test" },
                   { "domain": "bad.example.test" }, { "domain": "half.example.test" } ],
    ${CA:-}
    "upstream_ca": "${UPSTREAM:-$WORK/ca.pem}"
  },
  "secrets": [ { "placeholder": "$PH", $src,
                 "hosts": [ { "domain": "api.example.test" } ], "on_violation": "$1" } ]
}
JSON
}
policy block >"$WORK/policy.json"
MOAT_E2E_SECRET=$SECRET moat_start --policy "$WORK/policy.json" --tls-ca-out "$WORK/moat-ca.pem" \
	--events "$WORK/events.jsonl" --metrics-file "$WORK/metrics.prom"
[ -s "$WORK/moat-ca.pem" ] || fail "--tls-ca-out wrote nothing"
TLSPID=$(moat_child moat-tls)
[ -n "$TLSPID" ] || fail "no moat-tls under moat"
[ "$(proc_status "$TLSPID" Seccomp)" = 2 ] || fail "moat-tls runs without a seccomp filter"
[ "$(proc_status "$TLSPID" CapEff)" = 0000000000000000 ] || fail "moat-tls has capabilities"
# The value came from moat's environment: no process has it there any more.
for p in "$MOAT_PID" $(pgrep -P "$MOAT_PID"); do
	grep -qa "$SECRET" "/proc/$p/environ" && fail "pid $p ($(cat "/proc/$p/comm")) has the value in its environment"
done

gcurl() { # gcurl NAME CAFILE ARGS...: curl https://NAME/ from the guest
	local n=$1 ca=$2
	shift 2
	in_guest curl -sS --max-time 10 --cacert "$ca" --resolve "$n:443:203.0.113.10" "$@" \
		"https://$n/x?k=1"
}

# 1. the secret's host gets the value
out=$(gcurl api.example.test "$WORK/moat-ca.pem" -H "Authorization: Bearer $PH" 2>&1) ||
	fail "the request to api.example.test failed: $out"
[ "$out" = "ok from api.example.test" ] || fail "api.example.test answered '$out'"
grep -q "^api.example.test|Authorization: Bearer $SECRET\$" "$WORK/seen.txt" ||
	fail "the server did not get the secret: $(cat "$WORK/seen.txt")"
grep -q "$PH" "$WORK/seen.txt" && fail "the server saw the placeholder"
issuer=$(echo | in_guest openssl s_client -connect 203.0.113.10:443 -servername api.example.test \
	2>/dev/null | openssl x509 -noout -issuer 2>/dev/null)
grep -q "moat sandbox CA" <<<"$issuer" || fail "api.example.test's certificate is not moat's: $issuer"

# 2. the placeholder toward another intercepted host: 403, never sent
code=$(gcurl other.example.test "$WORK/moat-ca.pem" -o /dev/null -w '%{http_code}' \
	-H "X-Key: $PH" 2>/dev/null || true)
[ "$code" = 403 ] || fail "the placeholder to other.example.test: HTTP $code, want 403"
grep -q "^other.example.test|" "$WORK/seen.txt" && fail "other.example.test got the request"
# ... while a request without it goes through
out=$(gcurl other.example.test "$WORK/moat-ca.pem" 2>&1) || fail "other.example.test: $out"
wait_for 5 grep -q '"event":"secret_violation".*"placeholder":"MOAT_SECRET_TEST1"' \
	"$WORK/events.jsonl" || fail "no secret_violation event"

# 3. a server whose certificate is not for its name
if gcurl bad.example.test "$WORK/moat-ca.pem" >/dev/null 2>&1; then
	fail "bad.example.test (a certificate for another name) went through"
fi
wait_for 5 grep -q '"event":"tls".*"side":"server".*"reason":"verify"' "$WORK/events.jsonl" ||
	fail "no tls verify event: $(grep '"tls"' "$WORK/events.jsonl")"

# 4. not intercepted: the server's own certificate
out=$(gcurl plain.example.test "$WORK/ca.pem" 2>&1) || fail "plain.example.test: $out"
gcurl plain.example.test "$WORK/moat-ca.pem" >/dev/null 2>&1 &&
	fail "plain.example.test was intercepted"

# 5. QUIC (UDP 443) to an intercepted name is denied: clients fall back to TCP
in_guest dig @10.0.2.3 +time=5 +tries=1 +short api.example.test | grep -q 203.0.113.10 ||
	fail "api.example.test does not resolve through moat"
in_guest python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"\xc0quic-initial", ("203.0.113.10", 443))'
wait_for 5 grep -q '"event":"denial".*"protocol":"udp".*"dst_port":443' "$WORK/events.jsonl" ||
	fail "QUIC to an intercepted name was not denied"

# 5b. the server half-closes first: what the guest sends after its FIN
# still reaches it (moat-tls hands it over before the flow ends)
in_guest python3 - "$WORK/moat-ca.pem" <<'PY' || fail "the half-closed flow failed in the guest"
import os, socket, ssl, sys
c = ssl.create_default_context(cafile=sys.argv[1])
s = c.wrap_socket(socket.create_connection(("203.0.113.10", 8443), timeout=10),
                  server_hostname="half.example.test")
s.sendall(b"GET / HTTP/1.1\r\nHost: half.example.test\r\n\r\n")
got = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    got += d
assert got.endswith(b"\r\n\r\nhello\n"), got
hdr = b"POST /tail HTTP/1.1\r\nHost: half.example.test\r\nContent-Length: 200000\r\n\r\n"
s.sendall(hdr + b"x" * 199996 + b"-end")
socket.socket(fileno=os.dup(s.fileno())).shutdown(socket.SHUT_WR)
s.settimeout(10)
try:
    s.recv(1)
except (ssl.SSLError, OSError):
    pass
PY
wait_for 10 grep -q -- "-end" "$WORK/half.txt" ||
	fail "the bytes sent after the server's FIN were lost ($(wc -c <"$WORK/half.txt" 2>/dev/null) bytes)"
[ "$(wc -c <"$WORK/half.txt")" = 200072 ] || fail "half-closed: $(wc -c <"$WORK/half.txt") bytes, want 200072"

# 6. a reload that changes the secret: the new value is injected from then on
SECRET2=second-$SECRET
echo "$SECRET2" >"$WORK/secret2.txt"
policy block "\"value_file\": \"$WORK/secret2.txt\"" >"$WORK/policy.json"
kill -HUP "$MOAT_PID"
wait_for 5 grep -q "configuration reloaded: 1 secret" "$WORK/moat.log" ||
	fail "moat-tls did not take the reloaded secrets: $(tail -5 "$WORK/moat.log")"
gcurl api.example.test "$WORK/moat-ca.pem" -H "Authorization: Bearer $PH" >/dev/null 2>&1 ||
	fail "the request after the reload failed"
grep -q "^api.example.test|Authorization: Bearer $SECRET2\$" "$WORK/seen.txt" ||
	fail "the reloaded secret was not injected"

# 7. the values are nowhere but at the server (the metrics file is written at the stop)
moat_stop
[ "$MOAT_RC" = 0 ] || fail "moat exited $MOAT_RC"
for f in "$WORK/moat.log" "$WORK/events.jsonl" "$WORK/metrics.prom"; do
	grep -q "$SECRET" "$f" && fail "the secret's value is in $f"
done
[ "$(grep -c "^api.example.test|Authorization: Bearer $SECRET\$" "$WORK/seen.txt")" = 1 ] ||
	fail "the first value was sent after the reload"
m() { awk -v k="$1" '$1 == k {print $2}' "$WORK/metrics.prom"; }
[ "$(m moat_tls_secret_injections_total)" = 2 ] &&
	[ "$(m moat_tls_secret_violations_total)" = 1 ] &&
	[ "$(m 'moat_tls_failures_total{side="server",reason="verify"}')" = 1 ] &&
	[ "$(m moat_tls_intercepted_total)" -ge 5 ] ||
	fail "the TLS counters: $(grep '^moat_tls' "$WORK/metrics.prom")"

# 8. reloads of the files and of the section itself
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=operator CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign -keyout op.key -out op.pem >/dev/null 2>&1
chmod 644 op.key # moat reads its files as the user it runs as (nobody)
printf 'not a certificate\n' >junk.pem
cd - >/dev/null
reloads=0
reload() { # reload: SIGHUP, then wait for the proxy's next generation
	reloads=$((reloads + 1))
	kill -HUP "$MOAT_PID"
	wait_for 5 grep -q "policy generation $((reloads + 1)) in force" "$WORK/moat.log" ||
		fail "reload $reloads not in force: $(tail -3 "$WORK/moat.log")"
}
api() { gcurl api.example.test "$@" -H "Authorization: Bearer $PH"; }
policy block >"$WORK/policy.json"
MOAT_E2E_SECRET=$SECRET moat_start --policy "$WORK/policy.json" --tls-ca-out "$WORK/moat-ca.pem"
cp "$WORK/moat-ca.pem" "$WORK/moat-ca-first.pem"
api "$WORK/moat-ca.pem" >/dev/null 2>&1 || fail "reloads: the first request failed"
# 8a. a store without the server's CA: the server no longer verifies; back again
UPSTREAM=/etc/ssl/certs/ca-certificates.crt policy block >"$WORK/policy.json"
reload
api "$WORK/moat-ca.pem" >/dev/null 2>&1 && fail "a server verified against a store without its CA"
policy block >"$WORK/policy.json"
reload
api "$WORK/moat-ca.pem" >/dev/null 2>&1 || fail "the upstream_ca given back was not taken"
# 8b. an unusable store is refused with moat-tls's reason; the old one stays
UPSTREAM=$WORK/junk.pem policy block >"$WORK/policy.json"
kill -HUP "$MOAT_PID"
wait_for 5 grep -q "policy reload refused.*moat-tls: .*junk.pem" "$WORK/moat.log" ||
	fail "an unusable upstream_ca was not refused: $(tail -3 "$WORK/moat.log")"
api "$WORK/moat-ca.pem" >/dev/null 2>&1 || fail "a refused reload changed moat-tls"
# 8c. an operator's CA: --tls-ca-out gets it, a guest trusting it gets through
CA="\"ca\": { \"cert\": \"$WORK/op.pem\", \"key\": \"$WORK/op.key\" }," policy block \
	>"$WORK/policy.json"
reload
wait_for 5 cmp -s "$WORK/moat-ca.pem" "$WORK/op.pem" ||
	fail "--tls-ca-out does not hold the reloaded CA"
api "$WORK/op.pem" >/dev/null 2>&1 || fail "the reloaded CA's leaves do not verify"
api "$WORK/moat-ca-first.pem" >/dev/null 2>&1 && fail "the first CA still signs leaves"
# the same files and sections again: moat-tls changes nothing (no flow cut)
n=$(grep -c "configuration reloaded" "$WORK/moat.log")
reload
sleep 0.5
[ "$(grep -c "configuration reloaded" "$WORK/moat.log")" = "$n" ] ||
	fail "a reload that changed nothing for moat-tls made it reload"
# 8d. the tls section removed: not intercepted (the server's own certificate,
# the placeholder untouched); added again: intercepted
NO_TLS=1 policy >"$WORK/policy.json"
reload
api "$WORK/ca.pem" >/dev/null 2>&1 || fail "without a tls section the flow was not relayed as it is"
grep -q "^api.example.test|Authorization: Bearer $PH\$" "$WORK/seen.txt" ||
	fail "without a tls section the request was changed"
CA="\"ca\": { \"cert\": \"$WORK/op.pem\", \"key\": \"$WORK/op.key\" }," policy block \
	>"$WORK/policy.json"
reload
api "$WORK/op.pem" >/dev/null 2>&1 || fail "the tls section added again is not intercepted"
[ "$(grep -c "^api.example.test|Authorization: Bearer $SECRET\$" "$WORK/seen.txt")" = 6 ] ||
	fail "reloads: the value reached the server $(grep -c "Bearer $SECRET\$" "$WORK/seen.txt") times, want 6"
# 8e. removing tls.ca alone is refused (a new CA would not be trusted)
policy block >"$WORK/policy.json"
kill -HUP "$MOAT_PID"
wait_for 5 grep -q "policy reload refused.*tls.ca is removed" "$WORK/moat.log" ||
	fail "removing tls.ca was not refused"
moat_stop
cp "$WORK/moat.log" "$WORK/moat-reloads.log" # for KEEP_WORK=1
[ "$MOAT_RC" = 0 ] || fail "moat (reloads) exited $MOAT_RC"

# 9. a tls section added to a moat started without one is refused
NO_TLS=1 policy >"$WORK/policy.json"
moat_start --policy "$WORK/policy.json"
policy block >"$WORK/policy.json"
kill -HUP "$MOAT_PID"
wait_for 5 grep -q "policy reload refused.*a tls section can be added by a reload only" \
	"$WORK/moat.log" || fail "a tls section added at reload was not refused"
moat_stop

# 10. terminate: the VM dies
policy terminate >"$WORK/policy2.json"
rm -f "$WORK/ready"
mkfifo "$WORK/ready"
MOAT_E2E_SECRET=$SECRET ip netns exec "$HOST" "$MOAT" run --guest "tap:tap0@/run/netns/$GUEST" \
	--ready-fd 9 --policy "$WORK/policy2.json" --tls-ca-out "$WORK/moat-ca2.pem" \
	-- sleep 600 9>"$WORK/ready" >"$WORK/moat2.log" 2>&1 &
MOAT_PID=$!
read -r -t 20 _ <"$WORK/ready" || fail "moat (terminate) did not become ready"
gcurl other.example.test "$WORK/moat-ca2.pem" -H "X-Key: $PH" >/dev/null 2>&1 || true
rc=0
timeout 20 tail --pid="$MOAT_PID" -f /dev/null || true
wait "$MOAT_PID" || rc=$?
MOAT_PID=
[ "$rc" = 3 ] || { cat "$WORK/moat2.log" >&2; fail "terminate: moat exited $rc, want 3"; }
grep -q "reason=secret_violation" "$WORK/moat2.log" || fail "the violation is not logged"
grep -q "$SECRET" "$WORK/moat2.log" && fail "the secret's value is in the log"
pass "secret injected for its host, 403 elsewhere, a bad server refused, plain names untouched, QUIC denied, reloads of secrets, files and the section, terminate kills"
