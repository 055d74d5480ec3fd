/* webhooks--1.0--1.0.1.sql: security fix for 1.0 */

\echo Use "ALTER EXTENSION webhooks UPDATE TO '1.0.1'" to load this file. \quit

/*
 * In 1.0, emit() and emit_trigger() were SECURITY DEFINER, and
 * emit_trigger() turned the caller's row into JSON with the owner's rights.
 * Converting a row calls the casts to json of its columns' types, and any
 * role that may create a type in pg_temp may also create such a cast, so a
 * role allowed to emit could run its own code as the extension's owner (a
 * superuser).  From 1.0.1 both run with the caller's rights; the library
 * runs only its fixed queueing statement as the owner, in a
 * security-restricted context, after the payload has been built.
 */
ALTER FUNCTION webhooks.emit(text, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION webhooks.emit_trigger() SECURITY INVOKER;

COMMENT ON FUNCTION webhooks.emit(text, text, jsonb) IS
'Queue an event for every active subscribed webhook of the community, at commit; runs with the caller''s rights';
COMMENT ON FUNCTION webhooks.emit_trigger() IS
'Row trigger: emit_trigger(event [, community column]) emits the row as the payload; runs with the caller''s rights';
