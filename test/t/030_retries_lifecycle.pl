# Retries and the life of a delivery: the retry schedule (spacing, number
# of attempts, the attempt log), exhaustion, Retry-After, a schedule
# changed by SIGHUP, and webhook_delete / deactivation while deliveries
# wait for a retry or are claimed by the worker but not yet sent.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;
use Time::HiRes qw(time);

my $node = new_node('retries');
my $recv = start_receiver();
my $base = $recv->{base};
my $worker_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});

sub at_path
{
	my ($path) = @_;
	my @r = sort { $a->{time} <=> $b->{time} }
	  grep { $_->{path} eq $path } requests($recv);
	return @r;
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Emit one member.joined event in $community; returns its id.
sub emit
{
	my ($community) = @_;
	return sql("SELECT webhooks.emit('$community', 'member.joined', '{\"n\": 1}')");
}

# Set webhooks.retry_schedule for the whole cluster and wait until new
# sessions see it: the postmaster has then signalled the worker too.
sub set_schedule
{
	my ($schedule) = @_;
	sql("ALTER SYSTEM SET webhooks.retry_schedule = '$schedule'");
	sql('SELECT pg_reload_conf()');
	ok($node->poll_query_until('postgres', 'SHOW webhooks.retry_schedule', $schedule),
		"retry_schedule is now '$schedule'");
}

# ---------------------------------------------------------------------
# /flaky/2: 500, 500, 200 on the schedule 200ms, 400ms.
my ($fw) = create_webhook($node, 'R', "$base/flaky/2", '{member.joined}');
my $eid = emit('R');
wait_for_requests($recv, 3, sub { $_[0]{path} eq '/flaky/2' }, 30);
my @f = at_path('/flaky/2');
is(scalar @f, 3, 'three requests to /flaky/2');
is_deeply([ map { $_->{headers}{'webhook-id'} } @f ], [ ($eid) x 3 ],
	'all with the same webhook-id (the event id)');
is_deeply([ map { $_->{status} } @f ], [ 500, 500, 200 ], 'answered 500, 500, 200');
my ($g1, $g2) = ($f[1]{time} - $f[0]{time}, $f[2]{time} - $f[1]{time});
note(sprintf('retry gaps: %.3f s, %.3f s (schedule 200ms, 400ms)', $g1, $g2));
cmp_ok($g1, '>=', 0.19, 'second attempt no sooner than 200ms after the first');
cmp_ok($g2, '>=', 0.38, 'third attempt no sooner than 400ms after the second');
cmp_ok($g1, '<', 4.5, 'second attempt comes on the 200ms schedule, not a default one');
cmp_ok($g2, '<', 4.5, 'third attempt comes on the 400ms schedule, not a default one');

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM webhooks.deliveries WHERE event_id = '$eid'"),
	'the delivered row is gone from webhooks.deliveries');
is(sql("SELECT string_agg(attempt || ':' || coalesce(status_code::text, '-') || ':' || event_id, ',') "
	  . "FROM webhooks.webhook_logs('R', '$fw')"),
	"3:200:$eid,2:500:$eid,1:500:$eid",
	'webhook_logs: attempts 3, 2, 1 (newest first), statuses 200, 500, 500');
is(sql("SELECT count(*) FROM webhooks.webhook_logs('R', '$fw') WHERE event = 'member.joined'"),
	'3', 'each logged with the event name');

# ---------------------------------------------------------------------
# /status/500: 1 + len(schedule) attempts, then failed for good.
my ($xw) = create_webhook($node, 'X', "$base/status/500", '{member.joined}');
my $xid = emit('X');
wait_for_requests($recv, 3, sub { $_[0]{path} eq '/status/500' }, 30);
ok($node->poll_query_until('postgres',
	"SELECT state = 'failed' FROM webhooks.deliveries WHERE event_id = '$xid'"),
	'after the last retry the delivery is failed');
is(sql("SELECT state || ',' || attempts || ',' || last_status FROM webhooks.deliveries "
	  . "WHERE event_id = '$xid'"), 'failed,3,500', 'state failed, attempts 3, last_status 500');
is(sql("SELECT pending || ',' || in_flight || ',' || retrying || ',' || failed "
	  . "FROM webhooks.delivery_status WHERE webhook_id = '$xw'"),
	'0,0,0,1', 'delivery_status shows it failed');
wait_until(sub { at_path('/status/500') > 3 }, 'a 4th attempt (must not come)', 1.2);
is(scalar(at_path('/status/500')), 3, 'exactly 3 requests: no 4th attempt');
is(sql("SELECT string_agg(attempt || ':' || status_code, ',') FROM webhooks.webhook_logs('X', '$xw')"),
	'3:500,2:500,1:500', 'webhook_logs shows the 3 failed attempts');

