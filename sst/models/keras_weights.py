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

from sst.data.readers import stored_elsewhere
from sst.errors import ConfigError, DataError, printable
from sst.fileio import check_path

KERAS_LAYER_TYPES = {"conv3d": nn.Conv3d, "batch_normalization": nn.BatchNorm3d, "dense": nn.Linear}
MAX_NAMES_BYTES = 1 << 20   # layer_names, weight_names: a few kB in the authors' files


def _keras_layers(f, path: Path) -> dict[str, list[tuple[str, dict]]]:
    """{Keras layer type: [(layer name, {weight name: h5py.Dataset}), ...] in creation order} of an open .h5
    file, checked without reading any weights: every group and dataset reached by hard links only (no
    soft or external link is followed, so no loop and no other file), every weight a dataset of real
    floating-point numbers stored in this file, every name UTF-8 text; DataError naming what is not."""
    import h5py

    model_weights = _member(f, "model_weights", path, "/model_weights")
    root = model_weights if isinstance(model_weights, h5py.Group) else f    # full model (ModelCheckpoint) or save_weights
    layer_names = _names(root, "layer_names", path)
    if layer_names is None:
        raise DataError(f"{path}: no Keras 'layer_names' attribute; expected a file written by Keras's "
                        "model.save / ModelCheckpoint or model.save_weights")
    layers: dict[str, list[tuple[int, str, dict]]] = {}
    for name in layer_names:
        group = _member(root, name, path, f"Keras layer {name}")
        if not isinstance(group, h5py.Group):
            raise DataError(f"{path}: Keras layer {printable(name)} is listed in layer_names but has no group")
        weight_names = _names(group, "weight_names", path) or []
        if not weight_names:
            continue
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
        kind, counter = match[1], int(match[2] or 0)        # tf.keras names the first 'conv3d', Keras 2.3 'conv3d_1'
        if kind not in KERAS_LAYER_TYPES:
            raise DataError(f"{path}: Keras layer {printable(name)} holds weights but is not a Conv3D, "
                            "BatchNormalization or Dense layer named by Keras (e.g. conv3d_7)")
        weights = {}
        for w in weight_names:
            dataset = _member(group, w, path, f"Keras layer {name} weight {w}")
            if not isinstance(dataset, h5py.Dataset):
                raise DataError(f"{path}: Keras layer {printable(name)} lists weight {printable(w)} but holds no such "
                                f"dataset")
            _check_dataset(dataset, path, f"Keras layer {printable(name)} weight {printable(w)}")
            weights[w.split("/")[-1].split(":")[0]] = dataset
        layers.setdefault(kind, []).append((counter, name, weights))
    return {kind: [(name, w) for _, name, w in sorted(entries)] for kind, entries in layers.items()}


def _member(group, name: str, path: Path, what: str):
    """group[name] (a path of names below `group`) reached by hard links only; None if it is not there."""
    import h5py

    obj = group
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise DataError(f"{path}: {printable(what)}: {printable(repr(name))} is not a name inside the file")
        link = obj.get(part, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):     # SoftLink, ExternalLink: elsewhere, another file, or a loop
            raise DataError(f"{path}: {printable(what)} is reached through a {type(link).__name__} "
                            f"({printable(part)}); links are not followed: store the weights themselves in the file")
        obj = obj[part]
        if not isinstance(obj, h5py.Group) and part != name.split("/")[-1]:
            return None
    return obj


def _names(obj, attribute: str, path: Path) -> list[str] | None:
    """A names attribute (layer_names, weight_names) as text; None if absent; DataError if it is not
    UTF-8 text, or declares more than MAX_NAMES_BYTES (checked before it is read)."""
    import h5py

    where = f"{path}: {printable(obj.name)} attribute {attribute}"
    if attribute not in obj.attrs:
        return None
    aid = h5py.h5a.open(obj.id, attribute.encode())
    size = aid.get_space().get_simple_extent_npoints() * aid.get_type().get_size()
    if size > MAX_NAMES_BYTES:
        raise DataError(f"{where}: {size} bytes of names declared (at most {MAX_NAMES_BYTES}); not a Keras file")
    try:
        values = np.atleast_1d(obj.attrs[attribute])
    except (UnicodeDecodeError, OSError, TypeError, ValueError) as e:
        raise DataError(f"{where}: cannot be read as names ({type(e).__name__}: {printable(str(e), 80)})") from None
    if values.size == 0:        # a layer without weights (h5py stores an empty list as float64)
        return []
    if values.dtype.kind not in "SUO" or values.ndim != 1:
        raise DataError(f"{where}: expected a list of names, got {values.dtype} {values.shape}")
    out = []
    for v in values:
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: a name that is not UTF-8 text ({printable(repr(bytes(v)), 40)}: byte "
                                f"{v[e.start]:#04x} at offset {e.start})") from None
        if not isinstance(v, str):
            raise DataError(f"{where}: expected names, got {printable(repr(v), 40)}")
        out.append(v)
    return out


