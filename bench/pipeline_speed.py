"""Speed of the recognition core on this machine; prints a table.

    .venv/bin/python bench/pipeline_speed.py        (or: make bench)

Model loads are timed in fresh processes (cold: converting the published h5 and writing the cache;
warm: reading the converted cache), from after TensorFlow's import (timed on its own) until the first
face is encoded.
Detection + alignment and encoding run on the 5-celebrity photos.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOAD_SNIPPET = """
import importlib, json, sys, time
t0 = time.perf_counter()
import numpy
importlib.import_module(sys.argv[3])
from service.pipeline.runtime import load_facenet
t1 = time.perf_counter()
facenet = load_facenet(sys.argv[1], sys.argv[2], runtime=sys.argv[3])
facenet.embed(numpy.zeros((1, 160, 160, 3), numpy.float32))  # ready means the first face is encoded
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1}))
"""


def timed_load(weights: Path, cache: Path, runtime: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, str(weights), str(cache), runtime], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])


def rate(fn, items: int, repeats: int) -> float:
    fn()  # warm-up: first calls trace graphs
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return items * repeats / (time.perf_counter() - start)


def main() -> None:
    from service.config import load_config
    from service.app.photos import photos_by_person
    from service.pipeline.pipeline import build_pipeline

    config = load_config()
    rows = []
    for runtime in ("tensorflow", "openvino"):
        with tempfile.TemporaryDirectory() as cache:
            cold = timed_load(config.model.weights, Path(cache), runtime)
            warm = [timed_load(config.model.weights, Path(cache), runtime) for _ in range(3)]
        rows.append((f"import {runtime}", f"{cold['import']:.2f} s", "fresh process"))
        rows.append((f"model load, cold, {runtime}", f"{cold['load']:.2f} s",
                     "convert h5 (+ SavedModel for OpenVINO), write the caches, first encode"))
        rows.append((f"model load, warm, {runtime}", f"{np.median([w['load'] for w in warm]):.2f} s",
                     "from the caches + first encode; median of 3"))

    pipeline = build_pipeline(config)
    photos = [p for ps in photos_by_person(ROOT / "models" / "data" / "5-celebrity" / "val").values() for p in ps]
    sizes = []
    for photo in photos:
        from PIL import Image
        with Image.open(photo) as im:
            sizes.append(im.width * im.height)
    located = []
    start = time.perf_counter()
    for photo in photos:
        located += pipeline.locate(photo).faces
    det_rate = len(photos) / (time.perf_counter() - start)
    rows.append(("decode + detect + align", f"{det_rate:.1f} images/s",
                 f"{len(photos)} val photos, median {np.median(sizes) / 1e6:.2f} MP"))
    big = ROOT / "models" / "cache" / "bench-12mp.jpg"
    Image.open(photos[0]).convert("RGB").resize((4032, 3024)).save(big, quality=90)
    rows.append(("decode + detect + align, 12 MP JPEG", f"{1 / rate(lambda: pipeline.locate(big), 1, 5):.2f} s/image",
                 "4032x3024, upscaled photo"))
    big.unlink()
    crops = [face.crop for face in located]
    from service.pipeline.encoder import Encoder
    for flip in (False, True):
        encoder = Encoder(pipeline.encoder.facenet, config.model.normalization, 32, flip=flip)  # configured runtime
        for batch in (1, 32):
            chunk = (crops * (batch // len(crops) + 1))[:batch]
            r = rate(lambda: encoder.encode(chunk), batch, 40 if batch == 1 else 4)
            note = "face + mirror: 2 network passes per face" if flip else "1 network pass per face"
            rows.append((f"encode, batch {batch}, flip {'on' if flip else 'off'}", f"{r:.1f} images/s", note))

    import os
    print(f"facerec pipeline speed ({os.cpu_count()} cores, {config.model.runtime}, {config.model.normalization}, "
          f"flip {'on' if config.model.flip else 'off'} by default)")
    width = max(len(r[0]) for r in rows)
    print(f"| {'what':<{width}} | {'result':>16} | notes")
    print(f"|{'-' * (width + 2)}|{'-' * 18}|------")
    for what, result, note in rows:
        print(f"| {what:<{width}} | {result:>16} | {note}")


if __name__ == "__main__":
    main()
