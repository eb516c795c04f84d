/*
 * am_config.cpp — the model config: defaults, JSON in and out, validation.
 *
 * One table names every key with its type, range and whether it decides
 * tensor shapes ([arch]); parsing, printing and file compatibility checks all
 * walk it, so a new key is one line here plus its field in am_config. Cross-
 * field rules (can the convolutions handle this image size?) are in
 * am_config_validate. No torch here.
 */
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include <jansson.h>

#include "am_internal.hpp"
#include "err.h"

/* ---- the table ---- */

enum field_type { F_INT, F_DBL, F_U64, F_BOOL, F_DEVICE };
enum field_arch { A_NO = 0, A_GEN, A_DIS };

struct field {
	const char *name;
	field_type type;
	size_t off;
	double min, max;
	field_arch arch;
};

#define FI(n, lo, hi, a)                                     \
	{                                                    \
#n, F_INT, offsetof(am_config, n), lo, hi, a \
	}
#define FD(n, lo, hi)                                           \
	{                                                       \
#n, F_DBL, offsetof(am_config, n), lo, hi, A_NO \
	}

static const field fields[] = {
	FI(image_size, 16, 4096, A_NO),
	FI(gen_dim, 1, 1024, A_GEN),
	FI(style_dim, 1, 1024, A_GEN),
	FI(n_downsample, 0, 6, A_GEN),
	FI(n_res, 0, 32, A_GEN),
	FI(mlp_dim, 1, 8192, A_GEN),
	{"pono", F_BOOL, offsetof(am_config, pono), 0, 1, A_GEN},
	FI(pono_from, 0, 6, A_GEN),
	FI(dis_dim, 1, 1024, A_DIS),
	FI(n_layer, 1, 8, A_DIS),
	FI(num_scales, 1, 6, A_DIS),
	FD(gan_w, 0, 1e6),
	FD(recon_x_w, 0, 1e6),
	FD(recon_s_w, 0, 1e6),
	FD(recon_c_w, 0, 1e6),
	FD(recon_x_cyc_w, 0, 1e6),
	FD(lr, 1e-12, 1),
	FD(beta1, 0, 0.999999),
	FD(beta2, 0, 0.999999),
	FD(weight_decay, 0, 1),
	FI(lr_step_size, 1, 2147483647, A_NO),
	FD(lr_gamma, 1e-6, 1),
	FD(ema_decay, 0, 0.999999),
	{"seed", F_U64, offsetof(am_config, seed), 0, 9.2e18, A_NO},
	FI(threads, 0, 1024, A_NO),
	{"device", F_DEVICE, offsetof(am_config, device), 0, 0, A_NO},
};

#undef FI
#undef FD

static int &int_at(am_config *c, const field &f) { return *(int *)((char *)c + f.off); }
static int int_at(const am_config *c, const field &f) { return *(const int *)((const char *)c + f.off); }
static double &dbl_at(am_config *c, const field &f) { return *(double *)((char *)c + f.off); }
static double dbl_at(const am_config *c, const field &f) { return *(const double *)((const char *)c + f.off); }
static uint64_t &u64_at(am_config *c, const field &f) { return *(uint64_t *)((char *)c + f.off); }
static uint64_t u64_at(const am_config *c, const field &f) { return *(const uint64_t *)((const char *)c + f.off); }

static bool device_ok(const char *d) { return !strcmp(d, "auto") || !strcmp(d, "cpu") || !strcmp(d, "cuda"); }

/* ---- defaults and validation ---- */

extern "C" am_config am_config_default(void)
{
	am_config c;
	memset(&c, 0, sizeof c);
	/* MUNIT (Huang et al. 2018) and its reference configs, edges2* datasets. */
	c.image_size = 256;
	c.gen_dim = 64;
	c.style_dim = 8;
	c.n_downsample = 2;
	c.n_res = 4;
	c.mlp_dim = 256;
	c.pono = 1;
	c.pono_from = 0;
	c.dis_dim = 64;
	c.n_layer = 4;
	c.num_scales = 3;
	c.gan_w = 1;
	c.recon_x_w = 10;
	c.recon_s_w = 1;
	c.recon_c_w = 1;
	/* The paper's style-augmented cycle loss; NVlabs' edges2* yaml sets 0. */
	c.recon_x_cyc_w = 10;
	c.lr = 1e-4;
	c.beta1 = 0.5;
	c.beta2 = 0.999;
	c.weight_decay = 1e-4;
	c.lr_step_size = 100000;
	c.lr_gamma = 0.5;
	/* MUNIT keeps no average; the pipelines turn it on (docs/model.md). */
	c.ema_decay = 0;
	c.seed = 1;
	c.threads = 0;
	snprintf(c.device, sizeof c.device, "%s", "auto");
	return c;
}

