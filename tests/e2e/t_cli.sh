#!/bin/bash
# t_cli.sh — the command line: every usage or configuration error exits 2
# with one line on stderr that names the problem, before anything runs;
# `moat version`, `moat` alone, `moat policy check` on the examples.
source "$(dirname "$0")/lib.sh"
need timeout

ERRORS=0
OUT=$WORK/out ERR=$WORK/err

# run_moat [ip netns exec NS] ARGS...: run with a time bound (a config
# error must not start anything); sets RC, OUT and ERR files.
run_moat() {
	RC=0
	timeout 15 "$@" >"$OUT" 2>"$ERR" || RC=$?
}

# usage_error DESCRIPTION PATTERN CMD...: exit 2, nothing on stdout, exactly
# one line on stderr, and that line matches PATTERN (grep -E).
usage_error() {
	local what=$1 pat=$2; shift 2
	run_moat "$@"
	local lines
	lines=$(wc -l <"$ERR")
	if [ "$RC" != 2 ]; then
		echo "FAIL $what: exit $RC, want 2; stderr: $(head -c 500 "$ERR")" >&2
		ERRORS=$((ERRORS + 1))
	elif [ "$lines" != 1 ]; then
		echo "FAIL $what: $lines lines on stderr, want 1:" >&2
		sed 's/^/    /' "$ERR" >&2
		ERRORS=$((ERRORS + 1))
	elif ! grep -qE -- "$pat" "$ERR"; then
		echo "FAIL $what: stderr does not name the problem ('$pat'): $(cat "$ERR")" >&2
		ERRORS=$((ERRORS + 1))
	elif [ -s "$OUT" ]; then
		echo "FAIL $what: unexpected stdout: $(head -c 200 "$OUT")" >&2
		ERRORS=$((ERRORS + 1))
	else
		echo "ok   $what: $(cat "$ERR")"
	fi
}

expect_rc() {
	local what=$1 want=$2; shift 2
	run_moat "$@"
	if [ "$RC" != "$want" ]; then
		echo "FAIL $what: exit $RC, want $want; stderr: $(head -c 500 "$ERR")" >&2
		ERRORS=$((ERRORS + 1))
		return 1
	fi
	echo "ok   $what (exit $RC)"
}

# A guest namespace with a real tap, so that option errors are the only errors;
# and an empty namespace with no tap at all.
guest_up 1500 static
EMPTY=$HOST		# lib.sh's cleanup deletes it
ip netns add "$EMPTY"
G="tap:tap0@/run/netns/$GUEST"

###########################################################################
# Top level
###########################################################################
expect_rc "moat version" 0 "$MOAT" version &&
	{ grep -qE '^moat [0-9]+\.[0-9]+' "$OUT" || { echo "FAIL version output: $(cat "$OUT")" >&2; ERRORS=$((ERRORS + 1)); }; }
expect_rc "moat alone" 2 "$MOAT" && { [ -s "$ERR" ] || { echo "FAIL moat alone: no usage on stderr" >&2; ERRORS=$((ERRORS + 1)); }; }
expect_rc "moat frobnicate" 2 "$MOAT" frobnicate &&
	{ grep -q frobnicate "$ERR" || { echo "FAIL unknown command not named" >&2; ERRORS=$((ERRORS + 1)); }; }
expect_rc "moat run --help" 0 "$MOAT" run --help &&
	{ grep -q -- '--guest' "$OUT" || { echo "FAIL run --help does not show --guest" >&2; ERRORS=$((ERRORS + 1)); }; }

###########################################################################
# moat run: usage errors
###########################################################################
usage_error "unknown option" "--bogus" "$MOAT" run --guest "$G" --bogus
usage_error "unknown short option" "'-x'|-x" "$MOAT" run --guest "$G" -x
usage_error "missing --guest" "--guest" "$MOAT" run
usage_error "option without its value" "--mtu.*(value|argument)" "$MOAT" run --guest "$G" --mtu
usage_error "stray argument" "stray" "$MOAT" run --guest "$G" stray
usage_error "unknown frontend" "bogus:x|frontend" "$MOAT" run --guest bogus:x
usage_error "tap without a name" "tap" "$MOAT" run --guest tap:
usage_error "--mtu 70000" "--mtu.*70000" "$MOAT" run --guest "$G" --mtu 70000
usage_error "--mtu 100" "--mtu.*100" "$MOAT" run --guest "$G" --mtu 100
usage_error "--mtu abc" "--mtu.*abc" "$MOAT" run --guest "$G" --mtu abc
usage_error "--subnet garbage" "--subnet" "$MOAT" run --guest "$G" --subnet 10.0.2.0
usage_error "--anti-spoof maybe" "--anti-spoof.*maybe" "$MOAT" run --guest "$G" --anti-spoof maybe
usage_error "--log-level loud" "--log-level.*loud" "$MOAT" run --guest "$G" --log-level loud
usage_error "--publish garbage" "--publish" "$MOAT" run --guest "$G" --publish 80
usage_error "--vm-pid 0" "--vm-pid" "$MOAT" run --guest "$G" --vm-pid 0
usage_error "--vm-pid and a command" "--vm-pid" "$MOAT" run --guest "$G" --vm-pid 1 -- true
# A pid that does not exist (pid_max is at most 4194304).
usage_error "--vm-pid of no process" "--vm-pid.*4194303|No such process" \
	"$MOAT" run --guest "$G" --vm-pid 4194303

