# webhook_test() and its guards: the SSRF guard
# (webhooks.allow_private_addresses), http:// only while webhooks.allow_http
# is on, and cancellation (statement_timeout, pg_cancel_backend) that ends
# the wait at once and leaks no descriptors.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use WebhooksTest;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Run webhook_test after optional SET statements; returns its row as a
# hash (status_code, response_time_ms, error) plus rc, stderr and the
# wall time the call took.
sub ping
{
	my ($node, $community, $id, $pre) = @_;
	$pre //= '';
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql('postgres',
		"$pre SELECT row_to_json(t) FROM webhooks.webhook_test('$community', '$id') t"
	);
	my %res = (rc => $rc, stderr => $err, elapsed => time() - $t0);
	%res = (%res, %{ decode_json($out) }) if $rc == 0 && $out ne '';
	return \%res;
}

my $recv = start_receiver();
my $port = $recv->{port};

# --- 8. the SSRF guard ------------------------------------------------------
my $guard = new_node('guard', "webhooks.allow_private_addresses = off\n");
is($guard->safe_psql('postgres', 'SHOW webhooks.allow_private_addresses'),
	'off', 'guard node: allow_private_addresses is off');

my $loopback_blocked = 0;
for my $url (
	"https://127.0.0.1:$port/status/200?ssrf=v4",
	"https://localhost:$port/status/200?ssrf=name",
	"https://127.0.0.2:$port/status/200?ssrf=v4b",
	"https://[::1]:$port/status/200?ssrf=v6",
	"https://[::ffff:127.0.0.1]:$port/status/200?ssrf=mapped",
	"https://0.0.0.0:$port/status/200?ssrf=any",
	"https://2130706433:$port/status/200?ssrf=decimal")
{
	my ($id) = create_webhook($guard, 'c1', $url, '{member.joined}');
	my $r = ping($guard, 'c1', $id, "SET webhooks.timeout = '2s';");
	is($r->{rc}, 0, "$url: webhook_test returns a row") or diag($r->{stderr});
	is($r->{status_code}, undef, "$url: no status");
	like($r->{error}, qr/blocked/, "$url: error says blocked");
	like($r->{error}, qr/webhooks\.allow_private_addresses/,
		"$url: error names webhooks.allow_private_addresses")
	  and note("error: $r->{error}");
	$loopback_blocked++ if ($r->{error} // '') =~ /blocked/;
}
usleep(200_000);
is(scalar(grep { $_->{path} =~ /ssrf/ } requests($recv)), 0,
	'the receiver got nothing while the guard is on');

# A private address outside the machine: tried only once the guard has
# shown it blocks loopback, so that nothing can leave the machine.
SKIP:
{
	skip 'the guard does not block loopback', 8 unless $loopback_blocked == 7;
	for my $url ('https://10.255.255.1/hook', 'https://169.254.169.254/latest')
	{
		my ($id) = create_webhook($guard, 'c1', $url, '{member.joined}');
		my $r = ping($guard, 'c1', $id, "SET webhooks.timeout = '2s';");
		is($r->{status_code}, undef, "$url: no status");
		like($r->{error}, qr/blocked/, "$url: error says blocked");
		like($r->{error}, qr/webhooks\.allow_private_addresses/,
			"$url: error names the setting");
		cmp_ok($r->{elapsed}, '<', 1.5, "$url: refused before connecting");
	}
}

# A superuser may lift the guard for a session; nobody else may.
my ($v4) = create_webhook($guard, 'c1', "$recv->{base}/status/200?lifted",
	'{member.joined}');
my $r = ping($guard, 'c1', $v4, 'SET webhooks.allow_private_addresses = on;');
is($r->{status_code}, 200, 'superuser SET allow_private_addresses = on: 200');
is($r->{error}, undef, '... no error');
$guard->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA webhooks TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO app;
});
my ($rc, $app_out, $app_err) = $guard->psql('postgres',
	"SELECT error FROM webhooks.webhook_test('c1', '$v4')",
	extra_params => [ '-U', 'app' ]);
like($app_out, qr/blocked/, 'an application role\'s webhook_test is guarded too')
  or diag($app_err);
my ($state) = fails_with($guard,
	"SET webhooks.allow_private_addresses = on;\nSELECT * FROM webhooks.webhook_test('c1', '$v4')",
	extra_params => [ '-U', 'app' ]);
