# The delivery engine, happy path: fan-out to the right endpoints, signed
# with each webhook's own secret; transactional emit (rollback delivers
# nothing, nothing leaves before commit, two-phase commit); latency on an
# idle system; triggers.  (Isolation of slow endpoints: 021_isolation.pl.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

my $node = new_node('delivery', "max_prepared_transactions = 5\n");
my $recv = start_receiver();
my $base = $recv->{base};

# Requests whose path starts with $prefix.
sub reqs_at
{
	my ($prefix) = @_;
	return grep { index($_->{path}, $prefix) == 0 } requests($recv);
}

sub body { return decode_json($_[0]{body}); }

# ---------------------------------------------------------------------
# Fan-out: only the active, subscribed webhooks of the community.
my %hook;
for my $h (
	[ 'a1', 'A', '{member.joined}', 'true' ],
	[ 'a2', 'A', '{member.joined,payment.completed}', 'true' ],
	[ 'a3', 'A', '{payment.completed}', 'true' ],
	[ 'a4', 'A', '{member.joined}', 'false' ],
	[ 'b1', 'B', '{member.joined}', 'true' ])
{
	my ($name, $community, $events, $active) = @$h;
	my ($id, $secret) = create_webhook($node, $community,
		"$base/fan/$name", $events, $active);
	$hook{$name} = { id => $id, secret => $secret };
}
isnt($hook{a1}{secret}, $hook{a2}{secret}, 'each webhook has its own secret');

my $t0 = time();
my $eid = $node->safe_psql('postgres',
	q{SELECT webhooks.emit('A', 'member.joined', '{"user": {"id": 7, "name": "Ann"}}')});
like($eid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
	'emit returns an event id');

my @fan = wait_for_requests($recv, 2, sub { $_[0]{path} =~ m{^/fan/} }, 30);
# Give a wrongly addressed delivery a bounded chance to show up too.
wait_until(sub { reqs_at('/fan/') > 2 }, 'no third fan-out request', 1.5);
@fan = sort { $a->{path} cmp $b->{path} } reqs_at('/fan/');
is_deeply([ map { $_->{path} } @fan ], [ '/fan/a1', '/fan/a2' ],
	'exactly the two active subscribed webhooks of community A got it');

for my $r (@fan)
{
	my ($name) = $r->{path} =~ m{/fan/(\w+)};
	my $other = $name eq 'a1' ? 'a2' : 'a1';
	my $j = body($r);
	is($r->{method}, 'POST', "$name: POST");
	like($r->{headers}{'content-type'}, qr{^application/json}, "$name: content-type");
	is($r->{headers}{'webhook-id'}, $eid, "$name: webhook-id is the event id");
	ok(verify_signature($hook{$name}{secret}, $r), "$name: signed with its own secret");
	ok(!verify_signature($hook{$other}{secret}, $r),
		"$name: does not verify with the other webhook's secret");
	like($r->{headers}{'webhook-timestamp'}, qr/^\d+$/, "$name: webhook-timestamp");
	ok(abs($r->{headers}{'webhook-timestamp'} - $t0) < 60,
		"$name: webhook-timestamp is now");
	is($j->{id}, $eid, "$name: body.id");
	is($j->{type}, 'member.joined', "$name: body.type");
	is($j->{community_id}, 'A', "$name: body.community_id");
	is_deeply($j->{data}, { user => { id => 7, name => 'Ann' } }, "$name: body.data");
	like($j->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$/,
		"$name: body.timestamp is ISO-8601 UTC");
}

# A payment reaches a2 and a3 but not a1.
my $pid = $node->safe_psql('postgres',
	q{SELECT webhooks.emit('A', 'payment.completed', '{"amount": 5}')});
wait_for_requests($recv, 4, sub { $_[0]{path} =~ m{^/fan/} }, 30);
wait_until(sub { reqs_at('/fan/') > 4 }, 'no fifth fan-out request', 1);
is_deeply(
	[ sort map { $_->{path} } grep { $_->{headers}{'webhook-id'} eq $pid } reqs_at('/fan/') ],
	[ '/fan/a2', '/fan/a3' ],
	'payment.completed reaches only its subscribers');

