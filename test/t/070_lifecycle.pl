# The life of a webhook in 1.1: secrets rotated with an overlap (two
# signatures, new first), endpoints switched off by a 410 Gone or by
# failing for webhooks.disable_after (with a webhook.disabled event to the
# community and disabled_reason / disabled_at on the webhook, cleared when
# it is switched on again), payload filters, custom headers, and the health
# figures: webhook_stats, webhooks.metrics and webhooks.metrics_total.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Ten quick retries span about 3 s, longer than disable_after (2 s): one
# failing event alone keeps a webhook failing past the threshold, and a
# flaky endpoint recovers on its first retry, 300 ms later, far inside it.
my $node = new_node('lifecycle', q{
webhooks.retry_schedule = '300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms'
webhooks.disable_after = '2s'
});
my $recv = start_receiver();
my $base = $recv->{base};
my $worker_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Emit one event; returns its id (= the webhook-id of its requests).
sub emit
{
	my ($community, $event, $payload) = @_;
	$event //= 'member.joined';
	$payload //= '{"n": 1}';
	return sql("SELECT webhooks.emit('$community', '$event', '$payload')");
}

# The body of a request, decoded; undef if it is not JSON.
sub body_of
{
	my ($request) = @_;
	return eval { JSON::PP->new->decode($request->{body}) };
}

