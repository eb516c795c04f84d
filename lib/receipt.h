/*
 * receipt.h — the receipts contributors get back (issue 15, docs/serving.md
 * "Receipts"): 32 bytes from getrandom(), written as base64url without
 * padding (43 characters). The serving node that accepts a contribution makes
 * one and shows it once; only its sha256 (over the 43 characters) travels on
 * and is stored, so a database copy cannot withdraw anything. A receipt is
 * presented in the X-Atelier-Receipt header, never in a URL.
 */
#ifndef ATELIER_RECEIPT_H
#define ATELIER_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "http.h"

#define RECEIPT_LEN 43
#define RECEIPT_HEADER "X-Atelier-Receipt"
#define RECEIPT_HEADER_LC "x-atelier-receipt" /* how http_req_header() finds it (h2o keeps names lowercase) */

/* A new receipt in token (NUL-terminated) and the sha256 of its text as
 * lowercase hex. AT_EIO when the kernel gives no random bytes. */
int receipt_new(char token[RECEIPT_LEN + 1], char sha_hex[65]) AT_MUST_CHECK;

/* The sha256 (raw) of a presented receipt: AT_EINVAL unless it is exactly
 * 43 base64url characters. */
int receipt_hash(const char *token, size_t len, uint8_t sha[32]) AT_MUST_CHECK;

/* The receipt a request presents in X-Atelier-Receipt: its sha256 into sha
 * and, when token is not NULL, its RECEIPT_LEN characters (borrowed from the
 * request, not NUL-terminated) into *token. A missing or malformed receipt is
 * answered here — 404 "no <what> has this receipt", which says nothing about
 * which exist — and AT_ENOTFOUND returned. */
int receipt_of_request(http_req_t *req, const char *what, const char **token, uint8_t sha[32]) AT_MUST_CHECK;

/* 64 lowercase hex digits into sha: AT_EINVAL otherwise. */
int receipt_parse_hex(const char *hex, size_t len, uint8_t sha[32]) AT_MUST_CHECK;

#endif
