/*-------------------------------------------------------------------------
 *
 * emit.c
 *		webhooks.emit() and the trigger function webhooks.emit_trigger().
 *
 * Emitting runs inside the application's transaction, so it is kept
 * small: the event is appended to webhooks.events, one row and one index
 * entry (append.c), and a flag asks for the worker to be woken at commit.
 * No network, nothing per subscriber, nothing that grows with the log.  A
 * rolled-back transaction leaves no event behind, and the worker cannot
 * see one before commit.  (The 1.0 entry points, for a database not yet
 * updated, queue one delivery per subscriber as 1.0 did.)
 *
 * Rights: both functions are SECURITY INVOKER.  Everything that can run
 * code the caller controls (turning a row into JSON calls casts and output
 * functions of the row's column types, which any role may define for its
 * own types) runs with the caller's rights.  Only the write, whose every
 * name and operator is fixed here, runs as the function's owner, in a
 * security-restricted context (emit_event).  1.0 declared
 * them SECURITY DEFINER, which let a caller's cast run as the owner; the
 * library refuses to run emit_trigger under that declaration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/pg_proc.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_emit);
PG_FUNCTION_INFO_V1(webhooks_emit_trigger);
PG_FUNCTION_INFO_V1(webhooks_emit_1_1);
PG_FUNCTION_INFO_V1(webhooks_emit_trigger_1_1);

/*
 * Where an event goes: 1.1 appends it to webhooks.events; the 1.0 entry
 * points, called by databases whose extension is not updated yet, queue
 * one delivery per subscriber as 1.0 did (the worker waits for the update
 * and then carries those over).
 */
typedef enum EmitLayout
{
	EMIT_1_0,
	EMIT_1_1
} EmitLayout;

static SPIPlanPtr emit_plan = NULL;

/*
 * The statement runs as the owner without a SET search_path (saving and
 * restoring a setting on every row would cost more than the rest of
 * emitting), so every name here is schema-qualified and nothing depends on
 * the caller's search_path.
 */
static const char *emit_sql =
"WITH known AS ("
"  SELECT EXISTS (SELECT 1 FROM webhooks.event_types t"
"                 WHERE t.name OPERATOR(pg_catalog.=) $3) AS ok"
"), queued AS ("
"  INSERT INTO webhooks.deliveries"
"         (webhook_id, event_id, event, community_id, payload, emitted_at)"
"  SELECT w.id, $1, $3, $2, $4, pg_catalog.now()"
"  FROM webhooks.webhooks w"
"  WHERE (SELECT ok FROM known)"
"    AND w.community_id OPERATOR(pg_catalog.=) $2 AND w.is_active"
"    AND $3 OPERATOR(pg_catalog.=) ANY (w.events)"
"  RETURNING 1"
") "
"SELECT (SELECT ok FROM known), (SELECT pg_catalog.count(*) FROM queued)";

/*
 * The owner of the SQL function being called (the extension's owner), who
 * may write the queue; the caller need not.  Refuses a SECURITY DEFINER
 * declaration when the function builds its payload from a caller's row:
 * that would run the caller's casts as the owner.
 */
static Oid
function_owner(FunctionCallInfo fcinfo, bool builds_payload)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	Oid			owner;
	bool		secdef;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u",
			 fcinfo->flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	owner = proc->proowner;
	secdef = proc->prosecdef;
	ReleaseSysCache(tuple);

	if (secdef && builds_payload)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhooks.emit_trigger() is declared SECURITY DEFINER"),
				 errdetail("Version 1.0 of the extension declared it so, which runs the caller's casts with the owner's rights."),
				 errhint("Run ALTER EXTENSION webhooks UPDATE.")));
	return owner;
}

