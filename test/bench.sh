#!/usr/bin/env bash
# bench.sh: the benchmark suite (`make bench`; `test/run-tests.sh` runs
# `test/bench.sh --smoke`).
#
#   test/bench.sh [--smoke] [--runs N] [--only LIST] [--no-build] [--keep]
#
#   --smoke      a seconds-long run with tiny sizes and one run each; its
#                figures are printed, not asserted: it fails only on real
#                breakage (nothing delivered, an attempt to the healthy
#                receiver failed, the worker crashed or took more than a
#                quarter of the memory, a setup error), as a full run does
#   --runs N     runs per scenario (default 3); the table shows the median
#                and the min–max
#   --only LIST  comma-separated scenarios: throughput, limit, latency,
#                caller, scale, isolation (default: all)
#   --no-build   benchmark the installed extension without `make install`
#                (--smoke never builds: run-tests.sh has just installed it)
#   --keep       keep the temporary folder (cluster, logs, results)
#   PG_BIN=DIR   (environment) use the PostgreSQL programs in DIR, and the
#                extension installed there, instead of PostgreSQL 15's
#
# It starts its own throwaway PostgreSQL cluster (the worker preloaded) and
# Debian's nginx as an HTTPS receiver (HTTP/2, keep-alive, a throwaway CA
# made by test/make-certs.sh that the extension verifies through
# webhooks.ssl_ca_file), both as the unprivileged test user, on 127.0.0.1
# only, and stops every process it started by its PID.  Exit status: 0
# when every scenario ran (whether or not a target was met), 1 on breakage.
#
# The throughput scenario also measures the 1.0 release (commit c7caae4,
# the largest backlog size only, smoke sizes included): built from this
# checkout's git history into a private copy of the server's tree, never
# installed, run in a cluster of its own while the current one is stopped,
# against the same receiver with the same settings.  Without that history
# (a shallow clone, or run-tests.sh's copy without .git) it is skipped with
# a note; 1.0's own troubles are noted, never counted as breakage.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib/deps.sh"
# PG_BIN=/path/to/bin benchmarks another PostgreSQL installation (and the
# extension installed in it).
[ -n "${PG_BIN:-}" ] && export PATH="$PG_BIN:$PATH"

smoke=0
runs=3
only=all
build=1
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=1 ;;
	--runs) runs=${2:?--runs needs a number}; shift ;;
	--runs=*) runs=${1#*=} ;;
	--only) only=${2:?--only needs a scenario list}; shift ;;
	--only=*) only=${1#*=} ;;
	--no-build) build=0 ;;
	--keep) keep=1 ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $runs in '' | *[!0-9]* | 0) echo "bench.sh: --runs wants a positive number" >&2; exit 2 ;; esac
all_scenarios="throughput limit latency caller scale isolation"
[ "$only" = all ] && only=$all_scenarios
only=${only//,/ }
for s in $only; do
	case " $all_scenarios " in *" $s "*) ;; *) echo "bench.sh: unknown scenario $s (one of: $all_scenarios)" >&2; exit 2 ;; esac
done
wants() { case " $only " in *" $1 "*) return 0 ;; esac; return 1; }

# Sizes: the full run, or a seconds-long smoke run.
if [ $smoke = 1 ]; then
	runs=1 build=0
	tp_sizes="2000"           # throughput backlogs
	wrk_seconds=1
	lat_events=20
	pgbench_seconds=2
	scale_events=20000
	log_rows=100000
	iso_events=2200           # 1 in 11 to the endpoint that never answers
	stall_s=10
else
	tp_sizes="20000 100000"
	wrk_seconds=5
	lat_events=200
	pgbench_seconds=10
	scale_events=1000000
	log_rows=10000000
	iso_events=22000
	stall_s=120
fi

if [ $build = 1 ]; then
	build_and_install "$repo" nginx-light wrk curl postgresql-15-pgq3
else
	ensure_packages $BASE_PACKAGES nginx-light wrk curl postgresql-15-pgq3
fi
pkglibdir=$(pg_config --pkglibdir)
if [ ! -f "$pkglibdir/webhooks.so" ] || [ ! -f "$(pg_config --sharedir)/extension/webhooks.control" ]; then
	echo "bench.sh: the webhooks extension is not installed (run make install, or bench.sh without --no-build)" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/webhooks-bench.XXXXXX)
chmod 755 "$dir"
results=$dir/results.tsv
: >"$results"
nginx_pid=
blackhole_pid=
client_pid=
pgport=

stop_pid() { # PID [SIGNAL]: signal a process we started, wait (bounded), then kill
	local pid=$1 sig=${2:-TERM}
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}
stop_cluster() { # DATA: fast shutdown (any version's pg_ctl will do), else the postmaster by PID
	[ -f "$1/postmaster.pid" ] || return 0
	as_test_user pg_ctl -D "$1" -m fast -t 60 stop >/dev/null 2>&1 ||
		stop_pid "$(head -1 "$1/postmaster.pid" 2>/dev/null)" QUIT
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_pid "$client_pid"
	if [ -n "$nginx_pid" ]; then
		# fast shutdown (requests to the dead endpoint never end), then
		# make sure no worker process outlives its master
		local workers
		workers=$(cat "/proc/$nginx_pid/task/$nginx_pid/children" 2>/dev/null || true)
		stop_pid "$nginx_pid" TERM
		for pid in $workers; do stop_pid "$pid" KILL; done
	fi
	stop_pid "$blackhole_pid"
	stop_cluster "$dir/data"
	stop_cluster "$dir/data-1.0"
	if [ $keep = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
	exit $status
}
trap cleanup EXIT
set -E
trap 'echo "bench.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

server_log=$dir/server.log   # the running cluster's (1.0's while it runs)
die() {
	echo "bench.sh: FAILED: $*" >&2
	if [ -f "$server_log" ]; then
		echo "---- server log $server_log (last 40 lines)" >&2
		tail -n 40 "$server_log" >&2
	fi
	exit 1
}

# The helper files, where the test user can read them.
cp -r "$repo/test/bench" "$dir/bench"
mkdir -p "$dir/tmp" "$dir/html"
: >"$dir/html/ok"
helper() { python3 "$dir/bench/helper.py" "$@"; }
[ "$(id -u)" -eq 0 ] && chown -R "$TEST_USER": "$dir"

q() { # psql as the bench's superuser, tuples only, stopping on errors
	psql -X -q -tA -v ON_ERROR_STOP=1 -h "$dir" -p "$pgport" -U postgres -d postgres "$@"
}
now() { date +%s.%N; }
calc() { # EXPR [FORMAT]: arithmetic on figures; nan when a figure is missing
	helper calc "$1" "${2:-%.3f}"
}
say() { printf '%s\n' "$*"; }
record() { # SCENARIO FIGURE VALUE TARGET: one run's figure (TARGET "-" for none)
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "${3:-nan}" "${4:--}" >>"$results"
}
fmt_k() { # 20000 -> 20k, 1000000 -> 1M
	local n=$1
	if [ $((n % 1000000)) -eq 0 ]; then echo "$((n / 1000000))M"
	elif [ $((n % 1000)) -eq 0 ]; then echo "$((n / 1000))k"
	else echo "$n"; fi
}

############################################################################
# The machine, the receiver and the cluster
############################################################################
read -r pgport nginx_port dead_port <<<"$(helper ports 3)"
clk_tck=$(getconf CLK_TCK)

make_test_certs "$dir/certs" ||
	die "could not make the throwaway certificates"

sed -e "s|@DIR@|$dir|g" -e "s|@CERTS@|$dir/certs|g" -e "s|@PORT@|$nginx_port|g" \
	-e "s|@DEAD_PORT@|$dead_port|g" -e "s|@BLACKHOLE_PORT@|@BLACKHOLE_PORT@|g" \
	"$dir/bench/nginx.conf.in" >"$dir/nginx.conf.tmp"

# The never-answering socket behind the dead endpoint (runs as us; it
# exits by itself after an hour).
python3 "$dir/bench/helper.py" blackhole "$dir/blackhole.port" "$dir/blackhole.pid" 3600 \
	>"$dir/blackhole.out" 2>&1 &
blackhole_pid=$!
for _ in $(seq 1 100); do [ -s "$dir/blackhole.port" ] && break; sleep 0.05; done
[ -s "$dir/blackhole.port" ] || die "the blackhole socket did not start"
sed "s|@BLACKHOLE_PORT@|$(cat "$dir/blackhole.port")|g" "$dir/nginx.conf.tmp" >"$dir/nginx.conf"
[ "$(id -u)" -eq 0 ] && chown -R "$TEST_USER": "$dir"

as_test_user nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" ||
	{ cat "$dir/error.log" >&2 2>/dev/null; die "nginx did not start"; }
for _ in $(seq 1 100); do [ -s "$dir/nginx.pid" ] && break; sleep 0.05; done
nginx_pid=$(cat "$dir/nginx.pid" 2>/dev/null) || die "nginx wrote no PID file"
base_url="https://127.0.0.1:$nginx_port"
dead_url="https://127.0.0.1:$dead_port"

# The receiver must answer HTTP/2 POSTs with a body, through the CA the
# extension will use: 1000 of them, 64 at a time, none may fail.
check_receiver() {
	local n=1000 body=$dir/check-body.json out
	head -c 600 /dev/zero | tr '\0' 'x' | sed 's/^/{"pad":"/; s/$/"}/' >"$body"
	awk -v n=$n -v u="$base_url/check" 'BEGIN { for (i = 0; i < n; i++) print "url = \"" u "\"" }' >"$dir/check-urls"
	out=$(curl -sS --http2 -Z --parallel-max 64 --max-time 30 --cacert "$dir/certs/ca.crt" \
		-H 'content-type: application/json' --data-binary @"$body" -K "$dir/check-urls" \
		-o /dev/null -w '%{http_code} %{http_version}\n' 2>"$dir/check.err" | sort | uniq -c) || true
	case $out in
	*"$n 200 2"*) ;;
	*) die "the nginx receiver did not answer $n HTTP/2 POSTs with 200: $out $(sort "$dir/check.err" | uniq -c | head -3)" ;;
	esac
}
check_receiver

