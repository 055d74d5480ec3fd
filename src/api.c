/*-------------------------------------------------------------------------
 *
 * api.c
 *		The management API: create, list, get, update, delete a webhook,
 *		show its secret, and page through its delivery attempts.
 *
 * Every call names a community, and every query filters on it, so a
 * webhook of another community behaves exactly as one that does not
 * exist.  Arguments are checked (validate.c) before anything is written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "catalog/namespace.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/jsonpath.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_create);
PG_FUNCTION_INFO_V1(webhooks_list);
PG_FUNCTION_INFO_V1(webhooks_get);
PG_FUNCTION_INFO_V1(webhooks_update);
PG_FUNCTION_INFO_V1(webhooks_delete);
PG_FUNCTION_INFO_V1(webhooks_secret);
PG_FUNCTION_INFO_V1(webhooks_logs);
PG_FUNCTION_INFO_V1(webhooks_event_get);
PG_FUNCTION_INFO_V1(webhooks_replay);
PG_FUNCTION_INFO_V1(webhooks_recover);
PG_FUNCTION_INFO_V1(webhooks_rotate_secret);
PG_FUNCTION_INFO_V1(webhooks_stats);

#define WEBHOOK_COLUMNS \
	"id, community_id, url, events, is_active, created_at, updated_at, " \
	"filter, headers, disabled_reason, disabled_at"

/* 1.0's columns, for databases whose extension is not updated yet */
#define WEBHOOK_COLUMNS_1_0 \
	"id, community_id, url, events, is_active, created_at, updated_at"

#define LOGS_MAX_PER_PAGE 50

/*
 * Whether the database's webhooks table has 1.1's columns: this library
 * also serves a database whose extension is still 1.0 (until ALTER
 * EXTENSION webhooks UPDATE), whose functions return 1.0's row types.
 */
static bool
schema_is_1_1(void)
{
	Oid			nsp = get_namespace_oid("webhooks", false);
	Oid			rel = get_relname_relid("webhooks", nsp);

	return OidIsValid(rel) && get_attnum(rel, "headers") != InvalidAttrNumber;
}

#define COLUMNS() (schema_is_1_1() ? WEBHOOK_COLUMNS : WEBHOOK_COLUMNS_1_0)

/* Run one query with arguments; raise on anything but the expected code. */
static void
run_query(const char *sql, int nargs, Oid *types, Datum *values,
		  const char *nulls, bool read_only, int expected)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls,
											read_only, 0);

	if (ret != expected)
		elog(ERROR, "SPI_execute_with_args failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * The first row of the last query as the function's composite result,
 * built in the caller's memory context (so it outlives SPI_finish).
 */
static Datum
first_row_as_result(FunctionCallInfo fcinfo, MemoryContext caller)
{
	TupleDesc	resdesc;
	HeapTuple	tuple;
	MemoryContext old;
	Datum	   *values;
	bool	   *nulls;

	if (get_call_result_type(fcinfo, NULL, &resdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	old = MemoryContextSwitchTo(caller);
	values = palloc(resdesc->natts * sizeof(Datum));
	nulls = palloc(resdesc->natts * sizeof(bool));
	heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
					  values, nulls);
	tuple = heap_form_tuple(BlessTupleDesc(resdesc), values, nulls);
	MemoryContextSwitchTo(old);
	return HeapTupleGetDatum(tuple);
}

/* Every row of the last query into the set-returning function's result. */
static void
all_rows_as_result_set(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *values = palloc(rsinfo->setDesc->natts * sizeof(Datum));
	bool	   *nulls = palloc(rsinfo->setDesc->natts * sizeof(bool));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
						  values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
}

/* The error for a webhook that is missing, or belongs to another community. */
void
webhooks_raise_not_found(const char *community_id, pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("webhook %s not found", webhooks_uuid_to_cstring(id)),
			 errdetail("Community \"%s\" has no webhook with that id.",
					   community_id)));
}

/*
 * Look up what a request to a webhook needs (palloc'd in the caller's
 * context): its URL, its secret, the previous secret while a rotation's
 * overlap lasts (else NULL) and its extra headers as "name: value" lines
 * (else NULL).  Returns false if the community has no such webhook.
 */
