#!/usr/bin/env python3
"""The model shim's MUNIT + PONO-MS in PyTorch eager mode, for comparison.

Same architecture, same initialisation scheme, same training step as
models/munit.cpp and models/am_trainer.cpp (one shared generator forward,
discriminator update, then generator update with the discriminators frozen).
Prints the same figures as bench_train.c, one line of key=value pairs:

    munit_ref.py train SIZE BATCH GEN_DIM DIS_DIM STEPS
    munit_ref.py infer SIZE GEN_DIM RUNS
"""
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, norm, act, pono=False, ms=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=True,
                              padding_mode="reflect" if pad > 0 else "zeros")
        self.norm, self.act, self.pono, self.ms = norm, act, pono, ms
        if norm == "ln":
            self.gamma = nn.Parameter(torch.ones(cout))
            self.beta = nn.Parameter(torch.zeros(cout))

    def forward(self, x, adain=None, moments=None):
        x = self.conv(x)
        stats = None
        if self.pono:
            mean = x.mean(1, keepdim=True)
            std = (x.var(1, unbiased=False, keepdim=True) + EPS).sqrt()
            x = (x - mean) / std
            stats = (mean, std)
        if self.norm == "in":
            x = F.instance_norm(x, eps=EPS)
        elif self.norm == "adain":
            b, c = x.shape[:2]
            bias = adain[:, :c].reshape(b, c, 1, 1)
            weight = adain[:, c:2 * c].reshape(b, c, 1, 1)
            x = torch.addcmul(bias, F.instance_norm(x, eps=EPS), weight)
        elif self.norm == "ln":
            flat = x.flatten(1)
            mean = flat.mean(1).reshape(-1, 1, 1, 1)
            std = flat.std(1, unbiased=True).reshape(-1, 1, 1, 1)
            x = (x - mean) / (std + EPS)
            x = torch.addcmul(self.beta.reshape(1, -1, 1, 1), x, self.gamma.reshape(1, -1, 1, 1))
        if self.ms and moments is not None:
            x = torch.addcmul(moments[0], x, moments[1])
        if self.act == "relu":
            x = torch.relu(x)
        elif self.act == "lrelu":
            x = F.leaky_relu(x, 0.2)
        elif self.act == "tanh":
            x = torch.tanh(x)
        return x, stats


class ResBlock(nn.Module):
    def __init__(self, dim, norm):
        super().__init__()
        self.dim = dim
        self.c1 = ConvBlock(dim, dim, 3, 1, 1, norm, "relu")
        self.c2 = ConvBlock(dim, dim, 3, 1, 1, norm, "none")

    def forward(self, x, adain=None):
        a1 = a2 = None
        if adain is not None:
            a1, a2 = adain[:, :2 * self.dim], adain[:, 2 * self.dim:4 * self.dim]
        y, _ = self.c1(x, a1)
        y, _ = self.c2(y, a2)
        return x + y


class ContentEncoder(nn.Module):
    def __init__(self, n_down, n_res, cin, dim, pono):
        super().__init__()
        blocks = [ConvBlock(cin, dim, 7, 1, 3, "in", "relu", pono and n_down > 0)]
        for i in range(n_down):
            blocks.append(ConvBlock(dim, 2 * dim, 4, 2, 1, "in", "relu", pono and i < n_down - 1))
            dim *= 2
        self.blocks = nn.ModuleList(blocks)
        self.res = nn.ModuleList([ResBlock(dim, "in") for _ in range(n_res)])
        self.out_dim = dim

    def forward(self, x):
        stats = []
        for b in self.blocks:
            x, s = b(x)
            if s is not None:
                stats.append(s)
        for r in self.res:
            x = r(x)
        return x, stats


class StyleEncoder(nn.Module):
    def __init__(self, n_down, cin, dim, style_dim):
        super().__init__()
        blocks = [ConvBlock(cin, dim, 7, 1, 3, "none", "relu")]
        for _ in range(2):
            blocks.append(ConvBlock(dim, 2 * dim, 4, 2, 1, "none", "relu"))
            dim *= 2
        for _ in range(n_down - 2):
            blocks.append(ConvBlock(dim, dim, 4, 2, 1, "none", "relu"))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(dim, style_dim, 1)

    def forward(self, x):
        for b in self.blocks:
            x, _ = b(x)
        return self.out(x.mean((2, 3), keepdim=True)).flatten(1)