# ---------------------------------------------------------------------
# Retry-After: 2 (seconds) beats the 200ms schedule.
my ($rw) = create_webhook($node, 'RA', "$base/retry-after/2", '{member.joined}');
my $rid = emit('RA');
wait_for_requests($recv, 2, sub { $_[0]{path} eq '/retry-after/2' }, 30);
my @ra = at_path('/retry-after/2');
is_deeply([ map { $_->{status} } @ra ], [ 503, 200 ], 'a 503 with Retry-After, then 200');
my $ra_gap = $ra[1]{time} - $ra[0]{time};
note(sprintf('Retry-After: 2 -> retry after %.3f s', $ra_gap));
cmp_ok($ra_gap, '>=', 1.9, 'the retry waits for Retry-After (2 s), not the 200ms schedule');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM webhooks.deliveries WHERE event_id = '$rid'"),
	'then it is delivered');

# A Retry-After too large for any clock (2^63 - 1 seconds) is capped at
# 24 hours: it must neither overflow into "retry at once" nor wait forever.
my ($hw) = create_webhook($node, 'RA-huge', "$base/retry-after/9223372036854775807",
	'{member.joined}');
my $hid = emit('RA-huge');
wait_for_requests($recv, 1,
	sub { $_[0]{path} eq '/retry-after/9223372036854775807' }, 30);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM webhooks.deliveries WHERE event_id = '$hid' AND attempts = 1"),
	'the 503 with a huge Retry-After is recorded');
my $wait_h = sql("SELECT round(extract(epoch FROM next_attempt_at - last_attempt_at) / 3600, 2)
	FROM webhooks.deliveries WHERE event_id = '$hid'");
note("Retry-After: 2^63-1 s -> next attempt in $wait_h h");
cmp_ok($wait_h, '>=', 23.99, 'a huge Retry-After waits the 24 h cap');
cmp_ok($wait_h, '<=', 24.01, '... and no longer');
sql("SELECT webhooks.webhook_delete('RA-huge', '$hw')");

# ---------------------------------------------------------------------
# SIGHUP: a new schedule of one 1 s retry applies to the running worker.
set_schedule('1s');
my ($h1) = create_webhook($node, 'H', "$base/flaky/1", '{member.joined}');
my ($h5) = create_webhook($node, 'H', "$base/status/500?sighup", '{member.joined}');
my $hid = emit('H');
wait_for_requests($recv, 2, sub { $_[0]{path} eq '/flaky/1' }, 30);
my @h = at_path('/flaky/1');
my $h_gap = $h[1]{time} - $h[0]{time};
note(sprintf('schedule 1s -> retry after %.3f s', $h_gap));
cmp_ok($h_gap, '>=', 0.95, 'after reload the retry waits 1 s');
cmp_ok($h_gap, '<', 4.5, 'and not much longer');
ok($node->poll_query_until('postgres',
	"SELECT state = 'failed' AND attempts = 2 FROM webhooks.deliveries "
	  . "WHERE event_id = '$hid' AND webhook_id = '$h5'"),
	'with a one-step schedule /status/500 fails after 2 attempts');
wait_until(sub { at_path('/status/500?sighup') > 2 }, 'a 3rd attempt (must not come)', 1.2);
is(scalar(at_path('/status/500?sighup')), 2, 'exactly 2 requests');

# ---------------------------------------------------------------------
# webhook_delete and deactivation while deliveries wait for a retry.
set_schedule('5s');
my ($dw) = create_webhook($node, 'L', "$base/status/500?del", '{member.joined}');
my ($uw) = create_webhook($node, 'L', "$base/status/500?upd", '{member.joined}');
# A witness on the same schedule: once its retry has come, so would theirs.
my ($sw) = create_webhook($node, 'L', "$base/flaky/1?witness", '{member.joined}');
my $offset = -s $node->logfile;
sql(q{SELECT webhooks.emit('L', 'member.joined', jsonb_build_object('n', g))
	FROM generate_series(1, 5) g});
wait_for_requests($recv, 15, sub { $_[0]{path} =~ /\?(del|upd|witness)$/ }, 30);
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 AND bool_and(retrying = 5) FROM webhooks.delivery_status
	WHERE webhook_id IN ('$dw', '$uw')}),
	'5 deliveries of each webhook wait for their retry');
my $logged_before = sql("SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id IN ('$dw', '$uw')");

sql("SELECT webhooks.webhook_delete('L', '$dw')");
is(sql("SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = '$dw'"), '0',
	'webhook_delete drops its pending deliveries at once');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT webhooks.webhook_update('L', '$uw', is_active := false)");
