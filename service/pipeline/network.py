"""The pretrained FaceNet network (Inception-ResNet-v1, 160x160x3 in, 128 out) in Keras 3.

The published weights file was saved by Keras 2.1: its 21 ``Lambda`` scale-sum layers hold Python 3.6
bytecode that Python 3.11 cannot run, so ``keras.models.load_model`` cannot read it. We rebuild the
graph from the ``model_config`` JSON stored in the file, replacing each Lambda by :class:`ScaleSum`,
then copy every weight across by layer name. The converted network is exported as a TensorFlow
SavedModel, which ``service.pipeline.runtime`` caches (keyed by the source file's sha256) and runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np

from service.errors import ModelError
from service.pipeline.model_id import MODEL_NAME


@keras.saving.register_keras_serializable(package="facerec")
class ScaleSum(keras.layers.Layer):
    """``inputs[0] + scale * inputs[1]``: the residual merge of an Inception-ResNet block."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return inputs[0] + self.scale * inputs[1]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def export_saved_model(weights: Path, target: Path, replace: bool = False) -> None:
    """Convert the published h5 and export it as a TensorFlow SavedModel at ``target``.

    Written into a temporary folder then moved into place (``runtime.writing_folder``), so a crash
    never leaves a half-written cache. ``replace``: the folder there is damaged; replace it.
    """
    from service.pipeline.runtime import writing_folder

    model = convert_keras2_h5(weights)
    with writing_folder(target, replace=replace) as partial:
        model.export(str(partial), format="tf_saved_model", verbose=False)


def convert_keras2_h5(path: Path) -> keras.Model:
    """Rebuild the Keras 2.1 functional model stored in ``path`` and load all its weights."""
    with h5py.File(path, "r") as h5:
        config = json.loads(_text(h5.attrs["model_config"]))
        model = _build_graph(config["config"])
        _load_weights(model, h5["model_weights"])
    return model


def _short(weight_name: str) -> str:
    """``Block35_1_Conv2d_1x1/kernel:0`` -> ``kernel``, the name Keras 3 gives the variable."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _build_graph(config: dict) -> keras.Model:
    """Instantiate each layer of a Keras 2 functional config and wire it as its inbound nodes say."""
    tensors: dict[str, keras.KerasTensor] = {}
    for spec in config["layers"]:
        name, cls, cfg = spec["name"], spec["class_name"], spec["config"]
        if cls == "InputLayer":
            tensors[name] = keras.Input(shape=tuple(cfg["batch_input_shape"][1:]), name=name)
            continue
        (node,) = spec["inbound_nodes"]  # FaceNet calls every layer exactly once
        inputs = [tensors[inbound[0]] for inbound in node]
        layer = _make_layer(cls, cfg)
        tensors[name] = layer(inputs if len(inputs) > 1 else inputs[0])
    inputs = [tensors[name] for name, _, _ in config["input_layers"]]
    outputs = [tensors[name] for name, _, _ in config["output_layers"]]
    return keras.Model(inputs[0], outputs[0], name=MODEL_NAME)


def _make_layer(cls: str, cfg: dict) -> keras.layers.Layer:
    """A Keras 3 layer equal in computation to a Keras 2.1 layer config (initialisers are moot)."""
    name = cfg["name"]
    if cls == "Conv2D":
        return keras.layers.Conv2D(
            cfg["filters"], tuple(cfg["kernel_size"]), strides=tuple(cfg["strides"]),
            padding=cfg["padding"], dilation_rate=tuple(cfg["dilation_rate"]),
            activation=cfg["activation"], use_bias=cfg["use_bias"], name=name)
    if cls == "BatchNormalization":
        return keras.layers.BatchNormalization(
            axis=cfg["axis"], momentum=cfg["momentum"], epsilon=cfg["epsilon"],
            center=cfg["center"], scale=cfg["scale"], name=name)
    if cls == "Activation":
        return keras.layers.Activation(cfg["activation"], name=name)
    if cls == "MaxPooling2D":
        return keras.layers.MaxPooling2D(tuple(cfg["pool_size"]), strides=tuple(cfg["strides"]),
                                         padding=cfg["padding"], name=name)
    if cls == "Concatenate":
        return keras.layers.Concatenate(axis=cfg["axis"], name=name)
    if cls == "Lambda":
        return ScaleSum(cfg["arguments"]["scale"], name=name)
    if cls == "GlobalAveragePooling2D":
        return keras.layers.GlobalAveragePooling2D(name=name)
    if cls == "Dropout":
        return keras.layers.Dropout(cfg["rate"], name=name)
    if cls == "Dense":
        return keras.layers.Dense(cfg["units"], activation=cfg["activation"], use_bias=cfg["use_bias"], name=name)
    raise ModelError(f"layer {name}: class {cls} is not part of FaceNet; is this the right weights file?")


def _load_weights(model: keras.Model, group: h5py.Group) -> None:
    """Copy every stored weight into the layer of the same name; fail on anything left over."""
    stored = [_text(n) for n in group.attrs["layer_names"]]
    layers = {layer.name: layer for layer in model.layers}
    missing = [name for name in stored if name not in layers]
    if missing:
        raise ModelError(f"weights for layers absent from the rebuilt graph: {missing[:5]}")
    loaded = 0
    for name in stored:
        weight_names = [_text(n) for n in group[name].attrs["weight_names"]]
        values = [np.asarray(group[name][w]) for w in weight_names]
        target = layers[name].weights
        if len(values) != len(target):
            raise ModelError(f"layer {name}: file has {len(values)} weights, network has {len(target)}")
        by_name = {_short(w): v for w, v in zip(weight_names, values)}
        for variable in target:
            value = by_name.get(variable.name)
            if value is None or tuple(variable.shape) != value.shape:
                raise ModelError(f"layer {name}: no weight of shape {tuple(variable.shape)} named "
                                 f"{variable.name} in the file (it has {sorted(by_name)})")
            variable.assign(value)
            loaded += 1
    expected = sum(len(layer.weights) for layer in model.layers)
    if loaded != expected:
        raise ModelError(f"loaded {loaded} weights but the network has {expected}")