# The cluster.  new_cluster SUFFIX [BINDIR]: a cluster in $dir/dataSUFFIX,
# logging to $dir/serverSUFFIX.log, made and started by BINDIR's programs
# (default: those on PATH); one function, so 1.0's gets the same settings.
new_cluster() {
	local data=$dir/data$1 bin=${2:+$2/}
	as_test_user "${bin}initdb" -D "$data" -A trust -U postgres --no-sync >"$dir/initdb$1.log" 2>&1 ||
		{ cat "$dir/initdb$1.log" >&2; echo "initdb failed" >&2; return 1; }
	cat >>"$data/postgresql.conf" <<EOF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$dir'
shared_buffers = 512MB
# commit timestamps time the deliveries (pg_xact_commit_timestamp(xmin))
track_commit_timestamp = on
# statements slower than 1 s, the worker's included, leave their plan in
# the server log (no instrumentation: log_analyze is off)
shared_preload_libraries = 'webhooks, auto_explain'
auto_explain.log_min_duration = '1s'
auto_explain.log_nested_statements = on
webhooks.database_name = 'postgres'
webhooks.ssl_ca_file = '$dir/certs/ca.crt'
# the receiver is on loopback, which the SSRF guard blocks by default
webhooks.allow_private_addresses = on
EOF
	# BENCH_CONF: extra settings, for profiling (e.g. pg_stat_statements)
	[ -z "${BENCH_CONF:-}" ] || printf '%s\n' "$BENCH_CONF" >>"$data/postgresql.conf"
	start_server "$1" "${2:-}"
}
start_server() { # SUFFIX [BINDIR]: start $dir/dataSUFFIX
	as_test_user "${2:+$2/}pg_ctl" -D "$dir/data$1" -l "$dir/server$1.log" -w -t 60 start >/dev/null
}
new_cluster "" || die "the cluster did not start"
q -f "$dir/bench/setup.sql" >/dev/null || die "could not set up the bench schema"
q -f "$dir/bench/setup-pgq.sql" >/dev/null || die "could not set up PgQ beside it"

worker_pid=
find_worker() {
	local pid
	for _ in $(seq 1 100); do
		pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'")
		[ -n "$pid" ] && break
		sleep 0.1
	done
	[ -n "$pid" ] || die "no webhooks worker in pg_stat_activity"
	if [ -n "$worker_pid" ] && [ "$pid" != "$worker_pid" ]; then
		echo "WARNING: the webhooks worker was restarted (PID $worker_pid -> $pid)" >&2
		worker_restarts=$((worker_restarts + 1))
	fi
	worker_pid=$pid
	case " $worker_pids " in *" $pid "*) ;; *) worker_pids+=" $pid" ;; esac
}
worker_pids=""
worker_restarts=0
find_worker

# The worker shows in pg_stat_activity before it serves the new extension:
# one delivery end to end before anything is measured (and after a restart).
# Sets why when it fails.
warm_up() {
	why=
	q >/dev/null <<SQL || { why="could not emit the warm-up event"; return 1; }
SELECT count(*) FROM webhooks.webhook_create('warmup', '$base_url/warmup', ARRAY['member.joined']);
SELECT webhooks.emit('warmup', 'member.joined', bench.payload(0));
SQL
	for _ in $(seq 1 150); do
		[ "$(q -c "SELECT count(*) FROM webhooks.delivery_attempts")" -gt 0 ] && break
		sleep 0.2
	done
	if ! [ "$(q -c "SELECT count(*) FROM webhooks.delivery_attempts WHERE error IS NULL")" -gt 0 ]; then
		why="the warm-up event was not delivered within 30 s: $(q -c "SELECT string_agg(error, '; ') FROM webhooks.delivery_attempts")"
		return 1
	fi
	q -c "SELECT webhooks.webhook_delete(community_id, id) FROM webhooks.webhooks" >/dev/null
	q -c "TRUNCATE webhooks.delivery_attempts, webhooks.deliveries" >/dev/null
}
warm_up || die "$why"

status_kb() { # PID FIELD: a kB figure of /proc/PID/status (0 if gone)
	awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}
cpu_ticks() { # PID: user + system clock ticks so far
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0
}
nginx_worker() { awk '{ print $1 }' "/proc/$nginx_pid/task/$nginx_pid/children" 2>/dev/null || true; }

# Per-run worker memory: the peak RSS (VmHWM, reset per run where the
# kernel allows: writing 5 to clear_refs) and the peak of its private part
# (RssAnon, sampled while waiting; RSS also counts the shared buffers the
# worker touched).
reset_peaks() {
	peak_anon_kb=0
	echo 5 >"/proc/$worker_pid/clear_refs" 2>/dev/null || true
}
# A worker whose private memory passes a quarter of the machine's (at most
# 4 GiB) is stopped with the cluster before it takes the machine down.
peak_anon_kb=0
mem_limit_kb=$(awk '/MemTotal/ { l = int($2 / 4); print (l > 4194304 ? 4194304 : l) }' /proc/meminfo)
sample_worker() {
	local a
	a=$(status_kb "$worker_pid" RssAnon)
	[ "${a:-0}" -gt "$peak_anon_kb" ] && peak_anon_kb=$a
	if [ "${a:-0}" -gt "$mem_limit_kb" ]; then
		die "the webhooks worker's private memory reached $((a / 1024)) MB (limit $((mem_limit_kb / 1024)) MB); stopping"
	fi
	return 0
}

