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

status=0
as_test_user make -C "$work" -s installcheck PROVE_TESTS='test/t/*.pl' \
	PROVE_FLAGS='--timer' || status=$?

if [ $status -ne 0 ]; then
	echo "==== tests failed; details follow ===="
	[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
	for f in "$work"/tmp_check/log/regress_log_* "$work"/log/postmaster.log; do
		[ -f "$f" ] || continue
		echo "---- $f (last 80 lines)"
		tail -n 80 "$f"
	done
	exit $status
fi

if [ -x "$repo/test/bench.sh" ]; then
	echo "==== benchmark smoke run (figures printed, not asserted) ===="
	"$repo/test/bench.sh" --smoke
fi
echo "all tests passed"
