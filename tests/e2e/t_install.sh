#!/bin/bash
# t_install.sh — installation as an operator does it (issue 16): a release
# build without test triggers, `cmake --install` into a temporary prefix, the
# installed binary run, its man page and systemd unit checked, and the .deb
# that CPack builds: its contents, its dependencies, and the binary it holds
# run after `dpkg-deb -x` into a scratch root.
source "$(dirname "$0")/lib.sh"
need cmake ninja cpack dpkg-deb groff

build=$MOAT_SRC/build-pkg prefix=$WORK/prefix
cmake -S "$MOAT_SRC" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOAT_TESTS=OFF \
	>"$WORK/cmake.log" 2>&1 || { tail -20 "$WORK/cmake.log" >&2; fail "configure failed"; }
ninja -C "$build" moat >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "build failed"; }
cmake --install "$build" --prefix "$prefix" >"$WORK/install.log" 2>&1 ||
	{ cat "$WORK/install.log" >&2; fail "cmake --install failed"; }

for f in bin/moat share/man/man1/moat.1 lib/systemd/system/moat@.service \
	share/doc/moat/examples/default.json share/doc/moat/examples/public-only.json \
	share/doc/moat/policy.md include/moat/moat_shm.h; do
	[ -f "$prefix/$f" ] || fail "not installed: $f"
done
"$prefix/bin/moat" version | grep -q '^moat ' || fail "the installed moat does not run"
for p in "$prefix"/share/doc/moat/examples/*.json; do
	"$prefix/bin/moat" policy check "$p" >/dev/null 2>&1 || fail "installed example $p does not check"
done
"$prefix/bin/moat" run --help 2>&1 | grep -q -- '--test-trigger' &&
	fail "the installed build has test triggers"

# The man page: no groff warnings, and the sections an operator looks for.
warn=$(groff -man -ww -z "$prefix/share/man/man1/moat.1" 2>&1)
[ -z "$warn" ] || fail "groff warns about moat.1: $warn"
page=$(MANWIDTH=100 man -l "$prefix/share/man/man1/moat.1" 2>/dev/null)
for s in SYNOPSIS OPTIONS POLICY SIGNALS "EXIT STATUS" FILES EXAMPLES; do
	grep -q "^$s" <<<"$page" || fail "moat.1 has no $s section"
done
for o in $("$prefix/bin/moat" run --help 2>&1 | grep -o -- '--[a-z-]*' | sort -u); do
	grep -q -- "$o" <<<"$page" || fail "moat.1 does not document $o"
done

# The unit: systemd's own checker, if it is here.
if command -v systemd-analyze >/dev/null; then
	out=$(MANPATH="$prefix/share/man" systemd-analyze verify \
		"$prefix/lib/systemd/system/moat@.service" 2>&1) || true
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
fi

# The .deb.
(cd "$build" && cpack --config CPackConfig.cmake -B "$WORK/pkg") >"$WORK/cpack.log" 2>&1 ||
	{ tail -30 "$WORK/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$WORK"/pkg/moat_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "cpack made no moat_*.deb"
list=$(dpkg-deb -c "$deb")
grep -q '\./usr/bin/moat$' <<<"$list" || fail "the .deb has no /usr/bin/moat: $list"
grep -q 'lib/systemd/system/moat@.service' <<<"$list" || fail "the .deb has no unit"
grep -q 'usr/share/man/man1/moat.1' <<<"$list" || fail "the .deb has no man page"
deps=$(dpkg-deb -f "$deb" Depends)
for d in libuv1 libseccomp2 libcap-ng0 libjansson4 libmicrohttpd12; do
	grep -q "$d" <<<"$deps" || fail "the .deb does not depend on $d: $deps"
done
mkdir -p "$WORK/root"
dpkg-deb -x "$deb" "$WORK/root"
"$WORK/root/usr/bin/moat" version | grep -q '^moat ' || fail "the packaged moat does not run"
pass "cmake --install, man page, unit, and $(basename "$deb") (Depends: $deps)"