is($state, '42501', 'a non-superuser cannot lift the guard');
($state) = fails_with($guard, "SET webhooks.allow_http = on",
	extra_params => [ '-U', 'app' ]);
is($state, '42501', 'a non-superuser cannot allow http');
$guard->stop;

# --- a node with the harness defaults (private addresses allowed) ----------
my $node = new_node('open');
my ($ok_id) = create_webhook($node, 'c1', "$recv->{base}/status/200?open",
	'{member.joined}');
$r = ping($node, 'c1', $ok_id);
is($r->{status_code}, 200, 'allow_private_addresses on: 127.0.0.1 works');
is($r->{error}, undef, '... no error');

# --- 9. http:// only while webhooks.allow_http is on ------------------------
# A plain-http receiver, started and stopped here by its PID.
my $plain_dir = PostgreSQL::Test::Utils::tempdir('plain');
my $plain_log = "$plain_dir/requests.jsonl";
my $plain_pid = fork();
die "fork failed: $!" unless defined $plain_pid;
if ($plain_pid == 0)
{
	open(STDOUT, '>', "$plain_dir/stdout");
	open(STDERR, '>', "$plain_dir/stderr");
	exec('python3', "$FindBin::RealBin/../receiver.py", '--plain-http',
		'--log', $plain_log, '--port', 0, '--port-file', "$plain_dir/port")
	  or POSIX::_exit(127);
}
END
{
	if ($plain_pid)
	{
		kill 'TERM', $plain_pid;
		waitpid($plain_pid, 0);
	}
}
wait_until(sub { -s "$plain_dir/port" }, 'the plain receiver to listen', 20)
  or BAIL_OUT('plain receiver did not start');
my $plain_port = slurp_file("$plain_dir/port");
chomp $plain_port;
my $plain = { log => $plain_log };
my $http_url = "http://127.0.0.1:$plain_port/status/200";

my $count = "SELECT count(*) FROM webhooks.webhooks";
my $n_before = $node->safe_psql('postgres', $count);
($state, my $msg) = fails_with($node,
	"SELECT * FROM webhooks.webhook_create('c1', '$http_url', '{member.joined}')");
is($state, '22023', 'http:// url refused while allow_http is off (22023)');
like($msg, qr/url/i, '... the message is about the url');
is($node->safe_psql('postgres', $count), $n_before, '... and nothing was created');

my $created = $node->safe_psql('postgres',
	"SET webhooks.allow_http = on;\n"
	  . "SELECT id || '|' || secret FROM webhooks.webhook_create('c1', '$http_url', '{member.joined}')");
my ($http_id, $http_secret) = split /\|/, $created;
like($http_id // '', qr/^[0-9a-f-]{36}$/, 'superuser with allow_http on: http:// url accepted');

$r = ping($node, 'c1', $http_id, 'SET webhooks.allow_http = on;');
is($r->{status_code}, 200, 'webhook_test over http while allowed: 200');
is($r->{error}, undef, '... no error');
my @got = requests($plain);
is(scalar @got, 1, 'the plain receiver got the ping');
ok(@got && verify_signature($http_secret, $got[0]), '... signed');

$r = ping($node, 'c1', $http_id);
is($r->{status_code}, undef, 'http webhook while allow_http is off: not sent');
ok(defined $r->{error} && $r->{error} ne '', '... error set')
  and note("error: $r->{error}");
usleep(200_000);
@got = requests($plain);
is(scalar @got, 1, '... the plain receiver got nothing more');

# --- 10. cancellation ---------------------------------------------------------
my ($hang) = create_webhook($node, 'c1', "$recv->{base}/hang", '{member.joined}');
my $hangs = sub { scalar grep { $_->{path} eq '/hang' } requests($recv) };

my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $bgq = sub {
	my ($sql) = @_;
	$bg->{stderr} = '';
	my $t0 = time();
	my $out = $bg->query($sql);
	return ($out, $bg->{stderr}, time() - $t0);
};
my ($pid) = $bgq->('SELECT pg_backend_pid()');
my $fds = sub {
	opendir(my $dh, "/proc/$pid/fd") or return undef;
	my $n = grep { !/^\.\.?$/ } readdir $dh;
	closedir $dh;
	return $n;
};
# Bounds the wait should a cancel not work; and one call to warm up.
$bgq->("SET webhooks.timeout = '10s'");
my ($out) = $bgq->("SELECT status_code FROM webhooks.webhook_test('c1', '$ok_id')");
is($out, '200', 'session warmed up with one ping');
my $fds_before = $fds->();

$bgq->("SET statement_timeout = '700ms'");
for my $i (1 .. 3)
{
	my ($o, $err, $elapsed) =
	  $bgq->("SELECT * FROM webhooks.webhook_test('c1', '$hang')");
	like($err, qr/canceling statement due to statement timeout/,
		"statement_timeout $i: the call is cancelled");
	cmp_ok($elapsed, '<', 1.5, "statement_timeout $i: within 1.5 s")
	  or diag("took $elapsed s");
}

# A listener that never accepts: the TCP connection is made by the kernel,
# the TLS handshake never completes.  Cancel and webhooks.timeout must
# end that wait too.
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Proto => 'tcp', Listen => 8) or die "bind: $!";
my $silent_port = $silent->sockport;
my ($mute) = create_webhook($node, 'c1', "https://127.0.0.1:$silent_port/",
	'{member.joined}');
