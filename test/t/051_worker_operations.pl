# The worker under an operator's commands (issue 10): a cancel request
# cancels at most a statement, never the worker; a database whose sessions
# default to read-only does not make it crash-loop; a restarted launcher
# never starts a second worker, even while the first waits for CREATE
# EXTENSION; and DROP DATABASE, ALTER DATABASE ... RENAME and CREATE
# DATABASE ... TEMPLATE of the worker's database work without FORCE, also
# for a database owner who is not a superuser.
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

sub worker_pids
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '')
		FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
}

# ---------------------------------------------------------------------
# pg_cancel_backend: the worker stays, and delivers.
my $node = new_node('ops');
my $pid = worker_pids($node);
like($pid, qr/^\d+$/, 'one worker');
for (1 .. 3)
{
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	usleep(200_000);
}
usleep(500_000);
is(worker_pids($node), $pid, 'three cancel requests later, the same worker runs');
create_webhook($node, 'C', "$base/cancel", '{member.joined}');
$node->safe_psql('postgres', q{SELECT webhooks.emit('C', 'member.joined', '{"after": "cancel"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/cancel' }, 30),
	'and it still delivers');

# ---------------------------------------------------------------------
# ALTER DATABASE ... SET default_transaction_read_only = on: the worker
# writes all the same.
$node->safe_psql('postgres',
	'ALTER DATABASE postgres SET default_transaction_read_only = on');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $pid2;
ok(wait_until(sub { $pid2 = worker_pids($node); $pid2 =~ /^\d+$/ && $pid2 ne $pid },
		'a new worker', 30), 'a new worker starts in the read-only-default database');
$node->safe_psql('postgres', q{
	SET default_transaction_read_only = off;
	SELECT webhooks.emit('C', 'member.joined', '{"after": "read-only"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{body} =~ /read-only/ }, 30),
	'it delivers');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM webhooks.deliveries}),
	'and records the delivery (its own transactions are read-write)');
is(worker_pids($node), $pid2, 'the same worker: no crash loop');
$node->safe_psql('postgres', q{
	SET default_transaction_read_only = off;
	ALTER DATABASE postgres RESET default_transaction_read_only});

# ---------------------------------------------------------------------
# An application's transaction that holds a webhook's delivery rows
# (webhook_delete, not yet committed) delays no other delivery: the worker
# records around the locked rows, and records those once it commits.
my ($slow) = create_webhook($node, 'L', "$base/delay/1500", '{member.joined}');
create_webhook($node, 'H', "$base/lock-ok", '{member.joined}');
$node->safe_psql('postgres', q{
	SELECT count(webhooks.emit('L', 'member.joined', jsonb_build_object('n', g)))
	FROM generate_series(1, 5) g});
ok(wait_for_requests($recv, 5, sub { $_[0]{path} eq '/delay/1500' }, 30),
	'five slow requests in flight');
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe(qq{SELECT webhooks.webhook_delete('L', '$slow')});
usleep(1_800_000);    # the slow answers come back while the rows are held
my $t_lock = time();
$node->safe_psql('postgres', q{SELECT webhooks.emit('H', 'member.joined', '{"while": "locked"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/lock-ok' }, 30),
	'another webhook\'s event is delivered while the rows are held');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM webhooks.deliveries WHERE community_id = 'H'}),
	'and recorded');
my $waited = time() - $t_lock;
note(sprintf('delivered and recorded %.2f s after the emit, the lock held throughout', $waited));
cmp_ok($waited, '<', 4, 'without waiting for the application\'s transaction');
$holder->query_safe('COMMIT');
$holder->quit;
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 0 FROM webhooks.deliveries WHERE webhook_id = '$slow'}),
	'after the commit the deleted webhook leaves nothing behind');

# ---------------------------------------------------------------------
# One worker per database, from the moment it starts: a worker waiting for
# CREATE EXTENSION holds the slot, and a restarted launcher leaves it be.
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', q{ALTER SYSTEM SET webhooks.database_name = 'app'});
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->wait_for_log(qr/extension "webhooks" is not installed in database "app" yet/, $offset);
my $waiting = worker_pids($node);
like($waiting, qr/^\d+$/, 'one worker waits for the extension in app');
my $l1 = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks launcher'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($l1)");
ok(wait_until(sub {
		my $l2 = $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks launcher'});
		$l2 =~ /^\d+$/ && $l2 != $l1 }, 'a new launcher', 30),
	'the launcher restarts');
