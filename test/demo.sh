#!/usr/bin/env bash
# demo.sh: the README's first command (`make demo`).
#
# On a fresh machine: installs what is missing, builds and installs the
# extension, starts a throwaway cluster with the worker preloaded and a
# local HTTPS receiver with a throwaway CA, creates members and payments
# tables with emit_trigger triggers, registers webhooks for two
# communities, changes rows, and shows the deliveries arriving (signatures
# verified independently), webhook_logs, a kept event looked up and
# replayed, a filtered webhook with its own header, a secret rotated (both
# signatures checked), webhook_stats and the metrics.  Stops everything it
# started.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib/deps.sh"

build_and_install "$repo"

demo=$(mktemp -d /tmp/webhooks-demo.XXXXXX)
chmod 755 "$demo"
[ "$(id -u)" -eq 0 ] && chown "$TEST_USER": "$demo"
receiver_pid=
cleanup() {
	# Best effort, every step: an error here must not skip the next one.
	set +e
	if [ -f "$demo/data/postmaster.pid" ]; then
		as_test_user pg_ctl -D "$demo/data" -m fast -w stop >/dev/null 2>&1
	fi
	if [ -n "$receiver_pid" ]; then
		# $! may be runuser, which does not pass the signal on: stop its
		# child (the receiver) by PID first, then it.
		pkill -TERM -P "$receiver_pid" 2>/dev/null
		kill "$receiver_pid" 2>/dev/null
		wait "$receiver_pid" 2>/dev/null
	fi
	rm -rf "$demo"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A throwaway CA and a local HTTPS receiver on 127.0.0.1"
make_test_certs "$demo/certs"
cp "$repo/test/receiver.py" "$demo/receiver.py"
[ "$(id -u)" -eq 0 ] && chown -R "$TEST_USER": "$demo"
as_test_user python3 "$demo/receiver.py" --cert "$demo/certs/server.crt" \
	--key "$demo/certs/server.key" --log "$demo/requests.jsonl" \
	--port 0 --port-file "$demo/port" >"$demo/receiver.out" 2>&1 &
receiver_pid=$!
for _ in $(seq 1 100); do [ -s "$demo/port" ] && break; sleep 0.1; done
port=$(cat "$demo/port")
echo "receiver PID $receiver_pid listening on https://127.0.0.1:$port"

step "A throwaway cluster with the extension preloaded"
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_test_user initdb -D "$demo/data" -A trust -U postgres >/dev/null
cat >>"$demo/data/postgresql.conf" <<EOF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$demo'
shared_preload_libraries = 'webhooks'
webhooks.database_name = 'postgres'
webhooks.ssl_ca_file = '$demo/certs/ca.crt'
# The receiver is on loopback, which the SSRF guard blocks by default.
webhooks.allow_private_addresses = on
EOF
as_test_user pg_ctl -D "$demo/data" -l "$demo/server.log" -w start >/dev/null
psql() { as_test_user /usr/lib/postgresql/15/bin/psql -X -q -h "$demo" -p "$pgport" -U postgres -d postgres "$@"; }
echo "PostgreSQL on $demo port $pgport"

step "The application's schema, with triggers that emit events"
psql -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION webhooks;
CREATE TABLE members (id serial PRIMARY KEY, community_id text NOT NULL,
                      name text NOT NULL, role text DEFAULT 'member');
CREATE TRIGGER members_joined AFTER INSERT ON members
  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');
CREATE TRIGGER members_updated AFTER UPDATE ON members
  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.updated');
CREATE TRIGGER members_left AFTER DELETE ON members
  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.left');
CREATE TABLE payments (id serial PRIMARY KEY, org text NOT NULL,
                       amount_cents int NOT NULL);
CREATE TRIGGER payments_completed AFTER INSERT ON payments
  FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('payment.completed', 'org');
SQL
echo "members and payments created, with emit_trigger triggers"

step "Webhooks for two communities"
psql -v ON_ERROR_STOP=1 -v base="https://127.0.0.1:$port" <<'SQL'
\pset footer off
SELECT id, community_id, url, events, is_active
FROM webhooks.webhook_create('acme', :'base' || '/acme',
                             ARRAY['member.joined', 'member.left', 'payment.completed']);
SELECT id, community_id, url, events, is_active
FROM webhooks.webhook_create('globex', :'base' || '/globex',
                             ARRAY['member.joined', 'member.updated']);
SELECT community_id, url, events FROM webhooks.webhook_list('acme')
UNION ALL
SELECT community_id, url, events FROM webhooks.webhook_list('globex');
SQL

step "webhook_test: a signed test.ping, answered now"
psql -v ON_ERROR_STOP=1 <<'SQL'
\pset footer off
SELECT w.community_id, t.*
FROM webhooks.webhooks w,
     LATERAL webhooks.webhook_test(w.community_id, w.id) t
ORDER BY w.community_id;
SQL

step "The application changes rows; triggers emit, commit wakes the worker"
psql -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO members (community_id, name) VALUES
  ('acme', 'Ada'), ('acme', 'Grace'), ('globex', 'Linus');
UPDATE members SET role = 'admin' WHERE name = 'Linus';
DELETE FROM members WHERE name = 'Grace';
INSERT INTO payments (org, amount_cents) VALUES ('acme', 4200);
BEGIN;
INSERT INTO members (community_id, name) VALUES ('acme', 'Rolled Back');
ROLLBACK;
SQL
echo "4 committed changes for acme, 2 for globex; 1 rolled back"

# The worker reads what was committed, queues a delivery per subscriber,
# sends them and logs each attempt: wait for the six.
for _ in $(seq 1 100); do
	left=$(psql -tA -c "SELECT 6 - count(*) FROM webhooks.delivery_attempts
	                    WHERE event <> 'test.ping' AND status_code = 200")
	[ "$left" = 0 ] && break
	sleep 0.1
done
if [ "$left" != 0 ]; then
	echo "demo: $left deliveries not made after 10 s; server log:" >&2
	tail -n 40 "$demo/server.log" >&2
	exit 1
fi

step "What the receiver got (signatures verified here, independently)"
psql -tA -F ' ' -c "SELECT '/' || community_id, secret FROM webhooks.webhooks" >"$demo/secrets"
python3 - "$demo/requests.jsonl" "$demo/secrets" <<'PY'
import base64, hashlib, hmac, json, sys
secrets = dict(line.split() for line in open(sys.argv[2]) if line.strip())
print(f"{'path':8} {'type':18} {'webhook-id':36}  signature  data")
seen = invalid = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    h, body = r["headers"], r["body"]
    key = base64.b64decode(secrets[r["path"]].removeprefix("whsec_"))
    mac = hmac.new(key, f"{h['webhook-id']}.{h['webhook-timestamp']}.{body}".encode(),
                   hashlib.sha256).digest()
    ok = h["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    event = json.loads(body)
    data = {k: v for k, v in event["data"].items() if k in ("name", "role", "amount_cents", "message")}
    print(f"{r['path']:8} {event['type']:18} {h['webhook-id']}  {'valid' if ok else 'INVALID'}      {json.dumps(data)}")
    seen += 1
    invalid += not ok
# 2 pings, 4 events for acme, 2 for globex
if seen != 8 or invalid:
    sys.exit(f"demo: expected 8 requests with valid signatures, got {seen} ({invalid} invalid)")
PY

step "webhook_logs: every attempt, newest first"
psql -v ON_ERROR_STOP=1 <<'SQL'
\pset footer off
SELECT w.community_id, l.event, l.status_code, l.response_time_ms, l.attempt,
       to_char(l.created_at, 'HH24:MI:SS.MS') AS at
FROM webhooks.webhooks w,
     LATERAL webhooks.webhook_logs(w.community_id, w.id, 1, 20) l
ORDER BY w.community_id, l.created_at DESC;
SQL

step "Events are kept: event_get, and webhook_replay sends one again"
psql -v ON_ERROR_STOP=1 <<'SQL'
\pset footer off
SELECT e.id AS event_id, e.type, e.payload->>'name' AS name, e.created_at
FROM webhooks.events e WHERE e.community_id = 'acme' ORDER BY e.created_at LIMIT 1 \gset
SELECT id, type, community_id, payload FROM webhooks.event_get('acme', :'event_id');
SELECT webhooks.webhook_replay('acme', w.id, :'event_id')
FROM webhooks.webhook_list('acme') w;
SQL
for _ in $(seq 1 100); do
	[ "$(wc -l <"$demo/requests.jsonl")" -ge 9 ] && break
	sleep 0.1
done
python3 - "$demo/requests.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
first = next(r for r in lines if r["headers"]["webhook-id"] == lines[-1]["headers"]["webhook-id"])
if len(lines) < 9 or first is lines[-1]:
    sys.exit("demo: the replay did not arrive")
print(f"replayed: {lines[-1]['path']} got webhook-id {lines[-1]['headers']['webhook-id']} again,"
      f" with the same body: {lines[-1]['body'] == first['body']}")
PY

step "A filtered webhook with its own header, and a secret rotated"
psql -v ON_ERROR_STOP=1 -v base="https://127.0.0.1:$port" <<'SQL' >"$demo/rotation.out"
\pset footer off
-- acme's finance system wants only payments of 100.00 or more, with its key
SELECT url, events, filter, headers
FROM webhooks.webhook_create('acme', :'base' || '/acme-big', ARRAY['payment.completed'],
                             filter => '$.amount_cents ? (@ >= 10000)',
                             headers => '{"X-Api-Key": "demo-key"}');
-- acme rotates its main webhook's secret: both sign for 24 hours
SELECT w.id AS acme_id, webhooks.webhook_secret('acme', w.id) AS old_secret
FROM webhooks.webhook_list('acme') w WHERE w.url LIKE '%/acme' \gset
SELECT webhooks.webhook_rotate_secret('acme', :'acme_id', '24 hours') AS new_secret \gset
\echo old :old_secret
\echo new :new_secret
INSERT INTO payments (org, amount_cents) VALUES ('acme', 1500), ('acme', 25000);
SQL
grep -v '^\(old\|new\) ' "$demo/rotation.out"
echo "rotated acme's secret; inserted payments of 15.00 and 250.00"
old_secret=$(sed -n 's/^old //p' "$demo/rotation.out")
new_secret=$(sed -n 's/^new //p' "$demo/rotation.out")
for _ in $(seq 1 100); do
	[ "$(wc -l <"$demo/requests.jsonl")" -ge 12 ] && break
	sleep 0.1
done
python3 - "$demo/requests.jsonl" "$old_secret" "$new_secret" <<'PY'
import base64, hashlib, hmac, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])][9:]
def sig(secret, r):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    h = r["headers"]
    mac = hmac.new(key, f"{h['webhook-id']}.{h['webhook-timestamp']}.{r['body']}".encode(),
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
main = [r for r in lines if r["path"] == "/acme"]
big = [r for r in lines if r["path"] == "/acme-big"]
for r in main:
    got = r["headers"]["webhook-signature"].split(" ")
    both = got == [sig(sys.argv[3], r), sig(sys.argv[2], r)]
    amount = json.loads(r["body"])["data"]["amount_cents"]
    print(f"/acme      payment {amount:>6}  signatures: new, old: {'valid' if both else 'INVALID'}")
for r in big:
    amount = json.loads(r["body"])["data"]["amount_cents"]
    print(f"/acme-big  payment {amount:>6}  x-api-key: {r['headers'].get('x-api-key')}")
if len(main) != 2 or len(big) != 1 or \
   json.loads(big[0]["body"])["data"]["amount_cents"] != 25000 or \
   big[0]["headers"].get("x-api-key") != "demo-key" or \
   any(r["headers"]["webhook-signature"].split(" ") != [sig(sys.argv[3], r), sig(sys.argv[2], r)] for r in main):
    sys.exit("demo: the filter, the header or the rotation did not show on the wire")
PY

step "webhook_stats and the metrics view"
psql -v ON_ERROR_STOP=1 <<'SQL'
\pset footer off
SELECT w.community_id, substr(w.url, length(w.url) - strpos(reverse(w.url), '/') + 1) AS path,
       s.pending, s.failed, s.attempts_24h, s.success_rate_24h, s.p50_ms_24h, s.p95_ms_24h
FROM webhooks.webhooks w, LATERAL webhooks.webhook_stats(w.community_id, w.id) s
ORDER BY 1, 2;
SELECT webhooks, active_webhooks, delivered_total, failed_attempts_total,
       disabled_total, pending, in_flight
FROM webhooks.metrics_total;
SQL

step "delivery_status: nothing left pending"
psql -c "SELECT community_id, pending, in_flight, retrying, failed FROM webhooks.delivery_status ORDER BY 1"

step "Done; stopping the receiver (PID $receiver_pid) and the cluster"