say "# webhooks benchmark$([ $smoke = 1 ] && echo ' (smoke run: tiny sizes, figures not asserted)')"
say
say "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
say "- software: $(postgres --version), $(curl --version | head -1 | grep -o 'libcurl/[^ ]*') (built against $(curl-config --version)), $(openssl version | cut -d' ' -f1-2), $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true)"
say "- extension: $pkglibdir/webhooks.so ($(date -r "$pkglibdir/webhooks.so" '+%Y-%m-%d %H:%M:%S'))"
say "- server: $(q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', 'track_commit_timestamp', 'max_connections')")"
say "- webhooks: $(q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name LIKE 'webhooks.%' AND name NOT IN ('webhooks.ssl_ca_file')"), ssl_ca_file=<throwaway CA>"
say "- receiver: nginx, 1 worker process, https://127.0.0.1:$nginx_port (TLS 1.3, HTTP/2, keep-alive), answers 200 after reading the body; worker PID $worker_pid"
say "- runs per scenario: $runs; scenarios: $only"
say

############################################################################
# Shared steps
############################################################################
reset_queue() {
	q -c "TRUNCATE webhooks.delivery_attempts, webhooks.deliveries, bench.marks" >/dev/null
}
drop_webhooks() { # delete every webhook through the API
	q -c "SELECT count(webhooks.webhook_delete(community_id, id)) FROM webhooks.webhooks" >/dev/null
}
# median10: the median of the ten numbers on stdin
median10() {
	sort -n | awk '{ v[NR] = $1 } END { print (v[5] + v[6]) / 2 }'
}
# make_webhooks PREFIX COUNT URL_BASE [ACTIVE]: webhooks in communities
# PREFIX0..PREFIX{COUNT-1}, at URL_BASE/PREFIXi, subscribed to member.joined
make_webhooks() {
	q -c "SELECT count(*) FROM generate_series(0, $2 - 1) i,
	      LATERAL webhooks.webhook_create('$1' || i, '$3/$1' || i, ARRAY['member.joined'], ${4:-true})" >/dev/null
}
# emit_backlog LABEL SELECT: run SELECT (which emits) in one transaction,
# with a mark whose commit timestamp starts the measurement
emit_backlog() {
	q >/dev/null <<SQL
BEGIN;
INSERT INTO bench.marks (label, started) VALUES ('$1', clock_timestamp());
$2;
COMMIT;
SQL
}
# wait_for_attempts WHERE EXPECTED TIMEOUT_S INTERVAL_S: poll the attempt
# log until EXPECTED rows match WHERE, or TIMEOUT_S pass, or the count
# stalls for stall_s; samples the worker's memory.  Sets got.
wait_for_attempts() {
	local where=$1 expected=$2 timeout=$3 interval=$4 start last=-1 changed t
	start=$(date +%s) changed=$start got=0
	while :; do
		got=$(q -c "SELECT count(*) FROM webhooks.delivery_attempts WHERE $where")
		sample_worker
		[ "$got" -ge "$expected" ] && return 0
		t=$(date +%s)
		if [ "$got" != "$last" ]; then last=$got changed=$t; fi
		if [ $((t - start)) -ge "$timeout" ] || [ $((t - changed)) -ge "$stall_s" ]; then
			echo "  (stopped waiting after $((t - start)) s: $got of $expected attempts recorded)" >&2
			return 1
		fi
		sleep "$interval"
	done
}
# delivery_figures LABEL WHERE: "attempts failed rate emit_s first_s"; rate
# is successful deliveries per second from the commit of LABEL's
# transaction to the commit of the last attempt row; first_s is the time
# from that commit to the start of the first attempt
delivery_figures() {
	q -F ' ' -c "
	  SELECT count(*), count(*) FILTER (WHERE a.error IS NOT NULL),
	         round((count(*) FILTER (WHERE a.error IS NULL) / nullif(extract(epoch FROM
	             max(pg_xact_commit_timestamp(a.xmin)) - m.committed), 0))::numeric),
	         round(extract(epoch FROM m.committed - m.started)::numeric, 3),
	         round(extract(epoch FROM min(a.created_at) - m.committed)::numeric, 3)
	  FROM webhooks.delivery_attempts a,
	       (SELECT started, pg_xact_commit_timestamp(xmin) AS committed
	        FROM bench.marks WHERE label = '$1') m
	  WHERE $2
	  GROUP BY m.committed, m.started"
}
failed_seen_by_nginx() { # did nginx log (and answer) the requests of failed attempts?
	q -F ' ' -c "SELECT event_id, extract(epoch FROM created_at), response_time_ms
	             FROM webhooks.delivery_attempts WHERE error IS NOT NULL
	             ORDER BY created_at LIMIT 10" >"$dir/failed.txt"
	[ -s "$dir/failed.txt" ] && [ -f "$dir/arrivals.log" ] || return 0
	awk 'NR == FNR { seen[$2] = seen[$2] " " $1 " (HTTP " $4 ")"; next }
	     { n++; if ($1 in seen) hit++
	       ex = ex sprintf("\n      %s started %.3f, failed after %s ms; nginx: %s", $1, $2, $3,
	                       ($1 in seen) ? "answered at" seen[$1] : "never logged it") }
	     END { printf "    nginx logged %d of the first %d failed attempts:%s\n", hit, n, ex }' \
		"$dir/arrivals.log" "$dir/failed.txt" >&2
}
show_errors() { # print the commonest attempt errors, if any
	q -F ' | ' -c "SELECT count(*), left(error, 150) FROM webhooks.delivery_attempts
	               WHERE error IS NOT NULL GROUP BY 2 ORDER BY 1 DESC LIMIT 5" |
		sed 's/^/    error: /' >&2
}
drain_timeout() { # N: how long a backlog of N may take
	local t=$(($1 / 500 + 30))
	[ $t -gt 900 ] && t=900
	echo $t
}
undone() { # events past the saved read position, and queued deliveries not yet attempted
	q -c "SELECT (SELECT count(*) FROM webhooks.deliveries
	              WHERE state = 'sending' OR (state = 'pending' AND attempts = 0))
	           + (SELECT count(*) FROM webhooks.events e, webhooks.reader r
	              WHERE e.txid >= pg_snapshot_xmin(r.snapshot)
	                AND NOT pg_visible_in_snapshot(e.txid, r.snapshot))"
}
wait_queue_empty() { # TIMEOUT_S: until every event is read and every delivery attempted once
	local n
	for _ in $(seq 1 $(($1 * 5))); do
		n=$(undone)
		[ "$n" = 0 ] && return 0
		sleep 0.2
	done
	echo "  (queue not empty after $1 s: $n deliveries)" >&2
	return 1
}

broken=()
measuring_v10=0
breakage() {
	# the 1.0 release is measured, not tested: its troubles are notes
	if [ $measuring_v10 = 1 ]; then echo "NOTE (1.0): $*" >&2; return 0; fi
	broken+=("$*"); echo "BROKEN: $*" >&2
}

# One backlog delivered and measured.  run_backlog SCENARIO LABEL N SELECT
# WHERE: sets rate failed got emit_s peak_anon_kb hwm_kb cpu_pct ngx_pct.
run_backlog() {
	local scenario=$1 label=$2 n=$3 select=$4 where=$5 t0 t1 w0 w1 g0 g1 ngx figures interval=0.2
	[ "$n" -gt 100000 ] && interval=1
	reset_queue
	find_worker
	reset_peaks
	ngx=$(nginx_worker)
	emit_backlog "$label" "$select"
	t0=$(now) w0=$(cpu_ticks "$worker_pid") g0=$(cpu_ticks "$ngx")
	# BENCH_PERF=PREFIX: profile the worker while it drains (perf, if
	# present); BENCH_PERF_CALLGRAPH=dwarf to see through libraries built
	# without frame pointers (libcurl, OpenSSL), at the price of big files
	local perf_pid=
	if [ -n "${BENCH_PERF:-}" ] && command -v perf >/dev/null; then
		perf record -q -F 999 --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" \
			-p "$worker_pid" -o "$BENCH_PERF.$label" \
			>/dev/null 2>&1 &
		perf_pid=$!
	fi
	wait_for_attempts "$where" "$n" "$(drain_timeout "$n")" "$interval" || true
	[ -n "$perf_pid" ] && stop_pid "$perf_pid" INT
	t1=$(now) w1=$(cpu_ticks "$worker_pid") g1=$(cpu_ticks "$ngx")
	hwm_kb=$(status_kb "$worker_pid" VmHWM)
	cpu_pct=$(calc "100 * ($w1 - $w0) / $clk_tck / ($t1 - $t0)" %.0f)
	ngx_pct=$(calc "100 * ($g1 - $g0) / $clk_tck / ($t1 - $t0)" %.0f)
	figures=$(delivery_figures "$label" "$where")
	read -r got failed rate emit_s first_s <<<"${figures:-0 0 nan nan nan}"
	if [ "${got:-0}" -eq 0 ]; then
		rate=nan
		breakage "$scenario $label: nothing was delivered"
	elif [ "$got" -lt "$n" ]; then
		echo "  only $got of $n attempted in time: no rate for this run" >&2
		rate=nan
	fi
	if [ "${failed:-0}" -gt 0 ]; then
		# the receiver is healthy and local: a failed attempt is a bug
		show_errors
		breakage "$scenario $label: $failed of $got attempts to a healthy endpoint failed"
	fi
	return 0
}

