--
-- create: installing the extension, its objects, privileges and settings
--
CREATE EXTENSION webhooks;

-- A helper the other regression files use: run one statement and show its
-- outcome on one line: OK, or the SQLSTATE, message, detail and hint of its
-- error.  UUIDs are replaced by <uuid> so that the output is stable.
CREATE FUNCTION public.sqlstate_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    det text;
    hnt text;
    res text;
BEGIN
    EXECUTE sql;
    RETURN 'OK';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                            hnt = PG_EXCEPTION_HINT;
    res := SQLSTATE || ': ' || msg;
    IF det <> '' THEN
        res := res || ' DETAIL: ' || det;
    END IF;
    IF hnt <> '' THEN
        res := res || ' HINT: ' || hnt;
    END IF;
    RETURN regexp_replace(res,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
        '<uuid>', 'g');
END
$$;

-- A delivery's payload is its event's, as the worker's claim reads it.
CREATE FUNCTION public.payload_of(event_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT e.payload FROM webhooks.events e WHERE e.id = event_id
$$;

-- The schema is fixed: not relocatable, and named webhooks.
SELECT e.extname, n.nspname, e.extrelocatable, e.extversion
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'webhooks';
SELECT sqlstate_of('ALTER EXTENSION webhooks SET SCHEMA public');

-- Every object of the extension.
\dx+ webhooks

-- The functions, with their full signatures and properties.
SELECT p.oid::regprocedure AS function,
       pg_get_function_result(p.oid) AS returns,
       p.provolatile, p.proisstrict, p.prosecdef, p.proparallel, p.proconfig
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
ORDER BY p.proname;

-- The seeded event types.
SELECT name, description FROM webhooks.event_types ORDER BY name;

-- pg_dump keeps the user data: the tables are registered as config tables.
SELECT c.relname, cond
FROM pg_extension e,
     unnest(e.extconfig, e.extcondition) AS x(reloid, cond)
     JOIN pg_class c ON c.oid = x.reloid
WHERE e.extname = 'webhooks'
ORDER BY c.relname;

--
-- Privileges: PUBLIC has nothing in the schema.
--
CREATE ROLE regress_nobody;
CREATE ROLE regress_app;

SELECT has_schema_privilege('regress_nobody', 'webhooks', 'USAGE') AS usage,
       has_schema_privilege('regress_nobody', 'webhooks', 'CREATE') AS create;

-- No table, view or sequence grants anything to PUBLIC, or to a fresh role.
SELECT c.relname, c.relkind,
       has_table_privilege('regress_nobody', c.oid,
           'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER') AS any_table_priv,
       CASE WHEN c.relkind = 'S'
            THEN has_sequence_privilege('regress_nobody', c.oid,
                                        'USAGE,SELECT,UPDATE')
       END AS any_seq_priv,
       EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
           AS public_in_acl
FROM pg_class c
WHERE c.relnamespace = 'webhooks'::regnamespace
  AND c.relkind IN ('r', 'v', 'S', 'p', 'm', 'f')
ORDER BY c.relname;

-- No function is executable by PUBLIC (a NULL proacl would mean it is).
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_nobody', p.oid, 'EXECUTE') AS execute,
       p.proacl IS NULL
           OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)
           AS public_can_execute
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace
ORDER BY p.proname;

-- A role without grants can call nothing.
SET ROLE regress_nobody;
SELECT sqlstate_of($$SELECT webhooks.webhook_list('c1')$$);
SELECT sqlstate_of($$SELECT webhooks.emit('c1', 'member.joined')$$);
RESET ROLE;

-- The application's role: schema usage and execute on the functions is
-- enough to manage webhooks, but the tables (with the secrets) stay closed.
GRANT USAGE ON SCHEMA webhooks TO regress_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO regress_app;
SET ROLE regress_app;
SELECT community_id, url, events, is_active,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok
FROM webhooks.webhook_create('app-community', 'https://example.com/hook',
                             ARRAY['member.joined']);
SELECT community_id, url, events, is_active
FROM webhooks.webhook_list('app-community');
SELECT webhooks.webhook_secret('app-community', id) ~ '^whsec_[A-Za-z0-9+/]{43}=$'
    AS secret_ok
FROM webhooks.webhook_list('app-community');
SELECT webhooks.emit('app-community', 'member.joined', '{"n": 1}') IS NOT NULL
    AS emitted;
SELECT sqlstate_of('SELECT * FROM webhooks.webhooks');
SELECT sqlstate_of('SELECT * FROM webhooks.deliveries');
SELECT sqlstate_of('SELECT * FROM webhooks.delivery_attempts');
SELECT sqlstate_of('SELECT * FROM webhooks.delivery_status');
SELECT sqlstate_of('SELECT * FROM webhooks.events');
SELECT sqlstate_of('SELECT * FROM webhooks.reader');
SELECT sqlstate_of($$INSERT INTO webhooks.event_types VALUES ('x.y')$$);
RESET ROLE;

