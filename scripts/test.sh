#!/bin/bash
# test.sh — set everything up and run moat's whole test suite. Safe to run twice.
#
#   scripts/test.sh      (as root)
#
# 1. scripts/setup.sh: Debian packages and lwIP's source (Debian source package);
# 2. build/       release build (gcc, hardening, test triggers): unit + end-to-end tests;
# 3. build-asan/  clang with ASan+UBSan: unit tests again and the libFuzzer harnesses
#                 for a bounded number of runs.
# Tests report through ctest (and Criterion inside each unit test); an end-to-end test
# that cannot run here exits 77 and is counted as skipped. The last line sums both runs.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/scripts/setup.sh" || exit 1

jobs=$(nproc 2>/dev/null || echo 2)
build() { # dir, cmake args...
	local dir=$1; shift
	cmake -S "$top" -B "$top/$dir" -G Ninja "$@" >/dev/null || return 1
	ninja -C "$top/$dir" -j "$jobs" || return 1
}

build build -DMOAT_TEST_TRIGGERS=ON || { echo "build failed"; exit 1; }
build build-asan -DCMAKE_C_COMPILER=clang -DMOAT_SANITIZE=ON -DMOAT_FUZZ=ON \
	-DMOAT_TEST_TRIGGERS=ON || { echo "sanitizer build failed"; exit 1; }

status=0
log_a=$(mktemp) log_b=$(mktemp)
trap 'rm -f "$log_a" "$log_b"' EXIT

echo "== unit tests and fuzzers under ASan/UBSan (build-asan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ctest --test-dir "$top/build-asan" -R '^(unit|fuzz)/' --output-on-failure \
	--timeout 900 2>&1 | tee "$log_a"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== unit and end-to-end tests (build)"
ctest --test-dir "$top/build" --output-on-failure --timeout 900 2>&1 | tee "$log_b"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# One closing line for both runs.
sum() { sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1 \2/p' "$1" | tail -n1; }
skipped() { grep -c '\*\*\*Skipped' "$1" 2>/dev/null || true; }
read -r fa ta <<<"$(sum "$log_a")"
read -r fb tb <<<"$(sum "$log_b")"
fa=${fa:-0} ta=${ta:-0} fb=${fb:-0} tb=${tb:-0}
sk=$(( $(skipped "$log_a") + $(skipped "$log_b") ))
failed=$((fa + fb))
passed=$((ta + tb - failed - sk))
[ "$ta" -gt 0 ] && [ "$tb" -gt 0 ] || status=1
echo "moat: $passed passed, $failed failed, $sk skipped"
exit $status
