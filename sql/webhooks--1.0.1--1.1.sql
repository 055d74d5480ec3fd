/* webhooks--1.0.1--1.1.sql: events kept once, fanned out by the worker */

\echo Use "ALTER EXTENSION webhooks UPDATE TO '1.1'" to load this file. \quit

/*
 * 1.0 wrote, in the application's transaction, one queue row per
 * subscribed webhook with a copy of the payload.  From 1.1 emit() appends
 * one row per event to webhooks.events, and the delivery worker reads what
 * was committed (by transaction snapshots, see src/reader.c) and queues the
 * deliveries itself.  Events stay, delivered or not, for
 * webhooks.log_retention, so they can be looked up, replayed and
 * recovered.  An installation of 1.0 or 1.0.1 keeps everything: its queued
 * and failed deliveries become events and deliveries of the new layout,
 * and its attempt log becomes the first partition of the new log.
 */

/*
 * Events, one row each, partitioned by day of created_at (the worker makes
 * each day's partition ahead of time and drops whole days past the
 * retention; a row that finds no partition lands in the default one).
 *
 * The application's transaction maintains one index: (txid, id).  The
 * worker reads by txid; an event id embeds its txid (src/signing.c), so
 * event_get finds an event through the same index.  txid is the emitting
 * transaction's top-level id, 0 for events carried over from 1.0.
 *
 * Each partition has its own index, made with it, and the partitioned
 * table none: an index on the partitioned table, made here, would exist
 * before pg_restore attaches the dumped partitions, which would then clash
 * with the dump's own indexes of them.
 */
CREATE TABLE webhooks.events (
    id           uuid NOT NULL,
    type         text NOT NULL,
    community_id text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    txid         xid8 NOT NULL,
    payload_bytes int NOT NULL DEFAULT 0
) PARTITION BY RANGE (created_at);
COMMENT ON COLUMN webhooks.events.payload_bytes IS
'The payload''s size as emit measured it: what the worker budgets for its body';
CREATE TABLE webhooks.events_default PARTITION OF webhooks.events DEFAULT;
CREATE INDEX events_default_txid_idx ON webhooks.events_default (txid, id);
COMMENT ON TABLE webhooks.events IS
'Every emitted event, kept for webhooks.log_retention; partitioned by day';
COMMENT ON TABLE webhooks.events_default IS
'Events emitted while no partition for their day existed (worker not running)';

/*
 * Where the worker has read up to: the snapshot of its last read.  An
 * event is read once its transaction is visible in a read's snapshot and
 * was not in the previous one's.  Not dumped: a restored database starts
 * reading from its own present, and reads no event older than that (the
 * txids of restored events are another server's).
 */
