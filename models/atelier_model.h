/*
 * atelier_model.h — the C ABI of the model shim (libtorch behind it).
 *
 * MUNIT between two domains, A = sketch (1 channel) and B = painting
 * (3 channels), with positional normalisation and moment shortcut (PONO-MS)
 * between encoder and decoder. docs/model.md describes the architecture, the
 * config keys and the file formats.
 *
 * Conventions (after TensorFlow's tensorflow/c/tf_status.h):
 *   - Opaque handles with _new/_free (or _load/_free) pairs; every _free(NULL)
 *     is a no-op.
 *   - Every fallible call takes an `am_status_t *` last. It returns 0 or a
 *     negative AT_E* code from lib/err.h (handle constructors return NULL),
 *     and also records that code and a message in the status. The status may
 *     be NULL when the caller only wants the code. The message is owned by the
 *     status and stays valid until the next call that takes the same status,
 *     or am_status_free(); it is "" after a successful call.
 *   - No C++ exception crosses this header: everything is caught and becomes
 *     AT_ENOMEM (allocation), AT_EINTERNAL (libtorch) or a more precise code.
 *   - Images: uint8 pixels, row-major, no padding; gray is 1 byte a pixel,
 *     RGB is 3 interleaved bytes a pixel (HWC). Training batches are NCHW
 *     float32 in [-1, 1] (0 = mid gray; a white sketch background is +1).
 *   - Threads: an am_model may be used by several threads at once (each call
 *     is a pure forward pass). An am_trainer is single-threaded: one call at a
 *     time. libtorch's intra-op thread pool is process-wide (am_set_threads).
 *
 * Error codes used: AT_EINVAL (bad argument or config), AT_ERANGE (a config
 * value out of its range), AT_EIO / AT_ENOTFOUND (file system),
 * AT_EUNSUPPORTED (wrong magic or format version), AT_ECORRUPT (truncated
 * file, checksum mismatch, unreadable payload), AT_ECONFLICT (a file whose
 * architecture does not match the trainer it is loaded into), AT_ENOMEM,
 * AT_EUNAVAILABLE (CUDA asked for but absent), AT_EINTERNAL.
 */
#ifndef ATELIER_MODEL_H
#define ATELIER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define AM_MUST_CHECK __attribute__((warn_unused_result))
#else
#define AM_MUST_CHECK
#endif

/* ---- status ---- */

typedef struct am_status am_status_t;

am_status_t *am_status_new(void);
void am_status_free(am_status_t *st);
/* 0 or a negative AT_E* code. */
int am_status_code(const am_status_t *st);
/* Never NULL; "" when the code is 0. Valid until the next call with st. */
const char *am_status_message(const am_status_t *st);

/* ---- process-wide settings ---- */

/* libtorch's intra-op threads (n >= 1). Affects every model and trainer. */
int am_set_threads(int n, am_status_t *st) AM_MUST_CHECK;
/*
 * Inference rewrites of the forward pass (default on): fused norms, in-place
 * activations, the decoder's upsample + conv as one low-resolution sub-pixel
 * convolution. Same outputs up to float rounding; 0 runs the training graph's
 * ops (tests, bench/serve). Set it before threads stylize.
 */
void am_set_fast_paths(int on);
/* "cuda:0 (N devices)" when libtorch sees a GPU, else "cpu". Static string. */
const char *am_device_name(void);

/* ---- configuration ---- */

#define AM_DEVICE_MAX 16

/*
 * Every size and weight of the model and its training. JSON keys are the
 * field names (am_config_from_json). Fields marked [arch] decide tensor
 * shapes: files whose [arch] fields differ cannot be loaded into each other.
 */
