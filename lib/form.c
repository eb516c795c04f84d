/*
 * form.c — a request's multipart/form-data body (see form.h).
 */
#include "form.h"

#include <jansson.h>
#include <stdio.h>
#include <strings.h>

int form_parse(http_req_t *req, struct multipart_part *parts, size_t cap, size_t *n, const char *fields)
{
	size_t ctlen = 0, blen = 0;
	const char *ct = http_req_header(req, "content-type", &ctlen);
	const uint8_t *body = http_req_body(req, &blen);
	*n = 0;
	if (!ct || ctlen < 19 || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "expected multipart/form-data with %s", fields);
		http_reply_err(req, AT_EUNSUPPORTED, msg, NULL);
		return AT_EUNSUPPORTED;
	}
	char why[160] = "";
	int rc = multipart_parse(ct, ctlen, body, blen, parts, cap, n, why, sizeof why);
	if (rc < 0) {
		http_reply_err(req, rc, "malformed multipart body",
			       json_pack("{ss}", "reason", why[0] ? why : at_strerror(rc)));
		return rc;
	}
	return 0;
}
