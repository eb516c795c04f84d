/*
 * am_eval.cpp — the scores the evaluate job compares candidate and champion
 * with. All deterministic and download-free:
 *
 *   edge F1     content preservation: Sobel edges of the sketch against the
 *               output's strongest edges, matched within a tolerance;
 *   MMD^2       realism: a kernel two-sample statistic on features of a
 *               fixed random conv net (seeded; random features separate
 *               image distributions well enough to rank two models on the
 *               same holdout set, without pretrained weights to download);
 *   diversity   mean pairwise L1 across outputs of different style codes;
 *   recon error lives in am_model.cpp (it needs the model).
 */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional.h>

#include "munit.hpp"
#include "err.h"

/* ---- edge F1 ---- */

/* Sobel magnitude, 1.0 for a full black-to-white step; borders replicated. */
static std::vector<float> sobel(const std::vector<float> &img, int w, int h)
{
	std::vector<float> mag((size_t)w * h);
	auto at = [&](int x, int y) {
		x = std::min(std::max(x, 0), w - 1);
		y = std::min(std::max(y, 0), h - 1);
		return img[(size_t)y * w + x];
	};
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			float gx = (at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1)) -
				   (at(x - 1, y - 1) + 2 * at(x - 1, y) + at(x - 1, y + 1));
			float gy = (at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1)) -
				   (at(x - 1, y - 1) + 2 * at(x, y - 1) + at(x + 1, y - 1));
			mag[(size_t)y * w + x] = std::sqrt(gx * gx + gy * gy) / (4.0f * 255.0f);
		}
	return mag;
}

/* Square (Chebyshev) dilation by r, separable. */
static std::vector<uint8_t> dilate(const std::vector<uint8_t> &m, int w, int h, int r)
{
	std::vector<uint8_t> tmp(m.size()), out(m.size());
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t v = 0;
			for (int d = -r; d <= r && !v; d++) {
				int xx = x + d;
				if (xx >= 0 && xx < w)
					v = m[(size_t)y * w + xx];
			}
			tmp[(size_t)y * w + x] = v;
		}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t v = 0;
			for (int d = -r; d <= r && !v; d++) {
				int yy = y + d;
				if (yy >= 0 && yy < h)
					v = tmp[(size_t)yy * w + x];
			}
			out[(size_t)y * w + x] = v;
		}
	return out;
}

#define SKETCH_EDGE 0.25f /* a quarter of a full step: strokes, not paper grain */
#define OUTPUT_FLOOR 0.02f

static double edge_f1(const uint8_t *gray, const uint8_t *rgb, int w, int h, int tol)
{
	size_t n = (size_t)w * h;
	std::vector<float> g(n), l(n);
	for (size_t i = 0; i < n; i++) {
		g[i] = gray[i];
		l[i] = 0.299f * rgb[3 * i] + 0.587f * rgb[3 * i + 1] + 0.114f * rgb[3 * i + 2];
	}
	auto ms = sobel(g, w, h), mo = sobel(l, w, h);
	std::vector<uint8_t> es(n), eo(n);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += es[i] = ms[i] >= SKETCH_EDGE;
	/* Paintings have softer, lower-contrast edges than ink: compare the sketch's
	 * edges with the same number of the output's strongest ones. */
	size_t ko = 0;
	if (k > 0) {
		std::vector<float> sorted(mo);
		std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
		float thr = std::max(sorted[k - 1], OUTPUT_FLOOR);
		for (size_t i = 0; i < n; i++)
			ko += eo[i] = mo[i] >= thr;
	}
	if (k == 0 || ko == 0) {
		size_t any = 0;
		for (size_t i = 0; i < n; i++)
			any += mo[i] >= SKETCH_EDGE;
		return k == 0 && any == 0 ? 1.0 : 0.0;
	}
	auto ds = dilate(es, w, h, tol), dout = dilate(eo, w, h, tol);
	size_t tp_o = 0, tp_s = 0;
	for (size_t i = 0; i < n; i++) {
		tp_o += eo[i] && ds[i];
		tp_s += es[i] && dout[i];
	}
	double precision = (double)tp_o / (double)ko, recall = (double)tp_s / (double)k;
	return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

extern "C" double am_edge_f1(const uint8_t *gray, const uint8_t *rgb, int w, int h, int tol)
{
	if (!gray || !rgb || w < 1 || h < 1 || w > 8192 || h > 8192 || tol < 0 || tol > 16)
		return AT_EINVAL;
	try {
		return edge_f1(gray, rgb, w, h, tol);
	} catch (...) {
		return AT_ENOMEM;
	}
}

/* ---- diversity ---- */

extern "C" double am_diversity(const uint8_t *rgbs, int n, int w, int h)
{
	if (!rgbs || n < 0 || w < 1 || h < 1 || w > 8192 || h > 8192)
		return AT_EINVAL;
	if (n < 2)
		return 0.0;
	size_t len = (size_t)w * h * 3;
	double sum = 0;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			const uint8_t *a = rgbs + len * i, *b = rgbs + len * j;
			uint64_t d = 0;
			for (size_t p = 0; p < len; p++)
				d += (uint64_t)std::abs((int)a[p] - (int)b[p]);
			sum += (double)d / (255.0 * (double)len);
		}
	return sum / ((double)n * (n - 1) / 2);
}

