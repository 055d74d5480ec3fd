# A first delivery end to end: webhook_test and one emitted event.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;

my $node = new_node('smoke');
my $recv = start_receiver();
my ($id, $secret) = create_webhook($node, 'c1', "$recv->{base}/hook",
	'{member.joined}');

my $test = $node->safe_psql('postgres',
	"SELECT status_code || ',' || coalesce(error, '') FROM webhooks.webhook_test('c1', '$id')");
is($test, '200,', 'webhook_test gets 200');

$node->safe_psql('postgres',
	q{SELECT webhooks.emit('c1', 'member.joined', '{"n": 1}')});
my @got = wait_for_requests($recv, 1,
	sub { $_[0]{body} =~ /member\.joined/ }, 30);
is(scalar @got, 1, 'emitted event delivered');
ok(verify_signature($secret, $got[0]), 'signature verifies');

stop_receiver($recv);
$node->stop;
done_testing();
