/*-------------------------------------------------------------------------
 *
 * append.c
 *		Appending an event to webhooks.events: the one write an emitting
 *		transaction makes.
 *
 * This runs once per event inside the application's transaction, so its
 * cost is what webhooks cost the application.  An INSERT statement run
 * through SPI spends most of that cost on the executor rather than on the
 * row: it builds and tears down a ModifyTable node, a subplan for the
 * event type's check and the state that routes a row to its partition,
 * all for one row.  So the row is written as the executor would write it,
 * without the executor:
 *
 *	- the event type is looked up in event_types' primary key;
 *	- the partition is found by a binary search of the table's partition
 *	  bounds, as the executor's tuple routing does;
 *	- the row goes in with heap_insert, and its index entries with
 *	  index_insert.
 *
 * Only when nothing else would have happened to the row in the executor:
 * the partition is a plain table whose columns are the ones written here,
 * with no triggers, CHECK constraints, generated columns or row security,
 * and whose indexes are on plain columns, neither unique nor partial.
 * The extension makes its partitions so.  When an operator has changed
 * one, the event goes in through the INSERT statement instead, with the
 * same result.  Locks are the statement's: ROW EXCLUSIVE on the table, the
 * partition and its indexes, ACCESS SHARE on event_types, all held to the
 * end of the transaction.
 *
 * The caller switches to the extension's owner first (see emit.c), so any
 * function an index or a partition bound calls runs as it would in the
 * statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "webhooks.h"

/* The columns of webhooks.events, in their order */
typedef enum EventColumn
{
	EV_ID,
	EV_TYPE,
	EV_COMMUNITY_ID,
	EV_PAYLOAD,
	EV_CREATED_AT,
	EV_TXID,
	EV_PAYLOAD_BYTES,
	EV_NCOLUMNS
} EventColumn;

static const struct
{
	const char *name;
	Oid			type;
}			event_columns[EV_NCOLUMNS] = {
	{"id", UUIDOID},
	{"type", TEXTOID},
	{"community_id", TEXTOID},
	{"payload", JSONBOID},
	{"created_at", TIMESTAMPTZOID},
	{"txid", XID8OID},
	{"payload_bytes", INT4OID},
};

/* The most indexes a partition may have for the direct path */
#define MAX_DIRECT_INDEXES 8

/*
 * The same row through the executor, for a partition the direct path does
 * not take.  The event type is checked in the same statement, by the
 * primary key of event_types.
 */
static SPIPlanPtr append_plan = NULL;

static const char *append_sql =
"INSERT INTO webhooks.events"
"       (id, type, community_id, payload, created_at, txid, payload_bytes)"
" SELECT $1, $2, $3, $4, $5, $6, $7"
" WHERE EXISTS (SELECT 1 FROM webhooks.event_types t"
"               WHERE t.name OPERATOR(pg_catalog.=) $2)";

/*
 * The OIDs of webhooks.events and webhooks.event_types, looked up once and
 * forgotten when either is invalidated (dropped, altered), and the event
 * types known to exist.  Every statement that changes event_types sends a
 * relcache invalidation for it at commit (webhooks_event_types_changed),
 * after the change is visible; on it, this backend forgets the types it
 * knew.  A type is remembered only from a snapshot taken after every such
 * invalidation received so far, so a deleted type is never remembered
 * again.  Nor longer than a minute, for changes made with the triggers
 * disabled.
 */
static Oid	events_relid = InvalidOid;
static Oid	event_types_relid = InvalidOid;
static HTAB *known_types = NULL;
static TimestampTz known_types_since = 0;
static uint64 known_types_generation = 0;	/* bumped by invalidations */
static uint64 known_types_of = 0;	/* the generation known_types belongs to */
static bool callback_registered = false;

#define KNOWN_TYPES_MAX_AGE_US ((int64) 60 * USECS_PER_SEC)
/* Longer names are looked up every time */
#define KNOWN_TYPE_KEY_BYTES 128

