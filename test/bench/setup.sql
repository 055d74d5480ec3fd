-- The benchmark's own objects, in schema bench of the throwaway cluster.
CREATE EXTENSION webhooks;
CREATE SCHEMA bench;

-- One row per emitting transaction: its commit timestamp
-- (pg_xact_commit_timestamp(xmin), track_commit_timestamp is on) is the
-- start of a delivery measurement; started is when the transaction began
-- emitting.
CREATE TABLE bench.marks (
    label   text PRIMARY KEY,
    started timestamptz NOT NULL
);

-- A member.joined payload that makes a delivery body of about 600 bytes.
CREATE FUNCTION bench.payload(i bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object(
    'member', jsonb_build_object(
        'id', i,
        'name', 'Member ' || i,
        'email', 'member' || i || '@example.com',
        'role', 'member',
        'plan', 'pro',
        'locale', 'en-GB'),
    'community', jsonb_build_object(
        'name', 'Benchmark community',
        'url', 'https://example.com/c/benchmark'),
    'note', repeat('x', 240))
$$;

-- The latency scenario: event ids emitted, one transaction each.
CREATE TABLE bench.lat (
    run      int NOT NULL,
    event_id uuid NOT NULL,
    warm     boolean NOT NULL DEFAULT false
);

-- The caller-cost scenario: the same insert with and without the trigger.
CREATE TABLE bench.members_plain (
    id           bigserial PRIMARY KEY,
    community_id text NOT NULL,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench.members_trig (
    id           bigserial PRIMARY KEY,
    community_id text NOT NULL,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER members_joined AFTER INSERT ON bench.members_trig
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('member.joined');

-- The same insert with a plpgsql trigger that appends the row as JSON to
-- a table without indexes: what an event costs at the least (PERF-NOTES).
CREATE TABLE bench.members_outbox (LIKE bench.members_plain INCLUDING ALL);
CREATE TABLE bench.outbox (payload jsonb NOT NULL);
CREATE FUNCTION bench.append_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.outbox (payload) VALUES (to_jsonb(NEW));
    RETURN NULL;
END $$;
CREATE TRIGGER members_outbox AFTER INSERT ON bench.members_outbox
    FOR EACH ROW EXECUTE FUNCTION bench.append_outbox();