my ($o, $err, $took) =
  $bgq->("SELECT * FROM webhooks.webhook_test('c1', '$mute')");
like($err, qr/canceling statement due to statement timeout/,
	'statement_timeout during the TLS handshake: cancelled');
cmp_ok($took, '<', 1.5, '... within 1.5 s') or diag("took $took s");
$bgq->('RESET statement_timeout');
$bgq->("SET webhooks.timeout = '1s'");
($o, $err, $took) = $bgq->(
	"SELECT coalesce(status_code::text, '-') || '|' || error FROM webhooks.webhook_test('c1', '$mute')");
like($o, qr/^-\|.*timed? ?out/i, 'webhooks.timeout covers the TLS handshake')
  or diag("out: $o, stderr: $err");
cmp_ok($took, '<', 2.5, '... and ends the call in < 2.5 s') or diag("took $took s");
$bgq->("SET webhooks.timeout = '10s'");

# pg_cancel_backend from another session, while the request hangs.
my $hangs_before = $hangs->();
$bg->{stderr} = '';
$bg->query_until(qr/started\n/,
	"\\echo started\nSELECT * FROM webhooks.webhook_test('c1', '$hang');\n");
ok(wait_until(sub { $hangs->() > $hangs_before }, 'the /hang request', 20),
	'the request reached the receiver');
ok( $node->poll_query_until('postgres', qq{
		SELECT wait_event_type = 'Extension' FROM pg_stat_activity
		WHERE query LIKE '%webhook_test%' AND state = 'active'
		AND pid <> pg_backend_pid()}),
	'the call waits on its latch and sockets (wait_event_type Extension)');
my $found = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	WHERE query LIKE '%webhook_test%' AND state = 'active'
	AND pid <> pg_backend_pid()});
is($found, $pid, 'pg_stat_activity shows the calling backend');
my $t0 = time();
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($found)"), 't',
	'pg_cancel_backend sent');
($out) = $bg->query('SELECT 42');
my $elapsed = time() - $t0;
like($bg->{stderr}, qr/canceling statement due to user request/,
	'pg_cancel_backend: the call is cancelled');
cmp_ok($elapsed, '<', 1.5, 'pg_cancel_backend: it ends within 1.5 s')
  or diag("took $elapsed s");
is($out, '42', 'the backend is usable after the cancel');

# Some failed calls in the same session, then a ping that works.
my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Proto => 'tcp', Listen => 1) or die "bind: $!";
my $closed_port = $sock->sockport;
close $sock;
for my $url ("https://127.0.0.1:$closed_port/refused", "$recv->{base}/close",
	"$recv->{base}/status/500")
{
	my ($fid) = create_webhook($node, 'c1', $url, '{member.joined}');
	($out) = $bgq->("SELECT error IS NOT NULL FROM webhooks.webhook_test('c1', '$fid')");
	is($out, 't', "same session: $url fails");
}
($out) = $bgq->("SELECT status_code FROM webhooks.webhook_test('c1', '$ok_id')");
is($out, '200', 'a ping after the cancels still works');

my $fds_after = $fds->();
SKIP:
{
	skip 'cannot list the backend\'s descriptors', 1
	  unless defined $fds_before && defined $fds_after;
	ok(abs($fds_after - $fds_before) <= 1,
		"no descriptor leak over 5 cancelled and 5 other calls ($fds_before -> $fds_after)");
}
$bg->quit;
close $silent;

stop_receiver($recv);
$node->stop;
done_testing();
