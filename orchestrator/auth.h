/*
 * auth.h — bearer tokens with roles. Tokens are random, shown once, and stored
 * only as sha256 hashes; a small cache keeps recently seen hashes so the hot
 * path needs no database round trip. Revocation reaches the cache through a
 * NOTIFY on "atelier_tokens".
 */
#ifndef ATELIERD_AUTH_H
#define ATELIERD_AUTH_H

#include <libpq-fe.h>

#include "db.h"
#include "http.h"

struct auth;

int auth_new(db_pool_t *db, struct auth **out) AT_MUST_CHECK;
void auth_free(struct auth *a);
/* An http_auth_fn (http.h); arg is the struct auth. */
int auth_check(void *arg, http_req_t *req, const char *token, size_t len, http_auth_done done);

/* Create a token (blocking; for `atelierd token create`). Writes the token
 * (NUL-terminated, < 64 bytes) to out. node (NULL: none) binds a node token to
 * that serving-node name (nodes_name_valid); other roles take none. */
int auth_create_token_blocking(PGconn *conn, const char *role, const char *name, const char *node, char *out,
			       size_t outlen) AT_MUST_CHECK;
/* A node token was just bound to node (nodes.c): cached entries learn it now
 * rather than when the NOTIFY arrives, so the upload that follows a node's
 * first heartbeat already carries the name. */
void auth_token_bound(struct auth *a, int64_t token_id, const char *node);
/* The async form used by POST /v1/tokens: generates the token, stores its hash. */
int auth_generate(char *out, size_t outlen, unsigned char hash[32]) AT_MUST_CHECK;

#endif
