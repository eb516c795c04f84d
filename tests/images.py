"""Test images made on the spot (no files in git): a minimal PNG encoder, and
JPEG through the `vips` command (libvips-tools)."""
import os
import struct
import subprocess
import tempfile
import zlib


def _chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, pixel, channels=1):
    """pixel(x, y) -> int (gray) or (r, g, b)."""
    color_type = {1: 0, 3: 2}[channels]
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            v = pixel(x, y)
            if channels == 1:
                row.append(v)
            else:
                row.extend(v)
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 6)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def sketch(seed=0, size=256):
    """A plausible line drawing: a few strokes whose positions depend on seed."""
    a = 20 + (seed * 37) % 150
    b = 30 + (seed * 91) % 140
    c = 3 + seed % 5

    def px(x, y):
        if abs(x - a) <= 1 and 10 < y < size - 10:
            return 0
        if abs(y - b) <= 1 and 10 < x < size - 10:
            return 0
        if abs((x - y) - c * 7) <= 1:
            return 0
        return 255
    return png(size, size, px)


def bomb_header(width=10000, height=10000):
    """A PNG whose header claims width x height, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def long_png(width, height):
    """A valid 8-bit gray PNG of width x height, its first half (in reading
    order) black: a 40,000,000x1 one is ~40 KB, under the 40 MP pixel cap."""
    if height == 1:
        raw = b"\x00" + b"\x00" * (width // 2) + b"\xff" * (width - width // 2)
    else:
        black, white = b"\x00" + b"\x00" * width, b"\x00" + b"\xff" * width
        raw = black * (height // 2) + white * (height - height // 2)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def to_jpeg(png_bytes, quality=95):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.png")
        dst = os.path.join(d, "out.jpg")
        with open(src, "wb") as f:
            f.write(png_bytes)
        subprocess.run(["vips", "copy", src, dst + "[Q=%d]" % quality], check=True, capture_output=True)
        with open(dst, "rb") as f:
            return f.read()


def getpoint(png_bytes, x, y):
    """Pixel value(s) at x, y, read with `vips getpoint`."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.png")
        with open(src, "wb") as f:
            f.write(png_bytes)
        out = subprocess.run(["vips", "getpoint", src, str(x), str(y)], check=True, capture_output=True, text=True)
        return [float(v) for v in out.stdout.split()]


def png_size(png_bytes):
    assert png_bytes[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png_bytes[16:24])
