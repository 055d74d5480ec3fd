# WebhooksTest.pm: shared helpers for the TAP tests in test/t/.
#
# Every test gets a real cluster (PostgreSQL::Test::Cluster) with the
# extension preloaded, and a real HTTPS receiver (test/receiver.py) on
# 127.0.0.1 whose certificate comes from a throwaway CA made here; the
# extension verifies it through webhooks.ssl_ca_file.  Every process
# started here is stopped by its PID, and every wait is bounded.
package WebhooksTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_base64);
use Exporter 'import';
use File::Basename qw(dirname);
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(certs init_node new_node start_receiver stop_receiver requests
  wait_until verify_signature signature_secrets create_webhook wait_for_worker
  wait_for_requests fails_with);

my $test_dir = dirname(__FILE__);
my @receivers;
my $certs;

# The throwaway CA and certificates, made once per test file.
sub certs
{
	return $certs if $certs;
	$certs = PostgreSQL::Test::Utils::tempdir('certs');
	chmod 0755, $certs;
	system('bash', "$test_dir/make-certs.sh", $certs) == 0
	  or BAIL_OUT("could not make test certificates");
	return $certs;
}

# An initialised, not yet started cluster with the extension preloaded,
# the throwaway CA, loopback allowed and short retries.  Extra settings may
# be given as one string; they come last, so they win.
sub init_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $dir = certs();
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'webhooks'
webhooks.database_name = 'postgres'
webhooks.ssl_ca_file = '$dir/ca.crt'
webhooks.allow_private_addresses = on
webhooks.retry_schedule = '200ms,400ms'
webhooks.timeout = '3s'
# the worker's ERRORs and WARNINGs too (with "log" they would be left out:
# in log_min_messages, LOG ranks above ERROR)
log_min_messages = warning
});
	$node->append_conf('postgresql.conf', $extra) if defined $extra;
	return $node;
}

# A started cluster with the extension installed in database postgres and
# the worker running.
sub new_node
{
	my ($name, $extra) = @_;
	my $node = init_node($name, $extra);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION webhooks');
	wait_for_worker($node);
	return $node;
}

# Wait until the delivery worker serves the database.
sub wait_for_worker
{
	my ($node) = @_;
	$node->wait_for_log(qr/delivery worker started/);
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'webhooks worker'})
	  or die "the webhooks worker did not start";
}

# Start test/receiver.py; returns { pid, port, log, base }.
sub start_receiver
{
	my (%opts) = @_;
	my $dir = certs();
	my $tmp = PostgreSQL::Test::Utils::tempdir('receiver');
	my $cert = $opts{rogue} ? 'rogue' : 'server';
	my $portfile = "$tmp/port";
	my $log = "$tmp/requests.jsonl";
	my @cmd = ('python3', "$test_dir/receiver.py",
		'--cert', "$dir/$cert.crt", '--key', "$dir/$cert.key",
		'--log', $log, '--port', 0, '--port-file', $portfile);
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$tmp/stdout");
		open(STDERR, '>', "$tmp/stderr");
		exec(@cmd) or die "exec failed: $!";
	}
	my $receiver = { pid => $pid, log => $log };
	push @receivers, $receiver;
	wait_until(sub { -s $portfile }, 'the receiver to listen', 20);
	open(my $fh, '<', $portfile) or die;
	chomp(my $port = <$fh>);
	close $fh;
	$receiver->{port} = $port;
	$receiver->{base} = "https://127.0.0.1:$port";
	return $receiver;
}

# Stop a receiver by its PID.
sub stop_receiver
{
	my ($receiver) = @_;
	return unless $receiver->{pid};
	kill 'TERM', $receiver->{pid};
	waitpid($receiver->{pid}, 0);
	$receiver->{pid} = 0;
}

END
{
	stop_receiver($_) for @receivers;
}

# Every request the receiver has logged, as hashes.
sub requests
{
	my ($receiver) = @_;
	my @out;
	open(my $fh, '<', $receiver->{log}) or return ();
	while (my $line = <$fh>)
	{
		next unless $line =~ /\n\z/;    # a line being written
		push @out, decode_json($line);
	}
	close $fh;
	return @out;
}

# Poll $cond every 50ms until it is true or $timeout seconds pass.
sub wait_until
{
	my ($cond, $what, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	return $cond->() ? 1 : (diag("timed out waiting for $what"), 0);
}

# Wait until the receiver has logged at least $n requests matching $filter.
sub wait_for_requests
{
	my ($receiver, $n, $filter, $timeout) = @_;
	$filter //= sub { 1 };
	my @got;
	wait_until(
		sub {
			@got = grep { $filter->($_) } requests($receiver);
			return @got >= $n;
		},
		"$n requests",
		$timeout);
	return @got;
}

# Check a Standard Webhooks signature independently of the extension.
sub verify_signature
{
	my ($secret, $request) = @_;
	my $h = $request->{headers};
	(my $key = $secret) =~ s/^whsec_//;
	my $mac = hmac_sha256_base64(
		"$h->{'webhook-id'}.$h->{'webhook-timestamp'}.$request->{body}",
		decode_base64($key));
	$mac .= '=' while length($mac) % 4;
	return $h->{'webhook-signature'} eq "v1,$mac";
}

# Which of @secrets signed the request: for each entry of its
# webhook-signature header (space-separated "v1,<base64>"), in header
# order, the secret whose signature it is.  Entries that match none are
# left out, so a caller checking for "new, then old" should also count the
# entries.  (verify_signature stays strict: exactly one signature.)
sub signature_secrets
{
	my ($request, @secrets) = @_;
	my $h = $request->{headers};
	my $signed = "$h->{'webhook-id'}.$h->{'webhook-timestamp'}.$request->{body}";
	my %by_mac;
	for my $secret (@secrets)
	{
		(my $key = $secret) =~ s/^whsec_//;
		my $mac = hmac_sha256_base64($signed, decode_base64($key));
		$mac .= '=' while length($mac) % 4;
		$by_mac{"v1,$mac"} //= $secret;
	}
	return map { exists $by_mac{$_} ? ($by_mac{$_}) : () }
	  split(' ', $h->{'webhook-signature'} // '');
}

# Run SQL on $node that must fail (extra psql options may follow);
# returns (SQLSTATE, message), or ('', "succeeded: ...") if it did not.
sub fails_with
{
	my ($node, $sql, @params) = @_;
	my ($rc, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql", @params);
	return ('', "succeeded: $out") if $rc == 0;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):\s+(.*)/ ? ($1, $2) : ('', $err);
}

# Create a webhook; returns (id, secret).
sub create_webhook
{
	my ($node, $community, $url, $events, $active) = @_;
	$active //= 'true';
	my $out = $node->safe_psql('postgres',
		"SELECT id || '|' || secret FROM webhooks.webhook_create("
		  . "'$community', '$url', '$events'::text[], $active)");
	return split /\|/, $out;
}

1;
