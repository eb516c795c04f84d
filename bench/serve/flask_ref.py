#!/usr/bin/env python3
"""The original-style serving stack for comparison: Flask + PyTorch eager,
serving MUNIT + PONO-MS written plainly from the papers (munit_plain.py, the
shim's default layer shapes), with the seed service's contract:

    POST /api/stylize   multipart contentImage (PNG/JPEG) + style (int)
                        -> 512x512 JPEG

Weights are freshly initialised (the cost of a forward pass does not depend
on their values). Flask's threaded development server, PIL for decoding and
encoding, torch.no_grad() — the way such a service is usually written.

    flask_ref.py --port PORT [--size 256] [--gen-dim 64] [--threads N]
"""
import argparse
import importlib.util
import io
import os
import sys

import torch
from flask import Flask, jsonify, request, send_file
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("munit_plain", os.path.join(HERE, "munit_plain.py"))
munit_plain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(munit_plain)
STYLE_DIM = 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--gen-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--single-thread", action="store_true",
                    help="Flask's server without a thread per request (requests queue)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    enc, gen_b = munit_plain.build(a.gen_dim)
    cfg = {"image_size": a.size, "style_dim": STYLE_DIM}
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="alive")

    @app.post("/api/stylize")
    def stylize():
        f = request.files.get("contentImage")
        if f is None:
            return jsonify(error="missing contentImage"), 400
        try:
            style = int(request.form.get("style", "0"))
            img = Image.open(f.stream).convert("L").resize((cfg["image_size"], cfg["image_size"]), Image.BILINEAR)
        except (ValueError, OSError) as e:
            return jsonify(error=str(e)), 422
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float()
        x = x.reshape(1, 1, cfg["image_size"], cfg["image_size"]) / 127.5 - 1
        with torch.no_grad():
            s = torch.randn(1, cfg["style_dim"], generator=torch.Generator().manual_seed(style))
            c, stats = enc(x)
            y = gen_b.decode(c, stats, s)
            y = y.add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous()
        out = Image.fromarray(y.numpy(), "RGB").resize((512, 512), Image.BILINEAR)
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=90)
        buf.seek(0)
        return send_file(buf, mimetype="image/jpeg")

    print("flask_ref: listening on http://127.0.0.1:%d" % a.port, flush=True)
    app.run(host="127.0.0.1", port=a.port, threaded=not a.single_thread)


if __name__ == "__main__":
    sys.exit(main())
