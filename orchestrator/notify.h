/*
 * notify.h — alert webhooks: atelierd delivers the rows of the webhook_events
 * outbox (written by triggers, sql/011_webhooks.sql, in whichever process the
 * event happened) to the configured URLs, signed, with retries, never
 * blocking the loop: libcurl's multi interface driven by one uv_poll per
 * socket and one uv_timer (curl's docs/examples/multi-uv.c pattern).
 *
 * Delivery: POST, JSON body {"id", "kind", "created_at", "payload"}; headers
 *   X-Atelier-Event: KIND
 *   X-Atelier-Delivery: ID            (row of webhook_deliveries; the same on retries)
 *   X-Atelier-Timestamp: UNIX         (time of this attempt)
 *   X-Atelier-Signature: sha256=HEX   HMAC-SHA256(secret, TIMESTAMP "." BODY)
 * A 2xx reply is success; anything else (or no reply within the timeout) is
 * retried after backoff * 2^(attempt-1) s (capped at 5 min) up to
 * max attempts. The in-memory queue is bounded: when full, the oldest
 * waiting delivery is dropped (counted, logged as 'dropped').
 *
 * Owned by struct app: started with it, stopped at shutdown (transfers
 * aborted, every poll and timer closed; on_closed runs after the last close
 * callback), freed after the loop ends. Every atelierd claims events (its
 * --webhook-url list and the pipelines' `notify:` targets), so every
 * atelierd of one database should be given the same webhook settings.
 */
#ifndef ATELIERD_NOTIFY_H
#define ATELIERD_NOTIFY_H

#include "app.h"
#include "buf.h"

struct notify;

int notify_start(struct app *app, struct notify **out) AT_MUST_CHECK;
void notify_stop(struct notify *n, void (*on_closed)(void *arg), void *arg);
/* After the loop ended; NULL is a no-op. */
void notify_free(struct notify *n);
/* atelier_webhook_deliveries_total{outcome} and the queue gauges. */
int notify_metrics(const struct notify *n, struct at_buf *b) AT_MUST_CHECK;
/* The signature header's value for body at time ts: "sha256=" + 64 hex.
 * out must hold 72 bytes. Exported for the unit test. */
int notify_sign(const char *secret, size_t secret_len, long long ts, const char *body, size_t body_len, char *out,
		size_t outlen) AT_MUST_CHECK;

extern const struct http_route notify_routes[];
extern const size_t notify_nroutes;

#endif
