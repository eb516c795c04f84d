/*
 * model_slot.c — the refcounted model slot (see model_slot.h).
 *
 * Invariants: s->cur is NULL or a ref with refs >= 1 (the slot's own); every
 * acquire is paired with one release; a ref is freed (am_model_free) exactly
 * when its count reaches 0, outside the slot mutex, on the releasing thread.
 * The load mutex orders whole loads (load + warm-up + swap) so that two
 * sources cannot interleave their swaps; it is never taken by requests.
 */
#include "model_slot.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "log.h"
#include "sketchnorm.h"

struct model_slot {
	pthread_mutex_t mu;      /* cur, counters, last_error */
	pthread_mutex_t load_mu; /* one load at a time */
	struct model_ref *cur;
	char device[16];
	int warm_size;
	uint64_t swaps, swap_failures, last_swap_unix;
	char last_error[256];
};

int model_slot_new(const char *device, int warm_size, struct model_slot **out)
{
	struct model_slot *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->load_mu, NULL);
	snprintf(s->device, sizeof s->device, "%s", device ? device : "auto");
	s->warm_size = warm_size > 0 ? warm_size : 512;
	*out = s;
	return 0;
}

void model_slot_free(struct model_slot *s)
{
	if (!s)
		return;
	model_ref_release(s->cur);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->load_mu);
	free(s);
}

struct model_ref *model_slot_acquire(struct model_slot *s)
{
	pthread_mutex_lock(&s->mu);
	struct model_ref *r = s->cur;
	if (r)
		__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->mu);
	return r;
}

void model_ref_release(struct model_ref *r)
{
	if (!r)
		return;
	if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	log_info("model: freeing version %lld (%.12s)", (long long)r->version, r->sha256);
	am_model_free(r->m);
	free(r);
}

void model_slot_fail(struct model_slot *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->mu);
	s->swap_failures++;
	snprintf(s->last_error, sizeof s->last_error, "%s", msg);
	pthread_mutex_unlock(&s->mu);
	log_warn("model: swap failed, keeping the current model: %s", msg);
}

/* A plausible sketch (a frame and a diagonal) so the warm-up runs every layer
 * on realistic values, at the output size requests use, through the same
 * sketch normalisation a request takes (serving/stylize.c). */
static int warm_up(am_model *m, int out_size, am_status_t *st)
{
	enum { W = 64 };
	uint8_t gray[W * W];
	for (int y = 0; y < W; y++)
		for (int x = 0; x < W; x++)
			gray[y * W + x] = (x == y || x == 8 || y == 8 || x == W - 9 || y == W - 9) ? 0 : 255;
	am_config mc;
	am_model_get_config(m, &mc);
	uint8_t *rgb = malloc((size_t)out_size * out_size * 3), *norm = malloc((size_t)mc.image_size * mc.image_size);
	int rc = AT_ENOMEM;
	if (!rgb || !norm)
		goto out;
	am_style style = {.kind = AM_STYLE_SEED, .seed = 1};
	if (sketchnorm_apply(gray, W, W, mc.image_size, NULL, norm, NULL) == 0)
		rc = am_model_stylize(m, norm, mc.image_size, mc.image_size, &style, rgb, out_size, out_size, st);
	else /* cannot happen for this drawing within sketchnorm's caps; warm up anyway */
		rc = am_model_stylize(m, gray, W, W, &style, rgb, out_size, out_size, st);
out:
	free(rgb);
	free(norm);
	return rc;
}

int model_slot_load(struct model_slot *s, const char *path, int64_t version, const char *sha256, const char *source,
		    char *msg, size_t msglen)
{
	int rc = 0;
	struct model_ref *r = NULL;
	am_status_t *st = am_status_new();
	char hex[65];
	if (!st)
		return AT_ENOMEM;
	pthread_mutex_lock(&s->load_mu);
	if (!sha256) {
		rc = at_file_sha256(path, hex, NULL);
		if (rc < 0) {
			model_slot_fail(s, "cannot read %s", path);
			goto out;
		}
		sha256 = hex;
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		rc = AT_ENOMEM;
		goto out;
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	r->m = am_model_load(path, s->device, st);
	if (!r->m) {
		rc = am_status_code(st) ? am_status_code(st) : AT_EINTERNAL;
		model_slot_fail(s, "load %s: %s", path, am_status_message(st));
		goto out;
	}
	rc = warm_up(r->m, s->warm_size, st);
	if (rc < 0) {
		model_slot_fail(s, "warm-up of %s: %s", path, am_status_message(st));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	am_model_get_config(r->m, &r->cfg);
	r->version = version;
	r->refs = 1; /* the slot's */
	snprintf(r->sha256, sizeof r->sha256, "%s", sha256);
	snprintf(r->source, sizeof r->source, "%s", source ? source : path);

	pthread_mutex_lock(&s->mu);
	struct model_ref *old = s->cur;
	s->cur = r;
	s->swaps++;
	s->last_swap_unix = (uint64_t)time(NULL);
	s->last_error[0] = 0;
	pthread_mutex_unlock(&s->mu);
	log_info("model: now serving version %lld (%.12s, %s) on %s; loaded and warmed up in %.0f ms",
		 (long long)version, r->sha256, r->source, am_model_device(r->m),
		 (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
	r = NULL;
	/* The old model goes once the requests still holding it are done. */
	model_ref_release(old);
out:
	if (rc < 0 && msg)
		snprintf(msg, msglen, "%s", s->last_error);
	pthread_mutex_unlock(&s->load_mu);
	if (r) {
		am_model_free(r->m);
		free(r);
	}
	am_status_free(st);
	return rc;
}

void model_slot_info(struct model_slot *s, struct model_slot_info *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->mu);
	if (s->cur) {
		out->loaded = 1;
		out->version = s->cur->version;
		snprintf(out->sha256, sizeof out->sha256, "%s", s->cur->sha256);
		snprintf(out->source, sizeof out->source, "%s", s->cur->source);
		snprintf(out->device, sizeof out->device, "%s", am_model_device(s->cur->m));
	}
	out->swaps = s->swaps;
	out->swap_failures = s->swap_failures;
	out->last_swap_unix = s->last_swap_unix;
	snprintf(out->last_error, sizeof out->last_error, "%s", s->last_error);
	pthread_mutex_unlock(&s->mu);
}
