/*-------------------------------------------------------------------------
 *
 * reader.c
 *		Reading committed events and queueing their deliveries.
 *
 * emit() appends an event with its transaction's id (txid) and nothing
 * else; the worker turns events into deliveries after they commit.  Event
 * ids and times are made before commit, so a transaction that commits
 * late can hold lower ids than events already read: reading in id or time
 * order would skip it.  Instead, as PgQ does, each read takes a snapshot
 * and reads the events of the transactions that are visible in it and
 * were not visible in the previous read's snapshot (webhooks.reader):
 *
 *   - txids from the previous snapshot's xmax up to the new one's xmax,
 *     visible in the new snapshot (they started after the previous read
 *     and have committed since), found by a range scan of (txid, id);
 *   - txids that were in progress at the previous read (its xip list)
 *     and are visible now, found one by one.
 *
 * A transaction still in progress now is in the new snapshot's xip list,
 * so the next read picks it up.  Nothing is skipped under any interleaving
 * of commits, long transactions and two-phase commit (the isolation specs
 * in specs/ show it), and nothing is read twice.
 *
 * The read is one statement, in the extension's SQL function
 * webhooks.read_events(): it reads, queues one delivery per active
 * subscribed webhook of the event's community, and moves the read
 * position, so a crash at any moment loses no event and queues none twice.
 * The statement's own snapshot is the read's snapshot: everything it
 * counts as committed, it also sees.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "queue.h"

/*
 * Read the events committed since the last read and queue their
 * deliveries.  Runs in the caller's transaction, with SPI connected.
 * Returns how many deliveries were queued; *events gets how many events
 * were read.
 */
int64
webhooks_read_events(int64 *events)
{
	bool		isnull;
	int			ret;
	int64		queued;

	ret = SPI_execute("SELECT events, queued FROM webhooks.read_events()",
					  false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read events: %s", SPI_result_code_string(ret));
	*events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	queued = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 2, &isnull));
	return queued;
}
