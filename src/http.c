/*-------------------------------------------------------------------------
 *
 * http.c
 *		Signed delivery requests over libcurl's multi interface.
 *
 * This is the one HTTP path of the extension: webhook_test sends a single
 * request with it from a backend, the worker sends thousands.  A request
 * is built here (envelope, Standard Webhooks headers, TLS and protocol
 * limits, the address guard, the time limit, a capped response buffer),
 * and a client drives many of them at once.
 *
 * A client keeps every socket libcurl asks about in one epoll set, and
 * waits on that set's descriptor together with the process latch in one
 * WaitEventSet, so cancel, SIGTERM and SIGHUP are served while requests
 * are in flight.  Connections stay in the multi handle's cache and are
 * reused: HTTP/1.1 keep-alive, a connection per request in flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "address.h"
#include "http.h"
#include "webhooks.h"

#define MAX_EPOLL_EVENTS 64

struct WebhooksClient
{
	CURLM	   *multi;
	int			epfd;			/* epoll set of libcurl's sockets */
	WaitEventSet *wes;			/* latch + epfd + postmaster death */
	int			in_flight;
	long		timer_ms;		/* libcurl's last timer request, -1 none */
	TimestampTz timer_set_at;
	dlist_head	running;		/* requests handed to libcurl */
	dlist_head	done;			/* finished requests not yet taken */

	/*
	 * What decided whether a kept-alive connection could be made: when a
	 * reload changes it, the connections are dropped (see renew_multi).
	 */
	char	   *connect_rules;
	bool		renew;			/* drop the connections once idle */
	dlist_head	held;			/* new requests waiting for the renewal */
	int			nheld;

	/* Connections: see max_connections and reserve_fds */
	int			most_requests;	/* the owner's own bound, 0 if none */
	int			reserved_fds;	/* counted with PostgreSQL's descriptors */
};

static bool curl_ready = false;

static void renew_multi(WebhooksClient *client);

/*
 * Easy handles of finished requests, reset and kept for the next ones: a
 * new handle costs allocations (and its buffers) on every request.
 */
#define HANDLE_POOL_SIZE 1024
static CURL *handle_pool[HANDLE_POOL_SIZE];
static int	handle_pool_len = 0;

/* A clean easy handle, from the pool if one is there. */
static CURL *
get_handle(void)
{
	CURL	   *easy;

	if (handle_pool_len > 0)
		return handle_pool[--handle_pool_len];
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return easy;
}

/* Give a handle back: reset (all options cleared) into the pool, or freed. */
static void
put_handle(CURL *easy)
{
	if (handle_pool_len < HANDLE_POOL_SIZE)
	{
		curl_easy_reset(easy);
		handle_pool[handle_pool_len++] = easy;
	}
	else
		curl_easy_cleanup(easy);
}

/* Raise an error unless a libcurl call succeeded. */
static void
check_curl(CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		elog(ERROR, "libcurl %s failed: %s", what, curl_easy_strerror(rc));
}

static void
check_curlm(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		elog(ERROR, "libcurl %s failed: %s", what, curl_multi_strerror(rc));
}

/* Initialise libcurl once per process (in the postmaster when preloaded). */
void
webhooks_http_global_init(void)
{
	if (curl_ready)
		return;
	check_curl(curl_global_init(CURL_GLOBAL_DEFAULT), "global init");
	curl_ready = true;
}

/*
 * The JSON envelope:
 * {"id":...,"type":...,"timestamp":...,"community_id":...,"data":...}
 * The timestamp is the event's, in UTC with milliseconds.
 */
