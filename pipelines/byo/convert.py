"""A user's converter: class folders of 8-bit grayscale PNGs -> a tuneflow
dataset artifact, written with the helper in python/ (numpy only).

    convert.py IMAGES CLASSES OUT      (CLASSES like `0-4`)
"""
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from tuneflow_artifacts import write_dataset  # noqa: E402


def read_png(path):
    """An 8-bit grayscale, non-interlaced PNG as an H x W uint8 array."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 0, 0):
                raise ValueError(f"{path}: only 8-bit grayscale, non-interlaced PNGs")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)
    out = np.zeros((h, w), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        up = out[y - 1] if y else np.zeros(w, np.int32)
        for x in range(w):
            a = out[y, x - 1] if x else 0
            b, c = up[x], (up[x - 1] if x else 0)
            p = {0: 0, 1: a, 2: b, 3: (a + b) // 2}.get(int(f))
            if f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[y, x] = (line[x] + p) & 0xFF
    return out.astype(np.uint8)


def main():
    images, span, out = sys.argv[1:4]
    lo, hi = (int(x) for x in span.split("-"))
    classes = [str(c) for c in range(lo, hi + 1)]
    items = []
    for label, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(images, c))):
            img = read_png(os.path.join(images, c, name))
            items.append((f"{c}/{name}", label, img[None]))  # 1 x H x W
    write_dataset(out, items, kind="image", classes=classes)
    print(f"{len(items)} images of {len(classes)} classes -> {out}")


if __name__ == "__main__":
    main()