static void
relation_invalidated(Datum arg, Oid relid)
{
	/* the types go with the OID: a hit never looks event_types up again */
	if (relid == InvalidOid || relid == event_types_relid ||
		relid == events_relid)
	{
		known_types_generation++;
		events_relid = event_types_relid = InvalidOid;
	}
}

/*
 * Open (and lock) webhooks.<name>, whose OID *cached holds once found.  If
 * an invalidation received while locking forgets it, it is looked up
 * again, as RangeVarGetRelidExtended does.
 */
static Relation
open_webhooks_table(Oid *cached, const char *name, LOCKMODE mode)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(relation_invalidated, (Datum) 0);
		callback_registered = true;
	}
	for (;;)
	{
		Oid			relid = *cached;

		if (!OidIsValid(relid))
		{
			relid = get_relname_relid(name, get_namespace_oid("webhooks", false));
			if (!OidIsValid(relid))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("relation \"webhooks.%s\" does not exist", name),
						 errhint("Run CREATE EXTENSION webhooks, or ALTER EXTENSION webhooks UPDATE.")));
			*cached = relid;
		}
		LockRelationOid(relid, mode);
		if (*cached == relid)
			return table_open(relid, NoLock);
		UnlockRelationOid(relid, mode);
	}
}

/*
 * Whether webhooks.event_types holds the event type, under the lock the
 * INSERT statement would take.  Looked up with the snapshot that statement
 * would have: a fresh one in READ COMMITTED, whose answers are remembered,
 * or the transaction's (not remembered: it may predate a change whose
 * invalidation this session has already received).  The key compares in
 * the column's collation, by which the primary key is ordered.
 */
static bool
event_type_known(const char *event, TimestampTz now)
{
	bool		cacheable = strlen(event) < KNOWN_TYPE_KEY_BYTES;
	bool		fresh = !IsolationUsesXactSnapshot();
	Relation	rel;
	Oid			pkey;
	ScanKeyData key;
	SysScanDesc scan;
	uint64		generation;
	bool		known;

	if (cacheable && known_types != NULL && OidIsValid(event_types_relid) &&
		known_types_of == known_types_generation &&
		now - known_types_since < KNOWN_TYPES_MAX_AGE_US &&
		hash_search(known_types, event, HASH_FIND, NULL) != NULL)
	{
		/* the statement's lock, which may bring in an invalidation */
		LockRelationOid(event_types_relid, AccessShareLock);
		if (known_types_of == known_types_generation)
			return true;
	}

	rel = open_webhooks_table(&event_types_relid, "event_types", AccessShareLock);
	generation = known_types_generation;
	pkey = RelationGetPrimaryKeyIndex(rel);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(rel), 0)->attcollation,
						   F_TEXTEQ, CStringGetTextDatum(event));
	scan = systable_beginscan(rel, pkey, OidIsValid(pkey),
							  fresh ? GetLatestSnapshot() : GetTransactionSnapshot(),
							  1, &key);
	known = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, NoLock);

	/* remember it, unless an invalidation came in since the snapshot */
	if (known && cacheable && fresh && generation == known_types_generation &&
		event_types_relid == RelationGetRelid(rel))
	{
		if (known_types == NULL || known_types_of != generation ||
			now - known_types_since >= KNOWN_TYPES_MAX_AGE_US)
		{
			HASHCTL		ctl;

			if (known_types != NULL)
				hash_destroy(known_types);
			known_types = NULL;
			ctl.keysize = KNOWN_TYPE_KEY_BYTES;
			ctl.entrysize = KNOWN_TYPE_KEY_BYTES;
			known_types = hash_create("webhooks event types", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS);
			known_types_since = now;
			known_types_of = generation;
		}
		hash_search(known_types, event, HASH_ENTER, NULL);
	}
	return known;
}

