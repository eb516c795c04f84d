/*
 * test_multipart.c — lib/multipart.c: the form-data shapes clients send, and
 * the malformed ones it must refuse with a reason.
 */
#include "multipart.h"
#include "test.h"

static int parse(const char *ct, const char *body, struct multipart_part *parts, size_t max, size_t *n, char *why)
{
	return multipart_parse(ct, strlen(ct), (const uint8_t *)body, strlen(body), parts, max, n, why, 128);
}

static int span_is(const void *p, size_t n, const char *s) { return p && n == strlen(s) && memcmp(p, s, n) == 0; }

TEST(browser_shaped_form)
{
	const char *ct = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";
	const char *body = "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n"
			   "Content-Disposition: form-data; name=\"contributor\"\r\n"
			   "\r\n"
			   "alice\r\n"
			   "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n"
			   "Content-Disposition: form-data; name=\"image\"; filename=\"cat.png\"\r\n"
			   "Content-Type: image/png\r\n"
			   "\r\n"
			   "\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n\r\n"
			   "\r\n"
			   "------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n";
	struct multipart_part parts[4];
	size_t n = 99;
	char why[128] = "";
	ASSERT_EQ_INT(parse(ct, body, parts, 4, &n, why), 0);
	ASSERT_EQ_INT(n, 2);
	ASSERT(span_is(parts[0].name, parts[0].name_len, "contributor"));
	ASSERT(span_is(parts[0].data, parts[0].len, "alice"));
	ASSERT(parts[0].filename == NULL);
	ASSERT(parts[0].content_type == NULL);
	const struct multipart_part *img = multipart_get(parts, n, "image");
	ASSERT(img == &parts[1]);
	ASSERT(span_is(img->filename, img->filename_len, "cat.png"));
	ASSERT(span_is(img->content_type, img->content_type_len, "image/png"));
	ASSERT(span_is(img->data, img->len, "\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n\r\n"));
	/* zero-copy: data points into the body */
	ASSERT((const char *)img->data > body && (const char *)img->data < body + strlen(body));
	ASSERT(multipart_get(parts, n, "missing") == NULL);
	ASSERT(multipart_get(parts, n, "imag") == NULL);
}

TEST(quoted_boundary_preamble_epilogue_padding)
{
	const char *ct = "Multipart/Form-Data ; charset=utf-8;boundary=\"simple boundary:'()+_,-./=?\"";
	const char *body = "This is the preamble, ignored.\r\n"
			   "--simple boundary:'()+_,-./=?  \t\r\n"
			   "content-disposition: FORM-DATA; NAME=a\r\n"
			   "X-Other: whatever\r\n"
			   "\r\n"
			   "\r\n"
			   "--simple boundary:'()+_,-./=?\r\n"
			   "Content-Disposition: form-data; name=\"b\"; filename=\"C:\\dir\\x.png\"\r\n"
			   "\r\n"
			   "B\r\n"
			   "--simple boundary:'()+_,-./=?--\r\n"
			   "This is the epilogue, also ignored.\r\n--simple boundary:'()+_,-./=?\r\n";
	struct multipart_part parts[4];
	size_t n;
	char why[128] = "";
	ASSERT_EQ_INT(parse(ct, body, parts, 4, &n, why), 0);
	ASSERT_EQ_INT(n, 2);
	ASSERT(span_is(parts[0].name, parts[0].name_len, "a"));
	ASSERT_EQ_INT(parts[0].len, 0); /* an empty value */
	ASSERT(span_is(parts[1].data, parts[1].len, "B"));
	ASSERT(span_is(parts[1].filename, parts[1].filename_len, "C:\\dir\\x.png"));
}

TEST(empty_form_and_duplicate_names)
{
	struct multipart_part parts[4];
	size_t n = 7;
	char why[128];
	ASSERT_EQ_INT(parse("multipart/form-data; boundary=b", "--b--", parts, 4, &n, why), 0);
	ASSERT_EQ_INT(n, 0);
	const char *body = "--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n"
			   "--b\r\nContent-Disposition: form-data; name=x\r\n\r\n2\r\n--b--";
	ASSERT_EQ_INT(parse("multipart/form-data; boundary=b", body, parts, 4, &n, why), 0);
	ASSERT_EQ_INT(n, 2);
	ASSERT(span_is(multipart_get(parts, n, "x")->data, 1, "1"));
	/* binary data with NULs */
	const uint8_t bin[] = "--b\r\nContent-Disposition: form-data; name=f\r\n\r\n\0\1\0\r\n--b--";
	ASSERT_EQ_INT(multipart_parse("multipart/form-data; boundary=b", 31, bin, sizeof bin - 1, parts, 4, &n, why,
				      sizeof why),
		      0);
	ASSERT_EQ_INT(parts[0].len, 3);
}

struct bad_case {
	const char *ct, *body, *why;
	int rc;
};