-- Clean up what the application role made.
SELECT count(*) FROM webhooks.events WHERE community_id = 'app-community';
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.webhooks;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks FROM regress_app;
REVOKE USAGE ON SCHEMA webhooks FROM regress_app;

--
-- Settings and their defaults.  database_name is set by the test's
-- configuration; boot_val shows the built-in default.
--
SELECT name, setting, unit, boot_val, context, vartype, min_val, max_val
FROM pg_settings
WHERE name LIKE 'webhooks.%'
ORDER BY name;
SHOW webhooks.timeout;
SHOW webhooks.retry_schedule;
SHOW webhooks.allow_http;
SHOW webhooks.allow_private_addresses;
SHOW webhooks.ssl_ca_file;
SHOW webhooks.database_name;
SHOW webhooks.max_concurrent_requests;
SHOW webhooks.max_requests_per_endpoint;
SHOW webhooks.batch_size;
SHOW webhooks.log_retention;

-- The prefix is reserved: a misspelt setting is an error.
SELECT sqlstate_of('SET webhooks.timout = ''2s''');

-- A non-superuser may not change the security settings...
SET ROLE regress_nobody;
SELECT sqlstate_of('SET webhooks.allow_http = on');
SELECT sqlstate_of('SET webhooks.allow_private_addresses = on');
SELECT sqlstate_of('SET webhooks.ssl_ca_file = ''/tmp/evil.pem''');
SHOW webhooks.allow_http;
SHOW webhooks.allow_private_addresses;
SHOW webhooks.ssl_ca_file;
-- ...but may change the timeout, a time setting.
SET webhooks.timeout = '2s';
SHOW webhooks.timeout;
SET webhooks.timeout = '500ms';
SHOW webhooks.timeout;
SET webhooks.timeout = 3000;
SHOW webhooks.timeout;
SELECT sqlstate_of('SET webhooks.timeout = 0');
SELECT sqlstate_of('SET webhooks.timeout = ''soon''');
RESET webhooks.timeout;
SHOW webhooks.timeout;
RESET ROLE;

-- A superuser may.
SET webhooks.allow_http = on;
SHOW webhooks.allow_http;
RESET webhooks.allow_http;
SHOW webhooks.allow_http;

-- The server-wide settings cannot be changed in a session.
SELECT sqlstate_of('SET webhooks.retry_schedule = ''1s''');
SELECT sqlstate_of('SET webhooks.database_name = ''other''');
SELECT sqlstate_of('SET webhooks.batch_size = 10');

-- ALTER SYSTEM checks the retry schedule before writing it.
\set SHOW_CONTEXT never
ALTER SYSTEM SET webhooks.retry_schedule = '5s,nonsense';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhooks.retry_schedule = '5s,,10s';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhooks.retry_schedule = '5 parsecs';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET webhooks.retry_schedule = '-5s';
\echo :LAST_ERROR_SQLSTATE
SELECT repeat('1s,', 50) || '1s' AS too_many \gset
ALTER SYSTEM SET webhooks.retry_schedule = :'too_many';
\echo :LAST_ERROR_SQLSTATE
-- Nothing was written by the rejected ones.
SELECT count(*) FROM pg_file_settings WHERE name = 'webhooks.retry_schedule';
-- Valid schedules are written to postgresql.auto.conf.
ALTER SYSTEM SET webhooks.retry_schedule = '300ms,600ms';
SELECT setting, applied, error FROM pg_file_settings
WHERE name = 'webhooks.retry_schedule';
ALTER SYSTEM SET webhooks.retry_schedule = '1d';
SELECT setting, applied, error FROM pg_file_settings
WHERE name = 'webhooks.retry_schedule';
ALTER SYSTEM SET webhooks.retry_schedule = ' 5s , 1min ';
SELECT setting, applied, error FROM pg_file_settings
WHERE name = 'webhooks.retry_schedule';
SELECT repeat('1s,', 49) || '1s' AS fifty \gset
ALTER SYSTEM SET webhooks.retry_schedule = :'fifty';
-- An empty schedule means a single attempt.
ALTER SYSTEM SET webhooks.retry_schedule = '';
SELECT setting, applied, error FROM pg_file_settings
WHERE name = 'webhooks.retry_schedule';
ALTER SYSTEM RESET webhooks.retry_schedule;
SELECT count(*) FROM pg_file_settings WHERE name = 'webhooks.retry_schedule';
\set SHOW_CONTEXT errors
-- Nothing was applied: the session still has the default.
SHOW webhooks.retry_schedule;

-- The security settings cannot be changed by ALTER SYSTEM from a
-- non-superuser either.
SET ROLE regress_nobody;
ALTER SYSTEM SET webhooks.allow_http = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DROP ROLE regress_nobody;
DROP ROLE regress_app;
