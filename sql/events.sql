--
-- events: kept events, event_get, webhook_replay, webhook_recover (1.1)
--
SELECT id AS a FROM webhooks.webhook_create('ev1', 'https://example.com/a',
    ARRAY['member.joined', 'payment.failed']) \gset
SELECT id AS b FROM webhooks.webhook_create('ev1', 'https://example.com/b',
    ARRAY['member.joined']) \gset
SELECT id AS other FROM webhooks.webhook_create('ev2', 'https://example.com/o',
    ARRAY['member.joined']) \gset

-- emit appends one row per event, whoever subscribes: nothing per webhook.
SELECT webhooks.emit('ev1', 'member.joined', '{"who": "ada"}') AS e1 \gset
SELECT webhooks.emit('ev1', 'payment.refunded', '{"cents": 5}') AS e2 \gset
SELECT count(*) AS events, count(DISTINCT txid) AS transactions
FROM webhooks.events WHERE community_id = 'ev1';
SELECT count(*) AS deliveries FROM webhooks.deliveries;

-- The id is a version 7 uuid carrying the emitting transaction's id; the
-- row's created_at is the id's time.
SELECT substr(:'e1', 15, 1) AS version,
       e.txid::text::bigint = (('x' || substr(replace(:'e1', '-', ''), 17, 16))::bit(64)
                               & x'3fffffffffffffff')::bigint AS id_carries_txid,
       e.created_at = to_timestamp((('x' || substr(replace(:'e1', '-', ''), 1, 12))::bit(48)::bigint) / 1000.0)
           AS created_at_is_id_time
FROM webhooks.events e WHERE e.id = :'e1';
-- Ids of one transaction differ and grow.
BEGIN;
SELECT count(webhooks.emit('ev1', 'member.joined', jsonb_build_object('n', g)))
FROM generate_series(1, 3) g;
SELECT count(DISTINCT id) AS ids, count(DISTINCT txid) AS txids,
       bool_and(id > :'e1') AS later
FROM webhooks.events WHERE payload ? 'n';
COMMIT;

-- event_get: the event, in its community only.
SELECT id = :'e1' AS same_id, type, community_id, payload,
       created_at <= now() AS in_past
FROM webhooks.event_get('ev1', :'e1');
SELECT sqlstate_of(format($$SELECT webhooks.event_get('ev2', %L)$$, :'e1'));

-- The worker's read queues the deliveries: a and b for each
-- member.joined, nothing for payment.refunded (no subscriber), nothing in
-- community ev2.
SELECT queued FROM webhooks.read_events();
CREATE TEMP VIEW queue AS
SELECT CASE d.webhook_id WHEN :'a' THEN 'a' WHEN :'b' THEN 'b' ELSE 'other' END AS hook,
       payload_of(d.event_id) AS payload, d.state, d.attempts
FROM webhooks.deliveries d ORDER BY d.id;
SELECT * FROM queue;

-- webhook_replay: a delivery that still exists starts over (attempts 0,
-- due now); one that does not is queued anew, with the same event id.
UPDATE webhooks.deliveries SET state = 'failed', attempts = 8,
    last_error = 'HTTP 500', next_attempt_at = now() + interval '1 day'
WHERE webhook_id = :'a' AND event_id = :'e1';
SELECT webhooks.webhook_replay('ev1', :'a', :'e1');
SELECT state, attempts, next_attempt_at <= now() AS due_now
FROM webhooks.deliveries WHERE webhook_id = :'a' AND event_id = :'e1';
DELETE FROM webhooks.deliveries WHERE webhook_id = :'b' AND event_id = :'e1';
SELECT webhooks.webhook_replay('ev1', :'b', :'e1');
SELECT event_id = :'e1' AS same_event, event, community_id, state, attempts
FROM webhooks.deliveries WHERE webhook_id = :'b' AND event_id = :'e1';
-- Any kept event of the community, subscribed to or not.
SELECT webhooks.webhook_replay('ev1', :'b', :'e2');
SELECT event, payload_of(event_id) FROM webhooks.deliveries
WHERE webhook_id = :'b' AND event_id = :'e2';
-- Not another community's event.
SELECT sqlstate_of(format($$SELECT webhooks.webhook_replay('ev2', %L, %L)$$, :'other', :'e1'));

-- webhook_recover: failed deliveries since a time start over; pending ones
-- are not queued twice, earlier ones stay failed.
UPDATE webhooks.deliveries SET state = 'failed', attempts = 8
WHERE webhook_id = :'a';
UPDATE webhooks.deliveries SET emitted_at = emitted_at - interval '2 days'
WHERE webhook_id = :'a' AND payload_of(event_id) ->> 'n' = '1';
SELECT count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'pending') AS pending
FROM webhooks.deliveries WHERE webhook_id = :'a';
-- (the moved delivery no longer matches its event's time: it is not kept)
SELECT webhooks.webhook_recover('ev1', :'a', now() - interval '1 day') AS recovered;
SELECT count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'pending' AND attempts = 0) AS pending
FROM webhooks.deliveries WHERE webhook_id = :'a';
SELECT webhooks.webhook_recover('ev1', :'a', now() - interval '1 day') AS again;
SELECT webhooks.webhook_recover('ev1', :'b', '-infinity') AS nothing_failed;

-- Deleting the webhook drops its deliveries; the events stay.
SELECT webhooks.webhook_delete('ev1', :'a');
SELECT count(*) AS deliveries_of_a FROM webhooks.deliveries WHERE webhook_id = :'a';
SELECT count(*) AS events_kept FROM webhooks.events WHERE community_id = 'ev1';

-- Partitions: events and attempts are partitioned by day; without the
-- worker, rows wait in the default partitions.
SELECT c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'webhooks.events'::regclass;
SELECT count(*) AS in_default FROM webhooks.events_default WHERE community_id = 'ev1';
-- The application's transaction maintains one index on the events.
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'webhooks.events_default'::regclass;

-- read_events refuses to run in a transaction that has written: its own
-- events would count as committed, and what it emits later be skipped.
BEGIN;
SELECT webhooks.emit('ev1', 'member.joined', '{}') IS NOT NULL AS emitted;
SELECT sqlstate_of('SELECT * FROM webhooks.read_events()');
ROLLBACK;

-- Clean up.
DROP VIEW queue;
DELETE FROM webhooks.deliveries;
SELECT webhooks.webhook_delete(community_id, id) FROM webhooks.webhooks;
