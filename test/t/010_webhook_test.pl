# webhook_test(): one real HTTPS delivery from the calling backend.
#
# What arrives at the receiver (Standard Webhooks headers, envelope, a
# signature checked by independent code), how answers map to
# (status_code, response_time_ms, error), the attempt log, timeouts,
# refused and dropped connections, redirects (not followed), an untrusted
# certificate, a 200 MB answer (read and dropped), inactive, foreign and
# deleted webhooks.  The SSRF guard, http:// and cancellation are in 011.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);

my $node = new_node('ping');
my $recv = start_receiver();
my %pinged;    # webhook id => the rows webhook_test returned, oldest first

# Run webhook_test after optional SET statements; returns its row as a
# hash (status_code, response_time_ms, error) plus rc, stderr and the
# wall time the call took, measured here.
sub ping
{
	my ($community, $id, $pre) = @_;
	$pre //= '';
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql('postgres',
		"$pre SELECT row_to_json(t) FROM webhooks.webhook_test('$community', '$id') t"
	);
	my %res = (rc => $rc, stderr => $err, elapsed => time() - $t0);
	if ($rc == 0 && $out ne '')
	{
		%res = (%res, %{ decode_json($out) });
		push @{ $pinged{$id} }, \%res;
	}
	return \%res;
}

# Point the webhook at another path.  A direct UPDATE, not webhook_update,
# which this file does not test (and which must not hide what it does).
sub set_url
{
	my ($id, $url) = @_;
	$node->safe_psql('postgres',
		"UPDATE webhooks.webhooks SET url = '$url' WHERE id = '$id'");
}

# --- 1. a successful ping and what the receiver got ---------------------
my ($id, $secret) =
  create_webhook($node, 'c1', "$recv->{base}/status/200", '{member.joined}');
is($node->safe_psql('postgres', "SELECT webhooks.webhook_secret('c1', '$id')"),
	$secret, 'webhook_secret returns the secret from webhook_create');

# In a session with a time zone far from UTC: the body's timestamp must
# still be UTC.
my $sent_at = time();
my $r = ping('c1', $id, "SET timezone = 'Asia/Kolkata';");
is($r->{rc}, 0, 'webhook_test runs') or diag($r->{stderr});
is($r->{status_code}, 200, 'status_code 200');
ok(defined $r->{response_time_ms} && $r->{response_time_ms} >= 0,
	'response_time_ms >= 0');
is($r->{error}, undef, 'error is NULL on success');

my @reqs = requests($recv);
is(scalar @reqs, 1, 'the receiver got exactly one request');
my $req = $reqs[0];
my $h = $req->{headers};
is($req->{method}, 'POST', 'sent as a POST');
is($req->{path}, '/status/200', 'to the webhook\'s path');
like($h->{'content-type'}, qr{^application/json\b}, 'content-type: application/json');
like($h->{'webhook-id'}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
	'webhook-id is a uuid');
