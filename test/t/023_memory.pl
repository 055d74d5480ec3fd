# The worker's memory is bounded in bytes (issue 10): emit refuses a
# payload over webhooks.max_payload_size, claims stop short of
# webhooks.max_bytes_in_flight, and an event's body is held once however
# many webhooks it goes to.  30 events of 2 MB to two webhooks that never
# answer: 1.0 held every body of every delivery (120 MB and more).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use Test::More;

my $node = new_node('memory', q{
webhooks.max_payload_size = '4MB'
webhooks.max_bytes_in_flight = '8MB'
webhooks.timeout = '60s'
});
my $recv = start_receiver();
my $base = $recv->{base};
sub sql { return $node->safe_psql('postgres', $_[0]); }

# Requests to /hang, counted in the receiver's log without decoding its
# 2 MB bodies.
sub hanging
{
	open(my $fh, '<', $recv->{log}) or return 0;
	my $n = grep { m{"path": ?"/hang} } <$fh>;
	close $fh;
	return $n;
}

my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT webhooks.emit('M', 'member.joined', jsonb_build_object('blob', repeat('x', 5000000)))});
like($err, qr/event payload is too large/, 'a 5 MB payload is refused at emit (limit 4 MB)');

create_webhook($node, 'M', "$base/hang?a", '{member.joined}');
create_webhook($node, 'M', "$base/hang?b", '{member.joined}');
sql(q{SELECT count(webhooks.emit('M', 'member.joined', jsonb_build_object('n', g, 'blob', repeat('x', 2000000))))
      FROM generate_series(1, 30) g});
ok(wait_until(sub { hanging() >= 2 },
		'hanging requests', 30),
	'requests of 2 MB hang at the receiver');
# give the worker time to claim all it would
sleep(3);
my $hanging = hanging();
note("$hanging requests of 2 MB in flight, of 60 due");
cmp_ok($hanging, '<=', 12, 'claims stopped short of max_bytes_in_flight (8 MB, events held once)');

my $pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhooks worker'});
open(my $fh, '<', "/proc/$pid/status") or die "cannot read /proc/$pid/status: $!";
my ($anon) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
close $fh;
note(sprintf('worker private memory (RssAnon): %.1f MB', $anon / 1024));
cmp_ok($anon / 1024, '<', 64, 'the worker\'s private memory stays under 64 MB');

stop_receiver($recv);
$node->stop('immediate');
done_testing();