is($rc, 0, 'webhook_update(is_active := false) succeeds') or diag($err);
is(sql("SELECT string_agg(DISTINCT state, ',') || ',' || count(*) FROM webhooks.deliveries "
	  . "WHERE webhook_id = '$uw'"), 'failed,5',
	'deactivating marks its pending deliveries failed at once');
is(sql("SELECT pending || ',' || retrying || ',' || failed FROM webhooks.delivery_status "
	  . "WHERE webhook_id = '$uw'"), '0,0,5', 'delivery_status agrees');

# Wait past the due time: the witness's retry, plus the 10% jitter.
my @w = wait_for_requests($recv, 10, sub { $_[0]{path} eq '/flaky/1?witness' }, 30);
is(scalar(grep { $_->{status} == 200 } @w), 5, 'the witness retries arrived');
my %wt;
push @{ $wt{ $_->{headers}{'webhook-id'} } }, $_->{time} for @w;
my @gaps = sort { $a <=> $b } map { abs($_->[1] - $_->[0]) } grep { @$_ == 2 } values %wt;
note(sprintf('witness retry gaps (schedule 5s): %s', join(', ', map { sprintf('%.3f', $_) } @gaps)));
cmp_ok($gaps[0] // 0, '>=', 4.9, 'the 5 s schedule was in force');
wait_until(sub { scalar(grep { $_->{path} =~ /\?(del|upd)$/ } requests($recv)) > 10 },
	'a retry of a deleted or inactive webhook (must not come)', 1.5);
is(scalar(grep { $_->{path} eq '/status/500?del' } requests($recv)), 5,
	'no retry reaches the deleted webhook');
is(scalar(grep { $_->{path} eq '/status/500?upd' } requests($recv)), 5,
	'no retry reaches the deactivated webhook');
is(sql("SELECT count(*) || ',' || max(attempts) FROM webhooks.deliveries "
	  . "WHERE webhook_id = '$uw' AND state = 'failed'"), '5,1',
	'the deactivated webhook\'s deliveries stay failed after one attempt');
is(sql("SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id IN ('$dw', '$uw')"),
	$logged_before, 'no attempt of either was logged after the delete / deactivation');

# The same for deliveries the worker has already claimed but not yet sent
# (queued behind max_requests_per_endpoint): a slow endpoint each, on hosts
# of their own, 300 events; delete / deactivate while the first requests
# are in flight.  Only those already in flight may still go out.
my $rd = start_receiver();
my $ru = start_receiver();
my ($cd) = create_webhook($node, 'C', "$rd->{base}/delay/2500", '{member.joined}');
my ($cu) = create_webhook($node, 'C', "$ru->{base}/delay/2500", '{member.joined}');
sql(q{SELECT count(webhooks.emit('C', 'member.joined', jsonb_build_object('n', g)))
	FROM generate_series(1, 300) g});
# Every request slot of each webhook is taken (and logged by its receiver).
my $per_ep = sql('SHOW webhooks.max_requests_per_endpoint');
is(scalar(wait_for_requests($_, $per_ep, sub { 1 }, 30)), $per_ep,
	"$per_ep requests in flight to the slow endpoint") for ($rd, $ru);
note('claimed (sending) before delete: ' . sql(
	"SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM webhooks.deliveries "
	  . "WHERE webhook_id IN ('$cd', '$cu') GROUP BY state) s"));
sql("SELECT webhooks.webhook_delete('C', '$cd')");
sql("SELECT webhooks.webhook_update('C', '$cu', is_active := false)");
my ($nd, $nu) = (scalar(requests($rd)), scalar(requests($ru)));
# The in-flight requests end after 2.5 s; queued ones would start then.
wait_until(sub { requests($rd) > $nd + 8 && requests($ru) > $nu + 8 },
	'requests after delete / deactivate (must not come)', 4);
my ($fd, $fu) = (scalar(requests($rd)), scalar(requests($ru)));
note("requests: deleted webhook $nd at delete, $fd in the end; deactivated $nu, $fu");
cmp_ok($fd, '<=', $nd + 8, 'deleted webhook: nothing sent beyond what was in flight');
cmp_ok($fu, '<=', $nu + 8, 'deactivated webhook: nothing sent beyond what was in flight');
stop_receiver($_) for ($rd, $ru);

my @log = split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset);
is(join("\n", grep { /\[$worker_pid\].*(ERROR|WARNING|FATAL):/ } @log), '',
	'no ERROR or WARNING from the worker while deleting and deactivating');
@log = split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile);
is(join("\n", grep { /\[$worker_pid\].*(ERROR|WARNING|FATAL):/ } @log), '',
	'no ERROR or WARNING from the worker in the whole run');
is(sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
	$worker_pid, 'the same worker ran throughout');
unlike(join("\n", @log), qr/PANIC:|terminated by signal/, 'nothing crashed');

stop_receiver($recv);
$node->stop;
done_testing();
