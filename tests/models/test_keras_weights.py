"""sst/models/keras_weights.py (model.load_keras_weights): the authors' Keras .h5 into the network, checked before reading."""
import json
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

import model
from conftest import ROOT, keras_layers, model_inputs, randomised, run_cli, small, write_ini, write_keras_h5
from sst import config, errors


@pytest.mark.parametrize("full_model, first_counter", [(True, 1), (False, 1), (True, 0)])
def test_load_keras_weights(cfg, tmp_path, full_model, first_counter):
    """A Keras-layout file of one network loads into a fresh one: same state dict, same outputs."""
    c = small(cfg, block_order="official")
    torch.manual_seed(0)
    source = randomised(model.build_model(c)).eval()
    path = tmp_path / "weights.h5"
    write_keras_h5(path, keras_layers(source, first_counter), full_model)
    target = model.build_model(c).eval()
    loaded = model.load_keras_weights(target, path)
    assert loaded == sum(p.numel() > 0 for p in source.parameters()) + 2 * sum(
        isinstance(m, nn.BatchNorm3d) for m in source.modules())
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        if "num_batches_tracked" not in name:
            assert torch.equal(a, b), name
    x = model_inputs(c, 2)
    with torch.no_grad():
        torch.testing.assert_close(target(*x), source(*x), rtol=0, atol=0)


def test_module_order_is_the_authors_keras_creation_order(cfg, tmp_path):
    """model.py's official-order network at SEED.ini sizes against the authors' model as tf-keras 2.21
    builds it (tests/keras_official_seed_layers.json: written by bench/keras_parity.py --layer-list from
    its tf-keras re-statement of their model/model.py, not from model.py): the same Keras names, in the
    same creation order, with the same weight shapes; and a file laid out so loads every tensor.
    keras_layers(net) alone, as the tests above use it, follows model.py's own order."""
    listed = json.loads((ROOT / "tests" / "keras_official_seed_layers.json").read_text())
    assert listed["config"] == "SEED.ini"
    net = model.build_model(cfg.replace(model={"block_order": "official"}))

    def creation(name: str) -> tuple[str, int]:
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
        return match[1], int(match[2] or 0)

    ours = sorted(((name, {w: list(v.shape) for w, v in weights}) for name, weights in keras_layers(net, 0)),
                  key=lambda layer: creation(layer[0]))
    assert ours == [(layer["name"], layer["weights"]) for layer in listed["layers"]]
    rng = np.random.default_rng(0)
    layers = [(layer["name"], [(w, rng.uniform(0.5, 1.5, shape).astype(np.float32))
                               for w, shape in layer["weights"].items()]) for layer in listed["layers"]]
    write_keras_h5(tmp_path / "authors.h5", layers, full_model=True)
    assert model.load_keras_weights(model.build_model(cfg.replace(model={"block_order": "official"})),
                                    tmp_path / "authors.h5") == 219


def test_keras_weights_mismatch_names_the_layer(cfg, tmp_path):
    c = small(cfg, block_order="official")
    net = model.build_model(c)
    layers = keras_layers(net)
    name, weights = layers[5]
    layers[5] = (name, [(w, v[..., :-1]) if w == "kernel" else (w, v) for w, v in weights])   # one output too few
    write_keras_h5(tmp_path / "bad.h5", layers, full_model=True)
    with pytest.raises(errors.DataError, match=f"Keras layer {name} kernel has shape .* expected"):
        model.load_keras_weights(model.build_model(c), tmp_path / "bad.h5")
    write_keras_h5(tmp_path / "short.h5", keras_layers(net)[:-1], full_model=False)   # the last Dense missing
    with pytest.raises(errors.DataError, match="dense layers with weights, the network has"):
        model.load_keras_weights(model.build_model(c), tmp_path / "short.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(errors.DataError, match="text.h5: not a readable HDF5"):
        model.load_keras_weights(model.build_model(c), tmp_path / "text.h5")
    with pytest.raises(errors.ConfigError, match="official"):
        model.load_keras_weights(model.build_model(small(cfg)), tmp_path / "short.h5")


def _replace(f, path: str, **dataset):
    del f[path]
    f.create_dataset(path, **dataset)


def _set_one(f, path: str, value: float):
    data = f[path][()]
    data.flat[0] = value
    f[path][...] = data


def _external_storage(f, path: str, tmp_path):
    shape, raw = f[path].shape, tmp_path / "raw.bin"
    np.zeros(shape, np.float32).tofile(raw)
    del f[path]
    f.create_dataset(path, shape=shape, dtype="f4", external=[(str(raw), 0, raw.stat().st_size)])


def _virtual(f, path: str, tmp_path):
    import h5py

    shape = f[path].shape
    with h5py.File(tmp_path / "source.h5", "w") as source:
        source.create_dataset("x", data=np.zeros(shape, np.float32))
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[...] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=shape)
    del f[path]
    f.create_virtual_dataset(path, layout)