static std::string num(double v)
{
	char b[64];
	snprintf(b, sizeof b, "%.17g", v);
	return b;
}

static int check_ranges(const am_config *c, am_status_t *st)
{
	for (const field &f : fields) {
		double v = 0;
		switch (f.type) {
		case F_INT:
		case F_BOOL: v = int_at(c, f); break;
		case F_DBL: v = dbl_at(c, f); break;
		case F_U64: v = (double)u64_at(c, f); break;
		case F_DEVICE:
			if (memchr(c->device, 0, sizeof c->device) == nullptr || !device_ok(c->device))
				return am_fail(st, AT_EINVAL, "device must be \"auto\", \"cpu\" or \"cuda\"");
			continue;
		}
		if (!(v >= f.min && v <= f.max) || std::isnan(v))
			return am_fail(st, AT_ERANGE,
				       std::string(f.name) + " is " + num(v) + ", expected " + num(f.min) + ".." +
					       num(f.max));
	}
	return 0;
}

/* A reflect-padded conv needs an input larger than its padding. */
static bool reflect_fits(int size, int pad) { return size > pad; }

extern "C" int am_config_validate(const am_config *c, am_status_t *st)
{
	if (!c)
		return am_fail(st, AT_EINVAL, "config is NULL");
	int rc = check_ranges(c, st);
	if (rc < 0)
		return rc;
	int s = c->image_size;
	int unit = 1 << c->n_downsample;
	if (s % unit != 0)
		return am_fail(st, AT_EINVAL,
			       "image_size " + std::to_string(s) +
				       " is not a multiple of 2^n_downsample = " + std::to_string(unit));
	/* Content encoder and decoder: 3x3 residual convs run at s / 2^n, the
	 * decoder's 5x5 upsampling convs at s / 2^(n-1) .. s. */
	if (!reflect_fits(s / unit, 1))
		return am_fail(st, AT_EINVAL,
			       "image_size " + std::to_string(s) + " is too small for n_downsample " +
				       std::to_string(c->n_downsample) + " (the content code would be under 2x2)");
	if (c->n_downsample > 0 && !reflect_fits(s / (unit / 2), 2))
		return am_fail(st, AT_EINVAL, "image_size too small for the decoder's 5x5 convolutions");
	/* Style encoder: 7x7 conv then four stride-2 4x4 convs (MUNIT's fixed depth). */
	for (int k = 0; k < 4; k++)
		if (!reflect_fits(s >> k, 1))
			return am_fail(st, AT_EINVAL, "image_size too small for the style encoder (needs >= 16)");
	/* Discriminator: scale j sees ceil(s / 2^j); conv l of n_layer sees that / 2^l. */
	int sj = s;
	for (int j = 0; j < c->num_scales; j++) {
		int sl = sj;
		for (int l = 0; l < c->n_layer; l++) {
			if (!reflect_fits(sl, 1))
				return am_fail(st, AT_EINVAL,
					       "image_size " + std::to_string(s) + " is too small for num_scales " +
						       std::to_string(c->num_scales) + " x n_layer " +
						       std::to_string(c->n_layer) + " (scale " + std::to_string(j) +
						       " layer " + std::to_string(l) + " would see " +
						       std::to_string(sl) + "x" + std::to_string(sl) + ")");
			sl = (sl + 1) / 2;
		}
		sj = (sj + 1) / 2;
	}
	return am_ok(st);
}

/* ---- JSON ---- */