char *
webhooks_build_body(const WebhookMessage *msg, size_t *len)
{
	StringInfoData buf;
	struct pg_tm tm;
	fsec_t		fsec;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"id\":");
	escape_json(&buf, msg->event_id);
	appendStringInfoString(&buf, ",\"type\":");
	escape_json(&buf, msg->event);
	if (timestamp2tm(msg->emitted_at, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	appendStringInfo(&buf,
					 ",\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour,
					 tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
	appendStringInfoString(&buf, ",\"community_id\":");
	escape_json(&buf, msg->community_id);
	appendStringInfoString(&buf, ",\"data\":");
	appendStringInfoString(&buf, msg->payload);
	appendStringInfoChar(&buf, '}');
	*len = buf.len;
	return buf.data;
}

/*
 * libcurl's open-socket callback: the address guard.  It sees every
 * address libcurl tries, after DNS, so a name that resolves to a private
 * address is caught as surely as a literal one.
 */
static curl_socket_t
open_socket_guarded(void *clientp, curlsocktype purpose,
					struct curl_sockaddr *address)
{
	WebhookRequest *req = (WebhookRequest *) clientp;
	const char *reason = webhooks_address_block_reason(&address->addr);

	if (reason != NULL)
	{
		char		host[INET6_ADDRSTRLEN] = "?";

		if (address->family == AF_INET)
			inet_ntop(AF_INET,
					  &((struct sockaddr_in *) &address->addr)->sin_addr,
					  host, sizeof(host));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6,
					  &((struct sockaddr_in6 *) &address->addr)->sin6_addr,
					  host, sizeof(host));
		snprintf(req->blocked, sizeof(req->blocked),
				 "connection to %s blocked: %s", host, reason);
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/* Keep the first bytes of a response; read and drop the rest. */
static size_t
collect_response(char *data, size_t size, size_t nmemb, void *userdata)
{
	WebhookRequest *req = (WebhookRequest *) userdata;
	size_t		len = size * nmemb;
	size_t		room = WEBHOOKS_RESPONSE_KEEP - req->response_len;
	size_t		keep = Min(len, room);

	if (keep > 0)
	{
		memcpy(req->response + req->response_len, data, keep);
		req->response_len += keep;
	}
	return len;
}

#define setopt(easy, opt, value) \
	check_curl(curl_easy_setopt((easy), (opt), (value)), #opt)

/* Build the body, headers and libcurl handle of a request, in its context. */
static void
fill_request(WebhookRequest *req, const WebhookMessage *msg)
{
	int64		now = (int64) time(NULL);
	char	   *signature;
	CURL	   *easy;

	if (msg->body != NULL)
	{
		req->body = (char *) msg->body;
		req->body_len = msg->body_len;
	}
	else
		req->body = webhooks_build_body(msg, &req->body_len);

	signature = webhooks_sign(msg->secret, msg->event_id, now, req->body,
							  req->body_len);
	if (signature == NULL)
	{
		/* Not sendable; the caller records it as a failed attempt. */
		req->done = true;
		req->error = "the webhook's secret cannot be decoded";
		return;
	}

	req->headers = curl_slist_append(req->headers,
									 "content-type: application/json");
	req->headers = curl_slist_append(req->headers,
									 psprintf("webhook-id: %s", msg->event_id));
	req->headers = curl_slist_append(req->headers,
									 psprintf("webhook-timestamp: " INT64_FORMAT,
											  now));
	/* During a rotation's overlap, the old secret signs too, second. */
	if (msg->previous_secret != NULL)
	{
		char	   *previous = webhooks_sign(msg->previous_secret,
											 msg->event_id, now, req->body,
											 req->body_len);

		if (previous != NULL)
			signature = psprintf("%s %s", signature, previous);
	}
	req->headers = curl_slist_append(req->headers,
									 psprintf("webhook-signature: %s",
											  signature));
	/* Never wait for "100 Continue": it costs a round trip, or a second. */
	req->headers = curl_slist_append(req->headers, "Expect:");
	/* The webhook's own headers, one "name: value" per line (checked). */
	if (msg->header_lines != NULL)
	{
		char	   *lines = pstrdup(msg->header_lines);
		char	   *save = NULL;

		for (char *line = strtok_r(lines, "\n", &save); line != NULL;
			 line = strtok_r(NULL, "\n", &save))
			if (req->headers != NULL)
				req->headers = curl_slist_append(req->headers, line);
	}
	if (req->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	easy = get_handle();
	req->easy = easy;

	setopt(easy, CURLOPT_PRIVATE, req);
	setopt(easy, CURLOPT_URL, msg->url);
	setopt(easy, CURLOPT_PROTOCOLS_STR,
		   webhooks_allow_http ? "https,http" : "https");
	setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	/* No proxy from the environment: it would bypass the address guard. */
	setopt(easy, CURLOPT_PROXY, "");
	setopt(easy, CURLOPT_NOSIGNAL, 1L);
	setopt(easy, CURLOPT_TIMEOUT_MS, (long) webhooks_timeout_ms);
	setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (webhooks_ssl_ca_file && webhooks_ssl_ca_file[0] != '\0')
		setopt(easy, CURLOPT_CAINFO, webhooks_ssl_ca_file);
	setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 3600L);
	/*
	 * HTTP/1.1 over kept-alive connections, one per request in flight: per
	 * request, libcurl 7.88's HTTP/2 path costs the worker much more CPU
	 * (it writes every frame to the socket by itself), and the worker is
	 * CPU-bound (see the README's benchmarks: 1.5x the deliveries to one
	 * endpoint).  Receivers take HTTP/1.1 everywhere.
	 */
	setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	setopt(easy, CURLOPT_USERAGENT, WEBHOOKS_USER_AGENT);
	setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	setopt(easy, CURLOPT_POSTFIELDS, req->body);
	setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	setopt(easy, CURLOPT_WRITEFUNCTION, collect_response);
	setopt(easy, CURLOPT_WRITEDATA, req);
	setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	if (!webhooks_allow_private_addresses)
	{
		setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_guarded);
		setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	}
}

/*
 * A signed POST of one message, ready to hand to a client.  All of it
 * lives in its own memory context under parent; free it with
 * webhooks_request_free.  Settings are read now.  On an error nothing is
 * left behind: neither the context nor the libcurl handle.
 */
WebhookRequest *
webhooks_request_new(const WebhookMessage *msg, MemoryContext parent)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(parent, "webhooks request",
											  ALLOCSET_SMALL_SIZES);
	WebhookRequest *req = MemoryContextAllocZero(cxt, sizeof(WebhookRequest));

	req->cxt = cxt;
	req->retry_after_s = -1;
	PG_TRY();
	{
		MemoryContextSwitchTo(cxt);
		fill_request(req, msg);
		MemoryContextSwitchTo(caller);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		webhooks_request_free(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return req;
}

/* Release a request that is no longer in a client. */
void
webhooks_request_free(WebhookRequest *req)
{
	Assert(!req->added);
	if (req->easy)
		put_handle(req->easy);
	curl_slist_free_all(req->headers);
	MemoryContextDelete(req->cxt);
}

/* Fill in a finished request's outcome from libcurl. */
static void
finish_request(WebhookRequest *req, CURLcode result)
{
	curl_off_t	total_us = 0;
	curl_off_t	retry_after = 0;
	long		status = 0;
	MemoryContext old;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after) ==
		CURLE_OK && retry_after > 0)
		req->retry_after_s = retry_after;

	req->done = true;
	req->status_code = status;
	req->response_time_ms = (int) ((total_us + 500) / 1000);
	/* Kept as text for the log: anything but printable ASCII becomes '?'. */
	for (size_t i = 0; i < req->response_len; i++)
	{
		unsigned char c = (unsigned char) req->response[i];

		if ((c < 0x20 && c != '\n' && c != '\t') || c > 0x7e)
			req->response[i] = '?';
	}
	req->response[req->response_len] = '\0';

	req->timed_out = (result == CURLE_OPERATION_TIMEDOUT);
	old = MemoryContextSwitchTo(req->cxt);
	if (result == CURLE_OK && status >= 200 && status < 300)
		req->error = NULL;
	else if (result == CURLE_OK)
		req->error = psprintf("endpoint answered HTTP %ld", status);
	else if (req->blocked[0] != '\0')
		req->error = psprintf("%s (webhooks.allow_private_addresses is off)",
							  req->blocked);
	else
		req->error = pstrdup(req->errbuf[0] ? req->errbuf :
							 curl_easy_strerror(result));
	MemoryContextSwitchTo(old);
}

/* libcurl's socket callback: mirror its interest in our epoll set. */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp,
				void *socketp)
{
	WebhooksClient *client = (WebhooksClient *) userp;
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(client->epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = fd;
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;

	if (epoll_ctl(client->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
		(errno != ENOENT ||
		 epoll_ctl(client->epfd, EPOLL_CTL_ADD, fd, &ev) != 0))
		elog(WARNING, "could not watch socket %d: %m", fd);
	return 0;
}

/* libcurl's timer callback: remember when it wants to be called back. */
static int
timer_callback(CURLM *multi, long timeout_ms, void *userp)
{
	WebhooksClient *client = (WebhooksClient *) userp;

	client->timer_ms = timeout_ms;
	client->timer_set_at = GetCurrentTimestamp();
	return 0;
}

/* Move every request libcurl has finished to the done list. */
static void
collect_finished(WebhooksClient *client)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
	{
		WebhookRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		finish_request(req, msg->data.result);
		curl_multi_remove_handle(client->multi, req->easy);
		req->added = false;
		client->in_flight--;
		dlist_delete(&req->node);
		dlist_push_tail(&client->done, &req->node);
	}

	/* The last request on the old connections is done: renew. */
	if (client->renew && client->in_flight == client->nheld)
	{
		client->renew = false;
		client->in_flight -= client->nheld;
		client->nheld = 0;
		renew_multi(client);
	}
}

/* The settings that decide what may be connected to, as one string. */
static char *
connect_rules(MemoryContext cxt)
{
	return MemoryContextStrdup(cxt,
							   psprintf("http=%d private=%d ca=%s",
										webhooks_allow_http,
										webhooks_allow_private_addresses,
										webhooks_ssl_ca_file ? webhooks_ssl_ca_file : ""));
}

/* A multi handle wired to the client's socket and timer callbacks. */
static CURLM *
new_multi(WebhooksClient *client)
{
	CURLM	   *multi = curl_multi_init();

	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	check_curlm(curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
								  socket_callback), "socket callback");
	check_curlm(curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, client),
				"socket data");
	check_curlm(curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
								  timer_callback), "timer callback");
	check_curlm(curl_multi_setopt(multi, CURLMOPT_TIMERDATA, client),
				"timer data");
	return multi;
}

