/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: starts the delivery worker for webhooks.database_name
 *		once that database exists, and again whenever the worker stops.
 *
 * A background worker must name its database when it connects, and a
 * missing database would make it fail and be restarted over and over.
 * The launcher, connected to no database, checks pg_database instead,
 * logs once that it is waiting, and starts the worker as a dynamic
 * background worker when the database appears.  It also restarts the
 * worker when the setting names another database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "webhooks.h"
#include "worker.h"

/* Least time between two starts of the worker, against crash loops */
#define WORKER_RESTART_DELAY_MS 2000
/* How often to look for a database that does not exist yet */
#define DATABASE_POLL_MS 2000

/* How long a command waits for the worker to leave its database */
#define STEP_ASIDE_WAIT_MS 5000

/*
 * The database a utility command needs without other sessions in it
 * (DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE
 * DATABASE ... TEMPLATE), or NULL.
 */
static const char *
database_wanted_alone(Node *parsetree)
{
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			return ((DropdbStmt *) parsetree)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) parsetree)->subname;
			return NULL;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					return ((AlterDatabaseStmt *) parsetree)->dbname;
			return NULL;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "template") == 0)
					return defGetString((DefElem *) lfirst(lc));
			return NULL;
		default:
			return NULL;
	}
}

/*
 * May the current user run such a command on dbname?  Its owner may drop,
 * rename or move it; copying it needs CREATEDB and, unless it is marked as
 * a template, ownership (as createdb() checks).  Stepping aside for a
 * command that would fail anyway would let any role stop deliveries.
 */
static bool
may_run_on_database(const char *dbname, bool copying)
{
	Oid			dboid = get_database_oid(dbname, true);
	bool		owner;

	if (!OidIsValid(dboid))
		return false;
	owner = pg_database_ownercheck(dboid, GetUserId());
	if (!copying)
		return owner;
	if (!superuser())
	{
		HeapTuple	role = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
		HeapTuple	db = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
		bool		createdb = HeapTupleIsValid(role) &&
			((Form_pg_authid) GETSTRUCT(role))->rolcreatedb;
		bool		is_template = HeapTupleIsValid(db) &&
			((Form_pg_database) GETSTRUCT(db))->datistemplate;

		if (HeapTupleIsValid(role))
			ReleaseSysCache(role);
		if (HeapTupleIsValid(db))
			ReleaseSysCache(db);
		return createdb && (owner || is_template);
	}
	return true;
}

/*
 * The delivery worker's database, if this utility command needs it without
 * other sessions and the current user may run it; else NULL.
 */
const char *
webhooks_database_wanted_alone(Node *parsetree)
{
	const char *dbname = database_wanted_alone(parsetree);
	bool		workers_db;

	if (webhooks_shared == NULL || dbname == NULL)
		return NULL;
	SpinLockAcquire(&webhooks_shared->mutex);
	workers_db = (strcmp(webhooks_shared->worker_db, dbname) == 0);
	SpinLockRelease(&webhooks_shared->mutex);
	if (!workers_db ||
		!may_run_on_database(dbname, IsA(parsetree, CreatedbStmt)))
		return NULL;
	return dbname;
}

/*
 * Before such a command: stop the worker and keep the launcher from
 * starting it again until webhooks_step_back().  The worker loses nothing
 * by stopping (committed events stay queued).  The caller makes sure that
 * webhooks_step_back() runs however the command ends
 * (PG_ENSURE_ERROR_CLEANUP).
 */
void
webhooks_step_aside(const char *dbname)
{
	pid_t		pid;

	SpinLockAcquire(&webhooks_shared->mutex);
	webhooks_shared->stepping_aside++;
	pid = webhooks_shared->worker_pid;
	SpinLockRelease(&webhooks_shared->mutex);

	if (pid != 0)
	{
		ereport(LOG,
				(errmsg("webhooks: stopping the delivery worker (PID %d) while database \"%s\" is dropped, renamed, moved or copied",
						(int) pid, dbname)));
		kill(pid, SIGTERM);
		for (int waited = 0; waited < STEP_ASIDE_WAIT_MS; waited += 10)
		{
			CHECK_FOR_INTERRUPTS();
			if (webhooks_shared->worker_pid != pid)
				break;
			pg_usleep(10 * 1000L);
		}
	}
}

