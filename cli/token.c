/*
 * token.c — `atelier token create --role operator|node|viewer [--name N]`:
 * asks atelierd for a new token (needs an operator token) and prints it once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

int cmd_token_create(struct cli *c, int argc, char **argv)
{
	const char *role = NULL, *name = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--role") && i + 1 < argc)
			role = argv[++i];
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else {
			fprintf(stderr, "atelier token create: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!role) {
		fprintf(stderr, "usage: atelier token create --role operator|node|viewer [--name NAME]\n");
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
		char *s = json_dumps(out, JSON_INDENT(2));
		puts(s);
		free(s);
	} else {
		printf("%s\n", json_string_value(json_object_get(out, "token")));
		fprintf(stderr, "(%s token; it is shown only this once)\n", role);
	}
	json_decref(out);
	return 0;
}