typedef struct am_config {
	/* data */
	int image_size; /* 256: square side the model runs at (>= 16, multiple of 2^n_downsample) */
	/* generator (one per domain) */
	int gen_dim;      /* 64  [arch] channels of the first conv */
	int style_dim;    /* 8   [arch] length of a style code */
	int n_downsample; /* 2   [arch] stride-2 convs in the content encoder */
	int n_res;        /* 4   [arch] residual blocks in content encoder and decoder */
	int mlp_dim;      /* 256 [arch] hidden width of the style -> AdaIN MLP */
	int pono;         /* 1   [arch] PONO-MS between encoder and decoder (0 = plain MUNIT) */
	int pono_from;    /* 0   [arch] finest level whose moments PONO-MS carries (0 = full size,
	                        1 = half, ...): coarser starts leave fine detail to the decoder */
	/* discriminator (one per domain) */
	int dis_dim;    /* 64  [arch] channels of the first conv */
	int n_layer;    /* 4   [arch] stride-2 convs per scale */
	int num_scales; /* 3   [arch] image scales judged (each half the previous) */
	/* loss weights */
	double gan_w;         /* 1   adversarial (LSGAN) */
	double recon_x_w;     /* 10  image reconstruction (L1) */
	double recon_s_w;     /* 1   style code reconstruction (L1) */
	double recon_c_w;     /* 1   content code reconstruction (L1) */
	double recon_x_cyc_w; /* 10  style-augmented cycle consistency (0 skips it) */
	/* optimiser: Adam, step learning-rate policy */
	double lr;           /* 1e-4 */
	double beta1;        /* 0.5 */
	double beta2;        /* 0.999 */
	double weight_decay; /* 1e-4 */
	int lr_step_size;    /* 100000 steps between learning-rate drops */
	double lr_gamma;     /* 0.5 factor of each drop */
	double ema_decay;    /* 0   exponential moving average of the generators' weights, used for
	                        exports and am_trainer_stylize (0 = off; 0.999 typical); warm-up
	                        min(ema_decay, (1 + k) / (10 + k)) at step k of the trainer */
	/* runtime */
	uint64_t seed;              /* 1: weight init and training randomness */
	int threads;                /* 0: leave libtorch's default; > 0 calls am_set_threads */
	char device[AM_DEVICE_MAX]; /* "auto": cuda when available, else cpu; or "cpu", "cuda" */
} am_config;

/* The MUNIT paper's defaults (the values in the comments above). */
am_config am_config_default(void);
/* Cross-field checks (sizes that the convolutions can handle, ranges). */
int am_config_validate(const am_config *cfg, am_status_t *st) AM_MUST_CHECK;
/*
 * Applies a JSON object's keys on top of *cfg (keys absent keep their value,
 * so start from am_config_default()) and validates the result. Unknown keys,
 * wrong types and out-of-range values are errors (AT_EINVAL / AT_ERANGE /
 * AT_EPARSE for text that is not JSON); on error *cfg is left unchanged.
 */
int am_config_from_json(const char *json, am_config *cfg, am_status_t *st) AM_MUST_CHECK;
/* A JSON object with every key; caller frees with free(). NULL on ENOMEM. */
char *am_config_to_json(const am_config *cfg);

/* ---- training ---- */

typedef struct am_trainer am_trainer;

typedef struct am_losses {
	uint64_t step;    /* steps done, this one included */
	double gen_total; /* the weighted sum the generators minimise */
	double dis_total; /* the weighted sum the discriminators minimise */
	double gen_adv_a, gen_adv_b;
	double recon_x_a, recon_x_b; /* image reconstruction, L1 in [-1,1] units */
	double recon_s_a, recon_s_b;
	double recon_c_a, recon_c_b;
	double cyc_x_a, cyc_x_b; /* 0 when recon_x_cyc_w is 0 */
	double dis_a, dis_b;
} am_losses;

/* Fresh weights from cfg->seed. Copies cfg. */
am_trainer *am_trainer_new(const am_config *cfg, am_status_t *st);
void am_trainer_free(am_trainer *t);
/*
 * One discriminator update then one generator update on a batch: sketch is
 * batch x 1 x S x S, painting batch x 3 x S x S (S = image_size), NCHW
 * float32 in [-1, 1]; both are read only during the call. The two batches
 * are unpaired (MUNIT needs no pairs). out may be NULL.
 */
int am_trainer_step(am_trainer *t, const float *sketch_batch, const float *painting_batch, int batch, am_losses *out,
		    am_status_t *st) AM_MUST_CHECK;
uint64_t am_trainer_steps(const am_trainer *t);
void am_trainer_get_config(const am_trainer *t, am_config *out);
/* Full training state (4 networks, both Adam states, step, RNG), atomically. */
int am_trainer_save(am_trainer *t, const char *path, am_status_t *st) AM_MUST_CHECK;
/*
 * Resumes from a checkpoint; the config comes from the file. device_pref is
 * NULL/"auto", "cpu" or "cuda" and overrides the file's device. Resuming on
 * the same device with the same thread count repeats the same steps bit for
 * bit.
 */
am_trainer *am_trainer_load(const char *path, const char *device_pref, am_status_t *st);
/* Writes a serving export (what am_model_load reads), atomically. */
int am_trainer_export(am_trainer *t, const char *path, am_status_t *st) AM_MUST_CHECK;
/*
 * Warm start: copies weights from a checkpoint (all four networks) or a
 * serving export (gen_a's content encoder and gen_b) into t; optimiser state
 * and step count stay fresh. The file's [arch] fields must equal t's
 * (AT_ECONFLICT otherwise); image size, loss weights and lr may differ.
 */
