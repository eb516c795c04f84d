/*
 * puller.h — keeps the node's model in step with its channel in atelierd.
 *
 * One thread: long-poll GET /v1/models/M/channels/C?after=V&wait=W → when the
 * channel names another version, download the artifact into the cache
 * (resumable: a .part file and Range), verify size and sha256, load and warm
 * it up, swap it in (model_slot_load). A failed download retries with backoff
 * and resumes; an artifact that fails verification or loading is refused,
 * the old model keeps serving, the failure is recorded (model_slot_fail →
 * log, metrics, heartbeat last_error), and the puller waits for the channel
 * to move on instead of fetching the same bad version again.
 *
 * Why a thread with blocking libcurl rather than libcurl multi on the loop:
 * after a download comes verification (hashing the file) and a model load
 * with a warm-up forward pass, all blocking and seconds long; on a thread the
 * whole sequence reads top to bottom, needs no state machine, and can never
 * stall an HTTP request on the loop. There is one transfer at a time, so
 * multi's concurrency would buy nothing.
 */
#ifndef SERVE_PULLER_H
#define SERVE_PULLER_H

#include "buf.h"
#include "err.h"

struct serve_app;
struct puller;
struct http_client;

int puller_start(struct serve_app *app, struct puller **out) AT_MUST_CHECK;
/* Asks the thread to stop (returns at once). */
void puller_stop(struct puller *p);
/* Stops, joins and frees; NULL is a no-op. */
void puller_free(struct puller *p);
int puller_metrics(struct puller *p, struct at_buf *b) AT_MUST_CHECK;

/* A one-off client to atelierd for a request's work on the threadpool (a
 * gallery image, a receipt's lookup): the node's URL list, starting at the
 * URL the puller's long-poll last found answering. A client that started at
 * the first URL would wait out a partitioned controller's connect timeout on
 * every call after a failover. Reads app->upstream_cur only, so it is safe
 * on the threadpool while the puller itself is being freed at shutdown. */
void puller_client(const struct serve_app *app, struct http_client *c, const char *user_agent);

#endif