bool
webhooks_lookup(const char *community_id, pg_uuid_t *id, WebhookTarget *target)
{
	Oid			types[2] = {TEXTOID, UUIDOID};
	Datum		values[2] = {CStringGetTextDatum(community_id),
	UUIDPGetDatum(id)};
	MemoryContext caller = CurrentMemoryContext;
	bool		found;

	SPI_connect();
	run_query(schema_is_1_1() ?
			  "SELECT url, secret, " WEBHOOKS_PREVIOUS_SECRET_SQL("w") ", "
			  WEBHOOKS_HEADER_LINES_SQL("w") " FROM webhooks.webhooks w "
			  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
			  "AND id OPERATOR(pg_catalog.=) $2" :
			  "SELECT url, secret, NULL, NULL FROM webhooks.webhooks w "
			  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
			  "AND id OPERATOR(pg_catalog.=) $2",
			  2, types, values, NULL, true, SPI_OK_SELECT);
	found = (SPI_processed > 0);
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		target->url = SPI_getvalue(tup, desc, 1);
		target->secret = SPI_getvalue(tup, desc, 2);
		target->previous_secret = SPI_getvalue(tup, desc, 3);
		target->header_lines = SPI_getvalue(tup, desc, 4);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}

/* The is_active argument, which may be left out but not given as NULL. */
static bool
check_is_active(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("is_active must not be null")));
	return PG_GETARG_BOOL(argno);
}

/*
 * The filter argument: NULL, or a path; "$" (every payload matches) is
 * stored as no filter.  A path with variables ($name) is refused: the
 * worker passes none, so it could only fail.
 */
static Datum
filter_arg(FunctionCallInfo fcinfo, int argno, bool *isnull)
{
	Datum		filter;
	char	   *text;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
		return (Datum) 0;
	filter = PG_GETARG_DATUM(argno);
	text = DatumGetCString(DirectFunctionCall1(jsonpath_out, filter));
	/* a variable prints as $"name"; a quote in a string prints as \" */
	if (strstr(text, "$\"") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a webhook filter must not use variables"),
				 errdetail("Filter: %s", text),
				 errhint("Write the values into the path, such as '$.amount_cents ? (@ >= 10000)'.")));
	if (strcmp(text, "$") == 0)
		*isnull = true;
	return filter;
}

