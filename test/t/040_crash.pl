# Crash safety, the core promise: a committed event is never lost.  A
# backlog is committed at once, then in the middle of its delivery
#   (a) the worker is killed with SIGKILL (the postmaster restarts all),
#   (b) the cluster is stopped in immediate mode and started again,
#   (c) an ordinary backend is killed with SIGKILL (all restart too),
# each twice.  Every event must reach the endpoint (counted by distinct
# webhook-id); duplicates are allowed but bounded by what can be in flight.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $N = 2000;              # events per backlog
my $ROUNDS = 2;            # times each kind of crash is repeated
my $MAX_DUPLICATES = 512;  # webhooks.max_concurrent_requests
my $DELAY_MS = 100;        # per request: 2000 take a few seconds at 64 at a time

my $node = new_node('crash', "restart_after_crash = on\n");
my $recv = start_receiver();
my $base = $recv->{base};
my $max_concurrent = $node->safe_psql('postgres', 'SHOW webhooks.max_concurrent_requests');

# Lines of the receiver's log containing $marker (cheap: no JSON parsing).
sub count_lines
{
	my ($marker) = @_;
	my $n = 0;
	open(my $fh, '<', $recv->{log}) or return 0;
	while (my $line = <$fh>)
	{
		$n++ if index($line, $marker) >= 0 && $line =~ /\n\z/;
	}
	close $fh;
	return $n;
}

# Distinct webhook-ids among the receiver's lines containing $marker.
sub distinct_ids
{
	my ($marker) = @_;
	my %ids;
	open(my $fh, '<', $recv->{log}) or return 0;
	while (my $line = <$fh>)
	{
		next unless index($line, $marker) >= 0 && $line =~ /\n\z/;
		$ids{$1} = 1 if $line =~ /"webhook-id":"([^"]+)"/;
	}
	close $fh;
	return scalar keys %ids;
}

# Poll a query (tolerating a cluster that is restarting) until it returns
# $want, every 250ms for at most $timeout seconds.
sub wait_for_value
{
	my ($sql, $want, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $out;
	while (time() < $deadline)
	{
		my $rc;
		($rc, $out) = $node->psql('postgres', $sql, timeout => 30);
		return 1 if $rc == 0 && defined $out && $out eq $want;
		usleep(250_000);
	}
	diag("timed out waiting for '$sql' to return '$want' (last: " . ($out // 'undef') . ')');
	return 0;
}

# One round: commit a backlog of $N events, crash in the middle of its
# delivery, and check that every event arrives.
sub crash_round
{
	my ($tag, $what, $crash, $expect_log, $prepare) = @_;
	my $community = "crash-$tag";
	my $path = "/delay/$DELAY_MS?r=$tag";
	my $marker = "\"$path\"";
	my ($wid) = create_webhook($node, $community, "$base$path", '{member.joined}');
	my $offset = -s $node->logfile;
	my $state = $prepare ? $prepare->() : undef;

	my $t0 = time();
	$node->safe_psql('postgres', "SELECT count(webhooks.emit('$community', 'member.joined', "
		  . "jsonb_build_object('n', g))) FROM generate_series(1, $N) g");
	ok(wait_until(sub { count_lines($marker) >= 200 }, "$tag: 200 deliveries", 60),
		"$tag: delivery of the backlog under way");
	my $before = distinct_ids($marker);

	$crash->($state);

	cmp_ok($before, '<', $N, "$tag: $what came with deliveries still to make");
	note(sprintf('%s: %s after %.2f s, %d events received',
		$tag, $what, time() - $t0, $before));

	# (deliveries made from memory leave no queue row: count arrivals)
	ok(wait_until(sub { distinct_ids($marker) >= $N }, "$tag: all events", 120),
		"$tag: delivery goes on after the restart");
	ok(wait_for_value("SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = '$wid'",
			'0', 60),
		"$tag: the queue drains after the restart");
	my $elapsed = time() - $t0;

	my (%ids, %n);
	my $total = 0;
	for my $r (grep { $_->{path} eq $path } requests($recv))
	{
		$total++;
		$ids{ $r->{headers}{'webhook-id'} }++;
		my $body = eval { decode_json($r->{body}) };
		$n{ $body->{data}{n} }++ if $body;
	}
	my $distinct = scalar keys %ids;
	my $dups = $total - $distinct;
	is($distinct, $N, "$tag: all $N committed events arrived (zero lost)");
	is(scalar(grep { $_ >= 1 && $_ <= $N } keys %n), $N, "$tag: every payload 1..$N among them");
	cmp_ok($dups, '<=', $MAX_DUPLICATES, "$tag: duplicates ($dups) within what can be in flight");
	note(sprintf('%s: %d requests, %d distinct, %d duplicates (%d ids sent more than once), %.1f s in all',
		$tag, $total, $distinct, $dups, scalar(grep { $_ > 1 } values %ids), $elapsed));

	my $log = slurp_file($node->logfile, $offset);
	like($log, $expect_log, "$tag: the log shows the $what") if $expect_log;
	like($log, qr/delivery worker started/, "$tag: a new worker started");
	like($log, qr/reading again from the saved position, leaving out \d+ deliveries attempted since/,
		"$tag: it read again from the saved position, leaving out what was attempted");
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM webhooks.deliveries WHERE state <> 'pending' OR attempts > 0"),
		'0', "$tag: nothing left failed or half-done in the queue");
	$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('$community', '$wid')");
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
}

my $restarted = qr/terminated by signal 9.*all server processes terminated; reinitializing/s;

for my $round (1 .. $ROUNDS)
{
	# (a) SIGKILL the worker.
	crash_round("a$round", 'SIGKILL of the worker',
		sub {
			my $pid = worker_pid();
			ok($pid =~ /^\d+$/ && kill('KILL', $pid), "a$round: killed the worker ($pid)");
		},
		$restarted);

	# (b) Immediate shutdown, then start.
	crash_round("b$round", 'immediate shutdown',
		sub {
			$node->stop('immediate');
			$node->start;
		},
		qr/received immediate shutdown request/);

	# (c) SIGKILL an ordinary backend.
	crash_round("c$round", 'SIGKILL of a backend',
		sub {
			my ($bg, $pid) = @{ $_[0] };
			ok(kill('KILL', $pid), "c$round: killed the backend ($pid)");
			eval { $bg->quit; };
		},
		$restarted,
		sub {
			my $bg = $node->background_psql('postgres');
			my $pid = $bg->query_safe('SELECT pg_backend_pid()');
			chomp $pid;
			$bg->query_until(qr/sleeping/, "\\echo sleeping\nSELECT pg_sleep(60);\n");
			ok(wait_for_value(
					"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND query LIKE '%pg_sleep%'",
					'1', 30),
				"c$round: a backend sleeping in pg_sleep");
			return [ $bg, $pid ];
		});
}

is($max_concurrent, $MAX_DUPLICATES, 'the duplicate bound is webhooks.max_concurrent_requests');
stop_receiver($recv);
$node->stop;
done_testing();
