#!/bin/bash
# bench/vhost.sh — one QEMU guest's download over vhost-user: against stream:,
# side by side in one run.
#
# usage: bench/vhost.sh [-n ROUNDS] [-s MIB] [-f "stream vhost-user"]
#   MOAT=path/to/moat   the binary (default: a Release build in build-bench/)
#   QEMU_ACCEL=kvm      where /dev/kvm works (default tcg)
#
# The guest of tests/qemu/ (Debian's kernel, busybox, TCG) boots with its one
# virtio-net card on the frontend, takes its DHCP lease and wget's MIB MiB
# of random bytes (at most ~100: the 256 MiB guest keeps it in its tmpfs)
# from a server in the server namespace through moat (the
# e2e namespaces of tests/e2e/lib.sh: nothing leaves them). Per run:
#   MiB/s      the guest's own timing of the download (uptime before and after)
#   moat ms/GB CPU time of moat's processes (supervisor and children) per GB
#   port ms/GB the part of it spent by the process that moves the guest's
#              frames: the supervisor for stream:, moat-vhost for vhost-user:
#   qemu ms/GB CPU time of QEMU per GB (its vCPU thread dominates under TCG)
# The frontends alternate within each round, so both see the same machine.
# Under TCG the guest's CPU is the bottleneck: the ratio matters, not the
# absolute number. vhost-user runs the card with vectors=0 (QEMU 7.2 under
# TCG crashes in its MSI-X notifiers with vhost-user).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
rounds=3 mib=96 fronts="stream vhost-user"
lib_options "usage: $0 [-n ROUNDS] [-s MIB] [-f FRONTENDS]" n=rounds s=mib f=fronts -- "$@"
lib_need_root bench
if [ -z "${MOAT:-}" ]; then
	"$top/scripts/setup.sh" >/dev/null
	lib_build_moat bench
fi
export MOAT MOAT_SRC=$top
set --
# shellcheck source=../tests/e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../tests/qemu/e2e_lib.sh
. "$top/tests/qemu/e2e_lib.sh"
qemu_prepare
topo_up
mkdir -p "$WORK/www"
head -c $((mib << 20)) /dev/urandom >"$WORK/www/blob.bin"
bg ip netns exec "$SRV" python3 -u -c '
import functools, http.server, socketserver, sys
socketserver.TCPServer.allow_reuse_address = True
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
socketserver.TCPServer((sys.argv[1], 8080), h).serve_forever()
' "$SRV_IP" "$WORK/www" >/dev/null 2>&1
wait_for 10 listening "$SRV" tcp 8080 || fail "http server did not start"
QEMU_TIMEOUT=600

# cpu_ms PID...: user + system CPU time of the processes, in ms.
cpu_ms() {
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}

# one FRONTEND: print "FRONTEND MiB/s moat-ms/GB port-ms/GB qemu-ms/GB".
one() {
	local fe=$1 spec netdev sock=$WORK/fe.sock pids t0 t1 moat_ms port_ms qemu_ms
	rm -f "$sock"
	QEMU_EXTRA=() QEMU_NIC_OPTS=
	case $fe in
	stream)
		spec=stream:$sock
		netdev="stream,id=n0,server=off,addr.type=unix,addr.path=$sock" ;;
	vhost-user)
		spec=vhost-user:$sock
		netdev="vhost-user,id=n0,chardev=chr0"
		QEMU_EXTRA=(-object memory-backend-memfd,id=mem,size=256M,share=on
			-numa node,memdev=mem -chardev "socket,id=chr0,path=$sock")
		QEMU_NIC_OPTS=,vectors=0 ;;
	esac
	rm -f "$WORK/ready"
	mkfifo "$WORK/ready"
	ip netns exec "$HOST" "$MOAT" run --guest "$spec" --ready-fd 9 9>"$WORK/ready" \
		>"$WORK/moat.log" 2>&1 &
	MOAT_PID=$!
	read -r -t 20 _ <"$WORK/ready" || fail "moat did not become ready"
	qemu_cmd "$netdev" "moat.steps=dhcp,fetch" "moat.fetch=$SRV_IP:8080/blob.bin"
	: >"$SERIAL"
	/usr/bin/time -f "%U %S" -o "$WORK/qemu.time" ip netns exec "$HOST" \
		timeout -k 5 "$QEMU_TIMEOUT" "${QEMU_CMD[@]}" >"$WORK/qemu.log" 2>&1 ||
		{ serial_dump; fail "$fe: QEMU failed"; }
	tr -d '\r' <"$SERIAL" | grep -q "^MOAT-RESULT fetch PASS bytes=$((mib << 20)) " ||
		{ serial_dump; fail "$fe: the download failed"; }
	pids="$MOAT_PID $(pgrep -P "$MOAT_PID" | tr '\n' ' ')"
	# shellcheck disable=SC2086
	moat_ms=$(cpu_ms $pids)
	if [ "$fe" = vhost-user ]; then
		port_ms=$(cpu_ms "$(pgrep -P "$MOAT_PID" -x moat-vhost)")
	else
		port_ms=$(cpu_ms "$MOAT_PID")
	fi
	moat_stop
	qemu_ms=$(awk '{printf "%d", ($1 + $2) * 1000}' "$WORK/qemu.time")
	t0=$(tr -d '\r' <"$SERIAL" | sed -n 's/^MOAT-RESULT dhcp PASS.*(t=\([0-9.]*\))$/\1/p')
	t1=$(tr -d '\r' <"$SERIAL" | sed -n 's/^MOAT-RESULT fetch PASS.*(t=\([0-9.]*\))$/\1/p')
	python3 -c 'import sys; fe, mib, t0, t1, m, p, q = sys.argv[1:]; mib = int(mib)
gb = mib / 1024
print("%-10s %8.1f %10.0f %10.0f %10.0f" % (fe, mib / (float(t1) - float(t0)), int(m) / gb,
      int(p) / gb, int(q) / gb))' "$fe" "$mib" "$t0" "$t1" "$moat_ms" "$port_ms" "$qemu_ms"
}

out=$WORK/results
printf '%-10s %8s %10s %10s %10s\n' frontend "MiB/s" "moat ms/GB" "port ms/GB" "qemu ms/GB"
for ((r = 1; r <= rounds; r++)); do
	for fe in $fronts; do
		# not in a pipeline: a failure must reach this shell's cleanup (moat, QEMU)
		one "$fe" >>"$out"
		tail -n 1 "$out"
	done
done
echo
echo "median of $rounds rounds (${QEMU_ACCEL:-tcg}, $mib MiB per download):"
python3 - "$out" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rows[f[0]].append([float(x) for x in f[1:]])
med = {fe: [statistics.median(c) for c in zip(*v)] for fe, v in rows.items()}
for fe, (rate, m, p, q) in med.items():
    print("%-10s %8.1f MiB/s %8.0f moat ms/GB %8.0f port ms/GB %9.0f qemu ms/GB" % (fe, rate, m, p, q))
if "stream" in med and "vhost-user" in med:
    s, v = med["stream"], med["vhost-user"]
    print("vhost-user / stream: %.2fx the rate, %.2fx moat's CPU per GB, %.2fx the guest port's"
          % (v[0] / s[0], v[1] / s[1], v[2] / max(s[2], 1)))
PY
