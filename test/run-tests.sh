#!/usr/bin/env bash
# run-tests.sh: the whole test suite (README's test command, `make test`).
#
# Installs what is missing, builds with -Werror, installs the extension,
# then runs pg_regress (sql/, expected/) and the TAP tests (test/t/) as an
# unprivileged user against throwaway clusters, and a smoke-sized run of
# the benchmarks.  Exits non-zero on any failure, printing the diffs and
# logs that explain it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib/deps.sh"

build_and_install "$repo"

work=$(stage_tree "$repo")
trap 'rm -rf "$work"' EXIT
echo "running tests in $work"

echo "==== the SSRF guard, address by address (test/address_test.c) ===="
cc -Wall -Wextra -Werror -I"$(pg_config --includedir-server)" -I"$repo/src" \
	-o "$work/address_test" "$repo/test/address_test.c" "$repo/src/address.c"
"$work/address_test" | grep -v '^ok '

status=0
as_test_user make -C "$work" -s installcheck PROVE_TESTS='test/t/*.pl' \
	PROVE_FLAGS='--timer' || status=$?

if [ $status -ne 0 ]; then
	echo "==== tests failed; details follow ===="
	[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
	[ -f "$work/output_iso/regression.diffs" ] && cat "$work/output_iso/regression.diffs"
	for f in "$work"/tmp_check/log/regress_log_* "$work"/log/postmaster.log; do
		[ -f "$f" ] || continue
		echo "---- $f (last 80 lines)"
		tail -n 80 "$f"
	done
	exit $status
fi

# The README's commands must work from a checkout the test user cannot
# enter (a clone in root's home, mode 700): run the demo and the benchmark
# smoke run from such a copy.
private=$(mktemp -d /tmp/webhooks-private.XXXXXX)
trap 'rm -rf "$work" "$private"' EXIT
tar -C "$repo" --exclude=.git --exclude='./tmp_check' --exclude='./results' \
	-cf - . | tar -C "$private" -xf -
chmod 700 "$private"
echo "==== the demo, from a private checkout ($private, mode $(stat -c %a "$private")) ===="
make -s -C "$private" demo >"$private.demo.log" 2>&1 || {
	cat "$private.demo.log"; rm -f "$private.demo.log"
	echo "the demo failed from a private checkout"; exit 1; }
grep -E '^(/acme|/globex) ' "$private.demo.log"
rm -f "$private.demo.log"

echo "==== benchmark smoke run, from the private checkout (figures printed, not asserted) ===="
"$private/test/bench.sh" --smoke
echo "all tests passed"
