#!/bin/bash
# bench/run.sh — moat side by side with slirp4netns and pasta, in one run.
#
# usage: sudo bench/run.sh [-t SECONDS] [-m "1500 65520"] [-k "tcp rr crr"] [-p "slirp4netns pasta moat"]
#   MOAT=path/to/moat   measure this binary instead of building one (e.g. to compare two builds)
#
# Builds moat (release, no test triggers) into build-bench/, then runs
# ../shared/bench/peers.sh — the shared harness that drives every provider in
# the same namespaces (moat-srv, moat-host, a guest namespace), same clients,
# same servers — and prints its lines as a table:
#   tcp  iperf3 Gbit/s (up = guest -> server, down = server -> guest), higher is better
#   rr   sockperf TCP ping-pong latency, usec, lower is better
#   crr  HTTP requests/s with a new connection each (ab -c 4), higher is better
# Only numbers from the same run compare: the machine is small and shared.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
shared=${MOAT_SHARED:-$top/../shared}
[ -x "$shared/bench/peers.sh" ] || { echo "bench: $shared/bench/peers.sh not found" >&2; exit 2; }
lib_need_root bench

args=("$@")
"$top/scripts/setup.sh" >/dev/null
lib_need_packages iperf3 sockperf apache2-utils nginx-light slirp4netns passt
if [ -n "${MOAT:-}" ]; then
	[ -x "$MOAT" ] || { echo "bench: MOAT=$MOAT is not an executable" >&2; exit 2; }
else
	lib_build_moat bench
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
MOAT=$MOAT "$shared/bench/peers.sh" "${args[@]}" | tee "$out"

echo
python3 - "$out" <<'PY'
import sys, collections
rows = collections.OrderedDict()
provs = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 4:
        continue
    prov, mtu, kind, val = f
    if kind == "-":          # "PROVIDER MTU - skip": not installed
        continue
    if prov not in provs:
        provs.append(prov)
    rows.setdefault((kind, mtu), {})[prov] = val
print("| measurement | " + " | ".join(provs) + " |")
print("|---|" + "---|" * len(provs))
for (kind, mtu), vals in rows.items():
    unit = {"up": "Gbit/s", "down": "Gbit/s", "rr": "usec", "crr": "req/s"}.get(kind, "")
    print(f"| {kind} MTU {mtu} ({unit}) | " + " | ".join(vals.get(p, "-") for p in provs) + " |")
PY
