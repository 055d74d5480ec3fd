# The worker as a process: how operators find it, what happens when it is
# terminated (the launcher starts a new one; what was in flight is sent
# again), and a worker whose database is created only later.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $recv = start_receiver();
my $base = $recv->{base};

sub count_matching
{
	my ($re) = @_;
	return scalar(grep { $_->{path} =~ $re } requests($recv));
}

# ---------------------------------------------------------------------
# pg_stat_activity shows the launcher and the worker.
my $node = new_node('worker');
is($node->safe_psql('postgres', q{
	SELECT string_agg(backend_type || ':' || coalesce(datname, '-'), ',' ORDER BY backend_type)
	FROM pg_stat_activity WHERE backend_type LIKE 'webhooks%'}),
	'webhooks launcher:-,webhooks worker:postgres',
	'one launcher (no database) and one worker on database postgres');
my $pid1 = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
like($pid1, qr/^\d+$/, 'the worker has a pid');
my $ps = `ps -o args= -p $pid1`;
like($ps, qr/webhooks/, 'its process title names webhooks');

# ---------------------------------------------------------------------
# SIGTERM while requests are in flight: a new worker, and nothing lost.
my ($wid) = create_webhook($node, 'W', "$base/delay/2500", '{member.joined}');
$node->safe_psql('postgres', q{
	SELECT webhooks.emit('W', 'member.joined', jsonb_build_object('n', g))
	FROM generate_series(1, 10) g});
wait_until(sub { count_matching(qr{^/delay/2500$}) >= 10 }, '10 slow requests in flight', 30);
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$wid'"),
	'0', 'all 10 are in flight, none recorded, before SIGTERM');

my $offset = -s $node->logfile;
my $t_term = time();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid1)"), 't',
	'pg_terminate_backend on the worker');
my $pid2;
ok( wait_until(
		sub {
			$pid2 = $node->safe_psql('postgres',
				q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
			return $pid2 =~ /^\d+$/ && $pid2 != $pid1;
		},
		'a new worker',
		30),
	'the launcher starts a new worker');
my $restart = time() - $t_term;
note(sprintf('new worker after %.2f s', $restart));
cmp_ok($restart, '<', 10, 'within a few seconds');
isnt($pid2, $pid1, 'with a new pid');

ok( $node->poll_query_until('postgres',
		"SELECT count(DISTINCT event_id) = 10 FROM webhooks.delivery_attempts
		 WHERE webhook_id = '$wid' AND status_code = 200"),
	'the deliveries in flight at SIGTERM are all delivered in the end');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = '$wid'"),
	'0', 'and none is left in the queue');
my %ids;
$ids{ $_->{headers}{'webhook-id'} }++
  for grep { $_->{path} eq '/delay/2500' } requests($recv);
is(scalar keys %ids, 10, 'all 10 events reached the endpoint');
my $sent = count_matching(qr{^/delay/2500$});
note("$sent requests for 10 events (those cut off by SIGTERM are sent again)");
cmp_ok($sent, '>', 10, 'requests cut off by SIGTERM were sent again');

$node->safe_psql('postgres',
	q{SELECT webhooks.emit('W', 'member.joined', '{"tag": "after-sigterm"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{body} =~ /after-sigterm/ }, 30),
	'delivery continues with the new worker');
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/terminated by signal|exited with exit code/,
	'the worker stopped cleanly, no crash restart');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
	'1', 'still exactly one worker');

# ---------------------------------------------------------------------
# SIGTERM to the launcher: the postmaster starts a new one, which leaves
# the running worker alone, and restarts the worker when it stops.
my $l1 = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks launcher'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($l1)");
my $l2;
ok( wait_until(
		sub {
			$l2 = $node->safe_psql('postgres',
				q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks launcher'});
			return $l2 =~ /^\d+$/ && $l2 != $l1;
		},
		'a new launcher',
		30),
	'a new launcher starts after SIGTERM');
# Give the new launcher a few polls (every 2 s) to start a second worker.
usleep(4_500_000);
is($node->safe_psql('postgres', q{
	SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
	$pid2, 'the new launcher leaves the running worker alone: still one worker');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid2)");
my $pid3;
ok( wait_until(
		sub {
			$pid3 = $node->safe_psql('postgres',
				q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
			return $pid3 =~ /^\d+$/ && $pid3 != $pid2;
		},
		'a worker from the new launcher',
		30),
	'the new launcher starts a worker when the old one stops');
$node->safe_psql('postgres',
	q{SELECT webhooks.emit('W', 'member.joined', '{"tag": "after-launcher"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{body} =~ /after-launcher/ }, 30),
	'and it delivers');
$node->stop;

# ---------------------------------------------------------------------
# A database that does not exist yet: the launcher waits, once, quietly.
my $late = init_node('late', "webhooks.database_name = 'later'");
$late->start;
$late->wait_for_log(qr/database "later" does not exist yet/);
# Let the launcher look a few more times (it polls every 2 s).
usleep(5_000_000);
$log = slurp_file($late->logfile);
my @waiting = $log =~ /does not exist yet/g;
is(scalar @waiting, 1, 'the launcher says once that the database does not exist yet');
unlike($log, qr/webhooks.*exited with exit code/, 'no worker exits (no crash loop)');
is($late->safe_psql('postgres', q{
	SELECT string_agg(backend_type, ',') FROM pg_stat_activity WHERE backend_type LIKE 'webhooks%'}),
	'webhooks launcher', 'only the launcher runs meanwhile');

$offset = -s $late->logfile;
$late->safe_psql('postgres', 'CREATE DATABASE later');
$late->safe_psql('later', 'CREATE EXTENSION webhooks');
$late->wait_for_log(qr/delivery worker started for database "later"/, $offset);
is($late->safe_psql('postgres', q{
	SELECT datname FROM pg_stat_activity WHERE backend_type = 'webhooks worker'}),
	'later', 'the worker serves the new database');

my ($lid, $lsecret) = split /\|/, $late->safe_psql('later',
	"SELECT id || '|' || secret FROM webhooks.webhook_create('L', '$base/later', '{member.joined}')");
my $leid = $late->safe_psql('later',
	q{SELECT webhooks.emit('L', 'member.joined', '{"db": "later"}')});
my @l = wait_for_requests($recv, 1, sub { $_[0]{path} eq '/later' }, 30);
is(scalar @l, 1, 'an event emitted in the later database is delivered');
is($l[0]{headers}{'webhook-id'}, $leid, 'with its event id') if @l;
ok(@l && verify_signature($lsecret, $l[0]), 'and signed');
$log = slurp_file($late->logfile);
unlike($log, qr/ERROR:|terminated by signal|exited with exit code/,
	'no errors or worker exits in the log');

# webhooks.database_name changed by SIGHUP: the worker moves.
$late->safe_psql('postgres', q{ALTER SYSTEM SET webhooks.database_name = 'postgres'});
$late->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($late->poll_query_until('postgres', q{
	SELECT string_agg(datname, ',') = 'postgres' FROM pg_stat_activity
	WHERE backend_type = 'webhooks worker'}),
	'after reload the worker serves the newly named database');
$late->stop;

stop_receiver($recv);
done_testing();
