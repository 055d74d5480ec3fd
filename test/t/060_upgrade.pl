# Upgrading an installation of 1.0 to 1.1 with ALTER EXTENSION UPDATE
# (issue 8): what 1.0 had queued is delivered once, what had failed stays
# failed and can be recovered, the attempt log is kept, and the worker of
# the new library waits for the update instead of touching 1.0's tables.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $recv = start_receiver();
my $base = $recv->{base};
my $node = init_node('upgrade');
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

# 1.0, as released, with a queue: 20 events pending for a healthy
# endpoint, 5 failed for good at one that answered 500, and 1.0's log.
my $offset = -s $node->logfile;
sql(q{CREATE EXTENSION webhooks VERSION '1.0'});
$node->wait_for_log(qr/extension "webhooks" 1\.0 in database "postgres" needs an update to 1\.1/, $offset);
ok(1, 'the worker of the new library waits for the update');
my ($ok_id, $ok_secret) = create_webhook($node, 'U', "$base/up", '{member.joined}');
my ($bad_id) = create_webhook($node, 'U', "$base/was-failing", '{payment.failed}');
sql(q{SELECT webhooks.emit('U', 'member.joined', jsonb_build_object('n', g))
      FROM generate_series(1, 20) g});
sql(q{SELECT webhooks.emit('U', 'payment.failed', jsonb_build_object('f', g))
      FROM generate_series(1, 5) g});
sql(qq{UPDATE webhooks.deliveries SET state = 'failed', attempts = 8,
         last_status = 500, last_error = 'HTTP 500'
       WHERE webhook_id = '$bad_id'});
sql(qq{INSERT INTO webhooks.delivery_attempts
         (webhook_id, event_id, event, attempt, status_code, response_time_ms, error, created_at)
       SELECT '$bad_id', event_id, event, 8, 500, 12, 'HTTP 500', now() - interval '1 hour'
       FROM webhooks.deliveries WHERE webhook_id = '$bad_id'});
is(sql(q{SELECT state || ':' || count(*) FROM webhooks.deliveries GROUP BY state ORDER BY state}),
	"failed:5\npending:20", '1.0 queued 20 deliveries, 5 failed');
usleep(1_500_000);
is(scalar(requests($recv)), 0, 'nothing is sent before the update');

# The update: 1.0 -> 1.0.1 -> 1.1 in one command.
sql('ALTER EXTENSION webhooks UPDATE');
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'webhooks'}), '1.1',
	'the extension is at 1.1');
is(sql(q{SELECT count(*) || ':' || count(*) FILTER (WHERE txid = '0') FROM webhooks.events}),
	'25:25', 'the 25 queued events are kept as events (txid 0: emitted before 1.1)');

my @up = wait_for_requests($recv, 20, sub { $_[0]{path} eq '/up' }, 60);
is(scalar @up, 20, 'the 20 pending deliveries arrive');
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 0 FROM webhooks.deliveries WHERE webhook_id = '$ok_id'}),
	'and are recorded as delivered');
usleep(1_000_000);
@up = grep { $_->{path} eq '/up' } requests($recv);
my %ids = map { $_->{headers}{'webhook-id'} => 1 } @up;
is(scalar @up, 20, 'each once: no more requests after a second');
is(scalar keys %ids, 20, '20 distinct webhook-ids');
ok(!grep({ !verify_signature($ok_secret, $_) } @up), 'all signed with the webhook\'s secret');
my %n = map { decode_json_body($_)->{data}{n} => 1 } @up;
is(scalar(grep { $n{$_} } 1 .. 20), 20, 'payloads 1..20 all there');

# What had failed stays failed, and 1.1's webhook_recover sends it again.
is(sql(qq{SELECT state || ':' || count(*) FROM webhooks.deliveries
          WHERE webhook_id = '$bad_id' GROUP BY state}), 'failed:5',
	'the 5 failed deliveries stay failed');
is(scalar(grep { $_->{path} eq '/was-failing' } requests($recv)), 0, 'and are not sent');
sql(qq{SELECT webhooks.webhook_update('U', '$bad_id', url => '$base/recovered')});
is(sql(qq{SELECT webhooks.webhook_recover('U', '$bad_id', '-infinity')}), '5',
	'webhook_recover queues the 5 again');
my @rec = wait_for_requests($recv, 5, sub { $_[0]{path} eq '/recovered' }, 60);
is(scalar @rec, 5, 'and they arrive');

# The log of 1.0 is kept, and webhook_logs reads across old and new.
is(sql(qq{SELECT count(*) FROM webhooks.webhook_logs('U', '$bad_id', 1, 50)}), '10',
	'webhook_logs shows the 5 attempts logged by 1.0 and the 5 made since');
is(sql(qq{SELECT count(*) FROM webhooks.delivery_attempts_1_0
	WHERE webhook_id = '$bad_id' AND attempt = 8}),
	'5', '1.0\'s log is the first partition of the new one');
is(sql(q{SELECT inhparent::regclass FROM pg_inherits
	WHERE inhrelid = 'webhooks.delivery_attempts_1_0'::regclass}),
	'webhooks.delivery_attempts', '(attached)');

# A migrated event can be looked up and replayed.
my $eid = sql(qq{SELECT event_id FROM webhooks.delivery_attempts WHERE webhook_id = '$bad_id' LIMIT 1});
like(sql(qq{SELECT payload FROM webhooks.event_get('U', '$eid')}), qr/"f": \d/,
	'event_get finds an event emitted under 1.0');

# New events take the 1.1 path.
sql(q{SELECT webhooks.emit('U', 'member.joined', '{"after": "update"}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{body} =~ /"after":"update"|"after": "update"/ }, 30),
	'an event emitted after the update is delivered');
is(sql(q{SELECT count(*) FROM webhooks.events WHERE txid <> '0'}), '1',
	'recorded once, as a 1.1 event');

# A dump of the updated database restores whole, 1.0's log included (it
# left the extension, and is dumped as a partition like the others).
my $dump = $node->basedir . '/updated.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump of the updated database');
sql('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore');
is($node->safe_psql('restored', 'SELECT count(*) FROM webhooks.delivery_attempts'),
	sql('SELECT count(*) FROM webhooks.delivery_attempts'), 'the whole log is restored');
is($node->safe_psql('restored', 'SELECT count(*) FROM webhooks.delivery_attempts_1_0'),
	sql('SELECT count(*) FROM webhooks.delivery_attempts_1_0'), 'with 1.0\'s part');

my $log = slurp_file($node->logfile);
unlike($log, qr/ERROR|terminated by signal/, 'no errors in the server log');
$node->stop;
stop_receiver($recv);
done_testing();

sub decode_json_body { return JSON::PP::decode_json($_[0]{body}); }
