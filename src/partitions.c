/*-------------------------------------------------------------------------
 *
 * partitions.c
 *		Daily partitions of the events and the attempt log: made ahead,
 *		dropped whole once past webhooks.log_retention.
 *
 * webhooks.events and webhooks.delivery_attempts are partitioned by range
 * of created_at, one partition per day (UTC), named <table>_pYYYYMMDD.
 * The worker keeps today's and the next two days' partitions ready, so
 * emit never waits for one; a row for a day with no partition (the worker
 * did not run) lands in the table's default partition, and is moved into
 * the day's partition when that is made.  Retention drops a partition
 * whose upper bound has passed the retention, which costs the same for a
 * million rows as for one, and deletes the few expired rows of the default
 * partition and of the queue.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "queue.h"
#include "webhooks.h"

/* Days of partitions kept ready after today's */
#define DAYS_AHEAD 2

/*
 * The partitioned tables, with their default partitions, and the index
 * each partition has (the partitioned tables have none: see the 1.1
 * install script).
 */
typedef struct PartitionedTable
{
	const char *name;
	const char *index_suffix;
	const char *index_columns;
} PartitionedTable;

static const PartitionedTable partitioned[] = {
	{"events", "txid_idx", "(txid, id)"},
	{"delivery_attempts", "webhook_idx", "(webhook_id, created_at, id)"},
};

/* Run a statement; raise unless it returned the expected code. */
static void
run(const char *sql, int expected)
{
	int			ret = SPI_execute(sql, false, 0);

	if (ret != expected)
		elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(ret));
}

/* A timestamp as a quoted SQL literal. */
static char *
ts_literal(TimestampTz t)
{
	return quote_literal_cstr(DatumGetCString(DirectFunctionCall1(timestamptz_out,
																  TimestampTzGetDatum(t))));
}

/*
 * The end of the newest day partition of webhooks.<table>, or
 * DT_NOBEGIN if it has none.
 */
static TimestampTz
newest_upper_bound(const char *table)
{
	char	   *sql = psprintf("SELECT max((pg_catalog.regexp_match("
							   "  pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
							   "  'TO \\(''([^'']+)''\\)'))[1]::timestamptz)"
							   " FROM pg_catalog.pg_inherits i"
							   " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
							   " WHERE i.inhparent = 'webhooks.%s'::pg_catalog.regclass",
							   table);
	bool		isnull;
	Datum		upper;

	run(sql, SPI_OK_SELECT);
	upper = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
	return isnull ? DT_NOBEGIN : DatumGetTimestampTz(upper);
}

/* Midnight (UTC) at the start of t's day. */
static TimestampTz
day_start(TimestampTz t)
{
	return t - (t % USECS_PER_DAY + USECS_PER_DAY) % USECS_PER_DAY;
}

/*
 * Make the partition of webhooks.<table> for [from, from + 1 day), moving
 * into it any rows of that day from the default partition, then attach it.
 * Attaching takes only a SHARE UPDATE EXCLUSIVE lock on the table, so
 * emit() goes on meanwhile.
 */
static void
make_day_partition(const PartitionedTable *t, TimestampTz from)
{
	const char *table = t->name;
	struct pg_tm tm;
	fsec_t		fsec;
	char		name[NAMEDATALEN];
	char	   *lower = ts_literal(from);
	char	   *upper = ts_literal(from + USECS_PER_DAY);

	if (timestamp2tm(from, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	snprintf(name, sizeof(name), "%s_p%04d%02d%02d", table, tm.tm_year,
			 tm.tm_mon, tm.tm_mday);

	run(psprintf("CREATE TABLE webhooks.%s (LIKE webhooks.%s"
				 " INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", name, table),
		SPI_OK_UTILITY);
	run(psprintf("CREATE INDEX %s_%s ON webhooks.%s %s", name, t->index_suffix,
				 name, t->index_columns),
		SPI_OK_UTILITY);
	/* no row may land in the default partition between the move and ATTACH */
	run(psprintf("LOCK TABLE webhooks.%s_default IN EXCLUSIVE MODE", table),
		SPI_OK_UTILITY);
	run(psprintf("WITH moved AS (DELETE FROM webhooks.%s_default"
				 " WHERE created_at >= %s AND created_at < %s RETURNING *)"
				 " INSERT INTO webhooks.%s SELECT * FROM moved",
				 table, lower, upper, name),
		SPI_OK_INSERT);
	run(psprintf("ALTER TABLE webhooks.%s ATTACH PARTITION webhooks.%s"
				 " FOR VALUES FROM (%s) TO (%s)", table, name, lower, upper),
		SPI_OK_UTILITY);
	ereport(DEBUG1,
			(errmsg("webhooks: made partition webhooks.%s", name)));
}

/*
 * Drop the partitions of webhooks.<table> that end before cutoff, and
 * delete the default partition's rows older than it.  Returns how many
 * partitions were dropped.
 */
static int
drop_expired(const char *table, TimestampTz cutoff)
{
	char	   *sql = psprintf("SELECT c.relname FROM pg_catalog.pg_inherits i"
							   " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
							   " WHERE i.inhparent = 'webhooks.%s'::pg_catalog.regclass"
							   " AND (pg_catalog.regexp_match("
							   "  pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
							   "  'TO \\(''([^'']+)''\\)'))[1]::timestamptz <= %s",
							   table, ts_literal(cutoff));
	List	   *names = NIL;
	ListCell   *lc;

	run(sql, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1));
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		run(psprintf("DROP TABLE webhooks.%s", quote_identifier(name)),
			SPI_OK_UTILITY);
		ereport(LOG,
				(errmsg("webhooks: dropped partition webhooks.%s (older than webhooks.log_retention)",
						name)));
	}
	run(psprintf("DELETE FROM webhooks.%s_default WHERE created_at < %s",
				 table, ts_literal(cutoff)),
		SPI_OK_DELETE);
	return list_length(names);
}

/*
 * Make the partitions due soon and drop the expired ones, in the caller's
 * transaction (SPI connected).  The caller sets a short lock timeout:
 * dropping a partition takes an exclusive lock on its table, which emit()
 * would queue behind, so it must be had at once or tried again later.  Returns false if it did
 * nothing because pg_restore is at work in the database.
 */
bool
webhooks_maintain_partitions(int64 retention_s)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz today = day_start(now);

	/*
	 * While pg_restore fills this database, its dump brings the partitions
	 * it had; making ours now would clash with them.
	 */
	run("SELECT 1 FROM pg_catalog.pg_stat_activity"
		" WHERE datname = pg_catalog.current_database()"
		" AND application_name = 'pg_restore'", SPI_OK_SELECT);
	if (SPI_processed > 0)
		return false;

	for (int i = 0; i < lengthof(partitioned); i++)
	{
		TimestampTz upper = newest_upper_bound(partitioned[i].name);
		TimestampTz from = (upper == DT_NOBEGIN || upper < today) ? today : upper;

		while (from <= today + DAYS_AHEAD * USECS_PER_DAY)
		{
			make_day_partition(&partitioned[i], from);
			from += USECS_PER_DAY;
		}
	}

	if (retention_s > 0)
	{
		TimestampTz cutoff = now - retention_s * USECS_PER_SEC;

		for (int i = 0; i < lengthof(partitioned); i++)
			drop_expired(partitioned[i].name, cutoff);
		/* deliveries of events no longer kept cannot be sent any more */
		run(psprintf("DELETE FROM webhooks.deliveries WHERE emitted_at < %s",
					 ts_literal(cutoff)),
			SPI_OK_DELETE);
	}
	return true;
}