static int apply_key(am_config *c, const field &f, json_t *v, am_status_t *st)
{
	std::string key = std::string("model config key '") + f.name + "'";
	switch (f.type) {
	case F_INT:
		if (!json_is_integer(v))
			return am_fail(st, AT_EINVAL, key + ": expected an integer");
		if ((double)json_integer_value(v) < f.min || (double)json_integer_value(v) > f.max)
			return am_fail(st, AT_ERANGE,
				       key + ": " + std::to_string(json_integer_value(v)) + " is out of range " +
					       num(f.min) + ".." + num(f.max));
		int_at(c, f) = (int)json_integer_value(v);
		return 0;
	case F_BOOL:
		if (json_is_boolean(v))
			int_at(c, f) = json_is_true(v) ? 1 : 0;
		else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
			int_at(c, f) = (int)json_integer_value(v);
		else
			return am_fail(st, AT_EINVAL, key + ": expected true or false");
		return 0;
	case F_DBL:
		if (!json_is_number(v))
			return am_fail(st, AT_EINVAL, key + ": expected a number");
		dbl_at(c, f) = json_number_value(v);
		return 0;
	case F_U64:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return am_fail(st, AT_EINVAL, key + ": expected a non-negative integer");
		u64_at(c, f) = (uint64_t)json_integer_value(v);
		return 0;
	case F_DEVICE: {
		const char *d = json_string_value(v);
		if (!d || !device_ok(d))
			return am_fail(st, AT_EINVAL, key + ": expected \"auto\", \"cpu\" or \"cuda\"");
		snprintf(c->device, sizeof c->device, "%s", d);
		return 0;
	}
	}
	return am_fail(st, AT_EINTERNAL, key + ": unhandled type");
}

static int apply_json(const char *text, am_config *out, am_status_t *st)
{
	if (!text || !out)
		return am_fail(st, AT_EINVAL, "NULL argument");
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return am_fail(st, AT_EPARSE,
			       std::string("model config: ") + jerr.text + " at line " + std::to_string(jerr.line) +
				       " column " + std::to_string(jerr.column));
	int rc = 0;
	am_config c = *out;
	if (!json_is_object(root)) {
		rc = am_fail(st, AT_EINVAL, "model config: expected a JSON object");
	} else {
		const char *k;
		json_t *v;
		json_object_foreach(root, k, v)
		{
			const field *f = nullptr;
			for (const field &g : fields)
				if (!strcmp(g.name, k))
					f = &g;
			if (!f) {
				rc = am_fail(st, AT_EINVAL, std::string("unknown model config key '") + k + "'");
				break;
			}
			rc = apply_key(&c, *f, v, st);
			if (rc < 0)
				break;
		}
	}
	json_decref(root);
	if (rc == 0)
		rc = am_config_validate(&c, st);
	if (rc == 0)
		*out = c;
	return rc;
}

extern "C" int am_config_from_json(const char *json, am_config *cfg, am_status_t *st)
{
	try {
		return apply_json(json, cfg, st);
	} catch (...) {
		return am_fail_current_exception(st, "model config");
	}
}

int am_config_parse_strict(const char *json, am_config *cfg, am_status_t *st)
{
	*cfg = am_config_default();
	return am_config_from_json(json, cfg, st);
}

extern "C" char *am_config_to_json(const am_config *c)
{
	json_t *o = json_object();
	if (!o)
		return nullptr;
	for (const field &f : fields) {
		json_t *v = nullptr;
		switch (f.type) {
		case F_INT: v = json_integer(int_at(c, f)); break;
		case F_BOOL: v = json_boolean(int_at(c, f)); break;
		case F_DBL: v = json_real(dbl_at(c, f)); break;
		case F_U64: v = json_integer((json_int_t)u64_at(c, f)); break;
		case F_DEVICE: v = json_stringn(c->device, strnlen(c->device, sizeof c->device)); break;
		}
		if (!v || json_object_set_new(o, f.name, v) < 0) {
			json_decref(o);
			return nullptr;
		}
	}
	/* Table order, so that the text (and a file's hash) is stable. */
	char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	return s;
}

std::string am_config_arch_diff(const am_config *file, const am_config *here, bool with_dis)
{
	for (const field &f : fields) {
		if (f.arch == A_NO || (f.arch == A_DIS && !with_dis))
			continue;
		int a = int_at(file, f), b = int_at(here, f);
		if (a != b)
			return std::string(f.name) + " is " + std::to_string(a) + " in the file, " + std::to_string(b) +
			       " here";
	}
	return std::string();
}
