/*
 * munit.hpp — MUNIT's networks in libtorch's C++ frontend, plus the helpers
 * the trainer and the inference side share (devices, weight archives, image
 * <-> tensor, the stylize path). Internal: nothing here crosses the C ABI.
 *
 * Follows NVlabs/MUNIT networks.py (AdaINGen, ContentEncoder, StyleEncoder,
 * Decoder, MLP, MsImageDis) with two changes: AdaIN parameters are passed to
 * the decoder's forward instead of being assigned into modules, and PONO-MS
 * (Li et al. 2019) links encoder and decoder: the content encoder's first
 * n_downsample conv blocks normalise each position across channels and hand
 * (mean, std) to the decoder's upsampling block of the same resolution, which
 * multiplies and adds them back after its LayerNorm.
 */
#ifndef ATELIER_MUNIT_HPP
#define ATELIER_MUNIT_HPP

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn.h>
#include <torch/serialize/archive.h>

#include "am_internal.hpp"

namespace am
{

enum class Norm { None, In, AdaIn, Ln };
enum class Act { None, Relu, LRelu, Tanh };

/* Per-position moments from PONO, consumed by the decoder's moment shortcut. */
struct Moments {
	torch::Tensor mean, std;
};

/* pad (reflect) -> conv -> [PONO] -> norm -> [MS] -> activation */
struct ConvBlockImpl : torch::nn::Module {
	ConvBlockImpl(int in, int out, int k, int stride, int pad, Norm norm, Act act, bool pono = false,
		      bool ms = false);
	/* adain: (B, 2C) slice, [bias | weight]; ms: moments to re-inject; pono_out: where PONO's go. */
	torch::Tensor forward(torch::Tensor x, const torch::Tensor &adain = {}, const Moments *ms = nullptr,
			      Moments *pono_out = nullptr);
	/* forward's steps after the convolution. */
	torch::Tensor post(torch::Tensor x, const torch::Tensor &adain = {}, const Moments *ms = nullptr,
			   Moments *pono_out = nullptr);
	/* conv(upsample_nearest_2x(x)); without the upsampled tensor when autograd is off. */
	torch::Tensor up2_conv(const torch::Tensor &x);
	torch::nn::Conv2d conv{nullptr};
	torch::Tensor gamma, beta; /* LayerNorm affine */
	Norm norm;
	Act act;
	bool pono, ms;
	int out_ch;
};
TORCH_MODULE(ConvBlock);

/* x + conv(relu(norm(conv(x)))) with norm = instance norm or AdaIN. */
struct ResBlockImpl : torch::nn::Module {
	ResBlockImpl(int dim, Norm norm);
	torch::Tensor forward(torch::Tensor x, const torch::Tensor &adain = {});
	ConvBlock c1{nullptr}, c2{nullptr};
	int dim;
};
TORCH_MODULE(ResBlock);

struct ContentEncoderImpl : torch::nn::Module {
	ContentEncoderImpl(int n_down, int n_res, int in, int dim, bool pono, int pono_from);
	/* Content code, and the PONO moments (stats[k] at resolution S / 2^k). */
	torch::Tensor forward(torch::Tensor x, std::vector<Moments> *stats);
	torch::nn::ModuleList blocks, res;
	int out_dim;
};
TORCH_MODULE(ContentEncoder);

struct StyleEncoderImpl : torch::nn::Module {
	StyleEncoderImpl(int n_down, int in, int dim, int style_dim);
	torch::Tensor forward(torch::Tensor x); /* (B, style_dim) */
	torch::nn::ModuleList blocks;
	torch::nn::Conv2d out{nullptr};
};
TORCH_MODULE(StyleEncoder);

struct DecoderImpl : torch::nn::Module {
	DecoderImpl(int n_up, int n_res, int dim, int out, bool pono, int pono_from);
	torch::Tensor forward(torch::Tensor c, const std::vector<Moments> &stats, const torch::Tensor &adain);
	int64_t num_adain_params() const;
	torch::nn::ModuleList res, ups;
	ConvBlock last{nullptr};
	bool pono;
	int pono_from; /* stats[k] holds the moments of level pono_from + k */
};
TORCH_MODULE(Decoder);

struct MLPImpl : torch::nn::Module {
	MLPImpl(int in, int out, int dim, int n_blk);
	torch::Tensor forward(torch::Tensor x);
	torch::nn::ModuleList layers;
};
TORCH_MODULE(MLP);

struct Encoded {
	torch::Tensor c, s;
	std::vector<Moments> stats;
};

/* One domain's generator (AdaINGen). */
struct GeneratorImpl : torch::nn::Module {
	GeneratorImpl(const am_config &cfg, int channels);
	Encoded encode(const torch::Tensor &x);
	torch::Tensor decode(const torch::Tensor &c, const std::vector<Moments> &stats, const torch::Tensor &s);
	ContentEncoder enc_content{nullptr};
	StyleEncoder enc_style{nullptr};
	Decoder dec{nullptr};
	MLP mlp{nullptr};
};
TORCH_MODULE(Generator);

/* Multi-scale patch discriminator, LSGAN. */
struct DiscriminatorImpl : torch::nn::Module {
	DiscriminatorImpl(const am_config &cfg, int channels);
	std::vector<torch::Tensor> forward(torch::Tensor x);
	torch::Tensor dis_loss(const torch::Tensor &fake, const torch::Tensor &real);
	torch::Tensor gen_loss(const torch::Tensor &fake);
	torch::nn::ModuleList nets;
};
TORCH_MODULE(Discriminator);

/*
 * Inference-only rewrites of the forward pass (on by default; they apply
 * only while autograd is off). Off: the training graph's ops, for tests and
 * bench/serve. Process-wide; set it before serving threads start.
 */
void set_fast_paths(bool on);

/* He-normal convs and linears, uniform LayerNorm gamma (MUNIT 'kaiming'). */
void init_kaiming(torch::nn::Module &m, at::Generator &gen);
/* N(0, 0.02) convs and linears (MUNIT 'gaussian', the discriminators). */
void init_gaussian(torch::nn::Module &m, at::Generator &gen);

/* ---- devices ---- */

/* NULL/"auto" -> cuda when available else cpu; AT_EUNAVAILABLE for absent cuda. */
int pick_device(const char *pref, torch::Device *out, am_status_t *st);
const char *device_label(const torch::Device &d);

/* ---- weight archives ---- */

/* Writes every parameter and buffer of m under prefix. */
void save_module(torch::serialize::OutputArchive &ar, const std::string &prefix, torch::nn::Module &m);
/*
 * Copies every parameter and buffer of m from prefix; a missing tensor or a
 * shape mismatch throws format_error (the file does not match its config).
 */
void load_module(torch::serialize::InputArchive &ar, const std::string &prefix, torch::nn::Module &m);
struct format_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};
/* A caller's argument is wrong (AT_EINVAL), found deep inside a computation. */
struct arg_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};
/*
 * Reads and checks a file of the given kind (am_file_read), parses its config
 * and opens its payload as an archive whose tensors land on dev. A payload
 * torch cannot read is AT_ECORRUPT.
 */
