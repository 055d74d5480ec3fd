# Work that became due without emit() is found in bounded time (issue 10):
# a delivery re-queued by hand is sent within a couple of seconds, and one
# marked in flight ('sending') that no running worker holds (left by an
# earlier worker, or loaded by pg_restore while this one runs) goes back
# to pending and is sent too, while the worker's own in-flight deliveries
# are left alone.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;
use Time::HiRes qw(time);

my $node = new_node('orphans', "webhooks.timeout = '60s'\n");
my $recv = start_receiver();
my $base = $recv->{base};
sub sql { return $node->safe_psql('postgres', $_[0]); }

# Events without a subscriber yet: nothing is queued for them.
my $e1 = sql(q{SELECT webhooks.emit('O', 'member.joined', '{"n": 1}')});
my $e2 = sql(q{SELECT webhooks.emit('O', 'member.joined', '{"n": 2}')});
ok($node->poll_query_until('postgres',
	q{SELECT read_at > now() - interval '5 s' FROM webhooks.reader}),
	'the worker has read them');
my ($w) = create_webhook($node, 'O', "$base/orphan", '{member.joined}');
# (a webhook created after the events does not receive them on its own)
my ($slow) = create_webhook($node, 'S', "$base/hang", '{member.joined}');

sub queue_by_hand
{
	my ($event, $state, $webhook) = @_;
	$webhook //= $w;
	sql(qq{INSERT INTO webhooks.deliveries
		(webhook_id, event_id, event, community_id, emitted_at, event_txid, state)
		SELECT '$webhook', e.id, e.type, e.community_id, e.created_at, e.txid, '$state'
		FROM webhooks.events e WHERE e.id = '$event'});
}

# Re-queued by hand: picked up without any wake-up.
my $t0 = time();
queue_by_hand($e1, 'pending');
ok(wait_for_requests($recv, 1, sub { $_[0]{headers}{'webhook-id'} eq $e1 }, 10),
	'a delivery queued by hand is sent');
note(sprintf('after %.2f s', time() - $t0));
cmp_ok(time() - $t0, '<', 3, 'within the worker\'s 1 s poll, not at the next wake-up');

# A request of the worker's own, claimed from the queue (its row says
# 'sending'), hangs, in flight, all along.
my $e3 = sql(q{SELECT webhooks.emit('O', 'member.joined', '{"n": 3}')});
queue_by_hand($e3, 'pending', $slow);
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/hang' }, 10),
	'the worker has a request of its own in flight');

# Marked 'sending' by nobody alive: released and sent.
$t0 = time();
queue_by_hand($e2, 'sending');
ok(wait_for_requests($recv, 1, sub { $_[0]{headers}{'webhook-id'} eq $e2 }, 25),
	'a delivery marked in flight by no running worker is sent');
note(sprintf('after %.2f s', time() - $t0));
$node->wait_for_log(qr/deliveries marked in flight by no running worker/);
ok(1, 'and the worker says so');
is(scalar(grep { $_->{path} eq '/hang' } requests($recv)), 1,
	'its own request in flight was not released and sent twice');
is(sql(qq{SELECT state FROM webhooks.deliveries WHERE webhook_id = '$slow'}), 'sending',
	'(it is still in flight)');
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 0 FROM webhooks.deliveries WHERE webhook_id = '$w'}),
	'both are recorded as delivered');

stop_receiver($recv);
$node->stop('immediate');
done_testing();
