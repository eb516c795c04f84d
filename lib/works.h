/*
 * works.h — what a published work is allowed to be (issue 15's gallery),
 * checked by the serving node before it spools a work (serving/publish.c) and
 * again by atelierd before it stores one (orchestrator/works.c): the same
 * function, so a work the node accepts is never refused later for its form.
 *
 * Style: a JSON object as the page sent it to /api/stylize — {"style":N},
 * a mix {"style":N,"style2":M,"alpha":a} (alpha in 0..1), or
 * {"reference":true} (a style taken from an uploaded picture, which is not
 * kept). Its key is the gallery's filter: "N", "N+M@a" or "reference".
 */
#ifndef ATELIER_WORKS_H
#define ATELIER_WORKS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "http.h"
#include "multipart.h"

#define WORKS_TITLE_MAX 120       /* characters */
#define WORKS_NAME_MAX 64         /* characters */
#define WORKS_STYLE_MAX 256       /* bytes of the style's JSON text */
#define WORKS_STYLE_KEY_MAX 64    /* bytes of its key, NUL included */
#define WORKS_IMAGE_MAX (4 << 20) /* bytes of each image */
#define WORKS_IMAGE_PIXELS 4200000ULL
/* A work's sketch needs some ink (not training's range): a blank one would
 * share its hash with every other blank, and a withdrawal of one would take
 * them all. */
#define WORKS_MIN_INK 0.0001

/* Parses and checks a style (text, len bytes). On success *style is a new
 * canonical object (caller decrefs) and key holds its filter key. Errors:
 * AT_EUNPROCESSABLE with a reason in why. */
int works_style_parse(const char *text, size_t len, json_t **style, char key[WORKS_STYLE_KEY_MAX], char *why,
		      size_t whylen) AT_MUST_CHECK;

/* The same check for a style key alone (a ?style= filter): 0 or AT_EINVAL. */
int works_style_key_valid(const char *key);

/* A title or a name: valid UTF-8, no control characters, at most max_chars
 * characters, blanks trimmed at both ends. *out is malloc'd (NULL when empty
 * after trimming). Errors: AT_EUNPROCESSABLE (why says which rule). */
int works_text(const void *s, size_t len, size_t max_chars, char **out, char *why, size_t whylen) AT_MUST_CHECK;

/* A work's form fields, checked and refused the same way by the node that
 * takes the work and by atelierd that stores it. Each replies the error
 * itself (the field named in detail) and returns its code.
 * works_image_part: present and not empty, under WORKS_IMAGE_MAX bytes and
 * WORKS_IMAGE_PIXELS, PNG or JPEG (*fmt: image_sniff's answer).
 * works_text_part: works_text's rules; an absent field is 0 with *out NULL. */
int works_image_part(http_req_t *req, const struct multipart_part *parts, size_t n, const char *name,
		     const struct multipart_part **out, int *fmt) AT_MUST_CHECK;
int works_text_part(http_req_t *req, const struct multipart_part *parts, size_t n, const char *name, size_t max,
		    char **out) AT_MUST_CHECK;
#endif