TEST(malformed_bodies_are_refused_with_a_reason)
{
	const char *ok_ct = "multipart/form-data; boundary=xyz";
	const char *cd = "Content-Disposition: form-data; name=\"a\"\r\n";
	char bighdr[9000];
	snprintf(bighdr, sizeof bighdr, "--xyz\r\nX-Pad: %08200d\r\n%s\r\nv\r\n--xyz--", 0, cd);
	const struct bad_case cases[] = {
		{"text/plain; boundary=xyz", "--xyz--", "not multipart", AT_EPARSE},
		{"multipart/form-data", "--xyz--", "no boundary", AT_EPARSE},
		{"multipart/form-data; boundary=\"\"", "----", "1..70", AT_EPARSE},
		{"multipart/form-data; boundary="
		 "12345678901234567890123456789012345678901234567890123456789012345678901",
		 "--", "1..70", AT_EPARSE},
		{"multipart/form-data; boundary=\"a\\b\"", "--a\\b--", "does not allow", AT_EPARSE},
		{"multipart/form-data; boundary=\"xyz", "--xyz--", "parameters", AT_EPARSE},
		{"multipart/form-data; boundary=xyz; boundary=abc", "--xyz--", "two boundary", AT_EPARSE},
		{ok_ct, "", "no opening boundary", AT_EPARSE},
		{ok_ct, "hello world", "no opening boundary", AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue", "missing closing",
		 AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n--xyz", "missing closing",
		 AT_EPARSE},
		{ok_ct, "--xyz", "missing closing", AT_EPARSE},
		{ok_ct, "--xyzzy\r\n", "not followed by CRLF", AT_EPARSE},
		{ok_ct, "--xyz\nContent-Disposition: form-data; name=a\n\nv\n--xyz--", "not followed by CRLF",
		 AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=a\n\r\nv\r\n--xyz--", "bare LF", AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xyz--", "without Content-Disposition",
		 AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--xyz--", "not form-data",
		 AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xyz--", "without a name", AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=a\r\n  folded\r\n\r\nv\r\n--xyz--", "folded",
		 AT_EPARSE},
		{ok_ct,
		 "--xyz\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\n"
		 "v\r\n--xyz--",
		 "two Content-Disposition", AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--xyz--", "Content-Disposition",
		 AT_EPARSE},
		{ok_ct, "--xyz\r\nContent-Disposition: form-data; name=a\r\n", "not terminated", AT_EPARSE},
		{ok_ct, "--xyz\r\nNo colon here\r\n\r\nv\r\n--xyz--", "without a name", AT_EPARSE},
		{ok_ct, bighdr, "over 8192", AT_ETOOBIG},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct multipart_part parts[4];
		size_t n = 42;
		char why[128] = "";
		int rc = parse(cases[i].ct, cases[i].body, parts, 4, &n, why);
		if (rc != cases[i].rc || !strstr(why, cases[i].why))
			fprintf(stderr, "case %zu: rc %d why \"%s\"\n", i, rc, why);
		ASSERT_EQ_INT(rc, cases[i].rc);
		ASSERT_CONTAINS(why, cases[i].why);
		ASSERT_EQ_INT(n, 0);
	}
}

TEST(caps_on_parts_and_headers)
{
	char body[4096], why[128];
	size_t off = 0;
	for (int i = 0; i < 5; i++)
		off += (size_t)snprintf(body + off, sizeof body - off,
					"--b\r\nContent-Disposition: form-data; name=p\r\n\r\nx\r\n");
	snprintf(body + off, sizeof body - off, "--b--\r\n");
	struct multipart_part parts[5];
	size_t n;
	ASSERT_EQ_INT(parse("multipart/form-data; boundary=b", body, parts, 5, &n, why), 0);
	ASSERT_EQ_INT(n, 5);
	ASSERT_EQ_INT(parse("multipart/form-data; boundary=b", body, parts, 4, &n, why), AT_ETOOBIG);
	ASSERT_CONTAINS(why, "more than 4 parts");
	off = (size_t)snprintf(body, sizeof body, "--b\r\n");
	for (int i = 0; i < MULTIPART_MAX_HEADERS; i++)
		off += (size_t)snprintf(body + off, sizeof body - off, "X-A: 1\r\n");
	snprintf(body + off, sizeof body - off, "Content-Disposition: form-data; name=p\r\n\r\nx\r\n--b--");
	ASSERT_EQ_INT(parse("multipart/form-data; boundary=b", body, parts, 5, &n, why), AT_ETOOBIG);
	ASSERT_CONTAINS(why, "part headers");
	ASSERT_EQ_INT(multipart_parse("multipart/form-data; boundary=b", 31, NULL, 5, parts, 5, &n, why, sizeof why),
		      AT_EINVAL);
}

RUN_TESTS(browser_shaped_form, quoted_boundary_preamble_epilogue_padding, empty_form_and_duplicate_names,
	  malformed_bodies_are_refused_with_a_reason, caps_on_parts_and_headers)
