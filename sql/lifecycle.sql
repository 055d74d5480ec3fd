--
-- lifecycle: filters, headers, secret rotation, switching off, stats and
-- metrics (1.1).  What happens on the wire is in test/t/070_lifecycle.pl.
--
\set nil '00000000-0000-0000-0000-000000000000'

-- filter and headers are taken by name, and shown by get and list.
CREATE TEMP TABLE made AS
SELECT * FROM webhooks.webhook_create('lc', 'https://example.com/big',
    ARRAY['payment.completed'],
    filter => '$.amount_cents ? (@ >= 10000)',
    headers => '{"X-Api-Key": "k-123", "X-Tenant": "acme"}');
SELECT filter, headers, disabled_reason, disabled_at FROM made;
SELECT id AS big FROM made \gset
SELECT id AS all_ FROM webhooks.webhook_create('lc', 'https://example.com/all',
    ARRAY['payment.completed']) \gset
SELECT url, filter, headers FROM webhooks.webhook_list('lc') ORDER BY url;
SELECT filter, headers FROM webhooks.webhook_get('lc', :'big');
-- '{}' for headers is no headers; '$' for filter is no filter.
SELECT headers, filter FROM webhooks.webhook_create('lc', 'https://example.com/none',
    ARRAY['payment.completed'], filter => '$', headers => '{}');
-- An empty value is allowed (sent as an empty header, as is a blank one).
SELECT headers FROM webhooks.webhook_create('lc', 'https://example.com/empty',
    ARRAY['member.left'], headers => '{"X-Empty": "", "X-Blank": "  "}');

-- The worker's read delivers to a filtered webhook only what matches.
SELECT webhooks.emit('lc', 'payment.completed', '{"amount_cents": 25000}') AS e_big \gset
SELECT webhooks.emit('lc', 'payment.completed', '{"amount_cents": 500}') AS e_small \gset
SELECT webhooks.emit('lc', 'payment.completed', '{"note": "no amount"}') AS e_none \gset
SELECT queued FROM webhooks.read_events();
SELECT w.url, count(*) AS deliveries,
       bool_or(d.event_id = :'e_big') AS got_big,
       bool_or(d.event_id = :'e_small') AS got_small
FROM webhooks.deliveries d JOIN webhooks.webhooks w ON w.id = d.webhook_id
WHERE d.community_id = 'lc' GROUP BY w.url ORDER BY w.url;

-- update: filter and headers, each alone; NULL leaves them as they are.
SELECT filter, headers FROM webhooks.webhook_update('lc', :'big',
    filter => '$.amount_cents ? (@ < 1000)');
SELECT filter, headers FROM webhooks.webhook_update('lc', :'big',
    url => 'https://example.com/big2');
SELECT filter, headers FROM webhooks.webhook_update('lc', :'big',
    headers => '{"X-Other": "1"}');
SELECT filter, headers FROM webhooks.webhook_update('lc', :'big',
    headers => '{}', filter => '$');

--
-- Rotation: a new secret at once; the old one signs for the overlap.
--
SELECT webhooks.webhook_secret('lc', :'all_') AS s1 \gset
SELECT webhooks.webhook_rotate_secret('lc', :'all_') AS s2 \gset
SELECT :'s2' ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS well_formed, :'s2' <> :'s1' AS new,
       webhooks.webhook_secret('lc', :'all_') = :'s2' AS secret_is_new;
SELECT previous_secret = :'s1' AS keeps_old,
       previous_secret_until BETWEEN now() + interval '23 hours 59 minutes'
                                 AND now() + interval '24 hours 1 minute' AS for_24h
FROM webhooks.webhooks WHERE id = :'all_';
SELECT webhooks.webhook_rotate_secret('lc', :'all_', '1 hour') AS s3 \gset
SELECT previous_secret = :'s2' AS keeps_the_one_before,
       previous_secret_until <= now() + interval '1 hour' AS for_1h
FROM webhooks.webhooks WHERE id = :'all_';
-- A zero overlap drops the old secret at once.
SELECT webhooks.webhook_rotate_secret('lc', :'all_', '0') <> :'s3' AS rotated;
SELECT previous_secret IS NULL AS dropped, previous_secret_until IS NULL AS no_until
FROM webhooks.webhooks WHERE id = :'all_';

--
-- Switched off by the worker (simulated here; the worker's own path is in
-- 070_lifecycle.pl), then reactivated by a person: the reason goes.
--
UPDATE webhooks.webhooks SET is_active = false,
    disabled_reason = 'the endpoint answered 410 Gone', disabled_at = now()
WHERE id = :'all_';
SELECT is_active, disabled_reason, disabled_at IS NOT NULL AS has_time
FROM webhooks.webhook_get('lc', :'all_');
SELECT is_active, disabled_reason, disabled_at
FROM webhooks.webhook_update('lc', :'all_', is_active => true);
SELECT active_since > created_at AS failing_span_restarts
FROM webhooks.webhooks WHERE id = :'all_';
-- A new URL starts the failing span afresh too: old failures were another
-- endpoint's.
UPDATE webhooks.webhooks SET active_since = now() - interval '1 day' WHERE id = :'all_';
SELECT url FROM webhooks.webhook_update('lc', :'all_', url => 'https://example.com/all2');
SELECT active_since > now() - interval '1 minute' AS restarted
FROM webhooks.webhooks WHERE id = :'all_';
-- (the same URL again changes nothing)
UPDATE webhooks.webhooks SET active_since = now() - interval '1 day' WHERE id = :'all_';
SELECT url FROM webhooks.webhook_update('lc', :'all_', url => 'https://example.com/all2');
SELECT active_since < now() - interval '1 hour' AS kept
FROM webhooks.webhooks WHERE id = :'all_';
-- A string holding $" is no variable: such a filter is accepted.
SELECT filter FROM webhooks.webhook_create('lc', 'https://example.com/q',
    ARRAY['member.left'], filter => '$.a ? (@ == "$\"x")');
