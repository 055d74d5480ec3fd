# pg_dump / pg_restore of a database that uses the extension (issues 8 and
# 10): webhooks, secrets, events, the queue and the attempt log come along,
# with the queue's id counter, so emitting and queueing work at once in the
# restored database, whose worker sends what the dump had queued and reads
# none of the dump's events again.
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
# No worker serves the source, so what it emits waits; the restored
# database gets one at the end.
my $node = init_node('dump', "webhooks.database_name = 'nowhere'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION webhooks');

sub src { return $node->safe_psql('postgres', $_[0]); }
sub dst { return $node->safe_psql('restored', $_[0]); }

# A database with a queue: no worker serves it, so what it emits waits.
my ($wid, $secret) = create_webhook($node, 'D', "$base/restored", '{member.joined}');
src(q{CREATE TABLE members (id int, community_id text)});
src(q{CREATE TRIGGER members_joined AFTER INSERT ON members
      FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined')});
src(q{INSERT INTO members SELECT g, 'D' FROM generate_series(1, 30) g});
src(q{SELECT * FROM webhooks.read_events()});
# Some deliveries as the worker leaves them: one failed, with its attempt
# logged.
src(q{UPDATE webhooks.deliveries SET state = 'failed', attempts = 8 WHERE id IN (SELECT max(id) FROM webhooks.deliveries)});
src(qq{INSERT INTO webhooks.delivery_attempts (webhook_id, event_id, event, attempt, status_code, response_time_ms)
       SELECT webhook_id, event_id, event, 1, 503, 9 FROM webhooks.deliveries WHERE state = 'failed'});
my %before;
for my $t (qw(webhooks events deliveries delivery_attempts))
{
	$before{$t} = src("SELECT count(*) FROM webhooks.$t");
}
is($before{deliveries}, '30', '30 deliveries queued in the source');

my $dump = $node->basedir . '/db.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump');
src('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore');

for my $t (qw(webhooks events deliveries delivery_attempts))
{
	is(dst("SELECT count(*) FROM webhooks.$t"), $before{$t}, "$t: every row restored");
}
is(dst(qq{SELECT secret FROM webhooks.webhooks WHERE id = '$wid'}), $secret,
	'the signing secret is restored');
is(dst(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks.events'::regclass}),
	src(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks.events'::regclass}),
	'the events\' partitions are restored');

# Emitting and queueing work in the restored database (1.0 lost the
# queue's counter: every new delivery failed with a duplicate key).
dst(q{INSERT INTO members VALUES (31, 'D')});
like(dst(q{SELECT webhooks.emit('D', 'member.joined', '{"n": 32}')}), qr/^[0-9a-f-]{36}$/,
	'emit works after the restore');

# The worker serves the restored database: the queue and the new events are all delivered; the failed one is not, and
# no event of the dump is read again as if it were new.
src(q{ALTER SYSTEM SET webhooks.database_name = 'restored'});
src('SELECT pg_reload_conf()');
$node->wait_for_log(qr/delivery worker started for database "restored"/);
my @got = wait_for_requests($recv, 31, sub { $_[0]{path} eq '/restored' }, 60);
is(scalar @got, 31, 'the 29 restored deliveries and 2 new ones arrive');
usleep(1_500_000);
is(scalar(grep { $_->{path} eq '/restored' } requests($recv)), 31, 'and nothing more');
ok($node->poll_query_until('restored',
	q{SELECT count(*) = 1 FROM webhooks.deliveries}),
	'only the failed delivery is left');
is(dst(q{SELECT state FROM webhooks.deliveries}), 'failed', 'still failed');
ok(!grep({ !verify_signature($secret, $_) } @got), 'all signed with the restored secret');

$node->stop;
stop_receiver($recv);
done_testing();
