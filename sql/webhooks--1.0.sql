/* webhooks--1.0.sql: install script of the webhooks extension */

\echo Use "CREATE EXTENSION webhooks" to load this file. \quit

/*
 * Time-ordered UUIDs (version 7 layout: 48-bit Unix milliseconds, then
 * random bits).  Used for event ids and attempt-log ids so that their
 * indexes grow at the right edge instead of being written all over.
 */
CREATE FUNCTION webhooks.uuid_v7()
RETURNS uuid
AS 'MODULE_PATHNAME', 'webhooks_uuid_v7'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.uuid_v7() IS
'A new time-ordered (version 7) UUID';

-- The catalogue of subscribable event types.
CREATE TABLE webhooks.event_types (
    name        text PRIMARY KEY
                CHECK (name ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$'),
    description text
);
COMMENT ON TABLE webhooks.event_types IS
'Event types a webhook may subscribe to; operators may add rows';

INSERT INTO webhooks.event_types (name, description) VALUES
    ('member.joined', 'A member joined the community'),
    ('member.left', 'A member left the community'),
    ('member.updated', 'A member''s profile or role changed'),
    ('payment.completed', 'A payment succeeded'),
    ('payment.failed', 'A payment attempt failed'),
    ('payment.refunded', 'A payment was refunded');

-- Registered endpoints, one row per webhook, scoped by community.
CREATE TABLE webhooks.webhooks (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    community_id text NOT NULL CHECK (community_id <> ''),
    url          text NOT NULL CHECK (octet_length(url) <= 2048),
    events       text[] NOT NULL CHECK (cardinality(events) > 0),
    is_active    boolean NOT NULL DEFAULT true,
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_community_idx
    ON webhooks.webhooks (community_id, created_at, id);
COMMENT ON TABLE webhooks.webhooks IS
'Registered webhook endpoints; holds signing secrets, so never granted to PUBLIC';

/*
 * The delivery queue: one row per (event, webhook) still to be delivered
 * or finally failed.  A row is deleted once delivered; its attempts stay in
 * webhooks.delivery_attempts.  A logged table, so a crash loses nothing.
 *
 * state: 'pending' (waiting for next_attempt_at), 'sending' (claimed by the
 * worker; reset to 'pending' when the worker starts), 'failed' (retries
 * exhausted).
 */
CREATE TABLE webhooks.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      uuid NOT NULL,
    event_id        uuid NOT NULL,
    event           text NOT NULL,
    community_id    text NOT NULL,
    payload         jsonb NOT NULL,
    emitted_at      timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     int,
    last_error      text
);
-- Pending deliveries per webhook in due order: the worker's claims.
CREATE INDEX deliveries_due_idx
    ON webhooks.deliveries (webhook_id, next_attempt_at, id)
    WHERE state = 'pending';
-- Every delivery of a webhook: delete, deactivate, delivery_status.
CREATE INDEX deliveries_webhook_idx
    ON webhooks.deliveries (webhook_id);
-- A queue: rows are inserted, claimed and deleted all day.  Their dead
-- index entries sit at the head of the due index, where every claim starts,
-- until VACUUM removes them, so vacuum it early and without throttling.
ALTER TABLE webhooks.deliveries SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE webhooks.deliveries IS
'Deliveries not yet made: pending, being sent, or failed after the last retry';

-- Every delivery attempt, success or failure, including webhook_test pings.
CREATE TABLE webhooks.delivery_attempts (
    id               uuid PRIMARY KEY DEFAULT webhooks.uuid_v7(),
    webhook_id       uuid NOT NULL,
    event_id         uuid NOT NULL,
    event            text NOT NULL,
    attempt          int NOT NULL,
    status_code      int,
    response_time_ms int,
    error            text,
    response_body    text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_webhook_idx
    ON webhooks.delivery_attempts (webhook_id, created_at, id);
COMMENT ON TABLE webhooks.delivery_attempts IS
'One row per delivery attempt, newest read first by webhook_logs';

SELECT pg_catalog.pg_extension_config_dump('webhooks.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.delivery_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.event_types',
    $$WHERE name NOT IN ('member.joined', 'member.left', 'member.updated',
                         'payment.completed', 'payment.failed',
                         'payment.refunded')$$);

-- Row types returned by the API.
CREATE TYPE webhooks.webhook_with_secret AS (
    id           uuid,
    community_id text,
    url          text,
    events       text[],
    is_active    boolean,
    secret       text,
    created_at   timestamptz,
    updated_at   timestamptz
);
COMMENT ON TYPE webhooks.webhook_with_secret IS
'A webhook as returned once, by webhook_create, with its signing secret';

CREATE TYPE webhooks.webhook AS (
    id           uuid,
    community_id text,
    url          text,
    events       text[],
    is_active    boolean,
    created_at   timestamptz,
    updated_at   timestamptz
);
COMMENT ON TYPE webhooks.webhook IS
'A webhook as listed: every field but the secret';

CREATE TYPE webhooks.delivery_log AS (
    id               uuid,
    event            text,
    status_code      int,
    response_time_ms int,
    created_at       timestamptz,
    event_id         uuid,
    attempt          int,
    error            text
);
COMMENT ON TYPE webhooks.delivery_log IS
'One delivery attempt as returned by webhook_logs';

-- Management API.  SECURITY DEFINER: callers need EXECUTE, not table access.
CREATE FUNCTION webhooks.webhook_create(community_id text, url text,
                                        events text[],
                                        is_active boolean DEFAULT true)
RETURNS webhooks.webhook_with_secret
AS 'MODULE_PATHNAME', 'webhooks_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_create(text, text, text[], boolean) IS
'Register an endpoint; the only call besides webhook_secret that shows the secret';

CREATE FUNCTION webhooks.webhook_list(community_id text)
RETURNS SETOF webhooks.webhook
AS 'MODULE_PATHNAME', 'webhooks_list'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_list(text) IS
'The community''s webhooks, oldest first';

CREATE FUNCTION webhooks.webhook_get(community_id text, id uuid)
RETURNS webhooks.webhook
AS 'MODULE_PATHNAME', 'webhooks_get'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_get(text, uuid) IS
'One webhook of the community';

CREATE FUNCTION webhooks.webhook_update(community_id text, id uuid,
                                        url text DEFAULT NULL,
                                        events text[] DEFAULT NULL,
                                        is_active boolean DEFAULT NULL)
RETURNS webhooks.webhook
AS 'MODULE_PATHNAME', 'webhooks_update'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_update(text, uuid, text, text[], boolean) IS
'Change any subset of url, events, is_active; NULL leaves a field as it is';

CREATE FUNCTION webhooks.webhook_delete(community_id text, id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'webhooks_delete'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_delete(text, uuid) IS
'Delete a webhook for good, with its pending deliveries';

CREATE FUNCTION webhooks.webhook_secret(community_id text, id uuid)
RETURNS text
AS 'MODULE_PATHNAME', 'webhooks_secret'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_secret(text, uuid) IS
'The webhook''s signing secret (whsec_...)';

CREATE FUNCTION webhooks.webhook_logs(community_id text, id uuid,
                                      page int DEFAULT 1,
                                      per_page int DEFAULT 20)
RETURNS SETOF webhooks.delivery_log
AS 'MODULE_PATHNAME', 'webhooks_logs'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_logs(text, uuid, int, int) IS
'Delivery attempts of a webhook, newest first, per_page 1..50';

CREATE FUNCTION webhooks.webhook_test(community_id text, id uuid,
                                      OUT status_code int,
                                      OUT response_time_ms int,
                                      OUT error text)
RETURNS record
AS 'MODULE_PATHNAME', 'webhooks_test'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.webhook_test(text, uuid) IS
'Send a signed test.ping now and wait for the answer; the attempt is logged';

-- Emitting events.  Hot paths: SECURITY DEFINER without a SET clause (the
-- C code schema-qualifies every name, so the caller's search_path is moot).
CREATE FUNCTION webhooks.emit(community_id text, event text,
                              payload jsonb DEFAULT '{}')
RETURNS uuid
AS 'MODULE_PATHNAME', 'webhooks_emit'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;
COMMENT ON FUNCTION webhooks.emit(text, text, jsonb) IS
'Queue an event for every active subscribed webhook of the community, at commit';

CREATE FUNCTION webhooks.emit_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'webhooks_emit_trigger'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;
COMMENT ON FUNCTION webhooks.emit_trigger() IS
'Row trigger: emit_trigger(event [, community column]) emits the row as the payload';

-- What is queued, per webhook.
CREATE VIEW webhooks.delivery_status AS
SELECT w.community_id,
       w.id AS webhook_id,
       w.url,
       w.is_active,
       count(d.id) FILTER (WHERE d.state = 'pending' AND d.attempts = 0)
           AS pending,
       count(d.id) FILTER (WHERE d.state = 'sending') AS in_flight,
       count(d.id) FILTER (WHERE d.state = 'pending' AND d.attempts > 0)
           AS retrying,
       count(d.id) FILTER (WHERE d.state = 'failed') AS failed,
       min(d.next_attempt_at) FILTER (WHERE d.state = 'pending')
           AS next_attempt_at,
       (array_agg(d.last_error ORDER BY d.last_attempt_at DESC)
           FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
FROM webhooks.webhooks w
LEFT JOIN webhooks.deliveries d ON d.webhook_id = w.id
GROUP BY w.id;
COMMENT ON VIEW webhooks.delivery_status IS
'Per webhook: deliveries pending, in flight, due for retry and failed';

/*
 * Nothing is readable or callable by PUBLIC: tables hold secrets and
 * payloads, and the functions are the way in.  Grant EXECUTE on the
 * functions (and SELECT on delivery_status) to the application's role.
 */
REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON SCHEMA webhooks FROM PUBLIC;
