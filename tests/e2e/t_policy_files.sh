#!/bin/bash
# t_policy_files — malformed policy files are refused, through the binary:
# `moat policy check FILE` and `moat run --policy FILE` each exit 2 with one
# line on stderr that names the file and the problem; nothing is started.
# (The parser's unit tests check every message in detail; this checks the
# exit statuses and that the hostile inputs are handled by the real binary.)
set -uo pipefail
: "${MOAT:?MOAT must point at the moat binary}"
W=$(mktemp -d /tmp/moat-policy.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL t_policy_files: $*" >&2; fails=$((fails + 1)); }

D='"default_egress": "deny", "default_ingress": "allow"'
printf '{%s, "rules": [{"direction": "egress", "destination": "any", "action": 1}]}' "$D" >"$W/wrong-type.json"
printf '{%s, "rulez": []}' "$D" >"$W/unknown-key.json"
printf '{%s, "rules": [{"direction": "egress", "destination": {"cidr": "10.0.0.0/33"}, "action": "allow"}]}' "$D" >"$W/bad-cidr.json"
: >"$W/empty.json"
printf '{"default_egress": "allow"}' >"$W/missing-default.json"
printf '{%s, "dns": {"nameservers": ["no-such-host.invalid"]}}' "$D" >"$W/unresolvable.json"
python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
D = '"default_egress": "deny", "default_ingress": "allow"'
rule = '{"direction": "egress", "destination": {"cidr": "10.0.0.0/8"}, "action": "deny"}'
body = ", ".join([rule] * (10 * 1024 * 1024 // len(rule) + 1))
open(f"{w}/ten-mb.json", "w").write("{%s, \"rules\": [%s]}" % (D, body))
open(f"{w}/deep.json", "w").write("[" * 10000 + "]" * 10000)
open(f"{w}/bad-utf8.json", "wb").write(b'{' + D.encode() + b', "rules": [{"direction": "egress", "destination": {"domain": "\xff\xfe.example"}, "action": "allow"}]}')
open(f"{w}/dup-key.json", "w").write("{%s, \"default_egress\": \"allow\"}" % D)
PY

for f in wrong-type unknown-key bad-cidr empty ten-mb deep bad-utf8 dup-key; do
	for mode in check run; do
		if [ $mode = check ]; then
			"$MOAT" policy check "$W/$f.json" >"$W/out" 2>"$W/err"
		else
			timeout 20 "$MOAT" run --guest "tap:none0@/nonexistent/netns" --policy "$W/$f.json" \
				>"$W/out" 2>"$W/err"
		fi
		rc=$?
		lines=$(wc -l <"$W/err")
		[ $rc -eq 2 ] || fail "$f ($mode): exit $rc, want 2: $(head -c 300 "$W/err")"
		[ "$lines" -eq 1 ] || fail "$f ($mode): $lines lines on stderr, want 1"
		grep -q "$f.json" "$W/err" || fail "$f ($mode): the message does not name the file: $(head -c 300 "$W/err")"
	done
	echo "$f: $(head -c 200 "$W/err")"
done

# microsandbox parity: a missing default means deny, with one warning line.
"$MOAT" policy check "$W/missing-default.json" >"$W/out" 2>"$W/err"
rc=$?
[ $rc -eq 0 ] || fail "missing-default (check): exit $rc, want 0: $(head -c 300 "$W/err")"
grep -q '"default_ingress": "deny"' "$W/out" || fail "missing-default: the normalized policy does not say deny: $(cat "$W/out")"
grep -q '"default_egress": "allow"' "$W/out" || fail "missing-default: default_egress changed"
[ "$(wc -l <"$W/err")" -eq 1 ] && grep -q "missing-default.json: warning: default_ingress is missing" "$W/err" ||
	fail "missing-default: want one warning line, got: $(cat "$W/err")"
echo "missing-default: $(cat "$W/err")"

# A nameserver host name that cannot be resolved refuses the policy (in an empty
# network namespace: the lookup fails at once and nothing leaves the machine).
if unshare -n true 2>/dev/null; then
	unshare -n timeout 20 "$MOAT" policy check "$W/unresolvable.json" >"$W/out" 2>"$W/err"
	rc=$?
	[ $rc -eq 2 ] || fail "unresolvable nameserver: exit $rc, want 2: $(head -c 300 "$W/err")"
	grep -q 'dns.nameservers\[0\]: cannot resolve the host name "no-such-host.invalid"' "$W/err" ||
		fail "unresolvable nameserver: $(head -c 300 "$W/err")"
	echo "unresolvable: $(head -c 200 "$W/err")"
else
	echo "skip unresolvable nameserver: unshare -n not permitted"
fi
[ $fails -eq 0 ] || exit 1
echo "PASS t_policy_files: 8 malformed policies refused with exit 2 by check and run; missing defaults deny with a warning; an unresolvable nameserver refuses"