/* 1.0: a delivery per subscriber; false if the event type is unknown. */
static bool
queue_deliveries_1_0(pg_uuid_t *event_id, const char *community_id,
					 const char *event, Datum payload)
{
	Oid			argtypes[4] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		args[4];
	bool		isnull;
	int			ret;

	webhooks_uuid_v7_fill(event_id);
	args[0] = UUIDPGetDatum(event_id);
	args[1] = CStringGetTextDatum(community_id);
	args[2] = CStringGetTextDatum(event);
	args[3] = payload;
	ret = SPI_execute_plan(webhooks_prepare_once(&emit_plan, emit_sql, 4,
												 argtypes),
						   args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not queue event: %s",
			 SPI_result_code_string(ret));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Record one event as "owner" (append.c for 1.1).  Returns the new
 * event's id.  The worker is woken at commit.
 *
 * The switch of user is restricted (SECURITY_RESTRICTED_OPERATION, as
 * maintenance commands do) and covers only the write; an error inside it
 * is unwound by the transaction's abort, which restores the caller's user.
 */
static pg_uuid_t *
emit_event(EmitLayout layout, Oid owner, const char *community_id,
		   const char *event, Datum payload)
{
	Oid			save_userid;
	int			save_sec_context;
	pg_uuid_t  *event_id = palloc(sizeof(pg_uuid_t));
	bool		known;

	check_community_id_value(community_id);
	webhooks_check_payload_size(payload);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (layout == EMIT_1_1)
		known = webhooks_append_event(event_id, community_id, event, payload);
	else
	{
		SPI_connect();
		known = queue_deliveries_1_0(event_id, community_id, event, payload);
		SPI_finish();
	}
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event type \"%s\"", event),
				 errhint("The event types are listed in webhooks.event_types.")));
	webhooks_wake_worker_at_commit();
	return event_id;
}

/*
 * JSON text that jsonb accepts.  A json or text column may hold the escape
 * \u0000, which jsonb (like every PostgreSQL text) cannot: rather than fail
 * the application's INSERT, each such escape becomes \ufffd, the Unicode
 * replacement character.  Other text is returned as it is.
 */
static char *
jsonb_safe_text(char *json)
{
	bool		in_string = false;

	if (strstr(json, "\\u0000") == NULL)
		return json;
	for (char *p = json; *p; p++)
	{
		if (*p == '"')
			in_string = !in_string;
		else if (in_string && *p == '\\')
		{
			if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
				memcpy(p + 2, "fffd", 4);
			if (p[1] != '\0')
				p++;			/* the escaped character is not a quote */
		}
	}
	return json;
}

/* emit(community_id, event, payload) */
static Datum
emit(FunctionCallInfo fcinfo, EmitLayout layout)
{
	char	   *community_id = check_community_id(fcinfo, 0);

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null"),
				 errhint("Pass '{}' for an event without data.")));

	PG_RETURN_UUID_P(emit_event(layout, function_owner(fcinfo, false),
								community_id,
								TextDatumGetCString(PG_GETARG_DATUM(1)),
								PG_GETARG_DATUM(2)));
}

/* SQL: emit(community_id, event, payload), 1.1 and 1.0 */
Datum
webhooks_emit_1_1(PG_FUNCTION_ARGS)
{
	return emit(fcinfo, EMIT_1_1);
}

Datum
webhooks_emit(PG_FUNCTION_ARGS)
{
	return emit(fcinfo, EMIT_1_0);
}


/*
 * Whether a column of this type may hold json text, whose \u0000 escapes
 * jsonb refuses: json itself, or an array, domain or composite that may
 * contain it.
 */
static bool
may_hold_json(Oid type)
{
	type = getBaseType(type);
	if (type == JSONOID)
		return true;
	if (OidIsValid(get_element_type(type)))
		return may_hold_json(get_element_type(type));
	return get_typtype(type) == TYPTYPE_COMPOSITE;
}

/*
 * What a trigger keeps between rows (in fn_extra, for the statement): the
 * function's owner, and to_jsonb set up for the table's row type, when no
 * column may hold json.  to_jsonb builds the jsonb directly; the other way
 * (row_to_json, then jsonb_in on its text) writes and parses the row as
 * text, but can mend a \u0000 that a json column holds.
 */
typedef struct TriggerCache
{
	Oid			fn_oid;
	Oid			owner;
	Oid			rowtype;
	bool		direct;			/* to_jsonb: no column may hold json */
	FmgrInfo	to_jsonb;
} TriggerCache;

