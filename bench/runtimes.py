"""FaceNet on this CPU under each runtime that can execute it, side by side in one run; prints a table.

    .venv/bin/python bench/runtimes.py [--rounds 5]

Every runtime runs the same network, converted from the same cached SavedModel, on the same real
aligned faces (the 5-celebrity photos, standardised as the service does). Rounds alternate between
runtimes so that whatever else the machine does weighs on each alike; the table gives the median
round. "max L2 vs TF" is the largest distance between a face's unit encoding from that runtime and
from TensorFlow: the service may switch runtimes without re-embedding only where it is below 1e-4.

The bf16 and int8 rows are inexact by design (``model.precision``; their accuracy on LFW is measured
by bench/precision_accuracy.py): their "max L2 vs TF" says how far, not whether they may be swapped in.
ONNX Runtime needs tf2onnx and onnxruntime, which the service does not use: `pip install -r
bench/requirements-runtimes.txt` adds them; without them that row says so. LiteRT is TensorFlow's own
interpreter (``tf.lite``, XNNPACK kernels).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from service.config import load_config
    from service.pipeline.encoder import normalize_pixels
    from service.pipeline.model_id import file_sha256
    from service.pipeline.pipeline import build_pipeline
    from service.pipeline.runtime import openvino_model_path, saved_model_path

    config = load_config(model__runtime="tensorflow")
    pipeline = build_pipeline(config)
    photos = sorted((ROOT / "models" / "data" / "5-celebrity").glob("*/*/*"))
    crops = [f.crop for p in photos for f in pipeline.locate(p).faces[:1]]
    faces = normalize_pixels(np.stack([np.asarray(c) for c in crops]), config.model.normalization)
    sha = file_sha256(config.model.weights)
    saved, fp32 = saved_model_path(config.model.cache_dir, sha), openvino_model_path(config.model.cache_dir, sha)

    runners = {"tensorflow (SavedModel)": _plain(config, "tensorflow")}
    runners["tensorflow + XLA (jit_compile)"] = _tensorflow_xla(saved)
    runners["openvino fp32, latency hint"] = _plain(config, "openvino")
    runners["openvino fp32, throughput hint"] = _openvino(fp32, "THROUGHPUT")
    runners["openvino bf16 (model.precision: bf16)"] = _bf16(fp32)
    runners["openvino int8 (model.precision: int8)"] = _int8(config, pipeline.detector)
    runners["onnx runtime"] = _onnx(saved, config)
    runners["litert / xnnpack"] = _litert(saved, config)

    reference = _unit(runners["tensorflow (SavedModel)"](faces))
    errors = {}
    for name, run in runners.items():
        if isinstance(run, str):
            continue
        try:
            errors[name] = float(np.linalg.norm(_unit(_in_batches(run, faces, 32)) - reference, axis=1).max())
        except Exception as exc:  # a runtime that cannot run the network is a row, not a crash
            runners[name] = f"failed: {str(exc).splitlines()[0][:80]}"

    rates = {name: {1: [], 32: []} for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            if isinstance(run, str):
                continue
            for batch in (1, 32):
                rates[name][batch].append(_rate(run, faces, batch))

    base = {b: statistics.median(rates["tensorflow (SavedModel)"][b]) for b in (1, 32)}
    print(f"FaceNet runtimes: {os.cpu_count()} cores, {_cpu()}, {len(faces)} real faces, "
          f"median of {args.rounds} alternating rounds")
    print("| runtime | batch 1 faces/s | vs TF | batch 32 faces/s | vs TF | max L2 vs TF |")
    print("|---------|----------------:|------:|-----------------:|------:|-------------:|")
    for name, run in runners.items():
        if isinstance(run, str):
            print(f"| {name} | {run} | | | | |")
            continue
        one, many = (statistics.median(rates[name][b]) for b in (1, 32))
        print(f"| {name} | {one:.1f} | {one / base[1]:.2f}x | {many:.1f} | {many / base[32]:.2f}x | "
              f"{errors[name]:.1e} |")
    return 0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _in_batches(run, faces: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([run(faces[i:i + size]) for i in range(0, len(faces), size)])


def _rate(run, faces: np.ndarray, batch: int) -> float:
    """Faces/s over about one second of calls at this batch size (after one untimed call)."""
    chunks = [faces[i:i + batch] for i in range(0, len(faces) - batch + 1, batch)]
    run(chunks[0])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0 or done < 2 * batch:
        chunk = chunks[(done // batch) % len(chunks)]
        run(chunk)
        done += len(chunk)
    return done / (time.perf_counter() - start)


def _plain(config, runtime: str):
    from service.pipeline.runtime import load_facenet

    return load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, runtime).embed


def _bf16(fp32: Path):
    from service.pipeline.quiet_imports import import_openvino

    if "BF16" not in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "not on this CPU (no bfloat16 units: OpenVINO would run fp32 under the name)"
    return _openvino(fp32, "LATENCY", precision="bf16")


def _int8(config, detector):
    """The service's int8 network (quantised on first use, then from the cache)."""
    from service.pipeline.pipeline import int8_calibration
    from service.pipeline.runtime import load_facenet

    return load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, "openvino",
                        precision="int8", calibration=int8_calibration(config, detector)).embed


def _tensorflow_xla(saved: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved))
    compiled = tf.function(lambda x: loaded.serve(x), jit_compile=True)
    return lambda batch: compiled(tf.constant(batch, tf.float32)).numpy()


def _openvino(fp32: Path, hint: str, precision: str = "f32"):
    """OpenVINO's cached fp32 copy (``fp32``, made when the service first loaded it) with other options."""
    from service.pipeline.quiet_imports import import_openvino

    core = import_openvino().Core()
    request = core.compile_model(str(fp32 / "facenet.xml"), "CPU", {"PERFORMANCE_HINT": hint,
                                                   "INFERENCE_PRECISION_HINT": precision}).create_infer_request()
    return lambda batch: np.array(request.infer({0: batch})[0])


def _onnx(saved: Path, config):
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401  (the converter, run below in its own process)
    except ImportError:
        return "not installed (pip install -r bench/requirements-runtimes.txt)"
    target = config.model.cache_dir / f"{saved.name.removesuffix('.savedmodel')}.onnx"
    if not target.is_file():
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--signature_def",
                        "serve", "--opset", "17", "--output", str(target)], check=True, capture_output=True)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _litert(saved: Path, config):
    import tensorflow as tf

    target = config.model.cache_dir / f"{saved.name.removesuffix('.savedmodel')}.tflite"
    if not target.is_file():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serve"])
        target.write_bytes(converter.convert())
    interpreters = {}

    def run(batch):
        n = len(batch)
        if n not in interpreters:  # one interpreter per batch size: resizing replans the graph
            interpreter = tf.lite.Interpreter(model_path=str(target), num_threads=os.cpu_count())
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [n, 160, 160, 3])
            interpreter.allocate_tensors()
            interpreters[n] = interpreter
        interpreter = interpreters[n]
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

    return run


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
