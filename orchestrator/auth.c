/*
 * auth.c — token look-up with a bounded cache. See auth.h.
 *
 * Cache: open addressing over the token hash, positive entries for 60 s and
 * negative ones for 5 s (so a flood of bad tokens costs one query each per 5 s,
 * not one per request). When the table fills it is simply cleared: a cache,
 * not a store. Any change to api_tokens NOTIFYs atelier_tokens and clears it.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"

#define AUTH_SLOTS 4096
#define AUTH_TTL_OK_MS 60000
#define AUTH_TTL_BAD_MS 5000

struct auth_slot {
	unsigned char hash[32];
	int role;      /* >0 role bit, 0 invalid */
	int64_t id;    /* api_tokens.id */
	char node[65]; /* api_tokens.node: the serving node a node token is bound to, or "" */
	char name[64]; /* the token's name ("" when none): the actor in audit records */
	uint64_t expires;
	int used;
};

struct auth {
	db_pool_t *db;
	uv_loop_t *loop;
	struct auth_slot slots[AUTH_SLOTS];
	int nused;
};

struct auth_lookup {
	struct auth *a;
	http_req_t *req;
	http_auth_done done;
	unsigned char hash[32];
};

static void auth_clear(struct auth *a)
{
	memset(a->slots, 0, sizeof a->slots);
	a->nused = 0;
}

static void on_tokens_changed(void *arg, const char *channel, const char *payload)
{
	/* channel == NULL: the listen connection came back; we may have missed a revocation. */
	auth_clear(arg);
}

int auth_new(db_pool_t *db, struct auth **out)
{
	struct auth *a = calloc(1, sizeof *a);
	if (!a)
		return AT_ENOMEM;
	a->db = db;
	int rc = db_listen(db, "atelier_tokens", on_tokens_changed, a);
	if (rc < 0) {
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void auth_free(struct auth *a) { free(a); }

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static struct auth_slot *slot_find(struct auth *a, const unsigned char hash[32], int insert)
{
	uint32_t h;
	memcpy(&h, hash, sizeof h);
	for (int i = 0; i < AUTH_SLOTS; i++) {
		struct auth_slot *s = &a->slots[(h + (uint32_t)i) % AUTH_SLOTS];
		if (!s->used)
			return insert ? s : NULL;
		if (CRYPTO_memcmp(s->hash, hash, 32) == 0)
			return s;
	}
	return NULL;
}

static void cache_put(struct auth *a, const unsigned char hash[32], int role, int64_t id, const char *node,
		      const char *name)
{
	if (a->nused >= AUTH_SLOTS * 3 / 4)
		auth_clear(a);
	struct auth_slot *s = slot_find(a, hash, 1);
	if (!s)
		return;
	if (!s->used)
		a->nused++;
	memcpy(s->hash, hash, 32);
	s->role = role;
	s->id = id;
	snprintf(s->node, sizeof s->node, "%s", node);
	snprintf(s->name, sizeof s->name, "%s", name);
	s->used = 1;
	s->expires = now_ms() + (role > 0 ? AUTH_TTL_OK_MS : AUTH_TTL_BAD_MS);
}

static void lookup_done(void *arg, int status, PGresult *res)
{
	struct auth_lookup *l = arg;
	int role = -1;
	if (status == 0) {
		role = 0;
		int64_t id = 0;
		const char *node = "", *name = "";
		if (PQntuples(res) == 1) {
			role = (int)http_role_parse(PQgetvalue(res, 0, 0));
			id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
			node = PQgetvalue(res, 0, 2);
			name = PQgetvalue(res, 0, 3);
		}
		cache_put(l->a, l->hash, role, id, node, name);
		http_req_set_token(l->req, id, node);
		http_req_set_principal(l->req, name);
	}
	l->done(l->req, role);
	free(l);
}

void auth_token_bound(struct auth *a, int64_t token_id, const char *node)
{
	for (int i = 0; i < AUTH_SLOTS; i++)
		if (a->slots[i].used && a->slots[i].id == token_id)
			snprintf(a->slots[i].node, sizeof a->slots[i].node, "%s", node);
}

int auth_check(void *arg, http_req_t *req, const char *token, size_t len, http_auth_done done)
{
	struct auth *a = arg;
	unsigned char hash[32];
	SHA256((const unsigned char *)token, len, hash);
	struct auth_slot *s = slot_find(a, hash, 0);
	if (s && s->expires > now_ms()) {
		http_req_set_token(req, s->id, s->node);
		http_req_set_principal(req, s->name);
		return s->role;
	}
	struct auth_lookup *l = malloc(sizeof *l);
	if (!l) {
		done(req, -1);
		return -1;
	}
	l->a = a;
	l->req = req;
	l->done = done;
	memcpy(l->hash, hash, 32);
	struct db_params p;
	db_params_init(&p);
	db_param_bin(&p, hash, 32);
	int rc = db_query(a->db,
			  "SELECT role, id, coalesce(node, ''), coalesce(name, '') FROM api_tokens "
			  "WHERE token_hash = $1 AND revoked_at IS NULL",
			  &p, lookup_done, l);
	if (rc < 0) {
		free(l);
		/* The database is down: say so (503) rather than call the token invalid. */
		done(req, -1);
		return -1;
	}
	return -1;
}

int auth_generate(char *out, size_t outlen, unsigned char hash[32])
{
	unsigned char raw[24];
	if (outlen < 4 + 2 * sizeof raw + 1)
		return AT_EINVAL;
	if (RAND_bytes(raw, sizeof raw) != 1)
		return AT_EINTERNAL;
	memcpy(out, "atl_", 4);
	at_hex_encode(out + 4, raw, sizeof raw);
	SHA256((const unsigned char *)out, strlen(out), hash);
	return 0;
}

int auth_create_token_blocking(PGconn *conn, const char *role, const char *name, const char *node, char *out,
			       size_t outlen)
{
	if (!http_role_parse(role) || (node && strcmp(role, "node") != 0))
		return AT_EINVAL;
	unsigned char hash[32];
	int rc = auth_generate(out, outlen, hash);
	if (rc < 0)
		return rc;
	const char *vals[4] = {(const char *)hash, role, name, node};
	int lens[4] = {32, 0, 0, 0};
	int fmts[4] = {1, 0, 0, 0};
	PGresult *r =
		PQexecParams(conn, "INSERT INTO api_tokens (token_hash, role, name, node) VALUES ($1, $2, $3, $4)", 4,
			     NULL, vals, lens, fmts, 0);
	rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : AT_EDB;
	if (rc < 0)
		log_error("token: %s", PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}