/*
 * Drop every kept-alive connection (and libcurl's cached CA store) by
 * replacing the multi handle, once nothing is in flight on the old one,
 * then start the requests held back meanwhile.  A connection was checked
 * against the guard, the scheme and the CAs when it was made; after a
 * reload that tightened them it must not be used again.
 */
static void
renew_multi(WebhooksClient *client)
{
	Assert(client->in_flight == 0);
	curl_multi_cleanup(client->multi);
	client->multi = NULL;
	client->timer_ms = -1;
	client->multi = new_multi(client);
	webhooks_client_configure(client);

	while (!dlist_is_empty(&client->held))
	{
		WebhookRequest *req = dlist_container(WebhookRequest, node,
											  dlist_pop_head_node(&client->held));

		webhooks_client_add(client, req);
	}
}

/*
 * How many connections a client may hold: one per request in flight
 * (HTTP/1.1), so webhooks.max_concurrent_requests, or the owner's own
 * bound; and no more than two thirds of the descriptors PostgreSQL
 * counts on (max_safe_fds), so that neither the sockets nor the server's
 * files run out.  Requests beyond it wait inside libcurl for a connection.
 */
static int
max_connections(WebhooksClient *client)
{
	int			most = webhooks_max_concurrent;
	int			fd_bound = Max(max_safe_fds * 2 / 3, 1);

	if (client->most_requests > 0)
		most = Min(most, client->most_requests);
	if (most > fd_bound)
	{
		ereport(LOG,
				(errmsg("webhooks: %d connections at most, not %d: the process may open no more descriptors",
						fd_bound, most),
				 errhint("Raise the open files limit (ulimit -n) and max_files_per_process.")));
		most = fd_bound;
	}
	return most;
}

