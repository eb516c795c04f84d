/*
 * ui.h — the operator dashboard served under /ui/ (files embedded in the
 * binary) and GET /v1/whoami.
 */
#ifndef ATELIERD_UI_H
#define ATELIERD_UI_H

#include <stddef.h>

#include "http.h"

extern const struct http_route ui_routes[];
extern const size_t ui_nroutes;

#endif
