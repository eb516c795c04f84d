/*
 * token.c — `atelier token create --role operator|node|viewer [--name N]`:
 * asks atelierd for a new token (needs an operator token) and prints it once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

int cmd_token_create(struct cli *c, const struct cli_args *a)
{
	const char *role = cli_arg(a, "role"), *name = cli_arg(a, "name");
	if (!role) {
		fprintf(stderr, "atelier token create: --role is required\n");
		cli_args_usage(stderr, a->cmd);
		return 2;
	}
	json_t *req = json_pack("{ss,ss?}", "role", role, "name", name);
	json_t *out = NULL;
	long status;
	int rc = cli_json(c, "POST", "/v1/tokens", req, &status, &out);
	json_decref(req);
	if (rc < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
	} else {
		printf("%s\n", json_string_value(json_object_get(out, "token")));
		fprintf(stderr, "(%s token; it is shown only this once)\n", role);
	}
	json_decref(out);
	return 0;
}