def _names(f, group: str, attribute: str, change):
    """Rewrite a names attribute as bytes, change(name) applied to each (bytes)."""
    f[group].attrs[attribute] = np.array([change(n.encode() if isinstance(n, str) else n)
                                          for n in f[group].attrs[attribute]], dtype="S")


# One bad Keras file of each kind; `layer` is the first conv3d layer's group, `kernel` its kernel dataset.
# Each is refused with one DataError before any weight is read (the shapes and types come from metadata).
KERAS_DAMAGE = {
    "complex-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=f[kernel][()].astype(np.complex64)),
                       "kernel:0: expected real floating-point numbers, got complex numbers"),
    "text-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=np.array([b"weights"] * 3)),
                    "kernel:0: expected real floating-point numbers, got text"),
    "compound-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])),
                        "kernel:0: expected real floating-point numbers, got a compound type"),
    "integer-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=f[kernel][()].astype(np.int32)),
                       "kernel:0: expected real floating-point numbers, got int32"),
    "nan-in-a-kernel": (lambda f, layer, kernel, tmp: _set_one(f, kernel, np.nan), "kernel: 1 NaN/Inf values"),
    "inf-in-a-kernel": (lambda f, layer, kernel, tmp: _set_one(f, kernel, -np.inf), "kernel: 1 NaN/Inf values"),
    "a-declared-400-GB-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, shape=(10 ** 5, 10 ** 5, 10),
                                                                     dtype="f4", chunks=(1, 1, 10)),
                                 "kernel has shape (100000, 100000, 10), expected"),
    "layer-a-soft-link": (lambda f, layer, kernel, tmp: (f.move(layer, layer + "_moved"),
                                                         f.__setitem__(layer, __import__("h5py").SoftLink("/" + layer + "_moved"))),
                          "is reached through a SoftLink"),
    "layer-a-soft-link-loop": (lambda f, layer, kernel, tmp: (f.__delitem__(layer),
                                                              f.__setitem__(layer, __import__("h5py").SoftLink("/" + layer))),
                               "is reached through a SoftLink"),
    "kernel-an-external-link": (lambda f, layer, kernel, tmp: (f.__delitem__(kernel), f.__setitem__(
        kernel, __import__("h5py").ExternalLink(str(tmp / "weights.h5"), "/" + kernel))), "is reached through a ExternalLink"),
    "kernel-in-an-external-raw-file": (lambda f, layer, kernel, tmp: _external_storage(f, kernel, tmp),
                                       "its data lies in other files (external storage)"),
    "kernel-a-virtual-dataset": (lambda f, layer, kernel, tmp: _virtual(f, kernel, tmp),
                                 "its data lies in other files (virtual storage)"),
    "layer-name-not-utf8": (lambda f, layer, kernel, tmp: _names(f, "model_weights", "layer_names",
                                                                 lambda n: b"\xffconv" if n == layer.split("/")[1].encode() else n),
                            "attribute layer_names: a name that is not UTF-8 text (b'\\xffconv': byte 0xff at offset 0)"),
    "weight-name-not-utf8": (lambda f, layer, kernel, tmp: _names(f, layer, "weight_names", lambda n: n + b"\xfe"),
                             "attribute weight_names: a name that is not UTF-8 text"),
    "weight-name-above-the-layer": (lambda f, layer, kernel, tmp: _names(f, layer, "weight_names", lambda n: b"../" + n),
                                    "is not a name inside the file"),
}


