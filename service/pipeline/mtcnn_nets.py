"""MTCNN's three networks (PNet, RNet, ONet) run by OpenVINO, on the weights the ``mtcnn`` package ships.

The graphs are built here layer by layer from the package's weight lists, so neither TensorFlow nor
the package's Keras models are loaded: the package is imported by neither (its ``__init__`` imports
TensorFlow), only its weight files are read. OpenVINO runs the three in fp32 within about 1e-7 of the
package's Keras models (checked in ``tests/test_detect_cascade.py``). PNet runs once per photo, on
all pyramid levels packed into one canvas (``mosaic.py``), instead of once per level.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from pathlib import Path

import numpy as np

from service.errors import ModelError
from service.pipeline.cascade import Networks
from service.pipeline.mosaic import pack
from service.pipeline.quiet_imports import import_openvino

# Weight shapes in the lists the package stores (Keras order: conv kernels HWIO, then bias, then
# PReLU slopes; dense kernels in x out). A package release with other weights is refused, not guessed.
_SHAPES = {
    "pnet": [(3, 3, 3, 10), (10,), (1, 1, 10), (3, 3, 10, 16), (16,), (1, 1, 16), (3, 3, 16, 32), (32,),
             (1, 1, 32), (1, 1, 32, 4), (4,), (1, 1, 32, 2), (2,)],
    "rnet": [(3, 3, 3, 28), (28,), (1, 1, 28), (3, 3, 28, 48), (48,), (1, 1, 48), (2, 2, 48, 64), (64,),
             (1, 1, 64), (576, 128), (128,), (128,), (128, 4), (4,), (128, 2), (2,)],
    "onet": [(3, 3, 3, 32), (32,), (1, 1, 32), (3, 3, 32, 64), (64,), (1, 1, 64), (3, 3, 64, 64), (64,),
             (1, 1, 64), (2, 2, 64, 128), (128,), (1, 1, 128), (1152, 256), (256,), (256,), (256, 4), (4,),
             (256, 10), (10,), (256, 2), (2,)],
}


def weights_folder() -> Path:
    """Where the installed ``mtcnn`` package keeps its weight files (found without importing it)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the mtcnn package is not installed: the detector reads its pretrained weights "
                         "(pip install -r requirements.lock)")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"


def load_weights(name: str) -> list[np.ndarray]:
    import joblib

    path = weights_folder() / f"{name}.lz4"
    try:
        weights = [np.asarray(w, dtype=np.float32) for w in joblib.load(path)]
    except Exception as exc:  # noqa: BLE001 - missing, truncated or foreign file: one clear error
        raise ModelError(f"cannot read MTCNN weights {path}: {exc}") from None
    if [w.shape for w in weights] != _SHAPES[name]:
        raise ModelError(f"{path} does not hold the MTCNN {name} weights this detector was built for")
    return weights


def load_networks(threads: int = 0) -> Networks:
    """Compile the three networks for the CPU (``threads``: 0 lets OpenVINO use every core)."""
    ov = import_openvino()
    core = ov.Core()
    # fp32 throughout: on CPUs with bfloat16 units OpenVINO would otherwise compute in bf16, which
    # moves PNet's face probabilities by up to 0.03 and so which windows pass its threshold.
    options = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = threads
    pnet, rnet, onet = (_Requests(core.compile_model(make(load_weights(name)), "CPU", options))
                        for name, make in (("pnet", _pnet), ("rnet", _rnet), ("onet", _onet)))
    return Networks(pnet=lambda levels: _run_pnet(pnet, levels),
                    rnet=lambda patches: _run_batches(rnet, patches, RNET_BATCH),
                    onet=lambda patches: _run_batches(onet, patches, ONET_BATCH))


# OpenVINO prepares its kernels for each new input shape: measured on 2 cores, a first call at a new
# shape cost 3 to 30 ms more than the calls after it (more for larger shapes). Photos come in every
# size, so inputs keep to few shapes that the runtime soon holds: the pyramid's canvas is a multiple
# of 32 pixels a side (mosaic.py), and patches go in fixed batches, the last one padded. Small
# batches also measured fastest, their activations staying in cache: RNet on 400 patches took 12 ms
# in batches of 8 to 32, 20 ms in batches of 256 (TensorFlow, all at once: 23 ms). Running two
# batches at once on one core each (OpenVINO's throughput mode) measured no faster than this.
RNET_BATCH, ONET_BATCH = 16, 4


class _Requests:
    """Infer requests of one compiled network, lent to one caller at a time (the server detects in
    several threads). A request keeps the buffers of the largest input it ran (measured: each
    detection of 800-pixel photos running at once held about 45 MB more), and the runtime runs only
    as many at once as it has streams; so there are never more requests than that (a caller waits
    for one, as it would inside the runtime), each made when first needed and reused after."""

    def __init__(self, compiled):
        self._compiled = compiled
        self._idle: list = []
        self._lock = threading.Lock()
        self._free = threading.Semaphore(max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))

    @contextlib.contextmanager
    def lent(self):
        with self._free:
            with self._lock:
                request = self._idle.pop() if self._idle else None
            if request is None:
                request = self._compiled.create_infer_request()
            try:
                yield request
            finally:
                with self._lock:
                    self._idle.append(request)