int am_trainer_warm_start(am_trainer *t, const char *path, am_status_t *st) AM_MUST_CHECK;

/* ---- data-parallel training (models/am_dist.cpp; docs/training.md) ---- */

/*
 * A process group of `world` ranks over torch.distributed's c10d: a TCPStore
 * that rank 0 hosts is the rendezvous, Gloo carries the collectives (tensors
 * on a GPU are staged through host memory unless the shim was built with
 * NCCL). Every call below is collective unless it says otherwise: all ranks
 * make it, in the same order. A rank that dies or stalls makes the others'
 * next collective fail with AT_ETIMEOUT or AT_EUNAVAILABLE within timeout_ms;
 * the group is then unusable (free it). One thread at a time.
 */
typedef struct am_dist am_dist;

/*
 * Rank 0: hosts the rendezvous store on bind_host:port (port 0 = a free port;
 * am_dist_port says which) for a group of world ranks. Returns at once; the
 * group forms in am_dist_join. Not collective.
 */
am_dist *am_dist_listen(const char *bind_host, int port, int world, int timeout_ms, am_status_t *st);
/* Ranks 1..world-1: connects to rank 0's store at host:port. Not collective. */
am_dist *am_dist_connect(const char *host, int port, int rank, int world, int timeout_ms, am_status_t *st);
/* The store's port (rank 0's listening port on every rank). */
int am_dist_port(const am_dist *d);
/*
 * Forms the group: every rank's Gloo endpoint binds to my_host (an address of
 * this host that the other ranks can reach; NULL = the hostname's) and meets
 * the others through the store. Blocks until all ranks joined or timeout_ms.
 */
int am_dist_join(am_dist *d, const char *my_host, am_status_t *st) AM_MUST_CHECK;
void am_dist_free(am_dist *d);
int am_dist_rank(const am_dist *d);
int am_dist_world(const am_dist *d);
/*
 * Makes t a replica: rank 0's weights, optimiser state, step count and RNG
 * state are broadcast to the others (a resumed rank 0 brings its checkpoint
 * to all), the ranks' configs must agree (AT_ECONFLICT otherwise), and from
 * now on am_trainer_step averages gradients across the group (each rank
 * passes its shard of the combined batch; the same batch size on every
 * rank) and reports losses averaged over the group. The trainer holds a
 * reference to the group, so either may be freed first; a trainer whose
 * group failed fails its steps.
 */
int am_dist_attach(am_dist *d, am_trainer *t, am_status_t *st) AM_MUST_CHECK;
/* Averages n doubles across the group in place. */
int am_dist_mean(am_dist *d, double *v, int n, am_status_t *st) AM_MUST_CHECK;
/* Blocks until every rank reached it. */
int am_dist_barrier(am_dist *d, am_status_t *st) AM_MUST_CHECK;

/* What the group's collectives cost so far on this rank (not collective). */
typedef struct am_dist_stats {
	uint64_t allreduces; /* calls, gradients and losses */
	uint64_t bytes;      /* payload bytes this rank contributed to them */
	double seconds;      /* wall time inside them, staging included */
} am_dist_stats;
void am_dist_get_stats(const am_dist *d, am_dist_stats *out);

/* ---- inference ---- */

typedef enum am_style_kind {
	AM_STYLE_SEED = 0,  /* a reproducible random code: same seed, same style */
	AM_STYLE_REFERENCE, /* the style of a painting, through gen_b's style encoder */
	AM_STYLE_MIX,       /* (1 - alpha) * a + alpha * b, codes mixed linearly */
	AM_STYLE_CODE,      /* an explicit code of style_dim floats */
} am_style_kind;

typedef struct am_style {
	am_style_kind kind;
	uint64_t seed;      /* AM_STYLE_SEED (the `style` int of the stylize API) */
	const uint8_t *rgb; /* AM_STYLE_REFERENCE: w x h RGB, borrowed */
	int w, h;
	const struct am_style *a, *b; /* AM_STYLE_MIX: borrowed, nesting up to 4 deep */
	float alpha;                  /* AM_STYLE_MIX: 0 = a, 1 = b */
	const float *code;            /* AM_STYLE_CODE: borrowed */
	int code_len;                 /* AM_STYLE_CODE: must equal style_dim */
} am_style;

typedef struct am_model am_model;

