"""Parity of `model.load_keras_weights` with the authors' Keras model (optional, benchmark-only check).

Builds the authors' SST-EmotionNet in tf_keras (a re-statement of their model/model.py, same layers
in the same creation order, so Keras's automatic names conv3d_N, batch_normalization_N, dense_N
match theirs), gives every weight a seeded random value, writes it both as a full model
(model.save, HDF5) and as model.save_weights, loads each file into this project's official-order
network with `model.load_keras_weights`, and prints the largest absolute differences between the
two frameworks' outputs on random inputs: eval-mode softmax probabilities and stream features, and
training-mode stream features (batch statistics in every BN; the head's dropout is left out).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 \
        h5py numpy torch==2.13.0 scipy
    /tmp/tfenv/bin/python bench/keras_parity.py            # SEED.ini sizes
    /tmp/tfenv/bin/python bench/keras_parity.py --small    # a reduced network, faster
    /tmp/tfenv/bin/python bench/keras_parity.py --layer-list tests/keras_official_seed_layers.json

--layer-list writes the Keras model's layers that hold weights, with their weight shapes, in creation
order (Keras's name counters) for the given config: tests/models/test_keras_weights.py holds model.py's module order
to that list without TensorFlow (the committed file is SEED.ini's, written so by tf-keras 2.21).

TensorFlow and tf-keras are optional, benchmark-only dependencies, not in requirements.txt; nothing
is downloaded at run time (the .h5 files go to a temporary folder and are deleted).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import torch  # noqa: E402
from tf_keras import layers as L  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model  # noqa: E402
from sst import config

EPS = 1.1e-5
SMALL = {"data": {"input_width": 16, "specInput_length": 5, "temInput_length": 9},
         "model": {"depth_spec": 10, "depth_tem": 10, "gr_spec": 4, "gr_tem": 6}}


# ----------------------------------------------------------------------------- the authors' network in tf_keras

def bn_relu(x):
    return L.Activation("relu")(L.BatchNormalization(axis=-1, epsilon=EPS)(x))


def conv(x, filters, kernel, strides=(1, 1, 1), l2=None):
    reg = keras.regularizers.l2(l2) if l2 else None
    return L.Conv3D(filters, kernel, strides=strides, padding="same", use_bias=False,
                    kernel_initializer="he_normal", kernel_regularizer=reg)(x)


def dense_block(x, layers, growth):
    for _ in range(layers):     # BN-ReLU-1x1x1 bottleneck (4k), BN-ReLU-3x3x1 (k), 1x1x3 (k); concatenated
        y = conv(bn_relu(x), 4 * growth, (1, 1, 1), l2=1e-4)
        y = conv(conv(bn_relu(y), growth, (3, 3, 1)), growth, (1, 1, 3))
        x = L.concatenate([x, y], axis=-1)
    return x


def attention(x):
    """A3DB: channel mean; spatial weights (mean over depth -> Dense(H*W)), then depth weights (mean over H, W)."""
    H, W, D = x.shape[1:4]
    mean = L.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True))(x)           # (N, H, W, D, 1)
    s = L.Activation("sigmoid")(L.Dense(H * W)(L.Flatten()(L.AveragePooling3D((1, 1, D))(mean))))
    out = L.multiply([x, L.Reshape((H, W, 1, 1))(s)])
    t = L.Activation("sigmoid")(L.Dense(D)(L.Flatten()(L.AveragePooling3D((H, W, 1))(mean))))
    return L.multiply([L.Reshape((1, 1, D, 1))(t), out])


def stream(inp, depth, growth, blocks, compression, temporal):
    layers = (depth - 4) // 3 // 2
    kernel, strides = ((5, 5, 3), (2, 2, 1)) if temporal else ((3, 3, 1), (1, 1, 1))
    conv(inp, 2 * growth, kernel, strides, l2=1e-4)        # built and discarded, as the authors do
    x = conv(inp, 2 * growth, kernel, strides, l2=1e-4)
    if temporal:
        x = L.MaxPooling3D((2, 2, 2), strides=(2, 2, 2), padding="same")(bn_relu(x))
    for _ in range(blocks - 1):
        x = dense_block(x, layers, growth)
        x = conv(bn_relu(x), int(x.shape[-1] * compression), (1, 1, 1), l2=1e-4)
        x = attention(L.AveragePooling3D((2, 2, 2), strides=(2, 2, 2))(x))
    x = dense_block(x, layers, growth)
    return L.GlobalAveragePooling3D()(bn_relu(x))


def keras_model(cfg: config.Config) -> tuple[keras.Model, keras.Model]:
    """(full model, model of the concatenated stream features)."""
    d, m = cfg.data, cfg.model
    spec = keras.Input((d.input_width, d.input_width, d.specInput_length, 1))
    tem = keras.Input((d.input_width, d.input_width, d.temInput_length, 1))
    features = L.concatenate([stream(spec, m.depth_spec, m.gr_spec, m.nb_dense_block, m.compression_spec, False),
                              stream(tem, m.depth_tem, m.gr_tem, m.nb_dense_block, m.compression_tem, True)])
    y = L.Dropout(0.5)(L.Dense(50)(features))     # layers are named when built: Dense(50) first, as theirs
    y = L.Dense(m.nb_class, activation="softmax")(y)
    return keras.Model([spec, tem], y), keras.Model([spec, tem], features)


def layer_list(net: keras.Model) -> list[dict]:
    """[{"name": ..., "weights": {weight: shape}}] of the layers with weights, in creation order per
    layer type (the counter in Keras's automatic names: conv3d, conv3d_1, ...)."""
    import re

    def creation(layer) -> tuple[str, int]:
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", layer.name)
        return match[1], int(match[2] or 0)

    return [{"name": layer.name,
             "weights": {w.name.split("/")[-1].split(":")[0]: list(w.shape) for w in layer.weights}}
            for layer in sorted((x for x in net.layers if x.weights), key=creation)]


def randomise(net: keras.Model, rng: np.random.Generator) -> int:
    """Seeded random values for every weight; BN variances (and gammas) positive. Returns the count."""
    count = 0
    for layer in net.layers:
        values = []
        for w in layer.weights:
            name, shape = w.name.split("/")[-1].split(":")[0], tuple(w.shape)
            if name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                v = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            elif name in ("gamma", "moving_variance"):
                v = rng.uniform(0.5, 1.5, shape)
            else:                                           # bias, beta, moving_mean
                v = rng.normal(0.0, 0.2, shape)
            values.append(v.astype(np.float32))
            count += 1
        if values:
            layer.set_weights(values)
    return count


# ----------------------------------------------------------------------------- comparison

def torch_net(cfg: config.Config, path: Path) -> tuple[model.SSTEmotionNet, int, int]:
    """(official-order network loaded from `path`, tensors loaded, tensors it has). Starts from NaNs, so
    a tensor the loader misses shows up as a NaN difference."""
    net = model.build_model(cfg.replace(model={"block_order": "official"}))
    tensors = [*net.parameters(), *(b for n, b in net.named_buffers() if "running" in n)]
    with torch.no_grad():
        for t in tensors:
            t.fill_(float("nan"))
    return net, model.load_keras_weights(net, path), len(tensors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=str(Path(__file__).resolve().parents[1] / "SEED.ini"))
    parser.add_argument("--small", action="store_true", help="a reduced network (width 16, depths 10/10, ...)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layer-list", type=Path, help="write the layers with their weight shapes as JSON and stop")
    args = parser.parse_args(argv)

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    cfg = config.load_config(args.config)
    if args.small:
        cfg = cfg.replace(**SMALL)
    print(f"tensorflow {tf.__version__}, tf-keras {keras.__version__}, torch {torch.__version__}, h5py "
          f"{__import__('h5py').__version__}")
    d = cfg.data
    print(f"config: {args.config}{' --small' if args.small else ''}: width {d.input_width}, "
          f"lengths {d.specInput_length}/{d.temInput_length}, depths {cfg.model.depth_spec}/{cfg.model.depth_tem}, "
          f"growth {cfg.model.gr_spec}/{cfg.model.gr_tem}, {cfg.model.nb_dense_block} blocks")

    rng = np.random.default_rng(args.seed)
    full, features = keras_model(cfg)
    if args.layer_list:
        layers = layer_list(full)
        head = {"config": Path(args.config).name + (" --small" if args.small else ""),
                "written_by": f"tf-keras {keras.__version__}"}
        args.layer_list.write_text(json.dumps(head)[:-1] + ', "layers": [\n'           # one layer a line
                                   + ",\n".join(json.dumps(layer) for layer in layers) + "\n]}\n")
        print(f"{args.layer_list}: {len(layers)} layers with weights")
        return 0
    print(f"keras weights randomised: {randomise(full, rng)}, keras parameters: {full.count_params()}")
    spec = rng.normal(size=(args.batch, d.input_width, d.input_width, d.specInput_length, 1)).astype(np.float32)
    tem = rng.normal(size=(args.batch, d.input_width, d.input_width, d.temInput_length, 1)).astype(np.float32)
    k_prob = full.predict([spec, tem], verbose=0)
    k_feat = features.predict([spec, tem], verbose=0)
    print(f"keras probabilities: min {k_prob.min():.4f}, max {k_prob.max():.4f} (not saturated if well inside 0..1)")
    xs, xt = torch.from_numpy(spec[..., 0]), torch.from_numpy(tem[..., 0])

    with tempfile.TemporaryDirectory() as tmp:
        files = {"model.save": Path(tmp) / "full.h5", "model.save_weights": Path(tmp) / "weights.h5"}
        full.save(files["model.save"], save_format="h5")
        full.save_weights(files["model.save_weights"])
        k_train = features([spec, tem], training=True).numpy()  # updates Keras's moving statistics: after saving
        for kind, path in files.items():
            net, loaded, total = torch_net(cfg, path)
            print(f"[{kind}] tensors loaded: {loaded} of {total}")
            net.eval()
            with torch.no_grad():
                prob = torch.softmax(net(xs, xt), 1).numpy()
                feat = net.forward_features(xs, xt).numpy()
                net.train()
                train_feat = net.forward_features(xs, xt).numpy()
            print(f"[{kind}] eval probabilities, max abs diff: {np.abs(prob - k_prob).max():.3g}")
            print(f"[{kind}] eval features, max abs diff: {np.abs(feat - k_feat).max():.3g} "
                  f"(features up to {np.abs(k_feat).max():.3g})")
            print(f"[{kind}] train features, max abs diff: {np.abs(train_feat - k_train).max():.3g} "
                  f"(features up to {np.abs(k_train).max():.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
