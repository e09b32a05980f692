#!/bin/bash
# frontend_lib.sh — helpers for the guest-frontend tests (t_frontend_*.sh),
# sourced after lib.sh. The guest is still a network namespace with tap0;
# a stand-in VMM from tests/tools (stream_adapter, shm_vmm) bridges that tap
# to moat's socket, the way QEMU, vfkit or a VMM linked against
# shm/moat_shm.h would.

# The tools sit next to the moat binary's build tree.
TOOLS=${MOAT_TOOLS:-$(dirname "$MOAT")/tests/tools}
[ -x "$TOOLS/stream_adapter" ] && [ -x "$TOOLS/shm_vmm" ] ||
	skip "test tools not built in $TOOLS (set MOAT_TOOLS)"

# moat_start_guest SPEC ARGS...: start moat in $HOST with --guest SPEC and
# wait until it is ready.
moat_start_guest() {
	local spec=$1; shift
	rm -f "$WORK/ready"
	mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "$spec" --ready-fd 9 "$@" \
		9>"$WORK/ready" >>"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	local line
	if ! read -r -t 20 line <"$WORK/ready"; then
		fail "moat did not become ready"
	fi
}

# moat_stop_ok WHAT: SIGTERM, wait, and insist on exit status 0 (lib.sh's
# moat_stop cannot be used as $(moat_stop): a subshell cannot wait for our
# child).
moat_stop_ok() {
	local rc=0
	kill -TERM "$MOAT_PID" 2>/dev/null || true
	wait "$MOAT_PID" || rc=$?
	MOAT_PID=
	[ "$rc" -eq 0 ] || fail "moat exited with $rc on SIGTERM ($1)"
}

# vmm NAME CMD...: run a stand-in VMM inside the guest namespace, in the
# background; its pid goes to VMM_PID and its output to $WORK/NAME.log.
vmm() {
	local name=$1; shift
	# umask 0: a dgram VMM's socket must be writable by moat's unprivileged
	# supervisor, which sends the guest's frames to it (docs/architecture.md).
	(umask 000; exec ip netns exec "$GUEST" "$@") >"$WORK/$name.log" 2>&1 &
	VMM_PID=$!
	BG_PIDS+=($VMM_PID)
}

# vmm_stop: stop the last stand-in VMM.
vmm_stop() {
	kill "$VMM_PID" 2>/dev/null || true
	wait "$VMM_PID" 2>/dev/null || true
}

# A udhcpc event script: configure tap0 from the lease.
dhcp_script() {
	cat >"$WORK/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	echo "$ip" >"$(dirname "$0")/lease.ip"
	;;
esac
exit 0
EOF
	chmod 755 "$WORK/udhcpc.sh"
}

# dhcp_and_ping: the guest gets its address by DHCP and pings the gateway.
dhcp_and_ping() {
	dhcp_script
	rm -f "$WORK/lease.ip"
	in_guest ip addr flush dev tap0
	in_guest busybox udhcpc -i tap0 -f -q -n -t 5 -T 1 -s "$WORK/udhcpc.sh" \
		>"$WORK/udhcpc.log" 2>&1 || { cat "$WORK/udhcpc.log" >&2; fail "no DHCP lease"; }
	[ "$(cat "$WORK/lease.ip" 2>/dev/null)" = 10.0.2.15 ] ||
		fail "lease is '$(cat "$WORK/lease.ip" 2>/dev/null)', want 10.0.2.15"
	in_guest ip -4 addr show dev tap0 | grep -q "inet 10.0.2.15/24" ||
		fail "tap0 was not configured with 10.0.2.15/24"
	local out
	out=$(in_guest ping -c 3 -i 0.3 -W 3 10.0.2.2 2>&1) || true
	echo "$out" | grep -q "3 packets transmitted, 3 received" ||
		{ echo "$out" >&2; fail "ping 10.0.2.2 did not get 3 replies"; }
}

# pcap_check FILE: the file is a classic pcap that holds the DHCP exchange
# and the ICMP echo requests and replies, in both directions.
pcap_check() {
	python3 - "$1" <<'EOF' || fail "pcap check failed"
import struct, sys
data = open(sys.argv[1], "rb").read()
magic, vmaj, vmin, _, _, snap, link = struct.unpack("<IHHiIII", data[:24])
assert magic == 0xa1b2c3d4, "magic %x" % magic
assert (vmaj, vmin) == (2, 4) and link == 1, "version/linktype"
off, n = 24, 0
seen = {"dhcp_client": 0, "dhcp_server": 0, "echo_request": 0, "echo_reply": 0, "arp": 0}
while off < len(data):
    assert off + 16 <= len(data), "truncated record header"
    sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    assert usec < 1000000 and incl <= orig and incl <= snap, "bad record header"
    f = data[off + 16:off + 16 + incl]
    assert len(f) == incl, "truncated frame"
    off += 16 + incl
    n += 1
    etype = struct.unpack("!H", f[12:14])[0]
    if etype == 0x0806:
        seen["arp"] += 1
    if etype != 0x0800:
        continue
    ihl = (f[14] & 15) * 4
    proto = f[23]
    l4 = f[14 + ihl:]
    if proto == 17:
        sport, dport = struct.unpack("!HH", l4[:4])
        if (sport, dport) == (68, 67):
            seen["dhcp_client"] += 1
        if (sport, dport) == (67, 68):
            seen["dhcp_server"] += 1
    if proto == 1:
        if l4[0] == 8:
            seen["echo_request"] += 1
        if l4[0] == 0:
            seen["echo_reply"] += 1
print("pcap: %d frames %s" % (n, seen))
for k in ("dhcp_client", "dhcp_server"):
    assert seen[k] >= 2, "missing " + k
assert seen["echo_request"] >= 3 and seen["echo_reply"] >= 3, "missing ICMP"
EOF
}

# metric NAME: a value from the --metrics-file, if moat writes one.
metric() { awk -v m="$1" '$1 == m {print $2}' "$WORK/metrics.prom" 2>/dev/null; }
