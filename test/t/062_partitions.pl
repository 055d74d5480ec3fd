# Retention by partitions (issue 8): the worker makes the coming days'
# partitions of the events and the attempt log, so what emit() writes goes
# to its day's partition, and drops whole days once they are older than
# webhooks.log_retention, with the queue's deliveries of those events.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_node('partitions');
sub sql { return $node->safe_psql('postgres', $_[0]); }

sub partitions
{
	my ($table) = @_;
	return sql(qq{SELECT string_agg(c.relname, ',' ORDER BY c.relname)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'webhooks.$table'::regclass});
}

my @days = split /\n/, sql(q{SELECT to_char(d, 'YYYYMMDD') FROM generate_series(
	date_trunc('day', now() AT TIME ZONE 'UTC'),
	date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2 days', '1 day') d});
for my $table (qw(events delivery_attempts))
{
	ok($node->poll_query_until('postgres', qq{SELECT count(*) = 3 FROM pg_class
		WHERE relname IN (} . join(',', map { "'${table}_p$_'" } @days) . q{)}),
		"$table: partitions for today and the next two days");
	like(partitions($table), qr/${table}_default/, "$table: and a default partition");
}

# emit() writes to today's partition, not the default one.
sql(q{SELECT webhooks.emit('P', 'member.joined', '{}')});
is(sql(q{SELECT tableoid::regclass FROM webhooks.events}), "webhooks.events_p$days[0]",
	'an event lands in its day\'s partition');

# Days past the retention are dropped whole: two old days, with an event,
# its attempt and a failed delivery each, are gone after the worker's next
# maintenance (at its start), and today's stay.
for my $table (qw(events delivery_attempts))
{
	for my $day ('2020-01-01', '2020-01-02')
	{
		(my $name = $day) =~ s/-//g;
		sql(qq{CREATE TABLE webhooks.${table}_p$name (LIKE webhooks.$table INCLUDING DEFAULTS);
			ALTER TABLE webhooks.$table ATTACH PARTITION webhooks.${table}_p$name
			FOR VALUES FROM ('$day 00:00+00') TO ('$day 00:00+00'::timestamptz + interval '1 day')});
	}
}
sql(q{INSERT INTO webhooks.events (id, type, community_id, payload, created_at, txid)
	VALUES (gen_random_uuid(), 'member.joined', 'P', '{}', '2020-01-01 12:00+00', '1'),
	       (gen_random_uuid(), 'member.joined', 'P', '{}', '2020-01-02 12:00+00', '1')});
sql(q{INSERT INTO webhooks.delivery_attempts (webhook_id, event_id, event, attempt, created_at)
	SELECT gen_random_uuid(), id, type, 1, created_at FROM webhooks.events
	WHERE created_at < '2021-01-01'});
sql(q{INSERT INTO webhooks.deliveries (webhook_id, event_id, event, community_id, emitted_at, event_txid, state)
	SELECT gen_random_uuid(), id, type, community_id, created_at, txid, 'failed' FROM webhooks.events
	WHERE created_at < '2021-01-01'});
is(sql(q{SELECT count(*) FROM webhooks.events}), '3', 'three events, two of them old');

my $offset = -s $node->logfile;
my $pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
sql("SELECT pg_terminate_backend($pid)");
$node->wait_for_log(qr/dropped partition webhooks\.delivery_attempts_p20200102/, $offset);
for my $table (qw(events delivery_attempts))
{
	unlike(partitions($table), qr/_p2020/, "$table: the old days' partitions are dropped");
}
is(sql(q{SELECT count(*) FROM webhooks.events}), '1', 'today\'s event stays');
is(sql(q{SELECT count(*) FROM webhooks.deliveries WHERE emitted_at < '2021-01-01'}), '0',
	'deliveries of dropped events are gone too');

my $log = slurp_file($node->logfile);
unlike($log, qr/ERROR/, 'no errors in the server log');
$node->stop;
done_testing();
