#!/bin/bash
# t_qemu_violation.sh — the termination hook against a real VM.
#
# moat launches QEMU itself (`moat run ... -- qemu-system-x86_64 ...`), so
# QEMU is the VM whose process group moat kills on a fatal violation. The
# policy allows the public internet and makes the metadata service
# (169.254.169.254) a "terminate": true deny rule. The guest gets its lease,
# fetches a token from the public server (the network works), then opens a
# TCP connection to 169.254.169.254:80 and, had it survived, would sleep for
# ten minutes. moat must exit with status 3, QEMU must be dead (it would
# otherwise still be running), the serial log must end after the connect
# step started, and the events file must name the rule and destination.
# The pcap must hold the guest's SYN to the metadata service and no SYN-ACK
# back (connect before accept: the guest never saw the connection open);
# the time from that SYN to the violation event is printed, not asserted.
# Skipped (77) when QEMU or the kernel cannot be installed or prepared.
source "$(dirname "$0")/lib.sh"
source "$MOAT_SRC/tests/qemu/e2e_lib.sh"

qemu_prepare
topo_up
http_up
SOCK=$WORK/moat.sock

cat >"$WORK/policy.json" <<'JSON'
{
  "default_egress": "deny",
  "default_ingress": "allow",
  "rules": [
    { "direction": "egress", "destination": { "group": "public" }, "action": "allow" },
    { "direction": "egress", "destination": { "group": "metadata" }, "action": "deny",
      "terminate": true }
  ]
}
JSON

hold=$(printf 'echo MOAT-HOLD still alive; sleep 600\n' | base64 -w0)
qemu_cmd "stream,id=n0,server=off,addr.type=unix,addr.path=$SOCK" \
	"moat.steps=dhcp,http,connect,sh" "moat.http=$SRV_IP:8080/token.txt" \
	"moat.connect=169.254.169.254:80" "moat.sh=$hold"
QEMU_CMD+=(-pidfile "$WORK/qemu.pid")

# moat is bounded by timeout: should no violation come, the guest would
# hold for ten minutes; timeout's SIGTERM makes moat stop QEMU's group.
: >"$SERIAL"
t0=$SECONDS
ip netns exec "$HOST" timeout -k 10 "$QEMU_TIMEOUT" "$MOAT" run --guest "stream:$SOCK" \
	--policy "$WORK/policy.json" --events "$WORK/events.jsonl" --pcap "$WORK/guest.pcap" \
	--metrics-file "$WORK/metrics.prom" -- "${QEMU_CMD[@]}" >"$WORK/moat.log" 2>&1 &
MOAT_PID=$!
rc=0
wait "$MOAT_PID" || rc=$?
MOAT_PID=
echo "moat: exit $rc after $((SECONDS - t0)) s"
guest_report

# QEMU must be gone (a zombie is dead too: its parent, moat, is gone).
qpid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
[ -n "$qpid" ] || { serial_dump; fail "QEMU wrote no pid file (did it start?)"; }
qemu_alive() {
	[ -r "/proc/$qpid/cmdline" ] && tr '\0' ' ' <"/proc/$qpid/cmdline" | grep -q qemu-system &&
		[ "$(proc_status "$qpid" State)" != Z ]
}
if qemu_alive; then
	sleep 2
	if qemu_alive; then
		kill -KILL "$qpid" 2>/dev/null || true
		fail "QEMU (pid $qpid) is still running after moat exited $rc"
	fi
fi

if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
	serial_dump
	fail "no violation within ${QEMU_TIMEOUT}s"
fi
[ $rc -eq 3 ] || { serial_dump; fail "moat exited with $rc, want 3 (fatal violation)"; }

serial_has '^MOAT-RESULT dhcp PASS lease=10\.0\.2\.15/24 ' "the guest did not get its lease"
serial_has "^MOAT-BODY $TOKEN\$" "the guest could not fetch the token before the violation"
serial_has '^MOAT-STEP connect 169\.254\.169\.254:80' "the guest never tried the metadata service"
if grep -Eq '^MOAT-(RESULT connect|HOLD|DONE)' "$SERIAL"; then
	serial_dump
	fail "the guest went on after connecting to the metadata service"
fi

grep -q 'fatal violation: reason=policy_terminate' "$WORK/moat.log" || fail "moat did not log the violation"
python3 - "$WORK/events.jsonl" <<'PY' || fail "the events file does not describe the violation"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
v = [e for e in ev if e.get("type", e.get("event")) == "violation"]
assert v, "no violation event in %r" % ev
v = v[0]
assert v["reason"] == "policy_terminate", v
assert v["rule"] == 1, v
assert v.get("dst") == "169.254.169.254" and v.get("dst_port") == 80, v
t = [e for e in ev if e.get("type", e.get("event")) == "termination"]
assert t, "no termination event"
print("violation: rule %d dst %s:%d; VM kill took %s us" % (v["rule"], v["dst"], v["dst_port"], t[0].get("kill_us")))
PY
python3 - "$WORK/guest.pcap" "$WORK/events.jsonl" <<'PY' || fail "the pcap check failed"
import datetime, json, struct, sys
data = open(sys.argv[1], "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xa1b2c3d4, "not a pcap"
meta = bytes([169, 254, 169, 254])
syn_ts = None
off = 24
while off + 16 <= len(data):
    sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    f = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 6:
        continue
    ihl = (f[14] & 15) * 4
    tcp = f[14 + ihl:]
    if len(tcp) < 14:
        continue
    src, dst = f[26:30], f[30:34]
    dport, flags = struct.unpack("!H", tcp[2:4])[0], tcp[13]
    if dst == meta and dport == 80 and flags & 0x02 and syn_ts is None:
        syn_ts = sec + usec / 1e6
    assert not (src == meta and flags & 0x12 == 0x12), "the guest got a SYN-ACK from the metadata service"
assert syn_ts is not None, "no SYN to 169.254.169.254:80 in the pcap"
ev = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
v = [e for e in ev if e.get("event") == "violation"][0]
vts = datetime.datetime.strptime(v["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
    tzinfo=datetime.timezone.utc).timestamp()
print("first SYN to the metadata service -> VM killed and reported: %.2f ms" % ((vts - syn_ts) * 1e3))
PY
pass "moat killed QEMU on the metadata connection (exit 3, QEMU gone)"
