"""Face detection: where MTCNN's time goes, and the mtcnn package's path against ours; prints tables.

    .venv/bin/python bench/detection_speed.py                 # --lfw 200 --repeats 2
    .venv/bin/python bench/detection_speed.py --no-encodings  # skip FaceNet (no model load)

Photo sets, each searched as the service searches it (``detection.*`` of config.yaml: the copy whose
longer side is at most ``max_side``, ``min_face``, ``min_confidence``):
- celebrity: the 118 5-celebrity photos (train and val), 115 to 380 pixels a side;
- happy house: the 18 Happy House photos, 96x96;
- 800 px: the 25 celebrity val photos enlarged so their longer side is 800, what a phone photo becomes
  once reduced for detection (more and larger pyramid levels);
- lfw: a fixed sample of LFW photos (250x250, seeded).

Old (the ``mtcnn`` package's ``detect_faces``, TensorFlow graphs) and new (``FaceDetector``) take turns
on each photo, in alternating order, so machine load falls on both alike. Pass 1 is each photo's first
sight, shapes new to both runtimes; later passes repeat the photos. Faces are matched by IoU; landmark
and box deviations are in pixels of the detection copy; encodings are FaceNet's on the aligned crops.
Last, fresh processes: each detector alone, and the service's whole pipeline on each, for one photo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

STEPS = ("pyramid resize", "PNet", "proposals", "NMS", "crop", "RNet", "ONet", "other")


def photo_sets(max_side: int, lfw: int) -> dict[str, list[Image.Image]]:
    from service.pipeline.decode import load_for_detection

    small = lambda path: load_for_detection(path, max_side=max_side).small  # noqa: E731
    celebrity = sorted((ROOT / "models" / "data" / "5-celebrity").glob("*/*/*.jpg"))
    sets = {"celebrity": [small(p) for p in celebrity]}
    house = SHARED / "happy_house"
    if house.is_dir():
        sets["happy house"] = [small(p) for p in sorted(house.iterdir()) if p.suffix in (".jpg", ".png")]
    enlarged = []
    for path in (p for p in celebrity if p.parts[-3] == "val"):
        image = small(path)
        ratio = max_side / max(image.size)
        enlarged.append(image.resize((round(image.width * ratio), round(image.height * ratio)), Image.Resampling.BICUBIC))
    sets[f"{max_side} px"] = enlarged
    if lfw and (SHARED / "lfw").is_dir():
        sample = random.Random(0).sample(sorted((SHARED / "lfw").glob("*/*.jpg")), lfw)
        sets["lfw"] = [small(p) for p in sample]
    return sets


class StepClock:
    """Time spent per step and per pyramid level, from step-end marks (ours) or wrapped calls (old)."""

    def __init__(self):
        self.steps: dict[str, float] = defaultdict(float)
        self.levels: dict[tuple[int, str], list[float]] = defaultdict(list)
        self._last = time.perf_counter()
        self._level = -1
        self.pnet_calls = 0  # the package's PNet calls so far in this photo, one per level

    def start(self) -> None:
        self._last, self._level = time.perf_counter(), -1

    def mark(self, step: str) -> None:  # ours: called as each step ends
        now = time.perf_counter()
        self.add(step, now - self._last)
        self._last = now

    def add(self, step: str, seconds: float) -> None:
        step = {"normalize": "other"}.get(step, step)
        self.steps[step] += seconds
        if step == "pyramid resize":
            self._level += 1
            self.levels[(self._level, step)].append(seconds)


def instrument_package(detector, clock: StepClock) -> None:
    """Wrap the mtcnn package's resize, networks, crops and NMS so that their time is counted.

    The package resizes every level before running PNet on any, so PNet calls are matched to levels by
    their order."""
    import mtcnn.stages.stage_onet as onet_mod
    import mtcnn.stages.stage_pnet as pnet_mod
    import mtcnn.stages.stage_rnet as rnet_mod
    import mtcnn.utils.images as images_mod

    def timed(fn, step, after=None):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds = time.perf_counter() - start
            if after:
                after(seconds)
            else:
                clock.add(step, seconds)
            return out
        return wrapper

    images_mod.scale_images = timed(images_mod.scale_images, "pyramid resize")
    for mod in (pnet_mod, rnet_mod, onet_mod):
        mod.smart_nms_from_bboxes = timed(mod.smart_nms_from_bboxes, "NMS")
    for mod in (rnet_mod, onet_mod):
        mod.extract_patches = timed(mod.extract_patches, "crop")
    pnet_mod.generate_bounding_box = timed(pnet_mod.generate_bounding_box, "proposals")
    pnet_mod.upscale_bboxes = timed(pnet_mod.upscale_bboxes, "proposals")
    pnet, rnet, onet = detector._mtcnn.stages

    def pnet_level(seconds):
        clock.steps["PNet"] += seconds
        clock.levels[(clock.pnet_calls, "PNet")].append(seconds)
        clock.pnet_calls += 1

    pnet._model = timed(pnet._model, "PNet", after=pnet_level)
    rnet._model = timed(rnet._model, "RNet")
    onet._model = timed(onet._model, "ONet")


def match(old, new) -> list[tuple]:
    """Greedy pairs of faces by box IoU (both lists), best overlap first."""
    pairs, used = [], set()
    scored = sorted(((iou(a.box, b.box), i, j) for i, a in enumerate(old) for j, b in enumerate(new)), reverse=True)
    taken_old = set()
    for overlap, i, j in scored:
        if i in taken_old or j in used or overlap <= 0:
            continue
        taken_old.add(i)
        used.add(j)
        pairs.append((old[i], new[j], overlap))
    return pairs


def iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax2, bx2) - max(a[0], b[0])) * max(0.0, min(ay2, by2) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def run(args) -> None:
    from service.config import load_config
    from service.pipeline.detect import FaceDetector, MtcnnPackageDetector

    det = load_config().detection
    sets = photo_sets(det.max_side, args.lfw)
    built = {"load": os.getloadavg()}
    for name, make in (("old", MtcnnPackageDetector), ("new", FaceDetector)):
        start = time.perf_counter()
        built[name] = make()
        built[name + " build"] = time.perf_counter() - start
    old, new = built["old"], built["new"]
    clocks = {"old": StepClock(), "new": StepClock()}
    instrument_package(old, clocks["old"])
    warm = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    for detector in (old, new):
        detector.detect(warm)  # first calls trace graphs / compile kernels: not what a photo costs

    def call(name, image):
        clock = clocks[name]
        clock.start()
        clock.pnet_calls = 0
        start = time.perf_counter()
        if name == "new":
            faces = new.detect(image, det.min_face, det.min_confidence, timer=clock.mark)
        else:
            faces = old.detect(image, det.min_face, det.min_confidence)
        seconds = time.perf_counter() - start
        clock.steps["total"] += seconds
        return faces, seconds

    speed, found, breakdown, levels = {}, {}, {}, {}
    for set_name, images in sets.items():
        times = {(name, p): [] for name in ("old", "new") for p in range(args.repeats)}
        for clock in clocks.values():
            clock.steps.clear()
            clock.levels.clear()
        for p in range(args.repeats):
            for i, image in enumerate(images):
                order = ("old", "new") if (i + p) % 2 == 0 else ("new", "old")
                for name in order:
                    faces, seconds = call(name, image)
                    times[(name, p)].append(seconds)
                    if p == 0:
                        found.setdefault(set_name, {}).setdefault(name, []).append(faces)
        speed[set_name] = times
        n = len(images) * args.repeats
        breakdown[set_name] = {name: {k: v / n for k, v in clock.steps.items()} for name, clock in clocks.items()}
        levels[set_name] = {name: {k: (np.mean(v), len(v)) for k, v in clock.levels.items()} for name, clock in clocks.items()}

    encodings = encoding_shift(sets, found, det) if args.encodings else {}
    report(sets, speed, found, breakdown, levels, built, encodings, args)
    if args.memory:
        memory_table()


def encoding_shift(sets, found, det) -> dict[str, tuple[float, int]]:
    """Largest L2 distance between the FaceNet encodings of the same face aligned from old and new
    landmarks (matched faces of the celebrity and Happy House sets), and the most 8-bit values that
    differ between two such aligned crops."""
    from service.config import load_config
    from service.pipeline.align import align_face
    from service.pipeline.encoder import Encoder
    from service.pipeline.runtime import INPUT_SIZE, load_facenet

    config = load_config()
    facenet = load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, config.model.runtime)
    encoder = Encoder(facenet, config.model.normalization, config.model.batch_size, config.model.flip)
    shift = {}
    for set_name in ("celebrity", "happy house"):
        if set_name not in found:
            continue
        crops_old, crops_new = [], []
        for image, old, new in zip(sets[set_name], found[set_name]["old"], found[set_name]["new"]):
            for a, b, _ in match(old, new):
                crops_old.append(align_face(image, a.landmarks, size=INPUT_SIZE, margin=det.margin))
                crops_new.append(align_face(image, b.landmarks, size=INPUT_SIZE, margin=det.margin))
        if crops_old:
            diff = np.asarray(encoder.encode(crops_old)) - np.asarray(encoder.encode(crops_new))
            values = max(int((np.asarray(a) != np.asarray(b)).sum()) for a, b in zip(crops_old, crops_new))
            shift[set_name] = (float(np.linalg.norm(diff, axis=1).max()), values)
    return shift


def report(sets, speed, found, breakdown, levels, built, encodings, args) -> None:
    print(f"facerec detection: mtcnn package (old) vs FaceDetector (new), {os.cpu_count()} cores, load average "
          f"{built['load'][0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"build: old {built['old build']:.2f} s, new {built['new build']:.2f} s")
    print("\nSpeed, ms per photo (both on each photo in turn; pass 1 = first sight of each photo)")
    print("| photos | n | pass | old p50 | new p50 | old photos/s | new photos/s | speed-up (p50) | speed-up (total) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for set_name, times in speed.items():
        for p in range(args.repeats):
            o, n = np.array(times[("old", p)]), np.array(times[("new", p)])
            print(f"| {set_name} | {len(o)} | {p + 1} | {np.median(o) * 1e3:.1f} | {np.median(n) * 1e3:.1f} | "
                  f"{len(o) / o.sum():.1f} | {len(n) / n.sum():.1f} | {np.median(o) / np.median(n):.2f}x | "
                  f"{o.sum() / n.sum():.2f}x |")

    print("\nWhere the time goes, ms per photo, mean over all passes ('other': Python, NumPy, conversions)")
    print("| photos | detector | " + " | ".join(STEPS) + " | total |")
    print("|---|---|" + "---:|" * (len(STEPS) + 1))
    for set_name, per in breakdown.items():
        for name in ("old", "new"):
            steps = dict(per[name])
            total = steps.pop("total", 0.0)
            steps["other"] = steps.get("other", 0.0) + total - sum(v for k, v in steps.items() if k != "other")
            print(f"| {set_name} | {name} | " + " | ".join(f"{steps.get(s, 0.0) * 1e3:.2f}" for s in STEPS)
                  + f" | {total * 1e3:.2f} |")

    big = next((k for k in sets if k.endswith(" px")), None)
    if big in levels:
        print(f"\nPer pyramid level, {big} set (level 0 maps a 20-pixel face onto PNet's 12, each next level "
              "is 0.709 of the one before), ms per photo that has the level; the new detector runs PNet once "
              "over all levels packed into one canvas")
        print("| level | photos | old resize | old PNet | new resize |")
        print("|---:|---:|---:|---:|---:|")
        count = max(k[0] for k in levels[big]["old"]) + 1
        for lv in range(count):
            cell = lambda who, step: levels[big][who].get((lv, step), (0.0, 0))  # noqa: E731
            print(f"| {lv} | {cell('old', 'PNet')[1] // args.repeats} | {cell('old', 'pyramid resize')[0] * 1e3:.2f} | "
                  f"{cell('old', 'PNet')[0] * 1e3:.2f} | {cell('new', 'pyramid resize')[0] * 1e3:.2f} |")
        pnet = {who: breakdown[big][who].get("PNet", 0.0) * 1e3 for who in ("old", "new")}
        print(f"| all | | | {pnet['old']:.2f} | new PNet, one call: {pnet['new']:.2f} |")

    print("\nSame faces? (pass 1; faces matched by IoU)")
    print("| photos | n | faces old | faces new | photos with another count | min IoU | max landmark px "
          "| max box corner px | max confidence diff | max encoding L2 shift | max crop values differing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for set_name, per in found.items():
        pairs = [m for a, b in zip(per["old"], per["new"]) for m in match(a, b)]
        other = sum(len(a) != len(b) for a, b in zip(per["old"], per["new"]))
        lm = max((float(np.abs(a.landmarks - b.landmarks).max()) for a, b, _ in pairs), default=0.0)
        corner = max((float(np.abs(np.array(a.box) - np.array(b.box)).max()) for a, b, _ in pairs), default=0.0)
        conf = max((abs(a.confidence - b.confidence) for a, b, _ in pairs), default=0.0)
        shift, values = (f"{encodings[set_name][0]:.2e}", f"{encodings[set_name][1]} of {160 * 160 * 3}") \
            if set_name in encodings else ("-", "-")
        print(f"| {set_name} | {len(per['old'])} | {sum(map(len, per['old']))} | {sum(map(len, per['new']))} | "
              f"{other} | {min((m[2] for m in pairs), default=1.0):.6f} | {lm:.2e} | {corner:.2e} | {conf:.2e} | {shift} "
              f"| {values} |")


MEMORY_SNIPPET = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from PIL import Image
t0 = time.perf_counter()
from service.pipeline import detect
made = getattr(detect, sys.argv[1])()
if sys.argv[4] == "pipeline":  # the service's whole pipeline (FaceNet as configured) on this detector
    from service.config import load_config
    from service.pipeline.encoder import Encoder
    from service.pipeline.pipeline import Pipeline
    from service.pipeline.runtime import load_facenet
    config = load_config()
    model = config.model
    facenet = load_facenet(model.weights, model.cache_dir, config.expected_sha256, model.runtime, model.threads)
    made = Pipeline(Encoder(facenet, model.normalization, model.batch_size, model.flip), made, config)
t1 = time.perf_counter()
if sys.argv[4] == "pipeline":
    assert made.faces(sys.argv[3])
else:
    assert made.detect(Image.open(sys.argv[3]).convert("RGB"))
t2 = time.perf_counter()
# VmHWM, not ru_maxrss: the latter survives exec and would report the bench's own peak.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"build": t1 - t0, "first": t2 - t1, "rss": peak / 1024, "tf": "tensorflow" in sys.modules}))
"""