def _check_dataset(dataset, path: Path, what: str) -> None:
    """A weight's metadata, before any of it is read: real floating-point numbers (float16/32/64; not complex,
    text, compound or others), stored in this file (not virtual, not in external raw files)."""
    dtype = dataset.dtype
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        kind = {"c": "complex numbers", "S": "text", "U": "text", "O": "variable-length data", "V": "a compound type"}
        raise DataError(f"{path}: {what}: expected real floating-point numbers, got {kind.get(dtype.kind, dtype)}")
    elsewhere = stored_elsewhere(dataset)
    if elsewhere:
        raise DataError(f"{path}: {what}: its data lies in other files ({elsewhere} storage), which is not read; store "
                        f"the weights themselves in the file")


def _read(dataset, path: Path, what: str) -> np.ndarray:
    """A checked weight's values (its declared shape was compared before); DataError if not all finite."""
    try:
        value = np.asarray(dataset[()])
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: {what}: cannot be read ({printable(str(e), 80)})") from None
    bad = int(np.count_nonzero(~np.isfinite(value)))
    if bad:
        raise DataError(f"{path}: {what}: {bad} NaN/Inf values (expected finite numbers)")
    return value


def load_keras_weights(net: nn.Module, path: str | Path) -> int:
    """Load an .h5 written by the authors' Keras code into an official-order `net`, in place.

    Reads, with h5py (no TensorFlow), a full-model file as their ModelCheckpoint(save_best_only=True)
    writes it (weights under /model_weights) or a model.save_weights file. Layers are matched by
    creation order, which Keras's automatic names encode as a per-type counter (conv3d_7): the
    network's Conv3d, BatchNorm3d and Linear modules, in registration order, are the authors'
    creation order (spectral stream, temporal stream, head). The first of the stem convolutions
    the authors build twice is not in their model or file, so it needs no skipping. Conv kernels
    (kH, kW, kD, in, out) become (out, in, kH, kW, kD), Dense kernels (in, out) become (out, in);
    BN gamma, beta, moving mean and variance are copied. Optimizer state is not read. Every weight's
    shape and type are checked against the network from the file's metadata before any value is
    read (a file declaring a 400 GB dataset is refused, not read), then its values must be finite.
    Returns the number of tensors loaded; any mismatch is one DataError naming the Keras layer.
    """
    import h5py

    path = Path(path)
    if net.block_order != "official":
        raise ConfigError(f"{path}: the authors' Keras model has the official block order; build the "
                          f"network with block_order = official (got {net.block_order})")
    check_path(path, "Keras weights file", DataError)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 (.h5) file ({printable(str(e), 120)})") from None
    with f:
        layers = _keras_layers(f, path)
        plan = []       # (dataset, tensor, axis order or None, what): every shape checked before any value is read
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
                    raise DataError(f"{path}: Keras layer {printable(name)} holds {sorted(map(printable, weights))}, "
                                    f"expected {sorted(targets)}")
                for key, (tensor, order) in targets.items():
                    keras_shape = tuple(tensor.shape) if order is None else \
                        tuple(tensor.shape[order.index(i)] for i in range(tensor.dim()))
                    if tuple(weights[key].shape) != keras_shape:
                        raise DataError(f"{path}: Keras layer {printable(name)} {key} has shape "
                                        f"{tuple(weights[key].shape)}, expected {keras_shape}")
                    plan.append((weights[key], tensor, order, f"Keras layer {printable(name)} {key}"))
        with torch.no_grad():
            for dataset, tensor, order, what in plan:
                value = torch.from_numpy(_read(dataset, path, what))
                tensor.copy_(value.permute(order) if order is not None else value)
    return len(plan)