int open_archive(const char *path, am_file_kind kind, const torch::Device &dev, torch::serialize::InputArchive &ar,
		 am_config *cfg, am_status_t *st);
/* Archive keys may not contain '.', which parameter names do. */
std::string key_of(const std::string &name);

/* ---- images ---- */

/* (1, C, h, w) float in [-1, 1] on dev from packed uint8 (C = 1 gray, 3 RGB HWC). */
torch::Tensor image_to_tensor(const uint8_t *px, int w, int h, int channels, const torch::Device &dev);
/* Bilinear resize to (h, w), antialiased when shrinking. */
torch::Tensor resize(const torch::Tensor &x, int h, int w);
/* (1, 3, H, W) in [-1, 1] -> resized to out_h x out_w, RGB bytes into out. */
void tensor_to_rgb(const torch::Tensor &y, uint8_t *out, int out_w, int out_h);

/* ---- the stylize path (trainer and model share it) ---- */

struct Translator {
	const am_config *cfg;
	torch::Device device;
	ContentEncoder enc_a; /* gen_a's content encoder */
	Generator gen_b;
};
int check_image_args(const void *px, int w, int h, am_status_t *st);
/* (1, style_dim) on the translator's device. Throws arg_error on bad styles. */
torch::Tensor style_code(Translator &tr, const am_style *style, int depth);
int stylize(Translator &tr, const uint8_t *gray, int w, int h, const am_style *style, uint8_t *rgb_out, int out_w,
	    int out_h, am_status_t *st);

/* ---- data-parallel training (am_trainer.cpp calls, am_dist.cpp installs) ---- */

/*
 * A trainer in a process group of `world` ranks. mean() averages its tensors
 * in place across the ranks (a collective: every rank calls it with the same
 * shapes, in the same order); it may throw. With mean set, a step averages
 * both updates' gradients and the reported losses, and draws batch * world
 * style codes keeping its own slice, so that world ranks of batch b compute
 * what one process computes on the combined batch of world * b.
 */
struct TrainerDist {
	std::function<void(std::vector<torch::Tensor> &)> mean;
	int rank = 0, world = 1;
};
void trainer_set_dist(am_trainer *t, TrainerDist d);
/*
 * The training state for a broadcast from rank 0. trainer_meta: int64
 * [step, then each optimiser slot's Adam step or -1 when it has no state];
 * trainer_set_meta applies rank 0's (creating zero Adam states where rank 0
 * has some) so that trainer_tensors lists the same tensors on every rank:
 * parameters, then exp_avg and exp_avg_sq of every slot with state, in place.
 */
torch::Tensor trainer_meta(am_trainer *t);
void trainer_set_meta(am_trainer *t, const torch::Tensor &meta);
std::vector<torch::Tensor> trainer_tensors(am_trainer *t);
at::Generator &trainer_rng(am_trainer *t);
torch::Device trainer_device(am_trainer *t);

} // namespace am

#endif
