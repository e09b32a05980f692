# shellcheck shell=bash
# lib.sh - what the demo and the benchmarks share: a release build of moat
# and the three-namespace topology (servers <- moat's host <- the guest).
# Sourced, not run: `. "$top/scripts/lib.sh"` with $top the checkout.

# lib_build_moat WHO: set MOAT to a release build in build-bench/, saying
# why when the build fails (the output is otherwise thrown away).
lib_build_moat() {
	local who=$1 log
	MOAT=$top/build-bench/moat
	log=$(mktemp)
	if ! { cmake -S "$top" -B "$top/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release &&
		ninja -C "$top/build-bench" moat; } >"$log" 2>&1; then
		tail -n 40 "$log" >&2; rm -f "$log"
		echo "$who: building moat failed (build-bench/)" >&2; exit 1
	fi
	rm -f "$log"
}

# lib_topology SRV HOST GUEST VETH SRV_IP...: the servers' namespace SRV
# holding SRV_IP (and any further addresses) on its loopback, moat's
# namespace HOST reaching it over the veth pair VETHh0/VETHs0
# (10.77.0.1 <-> 10.77.0.254), and the guest's namespace GUEST with tap0
# down and unaddressed (the caller sets it up).
lib_topology() {
	local srv=$1 host=$2 guest=$3 veth=$4 ns ip
	shift 4
	for ns in $srv $host $guest; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip link add "${veth}h0" netns "$host" type veth peer name "${veth}s0" netns "$srv"
	ip -n "$host" addr add 10.77.0.1/24 dev "${veth}h0"
	ip -n "$srv" addr add 10.77.0.254/24 dev "${veth}s0"
	ip -n "$host" link set "${veth}h0" up
	ip -n "$srv" link set "${veth}s0" up
	ip -n "$host" route add default via 10.77.0.254 dev "${veth}h0"
	for ip in "$@"; do
		ip -n "$srv" addr add "$ip/32" dev lo
	done
	ip -n "$srv" route add default via 10.77.0.1 dev "${veth}s0"
	ip -n "$guest" tuntap add dev tap0 mode tap
}
