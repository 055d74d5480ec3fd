# Isolation: a hanging endpoint keeps its own deliveries waiting and no one
# else's.  With webhooks.timeout = 3s, every healthy delivery must arrive
# before the first hanging attempt could have timed out, measured with the
# receivers' own timestamps:
#   - 20 hanging + 50 healthy, one host (the common case);
#   - the hanging webhook at its full max_requests_per_endpoint, one host;
#   - a hanging backlog of 1000, then of 5000 (each webhook on its own host).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;
use Time::HiRes qw(time);

my $TIMEOUT = 3.0;    # webhooks.timeout of new_node
my $node = new_node('isolation');
my $per_ep = $node->safe_psql('postgres', 'SHOW webhooks.max_requests_per_endpoint');

sub times_of { return sort { $a <=> $b } map { $_->{time} } @_; }

sub emit_n
{
	my ($community, $event, $n) = @_;
	$node->safe_psql('postgres', "SELECT count(webhooks.emit('$community', '$event', "
		  . "jsonb_build_object('n', g))) FROM generate_series(1, $n) g");
}

# A fresh worker, without what an earlier scenario left in its memory.
sub restart_node
{
	$node->restart;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
		'worker running after restart');
}

# ---------------------------------------------------------------------
# 20 hanging, then 50 healthy, same community, same host.
my $recv = start_receiver();
my ($hang) = create_webhook($node, 'I', "$recv->{base}/hang", '{member.left}');
my ($ok) = create_webhook($node, 'I', "$recv->{base}/status/200", '{member.updated}');
emit_n('I', 'member.left', 20);
# The first hanging request is in flight: its timeout is running.
wait_for_requests($recv, 1, sub { $_[0]{path} eq '/hang' }, 30);
emit_n('I', 'member.updated', 50);
my @good = wait_for_requests($recv, 50, sub { $_[0]{path} eq '/status/200' }, 30);
is(scalar @good, 50, 'all 50 events to the healthy endpoint arrive');
my @h = grep { $_->{path} eq '/hang' } requests($recv);
my ($first_hang) = times_of(@h);
my $last_good = (times_of(@good))[-1] // 1e10;
cmp_ok($last_good - $first_hang, '<', $TIMEOUT,
	'all before the first hanging attempt could time out');
note(sprintf('last healthy delivery %.3f s after the first hanging request; %d hanging requests by then',
	$last_good - $first_hang, scalar @h));
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$hang'"),
	'0', 'none of the 20 hanging deliveries is finished yet');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM webhooks.webhook_logs('I', '$hang', 1, 50)
	WHERE status_code IS NULL AND error IS NOT NULL}),
	'a hanging attempt is logged as a failure after the timeout');
$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('I', '$hang')");