-- A person's deactivation has no reason.
SELECT is_active, disabled_reason, disabled_at
FROM webhooks.webhook_update('lc', :'all_', is_active => false);
SELECT is_active FROM webhooks.webhook_update('lc', :'all_', is_active => true);

--
-- webhook_stats: the queue, the worker's health row, the last 24 hours.
--
SELECT * FROM webhooks.webhook_stats('lc', :'all_');
-- 100 attempts an hour ago, 1..100 ms, one in four failed, as the worker
-- counts them per hour and response-time bucket; and older ones, which are
-- not counted.  (The log itself is not read.)
INSERT INTO webhooks.webhook_hourly (webhook_id, hour, bucket, attempts, successes)
SELECT :'all_', date_trunc('hour', now() - interval '1 hour'),
       width_bucket(g, webhooks.response_buckets()),
       count(*), count(*) FILTER (WHERE g % 4 <> 0)
FROM generate_series(1, 100) g GROUP BY 3;
INSERT INTO webhooks.webhook_hourly (webhook_id, hour, bucket, attempts, successes)
VALUES (:'all_', date_trunc('hour', now() - interval '25 hours'), 40, 1000, 1000);
INSERT INTO webhooks.webhook_health (webhook_id, last_success_at,
    last_failure_at, failing_since)
VALUES (:'all_', now() - interval '2 hours', now() - interval '1 hour',
        now() - interval '90 minutes');
UPDATE webhooks.deliveries SET state = 'failed' WHERE id = (
    SELECT min(id) FROM webhooks.deliveries WHERE webhook_id = :'all_');
-- (failing_since is from before the webhook was reactivated above: it
-- does not count, as a fresh activation starts the failing span anew)
SELECT pending, failed, last_success_at IS NOT NULL AS has_success,
       failing_since IS NOT NULL AS failing, attempts_24h, success_rate_24h,
       p50_ms_24h, p95_ms_24h
FROM webhooks.webhook_stats('lc', :'all_');

--
-- Metrics, for an exporter: readable by pg_monitor, no URL or secret.
--
SELECT attname FROM pg_attribute
WHERE attrelid = 'webhooks.metrics'::regclass AND attnum > 0 ORDER BY attnum;
SELECT has_table_privilege('pg_monitor', 'webhooks.metrics', 'SELECT') AS monitor_metrics,
       has_table_privilege('pg_monitor', 'webhooks.metrics_total', 'SELECT') AS monitor_total,
       has_table_privilege('pg_monitor', 'webhooks.webhooks', 'SELECT') AS monitor_webhooks;
UPDATE webhooks.webhooks SET active_since = now() - interval '1 day' WHERE id = :'all_';
SELECT failing_since IS NOT NULL AS failing FROM webhooks.webhook_stats('lc', :'all_');
UPDATE webhooks.webhook_health SET delivered = 7, failed_attempts = 3,
    retries = 2, gave_up = 1, disabled = 1 WHERE webhook_id = :'all_';
SELECT delivered_total, failed_attempts_total, retries_total, gave_up_total,
       disabled_total, pending, in_flight, oldest_pending_seconds > 0 AS waiting
FROM webhooks.metrics WHERE webhook_id = :'all_';
SELECT webhooks, active_webhooks, delivered_total, disabled_total, pending
FROM webhooks.metrics_total;

--
-- An update from 1.0 keeps the EXECUTE rights granted on webhook_create
-- and webhook_update, whose signatures 1.1 extends.
--
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.webhook_health;
DELETE FROM webhooks.webhooks;
DROP EXTENSION webhooks;
CREATE EXTENSION webhooks VERSION '1.0';
CREATE ROLE regress_lc_app;
GRANT USAGE ON SCHEMA webhooks TO regress_lc_app;
GRANT EXECUTE ON FUNCTION webhooks.webhook_create(text, text, text[], boolean),
                         webhooks.webhook_update(text, uuid, text, text[], boolean)
    TO regress_lc_app;
ALTER EXTENSION webhooks UPDATE;
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_lc_app', p.oid, 'EXECUTE') AS app_can
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
  AND p.proname IN ('webhook_create', 'webhook_update')
ORDER BY 1::text;
-- ... and they are the application's, not the extension's own (which
-- pg_dump would leave out): pg_init_privs does not list them.
SELECT p.proname, i.initprivs::text LIKE '%regress_lc_app%' AS in_init_privs
FROM pg_proc p JOIN pg_init_privs i ON i.objoid = p.oid AND i.classoid = 'pg_proc'::regclass
WHERE p.pronamespace = 'webhooks'::regnamespace
  AND p.proname IN ('webhook_create', 'webhook_update')
ORDER BY 1;
SET ROLE regress_lc_app;
SELECT url, filter, headers FROM webhooks.webhook_create('lc', 'https://example.com/app',
    ARRAY['member.joined'], headers => '{"X-K": "v"}');
RESET ROLE;
DELETE FROM webhooks.webhooks;
DROP OWNED BY regress_lc_app;
DROP ROLE regress_lc_app;
