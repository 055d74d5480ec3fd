# Deliveries made from memory (issue 8, point 3): the worker reads
# committed events straight into deliveries, and a delivery that succeeds
# at its first attempt writes its attempt's log row and nothing else; one
# that fails gets a queue row for its retries; one that waits too long for
# its endpoint moves to the queue.  The read position moves only past
# what is recorded, and only the worker reads while it runs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;
use JSON::PP ();

my $node = new_node('readpath', q{
webhooks.max_requests_per_endpoint = 4
webhooks.timeout = '30s'
webhooks.retry_schedule = '1h'
});
my $recv = start_receiver();
my $base = $recv->{base};
sub sql { return $node->safe_psql('postgres', $_[0]); }

# The queue's id counter: every queue row ever made takes a value.
sub queue_rows_made
{
	return sql(q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END
	             FROM webhooks.deliveries_id_seq});
}

# The saved read position is past every event: all read deliveries are
# recorded, so nothing more is sent for them.
sub position_past_all
{
	return $node->poll_query_until('postgres',
		q{SELECT upto IS NULL AND NOT EXISTS (
		    SELECT 1 FROM webhooks.events e, webhooks.reader r
		    WHERE e.txid >= pg_snapshot_xmin(r.snapshot)
		      AND NOT pg_visible_in_snapshot(e.txid, r.snapshot))
		  FROM webhooks.reader});
}

# 1. Success: a log row each, no queue row.
my ($ok) = create_webhook($node, 'R', "$base/ok", '{member.joined}');
my $made = queue_rows_made();
sql(q{CREATE TABLE members (id int PRIMARY KEY, community_id text, name text)});
sql(q{CREATE TRIGGER members_webhooks AFTER INSERT ON members
      FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined', 'community_id')});
sql(q{INSERT INTO members SELECT g, 'R', 'm' || g FROM generate_series(1, 300) g});
ok(wait_for_requests($recv, 300, sub { $_[0]{path} eq '/ok' }, 60),
	'300 events emitted by a trigger arrive');
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 300 FROM webhooks.delivery_attempts
	   WHERE webhook_id = '$ok' AND status_code = 200}),
	'each has its log row');
is(queue_rows_made(), $made, 'no queue row was made for them');
is(sql(qq{SELECT count(DISTINCT event_id) FROM webhooks.delivery_attempts
          WHERE webhook_id = '$ok'}), '300', 'one attempt per event');

# The position moves past them once they are recorded.
ok(position_past_all(), 'the saved position is past every event read');

# Pages: a transaction of 1200 events open across several reads (so read
# through the snapshots' in-progress lists), and one of 1100 committed
# at once, both read in pages of at most webhooks.batch_size (500) events;
# each event arrives once.
my ($big) = create_webhook($node, 'P', "$base/pages", '{member.joined}');
my $bg = $node->background_psql('postgres');
$bg->query_safe(q{BEGIN});
$bg->query_safe(q{SELECT count(webhooks.emit('P', 'member.joined', jsonb_build_object('open', g)))
                  FROM generate_series(1, 1200) g});
sql(q{SELECT count(webhooks.emit('P', 'member.joined', jsonb_build_object('at_once', g)))
      FROM generate_series(1, 1100) g});
# (read while the other is open: it is in those reads' snapshots)
ok(wait_for_requests($recv, 1100, sub { $_[0]{path} eq '/pages' }, 30),
	'the 1100 committed at once arrive while the other transaction is open');
$bg->query_safe(q{COMMIT});
$bg->quit;
ok(wait_for_requests($recv, 2300, sub { $_[0]{path} eq '/pages' }, 60),
	'the 1200 of the long transaction arrive after its commit');
ok(position_past_all(), 'and the position passes them all');
my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for grep { $_->{path} eq '/pages' } requests($recv);
is(scalar(keys %seen), 2300, '2300 distinct events');
is(scalar(grep { $_ > 1 } values %seen), 0, 'none of them twice');

# 2. Failure: the first attempt is logged, the retry is a queue row.
my ($bad) = create_webhook($node, 'F', "$base/status/500", '{member.joined}');
my $event = sql(q{SELECT webhooks.emit('F', 'member.joined', '{"n": 1}')});
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 1 FROM webhooks.deliveries
	   WHERE webhook_id = '$bad' AND event_id = '$event' AND state = 'pending'
	     AND attempts = 1 AND last_status = 500
	     AND next_attempt_at > now() + interval '50 minutes'}),
	'a failed first attempt leaves a pending queue row, due by the schedule');
is(sql(qq{SELECT count(*) FROM webhooks.delivery_attempts
          WHERE webhook_id = '$bad' AND status_code = 500}), '1',
	'and its attempt is logged');

