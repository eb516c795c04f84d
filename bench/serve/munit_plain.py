#!/usr/bin/env python3
"""MUNIT + PONO-MS written plainly from the papers, in PyTorch eager mode:
the serving reference bench/serve compares the shim with.

Unlike bench/train/munit_ref.py (a line-by-line twin of models/munit.cpp, so
it inherits the shim's choices), this follows the papers and their public
code the way a PyTorch user writes them:

  MUNIT (Huang et al. 2018, NVlabs networks.py): Conv2dBlock = ReflectionPad2d
    + Conv2d + norm + activation; content encoder conv7 -> n_down stride-2
    conv4 -> residual blocks with InstanceNorm2d; style encoder conv7 ->
    stride-2 conv4s -> global average pool -> conv1; MLP -> AdaIN parameters;
    decoder AdaIN residual blocks -> (nn.Upsample(2) + conv5 + LayerNorm) ->
    conv7 + tanh. AdaIN is NVlabs' batch_norm over a (1, B*C, H, W) view;
    LayerNorm is NVlabs' (per sample over C, H, W, unbiased std, eps on std).
  PONO-MS (Li et al. 2019): PONO normalises each position across channels
    after the encoder's first n_down convs; MS multiplies and adds the
    moments back after the matching decoder LayerNorm.

Same layer shapes as the shim's default config (gen_dim 64, n_downsample 2,
n_res 4, style_dim 8, mlp_dim 256, pono_from 0). Like NVlabs' code, decode()
assigns the AdaIN parameters into the modules, so concurrent decodes of one
model race on them (which style a request gets; not the cost).

    munit_plain.py infer SIZE GEN_DIM RUNS [--profile]
"""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5


class LayerNorm(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(ch))
        self.beta = nn.Parameter(torch.zeros(ch))

    def forward(self, x):
        shape = [-1] + [1] * (x.dim() - 1)
        mean = x.view(x.size(0), -1).mean(1).view(*shape)
        std = x.view(x.size(0), -1).std(1).view(*shape)
        x = (x - mean) / (std + EPS)
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class AdaIN(nn.Module):
    """Parameters come from the MLP: set .weight and .bias before forward."""

    def __init__(self, ch):
        super().__init__()
        self.ch = ch
        self.weight = self.bias = None
        self.register_buffer("running_mean", torch.zeros(ch))
        self.register_buffer("running_var", torch.ones(ch))

    def forward(self, x):
        b, c = x.size(0), x.size(1)
        rm, rv = self.running_mean.repeat(b), self.running_var.repeat(b)
        out = F.batch_norm(x.contiguous().view(1, b * c, *x.size()[2:]), rm, rv, self.weight, self.bias,
                           True, 0.1, EPS)
        return out.view(b, c, *x.size()[2:])


class PONO(nn.Module):
    def forward(self, x):
        mean = x.mean(dim=1, keepdim=True)
        std = (x.var(dim=1, keepdim=True, unbiased=False) + EPS).sqrt()
        return (x - mean) / std, mean, std


class Conv2dBlock(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, norm="none", act="relu", pono=False):
        super().__init__()
        self.pad = nn.ReflectionPad2d(pad)
        self.conv = nn.Conv2d(cin, cout, k, stride, bias=True)
        self.pono = PONO() if pono else None
        self.norm = {"in": nn.InstanceNorm2d(cout), "adain": AdaIN(cout), "ln": LayerNorm(cout),
                     "none": None}[norm]
        self.act = {"relu": nn.ReLU(inplace=True), "tanh": nn.Tanh(), "none": None}[act]

    def forward(self, x, ms=None):
        x = self.conv(self.pad(x))
        stats = None
        if self.pono is not None:
            x, mean, std = self.pono(x)
            stats = (mean, std)
        if self.norm is not None:
            x = self.norm(x)
        if ms is not None:  # MS: the encoder's moments back in
            x = x * ms[1] + ms[0]
        if self.act is not None:
            x = self.act(x)
        return x, stats


class ResBlock(nn.Module):
    def __init__(self, dim, norm):
        super().__init__()
        self.c1 = Conv2dBlock(dim, dim, 3, 1, 1, norm, "relu")
        self.c2 = Conv2dBlock(dim, dim, 3, 1, 1, norm, "none")

    def forward(self, x):
        return x + self.c2(self.c1(x)[0])[0]


class ContentEncoder(nn.Module):
    def __init__(self, n_down, n_res, cin, dim):
        super().__init__()
        self.blocks = nn.ModuleList([Conv2dBlock(cin, dim, 7, 1, 3, "in", "relu", pono=n_down > 0)])
        for i in range(n_down):
            self.blocks.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, "in", "relu", pono=i < n_down - 1))
            dim *= 2
        self.res = nn.Sequential(*[ResBlock(dim, "in") for _ in range(n_res)])
        self.out_dim = dim

    def forward(self, x):
        stats = []
        for b in self.blocks:
            x, s = b(x)
            if s is not None:
                stats.append(s)
        return self.res(x), stats