def _run_pnet(requests: _Requests, levels: list[np.ndarray]) -> list[np.ndarray]:
    if not levels:
        return []
    layout = pack([level.shape[:2] for level in levels])
    canvas = np.zeros((1, layout.height, layout.width, 3), np.float32)
    # On a level of odd width the last 2x2 pooling window of the first layer holds one real column
    # and one that Keras pads and ignores; in the canvas that column is computed from whatever lies
    # beside the level. Adding -1e30 there lets the real one win the max, as alone. Likewise for an
    # odd height. Every other window that reaches past its level is not read.
    edge = np.zeros((1, 1, layout.height - 2, layout.width - 2), np.float32)
    for (top, left), level in zip(layout.places, levels):
        h, w = level.shape[:2]
        canvas[0, top:top + h, left:left + w] = level
        if w % 2:
            edge[0, 0, top:top + h - 1, left + w - 2] = -1e30
        if h % 2:
            edge[0, 0, top + h - 2, left:left + w - 1] = -1e30
    with requests.lent() as request:
        out = request.infer({0: canvas, 1: edge})[0][0]
        # Each level's own windows; copied, as the output buffer is the request's and reused.
        return [np.array(out[top // 2:top // 2 + (level.shape[0] - 1) // 2 - 4,
                             left // 2:left // 2 + (level.shape[1] - 1) // 2 - 4], copy=True)
                for (top, left), level in zip(layout.places, levels)]


def _run_batches(requests: _Requests, patches: np.ndarray, batch: int) -> np.ndarray:
    outs = []
    with requests.lent() as request:
        for start in range(0, len(patches), batch):
            chunk = patches[start:start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
            # Copied: the output buffer is the request's own and its next batch overwrites it.
            outs.append(np.array(request.infer({0: chunk})[0][: len(patches) - start], copy=True))
    return np.concatenate(outs)


# ---- the graphs, NCHW inside, NHWC in and out as the package's Keras models ---------------------

def _ops():
    import_openvino()
    import openvino.opset13 as ops

    return ops


def _const(array: np.ndarray):
    return _ops().constant(np.ascontiguousarray(array, dtype=np.float32))


def _order(node, order):
    return _ops().transpose(node, _ops().constant(np.array(order, dtype=np.int64)))


def _conv_prelu(x, kernel, bias, slope):
    ops = _ops()
    y = ops.convolution(x, _const(kernel.transpose(3, 2, 0, 1)), [1, 1], [0, 0], [0, 0], [1, 1])
    y = ops.add(y, _const(bias.reshape(1, -1, 1, 1)))
    return y if slope is None else ops.prelu(y, _const(slope.reshape(-1)))


def _pool(x, size: int, same: bool):
    # Keras "same" pads at the end only, and only as far as the last window needs: OpenVINO's same_upper.
    return _ops().max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [size, size],
                           "ceil" if same else "floor", "same_upper" if same else "valid").output(0)


def _dense(x, kernel, bias, slope=None):
    ops = _ops()
    y = ops.add(ops.matmul(x, _const(kernel), False, False), _const(bias))
    return y if slope is None else ops.prelu(y, _const(slope))


def _flatten(x):
    # The Keras models permute (H, W) before flattening, so the dense weights expect W-major order.
    return _ops().reshape(_order(x, [0, 3, 2, 1]), _ops().constant(np.array([0, -1], dtype=np.int64)), True)


def _model(output, inputs, name):
    return import_openvino().Model([output], inputs, name)


def _pnet(w):
    ops = _ops()
    x = ops.parameter([1, -1, -1, 3], np.float32, name="image")
    # Added to the first layer's output: 0, or -1e30 at the odd edges of the levels on the canvas
    # (see _run_pnet). An addition keeps OpenVINO's fused, blocked layout; a select there measured
    # twice the network's time.
    edge = ops.parameter([1, 1, -1, -1], np.float32, name="edge")
    y = _pool(ops.add(_conv_prelu(_order(x, [0, 3, 1, 2]), *w[0:3]), edge), 2, same=True)
    y = _conv_prelu(_conv_prelu(y, *w[3:6]), *w[6:9])
    out = ops.concat([_conv_prelu(y, *w[9:11], None), ops.softmax(_conv_prelu(y, *w[11:13], None), 1)], 1)
    return _model(_order(out, [0, 2, 3, 1]), [x, edge], "pnet")


def _rnet(w):
    ops = _ops()
    x = ops.parameter([-1, 24, 24, 3], np.float32, name="patches")
    y = _pool(_conv_prelu(_order(x, [0, 3, 1, 2]), *w[0:3]), 3, same=True)
    y = _pool(_conv_prelu(y, *w[3:6]), 3, same=False)
    y = _dense(_flatten(_conv_prelu(y, *w[6:9])), *w[9:12])
    return _model(ops.concat([_dense(y, *w[12:14]), ops.softmax(_dense(y, *w[14:16]), 1)], 1), [x], "rnet")


def _onet(w):
    ops = _ops()
    x = ops.parameter([-1, 48, 48, 3], np.float32, name="patches")
    y = _pool(_conv_prelu(_order(x, [0, 3, 1, 2]), *w[0:3]), 3, same=True)
    y = _pool(_conv_prelu(y, *w[3:6]), 3, same=False)
    y = _pool(_conv_prelu(y, *w[6:9]), 2, same=True)
    y = _dense(_flatten(_conv_prelu(y, *w[9:12])), *w[12:15])
    heads = [_dense(y, *w[15:17]), _dense(y, *w[17:19]), ops.softmax(_dense(y, *w[19:21]), 1)]
    return _model(ops.concat(heads, 1), [x], "onet")