like($h->{'webhook-timestamp'}, qr/^\d+$/, 'webhook-timestamp is unix seconds');
ok(abs(($h->{'webhook-timestamp'} // 0) - $sent_at) < 10,
	'webhook-timestamp is within a few seconds of now');
like($h->{'webhook-signature'}, qr{^v1,[A-Za-z0-9+/]{43}=$}, 'webhook-signature is v1,<base64>');
like($h->{'user-agent'}, qr/webhooks/i, 'user-agent names webhooks');

my $body = eval { decode_json($req->{body}) };
ok($body && ref $body eq 'HASH', 'the body is a JSON object') or diag($req->{body});
$body //= {};
is_deeply([ sort keys %$body ], [qw(community_id data id timestamp type)],
	'body keys: id, type, timestamp, community_id, data');
is($body->{id}, $h->{'webhook-id'}, 'body id = webhook-id header');
is($body->{type}, 'test.ping', 'type is test.ping');
like($body->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/,
	'timestamp is ISO-8601 UTC');
my @ts = ($body->{timestamp} // '') =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)/;
ok(@ts && abs(timegm($ts[5], $ts[4], $ts[3], $ts[2], $ts[1] - 1, $ts[0]) - $sent_at) < 10,
	'timestamp is now, in UTC (session time zone Asia/Kolkata)')
  or diag("timestamp $body->{timestamp}");
is($body->{community_id}, 'c1', 'community_id is the webhook\'s');
is(ref $body->{data}, 'HASH', 'data is an object');

ok(verify_signature($secret, $req), 'signature verifies with the secret');
my %tampered = (%$req, body => $req->{body} . ' ');
ok(!verify_signature($secret, \%tampered), 'a tampered body does not verify');
my %retimed = (%$req, headers => { %$h, 'webhook-timestamp' => $h->{'webhook-timestamp'} + 1 });
ok(!verify_signature($secret, \%retimed), 'a changed timestamp does not verify');

is($node->safe_psql('postgres',
	"SELECT event_id FROM webhooks.webhook_logs('c1', '$id', 1, 1)"),
	$h->{'webhook-id'}, 'the logged attempt has event_id = webhook-id');

# --- 2. status codes ------------------------------------------------------
for my $code (201, 204)
{
	set_url($id, "$recv->{base}/status/$code");
	$r = ping('c1', $id);
	is($r->{status_code}, $code, "$code: status_code");
	is($r->{error}, undef, "$code is a success: error NULL");
}
for my $code (400, 404, 500, 503)
{
	set_url($id, "$recv->{base}/status/$code");
	$r = ping('c1', $id);
	is($r->{status_code}, $code, "$code: status_code");
	ok(defined $r->{error} && $r->{error} ne '', "$code is a failure: error set")
	  and note("error: $r->{error}");
}

# --- 4. slow endpoint; webhooks.timeout -----------------------------------
set_url($id, "$recv->{base}/delay/500");
$r = ping('c1', $id);
is($r->{status_code}, 200, '/delay/500: 200');
cmp_ok($r->{response_time_ms} // -1, '>=', 500, '/delay/500: response_time_ms >= 500');
is($r->{error}, undef, '/delay/500: no error');

set_url($id, "$recv->{base}/delay/3000");
$r = ping('c1', $id, "SET webhooks.timeout = '1s';");
is($r->{rc}, 0, 'timed-out ping returns a row') or diag($r->{stderr});
is($r->{status_code}, undef, 'timeout: status_code NULL');
like($r->{error}, qr/timed? ?out/i, 'timeout: error says timed out');
cmp_ok($r->{elapsed}, '<', 2.5, 'timeout: the call returns in < 2.5 s');
cmp_ok($r->{elapsed}, '>=', 0.9, 'timeout: ... but not before the 1 s limit');

# --- 5. refused port --------------------------------------------------------
my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Proto => 'tcp', Listen => 1, ReuseAddr => 0) or die "bind: $!";
my $closed_port = $sock->sockport;
close $sock;
set_url($id, "https://127.0.0.1:$closed_port/hook");
$r = ping('c1', $id);
is($r->{status_code}, undef, 'refused: status_code NULL');
like($r->{error}, qr/refused|couldn.t connect|failed to connect/i,
	'refused: error says the connection failed');
cmp_ok($r->{elapsed}, '<', 2.5, 'refused: fails at once');

# --- 6. dropped connection; redirect not followed -------------------------
set_url($id, "$recv->{base}/close");
$r = ping('c1', $id);
is($r->{status_code}, undef, '/close: status_code NULL');
ok(defined $r->{error} && $r->{error} ne '', '/close: error set')
  and note("error: $r->{error}");

my $before = () = requests($recv);
set_url($id, "$recv->{base}/redirect");
$r = ping('c1', $id);
is($r->{status_code}, 302, '/redirect: status_code 302');
ok(defined $r->{error} && $r->{error} ne '', '/redirect: 302 is a failure');
usleep(300_000);
my @all = requests($recv);
my @after = @all[ $before .. $#all ];
is_deeply([ map { $_->{path} } @after ], ['/redirect'],
	'/redirect: the Location (/status/200) was not followed');

# --- 7. untrusted certificate ---------------------------------------------
my $rogue = start_receiver(rogue => 1);
set_url($id, "$rogue->{base}/status/200");
$r = ping('c1', $id);
is($r->{status_code}, undef, 'rogue certificate: status_code NULL');
like($r->{error}, qr/certificate|SSL/i, 'rogue certificate: error names the certificate');
usleep(200_000);
my @rogue_reqs = requests($rogue);
is(scalar @rogue_reqs, 0, 'rogue certificate: no HTTP request was sent');
stop_receiver($rogue);

# --- 11. a 200 MB answer is read and dropped, not kept ----------------------
set_url($id, "$recv->{base}/big");
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
sub peak_kb
{
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	my ($kb) = map { /^VmHWM:\s+(\d+)/ ? $1 : () } <$fh>;
	return $kb;
}
$bg->query_safe("SET webhooks.timeout = '30s'");
my $peak_before = peak_kb();
my $big = decode_json($bg->query_safe(
	"SELECT row_to_json(t) FROM webhooks.webhook_test('c1', '$id') t"));
my $peak_after = peak_kb();
push @{ $pinged{$id} }, $big;
is($big->{status_code}, 200, '/big: 200 MB body read through, 200');
is($big->{error}, undef, '/big: success');
SKIP:
{
	skip 'cannot read the backend\'s /proc status', 1
	  unless defined $peak_before && defined $peak_after;
	cmp_ok($peak_after - $peak_before, '<', 64 * 1024,
		'/big: backend peak memory grew by < 64 MB')
	  or diag("VmHWM $peak_before kB -> $peak_after kB");
}
is($bg->query_safe('SELECT 1'), '1', 'the backend is still usable');
$bg->quit;

# --- 3. every ping is in webhook_logs, newest first, as returned ----------
my $fmt = sub {
	my ($row) = @_;
	return join(':', 'test.ping', map { $_ // '-' } @$row{qw(status_code response_time_ms error)});
};
my $logs = $node->safe_psql('postgres', qq{
	SELECT event || ':' || coalesce(status_code::text, '-') || ':'
	       || coalesce(response_time_ms::text, '-') || ':' || coalesce(error, '-')
	FROM webhooks.webhook_logs('c1', '$id', 1, 50)});
is($logs, join("\n", map { $fmt->($_) } reverse @{ $pinged{$id} }),
	'webhook_logs: each of the ' . scalar(@{ $pinged{$id} })
	  . ' pings as test.ping with what it returned, newest first');

# --- 12. inactive, foreign and deleted webhooks -----------------------------
my ($idle) = create_webhook($node, 'c1', "$recv->{base}/status/200?inactive",
	'{member.joined}', 'false');
$r = ping('c1', $idle);
is($r->{status_code}, 200, 'webhook_test works on an inactive webhook');
is(scalar(grep { $_->{path} eq '/status/200?inactive' } requests($recv)), 1,
	'... and the inactive webhook got the ping');

my ($foreign) = create_webhook($node, 'c2', "$recv->{base}/status/200?foreign",
	'{member.joined}');
my ($state, $msg) = fails_with($node,
	"SELECT * FROM webhooks.webhook_test('c1', '$foreign')");
is($state, 'P0002', 'another community\'s webhook: SQLSTATE P0002');
like($msg, qr/not found/i, '... message says not found');
is(scalar(grep { $_->{path} =~ /foreign/ } requests($recv)), 0,
	'... and nothing was sent to it');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.delivery_attempts WHERE webhook_id = '$foreign'"),
	'0', '... and nothing was logged for it');

$node->safe_psql('postgres', "SELECT webhooks.webhook_delete('c1', '$idle')");
($state, $msg) = fails_with($node, "SELECT * FROM webhooks.webhook_test('c1', '$idle')");
is($state, 'P0002', 'deleted webhook: SQLSTATE P0002');
like($msg, qr/not found/i, '... message says not found');

stop_receiver($recv);
$node->stop;
done_testing();