class StyleEncoder(nn.Module):
    def __init__(self, n_down, cin, dim, style_dim):
        super().__init__()
        self.blocks = nn.ModuleList([Conv2dBlock(cin, dim, 7, 1, 3)])
        for _ in range(2):
            self.blocks.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1))
            dim *= 2
        for _ in range(n_down - 2):
            self.blocks.append(Conv2dBlock(dim, dim, 4, 2, 1))
        self.out = nn.Conv2d(dim, style_dim, 1)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)[0]
        return self.out(F.adaptive_avg_pool2d(x, 1)).flatten(1)


class Decoder(nn.Module):
    def __init__(self, n_up, n_res, dim, cout):
        super().__init__()
        self.res = nn.Sequential(*[ResBlock(dim, "adain") for _ in range(n_res)])
        self.up = nn.Upsample(scale_factor=2)
        self.ups = nn.ModuleList()
        for _ in range(n_up):
            self.ups.append(Conv2dBlock(dim, dim // 2, 5, 1, 2, "ln", "relu"))
            dim //= 2
        self.last = Conv2dBlock(dim, cout, 7, 1, 3, "none", "tanh")

    def forward(self, x, stats):
        x = self.res(x)
        for i, u in enumerate(self.ups):
            x = u(self.up(x), stats[len(stats) - 1 - i])[0]
        return self.last(x)[0]


class MLP(nn.Module):
    def __init__(self, cin, cout, dim, n_blk):
        super().__init__()
        layers = [nn.Linear(cin, dim), nn.ReLU(True)]
        for _ in range(n_blk - 2):
            layers += [nn.Linear(dim, dim), nn.ReLU(True)]
        layers.append(nn.Linear(dim, cout))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class Generator(nn.Module):
    """AdaINGen with PONO-MS."""

    def __init__(self, ch, gen_dim=64, style_dim=8, n_down=2, n_res=4, mlp_dim=256):
        super().__init__()
        self.enc_style = StyleEncoder(4, ch, gen_dim, style_dim)
        self.enc_content = ContentEncoder(n_down, n_res, ch, gen_dim)
        self.dec = Decoder(n_down, n_res, self.enc_content.out_dim, ch)
        self.mlp = MLP(style_dim, self.num_adain_params(), mlp_dim, 3)

    def adains(self):
        return [m for m in self.dec.modules() if isinstance(m, AdaIN)]

    def num_adain_params(self):
        return sum(2 * m.ch for m in self.adains())

    def assign_adain_params(self, p):
        # NVlabs: mean (the bias) first, then std (the weight), per AdaIN layer.
        for m in self.adains():
            m.bias = p[:, :m.ch].contiguous().view(-1)
            m.weight = p[:, m.ch:2 * m.ch].contiguous().view(-1)
            p = p[:, 2 * m.ch:]

    def decode(self, content, stats, style):
        self.assign_adain_params(self.mlp(style))
        return self.dec(content, stats)


def build(gen_dim=64, seed=1):
    torch.manual_seed(seed)
    gen_a, gen_b = Generator(1, gen_dim), Generator(3, gen_dim)
    for g in (gen_a, gen_b):
        for m in g.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                nn.init.zeros_(m.bias)
            elif isinstance(m, LayerNorm):
                m.gamma.data.uniform_()
    return gen_a.enc_content.eval(), gen_b.eval()


def stylize(enc, gen_b, gray_u8, style_seed, size):
    """bytes (1, 1, H, W) uint8 -> (1, 3, size, size) float in [-1, 1], as the shim's stylize."""
    x = gray_u8.float().div_(127.5).sub_(1.0)
    if x.size(2) != size or x.size(3) != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    s = torch.randn(1, gen_b.mlp.model[0].in_features, generator=torch.Generator().manual_seed(style_seed))
    c, stats = enc(x)
    return gen_b.decode(c, stats, s)


def main():
    if len(sys.argv) < 5 or sys.argv[1] != "infer":
        print(__doc__, file=sys.stderr)
        return 2
    size, gen_dim, runs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    enc, gen_b = build(gen_dim)
    gray = torch.randint(0, 256, (1, 1, size, size), dtype=torch.uint8)
    with torch.inference_mode():
        stylize(enc, gen_b, gray, 0, size)
        if "--profile" in sys.argv:
            with torch.autograd.profiler.profile() as prof:
                stylize(enc, gen_b, gray, 1, size)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(runs):
            stylize(enc, gen_b, gray, i, size)
        dt, cpu = (time.perf_counter() - t0) / runs, (time.process_time() - c0) / runs
    print("impl=plain kind=infer size=%d gen_dim=%d ms_per_image=%.1f cpu_ms_per_image=%.1f threads=%d"
          % (size, gen_dim, dt * 1000, cpu * 1000, torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