/*
 * Count a client's connections with PostgreSQL's file descriptors
 * (ReserveExternalFD, as postgres_fdw counts its connections), so the
 * files the server keeps open make room for them.  The whole bound is
 * reserved for the client's life rather than socket by socket: libcurl
 * 7.88 closes a socket that had not finished connecting without calling
 * its close-socket callback, so a count per socket would drift upward.
 */
static void
reserve_fds(WebhooksClient *client, int n)
{
	for (; client->reserved_fds < n; client->reserved_fds++)
		ReserveExternalFD();
	for (; client->reserved_fds > n; client->reserved_fds--)
		ReleaseExternalFD();
}

/* A client with no requests yet. */
WebhooksClient *
webhooks_client_create(int most_requests)
{
	WebhooksClient *client = palloc0(sizeof(WebhooksClient));

	client->most_requests = most_requests;
	webhooks_http_global_init();
	dlist_init(&client->running);
	dlist_init(&client->done);
	client->timer_ms = -1;

	client->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (client->epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set: %m")));

	PG_TRY();
	{
		client->multi = new_multi(client);
	}
	PG_CATCH();
	{
		close(client->epfd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dlist_init(&client->held);
	client->connect_rules = connect_rules(CurrentMemoryContext);

	client->wes = CreateWaitEventSet(CurrentMemoryContext, 3);
	AddWaitEventToSet(client->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch,
					  NULL);
	AddWaitEventToSet(client->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
					  NULL, NULL);
	AddWaitEventToSet(client->wes, WL_SOCKET_READABLE, client->epfd, NULL,
					  NULL);

	webhooks_client_configure(client);
	return client;
}

/*
 * Apply the connection limits from the settings (again, after SIGHUP).  If
 * the settings that decide what may be connected to changed, the
 * kept-alive connections are dropped before the next request starts.
 */
void
webhooks_client_configure(WebhooksClient *client)
{
	char	   *rules = connect_rules(GetMemoryChunkContext(client));
	int			connections;

	if (strcmp(rules, client->connect_rules) != 0)
	{
		pfree(client->connect_rules);
		client->connect_rules = rules;
		if (client->in_flight == 0)
		{
			renew_multi(client);
			return;
		}
		client->renew = true;
	}
	else
		pfree(rules);

	/*
	 * No per-host cap: webhooks on one host (many customers of one SaaS)
	 * would share it, and one slow webhook would hold every connection.
	 * The worker limits each webhook to max_requests_per_endpoint itself.
	 */
	check_curlm(curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
								  0L),
				"max host connections");
	connections = max_connections(client);
	reserve_fds(client, connections);
	check_curlm(curl_multi_setopt(client->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
								  (long) connections),
				"max total connections");
	check_curlm(curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS,
								  (long) connections),
				"connection cache size");
	check_curlm(curl_multi_setopt(client->multi, CURLMOPT_PIPELINING,
								  (long) CURLPIPE_NOTHING),
				"multiplexing");
}

/*
 * Start a request; one that could not be built or started goes straight
 * to done, as a failed attempt.  Never raises an error, so a caller may
 * move a request between its own lists before calling this.
 */
void
webhooks_client_add(WebhooksClient *client, WebhookRequest *req)
{
	CURLMcode	rc;

	if (client->renew)
	{
		/* counted as in flight: it starts as soon as the renewal is done */
		client->in_flight++;
		req->added = false;
		dlist_push_tail(&client->held, &req->node);
		client->nheld++;
		return;
	}
	req->started_at = GetCurrentTimestamp();
	if (req->done || req->easy == NULL)
	{
		req->done = true;
		dlist_push_tail(&client->done, &req->node);
		return;
	}
	rc = curl_multi_add_handle(client->multi, req->easy);
	if (rc != CURLM_OK)
	{
		/* A failed attempt like any other, recorded for its delivery. */
		req->done = true;
		req->error = MemoryContextStrdup(req->cxt, curl_multi_strerror(rc));
		dlist_push_tail(&client->done, &req->node);
		return;
	}
	req->added = true;
	client->in_flight++;
	dlist_push_tail(&client->running, &req->node);
}

/*
 * Wait until a socket is ready, libcurl's timer is due, the latch is set,
 * or max_wait_ms passes (-1: no limit), then let libcurl do its work.
 * Returns WL_LATCH_SET if the latch was set (and resets it), else 0.  The
 * caller checks for interrupts and collects finished requests.
 */
int
webhooks_client_wait(WebhooksClient *client, long max_wait_ms,
					 uint32 wait_event_info)
{
	WaitEvent	events[3];
	int			nevents;
	int			result = 0;
	long		timeout = max_wait_ms;
	bool		socket_ready = false;
	int			running;

	if (!dlist_is_empty(&client->done))
		timeout = 0;
	else if (client->timer_ms >= 0)
	{
		long		elapsed_ms = (long) ((GetCurrentTimestamp() -
										  client->timer_set_at) / 1000);
		long		due = Max(client->timer_ms - elapsed_ms, 0);

		if (timeout < 0 || due < timeout)
			timeout = due;
	}

	nevents = WaitEventSetWait(client->wes, timeout, events, lengthof(events),
							   wait_event_info);
	for (int i = 0; i < nevents; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			result = WL_LATCH_SET;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			socket_ready = true;
	}

	if (socket_ready)
	{
		struct epoll_event ready[MAX_EPOLL_EVENTS];
		int			n = epoll_wait(client->epfd, ready, MAX_EPOLL_EVENTS, 0);

		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			if (ready[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (ready[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(client->multi, ready[i].data.fd, flags,
									 &running);
		}
	}

	/* Serve libcurl's timer when due (it may have been re-armed above). */
	if (client->timer_ms >= 0 &&
		(GetCurrentTimestamp() - client->timer_set_at) / 1000 >=
		client->timer_ms)
	{
		client->timer_ms = -1;
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0,
								 &running);
	}

	collect_finished(client);
	return result;
}

/* Take the next finished request, or NULL. */
WebhookRequest *
webhooks_client_next_done(WebhooksClient *client)
{
	if (dlist_is_empty(&client->done))
		return NULL;
	return dlist_container(WebhookRequest, node,
						   dlist_pop_head_node(&client->done));
}

/* How many requests are started and not yet finished. */
int
webhooks_client_in_flight(WebhooksClient *client)
{
	return client->in_flight;
}

/*
 * Abandon whatever is in flight and free the client.  Requests still in
 * libcurl are freed too; finished ones not yet taken are freed as well.
 */
void
webhooks_client_destroy(WebhooksClient *client)
{
	while (!dlist_is_empty(&client->running))
	{
		WebhookRequest *req = dlist_container(WebhookRequest, node,
											  dlist_pop_head_node(&client->running));

		curl_multi_remove_handle(client->multi, req->easy);
		req->added = false;
		webhooks_request_free(req);
	}
	while (!dlist_is_empty(&client->done))
		webhooks_request_free(webhooks_client_next_done(client));
	while (!dlist_is_empty(&client->held))
		webhooks_request_free(dlist_container(WebhookRequest, node,
											  dlist_pop_head_node(&client->held)));

	curl_multi_cleanup(client->multi);
	reserve_fds(client, 0);
	FreeWaitEventSet(client->wes);
	close(client->epfd);
	pfree(client);
}
