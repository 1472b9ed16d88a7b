#!/usr/bin/env python3
"""The Python side of the data benchmarks, on the same fixtures and the same
number of processes as tuneflow's threads: PIL decode + centre crop +
resize for images, kaldi-native-fbank (+ mean normalisation) for speech.

Usage: bench_data.py FIXTURES_DIR [PROCESSES]
"""
import json
import multiprocessing as mp
import os
import sys
import time

import kaldi_native_fbank as knf
import numpy as np
from PIL import Image


def fbank(path):
    with open(path, "rb") as f:
        raw = f.read()
    samples = np.frombuffer(raw[44:], dtype="<i2").astype(np.float32)
    o = knf.FbankOptions()
    o.frame_opts.dither = 0
    o.frame_opts.window_type = "povey"
    o.mel_opts.num_bins = 40
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(16000, samples.tolist())
    fb.input_finished()
    feats = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    return (feats - feats.mean(axis=0)).astype(np.float32).nbytes


def image(args):
    path, size = args
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img).transpose(2, 0, 1).copy().nbytes


def files(root, ext):
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.join(d, n) for n in names if n.endswith(ext)]
    return sorted(out)


def main():
    root = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    wavs = files(os.path.join(root, "speakers/pretrain/wav"), ".wav")
    pngs = files(os.path.join(root, "digits/images"), ".png")
    with mp.Pool(procs) as pool:
        t = time.perf_counter()
        pool.map(fbank, wavs, chunksize=16)
        secs = time.perf_counter() - t
        print(json.dumps({"bench": "python-knf-fbank-40", "utterances": len(wavs), "utterances_per_s": len(wavs) / secs, "processes": procs}))
        for size in (28, 112):
            t = time.perf_counter()
            pool.map(image, [(p, size) for p in pngs], chunksize=64)
            secs = time.perf_counter() - t
            print(json.dumps({"bench": f"python-pil-decode-resize-{size}", "images": len(pngs), "images_per_s": len(pngs) / secs}))


if __name__ == "__main__":
    main()