# ---------------------------------------------------------------------
# Rollback delivers nothing.
my ($pw) = create_webhook($node, 'P', "$base/tx", '{member.joined}');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT webhooks.emit('P', 'member.joined', '{"tag": "rolled-back"}');
	ROLLBACK;
	SELECT webhooks.emit('P', 'member.joined', '{"tag": "after-rollback"}');});
ok(wait_for_requests($recv, 1, sub { $_[0]{body} =~ /after-rollback/ }, 30),
	'an event committed after the rollback arrives');
wait_until(sub { grep { $_->{body} =~ /rolled-back/ } requests($recv) },
	'the rolled-back event (must not come)', 1.5);
is(scalar(grep { $_->{body} =~ /rolled-back/ } requests($recv)), 0,
	'a rolled-back emit delivers nothing');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM webhooks.events WHERE payload->>'tag' = 'rolled-back'}),
	'0', 'and leaves no event row');

# ---------------------------------------------------------------------
# Nothing leaves before commit.
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
my $open_eid = $bg->query_safe(
	q{SELECT webhooks.emit('P', 'member.joined', '{"tag": "pre-commit"}')});
chomp $open_eid;
$bg->query_safe(q{SELECT webhooks.emit('P', 'member.joined', '{"tag": "pre-commit-2"}')});
wait_until(sub { grep { $_->{body} =~ /pre-commit/ } requests($recv) },
	'an uncommitted event (must not come)', 1);
is(scalar(grep { $_->{body} =~ /pre-commit/ } requests($recv)), 0,
	'nothing is sent while the emitting transaction is open');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.events WHERE id = '$open_eid'"),
	'0', 'no event row is visible to other sessions');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.deliveries WHERE event_id = '$open_eid'"),
	'0', 'and no delivery was queued for it');
my $t_commit = time();
$bg->query_safe('COMMIT');
my @pc = wait_for_requests($recv, 2, sub { $_[0]{body} =~ /pre-commit/ }, 30);
is(scalar @pc, 2, 'both events arrive after COMMIT');
is(scalar(grep { $_->{headers}{'webhook-id'} eq $open_eid } @pc), 1,
	'with the event id emit returned inside the transaction');
my ($first_pc) = sort { $a <=> $b } map { $_->{time} } @pc;
ok($first_pc - $t_commit < 5, 'arrived within 5 s of COMMIT');
note(sprintf('commit to arrival (background session): %.3f s', $first_pc - $t_commit));
$bg->quit;

# ---------------------------------------------------------------------
# Latency on an idle system (a sanity bound, not a benchmark).
my @lat;
for my $i (1 .. 3)
{
	my $t = time();
	$node->safe_psql('postgres',
		"SELECT webhooks.emit('P', 'member.joined', '{\"tag\": \"latency-$i\"}')");
	my @l = wait_for_requests($recv, 1, sub { $_[0]{body} =~ /"latency-$i"/ }, 30);
	push @lat, @l ? $l[0]{time} - $t : 999;
}
ok((grep { $_ < 5 } @lat) == 3, 'each event arrives within 5 s of an autocommit emit');
diag(sprintf('emit-to-arrival latency, idle: %s s', join(', ', map { sprintf('%.3f', $_) } @lat)));

# ---------------------------------------------------------------------
# Two-phase commit: the event leaves at COMMIT PREPARED, and not before.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT webhooks.emit('P', 'member.joined', '{"tag": "two-phase"}');
	PREPARE TRANSACTION 'wh2pc';});
wait_until(sub { grep { $_->{body} =~ /two-phase/ } requests($recv) },
	'a prepared, uncommitted event (must not come)', 1);
is(scalar(grep { $_->{body} =~ /two-phase/ } requests($recv)), 0,
	'nothing is sent for a prepared transaction');
