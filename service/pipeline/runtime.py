"""Where FaceNet runs: the network converted once from the published weights, executed by OpenVINO or
by TensorFlow.

Keras and TensorFlow stay the source: ``network.py`` rebuilds the network from the h5 and exports a
SavedModel, cached under ``model.cache_dir`` by the weights' sha256. OpenVINO compiles that SavedModel
for the CPU (its own converted copy is cached beside it, so a start with both caches never imports
TensorFlow for the encoder). Both runtimes compute in fp32 and give the same encodings within 1e-4 L2
(``tests/test_runtime.py`` checks it on real photos), so the model id names the weights and input
handling but not the runtime: a roster encoded by one is searched with the other without re-embedding.
OpenVINO also offers inexact arithmetic, faster, under model ids of their own: bfloat16 on CPUs that have
it, and int8 (quantised by NNCF once, at conversion: ``quantize.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from service.errors import ModelError
from service.config import PRECISIONS
from service.pipeline.model_id import NNCF_VERSION, file_sha256, weights_model_id
from service.pipeline.quiet_imports import import_openvino

if TYPE_CHECKING:
    from service.pipeline.quantize import Calibration

log = logging.getLogger(__name__)

INPUT_SIZE = 160
EMBEDDING_SIZE = 128
RUNTIMES = ("openvino", "tensorflow")


@dataclass(frozen=True)
class FaceNet:
    """A loaded network and the id that every encoding it makes carries.

    ``embed`` maps a float32 batch (N, 160, 160, 3), already normalised, to raw (N, 128) outputs. It may
    be called from several threads at once.
    """

    embed: Callable[[np.ndarray], np.ndarray]
    model_id: str
    runtime: str = "tensorflow"


def load_facenet(weights: Path, cache_dir: Path | None = None, expected_sha256: str | None = None,
                 runtime: str = "tensorflow", threads: int = 0, precision: str = "fp32",
                 calibration: Calibration | None = None) -> FaceNet:
    """Load FaceNet from the published h5 for ``runtime``, through the converted caches when present.

    ``threads``: CPU threads for one inference (0: the runtime's choice, one per core). ``precision``
    (OpenVINO only, each with its own model id): "bf16" computes in bfloat16 (a CPU with bfloat16 units
    only); "int8" runs the network quantised by NNCF, made once by ``calibration`` (``quantize.py``)
    when the cache has no quantised copy yet.
    """
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown model runtime {runtime!r}; use one of {RUNTIMES}")
    if precision not in PRECISIONS or (precision != "fp32" and runtime != "openvino"):
        raise ModelError(f"precision {precision!r} is not available with the {runtime} runtime "
                         "(fp32 everywhere; bf16 and int8 with openvino)")
    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"FaceNet weights not found at {weights}; run `make models` to fetch them")
    sha = file_sha256(weights)
    if expected_sha256 and sha != expected_sha256:
        raise ModelError(f"{weights} has sha256 {sha}, expected {expected_sha256}: refusing to use it")
    if cache_dir is None:  # nothing to keep between runs: convert into a folder of our own
        cache_dir = Path(tempfile.mkdtemp(prefix="facerec-model-"))
        atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    cache_dir = Path(cache_dir)
    if runtime == "openvino":
        embed = _openvino_runner(weights, sha, cache_dir, threads, precision, calibration)
    else:
        embed = _tensorflow_runner(weights, sha, cache_dir, threads)
    return FaceNet(embed, weights_model_id(sha, precision), runtime)


def saved_model_path(cache_dir: Path, sha: str) -> Path:
    return Path(cache_dir) / f"facenet-{sha[:16]}.savedmodel"


def _saved_model(weights: Path, sha: str, cache_dir: Path, rebuild: bool = False) -> Path:
    """The cached SavedModel, converted from the h5 when absent (or when ``rebuild``)."""
    path = saved_model_path(cache_dir, sha)
    if rebuild or not (path / "saved_model.pb").is_file():
        from service.pipeline.network import export_saved_model

        export_saved_model(weights, path, replace=rebuild)
    return path


def _tensorflow_runner(weights: Path, sha: str, cache_dir: Path, threads: int) -> Callable:
    import tensorflow as tf

    if threads:
        _set_tensorflow_threads(tf, threads)
    path = _saved_model(weights, sha, cache_dir)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # a damaged or foreign cache is rebuilt, not fatal
        log.warning("converted model cache %s unreadable (%s); converting again", path, exc)
        loaded = tf.saved_model.load(str(_saved_model(weights, sha, cache_dir, rebuild=True)))
    # The closure keeps ``loaded`` alive: it owns the variables.
    return lambda batch: loaded.serve(tf.constant(batch, tf.float32)).numpy()


def _set_tensorflow_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this process: its pool is fixed now
        log.info("TensorFlow already initialised; model.threads=%d not applied to it", threads)


def _openvino_runner(weights: Path, sha: str, cache_dir: Path, threads: int, precision: str = "fp32",
                     calibration: Calibration | None = None) -> Callable:
    ov = import_openvino()

    core = ov.Core()
    # fp32 unless asked: on CPUs with bfloat16 units OpenVINO would otherwise compute in bf16 by
    # default, which moves encodings by up to 0.02 L2 (bench/precision_accuracy.py).
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        # Elsewhere OpenVINO would quietly compute in fp32 under the bf16 model id.
        raise ModelError("model.precision bf16 needs a CPU with bfloat16 units (AVX-512 BF16 or AMX); "
                         "this one has none: use fp32")
    # int8: the quantised layers run in int8 whatever the hint; f32 keeps the others exact.
    options = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = threads

    def converted(rebuild: bool = False) -> str:
        if precision == "int8":
            return str(_int8_model(core, weights, sha, cache_dir, calibration, rebuild))
        return str(_openvino_model(core, weights, sha, cache_dir, rebuild))

    try:
        compiled = core.compile_model(converted(), "CPU", options)
    except ModelError:
        raise
    except Exception as exc:  # a damaged cache (ours or the SavedModel under it) is converted again
        log.warning("OpenVINO model cache unreadable (%s); converting again", exc)
        compiled = core.compile_model(converted(rebuild=True), "CPU", options)
    local = threading.local()

    def embed(batch: np.ndarray) -> np.ndarray:
        # An infer request is not to be shared between threads; one per thread, made on first use.
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        # The output buffer belongs to the request and is overwritten by its next call: copy it out.
        return np.array(request.infer({0: np.ascontiguousarray(batch, np.float32)})[0], copy=True)

    return embed


def openvino_model_path(cache_dir: Path, sha: str) -> Path:
    """Where OpenVINO's fp32 copy is cached: named by the weights and the OpenVINO version."""
    version = import_openvino().get_version().split("-")[0]
    return Path(cache_dir) / f"facenet-{sha[:16]}.openvino-{version}"


def _openvino_model(core, weights: Path, sha: str, cache_dir: Path, rebuild: bool = False) -> Path:
    """OpenVINO's converted copy (model.xml + model.bin), made from the SavedModel when absent."""
    ov = import_openvino()
    folder = openvino_model_path(cache_dir, sha)
    xml = folder / "facenet.xml"
    if _complete(folder) and not rebuild:
        return xml
    saved = _saved_model(weights, sha, cache_dir, rebuild=rebuild)
    try:
        model = _convert(saved)
    except Exception as exc:
        log.warning("SavedModel %s did not convert (%s); exporting it again", saved, exc)
        model = _convert(_saved_model(weights, sha, cache_dir, rebuild=True))
    with writing_folder(folder, replace=rebuild) as partial:
        ov.save_model(model, str(partial / "facenet.xml"), compress_to_fp16=False)
    log.info("converted FaceNet for OpenVINO into %s", folder)
    return xml


def _int8_model(core, weights: Path, sha: str, cache_dir: Path, calibration: Calibration | None,
                rebuild: bool = False) -> Path:
    """The int8 copy quantised from OpenVINO's fp32 one, made when absent (or when ``rebuild``: the
    fp32 copy is converted again only if it does not read)."""
    if calibration is None:
        raise ModelError("model.precision int8 needs its calibration (build_pipeline gives it)")
    fp32_folder = openvino_model_path(cache_dir, sha)
    folder = fp32_folder.with_name(f"{fp32_folder.name}.int8-nncf{NNCF_VERSION}-{calibration.tag}")
    xml = folder / "facenet.xml"
    if _complete(folder) and not rebuild:
        return xml
    # Workers starting together on an empty cache quantise once: the others wait, then load its copy.
    with _locked(folder.with_name(f"{folder.name}.lock")):
        if _complete(folder) and not rebuild:
            return xml
        from service.pipeline.quantize import quantize

        fp32 = _openvino_model(core, weights, sha, cache_dir)
        try:
            network = core.read_model(str(fp32))
        except Exception as exc:
            log.warning("OpenVINO model cache unreadable (%s); converting again", exc)
            network = core.read_model(str(_openvino_model(core, weights, sha, cache_dir, rebuild=True)))
        model = quantize(network, calibration)
        with writing_folder(folder, replace=rebuild) as partial:
            import_openvino().save_model(model, str(partial / "facenet.xml"), compress_to_fp16=False)
    log.info("quantised FaceNet to int8 into %s", folder)
    return xml


def _complete(folder: Path) -> bool:
    """Whether a converted copy's two files are both in place."""
    return (folder / "facenet.xml").is_file() and (folder / "facenet.bin").is_file()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a file kept in place: removing it would let a later process lock
    a new file while another still holds the old one)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(saved: Path):
    """OpenVINO's TensorFlow front end over the SavedModel. Called directly rather than through
    ``openvino.convert_model``, whose wrapper reports usage statistics over the network: a security
    product sends nothing anywhere unasked."""
    import_openvino()
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    return frontend.convert(frontend.load(str(saved)))



@contextlib.contextmanager
def writing_folder(target: Path, replace: bool = False) -> Iterator[Path]:
    """A new empty folder to write ``target``'s contents into, moved into place when the block ends
    and removed if it fails, so a reader never sees a half-written cache.

    Two processes may convert at once (workers, or replicas sharing ``model.cache_dir``): their
    temporary folders have unique names, and whichever lands second keeps the folder already there
    (the same conversion), since it may be in use. ``replace`` (the cache was found damaged): the old
    folder is first renamed aside, then removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield partial
        if replace and target.exists():
            aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.replace(target, aside)
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.replace(partial, target)
        except OSError:
            if not target.is_dir():  # not the race above: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already when it was moved into place