############################################################################
# 1. throughput: a backlog committed at once, to 1 and to 100 endpoints
############################################################################
scenario_throughput() {
	local n eps label fig target
	say "## throughput"
	for n in $tp_sizes; do
		for eps in 1 100; do
			fig="$(fmt_k "$n") backlog, $eps endpoint"; [ "$eps" -gt 1 ] && fig+=s
			target=-
			[ "$n" -ge 100000 ] && target=">= 10000"
			[ $smoke = 1 ] && target=-
			for run in $(seq 1 "$runs"); do
				# new webhooks each run: what an earlier run left in
				# flight is not logged (nor counted) once they are gone
				drop_webhooks
				make_webhooks tp "$eps" "$base_url/ep"
				label="tp-$n-$eps-$run"
				run_backlog throughput "$label" "$n" \
					"SELECT count(webhooks.emit('tp' || (i % $eps), 'member.joined', bench.payload(i))) FROM generate_series(1, $n) i" \
					"true"
				say "- $fig, run $run: $rate deliveries/s, $got attempted, $failed failed, emit ${emit_s}s, first delivery ${first_s}s after the commit, worker CPU ${cpu_pct}%, nginx CPU ${ngx_pct}%, worker peak RSS $((hwm_kb / 1024)) MB (private $((peak_anon_kb / 1024)) MB)"
				record throughput "deliveries/s, $fig" "$rate" "$target"
				record throughput "failed attempts, $fig" "$failed" "== 0"
				record throughput "s from commit to first delivery, $fig" "$first_s" "-"
				record throughput "worker peak RSS MB (VmHWM), $fig" "$(calc "$hwm_kb / 1024" %.1f)" "-"
				record throughput "worker peak private MB (RssAnon), $fig" "$(calc "$peak_anon_kb / 1024" %.1f)" "< 100"
				record throughput "worker CPU % of a core, $fig" "$cpu_pct" "-"
			done
		done
	done
	drop_webhooks
	reset_queue
	throughput_v10
	say
}

# The 1.0 release (commit v10_rev), measured in the throughput scenario.
v10_rev=c7caae4
# v10_install: build 1.0 from git and install it into a private copy of the
# server's programs, libraries and share files (as PostgreSQL's tmp_install
# does): the programs find the rest relative to themselves, so a cluster
# started from that copy loads 1.0's library and SQL, never the installed
# extension.  Sets v10_bin, or v10_note (why not) and returns 1.
v10_install() {
	local src=$dir/v10/src root=$dir/v10/root pgc sharedir d err
	pgc=$(command -v pg_config) sharedir=$(pg_config --sharedir)
	if ! err=$(git -C "$repo" rev-parse -q --verify "$v10_rev^{commit}" 2>&1); then
		v10_note="commit $v10_rev is not in $repo (no git history, or a shallow clone${err:+: $(head -1 <<<"$err")})"
		return 1
	fi
	mkdir -p "$src" "$root"
	# (its Makefile builds with -Werror: a newer compiler may refuse 1.0)
	{ git -C "$repo" archive "$v10_rev" | tar -x -C "$src" &&
		make -s -j"$(nproc)" -C "$src" PG_CONFIG="$pgc"; } >"$dir/v10/build.log" 2>&1 ||
		{ tail -n 20 "$dir/v10/build.log" >&2; v10_note="it did not build (see above)"; return 1; }
	for d in "$(pg_config --bindir)" "$pkglibdir" "$sharedir"; do
		mkdir -p "$root$(dirname "$d")" && cp -a "$d" "$root$(dirname "$d")/" ||
			{ v10_note="could not copy $d"; return 1; }
	done
	# the installed build came along with the copy: 1.0's files only
	rm -rf "$root$pkglibdir"/webhooks.so "$root$pkglibdir"/bitcode/webhooks* \
		"$root$sharedir"/extension/webhooks[.-]*
	make -s -C "$src" PG_CONFIG="$pgc" install DESTDIR="$root" >>"$dir/v10/build.log" 2>&1 ||
		{ tail -n 20 "$dir/v10/build.log" >&2; v10_note="make install DESTDIR=$root failed (see above)"; return 1; }
	v10_bin=$root$(pg_config --bindir)
}
# v10_start: 1.0's cluster (the current one is stopped), checked to run
# 1.0: the extension's version and the library its worker mapped.  Sets
# v10_note and returns 1 otherwise.
v10_start() {
	local version lib
	new_cluster -1.0 "$v10_bin" || { v10_note="its cluster did not start"; return 1; }
	q -f "$dir/bench/setup.sql" >/dev/null || { v10_note="could not set up the bench schema in it"; return 1; }
	warm_up || { v10_note="its worker did not deliver: $why"; return 1; }
	find_worker
	version=$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'webhooks'")
	lib=$(awk '$NF ~ /\/webhooks\.so$/ { print $NF; exit }' "/proc/$worker_pid/maps" 2>/dev/null || true)
	if [ "$version" != 1.0 ] || [ "$lib" != "$dir/v10/root$pkglibdir/webhooks.so" ]; then
		v10_note="its cluster runs version '$version' from '${lib:-?}', not 1.0 from $dir/v10/root"
		return 1
	fi
}
# throughput_v10: the largest backlog to 1 and to 100 endpoints, delivered
# by 1.0 in its own cluster while the current one is stopped (one at a time,
# the same port, receiver and settings), then the current cluster back;
# records 1.0's figures and ours / 1.0 (the ratio of the medians).
throughput_v10() {
	local n=${tp_sizes##* } eps fig run ours theirs target saved_restarts ok=1
	v10_note=
	if ! v10_install; then
		say "- 1.0 comparison skipped: $v10_note"
		return 0
	fi
	stop_cluster "$dir/data"
	server_log=$dir/server-1.0.log measuring_v10=1
	saved_restarts=$worker_restarts worker_pid=
	if v10_start; then
		say "- 1.0 (commit $v10_rev, its own cluster while ours is stopped): worker PID $worker_pid; $(q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name LIKE 'webhooks.%' AND name NOT IN ('webhooks.ssl_ca_file')")"
		for eps in 1 100; do
			fig="$(fmt_k "$n") backlog, $eps endpoint"; [ "$eps" -gt 1 ] && fig+=s
			for run in $(seq 1 "$runs"); do
				drop_webhooks
				make_webhooks tp "$eps" "$base_url/ep"
				run_backlog throughput "tp10-$n-$eps-$run" "$n" \
					"SELECT count(webhooks.emit('tp' || (i % $eps), 'member.joined', bench.payload(i))) FROM generate_series(1, $n) i" \
					"true"
				say "- 1.0, $fig, run $run: $rate deliveries/s, $got attempted, $failed failed, emit ${emit_s}s, first delivery ${first_s}s after the commit, worker CPU ${cpu_pct}%, nginx CPU ${ngx_pct}%, worker peak private $((peak_anon_kb / 1024)) MB"
				record throughput "1.0: deliveries/s, $fig" "$rate" "-"
				record throughput "1.0: failed attempts, $fig" "$failed" "-"
				record throughput "1.0: worker CPU % of a core, $fig" "$cpu_pct" "-"
			done
		done
		[ "$worker_restarts" -gt "$saved_restarts" ] && say "- note: 1.0's worker restarted during its runs"
	else
		ok=0
		say "- 1.0 comparison skipped: $v10_note (its server log ends: $(tail -n 3 "$server_log" 2>/dev/null | tr '\n' ' ' | cut -c1-300))"
	fi
	measuring_v10=0 worker_restarts=$saved_restarts
	stop_cluster "$dir/data-1.0"
	grep -qE 'terminated by signal|PANIC:' "$server_log" 2>/dev/null &&
		say "- note: 1.0's server log shows a crash: $(grep -m1 -E 'terminated by signal|PANIC:' "$server_log")"
	server_log=$dir/server.log
	start_server "" || die "the cluster did not start again after 1.0's"
	worker_pid=   # a new worker, on purpose
	find_worker
	warm_up || die "after 1.0's runs: $why"
	[ $ok = 1 ] || return 0
	for eps in 1 100; do
		fig="$(fmt_k "$n") backlog, $eps endpoint"; [ "$eps" -gt 1 ] && fig+=s
		ours=$(helper median "$results" throughput "deliveries/s, $fig")
		theirs=$(helper median "$results" throughput "1.0: deliveries/s, $fig")
		target=">= 1.5"
		[ $smoke = 1 ] && target=-
		say "- ours / 1.0, $fig: $(calc "$ours / $theirs") (medians: ours $(calc "$ours" %.0f), 1.0 $(calc "$theirs" %.0f) deliveries/s)"
		record throughput "ours / 1.0 ($(fmt_k "$n") to $eps endpoint$([ "$eps" -gt 1 ] && echo s))" "$(calc "$ours / $theirs")" "$target"
	done
}

