/*
 * model_slot.h — the model a serving node answers with, swappable while
 * requests run (hot swap).
 *
 * A model_ref is one loaded model with a reference count. The slot holds one
 * reference to the current model; each request acquires its own before it
 * runs and releases it after, so a swap never pulls a model out from under a
 * request: requests in flight finish on the old model, new ones get the new
 * one, and the old model is freed by whichever thread drops its last
 * reference (usually a threadpool worker right after its forward pass).
 *
 * Thread-safe: acquire/release/swap from any thread. Loads are serialised by
 * the slot (two sources — the puller and a local reload — may race; the later
 * swap wins, and both are counted).
 */
#ifndef SERVE_MODEL_SLOT_H
#define SERVE_MODEL_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "atelier_model.h"
#include "err.h"

struct model_ref {
	am_model *m;
	int64_t version;  /* registry version, 0 for a local file */
	char sha256[65];  /* of the artifact file */
	char source[256]; /* "registry" or the local path */
	am_config cfg;
	/* private */
	int refs;
};

struct model_slot_info {
	int loaded;
	int64_t version;
	char sha256[65];
	char source[256];
	char device[32];
	uint64_t swaps;         /* successful swaps (the first load included) */
	uint64_t swap_failures; /* downloads, verifications or loads that failed */
	uint64_t last_swap_unix;
	char last_error[256]; /* "" when the last attempt succeeded */
};

struct model_slot;

int model_slot_new(const char *device, int warm_size, struct model_slot **out) AT_MUST_CHECK;
/* Releases the slot's reference; models still acquired live until released. */
void model_slot_free(struct model_slot *s);

/* A reference to the current model, or NULL when none is loaded. */
struct model_ref *model_slot_acquire(struct model_slot *s);
void model_ref_release(struct model_ref *r);

/*
 * Loads a serving export, warms it up (one stylize at the output size) and
 * swaps it in. Blocking: call it off the loop. On failure the current model
 * stays, the failure is counted and recorded as last_error, and msg (may be
 * NULL) gets the reason.
 */
int model_slot_load(struct model_slot *s, const char *path, int64_t version, const char *sha256, const char *source,
		    char *msg, size_t msglen) AT_MUST_CHECK;
/* Records a failure that happened before a load (download, verification). */
void model_slot_fail(struct model_slot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void model_slot_info(struct model_slot *s, struct model_slot_info *out);

#endif
