"""The authors' Keras weights (.h5) into this project's network, read with h5py (no TensorFlow).

    python model.py -c SEED.ini --keras-weights best.h5 --save sst.pt
    model.load_keras_weights(net, "best.h5")       # the same, from Python (calls this module)

docs/model.md describes the file layouts read and how layers are matched.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from errors import ConfigError, DataError

KERAS_LAYER_TYPES = {"conv3d": nn.Conv3d, "batch_normalization": nn.BatchNorm3d, "dense": nn.Linear}


def _keras_layers(path: Path) -> dict[str, list[tuple[str, dict]]]:
    """{Keras layer type: [(layer name, {weight name: array}), ...] in creation order} of an .h5 file."""
    import h5py

    def text(values) -> list[str]:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 (.h5) file ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f     # full model (ModelCheckpoint) or save_weights
        if "layer_names" not in root.attrs:
            raise DataError(f"{path}: no Keras 'layer_names' attribute; expected a file written by Keras's "
                                  "model.save / ModelCheckpoint or model.save_weights")
        layers: dict[str, list[tuple[int, str, dict]]] = {}
        for name in text(root.attrs["layer_names"]):
            group = root.get(name)
            if not isinstance(group, h5py.Group):
                raise DataError(f"{path}: Keras layer {name} is listed in layer_names but has no group")
            weight_names = text(group.attrs.get("weight_names", []))
            if not weight_names:
                continue
            match = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
            kind, counter = match[1], int(match[2] or 0)        # tf.keras names the first 'conv3d', Keras 2.3 'conv3d_1'
            if kind not in KERAS_LAYER_TYPES:
                raise DataError(f"{path}: Keras layer {name} holds weights but is not a Conv3D, "
                                      "BatchNormalization or Dense layer named by Keras (e.g. conv3d_7)")
            missing = next((w for w in weight_names if not isinstance(group.get(w), h5py.Dataset)), None)
            if missing is not None:
                raise DataError(f"{path}: Keras layer {name} lists weight {missing} but holds no such dataset")
            weights = {w.split("/")[-1].split(":")[0]: np.asarray(group[w]) for w in weight_names}
            layers.setdefault(kind, []).append((counter, name, weights))
    return {kind: [(name, w) for _, name, w in sorted(entries)] for kind, entries in layers.items()}


def load_keras_weights(net: nn.Module, path: str | Path) -> int:
    """Load an .h5 written by the authors' Keras code into an official-order `net`, in place.

    Reads, with h5py (no TensorFlow), a full-model file as their ModelCheckpoint(save_best_only=True)
    writes it (weights under /model_weights) or a model.save_weights file. Layers are matched by
    creation order, which Keras's automatic names encode as a per-type counter (conv3d_7): the
    network's Conv3d, BatchNorm3d and Linear modules, in registration order, are the authors'
    creation order (spectral stream, temporal stream, head). The first of the stem convolutions
    the authors build twice is not in their model or file, so it needs no skipping. Conv kernels
    (kH, kW, kD, in, out) become (out, in, kH, kW, kD), Dense kernels (in, out) become (out, in);
    BN gamma, beta, moving mean and variance are copied. Optimizer state is not read. Returns the
    number of tensors loaded; any mismatch is one DataError naming the Keras layer.
    """
    path = Path(path)
    if net.block_order != "official":
        raise ConfigError(f"{path}: the authors' Keras model has the official block order; build the "
                                f"network with block_order = official (got {net.block_order})")
    layers = _keras_layers(path)
    loaded = 0
    with torch.no_grad():
        for kind, module_type in KERAS_LAYER_TYPES.items():
            modules = [m for m in net.modules() if isinstance(m, module_type)]
            entries = layers.get(kind, [])
            if len(entries) != len(modules):
                raise DataError(f"{path}: {len(entries)} Keras {kind} layers with weights, the network has "
                                      f"{len(modules)}; was the file written for this configuration?")
            for (name, weights), m in zip(entries, modules):
                if kind == "batch_normalization":
                    targets = {"gamma": (m.weight, None), "beta": (m.bias, None),
                               "moving_mean": (m.running_mean, None), "moving_variance": (m.running_var, None)}
                elif kind == "dense":
                    targets = {"kernel": (m.weight, (1, 0)), "bias": (m.bias, None)}
                else:
                    targets = {"kernel": (m.weight, (4, 3, 0, 1, 2))}
                if set(weights) != set(targets):
                    raise DataError(f"{path}: Keras layer {name} holds {sorted(weights)}, expected "
                                          f"{sorted(targets)}")
                for key, (tensor, order) in targets.items():
                    keras_shape = tuple(tensor.shape) if order is None else \
                        tuple(tensor.shape[order.index(i)] for i in range(tensor.dim()))
                    value = torch.from_numpy(weights[key])
                    if tuple(value.shape) != keras_shape:
                        raise DataError(f"{path}: Keras layer {name} {key} has shape {tuple(value.shape)}, "
                                              f"expected {keras_shape}")
                    tensor.copy_(value.permute(order) if order is not None else value)
                    loaded += 1
    return loaded