def memory_table() -> None:
    from service.config import load_config

    photo = sorted((ROOT / "models" / "data" / "5-celebrity" / "val").glob("*/*.jpg"))[0]
    print(f"\nA fresh process: build, then one photo (median of 3 runs); 'pipeline': the service's whole "
          f"pipeline on that detector, FaceNet on {load_config().model.runtime} (its converted model cached)")
    print("| what | detector | build s | first photo s | peak RSS MB | imports TensorFlow |")
    print("|---|---|---:|---:|---:|---|")
    for what in ("detector", "pipeline"):
        for label, cls in (("old (mtcnn package)", "MtcnnPackageDetector"), ("new (FaceDetector)", "FaceDetector")):
            runs = []
            for _ in range(3):
                out = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET, cls, str(ROOT), str(photo), what],
                                     capture_output=True, text=True, check=True, cwd=ROOT,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = lambda key: float(np.median([r[key] for r in runs]))  # noqa: E731
            print(f"| {what} | {label} | {med('build'):.2f} | {med('first'):.2f} | {med('rss'):.0f} | "
                  f"{'yes' if runs[0]['tf'] else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=int, default=200, help="LFW photos in the sample (0: none)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over each set")
    parser.add_argument("--no-encodings", dest="encodings", action="store_false", help="skip the FaceNet check")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the fresh-process table")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