############################################################################
# 2. the limit: wrk against the same nginx, same body, HTTPS keep-alive
############################################################################
scenario_limit() {
	local rps errors
	say "## limit (wrk, HTTP/1.1 over TLS, keep-alive, 1 thread, 64 connections, ${wrk_seconds}s)"
	# a body like a delivery's: the envelope around bench.payload
	q -c "SELECT json_build_object('id', webhooks.uuid_v7(), 'type', 'member.joined',
	             'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
	             'community_id', 'tp0', 'data', bench.payload(1))::text" |
		tr -d '\n' >"$dir/body.json"
	for run in $(seq 1 "$runs"); do
		BENCH_BODY=$dir/body.json wrk -t1 -c64 -d"${wrk_seconds}s" -s "$dir/bench/post.lua" \
			"$base_url/wrk" >"$dir/wrk.out" 2>&1 &
		client_pid=$!
		wait "$client_pid" || true
		client_pid=
		rps=$(awk '/^Requests\/sec:/ { print $2 }' "$dir/wrk.out")
		errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }' "$dir/wrk.out")
		[ -n "$rps" ] || { cat "$dir/wrk.out" >&2; breakage "wrk produced no figure"; rps=nan; }
		say "- run $run: $rps requests/s, $errors errors or non-2xx ($(wc -c <"$dir/body.json") byte body)"
		record limit "wrk requests/s" "$rps" "-"
		record limit "wrk errors or non-2xx" "$errors" "== 0"
	done
	say
}

############################################################################
# 3. latency: commit to arrival of single events on an idle system
############################################################################
scenario_latency() {
	local n=$lat_events script=$dir/latency.sql res count missing p50 p99 max cold size protocol
	say "## latency ($n single events, one transaction each, 20 ms apart)"
	drop_webhooks
	reset_queue
	make_webhooks lat 1 "$base_url/logged"
	wait_queue_empty 30 || true
	for run in $(seq 1 "$runs"); do
		{
			# one warm-up event, reported apart (it may open the connection)
			echo "INSERT INTO bench.lat (run, event_id, warm) SELECT $run, webhooks.emit('lat0', 'member.joined', bench.payload(0)), true;"
			echo "SELECT pg_sleep(0.2);"
			for i in $(seq 1 "$n"); do
				echo "INSERT INTO bench.lat (run, event_id) SELECT $run, webhooks.emit('lat0', 'member.joined', bench.payload($i));"
				echo "SELECT pg_sleep(0.02);"
			done
		} >"$script"
		q -f "$script" >/dev/null
		wait_for_attempts "event_id IN (SELECT event_id FROM bench.lat WHERE run = $run)" $((n + 1)) 30 0.2 || true
		sleep 0.2   # nginx logs after answering
		q -F '|' -c "SELECT event_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)), warm
		             FROM bench.lat WHERE run = $run" >"$dir/commits-$run.txt"
		res=$(helper latency "$dir/arrivals.log" "$dir/commits-$run.txt")
		read -r count missing p50 p99 max cold size protocol <<<"$res"
		if [ "$count" -eq 0 ]; then breakage "latency run $run: no event arrived"; fi
		[ "$missing" -gt 0 ] && breakage "latency run $run: $missing events did not arrive within 30 s"
		say "- run $run: p50 $p50 ms, p99 $p99 ms, max $max ms over $count events ($missing missing); first (warm-up) event $cold ms; body $size bytes over $protocol"
		record latency "commit to arrival p50 ms" "$p50" "< 2"
		record latency "commit to arrival p99 ms" "$p99" "< 10"
		record latency "commit to arrival max ms" "$max" "-"
		record latency "first event of a run ms" "$cold" "-"
		record latency "events not arrived" "$missing" "== 0"
	done
	drop_webhooks
	reset_queue
	say
}