CREATE TABLE webhooks.reader (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    snapshot   pg_snapshot NOT NULL,
    read_at    timestamptz NOT NULL DEFAULT now(),
    since      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN webhooks.reader.since IS
'When reading began in this database: older events (restored from a dump, whose txids belong to another server) are never read';
INSERT INTO webhooks.reader (snapshot) VALUES (pg_current_snapshot());
COMMENT ON TABLE webhooks.reader IS
'The delivery worker''s read position: the snapshot of its last read of webhooks.events';

/*
 * One read of the delivery worker (src/reader.c explains the method): the
 * events of the transactions that are visible in this statement's
 * snapshot and were not in the previous read's become one delivery per
 * active subscribed webhook of their community, and the position moves,
 * all in one statement.  The worker calls it when woken by a commit and
 * at least once a second; an operator may call it to read now.
 */
CREATE FUNCTION webhooks.read_events(OUT events bigint, OUT queued bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A transaction's own events count as committed in its own snapshot:
    -- a read there would skip what it emits after.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'webhooks.read_events() must not run in a transaction that has written'
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it in a transaction of its own.';
    END IF;
    -- One read at a time (the worker's, or an operator's): the statement
    -- below then takes its snapshot after the previous read committed.
    PERFORM 1 FROM webhooks.reader FOR UPDATE;
    WITH pos AS (
        SELECT r.snapshot AS prev, pg_current_snapshot() AS cur, r.since
        FROM webhooks.reader r
    ), ev AS (
        -- started after the previous read, committed since
        SELECT e.id, e.type, e.community_id, e.created_at, e.txid,
               e.payload_bytes
        FROM pos, webhooks.events e
        WHERE e.txid >= pg_snapshot_xmax(pos.prev)
          AND e.txid < pg_snapshot_xmax(pos.cur)
          AND pg_visible_in_snapshot(e.txid, pos.cur)
          AND e.created_at >= pos.since
        UNION ALL
        -- in progress at the previous read, committed since
        SELECT e.id, e.type, e.community_id, e.created_at, e.txid,
               e.payload_bytes
        FROM pos, pg_snapshot_xip(pos.prev) x(txid), webhooks.events e
        WHERE e.txid = x.txid AND pg_visible_in_snapshot(x.txid, pos.cur)
          AND e.created_at >= pos.since
    ), q AS (
        INSERT INTO webhooks.deliveries
               (webhook_id, event_id, event, community_id, emitted_at,
                event_txid, payload_bytes)
        SELECT w.id, ev.id, ev.type, ev.community_id, ev.created_at, ev.txid,
               ev.payload_bytes
        FROM ev JOIN webhooks.webhooks w
          ON w.community_id = ev.community_id AND w.is_active
         AND ev.type = ANY (w.events)
         AND date_trunc('milliseconds', w.created_at) <= ev.created_at
        RETURNING 1
    ), moved AS (
        UPDATE webhooks.reader r SET snapshot = pos.cur, read_at = now()
        FROM pos
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM q)
    INTO events, queued;
END
$$;
COMMENT ON FUNCTION webhooks.read_events() IS
'Queue the deliveries of the events committed since the last read (what the worker runs)';
REVOKE ALL ON FUNCTION webhooks.read_events() FROM PUBLIC;

-- 1.0's queue rows become events (one per event id) ... (no 1.0 emit may
-- add one meanwhile: its payload would be dropped with the column)
LOCK TABLE webhooks.deliveries IN EXCLUSIVE MODE;
INSERT INTO webhooks.events (id, type, community_id, payload, created_at, txid,
                             payload_bytes)
SELECT DISTINCT ON (event_id) event_id, event, community_id, payload,
       emitted_at, '0'::xid8, octet_length(payload::text)
FROM webhooks.deliveries
ORDER BY event_id, id;

-- ... and stay deliveries, pointing at their event instead of a copy.
ALTER TABLE webhooks.deliveries ADD COLUMN event_txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE webhooks.deliveries ALTER COLUMN event_txid DROP DEFAULT;
ALTER TABLE webhooks.deliveries ADD COLUMN payload_bytes int NOT NULL DEFAULT 0;
UPDATE webhooks.deliveries SET payload_bytes = octet_length(payload::text);
COMMENT ON COLUMN webhooks.deliveries.payload_bytes IS
'Its event''s payload_bytes: claims stop short of webhooks.max_bytes_in_flight';
ALTER TABLE webhooks.deliveries DROP COLUMN payload;
COMMENT ON COLUMN webhooks.deliveries.emitted_at IS
'The event''s created_at, where it is found with event_txid and event_id';
-- A delivery in flight belongs to a worker that no longer runs this schema.
UPDATE webhooks.deliveries SET state = 'pending' WHERE state = 'sending';
-- The deliveries marked in flight: the worker puts back every 10 s those it
-- does not hold (left by an earlier worker, or restored from a dump).
CREATE INDEX deliveries_sending_idx ON webhooks.deliveries (id)
    WHERE state = 'sending';
COMMENT ON TABLE webhooks.deliveries IS
'Deliveries the worker has queued and not finished: pending, being sent, or failed after the last retry';

-- pg_dump keeps the queue's id counter with its rows (issue 10).
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_id_seq', '');

/*
 * The attempt log becomes partitioned by day, like the events.  The 1.0
 * table is kept as it is, as the partition of everything up to the end of
 * the day of its newest row (UTC); retention drops it whole once that is
 * past.
 */
ALTER TABLE webhooks.delivery_attempts RENAME TO delivery_attempts_1_0;
ALTER TABLE webhooks.delivery_attempts_1_0
    DROP CONSTRAINT delivery_attempts_pkey;
ALTER INDEX webhooks.delivery_attempts_webhook_idx
    RENAME TO delivery_attempts_1_0_webhook_idx;
CREATE TABLE webhooks.delivery_attempts (
    id               uuid NOT NULL DEFAULT webhooks.uuid_v7(),
    webhook_id       uuid NOT NULL,
    event_id         uuid NOT NULL,
    event            text NOT NULL,
    attempt          int NOT NULL,
    status_code      int,
    response_time_ms int,
    error            text,
    response_body    text,
    created_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
-- It leaves the extension, so that pg_dump keeps it like the partitions
-- the worker makes; it covers up to the end of the day (UTC) of its newest
-- row, and a new installation, whose log is empty, just drops it.
ALTER EXTENSION webhooks DROP TABLE webhooks.delivery_attempts_1_0;
DO $$
DECLARE
    newest timestamptz;
BEGIN
    SELECT max(created_at) INTO newest FROM webhooks.delivery_attempts_1_0;
    IF newest IS NULL THEN
        DROP TABLE webhooks.delivery_attempts_1_0;
    ELSE
        EXECUTE format('ALTER TABLE webhooks.delivery_attempts ATTACH PARTITION '
                       'webhooks.delivery_attempts_1_0 FOR VALUES FROM (MINVALUE) TO (%L)',
                       (date_trunc('day', newest AT TIME ZONE 'UTC')
                            + interval '1 day') AT TIME ZONE 'UTC');
        COMMENT ON TABLE webhooks.delivery_attempts_1_0 IS
        'The attempt log of 1.0, kept as the partition of everything before 1.1';
    END IF;
END
$$;
CREATE TABLE webhooks.delivery_attempts_default
    PARTITION OF webhooks.delivery_attempts DEFAULT;
CREATE INDEX delivery_attempts_default_webhook_idx
    ON webhooks.delivery_attempts_default (webhook_id, created_at, id);
COMMENT ON TABLE webhooks.delivery_attempts IS
'One row per delivery attempt, newest read first by webhook_logs; partitioned by day';

/*
 * pg_dump: the partitions the worker makes are ordinary tables and are
 * dumped with their rows; those made here belong to the extension, so
 * their rows are registered.  (A partitioned table has no rows of its own.)
 */
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.delivery_attempts_default', '');

-- The event the worker emits when it switches a webhook off (see 1.1 SPEC).
INSERT INTO webhooks.event_types (name, description) VALUES
    ('webhook.disabled', 'A webhook was switched off after failing');
SELECT pg_catalog.pg_extension_config_dump('webhooks.event_types',
    $$WHERE name NOT IN ('member.joined', 'member.left', 'member.updated',
                         'payment.completed', 'payment.failed',
                         'payment.refunded', 'webhook.disabled')$$);

-- emit() and emit_trigger() append to webhooks.events (new entry points;
-- the 1.0 ones stay in the library for databases not yet updated).
CREATE OR REPLACE FUNCTION webhooks.emit(community_id text, event text,
                                         payload jsonb DEFAULT '{}')
RETURNS uuid
AS 'MODULE_PATHNAME', 'webhooks_emit_1_1'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION webhooks.emit(text, text, jsonb) IS
'Record an event of the community, delivered after commit to its active subscribed webhooks; runs with the caller''s rights';

CREATE OR REPLACE FUNCTION webhooks.emit_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'webhooks_emit_trigger_1_1'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION webhooks.emit_trigger() IS
'Row trigger: emit_trigger(event [, community column]) emits the row as the payload; runs with the caller''s rights';

-- Events: look one up, send one again, send again what failed.
CREATE TYPE webhooks.event AS (
    id           uuid,
    type         text,
    community_id text,
    payload      jsonb,
    created_at   timestamptz
);
COMMENT ON TYPE webhooks.event IS 'One kept event, as event_get returns it';

CREATE FUNCTION webhooks.event_get(community_id text, event_id uuid)
RETURNS webhooks.event
AS 'MODULE_PATHNAME', 'webhooks_event_get'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.event_get(text, uuid) IS
'One kept event of the community';

CREATE FUNCTION webhooks.webhook_replay(community_id text, id uuid,
                                        event_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'webhooks_replay'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_replay(text, uuid, uuid) IS
'Deliver a kept event to an active webhook again, as a new series of attempts';

CREATE FUNCTION webhooks.webhook_recover(community_id text, id uuid,
                                         since timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'webhooks_recover'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_recover(text, uuid, timestamptz) IS
'Queue again every kept event since a time whose delivery to the webhook failed; returns how many';

REVOKE ALL ON FUNCTION webhooks.event_get(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION webhooks.webhook_replay(text, uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION webhooks.webhook_recover(text, uuid, timestamptz) FROM PUBLIC;