# Requests to $path (exactly, query string included), oldest first; only
# those of event $eid if given, only those whose body has type $type if
# given.
sub at
{
	my ($path, %opt) = @_;
	# Into an array first: sort in scalar context is undefined, and
	# callers count with at(...) > $n.
	my @r = sort { $a->{time} <=> $b->{time} } grep {
		$_->{path} eq $path
		  && (!defined $opt{eid} || ($_->{headers}{'webhook-id'} // '') eq $opt{eid})
		  && (!defined $opt{type} || ((body_of($_) // {})->{type} // '') eq $opt{type})
	} requests($recv);
	return @r;
}

# Wait (at most 30 s) for $n requests as at() selects them; returns them
# all, oldest first.
sub wait_at
{
	my ($n, $path, %opt) = @_;
	wait_until(sub { at($path, %opt) >= $n }, "$n requests to $path", 30);
	return at($path, %opt);
}

# The entries of a request's webhook-signature header.
sub sig_entries
{
	my ($request) = @_;
	my @e = split(' ', $request->{headers}{'webhook-signature'} // '');
	return @e;
}

# Poll a query every 50 ms until it returns $expected ('t' unless given),
# for at most 30 s (poll_query_until would wait up to 180 s).
sub poll
{
	my ($query, $expected) = @_;
	$expected //= 't';
	my $got = '';
	wait_until(sub { $got = sql($query); return $got eq $expected },
		"\"$query\" to return $expected", 30);
	return $got eq $expected;
}

# One row of a set-returning function or view, as a hash (undef if none).
sub row
{
	my ($from) = @_;
	my $json = sql("SELECT row_to_json(r) FROM $from r");
	return $json eq '' ? undef : decode_json($json);
}
sub webhook { return row("webhooks.webhook_get('$_[0]', '$_[1]')"); }
sub stats { return row("webhooks.webhook_stats('$_[0]', '$_[1]')"); }
sub metrics
{
	return row("(SELECT * FROM webhooks.metrics WHERE webhook_id = '$_[0]')");
}

# The most recent webhook_test request to the path (the receiver logs a
# request before answering it, so it is there when webhook_test returns).
sub last_ping
{
	my ($path) = @_;
	my @p = at($path, type => 'test.ping');
	return $p[-1];
}

# ---------------------------------------------------------------------
# Secret rotation.  The endpoint is /flaky/1: every event is answered 500
# then 200 (per webhook-id), so each event shows a first attempt and a
# retry, both of which must be signed the same way.
my $rpath = '/flaky/1?rotate';
my ($kid, $s1) = create_webhook($node, 'rotate', "$base$rpath", '{member.joined}');

my $e1 = emit('rotate');
my @r = wait_at(2, $rpath, eid => $e1);
is_deeply([ map { $_->{status} } @r ], [ 500, 200 ], 'before rotation: an attempt and its retry');
ok(verify_signature($s1, $r[$_]), "before rotation: attempt " . ($_ + 1) . ' has one signature, by the first secret')
  for 0 .. $#r;

my $s2 = sql("SELECT webhooks.webhook_rotate_secret('rotate', '$kid')");
like($s2, qr{^whsec_[A-Za-z0-9+/]{43}=$}, 'the new secret is whsec_ + base64 of 32 bytes');
isnt($s2, $s1, 'it is a new secret');
is(sql("SELECT webhooks.webhook_secret('rotate', '$kid')"), $s2,
	'webhook_secret returns the new secret');

# During the default 24 h overlap: two signatures, the new one first, on
# the first attempt, on the retry and on webhook_test.
my $e2 = emit('rotate');
@r = wait_at(2, $rpath, eid => $e2);
is_deeply([ map { $_->{status} } @r ], [ 500, 200 ], 'in the overlap: an attempt and its retry');
for my $i (0 .. $#r)
{
	my $n = $i + 1;
	is(scalar(sig_entries($r[$i])), 2, "in the overlap: attempt $n has two signatures")
	  or diag($r[$i]{headers}{'webhook-signature'});
	is_deeply([ signature_secrets($r[$i], $s1, $s2) ], [ $s2, $s1 ],
		"in the overlap: attempt $n is signed by the new secret, then the old");
}
my $ping_status = sql("SELECT status_code FROM webhooks.webhook_test('rotate', '$kid')");
note("webhook_test to $rpath answered $ping_status");
my $ping = last_ping($rpath);
ok($ping, 'webhook_test reached the receiver');
is(scalar(sig_entries($ping // {})), 2, 'in the overlap: webhook_test has two signatures');
is_deeply([ signature_secrets($ping // {}, $s1, $s2) ], [ $s2, $s1 ],
	'in the overlap: webhook_test is signed by the new secret, then the old');

# A zero overlap drops the old secret at once: only the newest signs.
my $s3 = sql("SELECT webhooks.webhook_rotate_secret('rotate', '$kid', overlap => '0')");
like($s3, qr{^whsec_[A-Za-z0-9+/]{43}=$}, 'the third secret is whsec_ + base64 of 32 bytes');
ok($s3 ne $s1 && $s3 ne $s2, 'it is new again');
is(sql("SELECT webhooks.webhook_secret('rotate', '$kid')"), $s3,
	'webhook_secret returns the third secret');
my $e3 = emit('rotate');
@r = wait_at(2, $rpath, eid => $e3);
is_deeply([ map { $_->{status} } @r ], [ 500, 200 ], 'after a zero overlap: an attempt and its retry');
for my $i (0 .. $#r)
{
	my $n = $i + 1;
	ok(verify_signature($s3, $r[$i]), "after a zero overlap: attempt $n has one signature, by the newest secret")
	  or diag($r[$i]{headers}{'webhook-signature'});
	is_deeply([ signature_secrets($r[$i], $s1, $s2, $s3) ], [$s3],
		"after a zero overlap: attempt $n is signed by neither older secret");
}
sql("SELECT webhooks.webhook_test('rotate', '$kid')");
$ping = last_ping($rpath);
ok($ping && verify_signature($s3, $ping), 'after a zero overlap: webhook_test has one signature, by the newest secret');

# ---------------------------------------------------------------------
# 410 Gone switches the webhook off at once, without a retry, and says so
# to the community's webhook.disabled subscribers; the community's other
# webhooks go on.
my $gone_url = "$base/status/410";
my ($gone) = create_webhook($node, 'gone', $gone_url, '{member.joined}');
my ($gwatch, $gwatch_secret) =
  create_webhook($node, 'gone', "$base/watch/gone", '{webhook.disabled}');
my ($gok) = create_webhook($node, 'gone', "$base/ok/gone", '{member.joined}');

my $w = webhook('gone', $gone);
ok($w->{is_active}, 'a new webhook is active');
ok(exists $w->{disabled_reason} && !defined $w->{disabled_reason},
	'webhook_get shows disabled_reason, NULL while active');
ok(exists $w->{disabled_at} && !defined $w->{disabled_at},
	'webhook_get shows disabled_at, NULL while active');

# One event only, so that only one request can be in flight to /status/410
# before its answer is seen.
my @gone_events = (emit('gone'));
wait_at(1, '/status/410');
ok(poll("SELECT NOT is_active FROM webhooks.webhook_get('gone', '$gone')"),
	'the 410 answer switched the webhook off');
$w = webhook('gone', $gone);
like($w->{disabled_reason} // '', qr/410/, 'disabled_reason names the 410');
note('disabled_reason: ' . ($w->{disabled_reason} // '<NULL>'));
ok(defined $w->{disabled_at}, 'disabled_at is set');
is(sql("SELECT count(*) FROM webhooks.webhook_list('gone') "
	  . "WHERE disabled_reason IS NOT NULL AND disabled_at IS NOT NULL"),
	'1', 'webhook_list shows it too, and only for that webhook');

my @dis = wait_at(1, '/watch/gone', type => 'webhook.disabled');
is(scalar @dis, 1, 'the webhook.disabled subscriber got the event');
my $body = body_of($dis[0] // {}) // {};
is($body->{type}, 'webhook.disabled', 'its type is webhook.disabled');
is($body->{community_id}, 'gone', 'in the community of the disabled webhook');
is($body->{data}{webhook_id}, $gone, 'data.webhook_id is the disabled webhook');
is($body->{data}{url}, $gone_url, 'data.url is its url');
is($body->{data}{reason}, $w->{disabled_reason}, 'data.reason is its disabled_reason');
ok($dis[0] && verify_signature($gwatch_secret, $dis[0]), 'signed like any event');

# A retry would come 300 ms later; wait five times that.
wait_until(sub { at('/status/410') > 1 }, 'a retry of the 410 (must not come)', 1.5);
is(scalar(at('/status/410')), 1, 'exactly one request to the 410 endpoint: no retry');

# Two more events: the healthy sibling gets all three (the barrier), the
# switched-off webhook none of them.
push @gone_events, emit('gone'), emit('gone');
my @ok = wait_at(3, '/ok/gone');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @ok ], [ sort @gone_events ],
	'the healthy sibling got all three events');
is(scalar(at('/status/410')), 1, 'the switched-off webhook got no more requests');
ok((webhook('gone', $gok) // {})->{is_active}, 'the healthy sibling stays active');
wait_until(sub { at('/watch/gone', type => 'webhook.disabled') > 1 },
	'a second webhook.disabled (must not come)', 1);
is(scalar(at('/watch/gone', type => 'webhook.disabled')), 1,
	'exactly one webhook.disabled event');

# Health of the healthy sibling after 3 deliveries.
ok(poll("SELECT pending = 0 FROM webhooks.webhook_stats('gone', '$gok')"),
	'webhook_stats: nothing pending for the healthy webhook');
my $st = stats('gone', $gok);
note('webhook_stats (healthy): ' . encode_json($st // {}));
cmp_ok($st->{attempts_24h} // 0, '>=', 3, 'attempts_24h counts the 3 deliveries');
ok(defined $st->{success_rate_24h} && $st->{success_rate_24h} == 1, 'success_rate_24h is 1');
ok(defined $st->{last_success_at}, 'last_success_at is set');
ok(!defined $st->{failing_since}, 'failing_since is NULL');
ok(!defined $st->{last_failure_at}, 'last_failure_at is NULL');
is($st->{failed}, 0, 'failed is 0');
ok(defined $st->{p50_ms_24h} && defined $st->{p95_ms_24h}
	  && $st->{p50_ms_24h} >= 0 && $st->{p50_ms_24h} <= $st->{p95_ms_24h},
	'p50_ms_24h and p95_ms_24h are set, 0 <= p50 <= p95');

# Its counters match what the receiver saw.  The receiver logs a request
# before the worker records the answer: wait for the count to catch up.
my $ok2xx = scalar(grep { $_->{status} >= 200 && $_->{status} < 300 } at('/ok/gone'));
ok(poll("SELECT delivered_total FROM webhooks.metrics WHERE webhook_id = '$gok'", $ok2xx),
	"metrics: delivered_total reaches $ok2xx");
my $m = metrics($gok);
is($m->{delivered_total}, $ok2xx, 'metrics: delivered_total = the 2xx requests the receiver saw');
is($m->{community_id}, 'gone', 'metrics: community_id');
ok($m->{is_active}, 'metrics: is_active');
is($m->{failed_attempts_total}, 0, 'metrics: no failed attempts');
is($m->{gave_up_total}, 0, 'metrics: nothing given up');
is($m->{disabled_total}, 0, 'metrics: never disabled');
$m = metrics($gone);
is($m->{disabled_total}, 1, 'metrics: the 410 webhook was disabled once');
ok(defined $m->{is_active} && !$m->{is_active}, 'metrics: the 410 webhook is inactive');

# Switched on again: the reason and time go.
sql("SELECT webhooks.webhook_update('gone', '$gone', is_active => true)");
$w = webhook('gone', $gone);
ok($w->{is_active}, 'webhook_update(is_active => true) switches it on');
ok(!defined $w->{disabled_reason}, '... and clears disabled_reason');
ok(!defined $w->{disabled_at}, '... and clears disabled_at');
# Switched off by a person: no reason recorded.
sql("SELECT webhooks.webhook_update('gone', '$gone', is_active => false)");
$w = webhook('gone', $gone);
ok(!$w->{is_active} && !defined $w->{disabled_reason} && !defined $w->{disabled_at},
	'deactivated by webhook_update: disabled_reason and disabled_at stay NULL');

# ---------------------------------------------------------------------
# webhooks.disable_after: a webhook failing for longer than 2 s is
# switched off.  An event every 0.5 s keeps attempts failing at both ends
# of the span however the worker schedules its check.
is(sql('SHOW webhooks.disable_after'), '2s', 'disable_after is 2s');
my $fpath = '/status/500?failing';
my $fail_url = "$base$fpath";
my ($ffail) = create_webhook($node, 'failing', $fail_url, '{member.joined}');
my ($fwatch) = create_webhook($node, 'failing', "$base/watch/failing", '{webhook.disabled}');
my ($fok) = create_webhook($node, 'failing', "$base/ok/failing", '{member.joined}');

my @fail_events;
my $t0 = time();
my $disabled = 0;
while (time() - $t0 < 30)
{
	$disabled = sql("SELECT NOT is_active FROM webhooks.webhook_get('failing', '$ffail')") eq 't';
	last if $disabled;
	push @fail_events, emit('failing');
	usleep(500_000);
}
note(sprintf('switched off after %.1f s and %d events', time() - $t0, scalar @fail_events));
ok($disabled, 'the failing webhook was switched off');
$w = webhook('failing', $ffail);
like($w->{disabled_reason} // '', qr/fail/i, 'disabled_reason says it kept failing');
note('disabled_reason: ' . ($w->{disabled_reason} // '<NULL>'));
ok(defined $w->{disabled_at}, 'disabled_at is set');

# Not before it had failed for 2 s: from the first failed request (as the
# receiver saw it; the attempt started a little earlier) to disabled_at.
my @fr = at($fpath);
my $first_fail = @fr ? $fr[0]{time} : time();
my $gap = sql("SELECT extract(epoch FROM disabled_at) FROM webhooks.webhook_get('failing', '$ffail')")
  - $first_fail;
note(sprintf('first failure to disabled_at: %.3f s (disable_after 2s), %d failed requests',
	$gap, scalar @fr));
cmp_ok($gap, '>=', 1.9, 'not switched off before failing for disable_after');

@dis = wait_at(1, '/watch/failing', type => 'webhook.disabled');
is(scalar @dis, 1, 'the webhook.disabled subscriber got the event');
$body = body_of($dis[0] // {}) // {};
is($body->{community_id}, 'failing', 'in the community of the disabled webhook');
is($body->{data}{webhook_id}, $ffail, 'data.webhook_id is the disabled webhook');
is($body->{data}{url}, $fail_url, 'data.url is its url');
is($body->{data}{reason}, $w->{disabled_reason}, 'data.reason is its disabled_reason');

# One more event: the sibling gets it (and all before it), the switched-off
# webhook does not.
my $after = emit('failing');
my %seen;
wait_until(
	sub {
		%seen = map { $_->{headers}{'webhook-id'} => 1 } at('/ok/failing');
		return !grep { !$seen{$_} } @fail_events, $after;
	},
	'the sibling to get every event', 30);
is(scalar(grep { $seen{$_} } @fail_events, $after), @fail_events + 1,
	'the healthy sibling got every event');
is(scalar(at($fpath, eid => $after)), 0, 'the switched-off webhook did not get the next event');
ok((webhook('failing', $fok) // {})->{is_active}, 'the healthy sibling stays active');
wait_until(sub { at('/watch/failing', type => 'webhook.disabled') > 1 },
	'a second webhook.disabled (must not come)', 1);
is(scalar(at('/watch/failing', type => 'webhook.disabled')), 1,
	'exactly one webhook.disabled event, however many attempts failed');

# Health of the failing webhook.
ok(poll("SELECT pending = 0 FROM webhooks.webhook_stats('failing', '$ffail')"),
	'webhook_stats: nothing pending once switched off');
$st = stats('failing', $ffail);
note('webhook_stats (failing): ' . encode_json($st // {}));
ok(defined $st->{failing_since}, 'failing_since is set');
ok(defined $st->{last_failure_at}, 'last_failure_at is set');
ok(!defined $st->{last_success_at}, 'last_success_at is NULL');
ok(defined $st->{success_rate_24h} && $st->{success_rate_24h} == 0, 'success_rate_24h is 0');
cmp_ok($st->{attempts_24h} // 0, '>=', 2, 'attempts_24h counts the failed attempts');
cmp_ok($st->{failed} // 0, '>=', 1, 'failed counts the deliveries that ended in failure');
is(sql("SELECT failing_since <= last_failure_at FROM webhooks.webhook_stats('failing', '$ffail')"),
	't', 'failing_since <= last_failure_at');

$m = metrics($ffail);
is($m->{disabled_total}, 1, 'metrics: the failing webhook was disabled once');
ok(defined $m->{is_active} && !$m->{is_active}, 'metrics: it is inactive');
is($m->{delivered_total}, 0, 'metrics: nothing delivered');
my $f_reqs = scalar(at($fpath));
ok(($m->{failed_attempts_total} // 0) >= 1 && $m->{failed_attempts_total} <= $f_reqs,
	"metrics: failed_attempts_total between 1 and the $f_reqs requests seen")
  or diag('failed_attempts_total: ' . ($m->{failed_attempts_total} // '<NULL>'));
is((metrics($fok) // {})->{disabled_total}, 0, 'metrics: the sibling was never disabled');

# ---------------------------------------------------------------------
# Payload filters.  Events are emitted one after the other; the unfiltered
# webhook getting all of them, and the filtered one the event it must get,
# is the barrier before counting what the filtered one got (and a short
# wait for anything more).
my ($ffil) = split /\|/, sql(q{SELECT id || '|' || secret FROM webhooks.webhook_create(
	'filter', '} . "$base/filtered" . q{', '{payment.completed}',
	filter => '$.amount_cents ? (@ >= 10000)')});
my ($fall) = create_webhook($node, 'filter', "$base/unfiltered", '{payment.completed}');
is(sql(q{SELECT filter::text = '$.amount_cents ? (@ >= 10000)'::jsonpath::text
	FROM webhooks.webhook_get('filter', '} . $ffil . q{')}),
	't', 'webhook_get shows the filter');
is(sql("SELECT filter IS NULL FROM webhooks.webhook_get('filter', '$fall')"),
	't', 'filter is NULL when none was given');

my $big = emit('filter', 'payment.completed', '{"amount_cents": 25000}');
my $small = emit('filter', 'payment.completed', '{"amount_cents": 500}');
wait_at(2, '/unfiltered');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } at('/unfiltered') ],
	[ sort $big, $small ], 'the unfiltered webhook got both events');
wait_at(1, '/filtered', eid => $big);
wait_until(sub { at('/filtered') > 1 }, 'a second request to the filtered webhook (must not come)', 1);
is_deeply([ map { $_->{headers}{'webhook-id'} } at('/filtered') ], [$big],
	'the filtered webhook got only the event with amount_cents >= 10000');
is((body_of((at('/filtered'))[0] // {}) // {})->{data}{amount_cents}, 25000,
	'... with its payload');
ok(poll("SELECT pending = 0 FROM webhooks.webhook_stats('filter', '$ffil')"),
	'and nothing is pending for it');

# webhook_update changes the filter.
sql(q{SELECT webhooks.webhook_update('filter', '} . $ffil
	  . q{', filter => '$.amount_cents ? (@ < 1000)')});
is(sql(q{SELECT filter::text = '$.amount_cents ? (@ < 1000)'::jsonpath::text
	FROM webhooks.webhook_get('filter', '} . $ffil . q{')}),
	't', 'webhook_update(filter => ...) changes the filter');
my $small2 = emit('filter', 'payment.completed', '{"amount_cents": 700}');
my $big2 = emit('filter', 'payment.completed', '{"amount_cents": 90000}');
wait_at(4, '/unfiltered');
is(scalar(at('/unfiltered')), 4, 'the unfiltered webhook got all four events');
wait_at(1, '/filtered', eid => $small2);
wait_until(sub { at('/filtered') > 2 }, 'a third request to the filtered webhook (must not come)', 1);
is_deeply([ map { $_->{headers}{'webhook-id'} } at('/filtered') ], [ $big, $small2 ],
	'after the update the filtered webhook got only the small event');

# A filter that raises an error on a payload (a date compared with a time
# zone) is a non-match for that webhook, never an error that stops the
# worker's read: the next event still reaches everyone.
sql(q{SELECT webhooks.webhook_update('filter', '} . $ffil
	  . q{', filter => '$ ? (@.at.datetime() < "2024-06-01T00:00:00Z".datetime())')});
my $dated = emit('filter', 'payment.completed', '{"at": "2024-05-01", "amount_cents": 1}');
my $next_ev = emit('filter', 'payment.completed', '{"amount_cents": 2}');
wait_at(1, '/unfiltered', eid => $next_ev);
pass('an erroring filter did not stop the read: the next event arrived');
ok(poll(q{SELECT count(*) = 0 FROM webhooks.deliveries WHERE state = 'pending'}),
	'and nothing is left pending');
# A filter with a variable could only fail: refused.
my ($vcode) = fails_with($node, q{SELECT webhooks.webhook_update('filter', '} . $ffil
	  . q{', filter => '$ ? (@.amount_cents > $min)')});
is($vcode, '22023', 'a filter with a variable is refused (22023)');

# ---------------------------------------------------------------------
# A 410 while an application's transaction holds the webhook's row: the
# worker does not wait for it; the webhook is switched off once the lock
# is gone (the worker looks again every 10 s), with one event.
my ($lid) = create_webhook($node, 'locked', "$base/status/410?locked", '{member.joined}');
my ($lwatch) = create_webhook($node, 'locked', "$base/watch-locked", '{webhook.disabled}');
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT 1 FROM webhooks.webhooks WHERE id = '$lid' FOR UPDATE;");
emit('locked');
wait_at(1, '/status/410?locked');
ok(poll(q{SELECT gone_at IS NOT NULL FROM webhooks.webhook_health WHERE webhook_id = '}
	  . $lid . q{'}), 'the 410 is recorded in the webhook\'s health');
is(webhook('locked', $lid)->{is_active}, 1, 'still active while the application holds its row');
$holder->query_safe('COMMIT');
$holder->quit;
ok(poll(q{SELECT NOT is_active FROM webhooks.webhooks WHERE id = '} . $lid . q{'}),
	'switched off once the lock is gone');
is(webhook('locked', $lid)->{disabled_reason}, 'the endpoint answered 410 Gone',
	'with the 410 as its reason');
wait_at(1, '/watch-locked');
is(scalar(at('/status/410?locked')), 1, 'the endpoint got one request');
is(scalar(at('/watch-locked')), 1, 'and one webhook.disabled event went out');

# ---------------------------------------------------------------------
# Custom headers: on deliveries and on webhook_test, gone after
# headers => '{}'.
my $hjson = '{"X-Api-Key": "k-123", "X-Tenant": "acme"}';
my ($hid, $hsecret) = split /\|/, sql(
	"SELECT id || '|' || secret FROM webhooks.webhook_create('headers', '$base/hdr', "
	  . "'{member.joined}', headers => '$hjson')");
is(sql("SELECT headers = '$hjson'::jsonb FROM webhooks.webhook_get('headers', '$hid')"),
	't', 'webhook_get shows the headers');

my $h1 = emit('headers');
my ($hr) = wait_at(1, '/hdr', eid => $h1);
is($hr->{headers}{'x-api-key'}, 'k-123', 'a delivery carries X-Api-Key');
is($hr->{headers}{'x-tenant'}, 'acme', 'a delivery carries X-Tenant');
ok($hr && verify_signature($hsecret, $hr), 'and is signed as usual');
sql("SELECT webhooks.webhook_test('headers', '$hid')");
$ping = last_ping('/hdr');
is($ping->{headers}{'x-api-key'}, 'k-123', 'webhook_test carries X-Api-Key');
is($ping->{headers}{'x-tenant'}, 'acme', 'webhook_test carries X-Tenant');

sql("SELECT webhooks.webhook_update('headers', '$hid', headers => '{}')");
is(sql("SELECT coalesce(headers, '{}') = '{}' FROM webhooks.webhook_get('headers', '$hid')"),
	't', "webhook_update(headers => '{}') removes them");
my $h2 = emit('headers');
($hr) = wait_at(1, '/hdr', eid => $h2);
ok($hr && !exists $hr->{headers}{'x-api-key'} && !exists $hr->{headers}{'x-tenant'},
	'the next delivery carries neither header');
my $pings_before = scalar(at('/hdr', type => 'test.ping'));
sql("SELECT webhooks.webhook_test('headers', '$hid')");
is(scalar(at('/hdr', type => 'test.ping')), $pings_before + 1, 'another webhook_test arrived');
$ping = last_ping('/hdr');
ok($ping && !exists $ping->{headers}{'x-api-key'} && !exists $ping->{headers}{'x-tenant'},
	'nor does the next webhook_test');

# Names the extension sets itself may not be overridden, in any case.
my ($state, $msg) = fails_with($node,
	"SELECT webhooks.webhook_create('headers', '$base/hdr2', '{member.joined}', "
	  . q{headers => '{"Content-Type": "text/plain"}')});
is($state, '22023', 'a Content-Type header is refused (22023)') or diag($msg);
($state, $msg) = fails_with($node,
	"SELECT webhooks.webhook_update('headers', '$hid', "
	  . q{headers => '{"Webhook-Signature": "v1,forged"}')});
is($state, '22023', 'a Webhook-Signature header is refused by webhook_update (22023)') or diag($msg);

# ---------------------------------------------------------------------
# metrics_total: once all is quiet, the sums of webhooks.metrics.
ok(poll('SELECT pending = 0 AND in_flight = 0 FROM webhooks.metrics_total'),
	'metrics_total: nothing pending or in flight');
my $cols = 'delivered_total, failed_attempts_total, retries_total, gave_up_total, disabled_total';
my ($tot, $sum) = split /\|/, sql(qq{
	SELECT concat_ws(',', t.webhooks, t.active_webhooks, t.delivered_total, t.failed_attempts_total,
	                 t.retries_total, t.gave_up_total, t.disabled_total)
	       || '|' ||
	       concat_ws(',', m.webhooks, m.active_webhooks, m.delivered_total, m.failed_attempts_total,
	                 m.retries_total, m.gave_up_total, m.disabled_total)
	FROM webhooks.metrics_total t,
	     (SELECT count(*) AS webhooks, count(*) FILTER (WHERE is_active) AS active_webhooks,
	             sum(delivered_total) AS delivered_total,
	             sum(failed_attempts_total) AS failed_attempts_total,
	             sum(retries_total) AS retries_total, sum(gave_up_total) AS gave_up_total,
	             sum(disabled_total) AS disabled_total
	      FROM webhooks.metrics) m});
note("metrics_total (webhooks, active_webhooks, $cols): $tot");
is($tot, $sum, 'metrics_total is the sum of webhooks.metrics');
cmp_ok(sql('SELECT disabled_total FROM webhooks.metrics_total'), '>=', 2,
	'metrics_total: at least the two webhooks disabled here');
is(sql('SELECT webhooks FROM webhooks.metrics_total'),
	sql('SELECT count(*) FROM webhooks.webhooks'), 'metrics_total: every webhook counted');

# The README's sql_exporter collector: every query it holds runs as a
# role with nothing but pg_monitor, and returns the columns it names.
{
	my $yml = PostgreSQL::Test::Utils::slurp_file(
		"$FindBin::RealBin/../metrics/webhooks.collector.yml");
	my @queries = ($yml =~ /^\s+query: ([^|\n].*)$/mg);
	while ($yml =~ /^(\s+)query: \|\n((?:\1\s+.*\n)+)/mg)
	{
		push @queries, $2;
	}
	is(scalar @queries, 2, 'the collector holds two queries');
	sql('CREATE ROLE exporter LOGIN IN ROLE pg_monitor');
	for my $q (@queries)
	{
		$q =~ s/\s+/ /g;
		my ($ret, $out, $err) = $node->psql('postgres', $q,
			extra_params => [ '-U', 'exporter' ]);
		is($ret, 0, "as pg_monitor: $q") or diag($err);
	}
	my @values = ($yml =~ /values: \[(\w+)\]/g);
	my %cols = map { $_ => 1 } split /\|/, sql(q{
		SELECT string_agg(attname, '|') FROM pg_attribute
		WHERE attrelid IN ('webhooks.metrics'::regclass, 'webhooks.metrics_total'::regclass)
		  AND attnum > 0});
	is_deeply([ grep { !$cols{$_} } @values ], [], 'every value it names is a column of the views');
}

# ---------------------------------------------------------------------
is(sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
	$worker_pid, 'the same worker ran throughout');
unlike(PostgreSQL::Test::Utils::slurp_file($node->logfile),
	qr/PANIC:|terminated by signal/, 'nothing crashed');

stop_receiver($recv);
$node->stop;
done_testing();