############################################################################
# 4. caller cost: pgbench INSERT with and without the emit_trigger trigger
############################################################################
pgbench_run() { # SCRIPT: run pgbench; sets tps, waits (what its sessions waited on) and wal (WAL bytes per transaction, the worker's included)
	local lsn0 xacts
	lsn0=$(q -c "SELECT pg_current_wal_insert_lsn()")
	pgbench -n -c 4 -j 2 -T "$pgbench_seconds" -f "$1" -h "$dir" -p "$pgport" -U postgres postgres \
		>"$dir/pgbench.out" 2>&1 &
	client_pid=$!
	# sample the pgbench sessions' wait events, 4 times a second, bounded
	for _ in $(seq 1 $((pgbench_seconds * 4))); do
		kill -0 "$client_pid" 2>/dev/null || break
		q -c "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
		      WHERE application_name = 'pgbench' AND state = 'active'" 2>/dev/null || true
		sleep 0.25
	done | sort | uniq -c | sort -rn |
		awk '{ n[NR] = $1; w[NR] = $2; t += $1 } END { for (i = 1; i <= NR && i <= 3; i++) printf "%s%s %.0f%%", (i > 1 ? ", " : ""), w[i], 100 * n[i] / t }' >"$dir/waits.txt"
	waits=$(cat "$dir/waits.txt")
	tps=nan
	if ! wait "$client_pid"; then
		client_pid=
		cat "$dir/pgbench.out" >&2
		breakage "pgbench failed on $(basename "$1")"
		return 0
	fi
	client_pid=
	tps=$(awk '/^tps = / { printf "%.0f\n", $3; exit }' "$dir/pgbench.out")
	xacts=$(awk '/number of transactions actually processed:/ { print $NF; exit }' "$dir/pgbench.out")
	wal=$(q -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0') / nullif(${xacts:-0}, 0))")
}
# worker_away / worker_back: point the worker at a database that does not
# exist, and back (the launcher moves it), to measure with the worker idle.
worker_away() {
	q -c "ALTER SYSTEM SET webhooks.database_name = 'bench_worker_away'" >/dev/null
	q -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 100); do
		[ -z "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'")" ] && return 0
		sleep 0.1
	done
	die "the worker did not leave"
}
worker_back() {
	q -c "ALTER SYSTEM RESET webhooks.database_name" >/dev/null
	q -c "SELECT pg_reload_conf()" >/dev/null
	worker_pid=   # a new worker, on purpose
	find_worker
}
scenario_caller() {
	local plain trig none emit ratio left failed w0 w1 g0 g1 t0 t1 ngx wcpu ncpu plain_waits trig_waits plain_wal trig_wal
	local iplain ioutbox ipgq itrig itrig_wal
	say "## caller cost (pgbench -c 4 -j 2 -T $pgbench_seconds, synchronous_commit on)"
	drop_webhooks
	reset_queue
	make_webhooks pgb 1 "$base_url/logged"
	cat >"$dir/plain.sql" <<'EOF'
\set n random(1, 1000000000)
INSERT INTO bench.members_plain (community_id, name) VALUES ('pgb0', 'member ' || :n);
EOF
	sed 's/members_plain/members_trig/' "$dir/plain.sql" >"$dir/trig.sql"
	# the trigger's own cost: a community without subscribed webhooks
	sed "s/members_plain/members_trig/; s/'pgb0'/'nobody'/" "$dir/plain.sql" >"$dir/trig-none.sql"
	cat >"$dir/emit.sql" <<'EOF'
\set n random(1, 1000000000)
SELECT webhooks.emit('pgb0', 'member.joined', jsonb_build_object('id', :n, 'name', 'member ' || :n));
EOF
	sed 's/members_plain/members_outbox/' "$dir/plain.sql" >"$dir/outbox.sql"
	sed 's/members_plain/members_pgq/' "$dir/plain.sql" >"$dir/pgq.sql"
	for run in $(seq 1 "$runs"); do
		q -c "TRUNCATE bench.members_plain, bench.members_trig, bench.members_outbox, bench.outbox, bench.members_pgq" >/dev/null
		reset_queue
		# The worker idle (serving another database): what an event costs the
		# application's transaction, beside the floor and PgQ.
		worker_away
		pgbench_run "$dir/plain.sql"
		iplain=$tps
		pgbench_run "$dir/outbox.sql"
		ioutbox=$tps
		pgbench_run "$dir/pgq.sql"
		ipgq=$tps
		pgbench_run "$dir/trig.sql"
		itrig=$tps itrig_wal=$wal
		worker_back
		say "- run $run, worker idle: plain INSERT $iplain TPS; plpgsql append trigger $ioutbox ($(calc "$ioutbox / $iplain")); PgQ insert_event $ipgq ($(calc "$ipgq / $iplain")); emit_trigger $itrig ($(calc "$itrig / $iplain"), $itrig_wal WAL bytes per transaction)"
		record caller "worker idle: plpgsql append trigger / plain TPS" "$(calc "$ioutbox / $iplain")" "-"
		record caller "worker idle: PgQ insert_event / plain TPS" "$(calc "$ipgq / $iplain")" "-"
		record caller "worker idle: emit_trigger / plain TPS" "$(calc "$itrig / $iplain")" ">= 0.85"
		record caller "worker idle: emit_trigger / PgQ TPS" "$(calc "$itrig / $ipgq")" "> 1"
		reset_queue
		# The worker delivering what the trigger emits, on the same 2 cores.
		find_worker
		ngx=$(nginx_worker)
		pgbench_run "$dir/plain.sql"
		plain=$tps plain_waits=$waits plain_wal=$wal
		t0=$(now) w0=$(cpu_ticks "$worker_pid") g0=$(cpu_ticks "$ngx")
		pgbench_run "$dir/trig.sql"
		trig=$tps trig_waits=$waits trig_wal=$wal
		t1=$(now) w1=$(cpu_ticks "$worker_pid") g1=$(cpu_ticks "$ngx")
		left=$(undone)
		wcpu=$(calc "100 * ($w1 - $w0) / $clk_tck / ($t1 - $t0)" %.0f)
		ncpu=$(calc "100 * ($g1 - $g0) / $clk_tck / ($t1 - $t0)" %.0f)
		wait_queue_empty 120 || true
		pgbench_run "$dir/trig-none.sql"
		none=$tps
		pgbench_run "$dir/emit.sql"
		emit=$tps
		wait_queue_empty 120 || true
		failed=$(q -c "SELECT count(*) FROM webhooks.delivery_attempts WHERE error IS NOT NULL")
		if [ "$failed" -gt 0 ]; then
			show_errors
			failed_seen_by_nginx
			breakage "caller run $run: $failed attempts to a healthy endpoint failed"
		fi
		if [ "$(q -c "SELECT count(*) FROM webhooks.delivery_attempts")" -eq 0 ]; then
			breakage "caller run $run: nothing was delivered"
		fi
		ratio=$(calc "$trig / $plain")
		say "- run $run, worker delivering: plain INSERT $plain TPS, with trigger $trig TPS (ratio $ratio; worker CPU ${wcpu}%, nginx CPU ${ncpu}%; $left events or deliveries not yet done when it ended), with trigger but nothing subscribed $none TPS, emit() $emit calls/s, $failed failed attempts"
		say "  WAL per transaction: plain $plain_wal bytes, with trigger $trig_wal bytes (the worker's WAL while it ran included)"
		say "  pgbench sessions were (sampled): plain: $plain_waits; with trigger: $trig_waits"
		record caller "plain INSERT TPS" "$plain" "-"
		record caller "INSERT with emit_trigger TPS" "$trig" "-"
		record caller "trigger / plain TPS" "$ratio" ">= 0.85"
		record caller "worker CPU % during the trigger run" "$wcpu" "-"
		record caller "events or deliveries not yet done when pgbench ended" "$left" "-"
		record caller "WAL bytes per plain INSERT" "$plain_wal" "-"
		record caller "WAL bytes per INSERT with trigger (worker's included)" "$trig_wal" "-"
		record caller "INSERT with emit_trigger, nothing subscribed TPS" "$none" "-"
		record caller "emit() calls/s" "$emit" "-"
		record caller "failed attempts" "$failed" "== 0"
	done
	drop_webhooks
	reset_queue
	say
}

