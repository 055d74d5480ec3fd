# A reload that tightens what may be connected to applies to connections
# the worker already keeps alive (issue 10): turning the SSRF guard on,
# or http off, must not leave a warm connection to a blocked address in
# use.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;

my $node = new_node('guard_reload');
my $recv = start_receiver();
my $base = $recv->{base};

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Change a setting for the cluster and wait until the worker has it: the
# postmaster signals the worker, which reloads when its latch is set.
sub set_and_reload
{
	my ($name, $value) = @_;
	sql("ALTER SYSTEM SET $name = '$value'");
	sql('SELECT pg_reload_conf()');
	ok($node->poll_query_until('postgres', "SHOW $name", $value),
		"$name is now $value");
}

my ($w) = create_webhook($node, 'G', "$base/warm", '{member.joined}');
# Two deliveries, one after the other: the second reuses the connection.
for my $n (1 .. 2)
{
	sql(qq{SELECT webhooks.emit('G', 'member.joined', '{"n": $n}')});
	ok(wait_for_requests($recv, $n, sub { $_[0]{path} eq '/warm' }, 30),
		"delivery $n over the allowed loopback connection");
}
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM webhooks.deliveries}), 'both recorded');

set_and_reload('webhooks.allow_private_addresses', 'off');
# the worker reloads as soon as its latch is set; the emit's commit sets
# it again, and the request is made after the reload in the same loop
sql(q{SELECT webhooks.emit('G', 'member.joined', '{"n": 3}')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM webhooks.delivery_attempts
	WHERE error LIKE '%blocked%'}),
	'the next attempt is refused by the guard');
is(scalar(grep { $_->{path} eq '/warm' } requests($recv)), 2,
	'no request reached the receiver over the kept-alive connection');
like(sql(q{SELECT error FROM webhooks.delivery_attempts
	WHERE error IS NOT NULL ORDER BY created_at DESC LIMIT 1}),
	qr/connection to 127\.0\.0\.1 blocked: a loopback address/,
	'the log says which address was blocked and why');

# And back: loopback allowed again, the retry goes through.
set_and_reload('webhooks.allow_private_addresses', 'on');
ok(wait_for_requests($recv, 3, sub { $_[0]{path} eq '/warm' }, 30),
	'after turning the guard off again, the retry is delivered');

stop_receiver($recv);
$node->stop;
done_testing();
