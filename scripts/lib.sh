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

# lib_options USAGE L=VAR... -- "$@": a script's options, each -L VALUE
# setting VAR (which holds its default already); any other option prints
# USAGE to stderr and exits 2.
lib_options() {
	local usage=$1 letters='' o OPTIND=1 OPTARG
	local -A var=()
	shift
	while [ "$1" != -- ]; do
		var[${1%%=*}]=${1#*=}
		letters+="${1%%=*}:"
		shift
	done
	shift
	while getopts "$letters" o; do
		[ -n "${var[$o]:-}" ] || { echo "$usage" >&2; exit 2; }
		printf -v "${var[$o]}" %s "$OPTARG"
	done
}

# lib_need_root WHO [WHY]: exit 2 ("WHO: run as root (WHY)") unless root.
lib_need_root() {
	[ "$(id -u)" -eq 0 ] || { echo "$1: run as root${2:+ ($2)}" >&2; exit 2; }
}

# lib_need_packages PKG...: install those of the Debian packages that are not.
lib_need_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" >/dev/null
	done
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

# lib_http_server NS ADDR PORT DIR: a web server on ADDR:PORT in NS serving
# DIR, in the background (listening when it returns); its pid is added to
# the caller's `pids` array.
# (Not `python3 -m http.server --bind`: it looks the address up in DNS at
# start, which waits in a namespace without a resolver.)
lib_http_server() {
	ip netns exec "$1" python3 -c '
import functools, http.server, socketserver, sys
socketserver.TCPServer.allow_reuse_address = True
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
socketserver.TCPServer((sys.argv[1], int(sys.argv[2])), h).serve_forever()' "$2" "$3" "$4" \
		>/dev/null 2>&1 &
	pids+=($!)
	# Serving before it returns: a client right after must not find the port closed.
	for _ in $(seq 100); do
		ip netns exec "$1" ss -H -ltn "sport = :$3" | grep -q . && return 0
		sleep 0.1
	done
	echo "lib_http_server: nothing listens on $2:$3 in $1" >&2
	return 1
}

# lib_example_begin: what an example script sets up first — `work` (a
# temporary directory others may write to), `pids`, `moat` (a pid, or
# empty), a trap that ends them and removes $GUEST, $HOST and $SRV, and
# those namespaces gone if an earlier run left them.
lib_example_begin() {
	work=$(mktemp -d /tmp/moat-example.XXXXXX)
	chmod 777 "$work"
	pids=()
	moat=
	trap lib_example_end EXIT
	lib_netns_del
}

lib_netns_del() {
	local ns
	for ns in $GUEST $HOST $SRV; do ip netns del "$ns" 2>/dev/null || true; done
}

lib_example_end() {
	local p
	if [ -n "$moat" ]; then kill "$moat" 2>/dev/null && wait "$moat" 2>/dev/null; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	lib_netns_del
	rm -rf "$work"
}