/*
 * The partition of webhooks.events (locked and open) that takes a row of
 * this time, found as the executor's tuple routing finds it; InvalidOid
 * when the table is not as the extension makes it (partitioned by
 * created_at, no triggers or row security of its own), or no partition
 * takes the row (the statement then raises the error).
 */
static Oid
partition_for(Relation events, TimestampTz created_at)
{
	PartitionKey key = RelationGetPartitionKey(events);
	PartitionDesc desc;
	PartitionBoundInfo bounds;
	Datum		value = TimestampTzGetDatum(created_at);
	bool		equal;
	int			index;

	/* the statement would fire the table's own statement triggers */
	if (events->trigdesc != NULL || events->rd_rel->relrowsecurity)
		return InvalidOid;
	if (key == NULL || key->strategy != PARTITION_STRATEGY_RANGE ||
		key->partnatts != 1 || key->partattrs[0] != EV_CREATED_AT + 1 ||
		key->parttypid[0] != TIMESTAMPTZOID)
		return InvalidOid;
	/*
	 * A partition being detached (DETACH CONCURRENTLY) is left to the
	 * statement: whether it takes rows depends on the snapshot, and the
	 * default partition's constraint still excludes its range.
	 */
	desc = RelationGetPartitionDesc(events, false);
	if (desc->nparts == 0 || desc->detached_exist)
		return InvalidOid;
	bounds = desc->boundinfo;
	index = -1;
	if (bounds->ndatums > 0)
		index = bounds->indexes[partition_range_datum_bsearch(key->partsupfunc,
															  key->partcollation,
															  bounds, 1, &value,
															  &equal) + 1];
	if (index < 0)
		index = bounds->default_index;
	if (index < 0 || !desc->is_leaf[index])
		return InvalidOid;
	return desc->oids[index];
}

/*
 * Whether a row can go into this partition without the executor: a plain
 * table with exactly the event columns, and nothing that would act on a
 * new row but its indexes.
 */
static bool
takes_direct_rows(Relation part)
{
	TupleDesc	desc = RelationGetDescr(part);

	if (part->rd_rel->relkind != RELKIND_RELATION ||
		part->trigdesc != NULL || part->rd_rel->relrowsecurity ||
		desc->natts != EV_NCOLUMNS)
		return false;
	if (desc->constr != NULL &&
		(desc->constr->num_check > 0 || desc->constr->has_generated_stored))
		return false;
	for (int i = 0; i < EV_NCOLUMNS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != event_columns[i].type ||
			strcmp(NameStr(att->attname), event_columns[i].name) != 0)
			return false;
	}
	return true;
}

/*
 * Insert the row into a partition that takes_direct_rows(), with its index
 * entries; false, having written nothing, when an index needs the
 * executor.  The indexes
 * stay locked, as the statement would leave them.
 */
static bool
insert_direct(Relation part, Datum *values, bool *nulls)
{
	List	   *index_oids;
	Relation	indexes[MAX_DIRECT_INDEXES];
	IndexInfo  *infos[MAX_DIRECT_INDEXES];
	int			nindexes = 0;
	bool		direct;
	HeapTuple	tuple;
	ListCell   *lc;

	index_oids = RelationGetIndexList(part);
	direct = list_length(index_oids) <= MAX_DIRECT_INDEXES;
	foreach(lc, index_oids)
	{
		Relation	index;
		IndexInfo  *info;

		if (!direct)
			break;
		index = index_open(lfirst_oid(lc), RowExclusiveLock);
		info = BuildIndexInfo(index);
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
			info->ii_ExclusionOps != NULL || info->ii_Unique)
			direct = false;
		indexes[nindexes] = index;
		infos[nindexes++] = info;
	}
	if (!direct)
	{
		for (int i = 0; i < nindexes; i++)
			index_close(indexes[i], NoLock);
		return false;
	}

	tuple = heap_form_tuple(RelationGetDescr(part), values, nulls);
	heap_insert(part, tuple, GetCurrentCommandId(true), 0, NULL);
	for (int i = 0; i < nindexes; i++)
	{
		IndexInfo  *info = infos[i];
		Datum		key_values[INDEX_MAX_KEYS];
		bool		key_nulls[INDEX_MAX_KEYS];

		/* an index being built concurrently may not take entries yet */
		if (info->ii_ReadyForInserts)
		{
			for (int k = 0; k < info->ii_NumIndexAttrs; k++)
			{
				AttrNumber attnum = info->ii_IndexAttrNumbers[k];

				key_values[k] = values[attnum - 1];
				key_nulls[k] = nulls[attnum - 1];
			}
			index_insert(indexes[i], key_values, key_nulls, &tuple->t_self,
						 part, UNIQUE_CHECK_NO, false, info);
		}
		index_close(indexes[i], NoLock);
	}
	return true;
}