static TriggerCache *
trigger_cache(FunctionCallInfo fcinfo, TupleDesc tupdesc)
{
	TriggerCache *cache = (TriggerCache *) fcinfo->flinfo->fn_extra;

	if (cache == NULL || cache->rowtype != tupdesc->tdtypeid ||
		cache->fn_oid != fcinfo->flinfo->fn_oid)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (cache == NULL)
			cache = palloc0(sizeof(TriggerCache));
		cache->fn_oid = fcinfo->flinfo->fn_oid;
		cache->owner = function_owner(fcinfo, true);
		cache->rowtype = tupdesc->tdtypeid;
		cache->direct = true;
		for (int i = 0; i < tupdesc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(tupdesc, i);

			if (!att->attisdropped && may_hold_json(att->atttypid))
				cache->direct = false;
		}
		fmgr_info(F_TO_JSONB, &cache->to_jsonb);
		/* to_jsonb learns its argument's type from the call's expression */
		cache->to_jsonb.fn_expr = (Node *)
			makeFuncExpr(F_TO_JSONB, JSONBOID,
						 list_make1(makeNullConst(tupdesc->tdtypeid, -1,
												  InvalidOid)),
						 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		fcinfo->flinfo->fn_extra = cache;
		MemoryContextSwitchTo(old);
	}
	return cache;
}

/*
 * emit_trigger(event [, community_column]), a row trigger for INSERT,
 * UPDATE or DELETE.  The payload is the row as JSON: the new row, or the
 * old one for DELETE.
 */
static Datum
emit_trigger(FunctionCallInfo fcinfo, EmitLayout layout)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	TupleDesc	tupdesc;
	HeapTuple	row;
	const char *column = "community_id";
	int			attnum;
	char	   *community_id;
	Oid			owner;
	TriggerCache *cache;
	Datum		payload;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks.emit_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks.emit_trigger() must be a FOR EACH ROW trigger"),
				 errhint("Create the trigger with FOR EACH ROW.")));

	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs < 1 || trigger->tgnargs > 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhooks.emit_trigger() takes an event type and optionally a community column"),
				 errhint("For example: EXECUTE FUNCTION webhooks.emit_trigger('member.joined').")));
	if (trigger->tgnargs == 2)
		column = trigger->tgargs[1];

	tupdesc = trigdata->tg_relation->rd_att;
	cache = trigger_cache(fcinfo, tupdesc);
	owner = cache->owner;
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		row = trigdata->tg_newtuple;
	else
		row = trigdata->tg_trigtuple;

	attnum = SPI_fnumber(tupdesc, column);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist in table \"%s\"",
						column, RelationGetRelationName(trigdata->tg_relation)),
				 errhint("Name the column that holds the community id as the trigger's second argument.")));

	community_id = SPI_getvalue(row, tupdesc, attnum);
	if (community_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("community column \"%s\" of table \"%s\" is null",
						column, RelationGetRelationName(trigdata->tg_relation))));

	if (community_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("community column \"%s\" of table \"%s\" is empty",
						column, RelationGetRelationName(trigdata->tg_relation))));
	check_community_id_value(community_id);

	/* With the caller's rights: this may call the caller's own casts. */
	if (cache->direct)
		payload = FunctionCall1(&cache->to_jsonb,
								heap_copy_tuple_as_datum(row, tupdesc));
	else
	{
		Datum		json = DirectFunctionCall1(row_to_json,
											   heap_copy_tuple_as_datum(row, tupdesc));

		payload = DirectFunctionCall1(jsonb_in,
									  CStringGetDatum(jsonb_safe_text(TextDatumGetCString(json))));
	}
	emit_event(layout, owner, community_id, trigger->tgargs[0], payload);

	/* Leave the row as it is, whether fired before or after. */
	if (TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		return PointerGetDatum(row);
	return PointerGetDatum(NULL);
}

/* SQL: emit_trigger(), 1.1 and 1.0 */
Datum
webhooks_emit_trigger_1_1(PG_FUNCTION_ARGS)
{
	return emit_trigger(fcinfo, EMIT_1_1);
}

Datum
webhooks_emit_trigger(PG_FUNCTION_ARGS)
{
	return emit_trigger(fcinfo, EMIT_1_0);
}