# Retention: a past day's partition of a million events is dropped (the
# statement the worker runs, with its 200 ms lock timeout) while a backlog
# drains; how long the drop takes, and the longest pause between two
# deliveries around it against the longest anywhere else in the drain.
scale_retention() {
	local old_rows=$scale_events part drop_ms t_drop tries gaps near far n=100000
	[ $smoke = 1 ] && n=2000
	part=events_p$(q -c "SELECT to_char(current_date - 40, 'YYYYMMDD')")
	q -c "
	  DO \$\$
	  DECLARE d timestamptz := (current_date - 40)::timestamp AT TIME ZONE 'UTC';
	  BEGIN
	    EXECUTE format('CREATE TABLE webhooks.%I PARTITION OF webhooks.events FOR VALUES FROM (%L) TO (%L)',
	                   '$part', d, d + interval '1 day');
	    EXECUTE format('CREATE INDEX ON webhooks.%I (txid, id)', '$part');
	  END \$\$;
	  INSERT INTO webhooks.events (id, type, community_id, payload, created_at, txid, payload_bytes)
	  SELECT gen_random_uuid(), 'member.joined', 'old', bench.payload(i),
	         ((current_date - 40)::timestamp AT TIME ZONE 'UTC') + i * interval '80 ms', '0', 600
	  FROM generate_series(1, $old_rows) i" >/dev/null
	make_webhooks retention 1 "$base_url/retention"
	(
		# once the backlog is committed and a tenth delivered, as the
		# worker would: 200 ms lock timeout, tried again (the worker waits
		# a minute; here 100 ms, at most 50 times)
		for _ in $(seq 1 300); do
			[ "$(q -c "SELECT count(*) FROM webhooks.delivery_attempts a JOIN webhooks.webhooks w
			           ON w.id = a.webhook_id WHERE w.community_id = 'retention0'" 2>/dev/null)" -ge $((n / 10)) ] && break
			sleep 0.1
		done
		for try in $(seq 1 50); do
			if q -c "SET lock_timeout = '200ms'" -c '\timing on' \
				-c "SELECT extract(epoch FROM clock_timestamp())" \
				-c "DROP TABLE webhooks.$part" >"$dir/drop.txt" 2>&1; then
				echo "tries: $try" >>"$dir/drop.txt"
				break
			fi
			sleep 0.1
		done
	) &
	local dropper=$!
	run_backlog scale "retention" "$n" \
		"SELECT count(webhooks.emit('retention0', 'member.joined', bench.payload(i))) FROM generate_series(1, $n) i" \
		"true"
	wait "$dropper" || true
	drop_ms=$(awk '/^Time:/ { t = $2 } END { print t + 0 }' "$dir/drop.txt")
	t_drop=$(grep -E '^[0-9]+\.[0-9]+$' "$dir/drop.txt" | tail -1)
	tries=$(awk '/^tries:/ { print $2 }' "$dir/drop.txt")
	if [ -z "$tries" ] || [ -z "$t_drop" ]; then
		say "- retention: the drop did not run: $(tr '\n' ' ' <"$dir/drop.txt")"
		return 0
	fi
	# the longest pause between deliveries within 1 s of the drop, and elsewhere
	gaps=$(q -F ' ' -c "
	  WITH a AS (
	    SELECT created_at, created_at - lag(created_at) OVER (ORDER BY created_at) AS gap
	    FROM webhooks.delivery_attempts
	    WHERE webhook_id IN (SELECT id FROM webhooks.webhooks WHERE community_id = 'retention0'))
	  SELECT round(1000 * extract(epoch FROM coalesce(max(gap) FILTER (WHERE created_at
	           BETWEEN to_timestamp($t_drop) AND to_timestamp($t_drop) + interval '1 s' + $drop_ms * interval '1 ms'), '0'))),
	         round(1000 * extract(epoch FROM coalesce(max(gap) FILTER (WHERE NOT created_at
	           BETWEEN to_timestamp($t_drop) AND to_timestamp($t_drop) + interval '1 s' + $drop_ms * interval '1 ms'), '0')))
	  FROM a")
	read -r near far <<<"${gaps:-nan nan}"
	say "- retention: dropping a day of $(fmt_k "$old_rows") events took $drop_ms ms (lock had at try $tries) while $(fmt_k "$n") deliveries drained at $rate/s; longest pause between deliveries around the drop $near ms, elsewhere in the drain $far ms"
	record scale "ms to drop a day of $(fmt_k "$old_rows") events" "$drop_ms" "< 1000"
	record scale "longest pause in deliveries around the drop, ms" "$near" "-"
	record scale "longest pause in deliveries elsewhere in the drain, ms" "$far" "-"
	drop_webhooks
	reset_queue
}

############################################################################
# 5. scale: a big backlog drains at a steady rate; webhook_logs stays fast
############################################################################
scenario_scale() {
	local n=$scale_events k label spans first last ratio id chunk lo hi t0 t1 p1 p100 plan
	say "## scale ($(fmt_k "$n") backlog; webhook_logs over $(fmt_k "$log_rows") log rows)"
	for run in $(seq 1 "$runs"); do
		drop_webhooks
		make_webhooks scale 1 "$base_url/scale"
		label="scale-$run"
		run_backlog scale "$label" "$n" \
			"SELECT count(webhooks.emit('scale0', 'member.joined', bench.payload(i))) FROM generate_series(1, $n) i" \
			"true"
		# the time the first and the last tenth of the attempts took
		spans=$(q -F ' ' -c "
		  SELECT extract(epoch FROM t[2] - t[1]), extract(epoch FROM t[4] - t[3])
		  FROM (SELECT percentile_disc(ARRAY[0, 0.1, 0.9, 1]) WITHIN GROUP (ORDER BY created_at) AS t
		        FROM webhooks.delivery_attempts) p")
		read -r first last <<<"${spans:-nan nan}"
		[ "$got" -lt "$n" ] && first=nan last=nan
		k=$((got / 10))
		ratio=$(calc "$first / $last")
		say "- run $run: $rate deliveries/s overall ($got attempted, $failed failed, emit ${emit_s}s, first delivery ${first_s}s after the commit), first tenth $(calc "$k / $first" %.0f)/s, last tenth $(calc "$k / $last" %.0f)/s (last/first rate $ratio), worker CPU ${cpu_pct}%, peak RSS $((hwm_kb / 1024)) MB (private $((peak_anon_kb / 1024)) MB)"
		record scale "deliveries/s, $(fmt_k "$n") backlog" "$rate" "-"
		record scale "first tenth deliveries/s" "$(calc "$k / $first" %.0f)" "-"
		record scale "last tenth deliveries/s" "$(calc "$k / $last" %.0f)" "-"
		record scale "last / first tenth rate" "$ratio" "in 0.8 1.2"
		record scale "failed attempts, $(fmt_k "$n") backlog" "$failed" "== 0"
		record scale "s from commit to first delivery" "$first_s" "-"
		record scale "worker peak RSS MB (VmHWM), $(fmt_k "$n") backlog" "$(calc "$hwm_kb / 1024" %.1f)" "-"
		record scale "worker peak private MB (RssAnon), $(fmt_k "$n") backlog" "$(calc "$peak_anon_kb / 1024" %.1f)" "< 100"
		if [ "$got" -lt "$n" ] && [ "$run" -lt "$runs" ]; then
			say "- the backlog was not drained in time: the other runs are skipped"
			break
		fi
	done
	drop_webhooks
	reset_queue
	scale_retention

	# webhook_logs: 100 webhooks' worth of attempts, inserted directly
	make_webhooks logs 100 "$base_url/logs" false
	chunk=1000000
	t0=$(now)
	for ((lo = 1; lo <= log_rows; lo += chunk)); do
		hi=$((lo + chunk - 1))
		[ $hi -gt "$log_rows" ] && hi=$log_rows
		q -c "
		  INSERT INTO webhooks.delivery_attempts
		         (webhook_id, event_id, event, attempt, status_code, response_time_ms, created_at)
		  SELECT w.ids[1 + i % 100], gen_random_uuid(), 'member.joined', 1, 200, 3,
		         now() - i * interval '10 ms'
		  FROM generate_series($lo, $hi) i,
		       (SELECT array_agg(id ORDER BY community_id) AS ids FROM webhooks.webhooks
		        WHERE community_id LIKE 'logs%') w" >/dev/null
	done
	# what the worker would have counted for webhook_stats as it went
	q -c "
	  INSERT INTO webhooks.webhook_hourly (webhook_id, hour, bucket, attempts, successes)
	  SELECT webhook_id, date_trunc('hour', created_at),
	         width_bucket(response_time_ms, webhooks.response_buckets()),
	         count(*), count(*) FILTER (WHERE error IS NULL)
	  FROM webhooks.delivery_attempts
	  WHERE created_at >= now() - interval '2 days' GROUP BY 1, 2, 3
	  ON CONFLICT DO NOTHING" >/dev/null
	q -c "ANALYZE webhooks.delivery_attempts" >/dev/null
	t1=$(now)
	id=$(q -c "SELECT id FROM webhooks.webhooks WHERE community_id = 'logs0'")
	say "- $(fmt_k "$log_rows") log rows inserted and analysed in $(calc "$t1 - $t0" %.1f) s; webhook logs0 has $(q -c "SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$id'") rows"
	plan=$(q -c "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
	             SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
	             SET client_min_messages = log;
	             SELECT count(*) FROM webhooks.webhook_logs('logs0', '$id', 100, 50)" 2>&1 |
		awk '/Query Text:.*FROM webhooks.delivery_attempts/ { on = 1; next }
		     on && /Scan/ { sub(/^ *(->)? */, ""); sub(/  \(.*/, ""); print; on = 0 }')  # (reads to the end: no SIGPIPE for psql)
	for run in $(seq 1 "$runs"); do
		# 11 calls per page in one session; the first is dropped (plan cache)
		{
			printf '%s\n' '\timing on'
			for _ in $(seq 1 11); do echo "SELECT count(*) FROM webhooks.webhook_logs('logs0', '$id', 1, 50);"; done
			for _ in $(seq 1 11); do echo "SELECT count(*) FROM webhooks.webhook_logs('logs0', '$id', 100, 50);"; done
			for _ in $(seq 1 11); do echo "SELECT attempts_24h FROM webhooks.webhook_stats('logs0', '$id');"; done
			for _ in $(seq 1 11); do echo "SELECT count(*), sum(delivered_total) FROM webhooks.metrics; SELECT * FROM webhooks.metrics_total;"; done
		} >"$dir/logs.sql"
		q -f "$dir/logs.sql" | awk '/^Time:/ { print $2 }' >"$dir/logs-times.txt"
		p1=$(sed -n '2,11p' "$dir/logs-times.txt" | median10)
		p100=$(sed -n '13,22p' "$dir/logs-times.txt" | median10)
		stats=$(sed -n '24,33p' "$dir/logs-times.txt" | median10)
		# a scrape: both views, two statements per line of logs.sql
		scrape=$(sed -n '36,$p' "$dir/logs-times.txt" | paste -d' ' - - | awk '{ print $1 + $2 }' | median10)
		say "- run $run: webhook_logs page 1: $p1 ms, page 100: $p100 ms; webhook_stats: $stats ms ($(q -c "SELECT attempts_24h FROM webhooks.webhook_stats('logs0', '$id')") attempts in 24 h); metrics scrape (both views, 100 webhooks): $scrape ms (medians of 10 calls, psql round trip included); plan: ${plan:-unknown}"
		record scale "webhook_stats ms, $(fmt_k "$log_rows") log rows" "$stats" "-"
		record scale "metrics scrape ms, $(fmt_k "$log_rows") log rows" "$scrape" "-"
		record scale "webhook_logs page 1 ms, $(fmt_k "$log_rows") rows" "$p1" "< 5"
		record scale "webhook_logs page 100 ms, $(fmt_k "$log_rows") rows" "$p100" "< 5"
		# (1,000 rows a webhook in a smoke run: a bitmap scan is the right plan)
		record scale "webhook_logs plan scan node" "${plan:-unknown}" "$([ $smoke = 1 ] && echo - || echo contains Index)"
	done
	# the rows were inserted just now; a log written over hours has been
	# vacuumed by autovacuum (on inserts, since PostgreSQL 13), and the
	# rows a page skips are then read from the index alone
	q -c "VACUUM webhooks.delivery_attempts" >/dev/null
	# (and its writes flushed now, not during the next scenario)
	q -c "CHECKPOINT" >/dev/null
	{
		printf '%s\n' '\timing on'
		for _ in $(seq 1 11); do echo "SELECT count(*) FROM webhooks.webhook_logs('logs0', '$id', 100, 50);"; done
	} >"$dir/logs-vac.sql"
	p100=$(q -f "$dir/logs-vac.sql" | awk '/^Time:/ { print $2 }' | sed -n '2,11p' | median10)
	say "- after VACUUM (as autovacuum leaves a log written over hours): webhook_logs page 100: $p100 ms"
	record scale "webhook_logs page 100 ms after VACUUM, $(fmt_k "$log_rows") rows" "$p100" "< 5"
	drop_webhooks
	reset_queue
	say
}

############################################################################
# 6. isolation: a healthy endpoint beside one that never answers
############################################################################
scenario_isolation() {
	local total=$iso_events healthy alone with ratio hid t_emit wait_s alone_cpu dead_done
	healthy=$((total - total / 11))
	say "## isolation ($healthy deliveries to a healthy endpoint, alone and beside $((total / 11)) to one that never answers; webhooks.timeout $(q -c "SHOW webhooks.timeout"))"
	for run in $(seq 1 "$runs"); do
		drop_webhooks
		make_webhooks ok 1 "$base_url/ok"
		hid=$(q -c "SELECT id FROM webhooks.webhooks WHERE community_id = 'ok0'")
		run_backlog isolation "iso-alone-$run" "$healthy" \
			"SELECT count(webhooks.emit('ok0', 'member.joined', bench.payload(i))) FROM generate_series(1, $healthy) i" \
			"webhook_id = '$hid'"
		alone=$rate alone_cpu=$cpu_pct
		make_webhooks dead 1 "$dead_url/dead"
		run_backlog isolation "iso-with-$run" "$healthy" \
			"SELECT count(webhooks.emit(CASE WHEN i % 11 = 0 THEN 'dead0' ELSE 'ok0' END, 'member.joined', bench.payload(i))) FROM generate_series(1, $total) i" \
			"webhook_id = '$hid'"
		with=$rate
		ratio=$(calc "$with / $alone")
		# the dead endpoint's attempts must still hang (none answered yet)
		dead_done=$(q -c "SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id <> '$hid'")
		t_emit=$(q -c "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM bench.marks WHERE label = 'iso-with-$run'")
		say "- run $run: healthy alone $alone deliveries/s (worker CPU ${alone_cpu}%), beside the dead endpoint $with deliveries/s (worker CPU ${cpu_pct}%), ratio $ratio; $failed failed to the healthy one; $dead_done attempts to the dead one ended during the run"
		record isolation "healthy alone deliveries/s" "$alone" "-"
		record isolation "healthy beside a dead endpoint deliveries/s" "$with" "-"
		record isolation "beside / alone" "$ratio" ">= 0.9"
		record isolation "failed attempts to the healthy endpoint" "$failed" "== 0"
		record isolation "worker CPU % of a core, alone" "$alone_cpu" "-"
		record isolation "worker CPU % of a core, beside a dead endpoint" "$cpu_pct" "-"
		drop_webhooks   # drops the dead endpoint's pending deliveries
		if [ "$run" -lt "$runs" ]; then
			# let the requests in flight to the dead endpoint time out
			# (webhooks.timeout + 2 s after the emit, 60 s at most)
			wait_s=$(calc "min(60, $t_emit + $(q -c "SELECT setting::int / 1000 FROM pg_settings WHERE name = 'webhooks.timeout'") + 2 - $(date +%s))" %.1f)
			awk "BEGIN { exit !($wait_s > 0) }" && sleep "$wait_s"
		fi
	done
	reset_queue
	say
}

############################################################################
started=$(date +%s)
for s in $all_scenarios; do
	wants "$s" || continue
	"scenario_$s"
	find_worker
done

# ours / wrk: the 100k (or largest) single-endpoint backlog against wrk
if wants limit && wants throughput; then
	big=${tp_sizes##* }
	ours=$(helper median "$results" throughput "deliveries/s, $(fmt_k "$big") backlog, 1 endpoint")
	theirs=$(helper median "$results" limit "wrk requests/s")
	record limit "ours ($(fmt_k "$big") backlog, 1 endpoint) / wrk" "$(calc "$ours / $theirs")" "-"
fi

say "## summary ($(( $(date +%s) - started )) s)"
say
helper table "$results"
say
[ $smoke = 1 ] && say "(smoke sizes are far below the sizes the targets are for: 'met' is for orientation only)" && say

# What the server log says.
# (autovacuum canceled by the bench's own TRUNCATEs is not worth a line)
grep -E '(ERROR|FATAL|PANIC|WARNING):  ' "$dir/server.log" | grep -v 'canceling autovacuum task' |
	sed -E 's/^.*(ERROR|FATAL|PANIC|WARNING):  /\1: /' >"$dir/server-errors.txt" || true
if [ -s "$dir/server-errors.txt" ]; then
	say "server log: $(wc -l <"$dir/server-errors.txt") ERROR/WARNING/FATAL/PANIC lines; the commonest:"
	sort "$dir/server-errors.txt" | uniq -c | sort -rn | head -5 | cut -c1-200 | sed 's/^/    /'
else
	say "server log: no ERROR, WARNING, FATAL or PANIC lines (but canceled autovacuums)"
fi
say "worker statements over 1 s (auto_explain): $(helper slow "$dir/server.log" $worker_pids)"
if grep -qE 'terminated by signal|PANIC:' "$dir/server.log"; then
	breakage "a server process crashed (see the server log)"
	grep -E 'terminated by signal|PANIC:' "$dir/server.log" | head -5 >&2
fi
[ "$worker_restarts" -gt 0 ] && breakage "the webhooks worker restarted $worker_restarts times"

if [ ${#broken[@]} -gt 0 ]; then
	echo "bench.sh: FAILED:" >&2
	printf '  - %s\n' "${broken[@]}" >&2
	exit 1
fi
