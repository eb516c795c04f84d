/*
 * works.c — the form of a published work (see works.h): pure functions.
 * A work's receipt is lib/receipt's, as a contribution's is.
 */
#include "works.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "utf8.h"

#define STYLE_NUMBER_MAX 4294967295.0 /* /api/stylize's style is a uint32 */

static int style_number(json_t *v, json_int_t *out)
{
	if (!json_is_integer(v))
		return AT_EUNPROCESSABLE;
	json_int_t n = json_integer_value(v);
	if (n < 0 || (double)n > STYLE_NUMBER_MAX)
		return AT_EUNPROCESSABLE;
	*out = n;
	return 0;
}

int works_style_parse(const char *text, size_t len, json_t **style, char key[WORKS_STYLE_KEY_MAX], char *why,
		      size_t whylen)
{
	*style = NULL;
	if (len == 0 || len > WORKS_STYLE_MAX) {
		snprintf(why, whylen, "style is 1..%d bytes of JSON", WORKS_STYLE_MAX);
		return AT_EUNPROCESSABLE;
	}
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	int rc = AT_EUNPROCESSABLE;
	json_int_t s1, s2;
	if (!json_is_object(o)) {
		snprintf(why, whylen, "style must be a JSON object");
		goto out;
	}
	json_t *ref = json_object_get(o, "reference");
	if (ref) {
		if (!json_is_true(ref) || json_object_size(o) != 1) {
			snprintf(why, whylen, "a reference style is {\"reference\":true} alone");
			goto out;
		}
		*style = json_pack("{sb}", "reference", 1);
		snprintf(key, WORKS_STYLE_KEY_MAX, "reference");
		rc = *style ? 0 : AT_ENOMEM;
		goto out;
	}
	if (style_number(json_object_get(o, "style"), &s1) < 0) {
		snprintf(why, whylen, "style.style must be an integer 0..4294967295");
		goto out;
	}
	json_t *v2 = json_object_get(o, "style2");
	json_t *va = json_object_get(o, "alpha");
	if (!v2) {
		if (json_object_size(o) != 1) {
			snprintf(why, whylen, "style has unknown keys (style, style2, alpha or reference)");
			goto out;
		}
		*style = json_pack("{sI}", "style", s1);
		snprintf(key, WORKS_STYLE_KEY_MAX, "%lld", (long long)s1);
		rc = *style ? 0 : AT_ENOMEM;
		goto out;
	}
	double a = va ? json_number_value(va) : 0.5;
	if (style_number(v2, &s2) < 0 || (va && !json_is_number(va)) || !(a >= 0 && a <= 1) ||
	    json_object_size(o) != (size_t)(va ? 3 : 2)) {
		snprintf(why, whylen, "a mix is {\"style\":N,\"style2\":M,\"alpha\":0..1}");
		goto out;
	}
	/* two decimals: the key must not depend on how the page printed alpha */
	a = round(a * 100) / 100;
	if (a == 0)
		a = 0; /* -0.0 passes the range check and would print "-0.00", a key works_style_key_valid refuses */
	*style = json_pack("{sI,sI,sf}", "style", s1, "style2", s2, "alpha", a);
	snprintf(key, WORKS_STYLE_KEY_MAX, "%lld+%lld@%.2f", (long long)s1, (long long)s2, a);
	rc = *style ? 0 : AT_ENOMEM;
out:
	json_decref(o);
	return rc;
}

int works_style_key_valid(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n >= WORKS_STYLE_KEY_MAX)
		return AT_EINVAL;
	if (strcmp(key, "reference") == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || key[i] == '+' || key[i] == '@' || key[i] == '.'))
			return AT_EINVAL;
	return 0;
}

int works_text(const void *s, size_t len, size_t max_chars, char **out, char *why, size_t whylen)
{
	*out = NULL;
	const unsigned char *p = s;
	size_t bad = 0;
	if (utf8_check(p, len, &bad) < 0) {
		snprintf(why, whylen, "not valid UTF-8 text (byte %zu)", bad);
		return AT_EUNPROCESSABLE;
	}
	size_t chars = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f) {
			snprintf(why, whylen, "control characters are not allowed");
			return AT_EUNPROCESSABLE;
		}
		if ((p[i] & 0xc0) != 0x80)
			chars++;
	}
	while (len > 0 && p[len - 1] == ' ')
		len--;
	while (len > 0 && *p == ' ') {
		p++;
		len--;
		chars--;
	}
	if (chars > max_chars) {
		snprintf(why, whylen, "at most %zu characters", max_chars);
		return AT_EUNPROCESSABLE;
	}
	if (len == 0)
		return 0;
	*out = strndup((const char *)p, len);
	return *out ? 0 : AT_ENOMEM;
}

int works_image_part(http_req_t *req, const struct multipart_part *parts, size_t n, const char *name,
		     const struct multipart_part **out, int *fmt)
{
	const struct multipart_part *f = multipart_get(parts, n, name);
	char why[160] = "";
	if (!f || !f->len) {
		http_reply_err(req, AT_EINVAL, "missing image field", json_pack("{ss}", "field", name));
		return AT_EINVAL;
	}
	if (f->len > WORKS_IMAGE_MAX) {
		http_reply_err(req, AT_ETOOBIG, "image over the size cap",
			       json_pack("{ss,si}", "field", name, "max_bytes", WORKS_IMAGE_MAX));
		return AT_ETOOBIG;
	}
	if ((*fmt = image_sniff(f->data, f->len)) < 0) {
		http_reply_err(req, AT_EUNSUPPORTED, "not a PNG or JPEG image", json_pack("{ss}", "field", name));
		return AT_EUNSUPPORTED;
	}
	int rc = image_probe(f->data, f->len, WORKS_IMAGE_PIXELS, NULL, NULL, why, sizeof why);
	if (rc < 0) {
		http_reply_err(req, rc, "image rejected", json_pack("{ss,ss}", "field", name, "reason", why));
		return rc;
	}
	*out = f;
	return 0;
}

int works_text_part(http_req_t *req, const struct multipart_part *parts, size_t n, const char *name, size_t max,
		    char **out)
{
	const struct multipart_part *f = multipart_get(parts, n, name);
	char why[96];
	*out = NULL;
	if (!f)
		return 0;
	int rc = works_text(f->data, f->len, max, out, why, sizeof why);
	if (rc < 0)
		http_reply_err(req, rc, "bad text field", json_pack("{ss,ss}", "field", name, "reason", why));
	return rc;
}
