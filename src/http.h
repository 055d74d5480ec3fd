/*-------------------------------------------------------------------------
 *
 * http.h
 *		The one HTTP path: signed delivery requests on libcurl's multi
 *		interface, used by webhook_test and by the delivery worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKS_HTTP_H
#define WEBHOOKS_HTTP_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/ilist.h"
#include "utils/timestamp.h"

/* How much of a response body is kept (the rest is read and dropped). */
#define WEBHOOKS_RESPONSE_KEEP 1024

/* What a request is for: the fields the envelope and the log need. */
typedef struct WebhookMessage
{
	const char *url;
	const char *secret;
	const char *previous_secret;	/* signs too while a rotation overlaps */
	const char *header_lines;	/* the webhook's "name: value" lines */
	const char *event_id;		/* text form of the event's uuid */
	const char *event;			/* event type, e.g. member.joined */
	const char *community_id;
	const char *payload;		/* JSON text of the event's data */
	TimestampTz emitted_at;
	/* the body, if the caller built it (and keeps it while the request
	 * lives: the worker shares one per event); else NULL */
	const char *body;
	size_t		body_len;
} WebhookMessage;

/* One attempt in flight, and its outcome once done. */
typedef struct WebhookRequest
{
	MemoryContext cxt;			/* holds this struct and all it points to */
	dlist_node	node;			/* in the client's done list */
	void	   *owner;			/* the caller's own state */

	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;
	size_t		body_len;
	bool		added;			/* handed to the multi handle */

	/* outcome */
	TimestampTz started_at;
	bool		done;
	long		status_code;	/* 0 when no HTTP answer came */
	bool		timed_out;		/* no answer within webhooks.timeout */
	int			response_time_ms;
	int64		retry_after_s;	/* Retry-After in seconds, or -1 */
	char	   *error;			/* NULL on success (a 2xx answer) */
	char		blocked[128];	/* why a connect was refused by the guard */
	char		errbuf[CURL_ERROR_SIZE];
	char		response[WEBHOOKS_RESPONSE_KEEP + 1];
	size_t		response_len;
} WebhookRequest;

/* A set of requests in flight: a multi handle and the sockets it watches. */
typedef struct WebhooksClient WebhooksClient;

extern void webhooks_http_global_init(void);

extern char *webhooks_build_body(const WebhookMessage *msg, size_t *len);
extern WebhookRequest *webhooks_request_new(const WebhookMessage *msg,
											MemoryContext parent);
extern void webhooks_request_free(WebhookRequest *req);

extern WebhooksClient *webhooks_client_create(int most_requests);
extern void webhooks_client_configure(WebhooksClient *client);
extern void webhooks_client_add(WebhooksClient *client, WebhookRequest *req);
extern int	webhooks_client_wait(WebhooksClient *client, long max_wait_ms,
								 uint32 wait_event_info);
extern WebhookRequest *webhooks_client_next_done(WebhooksClient *client);
extern int	webhooks_client_in_flight(WebhooksClient *client);
extern void webhooks_client_destroy(WebhooksClient *client);

#endif							/* WEBHOOKS_HTTP_H */