my $t_2pc = time();
$node->safe_psql('postgres', q{COMMIT PREPARED 'wh2pc'});
my @tp = wait_for_requests($recv, 1, sub { $_[0]{body} =~ /two-phase/ }, 10);
ok(@tp && $tp[0]{time} - $t_2pc < 5, 'an event committed by COMMIT PREPARED arrives within 5 s')
  or diag('COMMIT PREPARED does not wake the worker; the event waits for the next emit');

# ---------------------------------------------------------------------
# Triggers: INSERT, UPDATE and DELETE deliver the row (OLD for DELETE).
my ($tw, $tsecret) = create_webhook($node, 'T', "$base/trig",
	'{member.joined,payment.completed}');
$node->safe_psql('postgres', q{
	CREATE TABLE members (id int PRIMARY KEY, community_id text NOT NULL, name text);
	CREATE TRIGGER members_hook AFTER INSERT OR UPDATE OR DELETE ON members
	  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
	CREATE TABLE payments (id int PRIMARY KEY, org text NOT NULL, amount int);
	CREATE TRIGGER payments_hook AFTER INSERT ON payments
	  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('payment.completed', 'org');});

my $n_trig = 0;
for my $step (
	[ q{INSERT INTO members VALUES (1, 'T', 'ann')}, 'member.joined',
		{ id => 1, community_id => 'T', name => 'ann' }, 'INSERT' ],
	[ q{UPDATE members SET name = 'bob' WHERE id = 1}, 'member.joined',
		{ id => 1, community_id => 'T', name => 'bob' }, 'UPDATE (new row)' ],
	[ q{DELETE FROM members WHERE id = 1}, 'member.joined',
		{ id => 1, community_id => 'T', name => 'bob' }, 'DELETE (old row)' ],
	[ q{INSERT INTO payments VALUES (9, 'T', 1250)}, 'payment.completed',
		{ id => 9, org => 'T', amount => 1250 }, 'payments via org column' ])
{
	my ($sql, $type, $data, $what) = @$step;
	$node->safe_psql('postgres', $sql);
	$n_trig++;
	my @t = wait_for_requests($recv, $n_trig, sub { $_[0]{path} eq '/trig' }, 30);
	my ($last) = sort { $b->{time} <=> $a->{time} } @t;
	is(scalar @t, $n_trig, "trigger $what: delivered");
	next unless $last;
	my $j = body($last);
	is($j->{type}, $type, "trigger $what: type");
	is($j->{community_id}, 'T', "trigger $what: community_id");
	is_deeply($j->{data}, $data, "trigger $what: the row is the data");
	ok(verify_signature($tsecret, $last), "trigger $what: signed");
}
$node->safe_psql('postgres', q{
	BEGIN; INSERT INTO members VALUES (2, 'T', 'rolled'); ROLLBACK;
	INSERT INTO members VALUES (3, 'T', 'kept');});
wait_for_requests($recv, 1, sub { $_[0]{path} eq '/trig' && $_[0]{body} =~ /"kept"/ }, 30);
is(scalar(grep { $_->{body} =~ /"rolled"/ } requests($recv)), 0,
	'a rolled-back trigger emit delivers nothing');

# A burst: hundreds of requests at once, on reused connections and handles,
# and not one failed attempt to a healthy endpoint.
my ($bid) = create_webhook($node, 'burst', "$recv->{base}/burst", '{member.joined}');
$node->safe_psql('postgres', q{
	SELECT count(webhooks.emit('burst', 'member.joined', jsonb_build_object('n', g)))
	FROM generate_series(1, 600) g});
my @burst = wait_for_requests($recv, 600, sub { $_[0]{path} eq '/burst' }, 60);
my %burst_ids = map { $_->{headers}{'webhook-id'} => 1 } @burst;
is(scalar(keys %burst_ids), 600, 'burst: all 600 events arrived');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM webhooks.deliveries WHERE community_id = 'burst'");
is($node->safe_psql('postgres',
	'SELECT count(*) FROM webhooks.delivery_attempts WHERE error IS NOT NULL'),
	'0', 'no attempt to a healthy endpoint failed');

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/ERROR:|PANIC:|terminated by signal/, 'no errors in the server log');

stop_receiver($recv);
$node->stop;
done_testing();
