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
 * Where reading stands: every event of a transaction visible in
 * `snapshot` is done (its deliveries made, failed or queued), and so are
 * the events of the window from `snapshot` to `upto` up to (after_txid,
 * after_id) in (txid, id) order, when upto is set.  An event is read once
 * its transaction is visible in a read's snapshot and was not in the
 * previous one's.  The delivery worker reads ahead of this position into
 * memory and moves it only when all it read before is done, so after a
 * crash it reads again from here (src/reader.c).  Not dumped: a restored
 * database starts reading from its own present, and reads no event older
 * than that (the txids of restored events are another server's).
 */
CREATE TABLE webhooks.reader (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    snapshot   pg_snapshot NOT NULL,
    read_at    timestamptz NOT NULL DEFAULT now(),
    since      timestamptz NOT NULL DEFAULT now(),
    upto       pg_snapshot,
    after_txid xid8,
    after_id   uuid,
    CHECK ((upto IS NULL) = (after_txid IS NULL)
           AND (upto IS NULL) = (after_id IS NULL))
);
COMMENT ON COLUMN webhooks.reader.read_at IS
'When `snapshot` was taken: attempts of the events read after it are no older';
COMMENT ON COLUMN webhooks.reader.since IS
'When reading began in this database: older events (restored from a dump, whose txids belong to another server) are never read';
COMMENT ON COLUMN webhooks.reader.upto IS
'A window begun after `snapshot`, done up to (after_txid, after_id)';
INSERT INTO webhooks.reader (snapshot) VALUES (pg_current_snapshot());
COMMENT ON TABLE webhooks.reader IS
'Where reading webhooks.events stands: what is done (the worker reads ahead of it in memory)';

/*
 * The deliveries of the events of one window (the transactions visible in
 * cur and not in prev), after (after_txid, after_id) in (txid, id) order:
 * one per active subscribed webhook of the event's community whose filter,
 * if any, the payload matches.  With dedupe, deliveries that already have
 * a queue row or an attempt logged since dedupe_since are left out: a
 * window read again after a crash repeats only what was in flight.
 */
CREATE FUNCTION webhooks.queue_window(prev pg_snapshot, cur pg_snapshot,
                                      after_txid xid8, after_id uuid,
                                      since timestamptz, dedupe_since timestamptz,
                                      OUT events bigint, OUT queued bigint)
RETURNS record
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ev AS (
        -- in progress at prev, committed since
        SELECT e.id, e.type, e.community_id, e.created_at, e.txid,
               e.payload_bytes, e.payload
        FROM pg_snapshot_xip(prev) x(txid), webhooks.events e
        WHERE e.txid = x.txid AND pg_visible_in_snapshot(x.txid, cur)
          AND (e.txid, e.id) > (after_txid, after_id)
          AND e.created_at >= since
        UNION ALL
        -- started after prev, committed since
        SELECT e.id, e.type, e.community_id, e.created_at, e.txid,
               e.payload_bytes, e.payload
        FROM webhooks.events e
        WHERE e.txid >= pg_snapshot_xmax(prev)
          AND e.txid < pg_snapshot_xmax(cur)
          AND pg_visible_in_snapshot(e.txid, cur)
          AND (e.txid, e.id) > (after_txid, after_id)
          AND e.created_at >= since
    ), attempted AS MATERIALIZED (
        -- what was attempted since dedupe_since: one range of the log's
        -- (webhook_id, created_at) index per webhook, not one per delivery
        SELECT a.event_id, a.webhook_id
        FROM webhooks.webhooks w CROSS JOIN LATERAL (
            SELECT a.event_id, a.webhook_id FROM webhooks.delivery_attempts a
            WHERE a.webhook_id = w.id AND a.created_at >= dedupe_since) a
        WHERE dedupe_since IS NOT NULL
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
         AND (w.filter IS NULL OR webhooks.filter_matches(ev.payload, w.filter))
        WHERE dedupe_since IS NULL OR (
              NOT EXISTS (SELECT 1 FROM webhooks.deliveries d
                          WHERE d.event_id = ev.id AND d.webhook_id = w.id)
              AND NOT EXISTS (SELECT 1 FROM attempted t
                              WHERE t.event_id = ev.id AND t.webhook_id = w.id))
        -- in the order of reading, and of the webhooks' creation
        ORDER BY ev.txid, ev.id, w.created_at, w.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM q)
$$;
COMMENT ON FUNCTION webhooks.queue_window(pg_snapshot, pg_snapshot, xid8, uuid, timestamptz, timestamptz) IS
'Queue the deliveries of one window of events (used by read_events)';
REVOKE ALL ON FUNCTION webhooks.queue_window(pg_snapshot, pg_snapshot, xid8, uuid, timestamptz, timestamptz) FROM PUBLIC;

/*
 * Read, as the delivery worker would, the events committed since the
 * position, queue their deliveries and move the position, in one
 * transaction.  For a database whose worker is not running (tests, or an
 * operator between restarts): the running worker reads on its own, into
 * memory, holding the advisory lock checked here.  What a worker may
 * already have sent from a partial window, or after the position, is
 * left out (dedupe), so nothing is sent twice for it.
 */
CREATE FUNCTION webhooks.read_events(OUT events bigint, OUT queued bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos webhooks.reader;
    cur pg_snapshot;
    e1 bigint := 0;
    q1 bigint := 0;
BEGIN
    -- A transaction's own events count as committed in its own snapshot:
    -- a read there would skip what it emits after.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'webhooks.read_events() must not run in a transaction that has written'
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it in a transaction of its own.';
    END IF;
    -- The worker's lock (src/reader.c: WEBHOOKS_READER_LOCK).
    IF NOT pg_try_advisory_xact_lock(2011963244, 1) THEN
        RAISE EXCEPTION 'the delivery worker of this database is reading its events'
            USING ERRCODE = 'object_in_use',
                  HINT = 'It reads what is committed by itself, moments after commit.';
    END IF;
    -- The window's end, taken while this transaction has no xid yet: one
    -- it gets later (the row lock below, or an emit after this call) is
    -- at or past cur's xmax, so the next read sees its events.  (One read
    -- at a time: the advisory lock above; the previous read committed
    -- before this statement's snapshot.)
    cur := pg_current_snapshot();
    SELECT * INTO pos FROM webhooks.reader FOR UPDATE;
    IF pos.upto IS NOT NULL THEN
        SELECT w.events, w.queued INTO e1, q1
        FROM webhooks.queue_window(pos.snapshot, pos.upto, pos.after_txid,
                                   pos.after_id, pos.since, pos.read_at) w;
        pos.snapshot := pos.upto;
    END IF;
    SELECT w.events + e1, w.queued + q1 INTO events, queued
    FROM webhooks.queue_window(pos.snapshot, cur, '0',
                               '00000000-0000-0000-0000-000000000000',
                               pos.since, pos.read_at) w;
    UPDATE webhooks.reader r
    SET snapshot = cur, read_at = now(), upto = NULL, after_txid = NULL,
        after_id = NULL;
END
$$;
COMMENT ON FUNCTION webhooks.read_events() IS
'Queue the deliveries of the events committed since the last read, where no delivery worker runs';
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
-- A delivery by its event: a window read again after a crash leaves out
-- what was queued from it before (src/reader.c).
CREATE INDEX deliveries_event_idx ON webhooks.deliveries (event_id);
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

/*
 * A webhook's life (1.1): secret rotation, switching off, filters, headers.
 *
 *   previous_secret, previous_secret_until
 *       webhook_rotate_secret keeps the replaced secret for the overlap;
 *       every request signs with both until then, the new one first.
 *   filter, headers
 *       a jsonpath the payload must match (payload @? filter), and extra
 *       request headers (a JSON object of strings, checked by the library).
 *   disabled_reason, disabled_at
 *       set when the worker switched the webhook off (410 Gone, or every
 *       attempt failing for webhooks.disable_after); cleared on
 *       reactivation.
 *   active_since
 *       when it was last activated: failures before it do not count
 *       towards webhooks.disable_after.
 */
/*
 * Whether a payload matches a webhook's filter.  jsonb_path_exists in
 * silent mode, with time zones allowed: a path that finds nothing, or hits
 * a type mismatch, does not match.  Whatever error a filter may still
 * raise (webhook_create refuses the kinds known) is a non-match too: one
 * community's filter must never stop the worker's read for everyone.
 */
CREATE FUNCTION webhooks.filter_matches(payload jsonb, filter jsonpath)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN pg_catalog.jsonb_path_exists_tz(payload, filter, '{}', true);
EXCEPTION WHEN OTHERS THEN
    RETURN false;
END
$$;
COMMENT ON FUNCTION webhooks.filter_matches(jsonb, jsonpath) IS
'Whether a payload matches a filter; an error is a non-match (used by read_events)';
REVOKE ALL ON FUNCTION webhooks.filter_matches(jsonb, jsonpath) FROM PUBLIC;

ALTER TABLE webhooks.webhooks
    ADD COLUMN previous_secret       text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD COLUMN filter                jsonpath,
    ADD COLUMN headers               jsonb,
    ADD COLUMN disabled_reason       text,
    ADD COLUMN disabled_at           timestamptz,
    ADD COLUMN active_since          timestamptz NOT NULL DEFAULT now();
UPDATE webhooks.webhooks SET active_since = created_at;

/*
 * Any change to the webhooks, however made (the API, the worker switching
 * one off, an operator's SQL, a restore), tells the worker at commit: its
 * copy of the webhooks and their subscriptions is out of date, and what it
 * read for a changed webhook and has not yet sent is claimed again from
 * the queue, as the webhook now is.  Row triggers, so that a statement
 * that changes nothing costs nothing; TRUNCATE has only statements.
 */
CREATE FUNCTION webhooks.note_change() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'webhooks_note_change';
REVOKE ALL ON FUNCTION webhooks.note_change() FROM PUBLIC;
CREATE TRIGGER webhooks_changed
    AFTER INSERT OR UPDATE OR DELETE ON webhooks.webhooks
    FOR EACH ROW EXECUTE FUNCTION webhooks.note_change();
CREATE TRIGGER webhooks_truncated
    AFTER TRUNCATE ON webhooks.webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks.note_change();
-- (also where session_replication_role = replica: a replica's apply)
ALTER TABLE webhooks.webhooks ENABLE ALWAYS TRIGGER webhooks_changed;
ALTER TABLE webhooks.webhooks ENABLE ALWAYS TRIGGER webhooks_truncated;

/*
 * emit() remembers which event types exist; a statement that changes
 * event_types makes every session forget them when it commits.
 */
CREATE FUNCTION webhooks.note_event_types_change() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'webhooks_event_types_changed';
REVOKE ALL ON FUNCTION webhooks.note_event_types_change() FROM PUBLIC;
CREATE TRIGGER event_types_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks.note_event_types_change();
ALTER TABLE webhooks.event_types ENABLE ALWAYS TRIGGER event_types_changed;

/*
 * Health per webhook, kept by the worker alone, once per batch of attempts
 * it records (an application never writes or locks these rows, so the
 * worker never waits for one): the times of the last success and failure,
 * the first failure since the last success, the last 410 Gone (the webhook
 * is switched off from here, in the same transaction or, if an
 * application holds the webhook's row, a little later), and counters for
 * metrics.
 * There is no foreign key (webhook_delete would then lock the worker's
 * row); the worker removes the rows of deleted webhooks.
 */
CREATE TABLE webhooks.webhook_health (
    webhook_id      uuid PRIMARY KEY,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    failing_since   timestamptz,
    gone_at         timestamptz,
    delivered       bigint NOT NULL DEFAULT 0,
    failed_attempts bigint NOT NULL DEFAULT 0,
    retries         bigint NOT NULL DEFAULT 0,
    gave_up         bigint NOT NULL DEFAULT 0,
    disabled        bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
COMMENT ON TABLE webhooks.webhook_health IS
'Per webhook, kept by the delivery worker: last success and failure, failing since, and counters';
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhook_health', '');

/*
 * Attempts per webhook, hour and response-time bucket, kept by the worker
 * with the health rows (one upsert per batch) for the last two days:
 * webhook_stats reads at most 25 hours of these, whatever the size of the
 * log.  Bucket b holds the times up to webhooks.response_buckets()[b] ms
 * (the last one, the rest); percentiles are read to the bucket.
 */
CREATE TABLE webhooks.webhook_hourly (
    webhook_id uuid NOT NULL,
    hour       timestamptz NOT NULL,
    bucket     smallint NOT NULL,
    attempts   int NOT NULL,
    successes  int NOT NULL,
    PRIMARY KEY (webhook_id, hour, bucket)
) WITH (fillfactor = 70);
COMMENT ON TABLE webhooks.webhook_hourly IS
'Per webhook, hour and response-time bucket: attempts and successes of the last two days (webhook_stats)';
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhook_hourly', '');
REVOKE ALL ON webhooks.webhook_hourly FROM PUBLIC;

-- The upper bounds (ms) of the response-time buckets: about 25 % apart.
CREATE FUNCTION webhooks.response_buckets()
RETURNS int[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{1,2,3,4,5,6,8,10,12,15,20,25,30,40,50,60,80,100,120,150,200,250,300,400,500,600,800,1000,1200,1500,2000,2500,3000,4000,5000,6000,8000,10000,12000,15000,20000,25000,30000,40000,50000,60000}'::int[];
COMMENT ON FUNCTION webhooks.response_buckets() IS
'Upper bounds (ms) of webhook_hourly''s response-time buckets';
REVOKE ALL ON FUNCTION webhooks.response_buckets() FROM PUBLIC;

ALTER TYPE webhooks.webhook
    ADD ATTRIBUTE filter jsonpath,
    ADD ATTRIBUTE headers jsonb,
    ADD ATTRIBUTE disabled_reason text,
    ADD ATTRIBUTE disabled_at timestamptz;
ALTER TYPE webhooks.webhook_with_secret
    ADD ATTRIBUTE filter jsonpath,
    ADD ATTRIBUTE headers jsonb,
    ADD ATTRIBUTE disabled_reason text,
    ADD ATTRIBUTE disabled_at timestamptz;

/*
 * webhook_create and webhook_update take filter and headers: new
 * functions in place of 1.0's, keeping the EXECUTE rights granted on them.
 */
CREATE FUNCTION webhooks.copy_execute_grants(old regprocedure, new regprocedure)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee::regrole AS role, a.is_grantable
             FROM pg_proc p, aclexplode(p.proacl) a
             WHERE p.oid = old AND a.privilege_type = 'EXECUTE'
               AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', new, g.role,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    -- Grants made in an extension script count as the extension's own
    -- (pg_init_privs), which pg_dump leaves out; these are the
    -- application's, so the new function's initial privileges are the
    -- old one's, and a dump keeps the grants.
    UPDATE pg_catalog.pg_init_privs n SET initprivs = o.initprivs
    FROM pg_catalog.pg_init_privs o
    WHERE n.objoid = new AND n.classoid = 'pg_catalog.pg_proc'::regclass
      AND o.objoid = old AND o.classoid = 'pg_catalog.pg_proc'::regclass
      AND n.objsubid = 0 AND o.objsubid = 0;
END
$$;

ALTER FUNCTION webhooks.webhook_create(text, text, text[], boolean)
    RENAME TO webhook_create_1_0;
CREATE FUNCTION webhooks.webhook_create(community_id text, url text,
                                        events text[],
                                        is_active boolean DEFAULT true,
                                        filter jsonpath DEFAULT NULL,
                                        headers jsonb DEFAULT NULL)
RETURNS webhooks.webhook_with_secret
AS 'MODULE_PATHNAME', 'webhooks_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_create(text, text, text[], boolean, jsonpath, jsonb) IS
'Register an endpoint; the only call besides webhook_secret and webhook_rotate_secret that shows the secret';
REVOKE ALL ON FUNCTION webhooks.webhook_create(text, text, text[], boolean, jsonpath, jsonb) FROM PUBLIC;
SELECT webhooks.copy_execute_grants('webhooks.webhook_create_1_0(text, text, text[], boolean)',
    'webhooks.webhook_create(text, text, text[], boolean, jsonpath, jsonb)');
DROP FUNCTION webhooks.webhook_create_1_0(text, text, text[], boolean);

ALTER FUNCTION webhooks.webhook_update(text, uuid, text, text[], boolean)
    RENAME TO webhook_update_1_0;
CREATE FUNCTION webhooks.webhook_update(community_id text, id uuid,
                                        url text DEFAULT NULL,
                                        events text[] DEFAULT NULL,
                                        is_active boolean DEFAULT NULL,
                                        filter jsonpath DEFAULT NULL,
                                        headers jsonb DEFAULT NULL)
RETURNS webhooks.webhook
AS 'MODULE_PATHNAME', 'webhooks_update'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_update(text, uuid, text, text[], boolean, jsonpath, jsonb) IS
'Change any subset of url, events, is_active, filter, headers; NULL leaves a field as it is';
REVOKE ALL ON FUNCTION webhooks.webhook_update(text, uuid, text, text[], boolean, jsonpath, jsonb) FROM PUBLIC;
SELECT webhooks.copy_execute_grants('webhooks.webhook_update_1_0(text, uuid, text, text[], boolean)',
    'webhooks.webhook_update(text, uuid, text, text[], boolean, jsonpath, jsonb)');
DROP FUNCTION webhooks.webhook_update_1_0(text, uuid, text, text[], boolean);
DROP FUNCTION webhooks.copy_execute_grants(regprocedure, regprocedure);

CREATE FUNCTION webhooks.webhook_rotate_secret(community_id text, id uuid,
                                               overlap interval DEFAULT '24 hours')
RETURNS text
AS 'MODULE_PATHNAME', 'webhooks_rotate_secret'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_rotate_secret(text, uuid, interval) IS
'A new signing secret at once; requests are signed with the old one too for the overlap';
REVOKE ALL ON FUNCTION webhooks.webhook_rotate_secret(text, uuid, interval) FROM PUBLIC;

CREATE TYPE webhooks.webhook_stats AS (
    pending          bigint,
    failed           bigint,
    last_success_at  timestamptz,
    last_failure_at  timestamptz,
    failing_since    timestamptz,
    attempts_24h     bigint,
    success_rate_24h numeric,
    p50_ms_24h       int,
    p95_ms_24h       int
);
COMMENT ON TYPE webhooks.webhook_stats IS 'One webhook''s health, as webhook_stats returns it';

CREATE FUNCTION webhooks.webhook_stats(community_id text, id uuid)
RETURNS webhooks.webhook_stats
AS 'MODULE_PATHNAME', 'webhooks_stats'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_stats(text, uuid) IS
'A webhook''s health: queue, last success and failure, and the last 24 hours'' attempts';
REVOKE ALL ON FUNCTION webhooks.webhook_stats(text, uuid) FROM PUBLIC;

/*
 * Metrics for an operator's exporter (postgres_exporter, sql_exporter):
 * counters the worker keeps (never counted from the log, so a scrape costs
 * the same at any log size) and the queue as it is now.  Granted to
 * pg_monitor; they show ids, never URLs, secrets or headers.
 */
CREATE VIEW webhooks.metrics AS
SELECT w.community_id,
       w.id AS webhook_id,
       w.is_active,
       coalesce(h.delivered, 0) AS delivered_total,
       coalesce(h.failed_attempts, 0) AS failed_attempts_total,
       coalesce(h.retries, 0) AS retries_total,
       coalesce(h.gave_up, 0) AS gave_up_total,
       coalesce(h.disabled, 0) AS disabled_total,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.in_flight, 0) AS in_flight,
       coalesce(extract(epoch FROM now() - q.oldest), 0)::float8
           AS oldest_pending_seconds
FROM webhooks.webhooks w
LEFT JOIN webhooks.webhook_health h ON h.webhook_id = w.id
LEFT JOIN (
    SELECT d.webhook_id,
           count(*) FILTER (WHERE d.state = 'pending') AS pending,
           count(*) FILTER (WHERE d.state = 'sending') AS in_flight,
           min(d.emitted_at) AS oldest
    FROM webhooks.deliveries d
    WHERE d.state <> 'failed'
    GROUP BY d.webhook_id) q ON q.webhook_id = w.id;
COMMENT ON VIEW webhooks.metrics IS
'Per webhook: counters kept by the worker (delivered, failed attempts, retries, given up, disabled) and its queue now';

CREATE VIEW webhooks.metrics_total AS
SELECT count(*) AS webhooks,
       count(*) FILTER (WHERE is_active) AS active_webhooks,
       coalesce(sum(delivered_total), 0)::bigint AS delivered_total,
       coalesce(sum(failed_attempts_total), 0)::bigint AS failed_attempts_total,
       coalesce(sum(retries_total), 0)::bigint AS retries_total,
       coalesce(sum(gave_up_total), 0)::bigint AS gave_up_total,
       coalesce(sum(disabled_total), 0)::bigint AS disabled_total,
       coalesce(sum(pending), 0)::bigint AS pending,
       coalesce(sum(in_flight), 0)::bigint AS in_flight,
       coalesce(max(oldest_pending_seconds), 0) AS oldest_pending_seconds
FROM webhooks.metrics;
COMMENT ON VIEW webhooks.metrics_total IS
'The sums of webhooks.metrics: one row for the whole installation';

REVOKE ALL ON webhooks.metrics, webhooks.metrics_total FROM PUBLIC;
GRANT USAGE ON SCHEMA webhooks TO pg_monitor;
GRANT SELECT ON webhooks.metrics, webhooks.metrics_total TO pg_monitor;
REVOKE ALL ON webhooks.webhook_health FROM PUBLIC;