class Decoder(nn.Module):
    def __init__(self, n_up, n_res, dim, cout, pono):
        super().__init__()
        self.pono = pono
        self.res = nn.ModuleList([ResBlock(dim, "adain") for _ in range(n_res)])
        ups = []
        for _ in range(n_up):
            ups.append(ConvBlock(dim, dim // 2, 5, 1, 2, "ln", "relu", False, pono))
            dim //= 2
        self.ups = nn.ModuleList(ups)
        self.last = ConvBlock(dim, cout, 7, 1, 3, "none", "tanh")

    def num_adain_params(self):
        return sum(4 * r.dim for r in self.res)

    def forward(self, x, stats, adain):
        off = 0
        for r in self.res:
            x = r(x, adain[:, off:off + 4 * r.dim])
            off += 4 * r.dim
        n = len(self.ups)
        for i, u in enumerate(self.ups):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            mo = stats[n - 1 - i] if self.pono and len(stats) == n else None
            x, _ = u(x, None, mo)
        return self.last(x)[0]


class MLP(nn.Module):
    def __init__(self, cin, cout, dim, n_blk):
        super().__init__()
        layers = [nn.Linear(cin, dim)] + [nn.Linear(dim, dim) for _ in range(n_blk - 2)] + [nn.Linear(dim, cout)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


class Generator(nn.Module):
    def __init__(self, cfg, ch):
        super().__init__()
        self.enc_style = StyleEncoder(4, ch, cfg["gen_dim"], cfg["style_dim"])
        self.enc_content = ContentEncoder(cfg["n_downsample"], cfg["n_res"], ch, cfg["gen_dim"], cfg["pono"])
        self.dec = Decoder(cfg["n_downsample"], cfg["n_res"], self.enc_content.out_dim, ch, cfg["pono"])
        self.mlp = MLP(cfg["style_dim"], self.dec.num_adain_params(), cfg["mlp_dim"], 3)

    def encode(self, x):
        c, stats = self.enc_content(x)
        return c, stats, self.enc_style(x)

    def decode(self, c, stats, s):
        return self.dec(c, stats, self.mlp(s))


class Discriminator(nn.Module):
    def __init__(self, cfg, ch):
        super().__init__()
        nets = []
        for _ in range(cfg["num_scales"]):
            dim = cfg["dis_dim"]
            net = [ConvBlock(ch, dim, 4, 2, 1, "none", "lrelu")]
            for _ in range(1, cfg["n_layer"]):
                net.append(ConvBlock(dim, 2 * dim, 4, 2, 1, "none", "lrelu"))
                dim *= 2
            net.append(nn.Conv2d(dim, 1, 1))
            nets.append(nn.ModuleList(net))
        self.nets = nn.ModuleList(nets)

    def forward(self, x):
        outs = []
        for j, net in enumerate(self.nets):
            y = x
            for b in net[:-1]:
                y, _ = b(y)
            outs.append(net[-1](y))
            if j + 1 < len(self.nets):
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return outs

    def dis_loss(self, fake, real):
        return sum(o0.square().mean() + (o1 - 1).square().mean() for o0, o1 in zip(self(fake), self(real)))

    def gen_loss(self, fake):
        return sum((o - 1).square().mean() for o in self(fake))


def init_weights(m, gen, kaiming):
    with torch.no_grad():
        for sub in m.modules():
            if isinstance(sub, (nn.Conv2d, nn.Linear)):
                fan_in = sub.weight[0].numel()
                sub.weight.normal_(0, math.sqrt(2.0 / fan_in) if kaiming else 0.02, generator=gen)
                sub.bias.zero_()
            elif isinstance(sub, ConvBlock) and sub.norm == "ln":
                sub.gamma.uniform_(0, 1, generator=gen)


def default_cfg(size, gen_dim, dis_dim):
    return dict(image_size=size, gen_dim=gen_dim, style_dim=8, n_downsample=2, n_res=4, mlp_dim=256, pono=True,
                dis_dim=dis_dim, n_layer=4, num_scales=3, gan_w=1.0, recon_x_w=10.0, recon_s_w=1.0, recon_c_w=1.0,
                recon_x_cyc_w=10.0, lr=1e-4, beta1=0.5, beta2=0.999, weight_decay=1e-4, seed=1)


class Trainer:
    def __init__(self, cfg, dev=torch.device("cpu")):
        self.cfg, self.dev = cfg, dev
        self.rng = torch.Generator().manual_seed(cfg["seed"])
        self.gen_a, self.gen_b = Generator(cfg, 1), Generator(cfg, 3)
        self.dis_a, self.dis_b = Discriminator(cfg, 1), Discriminator(cfg, 3)
        for m, k in ((self.gen_a, True), (self.gen_b, True), (self.dis_a, False), (self.dis_b, False)):
            init_weights(m, self.rng, k)
            m.to(dev)
        kw = dict(lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"])
        self.opt_gen = torch.optim.Adam(list(self.gen_a.parameters()) + list(self.gen_b.parameters()), **kw)
        self.opt_dis = torch.optim.Adam(list(self.dis_a.parameters()) + list(self.dis_b.parameters()), **kw)

    def step(self, x_a, x_b):
        c = self.cfg
        b = x_a.shape[0]
        s_a = torch.randn(b, c["style_dim"], generator=self.rng).to(self.dev)
        s_b = torch.randn(b, c["style_dim"], generator=self.rng).to(self.dev)
        c_a, st_a, sp_a = self.gen_a.encode(x_a)
        c_b, st_b, sp_b = self.gen_b.encode(x_b)
        x_a_recon = self.gen_a.decode(c_a, st_a, sp_a)
        x_b_recon = self.gen_b.decode(c_b, st_b, sp_b)
        x_ba = self.gen_a.decode(c_b, st_b, s_a)
        x_ab = self.gen_b.decode(c_a, st_a, s_b)

        for p in list(self.dis_a.parameters()) + list(self.dis_b.parameters()):
            p.requires_grad_(True)
        dis_total = c["gan_w"] * (self.dis_a.dis_loss(x_ba.detach(), x_a) + self.dis_b.dis_loss(x_ab.detach(), x_b))
        self.opt_dis.zero_grad(set_to_none=True)
        dis_total.backward()
        self.opt_dis.step()
        for p in list(self.dis_a.parameters()) + list(self.dis_b.parameters()):
            p.requires_grad_(False)

        rc_b, rst_b, rs_a = self.gen_a.encode(x_ba)
        rc_a, rst_a, rs_b = self.gen_b.encode(x_ab)
        l1 = lambda a, b: (a - b).abs().mean()
        cyc = 0.0
        if c["recon_x_cyc_w"] > 0:
            cyc = l1(self.gen_a.decode(rc_a, rst_a, sp_a), x_a) + l1(self.gen_b.decode(rc_b, rst_b, sp_b), x_b)
        gen_total = (c["gan_w"] * (self.dis_a.gen_loss(x_ba) + self.dis_b.gen_loss(x_ab))
                     + c["recon_x_w"] * (l1(x_a_recon, x_a) + l1(x_b_recon, x_b))
                     + c["recon_s_w"] * (l1(rs_a, s_a) + l1(rs_b, s_b))
                     + c["recon_c_w"] * (l1(rc_a, c_a) + l1(rc_b, c_b))
                     + c["recon_x_cyc_w"] * cyc)
        self.opt_gen.zero_grad(set_to_none=True)
        gen_total.backward()
        self.opt_gen.step()
        # One host copy for both figures, as the shim does.
        return torch.stack([gen_total.detach(), dis_total.detach()]).cpu()


def device():
    d = os.environ.get("BENCH_DEVICE", "auto")
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(d)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_train(size, batch, gen_dim, dis_dim, steps):
    cfg = default_cfg(size, gen_dim, dis_dim)
    dev = device()
    t = Trainer(cfg, dev)
    g = torch.Generator().manual_seed(3)
    x_a = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    x_b = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    # The shim gets host batches too: the copy to the device is part of a step.
    t.step(x_a.to(dev), x_b.to(dev))  # warm-up: allocator, kernels
    t0 = time.perf_counter()
    for _ in range(steps):
        t.step(x_a.to(dev), x_b.to(dev))
    sync(dev)
    dt = (time.perf_counter() - t0) / steps
    print("impl=pytorch kind=train size=%d batch=%d gen_dim=%d dis_dim=%d s_per_step=%.4f peak_rss_mb=%.0f device=%s"
          % (size, batch, gen_dim, dis_dim, dt, peak_rss_mb(), dev))


def bench_infer(size, gen_dim, runs):
    cfg = default_cfg(size, gen_dim, gen_dim)
    dev = device()
    t = Trainer(cfg, dev)
    enc, gen_b = t.gen_a.enc_content.eval(), t.gen_b.eval()
    gray = torch.randint(0, 256, (1, size, size, 1), dtype=torch.uint8)
    with torch.no_grad():
        def once(seed):
            # Same work as am_model_stylize: bytes in, style code, forward, bytes out.
            x = gray.to(dev).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            s = torch.randn(1, cfg["style_dim"], generator=torch.Generator().manual_seed(seed)).to(dev)
            c, stats = enc(x)
            y = gen_b.decode(c, stats, s)
            y = y.add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            return y.cpu()
        once(0)
        t0 = time.perf_counter()
        for i in range(runs):
            once(i)
        dt = (time.perf_counter() - t0) / runs
    print("impl=pytorch kind=infer size=%d gen_dim=%d ms_per_image=%.1f peak_rss_mb=%.0f device=%s"
          % (size, gen_dim, dt * 1000, peak_rss_mb(), dev))


if __name__ == "__main__":
    torch.manual_seed(0)
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    kind = sys.argv[1]
    a = [int(v) for v in sys.argv[2:]]
    if kind == "train":
        bench_train(*a)
    else:
        bench_infer(*a)
