"""Our MTCNN cascade (OpenVINO networks, NumPy steps) against the mtcnn package it replaces, live.

The package's own ``detect_faces`` (TensorFlow) is the reference: on real photos both must find the
same faces at the same boxes and landmarks, and each step that we reimplemented must give what the
TensorFlow op it stands for gives. Speed is benched (bench/detection_speed.py), not asserted.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from service.pipeline import cascade, mosaic
from service.pipeline.decode import load_for_detection

# Both run the same float32 arithmetic; the networks' runtimes differ in summation order only.
# Measured on this project's photos: at most 3e-4 px and 7e-6 in confidence (bench/detection_speed.py).
PIXELS = 0.01
CONFIDENCE = 1e-4


def _photos(celebrity_dir, happy_house_dir, lfw_count: int = 0):
    paths = sorted(celebrity_dir.glob("*/*/*.jpg"))
    paths += sorted(p for p in happy_house_dir.iterdir() if p.suffix in (".jpg", ".png"))
    lfw = happy_house_dir.parent / "lfw"
    if lfw_count and lfw.is_dir():
        paths += random.Random(1).sample(sorted(lfw.glob("*/*.jpg")), lfw_count)
    return paths


def _assert_same_faces(old, new, where: str) -> None:
    assert len(new) == len(old), f"{where}: {len(old)} faces by the package, {len(new)} by ours"
    unmatched = list(new)
    for face in old:
        twin = min(unmatched, key=lambda other: np.abs(np.subtract(other.box, face.box)).max())
        unmatched.remove(twin)
        assert np.abs(np.subtract(twin.box, face.box)).max() < PIXELS, (where, face.box, twin.box)
        assert np.abs(twin.landmarks - face.landmarks).max() < PIXELS, (where, face.landmarks, twin.landmarks)
        assert abs(twin.confidence - face.confidence) < CONFIDENCE, (where, face.confidence, twin.confidence)


def test_same_faces_as_the_mtcnn_package(detector, reference_detector, celebrity_dir, happy_house_dir, config):
    # Every celebrity and Happy House photo and 40 LFW ones, searched as the service searches them.
    det = config.detection
    photos = _photos(celebrity_dir, happy_house_dir, lfw_count=40)
    assert len(photos) > 130
    found = 0
    for path in photos:
        image = load_for_detection(path, max_side=det.max_side).small
        old = reference_detector.detect(image, det.min_face, det.min_confidence)
        new = detector.detect(image, det.min_face, det.min_confidence)
        _assert_same_faces(old, new, path.name)
        found += len(new)
    assert found >= len(photos)


@pytest.mark.parametrize("corner", ["bottom_right", "top_left"])
def test_same_faces_at_the_edges_of_odd_sized_photos(detector, reference_detector, celebrity_dir, corner):
    # Faces cut by the border of photos of odd width and height: the windows that hang over the
    # right and bottom edges are where the canvas needs its edge mask (mtcnn_nets._run_pnet).
    found = 0
    for path in sorted((celebrity_dir / "val").glob("*/*.jpg"))[::5]:
        image = Image.open(path).convert("RGB")
        faces = reference_detector.detect(image, 20, 0.8)
        if not faces:
            continue
        x, y, w, h = faces[0].box
        if corner == "bottom_right":
            left, top, right, bottom = 0, 0, int(x + 0.7 * w) | 1, int(y + 0.7 * h) | 1
        else:
            left, top = int(x + 0.3 * w), int(y + 0.3 * h)
            right, bottom = image.width - 1 + (image.width - left) % 2, image.height - 1 + (image.height - top) % 2
        crop = image.crop((left, top, right, bottom))
        assert crop.width % 2 and crop.height % 2
        new = detector.detect(crop, 20, 0.6)
        _assert_same_faces(reference_detector.detect(crop, 20, 0.6), new, path.name)
        found += len(new)
    assert found  # some of the cut faces are still found (measured: 3 of 5 photos each way)


def test_detect_from_several_threads_at_once(detector, celebrity_dir):
    images = [load_for_detection(p, 800).small for p in sorted((celebrity_dir / "val").glob("*/*.jpg"))[:8]]
    alone = [detector.detect(image, 20, 0.8) for image in images]
    together: dict[int, list] = {}

    def work(i):
        together[i] = [detector.detect(images[j], 20, 0.8) for j in range(i, len(images), 4)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        for j, faces in zip(range(i, len(images), 4), together[i]):
            _assert_same_faces(alone[j], faces, f"photo {j} in thread {i}")


def test_a_network_lends_no_more_requests_than_its_runtime_runs_at_once():
    # Each request keeps buffers the size of the largest photo it saw; a compiled network with one
    # stream runs one inference at a time anyway, so more requests would only hold more memory.
    from service.pipeline.mtcnn_nets import _Requests, _rnet, load_weights
    from service.pipeline.quiet_imports import import_openvino

    compiled = import_openvino().Core().compile_model(_rnet(load_weights("rnet")), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    requests, lock, held, most = _Requests(compiled), threading.Lock(), [0], [0]

    def use():
        with requests.lent() as request:
            with lock:
                held[0] += 1
                most[0] = max(most[0], held[0])
            request.infer({0: np.zeros((4, 24, 24, 3), np.float32)})
            with lock:
                held[0] -= 1

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1
    assert len(requests._idle) == 1


def test_encodings_barely_move(detector, reference_detector, facenet, config, celebrity_dir):
    # What the service keeps of a face is its encoding, computed on the crop aligned by the landmarks.
    from service.pipeline.align import align_face
    from service.pipeline.encoder import Encoder

    encoder = Encoder(facenet, config.model.normalization, config.model.batch_size, config.model.flip)
    crops = {"old": [], "new": []}
    for path in sorted((celebrity_dir / "val").glob("*/*.jpg"))[::3]:
        image = load_for_detection(path, 800).small
        for name, made in (("old", reference_detector), ("new", detector)):
            face = made.detect(image, 20, 0.8)[0]
            crops[name].append(align_face(image, face.landmarks, size=160, margin=config.detection.margin))
    shift = np.linalg.norm(np.asarray(encoder.encode(crops["old"])) - np.asarray(encoder.encode(crops["new"])), axis=1)
    assert shift.max() < 1e-3  # the threshold that decides is 0.7


# ---- the steps, each against the TensorFlow op the package calls -------------------------------------


def test_pyramid_levels_equal_tensorflow_area_resize():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for h, w, scale in [(250, 250, 0.6), (301, 163, 0.6 * 0.709**3), (97, 800, 0.05), (40, 33, 1.7), (12, 12, 1.0)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels = cascade.normalize(image)
        expected = tf.image.resize(pixels[None], np.array([h, w]) * scale, method="area").numpy()[0]
        level = cascade.Pyramid(image, pixels).level(*cascade.level_size(h, w, scale))
        assert level.shape == expected.shape
        np.testing.assert_array_equal(level, expected)


def test_patches_equal_tensorflow_crop_and_resize():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    h, w = 157, 211
    pixels = cascade.normalize(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    x1, y1 = rng.uniform(-40, w, 60), rng.uniform(-40, h, 60)
    side = rng.uniform(3, 150, 60)
    boxes = np.stack([x1, y1, x1 + side, y1 + side, np.zeros(60)], axis=1)  # many reach past the photo
    for size in (24, 48):
        expected = tf.image.crop_and_resize(pixels[None], boxes[:, [1, 0, 3, 2]] / [h, w, h, w],
                                            np.zeros(60, np.int32), (size, size)).numpy()
        np.testing.assert_array_equal(cascade.crop_patches(pixels, boxes, size), expected)


def test_networks_equal_the_package_keras_models(detector):
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet

    from service.pipeline.mtcnn_nets import load_weights

    keras = {}
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        keras[name] = cls()
        keras[name].build()
        keras[name].set_weights(load_weights(name))
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (173, 241, 3), dtype=np.uint8)
    pixels = cascade.normalize(image)
    pyramid = cascade.Pyramid(image, pixels)
    # Odd and even sides, all on one canvas: each level's windows as if PNet ran on it alone.
    levels = [pyramid.level(*cascade.level_size(173, 241, s)) for s in cascade.pyramid_scales(241, 173, 12)]
    for level, out in zip(levels, detector._nets.pnet(levels)):
        expected = np.concatenate([t.numpy() for t in keras["pnet"](level[None])], axis=-1)[0]
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-5)
    for name, size, count in (("rnet", 24, 37), ("onet", 48, 9)):  # counts that leave a part-filled batch
        patches = rng.uniform(-1, 1, (count, size, size, 3)).astype(np.float32)
        expected = np.concatenate([t.numpy() for t in keras[name](patches)], axis=-1)
        np.testing.assert_allclose(getattr(detector._nets, name)(patches), expected, atol=1e-5)


def test_no_face_where_no_pyramid_level_fits(detector):
    # A shorter side under about 20 px leaves the package's pyramid empty: nothing to search, as there.
    for size in [(12, 12), (40, 13), (19, 300)]:
        assert detector.detect(Image.new("RGB", size, (128, 128, 128)), 20, 0.5) == []


def test_canvas_layout_keeps_levels_apart_at_even_offsets():
    for h, w in [(800, 600), (600, 800), (250, 250), (96, 96), (13, 500), (480, 31)]:
        sizes = [cascade.level_size(h, w, s) for s in cascade.pyramid_scales(w, h, 20)]
        if not sizes:
            continue
        layout = mosaic.pack(sizes)
        assert layout.height % mosaic.STEP == 0 and layout.width % mosaic.STEP == 0
        rects = [(t, left, t + lh, left + lw) for (t, left), (lh, lw) in zip(layout.places, sizes)]
        for i, (t, left, bottom, right) in enumerate(rects):
            assert t % 2 == 0 and left % 2 == 0 and bottom <= layout.height and right <= layout.width
            for t2, left2, bottom2, right2 in rects[:i]:
                assert bottom <= t2 or bottom2 <= t or right <= left2 or right2 <= left
        assert sum(lh * lw for lh, lw in sizes) > 0.6 * layout.height * layout.width


def test_detection_imports_no_tensorflow(celebrity_dir, project_root):
    photo = sorted((celebrity_dir / "val").glob("*/*.jpg"))[0]
    code = ("import sys\nfrom PIL import Image\nfrom service.pipeline.detect import FaceDetector\n"
            f"assert FaceDetector().detect(Image.open({str(photo)!r}).convert('RGB'))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mtcnn')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=project_root)
    assert done.stdout.strip() == "[]"