/* The command is done: the launcher may start the worker again. */
void
webhooks_step_back(int code, Datum arg)
{
	Latch	   *launcher;

	SpinLockAcquire(&webhooks_shared->mutex);
	webhooks_shared->stepping_aside--;
	launcher = webhooks_shared->launcher_latch;
	SpinLockRelease(&webhooks_shared->mutex);
	if (launcher != NULL)
		SetLatch(launcher);
}

/* Register the launcher; called from _PG_init while preloading. */
void
webhooks_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhooks");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhooks_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "webhooks launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "webhooks launcher");
	RegisterBackgroundWorker(&worker);
}

/* Does the database exist?  Reads the shared catalog pg_database. */
static bool
database_exists(const char *dbname)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	/*
	 * Without a database, only a heap scan of the shared catalog works (as
	 * in the autovacuum launcher): its indexes cannot be opened.
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists &&
		   (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		exists = (strcmp(NameStr(db->datname), dbname) == 0);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/*
 * Is a worker started by an earlier launcher still running?  (A launcher
 * that was terminated leaves its worker behind; only one may run.)
 */
static bool
worker_left_running(void)
{
	pid_t		pid = webhooks_shared ? webhooks_shared->worker_pid : 0;

	return pid != 0 && kill(pid, 0) == 0;
}

/* Is a command waiting for the worker to stay out of its database? */
static bool
worker_asked_to_step_aside(void)
{
	bool		asked;

	if (webhooks_shared == NULL)
		return false;
	SpinLockAcquire(&webhooks_shared->mutex);
	asked = webhooks_shared->stepping_aside > 0;
	SpinLockRelease(&webhooks_shared->mutex);
	return asked;
}

/* Start the delivery worker for dbname; NULL if no slot was free. */
static BackgroundWorkerHandle *
start_worker(const char *dbname)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhooks");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhooks_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "webhooks worker for database %s",
			 dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "webhooks worker");
	strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errmsg("webhooks: could not start the delivery worker"),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
}

/* The launcher's latch is no longer to be set once it exits. */
static void
forget_launcher(int code, Datum arg)
{
	SpinLockAcquire(&webhooks_shared->mutex);
	if (webhooks_shared->launcher_latch == MyLatch)
		webhooks_shared->launcher_latch = NULL;
	SpinLockRelease(&webhooks_shared->mutex);
}

/* Entry point of the launcher process. */
void
webhooks_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handle = NULL;
	char		worker_db[NAMEDATALEN] = "";
	bool		said_waiting = false;
	TimestampTz last_start = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("webhooks launcher");
	if (webhooks_shared != NULL)
	{
		SpinLockAcquire(&webhooks_shared->mutex);
		webhooks_shared->launcher_latch = MyLatch;
		SpinLockRelease(&webhooks_shared->mutex);
		before_shmem_exit(forget_launcher, (Datum) 0);
	}

	for (;;)
	{
		long		timeout = -1;
		pid_t		pid;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (handle != NULL && strcmp(worker_db, webhooks_database_name) != 0)
			{
				ereport(LOG,
						(errmsg("webhooks: webhooks.database_name changed; restarting the delivery worker")));
				TerminateBackgroundWorker(handle);
			}
		}

		if (handle != NULL &&
			GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			pfree(handle);
			handle = NULL;
		}

		if (handle == NULL &&
			(worker_left_running() || worker_asked_to_step_aside()))
			timeout = DATABASE_POLL_MS;
		else if (handle == NULL)
		{
			if (!database_exists(webhooks_database_name))
			{
				if (!said_waiting)
					ereport(LOG,
							(errmsg("webhooks: database \"%s\" does not exist yet; the delivery worker starts when it does",
									webhooks_database_name)));
				said_waiting = true;
				timeout = DATABASE_POLL_MS;
			}
			else
			{
				long		since_ms = (long) ((GetCurrentTimestamp() - last_start) / 1000);

				said_waiting = false;
				if (last_start != 0 && since_ms < WORKER_RESTART_DELAY_MS)
					timeout = WORKER_RESTART_DELAY_MS - since_ms;
				else
				{
					handle = start_worker(webhooks_database_name);
					strlcpy(worker_db, webhooks_database_name, NAMEDATALEN);
					last_start = GetCurrentTimestamp();
					if (handle == NULL)
						timeout = WORKER_RESTART_DELAY_MS;
				}
			}
		}

		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
						 (timeout >= 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* Exit code 1: the postmaster starts the launcher again unless shutting down. */
	proc_exit(1);
}