/* SQL: webhook_create(community_id, url, events, is_active, filter, headers) */
Datum
webhooks_create(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	char	   *url = check_url(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	ArrayType  *events = check_events(PG_ARGISNULL(2) ? NULL :
									  PG_GETARG_ARRAYTYPE_P(2));
	bool		is_active = check_is_active(fcinfo, 3);
	bool		v1_1 = PG_NARGS() > 5;	/* else 1.0's declaration */
	Jsonb	   *headers = (!v1_1 || PG_ARGISNULL(5)) ? NULL :
		check_headers(PG_GETARG_JSONB_P(5));
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTARRAYOID, BOOLOID, TEXTOID,
	JSONPATHOID, JSONBOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;
	Datum		result;

	values[0] = CStringGetTextDatum(community_id);
	values[1] = CStringGetTextDatum(url);
	values[2] = PointerGetDatum(events);
	values[3] = BoolGetDatum(is_active);
	values[4] = CStringGetTextDatum(webhooks_new_secret());
	values[5] = v1_1 ? filter_arg(fcinfo, 4, &isnull) : (Datum) 0;
	nulls[5] = (!v1_1 || isnull) ? 'n' : ' ';
	values[6] = JsonbPGetDatum(headers);
	nulls[6] = headers == NULL ? 'n' : ' ';

	SPI_connect();
	if (v1_1)
		run_query("INSERT INTO webhooks.webhooks "
				  "(community_id, url, events, is_active, secret, filter, headers) "
				  "VALUES ($1, $2, $3, $4, $5, $6, $7) "
				  "RETURNING id, community_id, url, events, is_active, secret, "
				  "created_at, updated_at, filter, headers, disabled_reason, "
				  "disabled_at",
				  7, types, values, nulls, false, SPI_OK_INSERT_RETURNING);
	else
		run_query("INSERT INTO webhooks.webhooks "
				  "(community_id, url, events, is_active, secret) "
				  "VALUES ($1, $2, $3, $4, $5) "
				  "RETURNING id, community_id, url, events, is_active, secret, "
				  "created_at, updated_at",
				  5, types, values, nulls, false, SPI_OK_INSERT_RETURNING);
	result = first_row_as_result(fcinfo, caller);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* SQL: webhook_list(community_id), oldest first */
Datum
webhooks_list(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(community_id)};

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	run_query(psprintf("SELECT %s FROM webhooks.webhooks "
					   "WHERE community_id OPERATOR(pg_catalog.=) $1 "
					   "ORDER BY created_at, id", COLUMNS()),
			  1, types, values, NULL, true, SPI_OK_SELECT);
	all_rows_as_result_set(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/* SQL: webhook_get(community_id, id) */
Datum
webhooks_get(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Oid			types[2] = {TEXTOID, UUIDOID};
	Datum		values[2] = {CStringGetTextDatum(community_id),
	UUIDPGetDatum(id)};
	MemoryContext caller = CurrentMemoryContext;
	Datum		result;

	SPI_connect();
	run_query(psprintf("SELECT %s FROM webhooks.webhooks "
					   "WHERE community_id OPERATOR(pg_catalog.=) $1 "
					   "AND id OPERATOR(pg_catalog.=) $2", COLUMNS()),
			  2, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	result = first_row_as_result(fcinfo, caller);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * SQL: webhook_update(community_id, id, url, events, is_active, filter,
 *                     headers)
 *
 * Any subset of the fields; NULL leaves a field as it is ('{}' removes the
 * headers, '$' the filter).  Setting is_active either way is a person's
 * decision: it clears why the worker switched the webhook off; activating
 * it, or giving it a new url, starts its failing span
 * (webhooks.disable_after) afresh.
 * When a webhook is deactivated, its pending deliveries are marked failed
 * at once (they stay visible and are not sent); attempts already in
 * flight finish.
 */
Datum
webhooks_update(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Oid			types[9] = {TEXTOID, UUIDOID, TEXTOID, TEXTARRAYOID, BOOLOID,
	JSONPATHOID, JSONBOID, BOOLOID, BOOLOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', 'n', 'n', 'n', 'n', 'n', ' ', ' '};
	MemoryContext caller = CurrentMemoryContext;
	Datum		result;
	bool		any_change = false;
	bool		v1_1 = PG_NARGS() > 6;	/* else 1.0's declaration */

	values[0] = CStringGetTextDatum(community_id);
	values[1] = UUIDPGetDatum(id);
	if (!PG_ARGISNULL(2))
	{
		values[2] = CStringGetTextDatum(check_url(PG_GETARG_TEXT_PP(2)));
		nulls[2] = ' ';
		any_change = true;
	}
	if (!PG_ARGISNULL(3))
	{
		values[3] = PointerGetDatum(check_events(PG_GETARG_ARRAYTYPE_P(3)));
		nulls[3] = ' ';
		any_change = true;
	}
	if (!PG_ARGISNULL(4))
	{
		values[4] = BoolGetDatum(PG_GETARG_BOOL(4));
		nulls[4] = ' ';
		any_change = true;
	}
	/*
	 * filter and headers: $9 and $8 say whether each is given; given as
	 * NULL ($6 for '$', $7 for '{}'), it is removed.
	 */
	values[8] = BoolGetDatum(v1_1 && !PG_ARGISNULL(5));
	if (v1_1 && !PG_ARGISNULL(5))
	{
		bool		isnull;

		values[5] = filter_arg(fcinfo, 5, &isnull);
		nulls[5] = isnull ? 'n' : ' ';
		any_change = true;
	}
	values[7] = BoolGetDatum(v1_1 && !PG_ARGISNULL(6));
	if (v1_1 && !PG_ARGISNULL(6))
	{
		Jsonb	   *headers = check_headers(PG_GETARG_JSONB_P(6));

		values[6] = JsonbPGetDatum(headers);
		nulls[6] = headers == NULL ? 'n' : ' ';
		any_change = true;
	}

	SPI_connect();
	if (!any_change)
		run_query(psprintf("SELECT %s FROM webhooks.webhooks "
						   "WHERE community_id OPERATOR(pg_catalog.=) $1 "
						   "AND id OPERATOR(pg_catalog.=) $2", COLUMNS()),
				  2, types, values, NULL, true, SPI_OK_SELECT);
	else if (!v1_1)
		run_query("UPDATE webhooks.webhooks SET "
				  "url = COALESCE($3, url), "
				  "events = COALESCE($4, events), "
				  "is_active = COALESCE($5, is_active), "
				  "updated_at = pg_catalog.now() "
				  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
				  "AND id OPERATOR(pg_catalog.=) $2 "
				  "RETURNING " WEBHOOK_COLUMNS_1_0,
				  5, types, values, nulls, false, SPI_OK_UPDATE_RETURNING);
	else
		run_query("UPDATE webhooks.webhooks SET "
				  "url = COALESCE($3, url), "
				  "events = COALESCE($4, events), "
				  "active_since = CASE WHEN ($5 AND NOT is_active) "
				  "  OR $3 IS DISTINCT FROM url AND $3 IS NOT NULL "
				  "  THEN pg_catalog.now() ELSE active_since END, "
				  "is_active = COALESCE($5, is_active), "
				  "disabled_reason = CASE WHEN $5 IS NULL "
				  "  THEN disabled_reason END, "
				  "disabled_at = CASE WHEN $5 IS NULL THEN disabled_at END, "
				  "filter = CASE WHEN $9 THEN $6 ELSE filter END, "
				  "headers = CASE WHEN $8 THEN $7 ELSE headers END, "
				  "updated_at = pg_catalog.now() "
				  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
				  "AND id OPERATOR(pg_catalog.=) $2 "
				  "RETURNING " WEBHOOK_COLUMNS,
				  9, types, values, nulls, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	result = first_row_as_result(fcinfo, caller);

	if (!PG_ARGISNULL(4) && !PG_GETARG_BOOL(4))
	{
		/* Lock in id order, as the worker does, so neither waits on a cycle. */
		run_query("UPDATE webhooks.deliveries SET state = 'failed', "
				  "last_error = 'webhook deactivated' "
				  "WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "  SELECT id FROM webhooks.deliveries "
				  "  WHERE webhook_id OPERATOR(pg_catalog.=) $2 "
				  "  AND state OPERATOR(pg_catalog.=) 'pending' "
				  "  ORDER BY id FOR UPDATE))",
				  2, types, values, NULL, false, SPI_OK_UPDATE);
	}
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* SQL: webhook_delete(community_id, id); its queued deliveries go with it */
Datum
webhooks_delete(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Oid			types[2] = {TEXTOID, UUIDOID};
	Datum		values[2] = {CStringGetTextDatum(community_id),
	UUIDPGetDatum(id)};

	SPI_connect();
	run_query("DELETE FROM webhooks.webhooks "
			  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
			  "AND id OPERATOR(pg_catalog.=) $2",
			  2, types, values, NULL, false, SPI_OK_DELETE);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	run_query("DELETE FROM webhooks.deliveries "
			  "WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
			  "  SELECT id FROM webhooks.deliveries "
			  "  WHERE webhook_id OPERATOR(pg_catalog.=) $2 "
			  "  ORDER BY id FOR UPDATE))",
			  2, types, values, NULL, false, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}

/* SQL: webhook_secret(community_id, id) */
Datum
webhooks_secret(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	WebhookTarget target;

	if (!webhooks_lookup(community_id, id, &target))
		webhooks_raise_not_found(community_id, id);
	PG_RETURN_TEXT_P(cstring_to_text(target.secret));
}

/* SQL: webhook_logs(community_id, id, page, per_page), newest first */
Datum
webhooks_logs(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	int32		page;
	int32		per_page;
	Oid			types[3] = {UUIDOID, INT4OID, INT8OID};
	Datum		values[3];
	WebhookTarget target;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null",
						PG_ARGISNULL(2) ? "page" : "per_page")));
	page = PG_GETARG_INT32(2);
	per_page = PG_GETARG_INT32(3);
	if (page < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page must be at least 1, not %d", page)));
	if (per_page < 1 || per_page > LOGS_MAX_PER_PAGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per_page must be between 1 and %d, not %d",
						LOGS_MAX_PER_PAGE, per_page)));

	if (!webhooks_lookup(community_id, id, &target))
		webhooks_raise_not_found(community_id, id);

	values[0] = UUIDPGetDatum(id);
	values[1] = Int32GetDatum(per_page);
	values[2] = Int64GetDatum((int64) (page - 1) * per_page);

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	/*
	 * The first page reads its rows straight from the table.  Later pages
	 * read the rows they skip from the index alone (an index-only scan,
	 * where autovacuum has marked the log's pages all visible), and only
	 * their own rows from the table: page 100 would otherwise read 5,000
	 * rows of the table to return 50.
	 */
	if (page == 1)
		run_query("SELECT id, event, status_code, response_time_ms, created_at, "
				  "event_id, attempt, error "
				  "FROM webhooks.delivery_attempts "
				  "WHERE webhook_id OPERATOR(pg_catalog.=) $1 "
				  "ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
				  3, types, values, NULL, true, SPI_OK_SELECT);
	else
		run_query("SELECT a.id, a.event, a.status_code, a.response_time_ms, "
				  "a.created_at, a.event_id, a.attempt, a.error "
				  "FROM (SELECT k.created_at, k.id "
				  "      FROM webhooks.delivery_attempts k "
				  "      WHERE k.webhook_id OPERATOR(pg_catalog.=) $1 "
				  "      ORDER BY k.created_at DESC, k.id DESC LIMIT $2 OFFSET $3) k "
				  "CROSS JOIN LATERAL ("
				  "  SELECT * FROM webhooks.delivery_attempts a "
				  "  WHERE a.webhook_id OPERATOR(pg_catalog.=) $1 "
				  "    AND a.created_at OPERATOR(pg_catalog.=) k.created_at "
				  "    AND a.id OPERATOR(pg_catalog.=) k.id LIMIT 1) a "
				  "ORDER BY k.created_at DESC, k.id DESC",
				  3, types, values, NULL, true, SPI_OK_SELECT);
	all_rows_as_result_set(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/*
 * Events: event_get, webhook_replay, webhook_recover (1.1).
 *
 * An event is found through the events' index on (txid, id): its id
 * carries its transaction's id (webhooks_event_id), and events carried
 * over from 1.0 have txid 0.  Every lookup names the community too, so an
 * event of another community is "not found" like a missing one.
 */

/* The txids an event with this id may have: its own, or 0 (from 1.0). */
static Datum
event_txids(pg_uuid_t *event_id)
{
	Datum		txids[2];

	txids[0] = FullTransactionIdGetDatum(webhooks_event_id_txid(event_id));
	txids[1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(0));
	return PointerGetDatum(construct_array(txids, 2, XID8OID, sizeof(uint64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

#define EVENT_LOOKUP \
	"FROM webhooks.events e " \
	"WHERE e.txid OPERATOR(pg_catalog.=) ANY ($3) " \
	"AND e.id OPERATOR(pg_catalog.=) $2 " \
	"AND e.community_id OPERATOR(pg_catalog.=) $1"

/* The event id argument: not NULL. */
static pg_uuid_t *
check_event_id(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event id must not be null")));
	return PG_GETARG_UUID_P(argno);
}

static void
raise_event_not_found(const char *community_id, pg_uuid_t *event_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("event %s not found", webhooks_uuid_to_cstring(event_id)),
			 errdetail("Community \"%s\" has no event with that id, or it is older than webhooks.log_retention.",
					   community_id)));
}

/*
 * The webhook must exist in the community and be active: replaying to an
 * inactive webhook would only queue deliveries it never sends.
 */
static void
check_active_webhook(const char *community_id, pg_uuid_t *id)
{
	Oid			types[2] = {TEXTOID, UUIDOID};
	Datum		values[2] = {CStringGetTextDatum(community_id),
	UUIDPGetDatum(id)};
	bool		active;
	bool		isnull;

	run_query("SELECT is_active FROM webhooks.webhooks "
			  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
			  "AND id OPERATOR(pg_catalog.=) $2",
			  2, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (!active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook %s is not active", webhooks_uuid_to_cstring(id)),
				 errhint("Activate it first: webhook_update(..., is_active => true).")));
}

/* SQL: event_get(community_id, event_id) */
Datum
webhooks_event_get(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *event_id = check_event_id(fcinfo, 1);
	Oid			types[3] = {TEXTOID, UUIDOID, XID8ARRAYOID};
	Datum		values[3];
	MemoryContext caller = CurrentMemoryContext;
	Datum		result;

	values[0] = CStringGetTextDatum(community_id);
	values[1] = UUIDPGetDatum(event_id);
	values[2] = event_txids(event_id);

	SPI_connect();
	run_query("SELECT e.id, e.type, e.community_id, e.payload, e.created_at "
			  EVENT_LOOKUP,
			  3, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		raise_event_not_found(community_id, event_id);
	result = first_row_as_result(fcinfo, caller);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * SQL: webhook_replay(community_id, id, event_id)
 *
 * A new series of attempts, due now, with the same webhook-id and body:
 * the webhook's delivery of that event, if it still has one (failed or
 * waiting for a retry), starts over; otherwise a new one is queued.
 */
Datum
webhooks_replay(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	pg_uuid_t  *event_id = check_event_id(fcinfo, 2);
	Oid			types[4] = {TEXTOID, UUIDOID, XID8ARRAYOID, UUIDOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(community_id);
	values[1] = UUIDPGetDatum(event_id);
	values[2] = event_txids(event_id);
	values[3] = UUIDPGetDatum(id);

	SPI_connect();
	check_active_webhook(community_id, id);
	run_query("SELECT 1 " EVENT_LOOKUP,
			  3, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		raise_event_not_found(community_id, event_id);

	run_query("UPDATE webhooks.deliveries SET state = 'pending', attempts = 0, "
			  "next_attempt_at = pg_catalog.now() "
			  "WHERE webhook_id OPERATOR(pg_catalog.=) $4 "
			  "AND event_id OPERATOR(pg_catalog.=) $2 "
			  "AND state OPERATOR(pg_catalog.<>) 'sending'",
			  4, types, values, NULL, false, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		run_query("INSERT INTO webhooks.deliveries (webhook_id, event_id, "
				  "event, community_id, emitted_at, event_txid, payload_bytes) "
				  "SELECT $4, e.id, e.type, e.community_id, e.created_at, e.txid, "
				  "e.payload_bytes "
				  EVENT_LOOKUP,
				  4, types, values, NULL, false, SPI_OK_INSERT);
	SPI_finish();
	webhooks_wake_worker_at_commit();
	PG_RETURN_VOID();
}

/*
 * SQL: webhook_recover(community_id, id, since) -> how many
 *
 * Every kept event emitted at or after "since" whose delivery to the
 * webhook ended in failure (its attempts ran out, or the webhook was
 * deactivated) starts over, as webhook_replay does.  Deliveries still
 * pending or in flight are left as they are, so nothing is queued twice.
 */
Datum
webhooks_recover(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	int64		recovered;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("since must not be null"),
				 errhint("Pass '-infinity' to recover every kept event.")));
	values[0] = UUIDPGetDatum(id);
	values[1] = PG_GETARG_DATUM(2);

	SPI_connect();
	check_active_webhook(community_id, id);
	run_query("UPDATE webhooks.deliveries d SET state = 'pending', "
			  "attempts = 0, next_attempt_at = pg_catalog.now() "
			  "WHERE d.webhook_id OPERATOR(pg_catalog.=) $1 "
			  "AND d.state OPERATOR(pg_catalog.=) 'failed' "
			  "AND d.emitted_at OPERATOR(pg_catalog.>=) $2 "
			  "AND EXISTS (SELECT 1 FROM webhooks.events e "
			  "  WHERE e.txid OPERATOR(pg_catalog.=) d.event_txid "
			  "  AND e.id OPERATOR(pg_catalog.=) d.event_id "
			  "  AND e.created_at OPERATOR(pg_catalog.=) d.emitted_at)",
			  2, types, values, NULL, false, SPI_OK_UPDATE);
	recovered = (int64) SPI_processed;
	SPI_finish();
	if (recovered > 0)
		webhooks_wake_worker_at_commit();
	PG_RETURN_INT64(recovered);
}

/*
 * SQL: webhook_rotate_secret(community_id, id, overlap) -> the new secret
 *
 * The new secret signs from now on.  For the overlap, the replaced one
 * signs too (second in webhook-signature), so a receiver can move to the
 * new secret at its own pace; a rotation within the overlap drops the
 * oldest.  A zero overlap drops the old secret at once.
 */
Datum
webhooks_rotate_secret(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Interval	zero = {0, 0, 0};
	Oid			types[4] = {TEXTOID, UUIDOID, INTERVALOID, TEXTOID};
	Datum		values[4];
	char	   *secret = webhooks_new_secret();

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("overlap must not be null"),
				 errhint("Pass '0' to stop signing with the old secret at once.")));
	if (DatumGetBool(DirectFunctionCall2(interval_lt, PG_GETARG_DATUM(2),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("overlap must not be negative")));

	values[0] = CStringGetTextDatum(community_id);
	values[1] = UUIDPGetDatum(id);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = CStringGetTextDatum(secret);

	SPI_connect();
	run_query("UPDATE webhooks.webhooks SET "
			  "previous_secret = CASE WHEN $3 > '0' THEN secret END, "
			  "previous_secret_until = CASE WHEN $3 > '0' "
			  "  THEN pg_catalog.now() + $3 END, "
			  "secret = $4, updated_at = pg_catalog.now() "
			  "WHERE community_id OPERATOR(pg_catalog.=) $1 "
			  "AND id OPERATOR(pg_catalog.=) $2",
			  4, types, values, NULL, false, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(secret));
}

/*
 * SQL: webhook_stats(community_id, id)
 *
 * The queue's rows of the webhook (one index), the health row the worker
 * keeps, and its hourly figures (webhook_hourly) of the hours that began
 * in the last 24: at most 25 hours of response-time buckets, however large
 * the log.  A percentile is the upper bound of the bucket it falls in (the
 * bounds are about 25 % apart; 60000 means a minute or more).  Test pings
 * and attempts that made no request are not counted.
 */
Datum
webhooks_stats(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	Oid			types[2] = {TEXTOID, UUIDOID};
	Datum		values[2] = {CStringGetTextDatum(community_id),
	UUIDPGetDatum(id)};
	MemoryContext caller = CurrentMemoryContext;
	Datum		result;

	SPI_connect();
	run_query("SELECT q.pending, q.failed, h.last_success_at, "
			  "  h.last_failure_at, "
			  "  CASE WHEN h.failing_since >= w.active_since "
			  "    THEN h.failing_since END, "
			  "  coalesce(s.attempts, 0)::bigint, "
			  "  round(s.ok::numeric / nullif(s.attempts, 0), 4), "
			  "  CASE WHEN s.attempts > 0 THEN "
			  "    coalesce((webhooks.response_buckets())[s.b50 + 1], 60000) END, "
			  "  CASE WHEN s.attempts > 0 THEN "
			  "    coalesce((webhooks.response_buckets())[s.b95 + 1], 60000) END "
			  "FROM webhooks.webhooks w "
			  "LEFT JOIN webhooks.webhook_health h ON h.webhook_id = w.id "
			  "CROSS JOIN LATERAL ("
			  "  SELECT count(*) FILTER (WHERE d.state <> 'failed') AS pending, "
			  "         count(*) FILTER (WHERE d.state = 'failed') AS failed "
			  "  FROM webhooks.deliveries d WHERE d.webhook_id = w.id) q "
			  "LEFT JOIN LATERAL ("
			  "  SELECT sum(a.n) AS attempts, sum(a.ok) AS ok, "
			  "    min(a.bucket) FILTER (WHERE a.cum >= 0.50 * a.total) AS b50, "
			  "    min(a.bucket) FILTER (WHERE a.cum >= 0.95 * a.total) AS b95 "
			  "  FROM (SELECT b.bucket, b.n, b.ok, "
			  "          sum(b.n) OVER (ORDER BY b.bucket) AS cum, "
			  "          sum(b.n) OVER () AS total "
			  "        FROM (SELECT t.bucket, sum(t.attempts) AS n, "
			  "                     sum(t.successes) AS ok "
			  "              FROM webhooks.webhook_hourly t "
			  "              WHERE t.webhook_id = w.id AND t.hour >= "
			  "                date_trunc('hour', pg_catalog.now()) "
			  "                - interval '23 hours' "
			  "              GROUP BY t.bucket) b) a "
			  "  HAVING sum(a.n) > 0) s ON true "
			  "WHERE w.community_id = $1 AND w.id = $2",
			  2, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		webhooks_raise_not_found(community_id, id);
	result = first_row_as_result(fcinfo, caller);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
