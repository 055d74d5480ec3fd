/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The extension's settings, and the retry schedule they describe.
 *
 * Every setting is defined here with its unit and bounds.  The ones that
 * decide what the server may connect to (allow_http,
 * allow_private_addresses, ssl_ca_file) are PGC_SUSET: only a superuser
 * may change them, so an application role cannot point deliveries at
 * internal services or weaken TLS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/varlena.h"

#include "webhooks.h"

char	   *webhooks_database_name = NULL;
bool		webhooks_allow_http = false;
bool		webhooks_allow_private_addresses = false;
char	   *webhooks_ssl_ca_file = NULL;
int			webhooks_timeout_ms = 15000;
char	   *webhooks_retry_schedule = NULL;
int			webhooks_max_concurrent = 512;
int			webhooks_max_per_endpoint = 64;
int			webhooks_batch_size = 500;
int			webhooks_log_retention_s = 30 * 24 * 3600;
int			webhooks_max_payload_size = 1024 * 1024;
int			webhooks_max_bytes_in_flight_kb = 64 * 1024;
int			webhooks_disable_after_s = 5 * 24 * 3600;

/* The parsed retry schedule: delays in ms before attempts 2, 3, ... */
typedef struct RetrySchedule
{
	int			count;
	int			delay_ms[WEBHOOKS_MAX_RETRIES];
} RetrySchedule;

static RetrySchedule *retry_schedule = NULL;

/*
 * Parse a schedule such as "5s,5min,30min" into delays, the list split as
 * PostgreSQL splits its own list settings.  On a bad element, return false
 * with a detail saying which element and why.
 */
static bool
parse_retry_schedule(const char *value, RetrySchedule *schedule,
					 char **detail)
{
	char	   *copy = pstrdup(value);
	List	   *items;
	ListCell   *lc;

	schedule->count = 0;
	/* An empty (or all-blank) schedule means a single attempt. */
	if (!SplitGUCList(copy, ',', &items))
	{
		*detail = pstrdup("The list is malformed: an element is empty, or holds a space.");
		return false;
	}
	foreach(lc, items)
	{
		char	   *item = (char *) lfirst(lc);
		int			delay;
		const char *hint = NULL;

		if (!parse_int(item, &delay, GUC_UNIT_MS, &hint))
		{
			*detail = psprintf("\"%s\" is not a time interval%s%s", item,
							   hint ? ": " : ".", hint ? hint : "");
			return false;
		}
		if (delay < 0)
		{
			*detail = psprintf("\"%s\" is negative.", item);
			return false;
		}
		if (schedule->count >= WEBHOOKS_MAX_RETRIES)
		{
			*detail = psprintf("It has more than %d retries.", WEBHOOKS_MAX_RETRIES);
			return false;
		}
		schedule->delay_ms[schedule->count++] = delay;
	}
	list_free(items);
	pfree(copy);
	return true;
}

/* Check hook: reject a malformed schedule, never replace it silently. */
static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	RetrySchedule schedule;
	RetrySchedule *result;
	char	   *detail = NULL;

	if (!parse_retry_schedule(*newval ? *newval : "", &schedule, &detail))
	{
		GUC_check_errdetail("%s", detail);
		GUC_check_errhint("Give comma-separated delays with units, "
						  "such as \"5s,5min,30min,2h\".");
		return false;
	}

	result = (RetrySchedule *) malloc(sizeof(RetrySchedule));
	if (result == NULL)
		return false;
	*result = schedule;
	*extra = result;
	return true;
}

static void
assign_retry_schedule(const char *newval, void *extra)
{
	retry_schedule = (RetrySchedule *) extra;
}

/* How many attempts a delivery gets: one plus the schedule's length. */
int
webhooks_max_attempts(void)
{
	return 1 + (retry_schedule ? retry_schedule->count : 0);
}

/*
 * The delay before the next attempt of a delivery that has made
 * attempts_made attempts, or -1 when no attempt is left.
 */
int64
webhooks_retry_delay_ms(int attempts_made)
{
	if (retry_schedule == NULL || attempts_made < 1 ||
		attempts_made > retry_schedule->count)
		return -1;
	return retry_schedule->delay_ms[attempts_made - 1];
}

/* Define every setting; called once from _PG_init. */
void
webhooks_define_gucs(void)
{
	DefineCustomStringVariable("webhooks.database_name",
							   "Database the delivery worker serves.",
							   NULL,
							   &webhooks_database_name,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("webhooks.allow_http",
							 "Accept http:// endpoint URLs (development only).",
							 NULL,
							 &webhooks_allow_http,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("webhooks.allow_private_addresses",
							 "Allow connecting to loopback, private and link-local addresses.",
							 "Off, requests to such addresses fail before a byte is sent.",
							 &webhooks_allow_private_addresses,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("webhooks.ssl_ca_file",
							   "CA bundle used to verify endpoints; empty means the system CAs.",
							   NULL,
							   &webhooks_ssl_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.timeout",
							"Time limit of one delivery attempt, connection included.",
							NULL,
							&webhooks_timeout_ms,
							15000,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("webhooks.retry_schedule",
							   "Delays before attempts 2, 3, ...; its length plus one is the number of attempts.",
							   NULL,
							   &webhooks_retry_schedule,
							   "5s,5min,30min,2h,5h,10h,10h",
							   PGC_SIGHUP,
							   0,
							   check_retry_schedule,
							   assign_retry_schedule,
							   NULL);

	DefineCustomIntVariable("webhooks.max_concurrent_requests",
							"Most delivery requests the worker has in flight at once.",
							NULL,
							&webhooks_max_concurrent,
							512,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.max_requests_per_endpoint",
							"Most requests in flight to one webhook.",
							NULL,
							&webhooks_max_per_endpoint,
							64,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.batch_size",
							"Most deliveries the worker claims or records in one transaction.",
							NULL,
							&webhooks_batch_size,
							500,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.log_retention",
							"How long events and delivery attempts are kept; 0 keeps them forever.",
							NULL,
							&webhooks_log_retention_s,
							30 * 24 * 3600,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.disable_after",
							"Deactivate a webhook whose attempts have all failed for this long; 0 never does.",
							"Failures at both ends of the span, no success in between; a webhook.disabled event says so.",
							&webhooks_disable_after_s,
							5 * 24 * 3600,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.max_payload_size",
							"Largest event payload emit accepts (as stored, in jsonb).",
							"Bounds what the worker holds in memory per request.",
							&webhooks_max_payload_size,
							1024 * 1024,
							1024,
							64 * 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("webhooks.max_bytes_in_flight",
							"Most request bodies the worker holds at once, in bytes.",
							"Claims stop short of it; one event's body is held once, however many webhooks it goes to.",
							&webhooks_max_bytes_in_flight_kb,
							64 * 1024,
							1024,
							INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("webhooks");
}
