#!/bin/bash
# scripts/lint.sh — the analyzers CI runs, one subcommand each (each is a ctest:
# lint/format, lint/cppcheck, lint/tidy).
#
# usage: scripts/lint.sh format|cppcheck|tidy [BUILD_DIR]
#   format    clang-format --dry-run --Werror on every tracked .c/.h (.clang-format;
#             netstack/lwip/ is lwIP's port and opts out with its own .clang-format)
#   cppcheck  cppcheck over BUILD_DIR/compile_commands.json, lwIP left out
#   tidy      clang-tidy (.clang-tidy) over the shipped code (not tests/), two at a time
#   names     no function or object of moat's outside netstack/ has the name of one
#             of lwIP's (docs/hacking.md, "Names"): nm over the built libraries
# BUILD_DIR defaults to build/. Exit 0 clean, 1 findings, 77 the tool is missing
# (ctest counts that as skipped).
#
# Suppressions live where the finding is, with the reason on the same line:
#   /* cppcheck-suppress ID ; reason */ on the line before, or NOLINT(check): reason.
# Tree-wide ones are the --suppress lines below and the .clang-tidy list, each
# with its reason.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
build=${2:-$top/build}
cd "$top" || exit 2

need() { command -v "$1" >/dev/null || { echo "lint: $1 not installed: skipped"; exit 77; }; }

sources() {
	# Tracked C files, or every one below the top when this is not a git checkout.
	if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
		git -C "$top" ls-files '*.c' '*.h'
	else
		find . -name '*.[ch]' -not -path './third_party/*' -not -path './build*' | sed 's|^\./||'
	fi | grep -v -e '^third_party/' -e '^netstack/lwip/'
}

# compile_commands.json without lwIP (third_party/), for cppcheck and clang-tidy.
project() {
	[ -f "$build/compile_commands.json" ] ||
		{ echo "lint: $build/compile_commands.json missing (configure with cmake first)"; exit 2; }
	python3 - "$build/compile_commands.json" "$1" <<'PY'
import json, sys
db = [e for e in json.load(open(sys.argv[1])) if '/third_party/' not in e['file']]
json.dump(db, open(sys.argv[2], 'w'))
PY
}

case "$cmd" in
format)
	need clang-format
	bad=0
	for f in $(sources); do
		clang-format --style=file --dry-run --Werror "$f" 2>/dev/null || { echo "lint: $f is not formatted (clang-format -i $f)"; bad=1; }
	done
	exit $bad
	;;
cppcheck)
	need cppcheck
	tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
	project "$tmp/cc.json"
	# variableScope: the tree declares at the top of a block (kernel style), on purpose.
	# missingIncludeSystem: cppcheck reads moat's headers, not libc's.
	# unusedStructMember: the public shm layout (shm/moat_shm.h) has fields only VMMs read.
	cppcheck --project="$tmp/cc.json" --library="$top/tests/criterion.cfg" \
		--enable=warning,style,performance,portability --inline-suppr \
		--suppress=variableScope --suppress=missingIncludeSystem \
		--suppress=unusedStructMember \
		--error-exitcode=1 -q -j2 --template='{file}:{line}: {severity}: {id}: {message}'
	;;
tidy)
	need clang-tidy
	tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
	mkdir "$tmp/db" && project "$tmp/db/compile_commands.json"
	python3 -c 'import json,sys; [print(e["file"]) for e in json.load(open(sys.argv[1])) if "/tests/" not in e["file"]]' \
		"$tmp/db/compile_commands.json" |
		xargs -P2 -n4 clang-tidy -p "$tmp/db" --quiet 2>/dev/null >"$tmp/out"
	rc=$?
	grep -E '(warning|error):' "$tmp/out"
	[ $rc -eq 0 ] && ! grep -qE '(warning|error):' "$tmp/out"
	;;
names)
	need nm
	lwip=$(find "$build/netstack/CMakeFiles/moat_lwip.dir" -name '*.o' 2>/dev/null)
	[ -n "$lwip" ] || { echo "lint: no lwIP objects under $build (build first)"; exit 2; }
	ours=$(find "$build" -name 'libmoat_*.a' ! -name 'libmoat_netstack.a' ! -path '*/third_party/*')
	# Global definitions only (T, D, B, R ...): static names cannot clash.
	defs() { nm --defined-only -g "$@" 2>/dev/null | awk 'NF==3 {print $3}' | sort -u; }
	clash=$(comm -12 <(defs $lwip) <(defs $ours))
	[ -z "$clash" ] || { echo "lint: moat names that are lwIP's too:"; echo "$clash"; exit 1; }
	;;
*)
	sed -n '2,16p' "$0" >&2
	exit 2
	;;
esac