# the new launcher polls every 2 s: give it three chances
usleep(6_500_000);
is(worker_pids($node), $waiting, 'still exactly the one waiting worker');
$node->safe_psql('app', 'CREATE EXTENSION webhooks');
$node->wait_for_log(qr/delivery worker started for database "app"/, $offset);
is(worker_pids($node), $waiting, 'which then serves app');

# ---------------------------------------------------------------------
# The worker steps aside for commands that need its database alone, also
# when a non-superuser owner runs them (WITH (FORCE) is not needed).
$node->safe_psql('postgres', 'CREATE ROLE app_owner LOGIN CREATEDB');
$node->safe_psql('postgres', 'ALTER DATABASE app OWNER TO app_owner');

# A role that may not drop the database does not stop the worker by trying.
$node->safe_psql('postgres', 'CREATE ROLE intruder LOGIN');
my $before = worker_pids($node);
my ($iret, $iout, $ierr) = $node->psql('postgres', 'DROP DATABASE app',
	extra_params => [ '-U', 'intruder' ]);
like($ierr, qr/must be owner/, 'a non-owner cannot drop the database');
is(worker_pids($node), $before, 'and the worker was not stopped for it');

# CREATE DATABASE ... TEMPLATE app
my $t0 = time();
my ($ret, $out, $err) = $node->psql('postgres',
	'CREATE DATABASE app_copy TEMPLATE app', extra_params => [ '-U', 'app_owner' ]);
is($ret, 0, 'CREATE DATABASE ... TEMPLATE app works while the worker serves app')
  or diag($err);
note(sprintf('CREATE DATABASE TEMPLATE took %.2f s', time() - $t0));
ok(wait_until(sub { worker_pids($node) =~ /^\d+$/ }, 'the worker back', 30),
	'then the worker comes back');
$node->safe_psql('app', q{SELECT webhooks.webhook_create('A', '} . $base
	  . q{/app', '{member.joined}')});
$node->safe_psql('app', q{SELECT webhooks.emit('A', 'member.joined', '{"db": "app"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/app' }, 30),
	'and delivers for app');

# ALTER DATABASE app RENAME: the worker waits for a database named app.
($ret, $out, $err) = $node->psql('postgres',
	'ALTER DATABASE app RENAME TO app_renamed', extra_params => [ '-U', 'app_owner' ]);
is($ret, 0, 'ALTER DATABASE app RENAME works') or diag($err);
$offset = -s $node->logfile;
($ret, $out, $err) = $node->psql('postgres',
	'ALTER DATABASE app_renamed RENAME TO app', extra_params => [ '-U', 'app_owner' ]);
is($ret, 0, 'and back') or diag($err);
$node->wait_for_log(qr/delivery worker started for database "app"/, $offset);
ok(1, 'the worker serves app again');

# DROP DATABASE app, by its owner, without FORCE.
$t0 = time();
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE app',
	extra_params => [ '-U', 'app_owner' ]);
is($ret, 0, 'DROP DATABASE of the worker\'s database works without FORCE') or diag($err);
note(sprintf('DROP DATABASE took %.2f s', time() - $t0));
ok(wait_until(sub { worker_pids($node) eq '' }, 'no worker', 30),
	'no worker runs for a database that is gone');
$node->wait_for_log(qr/database "app" does not exist yet/, $offset);
ok(1, 'the launcher waits for app to exist again');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC/, 'no process died of a signal');
# (a SIGTERM that lands inside one of the worker's statements ends it with
# code 1, as it would a backend: at most the terminations above)
my @exits = $log =~ /webhooks worker.*exited with exit code 1/g;
cmp_ok(scalar @exits, '<=', 2, 'the worker never exited on an error (no crash loop)');
$node->stop;
stop_receiver($recv);
done_testing();
