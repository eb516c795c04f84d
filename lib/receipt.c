/*
 * receipt.c — see receipt.h. getrandom() blocks only until the kernel's pool
 * is first seeded (early boot); after that it never fails short for 32 bytes.
 */
#include "receipt.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

#include "fsutil.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int receipt_new(char token[RECEIPT_LEN + 1], char sha_hex[65])
{
	uint8_t raw[33] = {0}; /* one spare zero byte: 32 bytes end in a 2-character group */
	ssize_t got;
	do
		got = getrandom(raw, 32, 0);
	while (got < 0 && errno == EINTR);
	if (got != 32)
		return AT_EIO;
	size_t o = 0;
	for (size_t i = 0; i < 33; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		token[o++] = b64url[v >> 18 & 63];
		token[o++] = b64url[v >> 12 & 63];
		if (o < RECEIPT_LEN)
			token[o++] = b64url[v >> 6 & 63];
		if (o < RECEIPT_LEN)
			token[o++] = b64url[v & 63];
	}
	token[RECEIPT_LEN] = 0;
	return at_sha256_hex(token, RECEIPT_LEN, sha_hex);
}

int receipt_hash(const char *token, size_t len, uint8_t sha[32])
{
	if (!token || len != RECEIPT_LEN)
		return AT_EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!memchr(b64url, token[i], sizeof b64url - 1))
			return AT_EINVAL;
	SHA256((const unsigned char *)token, len, sha);
	return 0;
}

int receipt_parse_hex(const char *hex, size_t len, uint8_t sha[32])
{
	if (!hex || len != 64)
		return AT_EINVAL;
	for (size_t i = 0; i < 32; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = hex[2 * i + k];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0)
				return AT_EINVAL;
			v = v << 4 | d;
		}
		sha[i] = (uint8_t)v;
	}
	return 0;
}

int receipt_of_request(http_req_t *req, const char *what, const char **token, uint8_t sha[32])
{
	size_t len = 0;
	const char *tok = http_req_header(req, RECEIPT_HEADER_LC, &len);
	if (!tok || receipt_hash(tok, len, sha) < 0) {
		char msg[64];
		snprintf(msg, sizeof msg, "no %s has this receipt", what);
		http_reply_err(req, AT_ENOTFOUND, msg, json_pack("{ss}", "header", RECEIPT_HEADER));
		return AT_ENOTFOUND;
	}
	if (token)
		*token = tok;
	return 0;
}