# ---------------------------------------------------------------------
# The hanging webhook at its full share of requests, on the host the
# healthy one uses too (a fresh receiver: no earlier request open there).
my $recv2 = start_receiver();
my ($hang2) = create_webhook($node, 'S', "$recv2->{base}/hang", '{member.left}');
my ($ok2) = create_webhook($node, 'S', "$recv2->{base}/status/200", '{member.updated}');
emit_n('S', 'member.left', $per_ep);
my @h2 = wait_for_requests($recv2, $per_ep, sub { $_[0]{path} eq '/hang' }, 30);
is(scalar @h2, $per_ep, "$per_ep requests hang at once");
emit_n('S', 'member.updated', 10);
my @good2 = wait_for_requests($recv2, 10, sub { $_[0]{path} eq '/status/200' }, 30);
is(scalar @good2, 10, 'the 10 healthy events arrive');
my $wait2 = ((times_of(@good2))[-1] // 1e10) - (times_of(@h2))[0];
cmp_ok($wait2, '<', $TIMEOUT,
	'before the first hanging attempt times out, though both webhooks are on one host')
  or diag('connections per host seem capped at max_requests_per_endpoint for all webhooks together');
note(sprintf('healthy delivered %.3f s after the first hanging request', $wait2));
$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('S', '$hang2')");

# ---------------------------------------------------------------------
# A hanging webhook with a backlog; events for another webhook committed
# after it still go out at once.
for my $backlog (1000, 5000)
{
	restart_node();
	my $rh = start_receiver();
	my $rg = start_receiver();
	my $c = "Q$backlog";
	my ($hq) = create_webhook($node, $c, "$rh->{base}/hang", '{member.left}');
	my ($gq) = create_webhook($node, $c, "$rg->{base}/status/200", '{member.updated}');
	emit_n($c, 'member.left', $backlog);
	my @hq = wait_for_requests($rh, $per_ep, sub { 1 }, 30);
	my $t_emit = time();
	emit_n($c, 'member.updated', 10);
	my @gq = wait_for_requests($rg, 10, sub { 1 }, 20);
	is(scalar @gq, 10, "backlog $backlog: the 10 healthy events arrive (within 20 s)");
	my $waited = ((times_of(@gq))[-1] // 1e10) - $t_emit;
	cmp_ok($waited, '<', $TIMEOUT,
		"backlog $backlog: before the first hanging attempt times out");
	note(sprintf('backlog %d: healthy delivered %s s after its emit', $backlog,
		@gq == 10 ? sprintf('%.3f', $waited) : '> 20'));
	# in flight (from memory: no row) or moved to the queue, none finished
	ok($node->poll_query_until('postgres',
			"SELECT count(*) >= $backlog - $per_ep FROM webhooks.deliveries WHERE webhook_id = '$hq'"),
		"backlog $backlog: the hanging webhook's deliveries wait in the queue, but those in flight");
	is($node->safe_psql('postgres', "SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$hq'"),
		'0', "backlog $backlog: and none is finished yet");
	$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('$c', '$hq')");
	stop_receiver($_) for ($rh, $rg);
}

# ---------------------------------------------------------------------
# An endpoint whose attempt timed out gets one request at a time until it
# answers: hanging endpoints in a few communities must not take every
# request the worker may make, a timeout at a time, over and over.
{
	restart_node();
	my $rt = start_receiver();
	my ($ht) = create_webhook($node, 'T', "$rt->{base}/hang", '{member.left}');
	emit_n('T', 'member.left', 100);
	my @wave = wait_for_requests($rt, $per_ep, sub { 1 }, 30);
	is(scalar @wave, $per_ep, "a hanging endpoint gets its $per_ep requests at first");
	ok($node->poll_query_until('postgres',
			"SELECT count(*) >= $per_ep FROM webhooks.delivery_attempts WHERE webhook_id = '$ht'"),
		'they time out');
	my $seen = scalar(requests($rt));
	# two timeouts' time: one request at a time makes at most 3 start
	wait_until(sub { scalar(requests($rt)) - $seen > 4 },
		'more than 4 requests to a timed-out endpoint (must not come)', 2 * $TIMEOUT);
	my $started = scalar(requests($rt)) - $seen;
	cmp_ok($started, '<=', 4, 'then it gets one request at a time');
	cmp_ok($started, '>=', 1, 'and is still tried');
	note("$started requests started in two timeouts after the first wave timed out");
	# once it answers (here, a new URL), it has its share again
	$node->safe_psql('postgres',
		"SELECT webhooks.webhook_update('T', '$ht', url => '$rt->{base}/status/200')");
	emit_n('T', 'member.left', 50);
	ok(wait_for_requests($rt, 50, sub { $_[0]{path} eq '/status/200' }, 30),
		'after it answers, its deliveries go out');
	$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('T', '$ht')");
	stop_receiver($rt);
}

# ---------------------------------------------------------------------
# A community whose endpoint hangs with large payloads holds no more than
# its share of webhooks.max_bytes_in_flight (half of it, beside one other
# community): the other's events are still read, and delivered before the
# first hanging attempt could time out.
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET webhooks.max_bytes_in_flight = '1MB'");
	restart_node();
	my $rb = start_receiver();
	my $rs = start_receiver();
	my ($hb) = create_webhook($node, 'BIG', "$rb->{base}/hang", '{member.left}');
	create_webhook($node, 'SMALL', "$rs->{base}/status/200", '{member.updated}');
	# 40 events of 200 kB: eight times the worker's bound
	$node->safe_psql('postgres', q{SELECT count(webhooks.emit('BIG', 'member.left',
		jsonb_build_object('n', g, 'pad', repeat('x', 200000))))
		FROM generate_series(1, 40) g});
	my @hb = wait_for_requests($rb, 1, sub { 1 }, 30);
	emit_n('SMALL', 'member.updated', 10);
	my @gs = wait_for_requests($rs, 10, sub { 1 }, 20);
	is(scalar @gs, 10, "large payloads hanging: the other community's 10 events arrive");
	my $waited = ((times_of(@gs))[-1] // 1e10) - (times_of(@hb))[0];
	cmp_ok($waited, '<', $TIMEOUT, 'before the first hanging attempt could time out');
	my $big_started = scalar(requests($rb));
	cmp_ok($big_started, '<=', 3,
		'the hanging community had no more than its share of the bytes in flight');
	note(sprintf('healthy delivered %.3f s after the first hanging request; %d large requests hanging',
		$waited, $big_started));
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$hb'"),
		'0', 'none of the large deliveries is finished yet');

	# The same from the queue: a fresh worker claims the large deliveries
	# spilled there; those beyond the community's share go back, and the
	# other community's next events are read at once all the same.
	ok($node->poll_query_until('postgres',
			"SELECT count(*) >= 30 FROM webhooks.deliveries WHERE webhook_id = '$hb'"),
		'the large deliveries wait in the queue');
	restart_node();
	my $seen = scalar(requests($rb));
	wait_until(sub { scalar(requests($rb)) > $seen }, 'a claimed large request', 30);
	my ($first) = grep { $_ } (times_of(requests($rb)))[$seen];
	emit_n('SMALL', 'member.updated', 10);
	my @gs2 = wait_for_requests($rs, 20, sub { 1 }, 20);
	is(scalar @gs2, 20, "claimed large payloads hanging: the other community's next 10 events arrive");
	my $waited2 = ((times_of(@gs2))[-1] // 1e10) - ($first // 0);
	cmp_ok($waited2, '<', $TIMEOUT, 'before the first claimed attempt could time out');
	note(sprintf('healthy delivered %.3f s after the first claimed large request; %d large requests by then',
		$waited2, scalar(requests($rb)) - $seen));
	$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('BIG', '$hb')");
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET webhooks.max_bytes_in_flight');
	$node->reload;
	stop_receiver($_) for ($rb, $rs);
}

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/ERROR:|PANIC:|terminated by signal/, 'no errors in the server log');
stop_receiver($_) for ($recv, $recv2);
$node->stop;
done_testing();