/* Loads a serving export onto device_pref (NULL/"auto", "cpu", "cuda"). */
am_model *am_model_load(const char *path, const char *device_pref, am_status_t *st);
void am_model_free(am_model *m);
void am_model_get_config(const am_model *m, am_config *out);
/* "cpu" or "cuda:0"; static string. */
const char *am_model_device(const am_model *m);
/*
 * Sketch (w x h gray, white background, dark strokes) -> painting
 * (out_w x out_h RGB written to rgb_out, 3 * out_w * out_h bytes). The
 * sketch is resized to image_size and the result to the output size
 * (bilinear, antialiased when shrinking). Sizes are 1..8192.
 */
int am_model_stylize(am_model *m, const uint8_t *gray, int w, int h, const am_style *style, uint8_t *rgb_out, int out_w,
		     int out_h, am_status_t *st) AM_MUST_CHECK;
/* The code a style resolves to (style_dim floats into code, code_len >= style_dim). */
int am_model_style_code(am_model *m, const am_style *style, float *code, int code_len, am_status_t *st) AM_MUST_CHECK;
/* Same as am_model_stylize with the trainer's current gen_a / gen_b. */
int am_trainer_stylize(am_trainer *t, const uint8_t *gray, int w, int h, const am_style *style, uint8_t *rgb_out,
		       int out_w, int out_h, am_status_t *st) AM_MUST_CHECK;

/* ---- evaluation (no downloads, deterministic) ---- */

/*
 * Content preservation: Sobel edges of the sketch vs the k strongest Sobel
 * edges of the output's luminance (k = the sketch's edge count, none weaker
 * than 2 % of a full step), matched within tol pixels (Chebyshev). F1 in
 * [0, 1]; 1 when neither has edges. Both images are w x h; tol 0..16.
 * Returns AT_EINVAL (negative) on bad arguments.
 */
double am_edge_f1(const uint8_t *gray, const uint8_t *rgb, int w, int h, int tol);
/*
 * Content preservation that does not saturate: the symmetric chamfer
 * distance in pixels between the same two edge sets as am_edge_f1 — the mean
 * distance from each sketch edge pixel to the nearest output edge pixel and
 * from each output edge pixel to the nearest sketch edge pixel, the two
 * averaged. Lower is better; 0 = the output's edges lie on the sketch's. An
 * output without edges (flat) scores the image diagonal, the worst; a sketch
 * without edges scores 0. Negative AT_E* on bad arguments.
 */
double am_content_chamfer(const uint8_t *gray, const uint8_t *rgb, int w, int h);

/* A statistic and its 90 % bootstrap interval [lo, hi]. */
typedef struct am_interval {
	double value, lo, hi;
} am_interval;

/*
 * KID (kernel inception-style distance): unbiased MMD^2 with the polynomial
 * kernel k(x, y) = (x.y / d + 1)^3 between features of n_gen generated and
 * n_real real RGB images (each w x h, packed one after the other). Features
 * (d = 448: per-channel mean and std of each layer) come from a fixed random
 * convolutional network (fixed seed, no pretrained weights). The interval is
 * the 5th..95th percentile over 200 fixed-seed bootstrap resamplings of both
 * sets (with replacement; pairs of one element with itself are left out of
 * the within-set sums). Lower is better; ~0 = indistinguishable (it can be
 * slightly negative). n_gen, n_real >= 2.
 */
int am_kid(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h, am_interval *out,
	   am_status_t *st) AM_MUST_CHECK;
/*
 * Realism: unbiased MMD^2 (Gaussian kernel, bandwidth = median distance among
 * the real set) on the same features as am_kid. Lower is better.
 */
int am_realism_mmd(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h, double *mmd2,
		   am_status_t *st) AM_MUST_CHECK;
/*
 * Diversity, LPIPS-like: for every pair of the n RGB images (w x h, packed),
 * each layer's feature map of the fixed random network is unit-normalised
 * along channels, the squared difference is averaged over positions and
 * channels, and the layers are averaged; *out is the mean over pairs (0 when
 * n < 2 or the images are identical). No learned weights: compare it only
 * with the same figure on other images (evaluate divides by the real
 * paintings' figure).
 */
int am_diversity(const uint8_t *rgbs, int n, int w, int h, double *out, am_status_t *st) AM_MUST_CHECK;
/*
 * Reconstruction error of a painting through gen_b (encode, decode with its
 * own style): mean absolute error in [0, 1] at image_size.
 */
int am_model_recon_error(am_model *m, const uint8_t *rgb, int w, int h, double *err, am_status_t *st) AM_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif
