/*-------------------------------------------------------------------------
 *
 * ping.c
 *		webhook_test(): a signed test.ping sent now, from the calling
 *		backend, through the same HTTP path as every delivery.
 *
 * The backend waits on the request's sockets and its latch together, so
 * a cancel or statement_timeout ends the wait at once; the libcurl
 * handles are freed however the wait ends.  The attempt is logged like
 * any other, as event test.ping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"

#include "http.h"
#include "queue.h"
#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_test);

#define TEST_EVENT "test.ping"

/* A client for one request; if it cannot be made, the request is freed. */
static WebhooksClient *
client_for(WebhookRequest *req)
{
	WebhooksClient *volatile client = NULL;

	PG_TRY();
	{
		client = webhooks_client_create(1);
	}
	PG_CATCH();
	{
		webhooks_request_free(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return client;
}

/* Send one request and wait for it; an ERROR (cancel) frees everything. */
static void
send_and_wait(WebhookRequest *req, AttemptRecord *record)
{
	WebhooksClient *client = client_for(req);
	WebhookRequest *volatile done = NULL;

	PG_TRY();
	{
		WebhookRequest *got;

		webhooks_client_add(client, req);
		while ((got = webhooks_client_next_done(client)) == NULL)
		{
			webhooks_client_wait(client, -1, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
		done = got;
		record->status_code = (int) got->status_code;
		record->response_time_ms = got->response_time_ms;
		record->started_at = got->started_at;
		record->error = got->error ? pstrdup(got->error) : NULL;
		record->response_body = (got->error && got->response_len > 0) ?
			pstrdup(got->response) : NULL;
	}
	PG_FINALLY();
	{
		if (done != NULL)
			webhooks_request_free(done);
		webhooks_client_destroy(client);
	}
	PG_END_TRY();
}

/* SQL: webhook_test(community_id, id) -> (status_code, response_time_ms, error) */
Datum
webhooks_test(PG_FUNCTION_ARGS)
{
	char	   *community_id = check_community_id(fcinfo, 0);
	pg_uuid_t  *id = check_webhook_id(fcinfo, 1);
	WebhookMessage msg;
	AttemptRecord record;
	WebhookRequest *req;
	TupleDesc	resdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	WebhookTarget target;

	if (get_call_result_type(fcinfo, NULL, &resdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!webhooks_lookup(community_id, id, &target))
		webhooks_raise_not_found(community_id, id);

	memset(&record, 0, sizeof(record));
	record.webhook_id = *id;
	webhooks_uuid_v7_fill(&record.event_id);
	record.event = TEST_EVENT;
	record.attempt = 1;
	record.outcome = OUTCOME_TEST;

	msg.url = target.url;
	msg.secret = target.secret;
	msg.previous_secret = target.previous_secret;
	msg.header_lines = target.header_lines;
	msg.event_id = webhooks_uuid_to_cstring(&record.event_id);
	msg.event = TEST_EVENT;
	msg.community_id = community_id;
	msg.payload = psprintf("{\"webhook_id\":\"%s\",\"message\":\"This is a test event.\"}",
						   webhooks_uuid_to_cstring(id));
	msg.emitted_at = GetCurrentTimestamp();
	msg.body = NULL;

	req = webhooks_request_new(&msg, CurrentMemoryContext);
	send_and_wait(req, &record);

	SPI_connect();
	{
		bool		deferred;	/* never: a ping has no delivery row */

		webhooks_queue_record(&record, 1, &deferred);
	}
	SPI_finish();

	nulls[0] = (record.status_code == 0);
	values[0] = Int32GetDatum(record.status_code);
	values[1] = Int32GetDatum(record.response_time_ms);
	nulls[2] = (record.error == NULL);
	values[2] = nulls[2] ? (Datum) 0 : CStringGetTextDatum(record.error);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(resdesc),
													  values, nulls)));
}
