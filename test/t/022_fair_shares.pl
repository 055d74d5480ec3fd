# Fair shares between communities (issue 10): one community whose
# endpoints never answer may fill only its share of the worker's requests,
# so another community's event is sent at once instead of waiting for the
# hanging requests to time out.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;
use Time::HiRes qw(time);

# 64 requests in all, 16 per webhook: four hanging webhooks of one
# community could hold every one of them for the whole timeout.
my $node = new_node('fair', q{
webhooks.max_concurrent_requests = 64
webhooks.max_requests_per_endpoint = 16
webhooks.timeout = '30s'
});
my $recv = start_receiver();
my $base = $recv->{base};
sub sql { return $node->safe_psql('postgres', $_[0]); }

for my $i (1 .. 4)
{
	create_webhook($node, 'dead', "$base/hang?w=$i", '{member.joined}');
}
my ($ok_id) = create_webhook($node, 'alive', "$base/alive", '{member.joined}');
sql(q{SELECT count(webhooks.emit('dead', 'member.joined', jsonb_build_object('n', g)))
      FROM generate_series(1, 200) g});
ok(wait_until(sub { scalar(grep { $_->{path} =~ m{^/hang} } requests($recv)) >= 32 },
		'the dead community\'s requests', 30),
	'the dead community\'s requests hang at the receiver');
my $hanging = grep { $_->{path} =~ m{^/hang} } requests($recv);
note("$hanging requests of the dead community are hanging");
cmp_ok($hanging, '<=', 48, 'it holds no more than its share of the 64 requests');

my $t0 = time();
sql(q{SELECT webhooks.emit('alive', 'member.joined', '{"alive": true}')});
ok(wait_for_requests($recv, 1, sub { $_[0]{path} eq '/alive' }, 25),
	'another community\'s event is delivered');
my $delay = time() - $t0;
note(sprintf('the other community\'s event arrived after %.3f s', $delay));
cmp_ok($delay, '<', 5, 'at once, not after the hanging requests time out (30 s)');

stop_receiver($recv);
$node->stop('immediate');
done_testing();