def test_keras_files_and_mat_files_share_the_storage_check():
    """External and virtual HDF5 storage (values in other files) is refused by one check, for the authors' Keras
    weights and for MATLAB v7.3 files alike (tests/data/test_readers.py: test_a_hostile_v73_file_is_refused...)."""
    from sst.data import readers
    from sst.models import keras_weights

    assert keras_weights.stored_elsewhere is readers.stored_elsewhere


@pytest.mark.parametrize("damage", KERAS_DAMAGE)
def test_keras_files_are_checked_before_reading(cfg, tmp_path, damage):
    import h5py

    c = small(cfg, block_order="official")
    net = model.build_model(c)
    layers = keras_layers(net)
    write_keras_h5(tmp_path / "weights.h5", layers, full_model=True)
    path = tmp_path / "bad.h5"
    write_keras_h5(path, layers, full_model=True)
    name = layers[0][0]
    layer, kernel = f"model_weights/{name}", f"model_weights/{name}/{name}/kernel:0"
    edit, expected = KERAS_DAMAGE[damage]
    with h5py.File(path, "r+") as f:
        edit(f, layer, kernel, tmp_path)
    with pytest.raises(errors.DataError) as refused:
        model.load_keras_weights(model.build_model(c), path)
    assert str(refused.value).startswith(f"{path}: ") and expected in str(refused.value), str(refused.value)


def test_keras_weights_path_over_255_bytes_is_one_clear_error(tmp_path):
    """A path component longer than file systems allow is named, as for the other path options, both on
    the command line and through model.load_keras_weights."""
    ini = write_ini(tmp_path / "small.ini")
    long = tmp_path / ("k" * 300 + ".h5")
    with pytest.raises(errors.UserError, match=r"^--keras-weights: a path component of 303 bytes \(k+.*at most 255"):
        model.main(["-c", str(ini), "--keras-weights", str(long)])
    with pytest.raises(errors.DataError, match=r"Keras weights file: a path component of 303 bytes"):
        model.load_keras_weights(model.build_model(small(config.load_config(ini), block_order="official")), long)


@pytest.mark.parametrize("target", ["the-same-path", "another-spelling", "a-symbolic-link", "a-hard-link", "the-ini-file"])
def test_save_onto_an_input_is_refused(tmp_path, target):
    """model.py --save never writes over what it reads: the Keras file (by any name of it) or the INI file."""
    import os

    ini = write_ini(tmp_path / "small.ini")
    weights = tmp_path / "mine.h5"
    weights.write_bytes(b"the user's only copy of their Keras weights")
    save = {"the-same-path": weights, "another-spelling": tmp_path / "." / "mine.h5",
            "a-symbolic-link": tmp_path / "link.h5", "a-hard-link": tmp_path / "hard.h5", "the-ini-file": ini}[target]
    if target == "a-symbolic-link":
        save.symlink_to(weights)
    if target == "a-hard-link":
        os.link(weights, save)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(errors.UserError, match=rf"^--save {re.escape(str(save))}: that is the (--keras-weights|-c) file "):
        model.main(["-c", str(ini), "--keras-weights", str(weights), "--save", str(save)])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_command_line_keras_import(cfg, tmp_path):
    """model.py --keras-weights FILE --save FILE.pt: summary, tensors loaded, a state dict run.py can load."""
    ini = write_ini(tmp_path / "small.ini", data={"input_width": 16, "temInput_length": 9},
                    model={"depth_spec": 10, "depth_tem": 10, "gr_spec": 4, "gr_tem": 6})
    c = config.load_config(ini).replace(model={"block_order": "official"})
    torch.manual_seed(0)
    source = randomised(model.build_model(c))
    write_keras_h5(tmp_path / "best.h5", keras_layers(source), full_model=True)
    run = run_cli("model.py", "-c", str(ini), "--keras-weights", str(tmp_path / "best.h5"),
                  "--save", str(tmp_path / "sst.pt"))
    assert run.returncode == 0, run.stderr
    assert "block order: official" in run.stdout and "variant: block order official" in run.stdout
    assert re.search(r"^tensors loaded from .*best\.h5: \d+$", run.stdout, re.M)
    state = torch.load(tmp_path / "sst.pt", weights_only=True)
    assert torch.equal(state["head.hidden.weight"], source.head.hidden.weight.detach())
    run = run_cli("model.py", "-c", str(ini), "--keras-weights", str(tmp_path / "missing.h5"))
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "missing.h5" in run.stderr