/* ---- realism: MMD on random features ---- */

namespace {
/* Three stride-2 3x3 convs with He-normal weights from a fixed seed; the
 * per-channel mean and std of each layer form a 448-float feature. */
struct random_features {
	std::vector<torch::Tensor> w;
	random_features()
	{
		auto gen = at::make_generator<at::CPUGeneratorImpl>(0x41544c52u);
		int ch[] = {3, 32, 64, 128};
		for (int i = 0; i < 3; i++) {
			double std = std::sqrt(2.0 / (ch[i] * 9));
			w.push_back(torch::randn({ch[i + 1], ch[i], 3, 3}, gen, torch::kFloat) * std);
		}
	}
	torch::Tensor operator()(const uint8_t *rgb, int n, int w_, int h_) const
	{
		std::vector<torch::Tensor> rows;
		size_t len = (size_t)w_ * h_ * 3;
		torch::Device cpu(torch::kCPU);
		for (int i = 0; i < n; i++) {
			auto x = am::resize(am::image_to_tensor(rgb + len * i, w_, h_, 3, cpu), 64, 64);
			std::vector<torch::Tensor> f;
			for (auto &k : w) {
				x = torch::relu(torch::conv2d(x, k, {}, 2, 1));
				f.push_back(x.mean({2, 3}).flatten());
				f.push_back(x.std({2, 3}, false).flatten());
			}
			rows.push_back(torch::cat(f));
		}
		return torch::stack(rows).to(torch::kDouble);
	}
};
} // namespace

static double mean_offdiag(const torch::Tensor &k)
{
	int64_t n = k.size(0);
	return (k.sum().item<double>() - k.diagonal().sum().item<double>()) / (double)(n * (n - 1));
}

extern "C" int am_realism_mmd(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h,
			      double *mmd2, am_status_t *st)
{
	if (!gen_rgb || !real_rgb || !mmd2)
		return am_fail(st, AT_EINVAL, "NULL argument");
	if (n_gen < 2 || n_real < 2 || n_gen > 100000 || n_real > 100000)
		return am_fail(st, AT_EINVAL, "MMD needs 2..100000 images in each set");
	int rc = am::check_image_args(gen_rgb, w, h, st);
	if (rc < 0)
		return rc;
	try {
		torch::NoGradGuard ng;
		static const random_features feat;
		auto x = feat(gen_rgb, n_gen, w, h), y = feat(real_rgb, n_real, w, h);
		auto dyy = torch::cdist(y, y).square();
		/* Bandwidth from the real set only: the same holdout set gives the same
		 * kernel to the candidate and the champion. */
		auto iu = torch::triu_indices(n_real, n_real, 1);
		auto upper = dyy.index({iu[0], iu[1]});
		double sigma2 = upper.median().item<double>();
		if (!(sigma2 > 0))
			sigma2 = 1.0;
		auto k = [&](const torch::Tensor &d2) { return torch::exp(-d2 / sigma2); };
		auto kxx = k(torch::cdist(x, x).square()), kyy = k(dyy), kxy = k(torch::cdist(x, y).square());
		*mmd2 = mean_offdiag(kxx) + mean_offdiag(kyy) - 2.0 * kxy.mean().item<double>();
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "realism MMD");
	}
}