/* The same row through the INSERT statement; false if the type is unknown. */
static bool
insert_statement(Datum *values)
{
	Oid			argtypes[EV_NCOLUMNS];
	uint64		processed;
	int			ret;

	for (int i = 0; i < EV_NCOLUMNS; i++)
		argtypes[i] = event_columns[i].type;
	SPI_connect();
	ret = SPI_execute_plan(webhooks_prepare_once(&append_plan, append_sql,
												 EV_NCOLUMNS, argtypes),
						   values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record event: %s", SPI_result_code_string(ret));
	processed = SPI_processed;
	SPI_finish();
	return processed == 1;
}

/*
 * Append one event to webhooks.events, as the extension's owner; fills in
 * its id.  Returns false, having written nothing, if the event type is not
 * in webhooks.event_types.
 */
bool
webhooks_append_event(pg_uuid_t *event_id, const char *community_id,
					  const char *event, Datum payload)
{
	Datum		values[EV_NCOLUMNS];
	bool		nulls[EV_NCOLUMNS] = {0};
	FullTransactionId xid;
	TimestampTz created_at;
	Relation	events;
	Oid			partition;
	bool		written = false;

	/* what the statement would refuse, before an xid is taken */
	PreventCommandIfReadOnly("INSERT");
	PreventCommandIfParallelMode("INSERT");

	xid = GetTopFullTransactionId();
	webhooks_event_id(event_id, xid, &created_at);
	values[EV_ID] = UUIDPGetDatum(event_id);
	values[EV_TYPE] = CStringGetTextDatum(event);
	values[EV_COMMUNITY_ID] = CStringGetTextDatum(community_id);
	values[EV_PAYLOAD] = payload;
	values[EV_CREATED_AT] = TimestampTzGetDatum(created_at);
	values[EV_TXID] = FullTransactionIdGetDatum(xid);
	values[EV_PAYLOAD_BYTES] = Int32GetDatum((int32) webhooks_payload_size(payload));

	events = open_webhooks_table(&events_relid, "events", RowExclusiveLock);
	partition = partition_for(events, created_at);
	if (OidIsValid(partition))
	{
		Relation	part = table_open(partition, RowExclusiveLock);

		/*
		 * Route again now that the partition is locked: a partition for
		 * the row's day may have been attached while this waited for the
		 * default one (which the worker locks to move rows out of it), as
		 * the executor checks the default partition's constraint.
		 */
		if (partition_for(events, created_at) == partition &&
			takes_direct_rows(part))
		{
			if (!event_type_known(event, created_at))
			{
				table_close(part, NoLock);
				table_close(events, NoLock);
				return false;
			}
			written = insert_direct(part, values, nulls);
		}
		table_close(part, NoLock);
	}
	table_close(events, NoLock);

	return written || insert_statement(values);
}

/*
 * Trigger on webhooks.event_types, once per statement: every backend
 * forgets the event types it knew when the statement's transaction
 * commits (a relcache invalidation of the table, which is sent after the
 * change is visible).
 */
PG_FUNCTION_INFO_V1(webhooks_event_types_changed);

Datum
webhooks_event_types_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks_event_types_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}
