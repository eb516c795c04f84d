/* Unit tests for lib/works.c: the styles a work may carry and their keys,
 * titles and names, and receipts (form, randomness, hash). */
#include "works.h"
#include "receipt.h"

#include "fsutil.h"
#include "test.h"

static int style(const char *text, char key[WORKS_STYLE_KEY_MAX])
{
	json_t *s = NULL;
	char why[128] = "";
	int rc = works_style_parse(text, strlen(text), &s, key, why, sizeof why);
	ASSERT(rc == 0 ? s != NULL && why[0] == 0 : s == NULL && why[0] != 0);
	json_decref(s);
	return rc;
}

TEST(style_keys)
{
	char key[WORKS_STYLE_KEY_MAX];
	ASSERT_EQ_INT(style("{\"style\":7}", key), 0);
	ASSERT_STREQ(key, "7");
	ASSERT_EQ_INT(style("{\"style\":4294967295}", key), 0);
	ASSERT_STREQ(key, "4294967295");
	ASSERT_EQ_INT(style("{\"style\":1,\"style2\":2,\"alpha\":0.3333}", key), 0);
	ASSERT_STREQ(key, "1+2@0.33");
	ASSERT_EQ_INT(style("{\"style\":1,\"style2\":2}", key), 0); /* alpha defaults as /api/stylize's */
	ASSERT_STREQ(key, "1+2@0.50");
	/* found by fuzz_works: a negative zero printed "1+2@-0.00" */
	ASSERT_EQ_INT(style("{\"style\":1,\"style2\":2,\"alpha\":-0.0}", key), 0);
	ASSERT_STREQ(key, "1+2@0.00");
	ASSERT_EQ_INT(style("{\"style\":1,\"style2\":2,\"alpha\":0.001}", key), 0);
	ASSERT_STREQ(key, "1+2@0.00");
	ASSERT_EQ_INT(style("{\"reference\":true}", key), 0);
	ASSERT_STREQ(key, "reference");
	ASSERT_EQ_INT(works_style_key_valid("1+2@0.50"), 0);
	ASSERT_EQ_INT(works_style_key_valid("reference"), 0);
	ASSERT_EQ_INT(works_style_key_valid("1;drop"), AT_EINVAL);
	ASSERT_EQ_INT(works_style_key_valid(""), AT_EINVAL);
}

TEST(style_refusals)
{
	char key[WORKS_STYLE_KEY_MAX];
	static const char *bad[] = {
		"",
		"7",
		"[7]",
		"{}",
		"{\"style\":-1}",
		"{\"style\":4294967296}",
		"{\"style\":1.5}",
		"{\"style\":\"7\"}",
		"{\"style\":1,\"alpha\":0.5}",
		"{\"style\":1,\"style2\":2,\"alpha\":1.5}",
		"{\"style\":1,\"style2\":2,\"alpha\":\"x\"}",
		"{\"style\":1,\"extra\":2}",
		"{\"style\":1,\"style\":2}",
		"{\"reference\":false}",
		"{\"reference\":true,\"style\":1}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ASSERT_EQ_INT(style(bad[i], key), AT_EUNPROCESSABLE);
}

TEST(titles_and_names)
{
	char *out = NULL, why[96];
	ASSERT_EQ_INT(works_text("  A house  ", 11, 120, &out, why, sizeof why), 0);
	ASSERT_STREQ(out, "A house");
	free(out);
	ASSERT_EQ_INT(works_text("   ", 3, 120, &out, why, sizeof why), 0);
	ASSERT(out == NULL);
	/* the cap counts characters: 3 two-byte characters fit in 3 */
	ASSERT_EQ_INT(works_text("\xc3\xa9\xc3\xa9\xc3\xa9", 6, 3, &out, why, sizeof why), 0);
	free(out);
	ASSERT_EQ_INT(works_text("abcd", 4, 3, &out, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "at most 3");
	ASSERT_EQ_INT(works_text("a\nb", 3, 10, &out, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_EQ_INT(works_text("a\xff", 2, 10, &out, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "UTF-8");
	ASSERT_EQ_INT(works_text("a\0b", 3, 10, &out, why, sizeof why), AT_EUNPROCESSABLE);
}

TEST(receipts)
{
	char a[RECEIPT_LEN + 1], b[RECEIPT_LEN + 1], ha[65], hb[65], again[65], direct[65];
	ASSERT_EQ_INT(receipt_new(a, ha), 0);
	ASSERT_EQ_INT(receipt_new(b, hb), 0);
	ASSERT_EQ_INT((int)strlen(a), RECEIPT_LEN);
	ASSERT_EQ_INT((int)strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), RECEIPT_LEN);
	ASSERT(strcmp(a, b) != 0 && strcmp(ha, hb) != 0);
	/* the hash is the sha256 of the token's text, as atelierd stores it */
	uint8_t raw[32];
	ASSERT_EQ_INT(receipt_hash(a, strlen(a), raw), 0);
	at_hex_encode(again, raw, sizeof raw);
	ASSERT_STREQ(again, ha);
	ASSERT_EQ_INT(at_sha256_hex(a, strlen(a), direct), 0);
	ASSERT_STREQ(direct, ha);
	ASSERT_EQ_INT(receipt_hash(a, strlen(a) - 1, raw), AT_EINVAL);
	a[5] = '=';
	ASSERT_EQ_INT(receipt_hash(a, strlen(a), raw), AT_EINVAL);
}

RUN_TESTS(style_keys, style_refusals, titles_and_names, receipts)