# 3. Waiting: an endpoint that takes 4 requests at a time and never
# answers; the 16 others wait in memory for a second, then go to the queue.
my ($slow) = create_webhook($node, 'S', "$base/hang?s", '{member.joined}');
sql(q{SELECT count(webhooks.emit('S', 'member.joined', jsonb_build_object('n', g)))
      FROM generate_series(1, 20) g});
ok(wait_for_requests($recv, 4, sub { $_[0]{path} eq '/hang?s' }, 30),
	'four requests hang');
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 16 FROM webhooks.deliveries
	   WHERE webhook_id = '$slow' AND attempts = 0}),
	'the 16 that waited moved to the queue');
# and another community is not held back by them
my ($other) = create_webhook($node, 'T', "$base/other", '{member.joined}');
sql(q{SELECT webhooks.emit('T', 'member.joined', '{"t": 1}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/other' }, 10),
	'another community\'s event is sent meanwhile');

# 4. Only the worker reads while it runs.
my ($code, $msg) = fails_with($node, 'SELECT * FROM webhooks.read_events()');
is($code, '55006', 'read_events() refuses while the worker reads');
like($msg, qr/delivery worker of this database is reading/, 'and says why');

# 5. A clean restart keeps the position; nothing is sent twice.  (The
# hanging webhook goes first: its requests in flight would hold the
# position back until they time out.)
sql(qq{SELECT webhooks.webhook_delete('S', '$slow')});
my $before = scalar(grep { $_->{path} eq '/ok' } requests($recv));
$node->restart;
wait_for_worker($node);
sql(q{INSERT INTO members VALUES (1000, 'R', 'after')});
ok(wait_for_requests($recv, $before + 1, sub { $_[0]{path} eq '/ok' }, 30),
	'an event after the restart arrives');
ok(position_past_all(), 'the position passes every event after the restart');
is(scalar(grep { $_->{path} eq '/ok' } requests($recv)), $before + 1,
	'and nothing delivered before the restart is sent again');

# 6. The worker keeps a copy of each community's webhooks; any change to
# them, however made, reaches it before the next event is read.  R is in
# the copy now (its event was just read).
sub at { my ($path) = @_; return grep { $_->{path} eq $path } requests($recv); }
my ($second) = create_webhook($node, 'R', "$base/second", '{member.joined}');
sql(q{INSERT INTO members VALUES (1001, 'R', 'second')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/second' }, 30),
	'a webhook created in a community the worker holds gets its next event');
# an operator's SQL, not the API: one webhook unsubscribed, the other
# switched off, then an event for each of them and one they never had
sql(qq{UPDATE webhooks.webhooks SET events = '{payment.completed}' WHERE id = '$ok'});
sql(qq{UPDATE webhooks.webhooks SET is_active = false WHERE id = '$second'});
my ($third) = create_webhook($node, 'R', "$base/third", '{member.joined}');
my $ok_seen = scalar(at('/ok'));
sql(q{INSERT INTO members VALUES (1002, 'R', 'third')});
sql(q{SELECT webhooks.emit('R', 'payment.completed', '{"p": 1}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/third' }, 30),
	'after changes made by SQL, the next event goes to the new webhook');
ok(wait_for_requests($recv, $ok_seen + 1, sub { $_[0]{path} eq '/ok' }, 30),
	'and the event type the changed webhook now has goes to it');
ok(position_past_all(), 'both events are read and recorded');
my @since = (at('/ok'))[$ok_seen .. scalar(at('/ok')) - 1];
is(join(',', map { JSON::PP::decode_json($_->{body})->{type} } @since),
	'payment.completed', 'and only that: not the type it was unsubscribed from');
is(scalar(at('/second')), 1, 'nor anything the switched-off webhook');

# A filter that comes to NULL (a strict path, its key missing) is no
# match, and stops no one's reading: one failing statement would stop it
# for every community.
sql(q{SELECT webhooks.webhook_create('N', '} . "$base/strict" . q{', '{member.joined}',
      filter => 'strict $.customer')});
sql(q{SELECT webhooks.emit('N', 'member.joined', '{"other": 1}')});
sql(q{SELECT webhooks.emit('N', 'member.joined', '{"customer": 7}')});
my $third_seen = scalar(at('/third'));
sql(q{INSERT INTO members VALUES (1003, 'R', 'after the strict filter')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/strict' }, 30),
	'a strict filter matches a payload with its key');
ok(wait_for_requests($recv, $third_seen + 1, sub { $_[0]{path} eq '/third' }, 30),
	'and reading goes on for everyone');
ok(position_past_all(), 'all of it read and recorded');
is(scalar(at('/strict')), 1, 'the payload without the key is no match');

stop_receiver($recv);
$node->stop('immediate');
done_testing();