###########################################################################
# Guest specs that cannot be opened
###########################################################################
usage_error "tap in a namespace that does not exist" "/run/netns/doesnotexist" \
	"$MOAT" run --guest tap:nope0@/run/netns/doesnotexist
usage_error "tap-fd that is not open" "tap-fd:77|77" "$MOAT" run --guest tap-fd:77
# A tap that does not exist, in a namespace that has none: refused, and
# above all not created (TUNSETIFF creates missing devices as root).
usage_error "missing tap (namespace given)" "nope0" "$MOAT" run --guest "tap:nope0@/run/netns/$EMPTY"
if ip -n "$EMPTY" link show nope0 >/dev/null 2>&1; then
	echo "FAIL moat created a tap nope0 in $EMPTY instead of refusing (BUG: must only attach)" >&2
	ERRORS=$((ERRORS + 1))
	ip -n "$EMPTY" link del nope0 2>/dev/null || true
fi
usage_error "missing tap (moat inside the namespace)" "nope0" ip netns exec "$EMPTY" "$MOAT" run --guest tap:nope0
if ip -n "$EMPTY" link show nope0 >/dev/null 2>&1; then
	echo "FAIL moat created a tap nope0 in $EMPTY instead of refusing (BUG: must only attach)" >&2
	ERRORS=$((ERRORS + 1))
fi
# Something that exists but is not a tap.
usage_error "not a tap (lo)" "[ '\"]lo\\b" ip netns exec "$EMPTY" "$MOAT" run --guest tap:lo
[ "$(ip -n "$EMPTY" -o link show | wc -l)" = 1 ] ||
	{ echo "FAIL links appeared in $EMPTY: $(ip -n "$EMPTY" -o link show)" >&2; ERRORS=$((ERRORS + 1)); }

###########################################################################
# Policies
###########################################################################
usage_error "--policy /nonexistent" "/nonexistent" "$MOAT" run --guest "$G" --policy /nonexistent
printf '{ "default_egress": "deny",\n  "rules": [ { "direction": "egress", }\n' >"$WORK/bad.json"
usage_error "malformed policy (JSON)" "bad.json" "$MOAT" run --guest "$G" --policy "$WORK/bad.json"
printf '{ "default_egress": "deny", "default_ingress": "allow", "rules": [],\n  "colour": "blue" }\n' >"$WORK/unknown.json"
usage_error "policy with an unknown key" "unknown.json.*colour|colour.*unknown.json" \
	"$MOAT" run --guest "$G" --policy "$WORK/unknown.json"
printf '{ "default_egress": "sometimes", "default_ingress": "allow", "rules": [] }\n' >"$WORK/badval.json"
usage_error "policy with a bad value" "badval.json" "$MOAT" run --guest "$G" --policy "$WORK/badval.json"
: >"$WORK/empty.json"
usage_error "empty policy file" "empty.json" "$MOAT" run --guest "$G" --policy "$WORK/empty.json"

# moat policy check: the shipped examples parse; a bad file does not.
shopt -s nullglob
examples=("$MOAT_SRC"/examples/*.json "$MOAT_SRC"/examples/policies/*.json)
if [ ${#examples[@]} -eq 0 ]; then
	echo "skip moat policy check: no examples/*.json yet"
else
	for f in "${examples[@]}"; do
		expect_rc "moat policy check $(basename "$f")" 0 "$MOAT" policy check "$f" || true
	done
fi
run_moat "$MOAT" policy check "$WORK/bad.json"
if [ "$RC" = 0 ]; then
	echo "FAIL moat policy check accepted a malformed file" >&2
	ERRORS=$((ERRORS + 1))
else
	grep -q bad.json "$ERR" || { echo "FAIL policy check error does not name the file: $(cat "$ERR")" >&2; ERRORS=$((ERRORS + 1)); }
	echo "ok   moat policy check bad.json (exit $RC): $(head -n1 "$ERR")"
fi

[ "$ERRORS" = 0 ] || fail "$ERRORS check(s) failed"
pass "command-line errors"
